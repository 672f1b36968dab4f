/* pathconf.c - path confinement for the file tools (protocol 17.3) and the wording of
 * filesystem errors (17.4).
 *
 * A requested path is collapsed lexically, then canonicalised the way the SDK does (every
 * symlink followed, including a dangling last one; missing components re-appended; ELOOP after
 * 40 hops), checked against the canonical workdir and allowed roots, and the tools then act on
 * the canonical target only. Because that target holds no symlink, the tools open it with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from a descriptor of its root (or, where the
 * kernel lacks openat2, component by component with O_NOFOLLOW): a component swapped for a
 * symlink between the check and the use makes the open fail instead of leading outside, which
 * closes the residual race of 17.3 step 8. */
#include "tools_internal.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_SYMLINK_HOPS 40

void rc_confined_clear(rc_confined *c)
{
    free(c->path);
    free(c->root);
    *c = (rc_confined){0};
}

/* ---- lexical form ------------------------------------------------------------------------- */

/* Append the components of s to out[0..*len) ("/a/b" form), collapsing '.', '..' and empty. */
static void push_components(char *out, size_t *len, const char *s)
{
    const char *c = s;
    while (*c) {
        while (*c == '/')
            c++;
        if (!*c)
            break;
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 1 && c[0] == '.') {
            /* nothing */
        } else if (n == 2 && c[0] == '.' && c[1] == '.') {
            while (*len > 0 && out[*len - 1] != '/')
                (*len)--;
            if (*len > 0)
                (*len)--;
        } else {
            out[(*len)++] = '/';
            memcpy(out + *len, c, n);
            *len += n;
        }
        c += n;
    }
}

int rc_pathconf_lexical(const char *base, const char *p, char **ret, rc_error *err)
{
    bool absolute = p[0] == '/';
    size_t cap = strlen(p) + (absolute ? 0 : strlen(base)) + 3;
    char *out = malloc(cap);
    if (!out)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    size_t len = 0;
    if (!absolute)
        push_components(out, &len, base);
    push_components(out, &len, p);
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
    *ret = out;
    return 0;
}

/* ---- canonical form ----------------------------------------------------------------------- */

static int sys_fail(rc_error *err, int errnum, const char *what)
{
    errno = errnum;
    return rc_error_sys(err, RC_EIO, "%s", what);
}

/* path is lexical and absolute; the symlink ends at path[end]; start is where its name begins.
 * Builds the path with the link replaced by its target (relative targets against the link's
 * directory) and the rest re-appended, collapsed lexically again (as Node's path.resolve). */
static int splice_link(const char *path, size_t start, size_t end, char **ret, rc_error *err)
{
    char target[PATH_MAX + 1];
    _cleanup_free_ char *link = strndup(path, end);
    if (!link)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    ssize_t n = readlink(link, target, sizeof(target));
    if (n < 0)
        return rc_error_sys(err, RC_EIO, "readlink");
    if ((size_t)n >= sizeof(target))
        return sys_fail(err, ENAMETOOLONG, "readlink");
    target[n] = '\0';
    const char *rest = path + end;
    size_t cap = start + (size_t)n + strlen(rest) + 4;
    _cleanup_free_ char *joined = malloc(cap);
    if (!joined)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    size_t len = 0;
    if (target[0] != '/') {
        memcpy(joined, path, start); /* the parent, with its trailing '/' */
        len = start;
    }
    memcpy(joined + len, target, (size_t)n);
    len += (size_t)n;
    joined[len++] = '/';
    memcpy(joined + len, rest, strlen(rest) + 1);
    return rc_pathconf_lexical("/", joined, ret, err);
}

int rc_pathconf_canonicalize(const char *abs, char **ret, rc_error *err)
{
    _cleanup_free_ char *path = NULL;
    int r = rc_pathconf_lexical("/", abs, &path, err);
    if (r < 0)
        return r;
    int hops = 0;
restart:
    for (size_t pos = 0; path[pos] == '/' && path[pos + 1];) {
        size_t start = pos + 1;
        const char *slash = strchr(path + start, '/');
        size_t end = slash ? (size_t)(slash - path) : strlen(path);
        char saved = path[end];
        struct stat st;
        path[end] = '\0';
        int sr = lstat(path, &st);
        int e = errno;
        path[end] = saved;
        if (sr < 0) {
            if (e == ENOENT || e == ENOTDIR)
                break; /* the rest does not exist: re-append it as it is */
            return sys_fail(err, e, "lstat");
        }
        if (S_ISLNK(st.st_mode)) {
            if (++hops > MAX_SYMLINK_HOPS)
                return sys_fail(err, ELOOP, "symlink");
            char *next = NULL;
            if ((r = splice_link(path, start, end, &next, err)) < 0)
                return r;
            free(path);
            path = next;
            goto restart;
        }
        pos = end;
    }
    *ret = take_ptr(path);
    return 0;
}

