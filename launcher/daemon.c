/* daemon.c - runcell-launcher's hand-off server (fcgi/handoff.h, docs/FCGI.md "Hand-off").
 *
 * One thread, one poll loop over: a signalfd (SIGTERM/SIGINT end the daemon, never the shims),
 * the SOCK_SEQPACKET listener, the client connections, and one pidfd per live shim. Capacity is
 * a count: live shims + reservations held by connections must stay within RUNCELL_CAPACITY. A
 * reservation belongs to its connection and disappears with it, so a crashed client never leaks
 * a slot. A shim is double-forked and setsid'd so it is not our child and survives a restart of
 * the daemon; we watch it through a pidfd, and when it ends we reconcile its session (a shim
 * that was killed before its teardown leaves the container, the netns and a claimed item: they
 * are cleaned and stopped right away, not at the next start).
 *
 * Only root and RUNCELL_FCGI_UID may connect (SO_PEERCRED on every accept). The launch answer is
 * immediate: the slow part (bundle, runc) happens in the shim. */
#include "launcher.h"
#include "sdlisten.h"

#include "../fcgi/handoff.h"
#include "../oci/runc.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHIM_ITEM_FD 3

typedef struct conn {
    int fd;
    bool reserved;
} conn;

typedef struct live_shim {
    char sid[RC_LAUNCHER_SESSION_ID_MAX + 1];
    pid_t pid;
    int pidfd;
} live_shim;

typedef struct daemon_state {
    const rc_launcher_config *cfg;
    const char *digest;
    const char *self_exe;
    int listen_fd;
    bool socket_activated; /* listen_fd came from systemd: leave its path alone on exit */
    int sig_fd;
    conn conns[RC_LAUNCHER_MAX_CONNS];
    size_t n_conns;
    live_shim *shims;
    size_t n_shims, cap_shims;
    long reserved;
    bool stop;
} daemon_state;

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static long slots_free(const daemon_state *d)
{
    return d->cfg->capacity - (long)d->n_shims - d->reserved;
}

/* ---- shims --------------------------------------------------------------------------------- */

