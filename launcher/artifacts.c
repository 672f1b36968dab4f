/* artifacts.c - the session-end export of a workspace's artifacts (artifacts.h).
 *
 * Owns the hostile-tree walk and the copy. The workspace is agent-written, so nothing under it is
 * ever named by a path string: every directory is opened with openat(parent_fd, name,
 * O_NOFOLLOW|O_DIRECTORY), every file with openat(dir_fd, name, O_NOFOLLOW|O_NONBLOCK) and then
 * checked again through fstat on that fd (still a regular file, still one link) before its bytes
 * are read from that same fd. Symlinks, devices, FIFOs, sockets and multiply-linked files are
 * counted and skipped. The destination is created fresh (O_EXCL / mkdirat) so nothing already
 * there can redirect a write. Globs are matched per path component (see artifacts.h). */
#include "artifacts.h"

#include "cleanup.h"
#include "fsio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK (64 * 1024)

typedef struct glob_pat {
    char *buf;         /* the pattern with '/' replaced by '\0' */
    const char **segs; /* its components */
    size_t n;
} glob_pat;

typedef struct walk {
    glob_pat pats[RC_ARTIFACTS_MAX_GLOBS];
    size_t npats;
    rc_artifacts_limits lim;
    rc_artifacts_report rep;
    uint64_t entries;
    int dest_fd;
    const char *comps[RC_ARTIFACTS_DEFAULT_MAX_DEPTH + 256]; /* current relative path */
    char *buf;                                               /* COPY_CHUNK bytes */
} walk;

/* ---- globs ----------------------------------------------------------------------------------- */

static int check_glob(const char *g, rc_error *err)
{
    size_t n = strlen(g);
    if (n == 0 || n > RC_ARTIFACTS_GLOB_MAX)
        return rc_error_set(err, RC_EINVAL, "artifact glob: empty or too long");
    if (g[0] == '/')
        return rc_error_set(err, RC_EINVAL, "artifact glob \"%s\": must be relative", g);
    for (const char *p = g; *p;) {
        const char *e = strchrnul(p, '/');
        size_t len = (size_t)(e - p);
        if (len == 0 && *e)
            return rc_error_set(err, RC_EINVAL, "artifact glob \"%s\": empty component", g);
        if ((len == 2 && p[0] == '.' && p[1] == '.') || (len == 1 && p[0] == '.'))
            return rc_error_set(err, RC_EINVAL, "artifact glob \"%s\": . or .. component", g);
        p = *e ? e + 1 : e;
    }
    return 0;
}

void rc_artifacts_globs_free(char **globs)
{
    if (!globs)
        return;
    for (char **g = globs; *g; g++)
        free(*g);
    free(globs);
}

static char *trimmed_dup(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '/'))
        n--;
    return strndup(s, n);
}

int rc_artifacts_parse_globs(const char *csv, char ***ret_globs, rc_error *err)
{
    _cleanup_(rc_artifacts_globs_freep) char **v = calloc(RC_ARTIFACTS_MAX_GLOBS + 1, sizeof *v);
    size_t n = 0;
    int r;
    if (!v)
        return rc_error_set(err, RC_ENOMEM, "artifact globs");
    for (const char *p = csv ? csv : ""; *p;) {
        const char *e = strchrnul(p, ',');
        _cleanup_free_ char *g = trimmed_dup(p, (size_t)(e - p));
        p = *e ? e + 1 : e;
        if (!g)
            return rc_error_set(err, RC_ENOMEM, "artifact globs");
        if (!*g)
            continue;
        if (n == RC_ARTIFACTS_MAX_GLOBS)
            return rc_error_set(err, RC_EINVAL, "more than %d artifact globs",
                                RC_ARTIFACTS_MAX_GLOBS);
        if ((r = check_glob(g, err)) < 0)
            return r;
        v[n++] = take_ptr(g);
    }
    *ret_globs = take_ptr(v);
    return 0;
}

static int compile_glob(const char *g, glob_pat *ret, rc_error *err)
{
    size_t n = 1;
    int r;
    if ((r = check_glob(g, err)) < 0)
        return r;
    for (const char *p = g; *p; p++)
        n += *p == '/';
    _cleanup_free_ char *buf = strdup(g);
    _cleanup_free_ const char **segs = calloc(n, sizeof *segs);
    if (!buf || !segs)
        return rc_error_set(err, RC_ENOMEM, "artifact globs");
    n = 0;
    for (char *p = buf;;) {
        char *e = strchrnul(p, '/');
        bool last = !*e;
        *e = '\0';
        if (*p) /* a trailing '/' leaves an empty last component: ignored */
            segs[n++] = p;
        if (last)
            break;
        p = e + 1;
    }
    ret->buf = take_ptr(buf);
    ret->segs = take_ptr(segs);
    ret->n = n;
    return 0;
}

