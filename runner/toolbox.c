/* toolbox.c - the per-session toolbox: configuration, dispatch by tool name, result blocks,
 * input getters, UTF-8 repair and the tool user's filesystem ids.
 *
 * Everything the model sees passes through rc_tools_result_text, so every result is valid UTF-8
 * without NUL bytes (17.2.5) and never empty (10.3.3). Dispatch owns the bookkeeping common to
 * every call (the lock, the filesystem ids of the file tools); the tools themselves live in
 * tool_bash.c, tool_files.c and tool_search.c. */
#include "tools_internal.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- UTF-8 -------------------------------------------------------------------------------- */

static const char REPLACEMENT[] = "\xEF\xBF\xBD";

/* Length of the valid sequence starting at s[0] (1-4), or 0 with *ret_bad = bytes forming the
 * maximal invalid subpart (at least 1). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *ret_bad)
{
    unsigned char b = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        *ret_bad = 1;
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        unsigned char c = i < n ? s[i] : 0;
        if (i >= n || c < lo || c > hi) {
            *ret_bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

int rc_utf8_repair(rc_buf *out, const char *s, size_t n, rc_error *err)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < n) {
        size_t bad = 0, len = u[i] == 0 ? 0 : utf8_seq(u + i, n - i, &bad);
        if (u[i] == 0)
            bad = 1;
        if (len > 0) {
            i += len;
            continue;
        }
        int r = rc_buf_append(out, s + run, i - run, err);
        if (r < 0)
            return r;
        r = rc_buf_append(out, REPLACEMENT, 3, err);
        if (r < 0)
            return r;
        i += bad;
        run = i;
    }
    return rc_buf_append(out, s + run, n - run, err);
}

size_t rc_utf8_cut_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = n, back = 0;
    while (k > 0 && back < 3 && (u[k - 1] & 0xC0) == 0x80) {
        k--;
        back++;
    }
    if (k == 0)
        return n;
    unsigned char lead = u[k - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (lead >= 0x80 && want > back + 1)
        return k - 1; /* the sequence is cut: drop its start */
    return n;
}

size_t rc_utf8_skip_continuation(const char *s, size_t n)
{
    size_t k = 0;
    while (k < n && k < 3 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k++;
    return k;
}

/* ---- results ------------------------------------------------------------------------------ */

void rc_tool_result_clear(rc_tool_result *r)
{
    if (!r)
        return;
    cJSON_Delete(r->content);
    r->content = NULL;
    r->is_error = 0;
}

const char *rc_tool_result_text(const rc_tool_result *r)
{
    if (!r || !r->content || cJSON_GetArraySize(r->content) != 1)
        return NULL;
    const cJSON *block = cJSON_GetArrayItem(r->content, 0);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(block, "text");
    return cJSON_IsString(text) ? text->valuestring : NULL;
}

int rc_tools_result_text(rc_tool_result *ret, bool is_error, const char *text, size_t len,
                         rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf clean = RC_BUF_INIT(len * 3 + 16);
    int r = rc_utf8_repair(&clean, text, len, err);
    if (r < 0)
        return r;
    if (clean.len == 0 && (r = rc_buf_append_str(&clean, "(no output)", err)) < 0)
        return r;
    cJSON *arr = cJSON_CreateArray();
    cJSON *block = cJSON_CreateObject();
    if (!arr || !block) {
        cJSON_Delete(arr);
        cJSON_Delete(block);
        return rc_error_set(err, RC_ENOMEM, "out of memory building a tool result");
    }
    cJSON_AddItemToArray(arr, block);
    if (!cJSON_AddStringToObject(block, "type", "text") ||
        !cJSON_AddStringToObject(block, "text", rc_buf_cstr(&clean))) {
        cJSON_Delete(arr);
        return rc_error_set(err, RC_ENOMEM, "out of memory building a tool result");
    }
    rc_tool_result_clear(ret);
    ret->content = arr;
    ret->is_error = is_error;
    return 0;
}

static int result_vf(rc_tool_result *ret, bool is_error, rc_error *err, const char *fmt, va_list ap)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(RC_TOOLS_MSG_MAX);
    int r = rc_buf_vappendf(&b, err, fmt, ap);
    if (r < 0)
        return r;
    return rc_tools_result_text(ret, is_error, rc_buf_cstr(&b), b.len, err);
}

int rc_tools_result_errorf(rc_tool_result *ret, rc_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = result_vf(ret, true, err, fmt, ap);
    va_end(ap);
    return r;
}

