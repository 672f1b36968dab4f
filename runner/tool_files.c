/* tool_files.c - the `read`, `write` and `edit` tools (protocol 17.8-17.10).
 *
 * Every path is confined first (pathconf.c); the tools then reach the canonical target through
 * a directory descriptor opened beneath its root without following symlinks, and act on the last
 * component with *at() calls and O_NOFOLLOW. A target is stat'ed before it is opened, so FIFOs and
 * devices are never opened, and the opened descriptor is checked again (same inode, regular) in
 * case the name was swapped in between. Writes are atomic: a temporary file in the target's
 * directory, fsync, rename. Edits work on bytes, so invalid UTF-8 elsewhere in a file survives. */
#include "tools_internal.h"

#include "base64.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK ((size_t)65536)

/* ---- shared: a located target ------------------------------------------------------------- */

/* A confined target reached through its parent directory. */
typedef struct target {
    rc_confined c;
    char *dir_rel;
    const char *name; /* last component; NULL when the target is the root itself */
    int dirfd;
} target;

static void target_free(target *t)
{
    rc_confined_clear(&t->c);
    free(t->dir_rel);
    if (t->dirfd >= 0)
        close(t->dirfd);
}

#define TARGET_INIT                                                                                \
    {                                                                                              \
        .dirfd = -1                                                                                \
    }

/* Result codes of the helpers below besides 0 and negative errors: the model's message was set. */
#define TOOL_ERROR 1

static int path_error(const rc_toolbox *tb, const char *p, const rc_error *cause,
                      rc_tool_result *ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_TOOLS_MSG_MAX);
    int r = rc_pathconf_message(tb, p, cause, &msg, err);
    if (r < 0 || (r = rc_tools_result_text(ret, true, msg.data, msg.len, err)) < 0)
        return r;
    return TOOL_ERROR;
}

/* "<tool>: [<prefix>]<label>: <reason>" */
static int fs_error(const char *tool, const char *prefix, const char *label, int errnum,
                    rc_tool_result *ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_TOOLS_MSG_MAX);
    int r = rc_buf_appendf(&msg, err, "%s: %s", tool, prefix);
    if (r < 0 || (r = rc_fs_message(&msg, label, errnum, err)) < 0 ||
        (r = rc_tools_result_text(ret, true, msg.data, msg.len, err)) < 0)
        return r;
    return TOOL_ERROR;
}

static int confine(rc_toolbox *tb, const char *p, target *t, rc_tool_result *ret, rc_error *err)
{
    rc_error cause = {0};
    int r = rc_pathconf_confine(tb, p, &t->c, &cause);
    if (r == -RC_ENOMEM)
        return rc_error_set(err, RC_ENOMEM, "%s", cause.msg);
    if (r < 0)
        return path_error(tb, p, &cause, ret, err);
    return 0;
}

static int refuse_read_only(rc_toolbox *tb, const char *tool, const char *p, const target *t,
                            rc_tool_result *ret, rc_error *err)
{
    const char *ro = rc_pathconf_read_only_root(tb, t->c.path);
    if (!ro)
        return 0;
    int r =
        rc_tools_result_errorf(ret, err, "%s: %s is inside read-only directory %s", tool, p, ro);
    return r < 0 ? r : TOOL_ERROR;
}

/* Open the target's directory (made with its parents when create). */
static int open_parent(const char *tool, const char *prefix, const char *p, target *t, bool create,
                       rc_tool_result *ret, rc_error *err)
{
    if (t->c.rel[0] == '\0')
        return 0; /* the root itself: name stays NULL */
    int r = rc_pathconf_split(t->c.rel, &t->dir_rel, &t->name, err);
    if (r < 0)
        return r;
    rc_error cause = {0};
    if (rc_pathconf_open_dir(t->c.root, t->dir_rel, create, O_PATH, &t->dirfd, &cause) < 0)
        return fs_error(tool, prefix, p, cause.sys_errno, ret, err);
    return 0;
}