bool rc_pathconf_within(const char *root, const char *p)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return p[0] == '/';
    return strncmp(root, p, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* Canonical form of a configured directory (relative ones against the workdir). */
static int canonical_root(const char *base, const char *dir, char **ret, rc_error *err)
{
    _cleanup_free_ char *lex = NULL;
    int r = rc_pathconf_lexical(base, dir, &lex, err);
    if (r < 0)
        return r;
    return rc_pathconf_canonicalize(lex, ret, err);
}

static int confined_set(rc_confined *ret, char **target, const char *root, rc_error *err)
{
    char *root_copy = strdup(root);
    if (!root_copy)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    ret->path = take_ptr(*target);
    ret->root = root_copy;
    size_t n = strlen(root);
    ret->rel = ret->path + (n == 1 ? 1 : n);
    if (*ret->rel == '/')
        ret->rel++;
    return 0;
}

int rc_pathconf_confine(const rc_toolbox *tb, const char *p, rc_confined *ret, rc_error *err)
{
    _cleanup_free_ char *root = NULL, *lex = NULL, *target = NULL;
    int r = canonical_root("/", tb->workdir, &root, err);
    if (r < 0)
        return r;
    if ((r = rc_pathconf_lexical(root, p, &lex, err)) < 0 ||
        (r = rc_pathconf_canonicalize(lex, &target, err)) < 0)
        return r;
    if (rc_pathconf_within(root, target))
        return confined_set(ret, &target, root, err);
    for (char **a = tb->allowed_roots; *a; a++) {
        _cleanup_free_ char *allowed = NULL;
        if (canonical_root(root, *a, &allowed, NULL) < 0)
            continue; /* a root that cannot be resolved grants nothing */
        if (rc_pathconf_within(allowed, target))
            return confined_set(ret, &target, allowed, err);
    }
    return rc_error_set(err, RC_EINVAL, "path is outside the permitted directories");
}

const char *rc_pathconf_read_only_root(const rc_toolbox *tb, const char *target)
{
    _cleanup_free_ char *root = NULL;
    if (canonical_root("/", tb->workdir, &root, NULL) < 0)
        return NULL;
    for (char **ro = tb->read_only_roots; *ro; ro++) {
        _cleanup_free_ char *canon = NULL;
        if (canonical_root(root, *ro, &canon, NULL) < 0)
            continue;
        if (rc_pathconf_within(canon, target))
            return *ro;
    }
    return NULL;
}

int rc_pathconf_message(const rc_toolbox *tb, const char *p, const rc_error *cause, rc_buf *out,
                        rc_error *err)
{
    int r;
    if ((r = rc_buf_append_str(out, "path ", err)) < 0 ||
        (r = rc_json_quote_append(out, p, err)) < 0)
        return r;
    if (cause->code == RC_EINVAL)
        return rc_buf_append_str(out,
                                 tb->allowed_roots[0]
                                     ? " is outside the session's working directory and its "
                                       "other permitted directories"
                                     : " is outside the session's working directory",
                                 err);
    char scratch[64];
    return rc_buf_appendf(out, err, ": %s",
                          rc_fs_reason(cause->sys_errno, scratch, sizeof(scratch)));
}

/* ---- confined opening --------------------------------------------------------------------- */

int rc_pathconf_split(const char *rel, char **ret_dir, const char **ret_base, rc_error *err)
{
    const char *slash = strrchr(rel, '/');
    char *dir = slash ? strndup(rel, (size_t)(slash - rel)) : strdup("");
    if (!dir)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    *ret_dir = dir;
    *ret_base = slash ? slash + 1 : rel;
    return 0;
}

static int openat2_beneath(int rootfd, const char *rel, int flags)
{
#ifdef SYS_openat2
    struct open_how how = {
        .flags = (unsigned long long)(flags | O_CLOEXEC),
        .mode = 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    for (int attempt = 0; attempt < 8; attempt++) {
        long fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
        if (fd >= 0 || errno != EAGAIN)
            return (int)fd;
    }
    return -1;
#else
    (void)rootfd;
    (void)rel;
    (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

/* One directory component below cur, never through a symlink; made (0700) when create. */
static int open_component(int cur, const char *name, bool create)
{
    if (strcmp(name, "..") == 0) {
        errno = EXDEV; /* never produced by a canonical path; refuse rather than climb */
        return -1;
    }
    int fd = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (mkdirat(cur, name, 0700) < 0 && errno != EEXIST)
            return -1;
        fd = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    struct stat st;
    if (fd < 0) {
        int e = errno;
        if (e == ENOTDIR && fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode))
            e = ELOOP;
        errno = e;
        return -1;
    }
    int e = fstat(fd, &st) < 0     ? errno
            : S_ISLNK(st.st_mode)  ? ELOOP
            : !S_ISDIR(st.st_mode) ? ENOTDIR
                                   : 0;
    if (e != 0) {
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int walk_components(int rootfd, const char *rel_dir, bool create)
{
    _cleanup_close_ int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    _cleanup_free_ char *copy = strdup(rel_dir);
    if (cur < 0 || !copy) {
        if (!copy)
            errno = ENOMEM;
        return -1;
    }
    for (char *c = copy, *next; c && *c; c = next) {
        char *slash = strchr(c, '/');
        next = slash ? slash + 1 : NULL;
        if (slash)
            *slash = '\0';
        if (*c == '\0' || strcmp(c, ".") == 0)
            continue;
        int fd = open_component(cur, c, create);
        if (fd < 0)
            return -1;
        close(cur);
        cur = fd;
    }
    return take_fd(cur);
}

int rc_pathconf_open_dir(const char *root, const char *rel_dir, bool create, int flags, int *ret_fd,
                         rc_error *err)
{
    _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (rootfd < 0)
        return rc_error_sys(err, RC_EIO, "open root");
    flags |= O_DIRECTORY;
    _cleanup_close_ int dirfd = -1;
    if (!create && rel_dir[0] != '\0') {
        dirfd = openat2_beneath(rootfd, rel_dir, flags);
        if (dirfd >= 0) {
            *ret_fd = take_fd(dirfd);
            return 0;
        }
        if (errno != ENOSYS && errno != EPERM)
            return rc_error_sys(err, RC_EIO, "openat2");
    }
    dirfd = walk_components(rootfd, rel_dir, create);
    if (dirfd < 0)
        return rc_error_sys(err, RC_EIO, "open directory");
    if (!(flags & O_PATH)) {
        int fd = openat(dirfd, ".", flags | O_CLOEXEC);
        if (fd < 0)
            return rc_error_sys(err, RC_EIO, "open directory");
        close(dirfd);
        dirfd = fd;
    }
    *ret_fd = take_fd(dirfd);
    return 0;
}

/* ---- wording ------------------------------------------------------------------------------ */

const char *rc_fs_reason(int errnum, char *scratch, size_t scratch_len)
{
    switch (errnum) {
    case ENOENT:
        return "no such file or directory";
    case EACCES:
    case EPERM:
        return "permission denied";
    case ENOTDIR:
        return "not a directory";
    case EISDIR:
        return "is a directory";
    case ELOOP:
        return "too many levels of symbolic links";
    case ENAMETOOLONG:
        return "file name too long";
    case ENOSPC:
        return "no space left on device";
    case EMFILE:
    case ENFILE:
        return "too many open files";
    case 0:
        return "i/o error";
    default: {
        const char *name = strerrorname_np(errnum);
        if (!name)
            return "i/o error";
        snprintf(scratch, scratch_len, "i/o error (%s)", name);
        return scratch;
    }
    }
}

int rc_fs_message(rc_buf *out, const char *label, int errnum, rc_error *err)
{
    char scratch[64];
    return rc_buf_appendf(out, err, "%s: %s", label,
                          rc_fs_reason(errnum, scratch, sizeof(scratch)));
}

int rc_json_quote_append(rc_buf *out, const char *p, rc_error *err)
{
    int r = rc_buf_putc(out, '"', err);
    for (const unsigned char *c = (const unsigned char *)p; r == 0 && *c; c++) {
        switch (*c) {
        case '"':
            r = rc_buf_append_str(out, "\\\"", err);
            break;
        case '\\':
            r = rc_buf_append_str(out, "\\\\", err);
            break;
        case '\b':
            r = rc_buf_append_str(out, "\\b", err);
            break;
        case '\f':
            r = rc_buf_append_str(out, "\\f", err);
            break;
        case '\n':
            r = rc_buf_append_str(out, "\\n", err);
            break;
        case '\r':
            r = rc_buf_append_str(out, "\\r", err);
            break;
        case '\t':
            r = rc_buf_append_str(out, "\\t", err);
            break;
        default:
            r = *c < 0x20 ? rc_buf_appendf(out, err, "\\u%04x", *c)
                          : rc_buf_putc(out, (char)*c, err);
        }
    }
    return r < 0 ? r : rc_buf_putc(out, '"', err);
}