int rc_tools_result_okf(rc_tool_result *ret, rc_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = result_vf(ret, false, err, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- inputs ------------------------------------------------------------------------------- */

int rc_tools_input_string_any(const cJSON *in, const char *key, const char **ret)
{
    const cJSON *v = cJSON_IsObject(in) ? cJSON_GetObjectItemCaseSensitive(in, key) : NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring)
        return -1;
    *ret = v->valuestring;
    return 1;
}

int rc_tools_input_string(const cJSON *in, const char *key, const char **ret)
{
    const char *s = NULL;
    int r = rc_tools_input_string_any(in, key, &s);
    if (r <= 0)
        return r;
    if (s[0] == '\0')
        return 0;
    *ret = s;
    return 1;
}

bool rc_tools_input_true(const cJSON *in, const char *key)
{
    const cJSON *v = cJSON_IsObject(in) ? cJSON_GetObjectItemCaseSensitive(in, key) : NULL;
    return cJSON_IsTrue(v);
}

/* ---- time, ids, cancellation -------------------------------------------------------------- */

int64_t rc_tools_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rc_tools_uuid(char out[37], rc_error *err)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return rc_error_sys(err, RC_EIO, "getrandom");
        }
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    return 0;
}

bool rc_tools_cancelled(const rc_toolbox *tb)
{
    return atomic_load(&((rc_toolbox *)tb)->cancelled) != 0;
}

long long rc_tools_file_cap(const rc_toolbox *tb)
{
    return tb->max_file_bytes;
}

int rc_toolbox_last_exit_status(rc_toolbox *tb)
{
    pthread_mutex_lock(&tb->lock);
    int status = tb->last_exit_status;
    pthread_mutex_unlock(&tb->lock);
    return status;
}

void rc_toolbox_cancel(rc_toolbox *tb)
{
    if (!tb)
        return;
    int saved = errno;
    atomic_store(&tb->cancelled, 1);
    ssize_t n = write(tb->cancel_wr, "x", 1);
    (void)n; /* the pipe stays readable once written; a full pipe is just as readable */
    errno = saved;
}

/* ---- the tool user's filesystem ids ------------------------------------------------------- */

/* setfsuid/setfsgid and the raw setgroups system call change only the calling thread (glibc's
 * setgroups() would change every thread), so the runner's other threads keep their rights. */
static int set_thread_groups(size_t n, const gid_t *groups)
{
    return (int)syscall(SYS_setgroups, n, groups);
}

int rc_tools_creds_enter(const rc_toolbox *tb, rc_tools_creds *saved, rc_error *err)
{
    *saved = (rc_tools_creds){0};
    if (!tb->set_ids || (geteuid() == tb->uid && getegid() == tb->gid))
        return 0;
    int n = getgroups(0, NULL);
    if (n < 0)
        return rc_error_sys(err, RC_EIO, "getgroups");
    _cleanup_free_ gid_t *groups = calloc((size_t)n + 1, sizeof(gid_t));
    if (!groups)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((n = getgroups(n, groups)) < 0)
        return rc_error_sys(err, RC_EIO, "getgroups");
    saved->fsuid = (uid_t)setfsuid((uid_t)-1);
    saved->fsgid = (gid_t)setfsgid((gid_t)-1);
    if (set_thread_groups(1, &tb->gid) < 0)
        return rc_error_sys(err, RC_EIO, "cannot switch to the tool user's groups");
    saved->groups = take_ptr(groups);
    saved->ngroups = n;
    saved->active = true;
    setfsgid(tb->gid);
    setfsuid(tb->uid);
    if ((gid_t)setfsgid((gid_t)-1) != tb->gid || (uid_t)setfsuid((uid_t)-1) != tb->uid) {
        rc_tools_creds_leave(saved);
        return rc_error_set(err, RC_EIO, "cannot switch to the tool user's filesystem ids");
    }
    return 0;
}

void rc_tools_creds_leave(rc_tools_creds *saved)
{
    if (!saved->active)
        return;
    setfsuid(saved->fsuid);
    setfsgid(saved->fsgid);
    (void)set_thread_groups((size_t)saved->ngroups, saved->groups);
    free(saved->groups);
    *saved = (rc_tools_creds){0};
}

/* ---- toolbox ------------------------------------------------------------------------------ */

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static int strv_copy(const char *const *src, char ***ret, rc_error *err)
{
    size_t n = 0;
    while (src && src[n])
        n++;
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] = strdup(src[i]))) {
            strv_free(v);
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
    }
    *ret = v;
    return 0;
}

void rc_toolbox_free(rc_toolbox *tb)
{
    if (!tb)
        return;
    rc_tool_bash_close(tb);
    free(tb->workdir);
    strv_free(tb->allowed_roots);
    strv_free(tb->read_only_roots);
    rc_toolenv_free(tb->child_env);
    if (tb->cancel_rd >= 0)
        close(tb->cancel_rd);
    if (tb->cancel_wr >= 0)
        close(tb->cancel_wr);
    pthread_mutex_destroy(&tb->lock);
    free(tb);
}

static void toolbox_freep(rc_toolbox **p)
{
    rc_toolbox_free(*p);
}