static int shim_track(daemon_state *d, const char *sid, pid_t pid, rc_error *err)
{
    int pfd = pidfd_open_(pid);
    if (pfd < 0)
        return rc_error_sys(err, RC_EIO, "pidfd_open(%ld)", (long)pid);
    if (d->n_shims == d->cap_shims) {
        size_t nc = d->cap_shims ? d->cap_shims * 2 : 16;
        live_shim *p = reallocarray(d->shims, nc, sizeof *p);
        if (!p) {
            close(pfd);
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
        d->shims = p;
        d->cap_shims = nc;
    }
    live_shim *s = &d->shims[d->n_shims++];
    snprintf(s->sid, sizeof s->sid, "%s", sid);
    s->pid = pid;
    s->pidfd = pfd;
    return 0;
}

static void on_adopt(const char *sid, pid_t pid, void *userdata)
{
    daemon_state *d = userdata;
    rc_error e = {0};
    if (shim_track(d, sid, pid, &e) < 0)
        rc_log_warn("cannot adopt the shim of %s (pid %ld): %s", sid, (long)pid, e.msg);
    else
        rc_log_info("adopted the live shim of %s (pid %ld)", sid, (long)pid);
}

static void shim_ended(daemon_state *d, size_t i)
{
    char sid[RC_LAUNCHER_SESSION_ID_MAX + 1];
    rc_error e = {0};
    int r;

    snprintf(sid, sizeof sid, "%s", d->shims[i].sid);
    close(d->shims[i].pidfd);
    d->shims[i] = d->shims[--d->n_shims];
    /* Still holding the session? Then another shim of it is alive; otherwise clean up what the
     * dead one may have left (nothing, when it finished its teardown). */
    rc_log_set_context(sid, NULL);
    r = rc_launcher_reconcile_session(d->cfg, sid, &e);
    if (r < 0)
        rc_log_error("reconcile after the shim ended: %s", e.msg);
    else if (r > 0)
        rc_log_warn("the shim ended without its teardown; session cleaned up");
    rc_log_set_context(NULL, NULL);
}

/* Grandchild: the shim. Only async-signal-safe calls before execve. */
static void exec_shim(const daemon_state *d, int item_fd)
{
    sigset_t none;
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    if (dup2(item_fd, SHIM_ITEM_FD) < 0)
        _exit(127);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char *const argv[] = {(char *)"runcell-launcher", (char *)"--shim", (char *)"--snapshot",
                          (char *)d->digest, NULL};
    execv(d->self_exe, argv);
    _exit(127);
}

/* Double fork: the intermediate child setsid()s, forks the shim, reports its pid and exits, so
 * the shim is reparented away from us (it outlives the daemon). */
static int shim_fork(const daemon_state *d, int item_fd, pid_t *ret_pid, rc_error *err)
{
    int pfd[2], status = 0;
    pid_t child, shim_pid = 0;

    if (pipe2(pfd, O_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "pipe2");
    child = fork();
    if (child < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return rc_error_sys(err, RC_EIO, "fork");
    }
    if (child == 0) {
        setsid();
        pid_t g = fork();
        if (g == 0)
            exec_shim(d, item_fd);
        if (g > 0 && write(pfd[1], &g, sizeof g) != (ssize_t)sizeof g)
            _exit(1);
        _exit(g > 0 ? 0 : 1);
    }
    close(pfd[1]);
    ssize_t n = read(pfd[0], &shim_pid, sizeof shim_pid);
    close(pfd[0]);
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof shim_pid || shim_pid <= 0)
        return rc_error_set(err, RC_EIO, "could not start a shim");
    *ret_pid = shim_pid;
    return 0;
}

/* Start a shim for the item and hand it the launch message over a socketpair (never argv or the
 * environment: the message holds the secret). */
static int shim_spawn(daemon_state *d, const char *sid, const rc_buf *launch_msg, rc_error *err)
{
    int sv[2];
    pid_t pid = 0;
    int r;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return rc_error_sys(err, RC_EIO, "socketpair");
    r = shim_fork(d, sv[1], &pid, err);
    close(sv[1]);
    if (r == 0 && (r = rc_handoff_send(sv[0], launch_msg, err)) == 0)
        r = shim_track(d, sid, pid, err);
    close(sv[0]);
    if (r == 0)
        rc_log_info("shim started for %s (pid %ld)", sid, (long)pid);
    return r;
}

/* ---- requests ------------------------------------------------------------------------------ */

static int answer(int fd, const rc_handoff_answer *a)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    rc_error e = {0};
    if (rc_handoff_answer_encode(a, &out, &e) < 0 || rc_handoff_send(fd, &out, &e) < 0) {
        rc_log_warn("hand-off answer: %s", e.msg);
        return -1;
    }
    return 0;
}

static void release(daemon_state *d, conn *cn)
{
    if (cn->reserved) {
        cn->reserved = false;
        d->reserved--;
    }
}

/* True when the item's secret yields a session token (checked here so the answer is immediate;
 * the shim decodes it again and keeps the token). */
static bool item_has_token(const rc_handoff_item *item)
{
    char *token = NULL;
    int r = rc_worksecret_decode(item->secret, RC_WORKSECRET_LEGACY, &token, NULL);
    rc_worksecret_free(token);
    return r == 0;
}

static rc_handoff_answer do_launch(daemon_state *d, conn *cn, const rc_handoff_item *item,
                                   const rc_buf *msg)
{
    bool held = cn->reserved;
    rc_error e = {0};

    release(d, cn); /* a launch consumes the held slot whatever the answer */
    if (!held && slots_free(d) <= 0)
        return rc_handoff_answer_make(RC_HANDOFF_AT_CAPACITY, NULL);
    rc_log_set_context(item->session_id, item->work_id);
    if (!item_has_token(item)) {
        rc_log_warn("refused: the work item has no usable session token");
        rc_log_set_context(NULL, NULL);
        return rc_handoff_answer_make(RC_HANDOFF_REFUSED, "no usable session token");
    }
    if (shim_spawn(d, item->session_id, msg, &e) < 0) {
        rc_log_error("refused: %s", e.msg);
        rc_log_set_context(NULL, NULL);
        return rc_handoff_answer_make(RC_HANDOFF_REFUSED, "launcher could not start a shim");
    }
    rc_log_set_context(NULL, NULL);
    return rc_handoff_answer_make(RC_HANDOFF_ACCEPTED, NULL);
}

