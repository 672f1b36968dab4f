/* runc.c - drives runc's CLI for one container: create, start, state, kill, wait, delete.
 *
 * Shape: every runc invocation goes through runc_call(), which builds a fixed argv (the global
 * flags, then the subcommand), forks, and in the child resets signals, wires stdio, marks every
 * other descriptor close-on-exec and execve()s runc with a fixed two-variable environment (our
 * own environment may hold credentials; runc needs none of it). The parent watches the child
 * through a pidfd (exit) and the capture pipes (stdout, stderr) under one deadline, so a hung
 * runc is killed instead of hanging the caller. A failed call is reported with runc's own
 * words: the last error line that call appended to the json --log, else its stderr.
 *
 * The container's stdio is a pipe created at `create`: runc passes its stdout/stderr through to
 * the container's init. We keep the read end and pump it into output.log with a size cap. */
#include "runc.h"

#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "spec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/keyctl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define RUNC_ENV_PATH     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define CAPTURE_MAX       (1u << 20) /* runc's stdout (state json) */
#define STDERR_MAX        (16u << 10)
#define LOG_TAIL_MAX      (64u << 10) /* bytes of new runc log lines examined on failure */
#define STOP_KILL_WAIT_MS 10000
#define ARGV_MAX          24

struct rc_runc_container {
    char *runc;
    char *root;
    char *id;
    char *bundle;
    char *runc_log;
    char *pid_file;
    char *output_log;
    size_t output_max;
    int call_timeout_ms;
    int echo_fd;
    int out_fd; /* read end of the container's stdout/stderr pipe, non-blocking */
    int log_fd; /* output.log */
    int init_pidfd;
    pid_t init_pid;
    uint64_t written, dropped;
    int write_errno; /* first failed write of output.log (0: none) */
    bool reaped;
    int wstatus;
};

/* ---- small helpers --------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

static char *path_join(const char *a, const char *b)
{
    char *s = NULL;
    if (asprintf(&s, "%s/%s", a, b) < 0)
        return NULL;
    return s;
}

static int poll_ms_left(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

const char *rc_runc_status_name(int status)
{
    static const char *const names[] = {"absent",  "creating", "created",
                                        "running", "paused",   "stopped"};
    if (status < 0 || status > RC_RUNC_STOPPED)
        return "unknown";
    return names[status];
}

int rc_runc_become_subreaper(rc_error *err)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        return rc_error_sys(err, RC_EIO, "prctl(PR_SET_CHILD_SUBREAPER)");
    return 0;
}

int rc_runc_find(const char *runc_path, char **ret_path, rc_error *err)
{
    if (runc_path && strchr(runc_path, '/')) {
        if (runc_path[0] != '/')
            return rc_error_set(err, RC_EINVAL, "runc path must be absolute");
        if (access(runc_path, X_OK) < 0)
            return rc_error_sys(err, RC_ENOTFOUND, "runc not executable at %s", runc_path);
        if (!(*ret_path = strdup(runc_path)))
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        return 0;
    }
    const char *name = runc_path ? runc_path : "runc";
    const char *path = getenv("PATH");
    _cleanup_free_ char *dirs = strdup(path && *path ? path : &RUNC_ENV_PATH[5]);
    if (!dirs)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (d[0] != '/')
            continue;
        _cleanup_free_ char *cand = path_join(d, name);
        if (!cand)
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
            *ret_path = take_ptr(cand);
            return 0;
        }
    }
    return rc_error_set(err, RC_ENOTFOUND,
                        "%s not found on PATH: install runc (1.1 or later) or give its path", name);
}

/* ---- the container object -------------------------------------------------------------------- */

void rc_runc_container_free(rc_runc_container *c)
{
    if (!c)
        return;
    free(c->runc);
    free(c->root);
    free(c->id);
    free(c->bundle);
    free(c->runc_log);
    free(c->pid_file);
    free(c->output_log);
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->log_fd >= 0)
        close(c->log_fd);
    if (c->init_pidfd >= 0)
        close(c->init_pidfd);
    free(c);
}

