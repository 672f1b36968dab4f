/* tool_bash.c - the `bash` tool (protocol 17.7): one persistent /bin/bash per toolbox.
 *
 * Each call writes the command framed by a fresh sentinel to the shell's stdin and reads the
 * merged stdout/stderr until the sentinel and the exit status after it appear. The caller is
 * never blocked past the call's deadline: stdin and stdout are non-blocking and one poll() loop
 * waits for output, for room to write the command (a command larger than the pipe would
 * otherwise deadlock against its own output), for the shell's death (pidfd) and for
 * cancellation (the toolbox's self-pipe). Only the last 102,400 bytes are kept while reading, so
 * a command that prints forever costs bounded memory. A timeout, a cancellation or a dead shell
 * kill the shell's whole process group (background jobs included); the next call starts a fresh
 * shell. */
#include "tools_internal.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define READ_CHUNK     65536
#define KILL_WAIT_MS   2000
#define DRAIN_MAX      ((size_t)1024 * 1024) /* stale output discarded before a call */
#define NO_PIDFD_SLICE 50                    /* ms between liveness checks without a pidfd */

static const char TRUNCATED_PREFIX[] = "[output truncated]\n";

/* ---- the shell process -------------------------------------------------------------------- */

static void shell_close(rc_bash_shell *sh)
{
    if (sh->pid > 0)
        (void)rc_toolenv_kill_group(sh->pid, sh->pidfd, KILL_WAIT_MS);
    if (sh->in_fd >= 0)
        close(sh->in_fd);
    if (sh->out_fd >= 0)
        close(sh->out_fd);
    if (sh->pidfd >= 0)
        close(sh->pidfd);
    *sh = (rc_bash_shell){.pid = 0, .in_fd = -1, .out_fd = -1, .pidfd = -1};
}

void rc_tool_bash_close(rc_toolbox *tb)
{
    shell_close(&tb->bash);
}

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int shell_start(rc_toolbox *tb, rc_error *err)
{
    static const char *const shell_vars[] = {"PS1=", "PS2=", "TERM=dumb", NULL};
    char *const argv[] = {"/bin/bash", "--noprofile", "--norc", NULL};
    _cleanup_close_ int in_ours = -1, in_child = -1, out_ours = -1, out_child = -1;
    int sv[2], p[2];
    /* stdin is a socket so that writing to a dead shell fails with EPIPE (MSG_NOSIGNAL)
     * instead of raising SIGPIPE in the runner. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return rc_error_sys(err, RC_EIO, "socketpair");
    in_ours = sv[0];
    in_child = sv[1];
    if (pipe2(p, O_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "pipe2");
    out_ours = p[0];
    out_child = p[1];
    char **env = NULL;
    int r = rc_toolenv_build((const char *const *)tb->child_env, NULL, shell_vars, &env, err);
    if (r < 0)
        return r;
    rc_spawn s = {.path = "/bin/bash",
                  .argv = argv,
                  .envp = env,
                  .cwd = tb->workdir,
                  .stdin_fd = in_child,
                  .stdout_fd = out_child,
                  .stderr_fd = out_child,
                  .set_ids = tb->set_ids,
                  .uid = tb->uid,
                  .gid = tb->gid};
    pid_t pid;
    r = rc_toolenv_spawn(&s, &pid, err);
    rc_toolenv_free(env);
    if (r < 0)
        return r;
    tb->bash = (rc_bash_shell){.pid = pid,
                               .in_fd = take_fd(in_ours),
                               .out_fd = take_fd(out_ours),
                               .pidfd = rc_toolenv_pidfd(pid)};
    if (set_nonblocking(tb->bash.in_fd) < 0 || set_nonblocking(tb->bash.out_fd) < 0) {
        shell_close(&tb->bash);
        return rc_error_sys(err, RC_EIO, "fcntl");
    }
    return 0;
}

/* Exited (or a zombie), without reaping it: the process group id stays ours until we do.
 * (A runner that sets SIGCHLD to SIG_IGN has its children reaped by the kernel; the pidfd, and
 * else kill(pid, 0), still tell.) */
static bool shell_exited(const rc_bash_shell *sh)
{
    if (sh->pidfd >= 0) {
        struct pollfd pf = {.fd = sh->pidfd, .events = POLLIN};
        return poll(&pf, 1, 0) > 0;
    }
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)sh->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == ECHILD && kill(sh->pid, 0) < 0;
    return si.si_pid == sh->pid;
}