static rc_handoff_answer handle(daemon_state *d, conn *cn, const rc_buf *msg)
{
    _cleanup_json_ cJSON *tree = NULL;
    rc_handoff_request req;
    rc_handoff_answer a;
    rc_error e = {0};

    if (rc_handoff_request_decode(msg->data, msg->len, &tree, &req, &e) < 0)
        return rc_handoff_answer_make(RC_HANDOFF_ERROR, "malformed request");
    switch (req.op) {
    case RC_HANDOFF_OP_RESERVE:
        if (cn->reserved)
            return rc_handoff_answer_make(RC_HANDOFF_RESERVED, NULL);
        if (slots_free(d) <= 0)
            return rc_handoff_answer_make(RC_HANDOFF_AT_CAPACITY, NULL);
        cn->reserved = true;
        d->reserved++;
        return rc_handoff_answer_make(RC_HANDOFF_RESERVED, NULL);
    case RC_HANDOFF_OP_RELEASE:
        release(d, cn);
        return rc_handoff_answer_make(RC_HANDOFF_RELEASED, NULL);
    case RC_HANDOFF_OP_LAUNCH:
        a = do_launch(d, cn, &req.item, msg);
        cJSON *sec = cJSON_GetObjectItemCaseSensitive(tree, "secret");
        if (cJSON_IsString(sec))
            explicit_bzero(sec->valuestring, strlen(sec->valuestring));
        return a;
    case RC_HANDOFF_OP_STATUS:
        a = rc_handoff_answer_make(RC_HANDOFF_OK, NULL);
        a.active = (long)d->n_shims;
        a.capacity = d->cfg->capacity;
        a.reserved = d->reserved;
        return a;
    }
    return rc_handoff_answer_make(RC_HANDOFF_ERROR, "unknown op");
}

static void conn_close(daemon_state *d, size_t i)
{
    release(d, &d->conns[i]);
    close(d->conns[i].fd);
    d->conns[i] = d->conns[--d->n_conns];
}

/* Returns false when the connection must be closed. */
static bool conn_readable(daemon_state *d, conn *cn)
{
    _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    rc_error e = {0};
    int n;

    /* Full size up front: the message may hold a secret, and rc_buf_free wipes what it holds. */
    if (rc_buf_reserve(&msg, RC_HANDOFF_MSG_MAX, &e) < 0)
        return false;
    n = rc_handoff_recv(cn->fd, &msg, &e);
    if (n == -RC_ETOOBIG) {
        rc_handoff_answer a = rc_handoff_answer_make(RC_HANDOFF_ERROR, "message too long");
        return answer(cn->fd, &a) == 0;
    }
    if (n <= 0)
        return false;
    rc_handoff_answer a = handle(d, cn, &msg);
    return answer(cn->fd, &a) == 0;
}

static void accept_one(daemon_state *d)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    struct timeval tv = {.tv_sec = 2};
    int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
        (cred.uid != 0 && cred.uid != d->cfg->fcgi_uid)) {
        rc_log_warn("hand-off connection refused: peer uid %ld is not allowed",
                    len == sizeof cred ? (long)cred.uid : -1L);
        close(fd);
        return;
    }
    if (d->n_conns >= RC_LAUNCHER_MAX_CONNS) {
        rc_log_warn("hand-off connection refused: too many connections");
        close(fd);
        return;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    d->conns[d->n_conns++] = (conn){.fd = fd};
}

/* ---- setup and loop ------------------------------------------------------------------------ */

/* The socket systemd passed (runcell-launcher.socket sets its owner and mode), else our own. */
static int listen_socket(const rc_launcher_config *c, int *ret_fd, bool *ret_activated,
                         rc_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    struct stat st;
    int r = rc_sd_listen_fd(SOCK_SEQPACKET, &fd, err);

    if (r < 0)
        return r;
    *ret_activated = r == 1;
    if (r == 1) {
        *ret_fd = take_fd(fd);
        return 0;
    }
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "socket");
    memcpy(sa.sun_path, c->socket_path, strlen(c->socket_path) + 1);
    if (lstat(c->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return rc_error_set(err, RC_EINVAL, "%s exists and is not a socket", c->socket_path);
        unlink(c->socket_path);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return rc_error_sys(err, RC_EIO, "bind %s", c->socket_path);
    /* Connecting needs write permission on the socket; SO_PEERCRED decides who is served. */
    if (c->fcgi_uid != (uid_t)-1 && chown(c->socket_path, c->fcgi_uid, (gid_t)-1) < 0)
        return rc_error_sys(err, RC_EIO, "chown %s", c->socket_path);
    if (chmod(c->socket_path, 0600) < 0)
        return rc_error_sys(err, RC_EIO, "chmod %s", c->socket_path);
    if (listen(fd, 64) < 0)
        return rc_error_sys(err, RC_EIO, "listen %s", c->socket_path);
    *ret_fd = take_fd(fd);
    return 0;
}

static int signal_fd(int *ret_fd, rc_error *err)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return rc_error_sys(err, RC_EIO, "sigprocmask");
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "signalfd");
    *ret_fd = fd;
    return 0;
}

