/* custom.c - running one custom tool call from the manifest (see custom.h).
 *
 * One readable flow per call: look the tool up, build the command from the input
 * (rc_custom_cmd_build: argv entries and env values are whole strings, never split, globbed or
 * interpreted; path placeholders are resolved and confined to the workdir like the file tools,
 * protocol 17.3), start it with rc_toolenv_spawn (fork + execve, own session and process group,
 * scrubbed environment, nothing inherited but fds 0-2, the tool user's ids), then one poll loop
 * with a deadline that reads the merged stdout+stderr into a tail buffer, feeds stdin if the tool
 * declares one, and watches the cancellation pipe and the child's pidfd. However the call ends,
 * the whole process group is killed and the leader reaped, so a tool never leaves processes
 * behind. Every outcome the model should see becomes a text result (17.2.2, 13.7.5).
 *
 * Output: stdout and stderr share one pipe, so they stay in the order they were written (what a
 * person sees in a terminal, and what the built-in bash does). Only the last max_output_bytes
 * are kept, cut on a character boundary and prefixed with "[output truncated]\n"; ANSI CSI
 * sequences and trailing newlines are removed. A failure appends a status line. */
#include "custom.h"

#include "cleanup.h"
#include "json.h"
#include "tools_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define READ_CHUNK        65536
#define READS_PER_ROUND   16  /* then the deadline is checked again */
#define DRAIN_GRACE_MS    200 /* output still in flight after the group was killed */
#define REAP_WAIT_MS      5000
#define POLL_SLICE_NO_PID 50 /* without a pidfd, how often the leader is checked */
/* Room for one argv entry or env value: the value, a prefix from the manifest, a resolved path. */
#define VALUE_BUF_MAX (RC_CUSTOM_MAX_VALUE_BYTES + RC_CUSTOM_MANIFEST_MAX_BYTES + 2 * PATH_MAX)
#define MINIMAL_PATH  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct rc_custom_tools {
    rc_custom_manifest *m;
    pthread_mutex_t lock; /* one call at a time */
    atomic_int cancelled;
    int cancel_rd, cancel_wr; /* self-pipe: readable once cancelled */
    rc_custom_run_info last;  /* written under the lock */
};

/* ---- a small owned string vector ---------------------------------------------------------- */

typedef struct strvec {
    char **v; /* NULL-terminated once anything was pushed */
    size_t n, cap;
} strvec;

static void strvec_free(strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    *s = (strvec){0};
}

/* Takes ownership of str (freed on failure). */
static int strvec_push(strvec *s, char *str, rc_error *err)
{
    if (!str)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof(*v));
        if (!v) {
            free(str);
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    s->v[s->n] = NULL;
    return 0;
}

static int strvec_push_copy(strvec *s, const char *str, rc_error *err)
{
    return strvec_push(s, strdup(str), err);
}