/* ---- one call ----------------------------------------------------------------------------- */

typedef struct bash_call {
    rc_buf out;     /* the tail of the output, at most RC_TOOLS_BASH_OUTPUT_MAX bytes */
    bool truncated; /* something was dropped from its front */
    char sentinel[64];
    size_t sentinel_len;
    rc_buf input; /* the framed command */
    size_t written;
} bash_call;

static void bash_call_free(bash_call *c)
{
    rc_buf_free(&c->out);
    rc_buf_free(&c->input);
}

enum call_end { END_DONE, END_TIMEOUT, END_ABORTED, END_TERMINATED };

static int keep_tail(bash_call *c, const char *data, size_t n, rc_error *err)
{
    if (n >= RC_TOOLS_BASH_OUTPUT_MAX) {
        c->truncated = c->truncated || c->out.len > 0 || n > RC_TOOLS_BASH_OUTPUT_MAX;
        rc_buf_reset(&c->out);
        data += n - RC_TOOLS_BASH_OUTPUT_MAX;
        n = RC_TOOLS_BASH_OUTPUT_MAX;
    } else if (c->out.len + n > RC_TOOLS_BASH_OUTPUT_MAX) {
        rc_buf_consume(&c->out, c->out.len + n - RC_TOOLS_BASH_OUTPUT_MAX);
        c->truncated = true;
    }
    int r = rc_buf_append(&c->out, data, n, err);
    if (r < 0)
        return r;
    if (c->truncated) /* never start inside a character */
        rc_buf_consume(&c->out, rc_utf8_skip_continuation(c->out.data, c->out.len));
    return 0;
}

/* The sentinel with the exit status line after it: 1 when complete. */
static bool sentinel_complete(const bash_call *c, size_t *ret_idx)
{
    if (!c->out.data)
        return false;
    const char *hit = memmem(c->out.data, c->out.len, c->sentinel, c->sentinel_len);
    if (!hit)
        return false;
    size_t idx = (size_t)(hit - c->out.data);
    *ret_idx = idx;
    return memchr(hit + c->sentinel_len, '\n', c->out.len - idx - c->sentinel_len) != NULL;
}