static void on_signal(daemon_state *d)
{
    struct signalfd_siginfo si;
    if (read(d->sig_fd, &si, sizeof si) != (ssize_t)sizeof si)
        return;
    if (si.ssi_signo == SIGHUP)
        return; /* configuration is read at start only */
    rc_log_info("signal %u: exiting (shims keep running)", si.ssi_signo);
    d->stop = true;
}

static int loop_once(daemon_state *d, rc_error *err)
{
    size_t n = 2 + d->n_conns + d->n_shims, k = 0;
    _cleanup_free_ struct pollfd *p = calloc(n, sizeof *p);

    if (!p)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    p[k++] = (struct pollfd){.fd = d->sig_fd, .events = POLLIN};
    p[k++] = (struct pollfd){.fd = d->listen_fd, .events = POLLIN};
    for (size_t i = 0; i < d->n_conns; i++)
        p[k++] = (struct pollfd){.fd = d->conns[i].fd, .events = POLLIN};
    for (size_t i = 0; i < d->n_shims; i++)
        p[k++] = (struct pollfd){.fd = d->shims[i].pidfd, .events = POLLIN};
    if (poll(p, n, -1) < 0)
        return errno == EINTR ? 0 : rc_error_sys(err, RC_EIO, "poll");
    if (p[0].revents)
        on_signal(d);
    /* Shims first (their slots free up), from the end so removal keeps indexes valid. */
    for (size_t i = d->n_shims; i-- > 0;)
        if (p[2 + d->n_conns + i].revents)
            shim_ended(d, i);
    for (size_t i = d->n_conns; i-- > 0;)
        if (p[2 + i].revents && !conn_readable(d, &d->conns[i]))
            conn_close(d, i);
    if (p[1].revents)
        accept_one(d);
    return 0;
}

/* Without runc no session can start: refuse to run rather than accept items only to force-stop
 * each of them (runcell-fcgi answers 503 while we are down, so they stay queued for a host that
 * can run them). A runc that disappears later fails each start instead (end=start_failed). */
static int check_runc(const rc_launcher_config *c, rc_error *err)
{
    _cleanup_free_ char *path = NULL;
    if (rc_runc_find(c->runc_path, &path, err) < 0)
        return rc_error_wrap(err, RC_ENOTFOUND, "no session can start (RUNCELL_RUNC)");
    return 0;
}

int rc_launcher_daemon_run(const rc_launcher_config *c, const char *snapshot_digest,
                           const char *self_exe, rc_error *err)
{
    daemon_state d = {
        .cfg = c, .digest = snapshot_digest, .self_exe = self_exe, .listen_fd = -1, .sig_fd = -1};
    int r;

    if ((r = check_runc(c, err)) < 0 || (r = signal_fd(&d.sig_fd, err)) < 0)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    if ((r = rc_launcher_reconcile_all(c, on_adopt, &d, err)) < 0)
        goto out;
    if (r > 0)
        rc_log_info("reconcile: cleaned %d abandoned session%s", r, r == 1 ? "" : "s");
    if ((r = listen_socket(c, &d.listen_fd, &d.socket_activated, err)) < 0)
        goto out;
    rc_log_info("listening on %s%s (capacity %ld, %zu live shims adopted)", c->socket_path,
                d.socket_activated ? " (from systemd)" : "", c->capacity, d.n_shims);
    while (!d.stop && (r = loop_once(&d, err)) == 0)
        ;
out:
    for (size_t i = 0; i < d.n_conns; i++)
        close(d.conns[i].fd);
    for (size_t i = 0; i < d.n_shims; i++)
        close(d.shims[i].pidfd);
    free(d.shims);
    if (d.listen_fd >= 0) {
        close(d.listen_fd);
        if (!d.socket_activated) /* an activated socket stays, so a restart loses no delivery */
            unlink(c->socket_path);
    }
    if (d.sig_fd >= 0)
        close(d.sig_fd);
    return r < 0 ? r : 0;
}