/* Stat the target (not following a symlink), refuse anything but a regular file. */
static int stat_regular(const char *tool, const char *p, const target *t, struct stat *st,
                        rc_tool_result *ret, rc_error *err)
{
    int r;
    if (!t->name) {
        r = rc_tools_result_errorf(ret, err, "%s: %s is not a regular file", tool, p);
        return r < 0 ? r : TOOL_ERROR;
    }
    if (fstatat(t->dirfd, t->name, st, AT_SYMLINK_NOFOLLOW) < 0)
        return fs_error(tool, "", p, errno, ret, err);
    if (!S_ISREG(st->st_mode)) {
        r = rc_tools_result_errorf(ret, err, "%s: %s is not a regular file", tool, p);
        return r < 0 ? r : TOOL_ERROR;
    }
    return 0;
}

/* Open the regular file stat'ed as st; *ret_fd. */
static int open_checked(const char *tool, const char *p, const target *t, const struct stat *st,
                        int *ret_fd, rc_tool_result *ret, rc_error *err)
{
    _cleanup_close_ int fd =
        openat(t->dirfd, t->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return fs_error(tool, "", p, errno, ret, err);
    struct stat now;
    if (fstat(fd, &now) < 0)
        return fs_error(tool, "", p, errno, ret, err);
    if (!S_ISREG(now.st_mode) || now.st_ino != st->st_ino || now.st_dev != st->st_dev) {
        int r = rc_tools_result_errorf(ret, err, "%s: %s is not a regular file", tool, p);
        return r < 0 ? r : TOOL_ERROR;
    }
    *ret_fd = take_fd(fd);
    return 0;
}

/* Read the whole file into out (whose max is the cap); *ret_over when it holds more. */
static int read_all(int fd, rc_buf *out, bool *ret_over, rc_error *err)
{
    *ret_over = false;
    for (;;) {
        size_t room = out->max - out->len;
        size_t want = room < READ_CHUNK ? room : READ_CHUNK;
        if (want == 0) {
            char probe;
            ssize_t n = read(fd, &probe, 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return rc_error_sys(err, RC_EIO, "read");
            *ret_over = n > 0;
            return 0;
        }
        int r = rc_buf_reserve(out, want, err);
        if (r < 0)
            return r;
        ssize_t n = read(fd, out->data + out->len, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "read");
        if (n == 0)
            return 0;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
}

/* Load a whole regular file under the cap (read and edit). */
static int load_file(const char *tool, const char *p, const target *t, const struct stat *st,
                     long long cap, rc_buf *out, rc_tool_result *ret, rc_error *err)
{
    _cleanup_close_ int fd = -1;
    int r = open_checked(tool, p, t, st, &fd, ret, err);
    if (r != 0)
        return r;
    rc_buf_init(out, cap < 0 ? (size_t)INT64_MAX : (size_t)cap);
    bool over;
    rc_error cause = {0};
    if ((r = read_all(fd, out, &over, &cause)) < 0) {
        if (r == -RC_ENOMEM || r == -RC_ETOOBIG)
            return rc_error_set(err, -r, "%s", cause.msg);
        return fs_error(tool, "", p, cause.sys_errno, ret, err);
    }
    if (over) { /* grew past the cap since the stat */
        r = rc_tools_result_errorf(ret, err, "%s: %s changed while it was read", tool, p);
        return r < 0 ? r : TOOL_ERROR;
    }
    return 0;
}

/* ---- atomic write ------------------------------------------------------------------------- */

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* 17.5.2: temporary file in the same directory (0600, or the existing file's permission bits),
 * fsync, rename over the name. errno-style result: 0 or an errno value. */
static int atomic_write(int dirfd, const char *name, const char *data, size_t len)
{
    char uuid[37], tmp[96];
    if (rc_tools_uuid(uuid, NULL) < 0)
        return EIO;
    snprintf(tmp, sizeof(tmp), ".tmp-%ld-%s", (long)getpid(), uuid);
    struct stat st;
    bool existing = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    int e = 0;
    if ((existing && fchmod(fd, st.st_mode & 0777) < 0) || write_all(fd, data, len) < 0 ||
        fsync(fd) < 0)
        e = errno;
    if (close(fd) < 0 && e == 0)
        e = errno;
    if (e == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
        e = errno;
    if (e != 0)
        (void)unlinkat(dirfd, tmp, 0);
    return e;
}

/* ---- read --------------------------------------------------------------------------------- */

typedef struct view_range {
    bool set;
    double first, last; /* as given (for the message) */
    long long start;    /* 0-based first line */
    long long end;      /* one past the last line; LLONG_MAX for "to the end" */
} view_range;

/* JavaScript's truncation of a line number, clamped (no libm needed). */
static long long clamp_ll(double v)
{
    if (v != v)
        return 0;
    if (v >= 9e18)
        return LLONG_MAX;
    if (v <= -9e18)
        return LLONG_MIN + 1;
    return (long long)v;
}

/* 0 with *vr (set only for a non-empty range), TOOL_ERROR when malformed. */
static int parse_view_range(const cJSON *in, view_range *vr, rc_tool_result *ret, rc_error *err)
{
    *vr = (view_range){0};
    const cJSON *v = cJSON_IsObject(in) ? cJSON_GetObjectItemCaseSensitive(in, "view_range") : NULL;
    if (!v || cJSON_IsNull(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return 0;
    const cJSON *a = cJSON_GetArrayItem(v, 0), *b = cJSON_GetArrayItem(v, 1);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsNumber(a) ||
        !cJSON_IsNumber(b)) {
        int r = rc_tools_result_errorf(ret, err, "read: view_range must be [start_line, end_line]");
        return r < 0 ? r : TOOL_ERROR;
    }
    vr->set = true;
    vr->first = a->valuedouble;
    vr->last = b->valuedouble;
    long long s = clamp_ll(a->valuedouble) - 1, e = clamp_ll(b->valuedouble);
    vr->start = s < 0 ? 0 : s;
    vr->end = e > 0 ? e : LLONG_MAX;
    return 0;
}

static void format_number(char *out, size_t n, double v)
{
    if (v > -9e15 && v < 9e15 && v == (double)(long long)v)
        snprintf(out, n, "%lld", (long long)v);
    else
        snprintf(out, n, "%g", v);
}

/* Lines [start, end) of the file, joined by '\n'; the cap applies to the selected bytes. */
typedef struct line_picker {
    const view_range *vr;
    long long line; /* 0-based number of the line being scanned */
    rc_buf *out;
    bool over;
} line_picker;

static int pick_chunk(line_picker *lp, const char *chunk, size_t n, rc_error *err)
{
    size_t pos = 0;
    while (pos < n && lp->line < lp->vr->end) {
        const char *nl = memchr(chunk + pos, '\n', n - pos);
        size_t stop = nl ? (size_t)(nl - chunk) : n;
        if (lp->line >= lp->vr->start) {
            int r = rc_buf_append(lp->out, chunk + pos, stop - pos, err);
            if (r == 0 && nl && lp->line + 1 < lp->vr->end)
                r = rc_buf_putc(lp->out, '\n', err);
            if (r == -RC_ETOOBIG) {
                lp->over = true;
                return 0;
            }
            if (r < 0)
                return r;
        }
        if (!nl)
            break;
        lp->line++;
        pos = stop + 1;
    }
    return 0;
}

static int read_range_error(const char *p, const view_range *vr, long long cap, rc_tool_result *ret,
                            rc_error *err)
{
    int r;
    if (vr->end != LLONG_MAX && vr->end - vr->start == 1) {
        r = rc_tools_result_errorf(ret, err,
                                   "read: line %lld of %s alone exceeds %lld-byte limit. The read "
                                   "tool cannot return part of a line, so view_range cannot "
                                   "narrow this further.",
                                   vr->start + 1, p, cap);
    } else {
        char a[32], b[32];
        format_number(a, sizeof(a), vr->first);
        format_number(b, sizeof(b), vr->last);
        r = rc_tools_result_errorf(
            ret, err,
            "read: view_range [%s, %s] of %s exceeds %lld-byte limit. Narrow "
            "the view_range to read a smaller portion.",
            a, b, p, cap);
    }
    return r < 0 ? r : TOOL_ERROR;
}

static int read_range(const char *p, const target *t, const struct stat *st, long long cap,
                      const view_range *vr, rc_tool_result *ret, rc_error *err)
{
    if (vr->end <= vr->start)
        return rc_tools_result_text(ret, false, "", 0, err);
    _cleanup_close_ int fd = -1;
    int r = open_checked("read", p, t, st, &fd, ret, err);
    if (r != 0)
        return r;
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(cap < 0 ? (size_t)INT64_MAX : (size_t)cap);
    line_picker lp = {.vr = vr, .out = &out};
    _cleanup_free_ char *chunk = malloc(READ_CHUNK);
    if (!chunk)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    while (!lp.over && lp.line < vr->end) {
        ssize_t n = read(fd, chunk, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fs_error("read", "", p, errno, ret, err);
        if (n == 0)
            break;
        if ((r = pick_chunk(&lp, chunk, (size_t)n, err)) < 0)
            return r;
    }
    if (lp.over)
        return read_range_error(p, vr, cap, ret, err);
    return rc_tools_result_text(ret, false, rc_buf_cstr(&out), out.len, err);
}

/* Image files by extension, confirmed by their first bytes. */
static const char *image_type(const char *p, const unsigned char *d, size_t n)
{
    const char *dot = strrchr(p, '.');
    if (!dot || strchr(dot, '/'))
        return NULL;
    if ((!strcasecmp(dot, ".png")) && n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if ((!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) && n >= 3 &&
        !memcmp(d, "\xFF\xD8\xFF", 3))
        return "image/jpeg";
    if (!strcasecmp(dot, ".gif") && n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6)))
        return "image/gif";
    if (!strcasecmp(dot, ".webp") && n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4))
        return "image/webp";
    return NULL;
}

static int image_result(const char *media, const rc_buf *data, rc_tool_result *ret, rc_error *err)
{
    _cleanup_free_ char *b64 = NULL;
    int r = rc_base64_encode_alloc(data->data, data->len, RC_BASE64_STD, &b64, err);
    if (r < 0)
        return r;
    cJSON *arr = cJSON_CreateArray(), *block = cJSON_CreateObject(), *src = cJSON_CreateObject();
    if (!arr || !block || !src) {
        cJSON_Delete(arr);
        cJSON_Delete(block);
        cJSON_Delete(src);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    cJSON_AddItemToArray(arr, block);
    cJSON_AddItemToObject(block, "source", src);
    if (!cJSON_AddStringToObject(block, "type", "image") ||
        !cJSON_AddStringToObject(src, "type", "base64") ||
        !cJSON_AddStringToObject(src, "media_type", media) ||
        !cJSON_AddStringToObject(src, "data", b64)) {
        cJSON_Delete(arr);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    rc_tool_result_clear(ret);
    ret->content = arr;
    ret->is_error = 0;
    return 0;
}

static int read_target(rc_toolbox *tb, const char *p, const target *t, const view_range *vr,
                       rc_tool_result *ret, rc_error *err)
{
    struct stat st;
    int r = stat_regular("read", p, t, &st, ret, err);
    if (r != 0)
        return r;
    long long cap = rc_tools_file_cap(tb);
    if (cap >= 0 && st.st_size > cap && !vr->set) {
        r = rc_tools_result_errorf(ret, err,
                                   "read: %s is %lld bytes, exceeds %lld-byte limit. Use the "
                                   "view_range parameter to read specific line ranges, e.g. "
                                   "view_range: [1, 500].",
                                   p, (long long)st.st_size, cap);
        return r < 0 ? r : TOOL_ERROR;
    }
    if (vr->set)
        return read_range(p, t, &st, cap, vr, ret, err);
    _cleanup_(rc_buf_free) rc_buf data = RC_BUF_INIT(0);
    if ((r = load_file("read", p, t, &st, cap, &data, ret, err)) != 0)
        return r;
    const char *media =
        tb->read_text_only ? NULL : image_type(p, (const unsigned char *)data.data, data.len);
    if (media)
        return image_result(media, &data, ret, err);
    return rc_tools_result_text(ret, false, rc_buf_cstr(&data), data.len, err);
}

int rc_tool_read(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err)
{
    const char *p = NULL;
    int has = rc_tools_input_string(in, "file_path", &p);
    if (has < 0)
        return rc_tools_result_errorf(ret, err, "read: file_path must be a string");
    if (!has)
        return rc_tools_result_errorf(ret, err, "read: file_path is required");
    _cleanup_(target_free) target t = TARGET_INIT;
    int r = confine(tb, p, &t, ret, err);
    if (r != 0)
        return r < 0 ? r : 0;
    view_range vr;
    if ((r = parse_view_range(in, &vr, ret, err)) != 0 ||
        (r = open_parent("read", "", p, &t, false, ret, err)) != 0 ||
        (r = read_target(tb, p, &t, &vr, ret, err)) != 0)
        return r < 0 ? r : 0;
    return 0;
}

/* ---- write -------------------------------------------------------------------------------- */

int rc_tool_write(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err)
{
    const char *p = NULL, *content = "";
    int has = rc_tools_input_string(in, "file_path", &p);
    if (has < 0)
        return rc_tools_result_errorf(ret, err, "write: file_path must be a string");
    if (!has)
        return rc_tools_result_errorf(ret, err, "write: file_path is required");
    if (rc_tools_input_string_any(in, "content", &content) < 0)
        return rc_tools_result_errorf(ret, err, "write: content must be a string");
    _cleanup_(target_free) target t = TARGET_INIT;
    int r = confine(tb, p, &t, ret, err);
    if (r == 0)
        r = refuse_read_only(tb, "write", p, &t, ret, err);
    if (r == 0)
        r = open_parent("write", "", p, &t, true, ret, err);
    if (r != 0)
        return r < 0 ? r : 0;
    size_t len = strlen(content);
    int e = t.name ? atomic_write(t.dirfd, t.name, content, len) : EISDIR;
    if (e != 0)
        return (r = fs_error("write", "", p, e, ret, err)) < 0 ? r : 0;
    return rc_tools_result_okf(ret, err, "wrote %zu bytes to %s", len, p);
}

/* ---- edit --------------------------------------------------------------------------------- */

static size_t count_occurrences(const char *data, size_t len, const char *needle, size_t nlen)
{
    size_t count = 0;
    for (const char *p = data, *end = data + len;
         (p = memmem(p, (size_t)(end - p), needle, nlen)) != NULL; p += nlen)
        count++;
    return count;
}

/* The edited text: every occurrence (all) or the first one replaced, literally. */
static int replace_bytes(const rc_buf *data, const char *old, const char *new_s, bool all,
                         size_t count, rc_buf *out, rc_error *err)
{
    size_t olen = strlen(old), nlen = strlen(new_s), n = all ? count : 1;
    const char *p = data->data ? data->data : "", *end = p + data->len;
    for (size_t i = 0; i < n; i++) {
        const char *hit = memmem(p, (size_t)(end - p), old, olen);
        int r = rc_buf_append(out, p, (size_t)(hit - p), err);
        if (r < 0 || (r = rc_buf_append(out, new_s, nlen, err)) < 0)
            return r;
        p = hit + olen;
    }
    return rc_buf_append(out, p, (size_t)(end - p), err);
}

/* The edited file may grow: bound it so a replace_all cannot exhaust memory. */
static size_t edit_output_max(long long cap)
{
    if (cap < 0)
        return (size_t)1 << 30;
    size_t m = (size_t)cap * 4;
    return m < ((size_t)16 << 20) ? (size_t)16 << 20 : m;
}

static int edit_target(rc_toolbox *tb, const char *p, const target *t, const char *old,
                       const char *new_s, bool all, rc_tool_result *ret, rc_error *err)
{
    struct stat st;
    int r = stat_regular("edit", p, t, &st, ret, err);
    if (r != 0)
        return r;
    long long cap = rc_tools_file_cap(tb);
    if (cap >= 0 && st.st_size > cap) {
        r = rc_tools_result_errorf(ret, err,
                                   "edit: %s is %lld bytes, exceeds %lld-byte limit. The edit tool "
                                   "loads the whole file and cannot modify a file this large.",
                                   p, (long long)st.st_size, cap);
        return r < 0 ? r : TOOL_ERROR;
    }
    _cleanup_(rc_buf_free) rc_buf data = RC_BUF_INIT(0);
    if ((r = load_file("edit", p, t, &st, cap, &data, ret, err)) != 0)
        return r;
    size_t count = count_occurrences(rc_buf_cstr(&data), data.len, old, strlen(old));
    if (count == 0) {
        r = rc_tools_result_errorf(ret, err, "edit: old_string not found in %s", p);
        return r < 0 ? r : TOOL_ERROR;
    }
    if (count > 1 && !all) {
        r = rc_tools_result_errorf(
            ret, err, "edit: old_string appears %zu times in %s (must be unique)", count, p);
        return r < 0 ? r : TOOL_ERROR;
    }
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(edit_output_max(cap));
    if ((r = replace_bytes(&data, old, new_s, all, count, &out, err)) == -RC_ETOOBIG) {
        r = rc_tools_result_errorf(ret, err, "edit: the edited %s would exceed %zu bytes", p,
                                   out.max);
        return r < 0 ? r : TOOL_ERROR;
    }
    if (r < 0)
        return r;
    int e = atomic_write(t->dirfd, t->name, rc_buf_cstr(&out), out.len);
    if (e != 0)
        return fs_error("edit", "write: ", p, e, ret, err);
    return rc_tools_result_okf(ret, err, "edited %s (%zu replacement(s))", p, all ? count : 1);
}

int rc_tool_edit(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err)
{
    const char *p = NULL, *old = NULL, *new_s = NULL;
    int has = rc_tools_input_string(in, "file_path", &p);
    if (has < 0)
        return rc_tools_result_errorf(ret, err, "edit: file_path must be a string");
    if (!has)
        return rc_tools_result_errorf(ret, err, "edit: file_path is required");
    if ((has = rc_tools_input_string(in, "old_string", &old)) < 0)
        return rc_tools_result_errorf(ret, err, "edit: old_string must be a string");
    if (!has)
        return rc_tools_result_errorf(ret, err, "edit: old_string is required");
    if ((has = rc_tools_input_string_any(in, "new_string", &new_s)) < 0)
        return rc_tools_result_errorf(ret, err, "edit: new_string must be a string");
    if (!has)
        return rc_tools_result_errorf(ret, err, "edit: new_string is required");
    _cleanup_(target_free) target t = TARGET_INIT;
    int r = confine(tb, p, &t, ret, err);
    if (r == 0)
        r = refuse_read_only(tb, "edit", p, &t, ret, err);
    if (r == 0)
        r = open_parent("edit", "", p, &t, false, ret, err);
    if (r == 0)
        r = edit_target(tb, p, &t, old, new_s, rc_tools_input_true(in, "replace_all"), ret, err);
    return r < 0 ? r : 0;
}