static int ensure_root(const char *root, rc_error *err)
{
    struct stat st;
    if (mkdir(root, 0700) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "create runc root %s", root);
    if (lstat(root, &st) < 0 || !S_ISDIR(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "runc root %s is not a directory", root);
    return 0;
}

int rc_runc_container_new(const rc_runc_opts *opts, const char *id, const char *bundle,
                          rc_runc_container **ret, rc_error *err)
{
    int r;
    if (!opts || !opts->root || opts->root[0] != '/' || !bundle || bundle[0] != '/')
        return rc_error_set(err, RC_EINVAL, "runc root and bundle must be absolute paths");
    if (!rc_oci_session_id_valid(id))
        return rc_error_set(err, RC_EINVAL, "invalid container id");
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = calloc(1, sizeof *c);
    if (!c)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    c->out_fd = c->log_fd = c->init_pidfd = -1;
    c->echo_fd = opts->echo_fd;
    c->output_max = opts->output_max ? opts->output_max : RC_RUNC_DEFAULT_OUTPUT_MAX;
    c->call_timeout_ms =
        opts->call_timeout_ms > 0 ? opts->call_timeout_ms : RC_RUNC_DEFAULT_CALL_TIMEOUT_MS;
    if ((r = rc_runc_find(opts->runc_path, &c->runc, err)) < 0)
        return r;
    if ((r = ensure_root(opts->root, err)) < 0)
        return r;
    c->root = strdup(opts->root);
    c->id = strdup(id);
    c->bundle = strdup(bundle);
    c->runc_log = path_join(bundle, RC_RUNC_RUNC_LOG);
    c->pid_file = path_join(bundle, RC_RUNC_PID_FILE);
    c->output_log = path_join(bundle, RC_RUNC_OUTPUT_LOG);
    if (!c->root || !c->id || !c->bundle || !c->runc_log || !c->pid_file || !c->output_log)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    *ret = take_ptr(c);
    return 0;
}

int rc_runc_output_fd(const rc_runc_container *c)
{
    return c->out_fd;
}

pid_t rc_runc_init_pid(const rc_runc_container *c)
{
    return c->init_pid;
}

uint64_t rc_runc_output_dropped(const rc_runc_container *c)
{
    return c->dropped;
}

int rc_runc_output_errno(const rc_runc_container *c)
{
    return c->write_errno;
}

/* ---- runc's json log ------------------------------------------------------------------------- */

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* The msg of the last "error"/"fatal" line appended to the log since offset, into out. */
static bool runc_log_error(const char *path, off_t offset, char *out, size_t outsz)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(LOG_TAIL_MAX);
    bool found = false;
    off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
    if (size <= offset)
        return false;
    if (size - offset > (off_t)LOG_TAIL_MAX)
        offset = size - (off_t)LOG_TAIL_MAX;
    if (rc_buf_reserve(&text, (size_t)(size - offset), NULL) < 0)
        return false;
    ssize_t n = pread(fd, text.data, (size_t)(size - offset), offset);
    if (n <= 0)
        return false;
    text.len = (size_t)n;
    text.data[n] = '\0';
    for (char *save = NULL, *line = strtok_r(text.data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        _cleanup_json_ cJSON *j = NULL;
        const char *level = NULL, *msg = NULL;
        if (rc_json_parse(line, strlen(line), NULL, &j, NULL) < 0 ||
            rc_json_get_string(j, "level", &level, NULL) < 0 ||
            rc_json_get_string(j, "msg", &msg, NULL) < 0)
            continue;
        if (strcmp(level, "error") && strcmp(level, "fatal"))
            continue;
        snprintf(out, outsz, "%s", msg);
        found = true;
    }
    return found;
}

/* ---- spawning runc --------------------------------------------------------------------------- */

typedef struct runc_io {
    int stdio_fd;       /* >= 0: the child's stdout and stderr (create); else captured */
    bool fresh_keyring; /* create: the child joins a new session keyring (see rc_runc_create) */
    rc_buf *out;        /* captured stdout (may be NULL: discarded) */
    rc_buf errout;      /* captured stderr */
    int wstatus;
} runc_io;

static void child_exec(const char *path, char *const argv[], int devnull, int out, int errfd,
                       int report, bool fresh_keyring)
{
    static char *const envp[] = {RUNC_ENV_PATH, NULL};
    sigset_t none;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
        goto fail;
    if (fresh_keyring && syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0)
        goto fail;
    /* Nothing else of ours may reach runc (or, through create, the container). */
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        for (int fd = 3; fd < 65536; fd++)
            if (fd != report)
                close(fd);
    execve(path, argv, envp);
fail:;
    int e = errno;
    ssize_t w = write(report, &e, sizeof e);
    (void)w;
    _exit(127);
}

static void drain(int *fd, rc_buf *b)
{
    char chunk[4096];
    for (;;) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close(*fd);
            *fd = -1;
            return;
        }
        if (b)
            (void)rc_buf_append(b, chunk, (size_t)n, NULL); /* over the cap: dropped */
    }
}