/* Read what is available; 1 at end of file. Bounded per call so the loop re-checks the clock. */
static int read_available(int fd, bash_call *c, rc_error *err)
{
    char chunk[READ_CHUNK];
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n == 0)
            return 1;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : rc_error_sys(err, RC_EIO, "read");
        int r = keep_tail(c, chunk, (size_t)n, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static void discard_stale_output(int fd)
{
    char chunk[READ_CHUNK];
    size_t total = 0;
    ssize_t n;
    while (total < DRAIN_MAX && (n = read(fd, chunk, sizeof(chunk))) > 0)
        total += (size_t)n;
}

static int write_some(rc_bash_shell *sh, bash_call *c, bool *dead)
{
    size_t left = c->input.len - c->written;
    ssize_t n = send(sh->in_fd, c->input.data + c->written, left, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
        c->written += (size_t)n;
    else if (n < 0 && errno != EAGAIN && errno != EINTR)
        *dead = true; /* EPIPE / ECONNRESET: the shell is gone */
    return 0;
}

/* Wait for the sentinel, the deadline, cancellation or the shell's end. */
static int call_wait(rc_toolbox *tb, bash_call *c, int64_t deadline, enum call_end *ret_end,
                     rc_error *err)
{
    rc_bash_shell *sh = &tb->bash;
    bool dead = false, eof = false;
    size_t idx;
    for (;;) {
        if (sentinel_complete(c, &idx)) {
            *ret_end = END_DONE;
            return 0;
        }
        if (dead || eof) {
            /* Collect what the shell wrote before it went away, then judge. */
            int r = read_available(sh->out_fd, c, err);
            if (r < 0)
                return r;
            *ret_end = sentinel_complete(c, &idx) ? END_DONE : END_TERMINATED;
            return 0;
        }
        int64_t left = deadline - rc_tools_now_ms();
        if (left <= 0) {
            *ret_end = END_TIMEOUT;
            return 0;
        }
        struct pollfd pf[4] = {
            {.fd = sh->out_fd, .events = POLLIN},
            {.fd = tb->cancel_rd, .events = POLLIN},
            {.fd = sh->pidfd, .events = POLLIN},
            {.fd = c->written < c->input.len ? sh->in_fd : -1, .events = POLLOUT}};
        int wait = left > INT_MAX ? INT_MAX : (int)left;
        if (sh->pidfd < 0 && wait > NO_PIDFD_SLICE)
            wait = NO_PIDFD_SLICE;
        if (poll(pf, 4, wait) < 0 && errno != EINTR)
            return rc_error_sys(err, RC_EIO, "poll");
        if (pf[1].revents || rc_tools_cancelled(tb)) {
            *ret_end = END_ABORTED;
            return 0;
        }
        if (pf[3].revents & (POLLOUT | POLLERR | POLLHUP))
            write_some(sh, c, &dead);
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = read_available(sh->out_fd, c, err);
            if (r < 0)
                return r;
            eof = r == 1;
        }
        if (pf[2].revents || (sh->pidfd < 0 && shell_exited(sh)))
            dead = true;
    }
}

static int frame_command(bash_call *c, const char *command, rc_error *err)
{
    char uuid[37];
    int r = rc_tools_uuid(uuid, err);
    if (r < 0)
        return r;
    int n = snprintf(c->sentinel, sizeof(c->sentinel), "__ANT_CMD_%s_DONE__", uuid);
    c->sentinel_len = (size_t)n;
    /* The literal is split by '' after its first 8 characters, so it appears only in the
     * shell's output, never in what we write. */
    return rc_buf_appendf(&c->input, err,
                          "{ %s\n} </dev/null 2>&1; printf '\\n%.8s''%s%%d\\n' $?\n", command,
                          c->sentinel, c->sentinel + 8);
}

size_t rc_bash_strip_ansi(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '\x1b' && i + 1 < n && s[i + 1] == '[') {
            size_t j = i + 2;
            while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == ';' || s[j] == '?'))
                j++;
            while (j < n && s[j] >= 0x20 && s[j] <= 0x2F)
                j++;
            if (j < n && s[j] >= 0x40 && s[j] <= 0x7E) {
                i = j + 1;
                continue;
            }
        }
        s[o++] = s[i++];
    }
    return o;
}

/* -1 when the status is not an integer (17.7.3). */
static int parse_status(const char *p, const char *end)
{
    const char *q = p;
    if (q < end && *q == '-')
        q++;
    const char *digits = q;
    long v = 0;
    while (q < end && *q >= '0' && *q <= '9' && v < 1000000)
        v = v * 10 + (*q++ - '0');
    if (q == digits)
        return -1;
    return (int)(*p == '-' ? -v : v);
}

