/* executor.c - the tool executor (see executor.h): frames and messages, the runner's client
 * (start, run, restart, cancel) and the executor's own main loop.
 *
 * The client owns the only link between the two processes, a SOCK_STREAM socketpair. Every wait
 * on it has a deadline and watches the cancel self-pipe, so a dead, stuck or malicious executor
 * costs the runner one error result and a restart, never a hang. Everything read from the
 * executor is outside input: frames are bounded (RC_EXECUTOR_FRAME_MAX) and answers validated
 * before they become a result the runner posts. */
#include "executor.h"

#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "tools_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define READ_CHUNK    65536
#define PROTOCOL      1 /* in the ready message: the sibling program must be this build's */
#define SIBLING_NAME  "runcell-tool-executor"
#define FRAME_BUF_MAX (RC_EXECUTOR_FRAME_MAX + RC_EXECUTOR_FRAME_HEADER)
#define KEEP_BUF_MAX  ((size_t)256 * 1024)

static const char *const EXECUTOR_TOOLS[] = {"read", "write", "edit", "glob", "grep", NULL};

bool rc_executor_owns(const char *name)
{
    for (size_t i = 0; name && EXECUTOR_TOOLS[i]; i++)
        if (strcmp(EXECUTOR_TOOLS[i], name) == 0)
            return true;
    return false;
}

/* ---- frames ------------------------------------------------------------------------------- */

int rc_executor_frame_parse(const void *buf, size_t n, size_t max, const char **ret_payload,
                            size_t *ret_len, size_t *ret_used, rc_error *err)
{
    const unsigned char *u = buf;
    if (n < RC_EXECUTOR_FRAME_HEADER)
        return 0;
    size_t len = (size_t)u[0] << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | (size_t)u[3];
    if (len == 0)
        return rc_error_set(err, RC_EPARSE, "executor frame: empty");
    if (len > max)
        return rc_error_set(err, RC_ETOOBIG, "executor frame: %zu bytes (at most %zu)", len, max);
    if (n - RC_EXECUTOR_FRAME_HEADER < len)
        return 0;
    *ret_payload = (const char *)u + RC_EXECUTOR_FRAME_HEADER;
    *ret_len = len;
    *ret_used = RC_EXECUTOR_FRAME_HEADER + len;
    return 1;
}

int rc_executor_frame_append(rc_buf *out, const char *payload, size_t len, rc_error *err)
{
    unsigned char h[RC_EXECUTOR_FRAME_HEADER] = {(unsigned char)(len >> 24),
                                                 (unsigned char)(len >> 16),
                                                 (unsigned char)(len >> 8), (unsigned char)len};
    if (len == 0 || len > RC_EXECUTOR_FRAME_MAX)
        return rc_error_set(err, RC_ETOOBIG, "executor frame: %zu bytes (at most %zu)", len,
                            RC_EXECUTOR_FRAME_MAX);
    int r = rc_buf_append(out, h, sizeof h, err);
    return r < 0 ? r : rc_buf_append(out, payload, len, err);
}

/* Print obj as the payload of one frame appended to out. */
static int frame_json(rc_buf *out, const cJSON *obj, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(RC_EXECUTOR_FRAME_MAX);
    int r = rc_json_print(obj, &text, err);
    return r < 0 ? r : rc_executor_frame_append(out, text.data, text.len, err);
}

static int parse_payload(const char *payload, size_t len, cJSON **ret, rc_error *err)
{
    static const rc_json_limits lim = {.max_size = RC_EXECUTOR_FRAME_MAX,
                                       .max_depth = RC_JSON_MAX_DEPTH_LIMIT,
                                       .allow_duplicates = true};
    cJSON *j = NULL;
    int r = rc_json_parse(payload, len, &lim, &j, err);
    if (r < 0)
        return r;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return rc_error_set(err, RC_EPARSE, "executor message: not an object");
    }
    *ret = j;
    return 0;
}

/* ---- messages ----------------------------------------------------------------------------- */