/* Watch the child until it exits and its capture pipes close, or the deadline passes. */
static int watch_child(pid_t pid, int *outp, int *errp, runc_io *io, int64_t deadline,
                       rc_error *err)
{
    _cleanup_close_ int pidfd = pidfd_open_(pid);
    bool exited = false;
    while (!exited || *outp >= 0 || *errp >= 0) {
        struct pollfd p[3] = {
            {*outp, POLLIN, 0}, {*errp, POLLIN, 0}, {exited ? -1 : pidfd, POLLIN, 0}};
        int wait = poll_ms_left(deadline);
        if (pidfd < 0 && !exited && (wait < 0 || wait > 10))
            wait = 10;
        if (wait == 0 && deadline >= 0) {
            kill(pid, SIGKILL);
            (void)waitpid(pid, NULL, 0);
            return rc_error_set(err, RC_ETIMEOUT, "runc did not finish in time (killed)");
        }
        if (poll(p, 3, wait) < 0 && errno != EINTR)
            return rc_error_sys(err, RC_EIO, "poll");
        if (*outp >= 0 && p[0].revents)
            drain(outp, io->out);
        if (*errp >= 0 && p[1].revents)
            drain(errp, &io->errout);
        if (!exited) {
            pid_t w = waitpid(pid, &io->wstatus, WNOHANG);
            if (w < 0 && errno != EINTR)
                return rc_error_sys(err, RC_EIO, "waitpid(runc)");
            exited = w == pid;
        }
    }
    return 0;
}

static int make_pipe(int fds[2], rc_error *err)
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "pipe2");
    return 0;
}