static int call_result(rc_toolbox *tb, bash_call *c, rc_tool_result *ret, rc_error *err)
{
    size_t idx = 0;
    (void)sentinel_complete(c, &idx);
    const char *after = c->out.data + idx + c->sentinel_len;
    int status = parse_status(after, c->out.data + c->out.len);
    tb->last_exit_status = status;
    size_t len = rc_bash_strip_ansi(c->out.data, idx);
    while (len > 0 && c->out.data[len - 1] == '\n')
        len--;
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(RC_TOOLS_BASH_OUTPUT_MAX + 64);
    int r = 0;
    if (c->truncated)
        r = rc_buf_append_str(&text, TRUNCATED_PREFIX, err);
    if (r < 0 || (r = rc_buf_append(&text, c->out.data, len, err)) < 0)
        return r;
    if (status == 0)
        return rc_tools_result_text(ret, false, rc_buf_cstr(&text), text.len, err);
    if (text.len == 0)
        return rc_tools_result_errorf(ret, err, "exit %d", status);
    return rc_tools_result_text(ret, true, text.data, text.len, err);
}

static int timeout_of(const rc_toolbox *tb, const cJSON *in, int *ret_timeout)
{
    const cJSON *t = cJSON_IsObject(in) ? cJSON_GetObjectItemCaseSensitive(in, "timeout_ms") : NULL;
    int timeout = RC_TOOLS_BASH_TIMEOUT_MS;
    if (cJSON_IsNumber(t) && t->valuedouble > 0) /* 0 means the default (22.19) */
        timeout = t->valuedouble >= INT_MAX ? INT_MAX
                  : t->valuedouble < 1      ? 1
                                            : (int)t->valuedouble;
    *ret_timeout = timeout;
    return timeout <= tb->call_timeout_ms ? timeout : tb->call_timeout_ms;
}

static int run_command(rc_toolbox *tb, const char *command, const cJSON *in, rc_tool_result *ret,
                       rc_error *err)
{
    int timeout;
    int limit = timeout_of(tb, in, &timeout);
    int64_t deadline = rc_tools_now_ms() + limit;
    if (rc_tools_cancelled(tb))
        return rc_tools_result_errorf(ret, err, "bash: This operation was aborted");
    if (tb->bash.pid > 0 && shell_exited(&tb->bash)) {
        shell_close(&tb->bash);
        return rc_tools_result_errorf(ret, err, "bash: bash session terminated");
    }
    rc_error cause = {0};
    if (tb->bash.pid <= 0 && shell_start(tb, &cause) < 0)
        return rc_tools_result_errorf(ret, err, "bash: %s", cause.msg);
    _cleanup_(bash_call_free) bash_call c = {
        .out = RC_BUF_INIT(RC_TOOLS_BASH_OUTPUT_MAX + READ_CHUNK),
        .input = RC_BUF_INIT(strlen(command) + 256),
    };
    int r = frame_command(&c, command, err);
    if (r < 0)
        return r;
    discard_stale_output(tb->bash.out_fd);
    enum call_end end = END_TERMINATED;
    if ((r = call_wait(tb, &c, deadline, &end, err)) < 0) {
        shell_close(&tb->bash);
        return r;
    }
    if (end == END_DONE)
        return call_result(tb, &c, ret, err);
    shell_close(&tb->bash); /* a stale sentinel may still come: never reuse this shell */
    if (end == END_TIMEOUT && timeout <= tb->call_timeout_ms)
        return rc_tools_result_errorf(ret, err, "bash: bash command timed out after %dms", timeout);
    if (end == END_TERMINATED)
        return rc_tools_result_errorf(ret, err, "bash: bash session terminated");
    return rc_tools_result_errorf(ret, err, "bash: This operation was aborted");
}

int rc_tool_bash(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err)
{
    const char *command = NULL;
    int has = rc_tools_input_string(in, "command", &command);
    if (has < 0)
        return rc_tools_result_errorf(ret, err, "bash: command must be a string");
    if (rc_tools_input_true(in, "restart")) {
        shell_close(&tb->bash);
        if (!has)
            return rc_tools_result_text(ret, false, "bash session restarted", 22, err);
    }
    if (!has)
        return rc_tools_result_errorf(ret, err, "bash: command is required");
    return run_command(tb, command, in, ret, err);
}