int rc_executor_request_encode(const char *name, const cJSON *input, rc_buf *out, rc_error *err)
{
    _cleanup_json_ cJSON *msg = cJSON_CreateObject();
    if (!msg || !cJSON_AddStringToObject(msg, "name", name))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (cJSON_IsObject(input) && !cJSON_AddItemReferenceToObject(msg, "input", (cJSON *)input))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    return frame_json(out, msg, err);
}

int rc_executor_request_decode(const char *payload, size_t len, char **ret_name, cJSON **ret_input,
                               rc_error *err)
{
    _cleanup_json_ cJSON *msg = NULL;
    const char *name = NULL;
    int r = parse_payload(payload, len, &msg, err);
    if (r < 0)
        return r;
    if (rc_json_get_string(msg, "name", &name, err) < 0)
        return rc_error_set(err, RC_EPARSE, "executor request: no name");
    cJSON *input = cJSON_DetachItemFromObjectCaseSensitive(msg, "input");
    if (!input && !(input = cJSON_CreateObject()))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    char *n = strdup(name);
    if (!n) {
        cJSON_Delete(input);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    *ret_name = n;
    *ret_input = input;
    return 0;
}

int rc_executor_answer_encode(const rc_tool_result *res, const char *internal_error, rc_buf *out,
                              rc_error *err)
{
    _cleanup_json_ cJSON *msg = cJSON_CreateObject();
    if (!msg)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (!res) {
        if (!cJSON_AddStringToObject(msg, "error", internal_error ? internal_error : "failed"))
            return rc_error_set(err, RC_ENOMEM, "out of memory");
    } else if (!cJSON_AddBoolToObject(msg, "is_error", res->is_error != 0) ||
               !cJSON_AddItemReferenceToObject(msg, "content", res->content)) {
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    return frame_json(out, msg, err);
}

static bool block_valid(const cJSON *b)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
    if (!cJSON_IsObject(b) || !cJSON_IsString(type))
        return false;
    if (strcmp(type->valuestring, "text") == 0)
        return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(b, "text"));
    if (strcmp(type->valuestring, "image") == 0)
        return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(b, "source"));
    return false;
}

int rc_executor_answer_decode(const char *payload, size_t len, rc_tool_result *ret, rc_error *err)
{
    _cleanup_json_ cJSON *msg = NULL;
    int r = parse_payload(payload, len, &msg, err);
    if (r < 0)
        return r;
    const cJSON *ierr = cJSON_GetObjectItemCaseSensitive(msg, "error");
    if (cJSON_IsString(ierr))
        return rc_error_set(err, RC_EIO, "%s", ierr->valuestring);
    const cJSON *is_error = cJSON_GetObjectItemCaseSensitive(msg, "is_error");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (!cJSON_IsBool(is_error) || !cJSON_IsArray(content) || cJSON_GetArraySize(content) < 1)
        return rc_error_set(err, RC_EPARSE, "executor answer: malformed");
    const cJSON *b;
    cJSON_ArrayForEach(b, content)
    {
        if (!block_valid(b))
            return rc_error_set(err, RC_EPARSE, "executor answer: malformed content block");
    }
    rc_tool_result_clear(ret);
    ret->content = cJSON_DetachItemFromObjectCaseSensitive(msg, "content");
    ret->is_error = cJSON_IsTrue(is_error);
    return 0;
}

/* ---- socket I/O with deadlines -------------------------------------------------------------- */

enum io_end { IO_OK = 0, IO_EOF, IO_BROKEN, IO_TIMEOUT, IO_CANCEL };

static int64_t now_ms(void)
{
    return rc_tools_now_ms();
}

/* Wait until fd has ev, the deadline passes (0 = none) or cancel_fd is readable (-1 = none). */
static int wait_fd(int fd, short ev, int64_t deadline, int cancel_fd)
{
    for (;;) {
        struct pollfd pf[2] = {{.fd = fd, .events = ev}, {.fd = cancel_fd, .events = POLLIN}};
        int timeout = -1;
        if (deadline > 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return IO_TIMEOUT;
            timeout = left > 60000 ? 60000 : (int)left;
        }
        int n = poll(pf, cancel_fd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR)
            return IO_BROKEN;
        if (n <= 0)
            continue;
        if (cancel_fd >= 0 && pf[1].revents)
            return IO_CANCEL;
        if (pf[0].revents)
            return IO_OK;
    }
}