/* Hand the array out, NULL-terminated even when empty. */
static int strvec_take(strvec *s, char ***ret, rc_error *err)
{
    if (!s->v) {
        s->v = calloc(1, sizeof(char *));
        if (!s->v)
            return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    *ret = s->v;
    *s = (strvec){0};
    return 0;
}

/* ---- input values ------------------------------------------------------------------------- */

void rc_custom_cmd_clear(rc_custom_cmd *cmd)
{
    rc_toolenv_free(cmd->argv);
    rc_toolenv_free(cmd->env_set);
    free(cmd->cwd);
    free(cmd->stdin_data);
    *cmd = (rc_custom_cmd){0};
}

typedef struct builder {
    const rc_custom_tool *t;
    const cJSON *input;
    const char *root; /* canonical workdir */
    rc_buf *msg;      /* the model-facing reason when the input is refused */
    rc_error *err;
    bool after_double_dash; /* a literal "--" came earlier in argv */
} builder;

/* Refuse the input: the message goes to the model; 1 tells the caller it is not an error. */
static int __attribute__((format(printf, 2, 3))) refuse(builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = rc_buf_vappendf(b->msg, b->err, fmt, ap);
    va_end(ap);
    return r < 0 ? r : 1;
}

static bool is_int_literal(const char *s)
{
    size_t i = s[0] == '-' ? 1 : 0;
    if (!s[i] || strlen(s) > 40)
        return false;
    for (; s[i]; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* A JSON number as text: the source digits of an integer literal when rc_json_parse kept them
 * (exact beyond 2^53), else the shortest %g form that reads back as the same double. */
static void number_text(const cJSON *v, char out[48])
{
    double d = v->valuedouble;
    if (v->valuestring && is_int_literal(v->valuestring)) {
        snprintf(out, 48, "%s", v->valuestring);
        return;
    }
    if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d) {
        snprintf(out, 48, "%lld", (long long)d);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 48, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            return;
    }
}

/* The input's value for a placeholder: the field, else its default, else NULL. */
static const cJSON *arg_value(const builder *b, const rc_custom_arg *a)
{
    const cJSON *v =
        cJSON_IsObject(b->input) ? cJSON_GetObjectItemCaseSensitive(b->input, a->input) : NULL;
    if (!v || cJSON_IsNull(v))
        v = a->default_value;
    return v;
}

/* Scalar as text into out (replacing its content). 0, 1 refused, negative on failure. */
static int scalar_text(builder *b, const rc_custom_arg *a, const cJSON *v, size_t max, rc_buf *out)
{
    char num[48];
    const char *s;
    if (cJSON_IsString(v))
        s = v->valuestring;
    else if (cJSON_IsBool(v))
        s = cJSON_IsTrue(v) ? "true" : "false";
    else if (cJSON_IsNumber(v)) {
        number_text(v, num);
        s = num;
    } else
        return refuse(b, "%s: %s must be a string, number or boolean", b->t->name, a->input);
    if (strlen(s) > max)
        return refuse(b, "%s: %s is longer than %zu bytes", b->t->name, a->input, max);
    rc_buf_reset(out);
    return rc_buf_append_str(out, s, b->err);
}

/* Resolve a path value against the workdir (17.3) and keep it inside; out gets the canonical
 * path, the one the program is given. */
static int confine_path(builder *b, const char *p, rc_buf *out)
{
    _cleanup_free_ char *lex = NULL, *canon = NULL;
    rc_error cause = {0};
    int r = rc_pathconf_lexical(b->root, p, &lex, b->err);
    if (r < 0)
        return r;
    if ((r = rc_pathconf_canonicalize(lex, &canon, &cause)) < 0) {
        if (r == -RC_ENOMEM)
            return rc_error_set(b->err, RC_ENOMEM, "out of memory");
        char scratch[64];
        if ((r = rc_buf_append_str(b->msg, "path ", b->err)) < 0 ||
            (r = rc_json_quote_append(b->msg, p, b->err)) < 0)
            return r;
        return refuse(b, ": %s", rc_fs_reason(cause.sys_errno, scratch, sizeof(scratch)));
    }
    if (!rc_pathconf_within(b->root, canon)) {
        if ((r = rc_buf_append_str(b->msg, "path ", b->err)) < 0 ||
            (r = rc_json_quote_append(b->msg, p, b->err)) < 0)
            return r;
        return refuse(b, " is outside the session's working directory");
    }
    rc_buf_reset(out);
    return rc_buf_append_str(out, canon, b->err);
}

/* The text a placeholder stands for: prefix + value (or + the confined path). 0 with out set,
 * 2 when the optional field is absent (nothing to add), 1 refused, negative on failure. */
static int placeholder_text(builder *b, const rc_custom_arg *a, size_t max, rc_buf *out)
{
    const cJSON *v = arg_value(b, a);
    if (!v)
        return a->optional ? 2 : refuse(b, "%s: %s is required", b->t->name, a->input);
    if (a->path && !cJSON_IsString(v))
        return refuse(b, "%s: %s must be a string", b->t->name, a->input);
    int r = scalar_text(b, a, v, max, out);
    if (r == 0 && a->path) {
        _cleanup_free_ char *p = strdup(rc_buf_cstr(out));
        if (!p)
            return rc_error_set(b->err, RC_ENOMEM, "out of memory");
        r = confine_path(b, p, out);
    }
    if (r != 0 || !a->prefix)
        return r;
    _cleanup_(rc_buf_free) rc_buf joined = RC_BUF_INIT(VALUE_BUF_MAX);
    if ((r = rc_buf_append_str(&joined, a->prefix, b->err)) < 0 ||
        (r = rc_buf_append(&joined, out->data, out->len, b->err)) < 0)
        return r;
    rc_buf_reset(out);
    return rc_buf_append(out, joined.data, joined.len, b->err);
}

/* ---- building the command ----------------------------------------------------------------- */

static int add_argv_entry(builder *b, const rc_custom_arg *a, strvec *argv)
{
    if (a->kind == RC_CUSTOM_ARG_LITERAL) {
        if (strcmp(a->literal, "--") == 0)
            b->after_double_dash = true;
        return strvec_push_copy(argv, a->literal, b->err);
    }
    const cJSON *v = arg_value(b, a);
    if (a->flag && cJSON_IsBool(v)) /* a switch: the flag alone when true */
        return cJSON_IsTrue(v) ? strvec_push_copy(argv, a->flag, b->err) : 0;
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(VALUE_BUF_MAX);
    int r = placeholder_text(b, a, RC_CUSTOM_MAX_VALUE_BYTES, &text);
    if (r == 2)
        return 0;
    if (r != 0)
        return r;
    bool bare = !a->flag && !a->prefix && !a->path;
    if (!b->t->shell && bare && text.data[0] == '-' && !a->allow_dash && !b->after_double_dash)
        return refuse(b, "%s: %s must not start with \"-\" (it would be read as an option)",
                      b->t->name, a->input);
    if (a->flag && (r = strvec_push_copy(argv, a->flag, b->err)) < 0)
        return r;
    return strvec_push_copy(argv, rc_buf_cstr(&text), b->err);
}

static int build_argv(builder *b, strvec *argv)
{
    const rc_custom_tool *t = b->t;
    int r = strvec_push_copy(argv, t->program, b->err);
    if (r == 0 && t->shell) /* program -c script $0 $1 ... */
        if ((r = strvec_push_copy(argv, "-c", b->err)) < 0 ||
            (r = strvec_push_copy(argv, t->script, b->err)) < 0 ||
            (r = strvec_push_copy(argv, t->name, b->err)) < 0)
            return r;
    for (size_t i = 0; r == 0 && i < t->nargs; i++)
        r = add_argv_entry(b, &t->args[i], argv);
    return r;
}

static int build_env(builder *b, strvec *env)
{
    for (size_t i = 0; i < b->t->nenv; i++) {
        const rc_custom_env *e = &b->t->env[i];
        _cleanup_(rc_buf_free) rc_buf val = RC_BUF_INIT(VALUE_BUF_MAX);
        int r = 0;
        if (e->value.kind == RC_CUSTOM_ARG_LITERAL)
            r = rc_buf_append_str(&val, e->value.literal, b->err);
        else
            r = placeholder_text(b, &e->value, RC_CUSTOM_MAX_VALUE_BYTES, &val);
        if (r == 2)
            continue;
        if (r != 0)
            return r;
        char *entry = NULL;
        if (asprintf(&entry, "%s=%s", e->name, rc_buf_cstr(&val)) < 0)
            entry = NULL;
        if ((r = strvec_push(env, entry, b->err)) < 0)
            return r;
    }
    return 0;
}

static int build_stdin(builder *b, rc_custom_cmd *cmd)
{
    const rc_custom_arg *a = &b->t->stdin_arg;
    if (!b->t->has_stdin)
        return 0;
    _cleanup_(rc_buf_free) rc_buf data = RC_BUF_INIT(RC_CUSTOM_MAX_STDIN_BYTES);
    int r = a->kind == RC_CUSTOM_ARG_LITERAL
                ? rc_buf_append_str(&data, a->literal, b->err)
                : placeholder_text(b, a, RC_CUSTOM_MAX_STDIN_BYTES, &data);
    if (r == 2) /* optional and absent: stdin stays /dev/null */
        return 0;
    if (r != 0)
        return r;
    return rc_buf_steal(&data, &cmd->stdin_data, &cmd->stdin_len, b->err);
}

/* The tool's cwd, canonical and inside the workdir (a symlink in the workspace must not move it
 * out). */
static int build_cwd(builder *b, rc_custom_cmd *cmd)
{
    _cleanup_free_ char *lex = NULL, *canon = NULL;
    int r = rc_pathconf_lexical(b->root, b->t->cwd, &lex, b->err);
    if (r < 0)
        return r;
    if (rc_pathconf_canonicalize(lex, &canon, b->err) < 0 || !rc_pathconf_within(b->root, canon))
        return refuse(b,
                      "%s: its working directory \"%s\" is not inside the session's working "
                      "directory",
                      b->t->name, b->t->cwd);
    cmd->cwd = take_ptr(canon);
    return 0;
}

static int canonical_workdir(const char *workdir, char **ret, rc_error *err)
{
    _cleanup_free_ char *lex = NULL;
    if (!workdir || workdir[0] != '/')
        return rc_error_set(err, RC_EINVAL, "the workdir must be an absolute path");
    int r = rc_pathconf_lexical("/", workdir, &lex, err);
    if (r < 0)
        return r;
    if ((r = rc_pathconf_canonicalize(lex, ret, err)) < 0)
        return rc_error_wrap(err, RC_EIO, "workdir");
    return 0;
}

int rc_custom_cmd_build(const rc_custom_tool *t, const cJSON *input, const char *workdir,
                        rc_custom_cmd *ret, rc_buf *msg, rc_error *err)
{
    _cleanup_free_ char *root = NULL;
    _cleanup_(strvec_free) strvec argv = {0}, env = {0};
    _cleanup_(rc_custom_cmd_clear) rc_custom_cmd cmd = {0};
    int r = canonical_workdir(workdir, &root, err);
    if (r < 0)
        return r;
    builder b = {.t = t, .input = input, .root = root, .msg = msg, .err = err};
    if ((r = build_cwd(&b, &cmd)) != 0 || (r = build_argv(&b, &argv)) != 0 ||
        (r = build_env(&b, &env)) != 0 || (r = build_stdin(&b, &cmd)) != 0)
        return r;
    if ((r = strvec_take(&argv, &cmd.argv, err)) < 0 ||
        (r = strvec_take(&env, &cmd.env_set, err)) < 0)
        return r;
    *ret = cmd;
    cmd = (rc_custom_cmd){0};
    return 0;
}

/* ---- the child's I/O ---------------------------------------------------------------------- */

enum run_end { END_EXITED, END_TIMEOUT, END_CANCELLED };

typedef struct child_io {
    pid_t pid;
    int pidfd;  /* -1 without kernel support */
    int out_fd; /* read end of the merged stdout+stderr; -1 at EOF */
    int in_fd;  /* our end of stdin; -1 when /dev/null or fully written */
    const char *in_data;
    size_t in_len, in_off;
    rc_buf tail; /* the last bytes of output (max 2 * cap, trimmed to cap at the end) */
    size_t cap;
    bool truncated;
    size_t total; /* bytes read, before the cap */
} child_io;

static void child_io_clear(child_io *io)
{
    if (io->out_fd >= 0)
        close(io->out_fd);
    if (io->in_fd >= 0)
        close(io->in_fd);
    if (io->pidfd >= 0)
        close(io->pidfd);
    rc_buf_free(&io->tail);
}

/* Keep at most the last cap bytes, compacting only when the buffer is full. */
static int tail_append(child_io *io, const char *p, size_t n, rc_error *err)
{
    io->total += n;
    if (n > io->cap) {
        p += n - io->cap;
        n = io->cap;
        rc_buf_reset(&io->tail);
        io->truncated = true;
    }
    if (io->tail.len + n > io->tail.max) {
        rc_buf_consume(&io->tail, io->tail.len + n - io->cap);
        io->truncated = true;
    }
    return rc_buf_append(&io->tail, p, n, err);
}

static void tail_finish(child_io *io)
{
    if (io->tail.len > io->cap) {
        rc_buf_consume(&io->tail, io->tail.len - io->cap);
        io->truncated = true;
    }
    if (io->truncated && io->tail.len) /* never start inside a character */
        rc_buf_consume(&io->tail, rc_utf8_skip_continuation(io->tail.data, io->tail.len));
}

/* Read what is available (a bounded amount, so a flood cannot keep us from the deadline). */
static int read_output(child_io *io, rc_error *err)
{
    char chunk[READ_CHUNK];
    for (int i = 0; io->out_fd >= 0 && i < READS_PER_ROUND; i++) {
        ssize_t n = read(io->out_fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) { /* EOF, or an error that ends the stream all the same */
            close(io->out_fd);
            io->out_fd = -1;
            return 0;
        }
        int r = tail_append(io, chunk, (size_t)n, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static void write_stdin(child_io *io)
{
    while (io->in_fd >= 0 && io->in_off < io->in_len) {
        size_t left = io->in_len - io->in_off;
        ssize_t n = send(io->in_fd, io->in_data + io->in_off, left < READ_CHUNK ? left : READ_CHUNK,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) /* the tool closed its stdin: it does not want the rest */
            break;
        io->in_off += (size_t)n;
    }
    if (io->in_fd >= 0) { /* all written (or refused): the tool sees EOF */
        close(io->in_fd);
        io->in_fd = -1;
    }
}

/* True once the leader has exited (it stays a zombie, so its process group id stays ours). */
static bool leader_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno != EINTR; /* ECHILD: reaped by someone else; nothing left to wait for */
    return si.si_pid == pid;
}

/* Poll until the leader exits, the deadline passes or the call is cancelled. */
static int io_loop(rc_custom_tools *ct, child_io *io, int64_t deadline, int *ret_end, rc_error *err)
{
    for (;;) {
        int64_t left = deadline - rc_tools_now_ms();
        *ret_end = atomic_load(&ct->cancelled) ? END_CANCELLED
                   : leader_exited(io->pid)    ? END_EXITED
                   : left <= 0                 ? END_TIMEOUT
                                               : -1;
        if (*ret_end >= 0)
            return 0;
        struct pollfd fds[4] = {{.fd = ct->cancel_rd, .events = POLLIN},
                                {.fd = io->pidfd, .events = POLLIN},
                                {.fd = io->out_fd, .events = POLLIN},
                                {.fd = io->in_fd, .events = POLLOUT}};
        int wait = left > INT32_MAX ? INT32_MAX : (int)left;
        if ((io->pidfd < 0) && wait > POLL_SLICE_NO_PID)
            wait = POLL_SLICE_NO_PID;
        if (poll(fds, 4, wait) < 0 && errno != EINTR) /* negative fds are skipped by poll */
            return rc_error_sys(err, RC_EIO, "poll");
        if (fds[2].revents) {
            int r = read_output(io, err);
            if (r < 0)
                return r;
        }
        if (fds[3].revents)
            write_stdin(io);
    }
}

/* After the group was killed: collect output still in the pipe, for a short while at most. */
static int drain_output(child_io *io, rc_error *err)
{
    int64_t deadline = rc_tools_now_ms() + DRAIN_GRACE_MS;
    while (io->out_fd >= 0) {
        int64_t left = deadline - rc_tools_now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = io->out_fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0 && errno != EINTR)
            break;
        int r = read_output(io, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- starting the child ------------------------------------------------------------------- */

static void set_ids(const rc_custom_run_opts *opts, rc_spawn *sp)
{
    if (!opts || (opts->uid < 0 && opts->gid < 0))
        return;
    sp->uid = opts->uid >= 0 ? (uid_t)opts->uid : geteuid();
    sp->gid = opts->gid >= 0 ? (gid_t)opts->gid : getegid();
    /* An unprivileged runner asked for its own ids has nothing to switch (and may not call
     * setgroups); anything else goes through the switch and fails loudly if it cannot. */
    sp->set_ids = geteuid() == 0 || sp->uid != geteuid() || sp->gid != getegid();
}

static int child_env(const rc_custom_tool *t, const rc_custom_cmd *cmd, char ***ret, rc_error *err)
{
    static const char *const minimal[] = {MINIMAL_PATH, NULL};
    const char *const *base = t->inherit_env ? (const char *const *)environ : minimal;
    return rc_toolenv_build(base, NULL, (const char *const *)cmd->env_set, ret, err);
}

/* Spawn with merged output on a pipe and stdin on a socket (send never raises SIGPIPE). */
static int start_child(const rc_custom_tool *t, const rc_custom_cmd *cmd,
                       const rc_custom_run_opts *opts, child_io *io, rc_error *err)
{
    int out[2], in[2] = {-1, -1};
    char **envp = NULL;
    int r = child_env(t, cmd, &envp, err);
    if (r < 0)
        return r;
    if (pipe2(out, O_CLOEXEC) < 0) {
        rc_toolenv_free(envp);
        return rc_error_sys(err, RC_EIO, "pipe2");
    }
    if (cmd->stdin_data && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0) {
        r = rc_error_sys(err, RC_EIO, "socketpair");
        close(out[0]);
        close(out[1]);
        rc_toolenv_free(envp);
        return r;
    }
    rc_spawn sp = {.path = cmd->argv[0],
                   .argv = cmd->argv,
                   .envp = envp,
                   .cwd = cmd->cwd,
                   .stdin_fd = in[1],
                   .stdout_fd = out[1],
                   .stderr_fd = out[1]};
    set_ids(opts, &sp);
    r = rc_toolenv_spawn(&sp, &io->pid, err);
    rc_toolenv_free(envp);
    close(out[1]);
    if (in[1] >= 0)
        close(in[1]);
    io->out_fd = out[0];
    io->in_fd = in[0];
    if (r < 0)
        return r;
    (void)fcntl(io->out_fd, F_SETFL, O_NONBLOCK);
    if (io->in_fd >= 0)
        (void)fcntl(io->in_fd, F_SETFL, O_NONBLOCK);
    io->pidfd = rc_toolenv_pidfd(io->pid);
    io->in_data = cmd->stdin_data;
    io->in_len = cmd->stdin_len;
    if (io->in_fd >= 0 && io->in_len == 0)
        write_stdin(io); /* nothing to send: EOF at once */
    return 0;
}

/* ---- the result --------------------------------------------------------------------------- */

static bool exit_ok(const rc_custom_tool *t, int code)
{
    for (size_t i = 0; i < t->n_ok_exit_codes; i++)
        if (t->ok_exit_codes[i] == code)
            return true;
    return false;
}

/* The status line of a failure, or "" for success. */
static bool status_line(const rc_custom_tool *t, int end, int status, char *out, size_t len)
{
    const char *sig;
    out[0] = '\0';
    if (end == END_TIMEOUT)
        snprintf(out, len, "[timed out after %dms; the tool's processes were killed]",
                 t->timeout_ms);
    else if (end == END_CANCELLED)
        snprintf(out, len, "[cancelled; the tool's processes were killed]");
    else if (status == -1)
        snprintf(out, len, "[exit status unknown]");
    else if (WIFEXITED(status) && !exit_ok(t, WEXITSTATUS(status)))
        snprintf(out, len, "[exit status %d]", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "[killed by signal %d (SIG%s)]", WTERMSIG(status),
                 (sig = sigabbrev_np(WTERMSIG(status))) ? sig : "?");
    return out[0] != '\0';
}

static int build_result(const rc_custom_tool *t, child_io *io, int end, int status,
                        rc_tool_result *ret, rc_error *err)
{
    char line[128];
    bool failed = status_line(t, end, status, line, sizeof(line));
    tail_finish(io);
    size_t len = io->tail.len ? rc_bash_strip_ansi(io->tail.data, io->tail.len) : 0;
    while (len > 0 && io->tail.data[len - 1] == '\n')
        len--;
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(io->cap + sizeof(line) + 64);
    int r = 0;
    if (io->truncated)
        r = rc_buf_append_str(&text, RC_CUSTOM_TRUNCATED_PREFIX, err);
    if (r == 0 && len)
        r = rc_buf_append(&text, io->tail.data, len, err);
    if (r == 0 && failed)
        r = rc_buf_appendf(&text, err, "%s%s", text.len ? "\n" : "", line);
    if (r < 0)
        return r;
    return rc_tools_result_text(ret, failed, rc_buf_cstr(&text), text.len, err);
}

/* ---- one call ----------------------------------------------------------------------------- */

static void record_run(rc_custom_run_info *info, int end, int status, size_t total)
{
    info->started = true;
    info->timed_out = end == END_TIMEOUT;
    info->cancelled = end == END_CANCELLED;
    info->exit_code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    info->signal = status != -1 && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    info->output_bytes = total;
}

static int execute(rc_custom_tools *ct, const rc_custom_tool *t, const rc_custom_cmd *cmd,
                   const rc_custom_run_opts *opts, rc_tool_result *ret, rc_error *err)
{
    _cleanup_(child_io_clear)
        child_io io = {.pidfd = -1, .out_fd = -1, .in_fd = -1, .cap = t->max_output_bytes};
    rc_buf_init(&io.tail, 2 * t->max_output_bytes);
    rc_error serr = {0};
    int r = start_child(t, cmd, opts, &io, &serr);
    if (r == -RC_ENOMEM)
        return rc_error_set(err, RC_ENOMEM, "%s", serr.msg);
    if (r < 0)
        return rc_tools_result_errorf(ret, err, "Error: %s: %s", t->name, serr.msg);
    int end = END_EXITED;
    r = io_loop(ct, &io, rc_tools_now_ms() + t->timeout_ms, &end, err);
    /* However it ended: kill what is left of the group, reap the leader, collect the rest. */
    int status = rc_toolenv_kill_group(io.pid, io.pidfd, REAP_WAIT_MS);
    if (r < 0 || (r = drain_output(&io, err)) < 0)
        return r;
    record_run(&ct->last, end, status, io.total);
    return build_result(t, &io, end, status, ret, err);
}

static void unlockp(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}

static int call_with_cmd(rc_custom_tools *ct, const rc_custom_tool *t, const cJSON *input,
                         const rc_custom_run_opts *opts, const char *workdir, rc_tool_result *ret,
                         rc_error *err)
{
    _cleanup_(rc_custom_cmd_clear) rc_custom_cmd cmd = {0};
    _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_TOOLS_MSG_MAX);
    rc_error berr = {0};
    int r = rc_custom_cmd_build(t, input, workdir, &cmd, &msg, &berr);
    if (r == -RC_ENOMEM)
        return rc_error_set(err, RC_ENOMEM, "%s", berr.msg);
    if (r < 0)
        return rc_tools_result_errorf(ret, err, "Error: %s: %s", t->name, berr.msg);
    if (r == 1)
        return rc_tools_result_text(ret, true, rc_buf_cstr(&msg), msg.len, err);
    return execute(ct, t, &cmd, opts, ret, err);
}

static int run_locked(rc_custom_tools *ct, const rc_custom_tool *t, const cJSON *input,
                      const rc_custom_run_opts *opts, rc_tool_result *ret, rc_error *err)
{
    if (atomic_load(&ct->cancelled))
        return rc_tools_result_errorf(ret, err, "%s: [cancelled before it started]", t->name);
    _cleanup_free_ char *cwd = NULL;
    const char *workdir = opts ? opts->workdir : NULL;
    if (!workdir) {
        if (!(cwd = getcwd(NULL, 0)))
            return rc_tools_result_errorf(ret, err, "Error: %s: no working directory", t->name);
        workdir = cwd;
    }
    return call_with_cmd(ct, t, input, opts, workdir, ret, err);
}

int rc_custom_tools_run(rc_custom_tools *ct, const char *name, const cJSON *input,
                        const rc_custom_run_opts *opts, rc_tool_result *ret, rc_error *err)
{
    const rc_custom_tool *t = ct ? rc_custom_manifest_find(ct->m, name) : NULL;
    if (!t)
        return rc_error_set(err, RC_ENOTFOUND, "not a custom tool of the manifest");
    pthread_mutex_lock(&ct->lock);
    _cleanup_(unlockp) pthread_mutex_t *held = &ct->lock;
    int64_t t0 = rc_tools_now_ms();
    ct->last = (rc_custom_run_info){.exit_code = -1};
    int r = run_locked(ct, t, input, opts, ret, err);
    ct->last.duration_ms = rc_tools_now_ms() - t0;
    return r;
}

void rc_custom_tools_last_run(const rc_custom_tools *ct, rc_custom_run_info *ret)
{
    *ret = ct ? ct->last : (rc_custom_run_info){.exit_code = -1};
}

/* ---- the set ------------------------------------------------------------------------------ */

static int tools_new(rc_custom_manifest *m, rc_custom_tools **ret, rc_error *err)
{
    rc_custom_tools *ct = calloc(1, sizeof(*ct));
    int p[2];
    if (!ct) {
        rc_custom_manifest_free(m);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    ct->m = m;
    ct->cancel_rd = ct->cancel_wr = -1;
    pthread_mutex_init(&ct->lock, NULL);
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
        int r = rc_error_sys(err, RC_EIO, "pipe2");
        rc_custom_tools_free(ct);
        return r;
    }
    ct->cancel_rd = p[0];
    ct->cancel_wr = p[1];
    *ret = ct;
    return 0;
}

static int empty_manifest(rc_custom_manifest **ret, rc_error *err)
{
    if (!(*ret = calloc(1, sizeof(**ret))))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    return 0;
}

int rc_custom_tools_from_text(const char *text, size_t len, const char *origin,
                              rc_custom_tools **ret, rc_error *err)
{
    rc_custom_manifest *m = NULL;
    int r = rc_custom_manifest_parse(text, len, origin, &m, err);
    if (r < 0)
        return r;
    return tools_new(m, ret, err);
}

/* The file, capped; 1 when it does not exist. */
static int read_manifest(const char *path, rc_buf *out, rc_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "custom tools manifest %s", path);
    if (fstat(fd, &st) < 0)
        return rc_error_sys(err, RC_EIO, "custom tools manifest %s", path);
    if (!S_ISREG(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "custom tools manifest %s: not a regular file", path);
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "custom tools manifest %s", path);
        if (n == 0)
            return 0;
        if (rc_buf_append(out, chunk, (size_t)n, NULL) < 0)
            return rc_error_set(err, RC_ETOOBIG, "custom tools manifest %s: larger than %zu bytes",
                                path, RC_CUSTOM_MANIFEST_MAX_BYTES);
    }
}

/* Start-up check that every program is there, so a typo is reported now, not at the first call. */
static int check_programs(const rc_custom_manifest *m, const char *path, rc_error *err)
{
    for (size_t i = 0; i < m->count; i++) {
        const rc_custom_tool *t = &m->tools[i];
        struct stat st;
        if (stat(t->program, &st) < 0)
            return rc_error_sys(err, RC_EINVAL, "%s: tools[%zu] (\"%s\"): program: %s", path, i,
                                t->name, t->program);
        if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
            return rc_error_set(err, RC_EINVAL,
                                "%s: tools[%zu] (\"%s\"): program: %s is not an executable file",
                                path, i, t->name, t->program);
    }
    return 0;
}

int rc_custom_tools_load(const char *manifest_path, rc_custom_tools **ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(RC_CUSTOM_MANIFEST_MAX_BYTES);
    rc_custom_manifest *m = NULL;
    int r = manifest_path && manifest_path[0] ? read_manifest(manifest_path, &text, err) : 1;
    if (r < 0)
        return r;
    if (r == 1)
        r = empty_manifest(&m, err);
    else
        r = rc_custom_manifest_parse(text.data ? text.data : "", text.len, manifest_path, &m, err);
    if (r < 0)
        return r;
    if ((r = check_programs(m, manifest_path, err)) < 0) {
        rc_custom_manifest_free(m);
        return r;
    }
    return tools_new(m, ret, err);
}

void rc_custom_tools_cancel(rc_custom_tools *ct)
{
    if (!ct)
        return;
    atomic_store(&ct->cancelled, 1);
    if (ct->cancel_wr >= 0) {
        ssize_t n = write(ct->cancel_wr, "x", 1);
        (void)n;
    }
}

void rc_custom_tools_free(rc_custom_tools *ct)
{
    if (!ct)
        return;
    rc_custom_manifest_free(ct->m);
    if (ct->cancel_rd >= 0)
        close(ct->cancel_rd);
    if (ct->cancel_wr >= 0)
        close(ct->cancel_wr);
    pthread_mutex_destroy(&ct->lock);
    free(ct);
}

size_t rc_custom_tools_count(const rc_custom_tools *ct)
{
    return ct && ct->m ? ct->m->count : 0;
}

bool rc_custom_tools_owns(const rc_custom_tools *ct, const char *name)
{
    return ct && rc_custom_manifest_find(ct->m, name) != NULL;
}

const rc_custom_manifest *rc_custom_tools_manifest(const rc_custom_tools *ct)
{
    return ct ? ct->m : NULL;
}

int rc_custom_tools_agent_json(const rc_custom_tools *ct, cJSON **ret, rc_error *err)
{
    return rc_custom_manifest_agent_json(ct ? ct->m : NULL, ret, err);
}
