/* fcgi_server.c - listening socket, worker threads, signals and routes (see fcgi_server.h).
 *
 * Each worker owns one FCGX_Request (libfcgi is thread-safe per request object, initialised with
 * FCGX_InitRequest per thread) and one API client. The accept loop waits in poll() on the
 * listening socket and the shutdown eventfd; FCGX_Accept_r() is only called when the socket is
 * readable, and with the socket non-blocking it returns -EAGAIN when another worker won the race.
 * nginx must not keep FastCGI connections open (fastcgi_keep_conn off, the default): every
 * request is finished and its connection closed before the worker waits again. */
#include "fcgi_server.h"
#include "sdlisten.h"

#include "cleanup.h"
#include "log.h"
#include "webhook_handler.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG    128
#define METRICS_MAX       (64 * 1024)
#define STATUS_TIMEOUT_MS 1000

/* ---- listening socket ---------------------------------------------------------------------- */

static int set_nonblock_cloexec(int fd, rc_error *err)
{
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);

    if (fl < 0 || fdfl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "listening socket: fcntl");
    return 0;
}

int rc_fcgi_listen_activated(int *ret_fd, rc_error *err)
{
    int fd = -1, r = rc_sd_listen_fd(SOCK_STREAM, &fd, err);

    if (r <= 0)
        return r;
    if ((r = set_nonblock_cloexec(fd, err)) < 0)
        return r;
    *ret_fd = fd;
    return 1;
}

static int remove_stale_socket(const char *path, rc_error *err)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "stat %s", path);
    if (!S_ISSOCK(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "%s exists and is not a socket", path);
    if (unlink(path) < 0)
        return rc_error_sys(err, RC_EIO, "unlink %s", path);
    return 0;
}

int rc_fcgi_listen_unix(const char *path, unsigned mode, int *ret_fd, rc_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    mode_t old;
    int r;

    if (!path || strlen(path) >= sizeof sa.sun_path)
        return rc_error_set(err, RC_EINVAL, "socket path is too long");
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if ((r = remove_stale_socket(path, err)) < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "socket");
    /* The mode applies from the start (single-threaded here, so umask is ours to change). */
    old = umask((mode_t)(~mode & 0777));
    r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0)
        return rc_error_sys(err, RC_EIO, "bind %s", path);
    if (chmod(path, (mode_t)mode) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        return rc_error_sys(err, RC_EIO, "listen %s", path);
    *ret_fd = take_fd(fd);
    return 0;
}

/* ---- privileges and signals ---------------------------------------------------------------- */

void rc_fcgi_signal_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
}

int rc_fcgi_drop_privileges(rc_error *err)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];

    memset(d, 0, sizeof d);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return rc_error_sys(err, RC_EIO, "prctl(PR_SET_NO_NEW_PRIVS)");
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (syscall(SYS_capset, &h, d) < 0)
        return rc_error_sys(err, RC_EIO, "capset");
    return 0;
}

/* ---- routes -------------------------------------------------------------------------------- */

static void respond_json(FCGX_Request *req, int status, const char *extra_header, const char *json)
{
    rc_fcgi_respond(req, status, "application/json", extra_header, json, strlen(json));
}

static void serve_healthz(rc_fcgi_worker *w, FCGX_Request *req, const char *method)
{
    const char *body;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        respond_json(req, 405, "Allow: GET, HEAD", "{\"error\":\"method not allowed\"}");
        return;
    }
    if (atomic_load(&w->app->stopping)) {
        body = "{\"status\":\"stopping\"}";
        respond_json(req, 503, NULL, body);
        return;
    }
    body = "{\"status\":\"ok\"}";
    respond_json(req, 200, NULL, body);
}

static void serve_metrics(rc_fcgi_worker *w, FCGX_Request *req, const char *method)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(METRICS_MAX);
    rc_handoff_answer launcher;
    bool up;

    if (strcmp(method, "GET") != 0) {
        respond_json(req, 405, "Allow: GET", "{\"error\":\"method not allowed\"}");
        return;
    }
    up = rc_fcgi_launcher_status(w->app->cfg, STATUS_TIMEOUT_MS, &launcher, NULL) == 0;
    if (rc_fcgi_metrics_render(&w->app->metrics, up ? &launcher : NULL, &out, NULL) < 0) {
        respond_json(req, 500, NULL, "{\"error\":\"internal\"}");
        return;
    }
    rc_fcgi_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, rc_buf_cstr(&out),
                    out.len);
}