/* Pattern components ps[0..np) against path components qs[0..nq). prefix: true when the path
 * could be a directory above a match (the path is used up before the pattern). */
static bool segs_match(const char *const *ps, size_t np, const char *const *qs, size_t nq,
                       bool prefix)
{
    if (nq == 0) {
        if (prefix)
            return np > 0;
        for (size_t i = 0; i < np; i++)
            if (strcmp(ps[i], "**") != 0)
                return false;
        return true;
    }
    if (np == 0)
        return false;
    if (strcmp(ps[0], "**") == 0)
        return segs_match(ps + 1, np - 1, qs, nq, prefix) ||
               segs_match(ps, np, qs + 1, nq - 1, prefix);
    return fnmatch(ps[0], qs[0], FNM_PERIOD) == 0 &&
           segs_match(ps + 1, np - 1, qs + 1, nq - 1, prefix);
}

static bool any_match(const walk *w, size_t depth, bool prefix)
{
    for (size_t i = 0; i < w->npats; i++)
        if (segs_match(w->pats[i].segs, w->pats[i].n, w->comps, depth, prefix))
            return true;
    return false;
}

/* ---- destination ----------------------------------------------------------------------------- */

/* Open (making it 0700 when missing) the destination directory for comps[0..depth). */
static int dest_dir_open(const walk *w, size_t depth, rc_error *err)
{
    _cleanup_close_ int fd = fcntl(w->dest_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "artifacts: dup");
    for (size_t i = 0; i < depth; i++) {
        if (mkdirat(fd, w->comps[i], 0700) < 0 && errno != EEXIST)
            return rc_error_sys(err, RC_EIO, "artifacts: mkdir");
        int next = openat(fd, w->comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            return rc_error_sys(err, RC_EIO, "artifacts: open destination directory");
        close(fd);
        fd = next;
    }
    return take_fd(fd);
}

/* Copy at most size bytes from src into a new file name under out_dir. Returns bytes copied. */
static int64_t copy_fd(walk *w, int src, int out_dir, const char *name, uint64_t size,
                       rc_error *err)
{
    _cleanup_close_ int out =
        openat(out_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    uint64_t done = 0;
    if (out < 0)
        return rc_error_sys(err, RC_EIO, "artifacts: create");
    while (done < size) {
        size_t want = size - done < COPY_CHUNK ? (size_t)(size - done) : COPY_CHUNK;
        ssize_t k = read(src, w->buf, want);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 || (k > 0 && rc_fd_write_all(out, w->buf, (size_t)k, NULL, NULL) < 0)) {
            rc_error_sys(err, RC_EIO, "artifacts: copy");
            unlinkat(out_dir, name, 0);
            return -RC_EIO;
        }
        if (k == 0)
            break; /* shrank since fstat: keep what there was */
        done += (uint64_t)k;
    }
    return (int64_t)done;
}

/* ---- walk ------------------------------------------------------------------------------------ */

static void skip(walk *w, uint64_t *reason)
{
    (*reason)++;
    w->rep.skipped++;
}

/* A name that matched and passed lstat as a regular file: open it, check again on the fd, copy. */
static void export_file(walk *w, int dir_fd, const char *name, size_t depth)
{
    rc_error e = {0};
    struct stat st;
    _cleanup_close_ int src =
        openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (src < 0) {
        skip(w, errno == ELOOP ? &w->rep.skipped_symlink : &w->rep.skipped_error);
        return;
    }
    if (fstat(src, &st) < 0) {
        skip(w, &w->rep.skipped_error);
        return;
    }
    if (!S_ISREG(st.st_mode))
        return skip(w, &w->rep.skipped_special);
    if (st.st_nlink > 1)
        return skip(w, &w->rep.skipped_hardlink);
    if ((uint64_t)st.st_size > w->lim.max_file_bytes)
        return skip(w, &w->rep.skipped_too_big);
    if (w->rep.files >= w->lim.max_files ||
        w->rep.bytes + (uint64_t)st.st_size > w->lim.max_total_bytes)
        return skip(w, &w->rep.skipped_cap);
    _cleanup_close_ int out_dir = dest_dir_open(w, depth - 1, &e);
    if (out_dir < 0)
        return skip(w, &w->rep.skipped_error);
    int64_t n = copy_fd(w, src, out_dir, name, (uint64_t)st.st_size, &e);
    if (n < 0)
        return skip(w, &w->rep.skipped_error);
    w->rep.files++;
    w->rep.bytes += (uint64_t)n;
}

static void walk_dir(walk *w, int dir_fd, size_t depth, bool all);

static void walk_subdir(walk *w, int dir_fd, const char *name, size_t depth, bool all)
{
    if (!all && !any_match(w, depth, true))
        return;
    if (depth > w->lim.max_depth)
        return skip(w, &w->rep.skipped_depth);
    int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return skip(w, errno == ELOOP || errno == ENOTDIR ? &w->rep.skipped_symlink
                                                          : &w->rep.skipped_error);
    walk_dir(w, fd, depth, all); /* takes fd */
}

static void visit(walk *w, int dir_fd, const char *name, size_t depth, bool all)
{
    struct stat st;
    w->comps[depth - 1] = name;
    bool match = all || any_match(w, depth, false);
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (match)
            skip(w, &w->rep.skipped_error);
        return;
    }
    if (S_ISDIR(st.st_mode))
        walk_subdir(w, dir_fd, name, depth, match);
    else if (!match)
        return;
    else if (S_ISLNK(st.st_mode))
        skip(w, &w->rep.skipped_symlink);
    else if (S_ISREG(st.st_mode))
        export_file(w, dir_fd, name, depth);
    else
        skip(w, &w->rep.skipped_special);
}

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* Walk the directory open on fd (taken) whose path is comps[0..depth). */
static void walk_dir(walk *w, int fd, size_t depth, bool all)
{
    _cleanup_(closedirp) DIR *d = fdopendir(fd);
    struct dirent *de;
    if (!d) {
        close(fd);
        return skip(w, &w->rep.skipped_error);
    }
    while (!w->rep.walk_truncated && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (++w->entries > w->lim.max_entries) {
            w->rep.walk_truncated = 1;
            break;
        }
        visit(w, dirfd(d), de->d_name, depth + 1, all);
    }
}