static int write_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        int w = wait_fd(fd, POLLOUT, deadline, -1);
        if (w != IO_OK)
            return w;
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return errno == EPIPE || errno == ECONNRESET ? IO_EOF : IO_BROKEN;
        }
        p += k;
        n -= (size_t)k;
    }
    return IO_OK;
}

/* Read until in holds one complete frame: IO_OK with its payload (valid until in changes). */
static int read_frame(int fd, rc_buf *in, int64_t deadline, int cancel_fd, const char **ret_payload,
                      size_t *ret_len)
{
    for (;;) {
        size_t used = 0;
        int r = rc_executor_frame_parse(in->data, in->len, RC_EXECUTOR_FRAME_MAX, ret_payload,
                                        ret_len, &used, NULL);
        if (r > 0)
            return used == in->len ? IO_OK : IO_BROKEN; /* strict alternation: nothing extra */
        if (r < 0)
            return IO_BROKEN;
        int w = wait_fd(fd, POLLIN, deadline, cancel_fd);
        if (w != IO_OK)
            return w;
        size_t room = in->max - in->len < READ_CHUNK ? in->max - in->len : READ_CHUNK;
        if (room == 0 || rc_buf_reserve(in, room, NULL) < 0)
            return IO_BROKEN;
        ssize_t k = recv(fd, in->data + in->len, room, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k < 0)
            return errno == ECONNRESET ? IO_EOF : IO_BROKEN;
        if (k == 0)
            return IO_EOF;
        in->len += (size_t)k;
        in->data[in->len] = '\0';
    }
}

/* ---- the runner's client -------------------------------------------------------------------- */

struct rc_executor {
    char *exe_path; /* the program to exec; /proc/self/exe when no sibling works */
    bool sibling;   /* exe_path is runcell-tool-executor next to the runner */
    char **env;     /* the executor's environment: the tools' scrubbed one */
    char *config;   /* the toolbox configuration frame payload */
    bool set_ids;
    uid_t uid;
    gid_t gid;
    int wait_ms;
    _Atomic pid_t pid; /* 0 when none runs */
    int sock;
    rc_buf in;
    atomic_int cancelled;
    int cancel_rd, cancel_wr;
    atomic_uint restarts;
};

static void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

static cJSON *strv_json(const char *const *v)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && v && v[i]; i++) {
        cJSON *s = cJSON_CreateString(v[i]);
        if (!s) {
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, s);
    }
    return a;
}