static void close_pair(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* Fork and exec runc; returns after it exited (0, io->wstatus set) or failed to start. */
static int spawn_and_watch(rc_runc_container *c, char *const argv[], runc_io *io, rc_error *err)
{
    _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1};
    int r;
    if (devnull < 0)
        return rc_error_sys(err, RC_EIO, "open /dev/null");
    if ((r = make_pipe(rep, err)) < 0 || (r = make_pipe(errp, err)) < 0 ||
        (io->stdio_fd < 0 && (r = make_pipe(out, err)) < 0))
        goto done;
    pid_t pid = fork();
    if (pid < 0) {
        r = rc_error_sys(err, RC_EIO, "fork");
        goto done;
    }
    if (pid == 0)
        child_exec(c->runc, argv, devnull, io->stdio_fd >= 0 ? io->stdio_fd : out[1],
                   io->stdio_fd >= 0 ? io->stdio_fd : errp[1], rep[1], io->fresh_keyring);
    close(rep[1]);
    rep[1] = -1;
    close(out[1]);
    out[1] = -1;
    close(errp[1]);
    errp[1] = -1;
    int child_errno = 0;
    ssize_t n;
    while ((n = read(rep[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof child_errno) {
        (void)waitpid(pid, NULL, 0);
        errno = child_errno;
        r = rc_error_sys(err, RC_EIO, "cannot execute %s", c->runc);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        int fd = i ? errp[0] : out[0];
        if (fd >= 0)
            (void)fcntl(fd, F_SETFL, O_NONBLOCK);
    }
    r = watch_child(pid, &out[0], &errp[0], io, now_ms() + c->call_timeout_ms, err);
done:
    close_pair(out);
    close_pair(errp);
    close_pair(rep);
    return r;
}

/* Explain a failed call: runc's json log, else its stderr, else the exit status. */
static int call_failed(rc_runc_container *c, const char *sub, off_t log_off, runc_io *io,
                       rc_error *err)
{
    char msg[RC_ERR_MSG_MAX];
    if (!runc_log_error(c->runc_log, log_off, msg, sizeof msg)) {
        const char *e = rc_buf_cstr(&io->errout);
        size_t len = strlen(e);
        while (len > 0 && (e[len - 1] == '\n' || e[len - 1] == '\r'))
            len--;
        const char *last = e + len;
        while (last > e && last[-1] != '\n')
            last--;
        if (len > 0)
            snprintf(msg, sizeof msg, "%.*s", (int)(e + len - last), last);
        else if (WIFEXITED(io->wstatus))
            snprintf(msg, sizeof msg, "exit status %d", WEXITSTATUS(io->wstatus));
        else
            snprintf(msg, sizeof msg, "killed by signal %d", WTERMSIG(io->wstatus));
    }
    rc_redact(msg);
    return rc_error_set(err, RC_EIO, "runc %s %s failed: %s", sub, c->id, msg);
}

/* runc --root R --log L --log-format json <sub...> */
static int runc_call(rc_runc_container *c, const char *const *sub, runc_io *io, rc_error *err)
{
    const char *argv[ARGV_MAX];
    size_t n = 0;
    argv[n++] = c->runc;
    argv[n++] = "--root";
    argv[n++] = c->root;
    argv[n++] = "--log";
    argv[n++] = c->runc_log;
    argv[n++] = "--log-format";
    argv[n++] = "json";
    for (size_t i = 0; sub[i]; i++) {
        if (n + 1 >= ARGV_MAX)
            return rc_error_set(err, RC_EINVAL, "too many runc arguments");
        argv[n++] = sub[i];
    }
    argv[n] = NULL;
    io->errout = RC_BUF_INIT(STDERR_MAX);
    off_t log_off = file_size(c->runc_log);
    int r = spawn_and_watch(c, (char *const *)argv, io, err);
    if (r == 0 && !(WIFEXITED(io->wstatus) && WEXITSTATUS(io->wstatus) == 0))
        r = call_failed(c, sub[0], log_off, io, err);
    rc_buf_free(&io->errout);
    return r;
}

/* ---- output ---------------------------------------------------------------------------------- */

static void echo_out(rc_runc_container *c, const char *p, size_t n)
{
    while (c->echo_fd >= 0 && n > 0) {
        ssize_t w = write(c->echo_fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Keep what fits under the cap in output.log. A failing write (the state dir is full) loses
 * the output, never the session: the bytes are counted as dropped and the first errno kept for
 * the shim to report (rc_runc_output_errno). */
static void log_out(rc_runc_container *c, const char *p, size_t n)
{
    static const char marker[] = "\n[runcell: output cap reached, further output dropped]\n";
    size_t room = c->written < c->output_max ? c->output_max - c->written : 0;
    size_t keep = n < room ? n : room;
    if (keep > 0) {
        ssize_t w = write(c->log_fd, p, keep);
        if (w < 0) {
            if (!c->write_errno)
                c->write_errno = errno ? errno : EIO;
            c->dropped += n;
            return;
        }
        c->written += (uint64_t)w;
        keep = (size_t)w;
    }
    if (keep < n) {
        if (c->dropped == 0)
            (void)!write(c->log_fd, marker, sizeof marker - 1);
        c->dropped += n - keep;
    }
}

int rc_runc_pump(rc_runc_container *c, rc_error *err)
{
    char chunk[16384];
    if (c->out_fd < 0)
        return 0;
    for (;;) {
        ssize_t n = read(c->out_fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "read container output");
        if (n == 0) {
            close(c->out_fd);
            c->out_fd = -1;
            return 0;
        }
        echo_out(c, chunk, (size_t)n);
        log_out(c, chunk, (size_t)n);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static int read_pid_file(const char *path, pid_t *ret, rc_error *err)
{
    char buf[32] = {0};
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "open %s", path);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return rc_error_set(err, RC_EIO, "empty pid file %s", path);
    char *end = NULL;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || end == buf || v <= 1 || v > INT_MAX || (*end && *end != '\n'))
        return rc_error_set(err, RC_EPARSE, "bad pid file %s", path);
    *ret = (pid_t)v;
    return 0;
}

static int open_output(rc_runc_container *c, rc_error *err)
{
    struct stat st;
    c->log_fd = open(c->output_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (c->log_fd < 0)
        return rc_error_sys(err, RC_EIO, "open %s", c->output_log);
    if (fstat(c->log_fd, &st) == 0)
        c->written = (uint64_t)st.st_size;
    return 0;
}

int rc_runc_create(rc_runc_container *c, rc_error *err)
{
    /* runc's own per-container session keyring would be owned by the container's mapped root,
     * which every session shares (RUNCELL_UID_BASE): the kernel's per-uid key quota (200 by
     * default) would then cap the host at ~200 sessions. Instead the runc child joins a fresh
     * anonymous session keyring (made by root, charged to root) and --no-new-keyring hands
     * that one, empty and private to this container, to the container. */
    const char *sub[] = {"create",     "--no-new-keyring", "--bundle", c->bundle,
                         "--pid-file", c->pid_file,        c->id,      NULL};
    int pipefd[2] = {-1, -1};
    int r;
    if (c->out_fd >= 0 || c->init_pid > 0)
        return rc_error_set(err, RC_EINVAL, "container %s already created", c->id);
    if ((r = open_output(c, err)) < 0 || (r = make_pipe(pipefd, err)) < 0)
        return r;
    runc_io io = {.stdio_fd = pipefd[1], .fresh_keyring = true};
    (void)unlink(c->pid_file);
    /* runc would create its log world-readable. */
    int lfd = open(c->runc_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd >= 0)
        close(lfd);
    r = runc_call(c, sub, &io, err);
    close(pipefd[1]);
    if (r < 0) {
        close(pipefd[0]);
        return r;
    }
    c->out_fd = pipefd[0];
    (void)fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
    if ((r = read_pid_file(c->pid_file, &c->init_pid, err)) < 0)
        return r;
    c->init_pidfd = pidfd_open_(c->init_pid);
    return 0;
}

int rc_runc_start(rc_runc_container *c, rc_error *err)
{
    const char *sub[] = {"start", c->id, NULL};
    runc_io io = {.stdio_fd = -1};
    return runc_call(c, sub, &io, err);
}

static int parse_status(const char *s)
{
    static const char *const names[] = {"creating", "created", "running", "paused", "stopped"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0)
            return RC_RUNC_CREATING + i;
    return -1;
}

static bool state_dir_exists(rc_runc_container *c)
{
    _cleanup_free_ char *p = path_join(c->root, c->id);
    struct stat st;
    return p && lstat(p, &st) == 0;
}

int rc_runc_state(rc_runc_container *c, int *ret_status, pid_t *ret_pid, rc_error *err)
{
    const char *sub[] = {"state", c->id, NULL};
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(CAPTURE_MAX);
    _cleanup_json_ cJSON *j = NULL;
    const char *status = NULL;
    int64_t pid = 0;
    runc_io io = {.stdio_fd = -1, .out = &out};
    if (!state_dir_exists(c)) {
        *ret_status = RC_RUNC_ABSENT;
        if (ret_pid)
            *ret_pid = 0;
        return 0;
    }
    int r = runc_call(c, sub, &io, err);
    if (r < 0)
        return r;
    if ((r = rc_json_parse(out.data ? out.data : "", out.len, NULL, &j, err)) < 0 ||
        (r = rc_json_get_string(j, "status", &status, err)) < 0 ||
        (r = rc_json_get_int64_opt(j, "pid", &pid, err)) < 0)
        return rc_error_wrap(err, RC_EPARSE, "runc state output");
    int st = parse_status(status);
    if (st < 0 || pid < 0 || pid > INT_MAX)
        return rc_error_set(err, RC_EPARSE, "runc state: unknown status or pid");
    *ret_status = st;
    if (ret_pid)
        *ret_pid = (pid_t)pid;
    return 0;
}

int rc_runc_kill(rc_runc_container *c, int sig, bool all, rc_error *err)
{
    char num[16];
    snprintf(num, sizeof num, "%d", sig);
    const char *with_all[] = {"kill", "--all", c->id, num, NULL};
    const char *plain[] = {"kill", c->id, num, NULL};
    runc_io io = {.stdio_fd = -1};
    return runc_call(c, all ? with_all : plain, &io, err);
}

/* One step of waiting for the init: 1 exited, 0 still running, negative on error. */
static int init_check(rc_runc_container *c, rc_error *err)
{
    if (c->reaped)
        return 1;
    pid_t w = waitpid(c->init_pid, &c->wstatus, WNOHANG);
    if (w == c->init_pid) {
        c->reaped = true;
        return 1;
    }
    if (w == 0)
        return 0;
    if (errno == EINTR)
        return 0;
    if (errno != ECHILD)
        return rc_error_sys(err, RC_EIO, "waitpid(container init)");
    /* Not our child (another process created it): fall back on the process's existence. */
    if (kill(c->init_pid, 0) < 0 && errno == ESRCH) {
        c->reaped = true;
        c->wstatus = 0;
        return 1;
    }
    return 0;
}

int rc_runc_wait(rc_runc_container *c, int64_t timeout_ms, int *ret_wstatus, rc_error *err)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    int r;
    if (c->init_pid <= 0)
        return rc_error_set(err, RC_EINVAL, "container %s was not created here", c->id);
    while ((r = init_check(c, err)) == 0) {
        struct pollfd p[2] = {{c->out_fd, POLLIN, 0}, {c->init_pidfd, POLLIN, 0}};
        int wait = poll_ms_left(deadline);
        if (deadline >= 0 && wait == 0)
            return rc_error_set(err, RC_ETIMEOUT, "container %s still running", c->id);
        if (c->init_pidfd < 0 && (wait < 0 || wait > 20))
            wait = 20;
        if (poll(p, 2, wait) < 0 && errno != EINTR)
            return rc_error_sys(err, RC_EIO, "poll");
        if (c->out_fd >= 0 && p[0].revents && (r = rc_runc_pump(c, err)) < 0)
            return r;
    }
    if (r < 0)
        return r;
    /* The init is gone; whatever it (or its children) wrote is still in the pipe. */
    if ((r = rc_runc_pump(c, err)) < 0)
        return r;
    if (ret_wstatus)
        *ret_wstatus = c->wstatus;
    return 0;
}

int rc_runc_stop(rc_runc_container *c, int grace_ms, int *ret_wstatus, rc_error *err)
{
    int status = RC_RUNC_ABSENT, r;
    pid_t pid = 0;
    rc_error ignored;
    if ((r = rc_runc_state(c, &status, &pid, err)) < 0)
        return r;
    if (c->init_pid <= 0 && pid > 0) { /* created by another process: watch it by pid */
        c->init_pid = pid;
        c->init_pidfd = pidfd_open_(pid);
    }
    if (status == RC_RUNC_RUNNING && grace_ms > 0) {
        (void)rc_runc_kill(c, SIGTERM, false, &ignored); /* it may exit meanwhile */
        r = rc_runc_wait(c, grace_ms, ret_wstatus, err);
        if (r != -RC_ETIMEOUT)
            return r;
    }
    if (status == RC_RUNC_RUNNING || status == RC_RUNC_CREATED || status == RC_RUNC_PAUSED)
        (void)rc_runc_kill(c, SIGKILL, true, &ignored);
    if (c->init_pid <= 0)
        return 0;
    return rc_runc_wait(c, STOP_KILL_WAIT_MS, ret_wstatus, err);
}

int rc_runc_delete(rc_runc_container *c, rc_error *err)
{
    const char *sub[] = {"delete", "--force", c->id, NULL};
    runc_io io = {.stdio_fd = -1};
    if (!state_dir_exists(c))
        return 0;
    int r = runc_call(c, sub, &io, err);
    if (r == 0 && c->init_pid > 0 && !c->reaped)
        (void)init_check(c, NULL);
    return r;
}