/* ---- entry point ----------------------------------------------------------------------------- */

static void resolve_limits(const rc_artifacts_limits *in, rc_artifacts_limits *ret)
{
    rc_artifacts_limits l = in ? *in : (rc_artifacts_limits){0};
    if (!l.max_files)
        l.max_files = RC_ARTIFACTS_DEFAULT_MAX_FILES;
    if (!l.max_total_bytes)
        l.max_total_bytes = RC_ARTIFACTS_DEFAULT_MAX_TOTAL_BYTES;
    if (!l.max_file_bytes || l.max_file_bytes > l.max_total_bytes)
        l.max_file_bytes = l.max_total_bytes;
    if (!l.max_entries)
        l.max_entries = RC_ARTIFACTS_DEFAULT_MAX_ENTRIES;
    if (!l.max_depth || l.max_depth > RC_ARTIFACTS_DEFAULT_MAX_DEPTH)
        l.max_depth = RC_ARTIFACTS_DEFAULT_MAX_DEPTH;
    *ret = l;
}

static void walk_free(walk *w)
{
    for (size_t i = 0; i < w->npats; i++) {
        free(w->pats[i].buf);
        free(w->pats[i].segs);
    }
    free(w->buf);
    if (w->dest_fd >= 0)
        close(w->dest_fd);
}

static int walk_init(walk *w, const char *const *globs, const rc_artifacts_limits *lim,
                     rc_error *err)
{
    int r;
    resolve_limits(lim, &w->lim);
    for (size_t i = 0; globs && globs[i]; i++) {
        if (w->npats == RC_ARTIFACTS_MAX_GLOBS)
            return rc_error_set(err, RC_EINVAL, "more than %d artifact globs",
                                RC_ARTIFACTS_MAX_GLOBS);
        if ((r = compile_glob(globs[i], &w->pats[w->npats], err)) < 0)
            return r;
        w->npats++;
    }
    if (!(w->buf = malloc(COPY_CHUNK)))
        return rc_error_set(err, RC_ENOMEM, "artifacts: copy buffer");
    return 0;
}

int rc_artifacts_export(const char *workspace_dir, const char *const *globs, const char *dest_dir,
                        const rc_artifacts_limits *lim, rc_artifacts_report *ret, rc_error *err)
{
    _cleanup_(walk_free) walk w = {.dest_fd = -1};
    int r;
    if (!workspace_dir || !dest_dir || !ret)
        return rc_error_set(err, RC_EINVAL, "artifacts: missing argument");
    if ((r = walk_init(&w, globs, lim, err)) < 0)
        return r;
    int src = open(workspace_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0)
        return rc_error_sys(err, RC_EIO, "artifacts: open workspace %s", workspace_dir);
    if (mkdir(dest_dir, 0700) < 0) {
        close(src);
        return rc_error_sys(err, errno == EEXIST ? RC_EINVAL : RC_EIO, "artifacts: mkdir %s",
                            dest_dir);
    }
    w.dest_fd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (w.dest_fd < 0) {
        close(src);
        return rc_error_sys(err, RC_EIO, "artifacts: open %s", dest_dir);
    }
    if (w.npats)
        walk_dir(&w, src, 0, false);
    else
        close(src);
    if (w.rep.files == 0)
        rmdir(dest_dir);
    *ret = w.rep;
    return (int)(w.rep.files > INT32_MAX ? INT32_MAX : w.rep.files);
}