void rc_fcgi_route(rc_fcgi_worker *w, FCGX_Request *req)
{
    char path[RC_FCGI_PATH_MAX + 2];
    const char *method = rc_fcgi_param(req->envp, "REQUEST_METHOD");
    const char *body = "{\"error\":\"not found\"}";

    atomic_fetch_add_explicit(&w->app->metrics.requests, 1, memory_order_relaxed);
    rc_fcgi_request_path(req->envp, path, sizeof path);
    if (!method)
        method = "";
    if (strcmp(path, w->app->cfg->webhook_path) == 0)
        rc_fcgi_webhook_serve(w, req);
    else if (strcmp(path, "/healthz") == 0)
        serve_healthz(w, req, method);
    else if (strcmp(path, "/metrics") == 0)
        serve_metrics(w, req, method);
    else
        respond_json(req, 404, NULL, body);
}

/* ---- workers ------------------------------------------------------------------------------- */

/* Wait until the listening socket is readable (true) or shutdown began (false). */
static bool wait_for_connection(rc_fcgi_app *app)
{
    struct pollfd p[2] = {{.fd = app->listen_fd, .events = POLLIN},
                          {.fd = app->wake_fd, .events = POLLIN}};

    for (;;) {
        if (atomic_load(&app->stopping))
            return false;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            rc_log_error("poll on the listening socket: %s", strerror(errno));
            usleep(100000);
            continue;
        }
        if (p[1].revents)
            return false;
        if (p[0].revents & POLLIN)
            return true;
        if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
            /* Wake the signal-waiting thread too, so the whole process stops. */
            rc_log_error("the listening socket failed; stopping");
            kill(getpid(), SIGTERM);
            return false;
        }
    }
}

static void *worker_main(void *arg)
{
    rc_fcgi_worker *w = arg;
    FCGX_Request req;
    int r;

    if (FCGX_InitRequest(&req, w->app->listen_fd, 0) != 0) {
        rc_log_error("worker %d: FCGX_InitRequest failed", w->index);
        return NULL;
    }
    while (wait_for_connection(w->app)) {
        r = FCGX_Accept_r(&req);
        if (r == -EAGAIN || r == -EWOULDBLOCK || r == -EINTR)
            continue;
        if (r < 0) {
            rc_log_warn("worker %d: accepting a FastCGI request failed (%d)", w->index, r);
            usleep(50000); /* e.g. EMFILE: do not spin */
            continue;
        }
        rc_fcgi_route(w, &req);
        FCGX_Finish_r(&req);
    }
    rc_fcgi_worker_clear(w);
    return NULL;
}

static void begin_shutdown(rc_fcgi_app *app)
{
    uint64_t one = 1;
    ssize_t n;

    atomic_store(&app->stopping, true);
    n = write(app->wake_fd, &one, sizeof one);
    (void)n;
}

/* Block until a stop signal; SIGHUP is logged and ignored. */
static void wait_for_stop_signal(void)
{
    sigset_t set;
    int sig = 0;

    rc_fcgi_signal_set(&set);
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            rc_log_info("SIGHUP ignored (configuration is read at start only)");
            continue;
        }
        rc_log_info("signal %d: finishing in-flight requests, then exiting", sig);
        return;
    }
}

/* The background re-drain (redrain.c), wanted from the start so that a restarted process claims
 * what was queued while it was down. false when disabled or it could not start. */
static bool start_redrain(rc_fcgi_app *app, pthread_t *ret_tid)
{
    if (app->cfg->redrain_ms <= 0)
        return false;
    atomic_store(&app->redrain_wanted, true);
    if (pthread_create(ret_tid, NULL, rc_fcgi_redrain_main, app) != 0) {
        rc_log_error("could not start the re-drain thread; queued work waits for webhooks");
        return false;
    }
    return true;
}

int rc_fcgi_server_run(rc_fcgi_app *app, rc_error *err)
{
    int n = app->cfg->threads, started = 0;
    pthread_t redrain_tid;
    bool redrain;
    _cleanup_free_ pthread_t *tids = calloc((size_t)n, sizeof *tids);
    _cleanup_free_ rc_fcgi_worker *workers = calloc((size_t)n, sizeof *workers);

    if (!tids || !workers)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        workers[i] = (rc_fcgi_worker){.app = app, .index = i};
        if (pthread_create(&tids[i], NULL, worker_main, &workers[i]) != 0) {
            rc_log_error("could not start worker %d", i);
            break;
        }
        started++;
    }
    if (started == 0)
        return rc_error_set(err, RC_EIO, "no worker thread could start");
    redrain = start_redrain(app, &redrain_tid);
    rc_log_info("serving FastCGI with %d workers, webhook path %s", started,
                app->cfg->webhook_path);
    wait_for_stop_signal();
    begin_shutdown(app);
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (redrain)
        pthread_join(redrain_tid, NULL);
    rc_log_info("all workers finished; exiting");
    return 0;
}