static int toolbox_copy_config(rc_toolbox *tb, const rc_toolbox_config *cfg, rc_error *err)
{
    int r;
    if (!(tb->workdir = strdup(cfg->workdir)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((r = strv_copy(cfg->allowed_roots, &tb->allowed_roots, err)) < 0 ||
        (r = strv_copy(cfg->read_only_roots, &tb->read_only_roots, err)) < 0)
        return r;
    r = rc_toolenv_build(cfg->env ? cfg->env : (const char *const *)environ, cfg->scrub_prefixes,
                         NULL, &tb->child_env, err);
    if (r < 0)
        return r;
    tb->max_file_bytes = cfg->max_file_bytes == 0  ? RC_TOOLS_MAX_FILE_BYTES
                         : cfg->max_file_bytes < 0 ? -1
                                                   : cfg->max_file_bytes;
    tb->call_timeout_ms =
        cfg->call_timeout_ms > 0 ? cfg->call_timeout_ms : RC_TOOLS_CALL_TIMEOUT_MS;
    tb->grep_timeout_ms =
        cfg->grep_timeout_ms > 0 ? cfg->grep_timeout_ms : RC_TOOLS_GREP_TIMEOUT_MS;
    tb->rg_mode = cfg->rg_mode;
    tb->read_text_only = cfg->read_text_only;
    tb->set_ids = cfg->set_ids;
    tb->uid = cfg->uid;
    tb->gid = cfg->gid;
    return 0;
}

int rc_toolbox_new(const rc_toolbox_config *cfg, rc_toolbox **ret, rc_error *err)
{
    if (!cfg || !cfg->workdir || cfg->workdir[0] != '/')
        return rc_error_set(err, RC_EINVAL, "toolbox: workdir must be an absolute path");
    _cleanup_(toolbox_freep) rc_toolbox *tb = calloc(1, sizeof(*tb));
    if (!tb)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    tb->cancel_rd = tb->cancel_wr = -1;
    tb->last_exit_status = -1;
    tb->bash = (rc_bash_shell){.pid = 0, .in_fd = -1, .out_fd = -1, .pidfd = -1};
    pthread_mutex_init(&tb->lock, NULL);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return rc_error_sys(err, RC_EIO, "toolbox: pipe2");
    tb->cancel_rd = fds[0];
    tb->cancel_wr = fds[1];
    int r = toolbox_copy_config(tb, cfg, err);
    if (r < 0)
        return r;
    *ret = take_ptr(tb);
    return 0;
}

typedef int (*tool_fn)(rc_toolbox *, const cJSON *, rc_tool_result *, rc_error *);

static const struct {
    const char *name;
    tool_fn fn;
    bool as_tool_user; /* runs in this thread: switch the filesystem ids */
} TOOLS[] = {
    {"bash", rc_tool_bash, false}, {"read", rc_tool_read, true}, {"write", rc_tool_write, true},
    {"edit", rc_tool_edit, true},  {"glob", rc_tool_glob, true}, {"grep", rc_tool_grep, true},
};

bool rc_toolbox_owns(const char *name)
{
    for (size_t i = 0; name && i < sizeof(TOOLS) / sizeof(TOOLS[0]); i++)
        if (strcmp(TOOLS[i].name, name) == 0)
            return true;
    return false;
}

static int run_locked(rc_toolbox *tb, size_t i, const cJSON *input, rc_tool_result *ret,
                      rc_error *err)
{
    rc_tools_creds creds;
    rc_error cause = {0};
    int r = TOOLS[i].as_tool_user ? rc_tools_creds_enter(tb, &creds, &cause) : 0;
    if (r < 0)
        return rc_tools_result_errorf(ret, err, "Error: %s", cause.msg);
    r = TOOLS[i].fn(tb, input, ret, &cause);
    if (TOOLS[i].as_tool_user)
        rc_tools_creds_leave(&creds);
    if (r >= 0)
        return 0;
    /* An internal failure, not a tool error: the runner's "Error: <message>" (13.7.5). */
    if (r == -RC_ENOMEM) {
        rc_error_set(err, RC_ENOMEM, "%s", cause.msg);
        return r;
    }
    return rc_tools_result_errorf(ret, err, "Error: %s", cause.msg);
}

int rc_toolbox_run(rc_toolbox *tb, const char *name, const cJSON *input, rc_tool_result *ret,
                   rc_error *err)
{
    for (size_t i = 0; name && i < sizeof(TOOLS) / sizeof(TOOLS[0]); i++) {
        if (strcmp(TOOLS[i].name, name) != 0)
            continue;
        rc_tool_result res = {0};
        pthread_mutex_lock(&tb->lock);
        tb->last_exit_status = -1;
        int r = run_locked(tb, i, input, &res, err);
        pthread_mutex_unlock(&tb->lock);
        if (r < 0) {
            rc_tool_result_clear(&res);
            return r;
        }
        *ret = res;
        return 0;
    }
    return rc_error_set(err, RC_ENOTFOUND, "not a built-in tool");
}