/* The part of rc_toolbox_config the executor's toolbox needs (its ids are the process's own). */
static int config_json(const rc_toolbox_config *tc, char **ret, rc_error *err)
{
    _cleanup_json_ cJSON *c = cJSON_CreateObject();
    cJSON *allowed = strv_json(tc->allowed_roots), *ro = strv_json(tc->read_only_roots);
    if (!c || !allowed || !ro) {
        cJSON_Delete(allowed);
        cJSON_Delete(ro);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    cJSON_AddItemToObject(c, "allowed_roots", allowed);
    cJSON_AddItemToObject(c, "read_only_roots", ro);
    if (!cJSON_AddStringToObject(c, "workdir", tc->workdir) ||
        !cJSON_AddNumberToObject(c, "max_file_bytes", (double)tc->max_file_bytes) ||
        !cJSON_AddNumberToObject(c, "call_timeout_ms", tc->call_timeout_ms) ||
        !cJSON_AddNumberToObject(c, "grep_timeout_ms", tc->grep_timeout_ms) ||
        !cJSON_AddNumberToObject(c, "rg_mode", tc->rg_mode) ||
        !cJSON_AddBoolToObject(c, "read_text_only", tc->read_text_only))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (!(*ret = cJSON_PrintUnformatted(c)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    return 0;
}

static void reap(rc_executor *ex, int *ret_status)
{
    pid_t pid = atomic_load(&ex->pid);
    int status = -1;
    if (ex->sock >= 0)
        close(ex->sock);
    ex->sock = -1;
    rc_buf_reset(&ex->in);
    if (pid <= 0) {
        if (ret_status)
            *ret_status = -1;
        return;
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    atomic_store(&ex->pid, 0);
    if (ret_status)
        *ret_status = status;
}

static const char *status_text(int status, char *buf, size_t n)
{
    if (status >= 0 && WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d", WTERMSIG(status));
    else if (status >= 0 && WIFEXITED(status))
        snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
    else
        snprintf(buf, n, "status unknown");
    return buf;
}

/* Check the ready answer: the executor really runs as the tool user. */
static int check_ready(rc_executor *ex, const char *payload, size_t len, rc_error *err)
{
    _cleanup_json_ cJSON *msg = NULL;
    int64_t uid = -1, gid = -1;
    bool ready = false;
    if (parse_payload(payload, len, &msg, err) < 0 ||
        rc_json_get_bool(msg, "ready", &ready, err) < 0 || !ready) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(msg, "error");
        return rc_error_set(err, RC_EIO, "tool executor failed to start: %s",
                            cJSON_IsString(e) ? e->valuestring : "no ready message");
    }
    int64_t proto = 0;
    if (rc_json_get_int64(msg, "uid", &uid, err) < 0 ||
        rc_json_get_int64(msg, "gid", &gid, err) < 0 ||
        rc_json_get_int64(msg, "protocol", &proto, err) < 0)
        return rc_error_set(err, RC_EPARSE, "tool executor: malformed ready message");
    if (proto != PROTOCOL)
        return rc_error_set(err, RC_EIO, "tool executor speaks protocol %lld, not %d",
                            (long long)proto, PROTOCOL);
    if (ex->set_ids && (uid != (int64_t)ex->uid || gid != (int64_t)ex->gid))
        return rc_error_set(err, RC_EIO, "tool executor runs as %lld:%lld, not the tool user",
                            (long long)uid, (long long)gid);
    return 0;
}

static int spawn(rc_executor *ex, rc_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return rc_error_sys(err, RC_EIO, "tool executor: socketpair");
    _cleanup_close_ int child_end = sv[1];
    ex->sock = sv[0];
    char *argv[] = {ex->sibling ? SIBLING_NAME : "runcell-runner", RC_EXECUTOR_ARG, NULL};
    rc_spawn s = {.path = ex->exe_path,
                  .argv = argv,
                  .envp = ex->env,
                  .cwd = "/",
                  .stdin_fd = child_end,
                  .stdout_fd = -1,
                  .stderr_fd = -1,
                  .set_ids = ex->set_ids,
                  .uid = ex->uid,
                  .gid = ex->gid};
    pid_t pid = 0;
    int r = rc_toolenv_spawn(&s, &pid, err);
    if (r < 0) {
        reap(ex, NULL);
        return rc_error_wrap(err, -r, "cannot start the tool executor");
    }
    atomic_store(&ex->pid, pid);
    return 0;
}

/* Spawn, send the configuration, wait for ready. On failure nothing runs. */
static int launch_once(rc_executor *ex, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(RC_EXECUTOR_FRAME_MAX + 16);
    const char *payload = NULL;
    size_t len = 0;
    int64_t deadline = now_ms() + RC_EXECUTOR_START_MS;
    int r = spawn(ex, err);
    if (r < 0)
        return r;
    if ((r = rc_executor_frame_append(&out, ex->config, strlen(ex->config), err)) < 0) {
        reap(ex, NULL);
        return r;
    }
    int io = write_all(ex->sock, out.data, out.len, deadline);
    if (io == IO_OK)
        io = read_frame(ex->sock, &ex->in, deadline, -1, &payload, &len);
    if (io != IO_OK) {
        char st[64];
        int status;
        reap(ex, &status);
        return rc_error_set(err, RC_EIO, "tool executor did not start (%s)",
                            io == IO_TIMEOUT ? "no answer" : status_text(status, st, sizeof st));
    }
    r = check_ready(ex, payload, len, err);
    rc_buf_reset(&ex->in);
    if (r < 0)
        reap(ex, NULL);
    return r;
}

/* A sibling program that fails to start (missing for the tool user, another build) is given up
 * for the runner's own binary, which always matches. */
static int launch(rc_executor *ex, rc_error *err)
{
    rc_error cause = {0};
    if (!ex->sibling)
        return launch_once(ex, err);
    if (launch_once(ex, &cause) == 0)
        return 0;
    rc_log_warn("%s: %s; using the runner's own binary", SIBLING_NAME, cause.msg);
    free(ex->exe_path);
    ex->sibling = false;
    if (!(ex->exe_path = strdup("/proc/self/exe")))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    return launch_once(ex, err);
}

/* runcell-tool-executor in the directory of the runner's binary, if it is a regular executable
 * that only root or the runner's own user can change; else the runner's binary itself. */
static int default_exe(rc_executor *ex, rc_error *err)
{
    char self[PATH_MAX], path[PATH_MAX + sizeof SIBLING_NAME];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    struct stat st;
    char *slash;

    if (n > 0) {
        self[n] = '\0';
        if ((slash = strrchr(self, '/')))
            *slash = '\0';
        snprintf(path, sizeof path, "%s/%s", self, SIBLING_NAME);
        if (slash && stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) &&
            !(st.st_mode & 022) && (st.st_uid == 0 || st.st_uid == geteuid())) {
            ex->sibling = true;
            return (ex->exe_path = strdup(path)) ? 0
                                                 : rc_error_set(err, RC_ENOMEM, "out of memory");
        }
    }
    return (ex->exe_path = strdup("/proc/self/exe"))
               ? 0
               : rc_error_set(err, RC_ENOMEM, "out of memory");
}

static void restart_after(rc_executor *ex, const char *why)
{
    char st[64];
    int status;
    rc_error e = {0};
    reap(ex, &status);
    atomic_fetch_add(&ex->restarts, 1);
    rc_log_warn("tool executor %s (%s); restarting it", why, status_text(status, st, sizeof st));
    if (atomic_load(&ex->cancelled))
        return;
    if (launch(ex, &e) < 0)
        rc_log_error("%s", e.msg);
    else
        rc_log_info("tool executor restarted (pid %d)", (int)atomic_load(&ex->pid));
}

/* A dead executor (EOF or stray bytes on its socket) found between calls. */
static bool alive(rc_executor *ex)
{
    if (ex->sock < 0 || atomic_load(&ex->pid) <= 0)
        return false;
    struct pollfd pf = {.fd = ex->sock, .events = POLLIN};
    return poll(&pf, 1, 0) == 0;
}

int rc_executor_start(const rc_executor_config *cfg, rc_executor **ret, rc_error *err)
{
    static const char *const scrub[] = {"RUNCELL_", NULL};
    if (!cfg || !cfg->tools || !cfg->tools->workdir)
        return rc_error_set(err, RC_EINVAL, "tool executor: no toolbox configuration");
    rc_executor *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    ex->sock = ex->cancel_rd = ex->cancel_wr = -1;
    ex->in = RC_BUF_INIT(FRAME_BUF_MAX);
    ex->set_ids = cfg->tools->set_ids;
    ex->uid = cfg->tools->uid;
    ex->gid = cfg->tools->gid;
    int call_ms =
        cfg->tools->call_timeout_ms > 0 ? cfg->tools->call_timeout_ms : RC_TOOLS_CALL_TIMEOUT_MS;
    ex->wait_ms = cfg->call_wait_ms > 0 ? cfg->call_wait_ms : call_ms + RC_EXECUTOR_MARGIN_MS;
    int fds[2], r;
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        r = rc_error_sys(err, RC_EIO, "tool executor: pipe2");
        goto fail;
    }
    ex->cancel_rd = fds[0];
    ex->cancel_wr = fds[1];
    if (cfg->exe_path && !(ex->exe_path = strdup(cfg->exe_path))) {
        r = rc_error_set(err, RC_ENOMEM, "out of memory");
        goto fail;
    }
    if (!cfg->exe_path && (r = default_exe(ex, err)) < 0)
        goto fail;
    if ((r = rc_toolenv_build(cfg->tools->env ? cfg->tools->env : (const char *const *)environ,
                              scrub, NULL, &ex->env, err)) < 0 ||
        (r = config_json(cfg->tools, &ex->config, err)) < 0 || (r = launch(ex, err)) < 0)
        goto fail;
    *ret = ex;
    return 0;
fail:
    rc_executor_free(ex);
    return r;
}

pid_t rc_executor_pid(const rc_executor *ex)
{
    return ex ? atomic_load(&((rc_executor *)ex)->pid) : 0;
}

unsigned rc_executor_restarts(const rc_executor *ex)
{
    return ex ? atomic_load(&((rc_executor *)ex)->restarts) : 0;
}

void rc_executor_cancel(rc_executor *ex)
{
    if (!ex)
        return;
    int saved = errno;
    atomic_store(&ex->cancelled, 1);
    ssize_t n = write(ex->cancel_wr, "x", 1);
    (void)n; /* readable once written; a full pipe is just as readable */
    errno = saved;
}

void rc_executor_free(rc_executor *ex)
{
    if (!ex)
        return;
    reap(ex, NULL);
    rc_buf_free(&ex->in);
    free(ex->exe_path);
    free(ex->config);
    strv_free(ex->env);
    if (ex->cancel_rd >= 0)
        close(ex->cancel_rd);
    if (ex->cancel_wr >= 0)
        close(ex->cancel_wr);
    free(ex);
}

/* Wait for the answer; a cancel forwards SIGUSR1 and shortens the wait to the grace period. */
static int await_answer(rc_executor *ex, const char **payload, size_t *len, bool *ret_cancelled)
{
    int64_t deadline = now_ms() + ex->wait_ms;
    int io = read_frame(ex->sock, &ex->in, deadline, ex->cancel_rd, payload, len);
    if (io != IO_CANCEL)
        return io;
    *ret_cancelled = true;
    pid_t pid = atomic_load(&ex->pid);
    if (pid > 0)
        kill(pid, SIGUSR1);
    int64_t grace = now_ms() + RC_EXECUTOR_CANCEL_GRACE_MS;
    return read_frame(ex->sock, &ex->in, grace < deadline ? grace : deadline, -1, payload, len);
}

static int call_once(rc_executor *ex, const rc_buf *req, rc_tool_result *ret, rc_error *err)
{
    const char *payload = NULL;
    size_t len = 0;
    bool cancelled = false;
    int io = write_all(ex->sock, req->data, req->len, now_ms() + ex->wait_ms);
    if (io == IO_EOF || io == IO_BROKEN)
        return 1; /* never reached the executor: the caller restarts it and retries */
    if (io == IO_OK)
        io = await_answer(ex, &payload, &len, &cancelled);
    if (io == IO_OK) {
        rc_error cause = {0};
        int r = rc_executor_answer_decode(payload, len, ret, &cause);
        rc_buf_reset(&ex->in);
        if (r == 0)
            return 0;
        if (r == -RC_EIO) /* the executor's own internal failure */
            return rc_tools_result_errorf(ret, err, "Error: %s", cause.msg);
        restart_after(ex, "sent a malformed answer");
        return rc_tools_result_errorf(ret, err, "Error: the tool executor sent a malformed answer");
    }
    if (cancelled) {
        restart_after(ex, "did not stop after a cancel");
        return rc_tools_result_errorf(ret, err, "Error: the tool call was cancelled");
    }
    if (io == IO_TIMEOUT) {
        restart_after(ex, "did not answer in time");
        return rc_tools_result_errorf(
            ret, err, "Error: the tool executor did not answer within %d ms", ex->wait_ms);
    }
    restart_after(ex, "died during a call");
    return rc_tools_result_errorf(
        ret, err, "Error: the tool executor died during the call; it was restarted");
}

int rc_executor_run(rc_executor *ex, const char *name, const cJSON *input, rc_tool_result *ret,
                    rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf req = RC_BUF_INIT(RC_EXECUTOR_FRAME_MAX + 16);
    rc_error cause = {0};
    if (!rc_executor_owns(name))
        return rc_error_set(err, RC_ENOTFOUND, "not an executor tool");
    if (rc_executor_request_encode(name, input, &req, &cause) < 0)
        return rc_tools_result_errorf(ret, err, "Error: %s", cause.msg);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (atomic_load(&ex->cancelled))
            return rc_tools_result_errorf(ret, err, "%s: This operation was aborted", name);
        if (!alive(ex)) {
            if (atomic_load(&ex->pid) > 0 || ex->sock >= 0)
                restart_after(ex, "exited");
            else if (launch(ex, &cause) < 0)
                return rc_tools_result_errorf(ret, err, "Error: %s", cause.msg);
            if (ex->sock < 0)
                return rc_tools_result_errorf(ret, err, "Error: the tool executor is not running");
        }
        int r = call_once(ex, &req, ret, err);
        if (ex->in.cap > KEEP_BUF_MAX) /* do not keep a large answer's buffer while idle */
            rc_buf_free(&ex->in);
        if (r <= 0)
            return r;
        restart_after(ex, "closed its channel");
    }
    return rc_tools_result_errorf(ret, err, "Error: the tool executor is not running");
}

/* ---- the executor's side -------------------------------------------------------------------- */

static rc_toolbox *volatile served_toolbox;
static volatile sig_atomic_t cancel_requested;

static void on_cancel_signal(int sig)
{
    (void)sig;
    cancel_requested = 1;
    rc_toolbox *tb = served_toolbox;
    if (tb)
        rc_toolbox_cancel(tb);
}

static int send_frame(int fd, rc_buf *out)
{
    return write_all(fd, out->data, out->len, 0) == IO_OK ? 0 : -RC_EIO;
}

static int serve_one(int fd, rc_toolbox *tb, const char *payload, size_t len, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(RC_EXECUTOR_FRAME_MAX + 16);
    _cleanup_free_ char *name = NULL;
    _cleanup_json_ cJSON *input = NULL;
    rc_tool_result res = {0};
    rc_error cause = {0};
    int r = rc_executor_request_decode(payload, len, &name, &input, &cause);
    if (r == 0 && !rc_executor_owns(name))
        r = rc_error_set(&cause, RC_EINVAL, "the tool executor does not run %s", name);
    if (r == 0)
        r = rc_toolbox_run(tb, name, input, &res, &cause);
    if (r == 0 && rc_executor_answer_encode(&res, NULL, &out, &cause) < 0) {
        rc_buf_reset(&out);
        r = -RC_ENOMEM;
    }
    rc_tool_result_clear(&res);
    if (r < 0 && (r = rc_executor_answer_encode(NULL, cause.msg, &out, err)) < 0)
        return r;
    return send_frame(fd, &out) < 0 ? rc_error_set(err, RC_EIO, "executor: cannot answer") : 0;
}

int rc_executor_serve(int fd, rc_toolbox *tb, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf in = RC_BUF_INIT(FRAME_BUF_MAX);
    for (;;) {
        const char *payload = NULL;
        size_t len = 0;
        int io = read_frame(fd, &in, 0, -1, &payload, &len);
        if (io == IO_EOF && in.len == 0)
            return 0;
        if (io != IO_OK)
            return rc_error_set(err, RC_EIO, "executor: broken channel");
        int r = serve_one(fd, tb, payload, len, err);
        rc_buf_reset(&in);
        if (in.cap > KEEP_BUF_MAX)
            rc_buf_free(&in);
        if (r < 0)
            return r;
    }
}

static int strv_from_json(const cJSON *a, char ***ret, rc_error *err)
{
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    char **v = calloc(n + 1, sizeof(char *));
    const cJSON *s;
    if (!v)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    cJSON_ArrayForEach(s, a)
    {
        if (!cJSON_IsString(s) || !(v[i++] = strdup(s->valuestring))) {
            strv_free(v);
            return rc_error_set(err, RC_EINVAL, "executor configuration: bad root list");
        }
    }
    *ret = v;
    return 0;
}

static int toolbox_from_config(const char *payload, size_t len, rc_toolbox **ret, rc_error *err)
{
    static const char *const scrub[] = {"RUNCELL_", NULL};
    _cleanup_json_ cJSON *c = NULL;
    char **allowed = NULL, **ro = NULL;
    const char *workdir = NULL;
    int64_t max_file = 0, call_ms = 0, grep_ms = 0, rg = 0;
    bool text_only = false;
    int r = parse_payload(payload, len, &c, err);
    if (r < 0)
        return r;
    if (rc_json_get_string(c, "workdir", &workdir, err) < 0 ||
        rc_json_get_int64(c, "max_file_bytes", &max_file, err) < 0 ||
        rc_json_get_int64(c, "call_timeout_ms", &call_ms, err) < 0 ||
        rc_json_get_int64(c, "grep_timeout_ms", &grep_ms, err) < 0 ||
        rc_json_get_int64(c, "rg_mode", &rg, err) < 0 ||
        rc_json_get_bool(c, "read_text_only", &text_only, err) < 0)
        return rc_error_set(err, RC_EINVAL, "executor configuration: malformed");
    if ((r = strv_from_json(cJSON_GetObjectItemCaseSensitive(c, "allowed_roots"), &allowed, err)) <
            0 ||
        (r = strv_from_json(cJSON_GetObjectItemCaseSensitive(c, "read_only_roots"), &ro, err)) <
            0) {
        strv_free(allowed);
        return r;
    }
    rc_toolbox_config tc = {.workdir = workdir,
                            .allowed_roots = (const char *const *)allowed,
                            .read_only_roots = (const char *const *)ro,
                            .scrub_prefixes = scrub,
                            .max_file_bytes = max_file,
                            .call_timeout_ms = (int)call_ms,
                            .grep_timeout_ms = (int)grep_ms,
                            .rg_mode = (int)rg,
                            .read_text_only = text_only};
    r = rc_toolbox_new(&tc, ret, err);
    strv_free(allowed);
    strv_free(ro);
    return r;
}

/* Nothing but the socket, and no ANTHROPIC_* even if the runner's scrub missed one. */
static void executor_harden(int fd)
{
    if (fd != 0) {
        dup2(fd, 0);
        close(fd);
    }
    (void)syscall(SYS_close_range, 3u, ~0u, 0u);
    (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    for (char **e = environ; e && *e;) {
        if (rc_toolenv_scrubbed(*e, NULL)) {
            char name[256];
            const char *eq = strchr(*e, '=');
            size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
            if (n >= sizeof name)
                n = sizeof name - 1;
            memcpy(name, *e, n);
            name[n] = '\0';
            if (unsetenv(name) < 0)
                e++;
            continue;
        }
        e++;
    }
}

int rc_executor_main(int fd)
{
    _cleanup_(rc_buf_free) rc_buf in = RC_BUF_INIT(FRAME_BUF_MAX);
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(4096);
    const char *payload = NULL;
    size_t len = 0;
    rc_toolbox *tb = NULL;
    rc_error err = {0};
    struct sigaction sa = {.sa_handler = on_cancel_signal, .sa_flags = SA_RESTART};

    executor_harden(fd);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (read_frame(0, &in, 0, -1, &payload, &len) != IO_OK)
        return 1;
    _cleanup_json_ cJSON *ready = cJSON_CreateObject();
    if (!ready)
        return 1;
    if (toolbox_from_config(payload, len, &tb, &err) < 0) {
        cJSON_AddStringToObject(ready, "error", err.msg);
    } else {
        cJSON_AddTrueToObject(ready, "ready");
        cJSON_AddNumberToObject(ready, "protocol", PROTOCOL);
        cJSON_AddNumberToObject(ready, "pid", (double)getpid());
        cJSON_AddNumberToObject(ready, "uid", (double)geteuid());
        cJSON_AddNumberToObject(ready, "gid", (double)getegid());
    }
    rc_buf_reset(&in);
    if (frame_json(&out, ready, &err) < 0 || send_frame(0, &out) < 0 || !tb) {
        rc_toolbox_free(tb);
        return 1;
    }
    served_toolbox = tb;
    if (cancel_requested)
        rc_toolbox_cancel(tb);
    int r = rc_executor_serve(0, tb, &err);
    served_toolbox = NULL;
    rc_toolbox_free(tb);
    return r < 0 ? 1 : 0;
}
