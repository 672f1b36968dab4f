/* tool_search.c - the `glob` and `grep` tools (protocol 17.11, 17.12).
 *
 * Both walk the tree the same way: from a directory descriptor opened beneath the confined root,
 * entries of each directory sorted by name (as Node's readdir returns them), `.git` and
 * `node_modules` pruned, symlinks and special files never followed, at most 50,000 entries and 40
 * levels. Nothing is reached through a path string, so a symlink planted during the walk cannot
 * lead outside.
 *
 * glob matches its own small glob dialect (`*`, `**`, `?`, `[...]`, `{a,b}`; `*` matches dot
 * files) with a linear-time matcher, so no pattern the model writes can make it backtrack
 * exponentially. grep uses `rg` when one is on PATH outside the roots, else a built-in walker
 * whose dialect is POSIX extended regular expressions (glibc) after a translation of the common
 * JavaScript forms: \d \D, \t \n \r \f \v, \xHH, \uHHHH, (?:...) and (?<name>...) groups, lazy
 * quantifiers (same matches per line), `{` that is not a quantifier, and character classes with
 * escapes. Back-references, lookaround and nested counted repetitions over 10,000 copies are
 * refused as invalid: they are what would make a line match slow. */
#include "tools_internal.h"

#include "cleanup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PATTERN_MAX      8192
#define GLOB_ALTS_MAX    256
#define GLOB_SEGS_MAX    256
#define READ_CHUNK       65536
#define RG_STDERR_MAX    65536
#define REPEAT_COST_MAX  10000UL
#define REGEX_GROUPS_MAX 64

/* ---- the walk ----------------------------------------------------------------------------- */

typedef struct walker walker;
struct walker {
    int remaining;
    bool stop;
    /* 0 continue, 1 stop the walk, < 0 error */
    int (*on_file)(walker *w, int dirfd, const char *name, const char *rel);
    bool (*want_dir)(walker *w, const char *rel);
    bool (*interrupted)(walker *w);
    void *ctx;
};

typedef struct dir_entry {
    char *name;
    unsigned char type;
} dir_entry;

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const dir_entry *)a)->name, ((const dir_entry *)b)->name);
}

static void entries_free(dir_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].name);
    free(e);
}

/* The directory's entries (without . .. .git node_modules), at most max, sorted by name. */
static int read_entries(DIR *d, size_t max, dir_entry **ret, size_t *ret_n, rc_error *err)
{
    dir_entry *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while (n < max && (de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..") || !strcmp(nm, ".git") ||
            !strcmp(nm, "node_modules"))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            dir_entry *nv = realloc(v, ncap * sizeof(*v));
            if (!nv)
                goto oom;
            v = nv;
            cap = ncap;
        }
        if (!(v[n].name = strdup(nm)))
            goto oom;
        v[n++].type = de->d_type;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), entry_cmp);
    *ret = v;
    *ret_n = n;
    return 0;
oom:
    entries_free(v, n);
    return rc_error_set(err, RC_ENOMEM, "out of memory");
}

static unsigned char entry_type(int dirfd, const dir_entry *e)
{
    if (e->type != DT_UNKNOWN)
        return e->type;
    struct stat st;
    if (fstatat(dirfd, e->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return DT_UNKNOWN;
    return S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
}

static int walk_dir(walker *w, DIR *d, rc_buf *rel, int depth, rc_error *err);

static int walk_entry(walker *w, DIR *d, const dir_entry *e, rc_buf *rel, int depth, rc_error *err)
{
    int dfd = dirfd(d);
    size_t mark = rel->len;
    int r = rel->len ? rc_buf_putc(rel, '/', err) : 0;
    if (r < 0 || (r = rc_buf_append_str(rel, e->name, err)) < 0)
        return r;
    unsigned char type = entry_type(dfd, e);
    if (type == DT_DIR && depth + 1 <= RC_TOOLS_WALK_MAX_DEPTH &&
        (!w->want_dir || w->want_dir(w, rc_buf_cstr(rel)))) {
        int fd = openat(dfd, e->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *sub = fd >= 0 ? fdopendir(fd) : NULL;
        if (fd >= 0 && !sub)
            close(fd);
        if (sub) {
            r = walk_dir(w, sub, rel, depth + 1, err);
            closedir(sub);
        }
    } else if (type == DT_REG) {
        r = w->on_file(w, dfd, e->name, rc_buf_cstr(rel));
        if (r == 1)
            w->stop = true;
    }
    rel->len = mark;
    if (rel->data)
        rel->data[mark] = '\0';
    return r < 0 ? r : 0;
}

static int walk_dir(walker *w, DIR *d, rc_buf *rel, int depth, rc_error *err)
{
    dir_entry *v = NULL;
    size_t n = 0;
    int r = read_entries(d, w->remaining > 0 ? (size_t)w->remaining : 0, &v, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n && r >= 0 && !w->stop; i++) {
        if (w->remaining-- <= 0 || (w->interrupted && w->interrupted(w))) {
            w->stop = true;
            break;
        }
        r = walk_entry(w, d, &v[i], rel, depth, err);
    }
    entries_free(v, n);
    return r;
}

/* Walk the directory root/rel_dir; 0, or -RC_EIO with sys_errno when it cannot be opened. */
static int walk(walker *w, const rc_confined *c, rc_error *err)
{
    int fd;
    int r = rc_pathconf_open_dir(c->root, c->rel, false, O_RDONLY, &fd, err);
    if (r < 0)
        return r;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return rc_error_sys(err, RC_EIO, "fdopendir");
    }
    _cleanup_(rc_buf_free) rc_buf rel = RC_BUF_INIT(PATH_MAX * 2);
    w->remaining = RC_TOOLS_WALK_MAX_ENTRIES;
    r = walk_dir(w, d, &rel, 0, err);
    closedir(d);
    return r;
}

/* root + "/" + rel */
static int join_path(rc_buf *out, const char *root, const char *rel, rc_error *err)
{
    int r = rc_buf_append_str(out, strcmp(root, "/") == 0 ? "" : root, err);
    if (r == 0 && rel[0])
        r = rc_buf_appendf(out, err, "/%s", rel);
    if (r == 0 && out->len == 0)
        r = rc_buf_putc(out, '/', err);
    return r;
}

/* ---- glob: pattern matching --------------------------------------------------------------- */

/* Code points of a UTF-8 string; an invalid byte b becomes 0xDC00 + b. */
static size_t decode_utf8(const char *s, size_t n, uint32_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char b = u[i];
        size_t len = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 ? 2 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (u[i + k] & 0xC0) == 0x80;
        if (!ok) {
            out[o++] = 0xDC00 + b;
            i++;
            continue;
        }
        uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1Fu) : len == 3 ? (b & 0x0Fu) : (b & 0x07u);
        for (size_t k = 1; k < len; k++)
            cp = (cp << 6) | (u[i + k] & 0x3Fu);
        out[o++] = cp;
        i += len;
    }
    return o;
}

/* Length of the bracket expression at p[0] == '[' (through its ']'), 0 when unterminated. */
static size_t bracket_len(const uint32_t *p, size_t n)
{
    size_t i = 1;
    if (i < n && (p[i] == '!' || p[i] == '^'))
        i++;
    if (i < n && p[i] == ']')
        i++;
    while (i < n && p[i] != ']') {
        if (p[i] == '\\' && i + 1 < n)
            i++;
        else if (p[i] == '[' && i + 1 < n && p[i + 1] == ':') {
            size_t j = i + 2;
            while (j + 1 < n && !(p[j] == ':' && p[j + 1] == ']'))
                j++;
            if (j + 1 < n)
                i = j + 1;
        }
        i++;
    }
    return i < n ? i + 1 : 0;
}

static bool class_named(const uint32_t *name, size_t n, uint32_t c)
{
    char buf[16];
    if (n >= sizeof(buf))
        return false;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(name[i] < 128 ? name[i] : '?');
    buf[n] = '\0';
    bool ascii = c < 128;
    if (!strcmp(buf, "alpha"))
        return ascii && ((c | 32) >= 'a' && (c | 32) <= 'z');
    if (!strcmp(buf, "digit"))
        return c >= '0' && c <= '9';
    if (!strcmp(buf, "alnum"))
        return class_named((const uint32_t[]){'a', 'l', 'p', 'h', 'a'}, 5, c) ||
               (c >= '0' && c <= '9');
    if (!strcmp(buf, "upper"))
        return c >= 'A' && c <= 'Z';
    if (!strcmp(buf, "lower"))
        return c >= 'a' && c <= 'z';
    if (!strcmp(buf, "space"))
        return c == ' ' || (c >= '\t' && c <= '\r');
    if (!strcmp(buf, "xdigit"))
        return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f');
    if (!strcmp(buf, "punct"))
        return ascii && c > ' ' && c < 127 && !((c | 32) >= 'a' && (c | 32) <= 'z') &&
               !(c >= '0' && c <= '9');
    return false;
}

/* Does c match the bracket p[0..len)? */
static bool bracket_match(const uint32_t *p, size_t len, uint32_t c)
{
    size_t i = 1, end = len - 1;
    bool neg = false, hit = false;
    if (p[i] == '!' || p[i] == '^') {
        neg = true;
        i++;
    }
    for (bool first = true; i < end; first = false) {
        if (p[i] == '[' && i + 1 < end && p[i + 1] == ':') {
            size_t j = i + 2;
            while (j + 1 < end + 1 && !(p[j] == ':' && p[j + 1] == ']'))
                j++;
            hit = hit || class_named(p + i + 2, j - i - 2, c);
            i = j + 2;
            continue;
        }
        (void)first;
        uint32_t lo = p[i];
        if (lo == '\\' && i + 1 < end)
            lo = p[++i];
        i++;
        uint32_t hi = lo;
        if (i + 1 < end && p[i] == '-') {
            hi = p[i + 1];
            if (hi == '\\' && i + 2 < end)
                hi = p[++i + 1];
            i += 2;
        }
        if (c >= lo && c <= hi)
            hit = true;
    }
    return hit != neg;
}

/* One element at p[i]: its length, and whether it matches c (for non-star elements). */
static size_t element(const uint32_t *p, size_t n, size_t i, uint32_t c, bool *ret_match)
{
    if (p[i] == '?') {
        *ret_match = true;
        return 1;
    }
    if (p[i] == '[') {
        size_t len = bracket_len(p + i, n - i);
        if (len) {
            *ret_match = bracket_match(p + i, len, c);
            return len;
        }
    }
    if (p[i] == '\\' && i + 1 < n) {
        *ret_match = p[i + 1] == c;
        return 2;
    }
    *ret_match = p[i] == c;
    return 1;
}

/* One path component against one pattern component: greedy with one backtrack point per star,
 * O(len(p) * len(s)). */
static bool segment_match(const uint32_t *p, size_t pn, const uint32_t *s, size_t sn)
{
    size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;
    while (si < sn) {
        bool m = false;
        size_t len = 0;
        if (pi < pn && p[pi] != '*')
            len = element(p, pn, pi, s[si], &m);
        if (len && m) {
            pi += len;
            si++;
        } else if (pi < pn && p[pi] == '*') {
            star = ++pi;
            mark = si;
        } else if (star != SIZE_MAX) {
            pi = star;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

typedef struct glob_seg {
    uint32_t *cp;
    size_t n;
    bool globstar;
} glob_seg;

typedef struct glob_pat {
    glob_seg *segs;
    size_t n;
} glob_pat;

typedef struct glob_set {
    glob_pat *pats;
    size_t n;
} glob_set;

static void glob_set_free(glob_set *g)
{
    for (size_t i = 0; i < g->n; i++) {
        for (size_t k = 0; k < g->pats[i].n; k++)
            free(g->pats[i].segs[k].cp);
        free(g->pats[i].segs);
    }
    free(g->pats);
    *g = (glob_set){0};
}

/* Position of the '}' closing the '{' at s[open], and whether it has a top-level ','. */
static size_t brace_close(const char *s, size_t open, bool *ret_comma)
{
    int depth = 0;
    *ret_comma = false;
    for (size_t i = open; s[i]; i++) {
        if (s[i] == '\\' && s[i + 1]) {
            i++;
        } else if (s[i] == '{') {
            depth++;
        } else if (s[i] == '}') {
            if (--depth == 0)
                return i;
        } else if (s[i] == ',' && depth == 1) {
            *ret_comma = true;
        }
    }
    return 0;
}

static int glob_add_pattern(glob_set *g, const char *pat, rc_error *err);

/* Expand the first brace group with alternatives; plain patterns are added as they are. */
static int brace_expand(glob_set *g, const char *pat, rc_error *err)
{
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == '\\' && pat[i + 1]) {
            i++;
            continue;
        }
        bool comma;
        size_t close = pat[i] == '{' ? brace_close(pat, i, &comma) : 0;
        if (!close || !comma)
            continue;
        size_t start = i + 1;
        int depth = 0;
        for (size_t k = i + 1; k <= close; k++) {
            if (pat[k] == '\\' && k + 1 < close) {
                k++;
                continue;
            }
            depth += pat[k] == '{' ? 1 : pat[k] == '}' && k < close ? -1 : 0;
            if ((pat[k] == ',' && depth == 0) || k == close) {
                _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(strlen(pat) + 1);
                int r = rc_buf_append(&b, pat, i, err);
                if (r < 0 || (r = rc_buf_append(&b, pat + start, k - start, err)) < 0 ||
                    (r = rc_buf_append_str(&b, pat + close + 1, err)) < 0 ||
                    (r = brace_expand(g, rc_buf_cstr(&b), err)) < 0)
                    return r;
                start = k + 1;
            }
        }
        return 0;
    }
    return glob_add_pattern(g, pat, err);
}

static int glob_add_pattern(glob_set *g, const char *pat, rc_error *err)
{
    if (g->n >= GLOB_ALTS_MAX)
        return rc_error_set(err, RC_ETOOBIG, "pattern expands to more than %d alternatives",
                            GLOB_ALTS_MAX);
    glob_pat *np = realloc(g->pats, (g->n + 1) * sizeof(*np));
    if (!np)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    g->pats = np;
    glob_pat *gp = &g->pats[g->n++];
    *gp = (glob_pat){0};
    for (const char *c = pat; *c;) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);
        if (len > 0 && !(len == 1 && c[0] == '.')) {
            if (gp->n >= GLOB_SEGS_MAX)
                return rc_error_set(err, RC_ETOOBIG, "pattern has too many components");
            glob_seg *ns = realloc(gp->segs, (gp->n + 1) * sizeof(*ns));
            if (!ns)
                return rc_error_set(err, RC_ENOMEM, "out of memory");
            gp->segs = ns;
            glob_seg *s = &gp->segs[gp->n++];
            *s = (glob_seg){.globstar = len == 2 && c[0] == '*' && c[1] == '*'};
            if (!(s->cp = malloc((len + 1) * sizeof(uint32_t))))
                return rc_error_set(err, RC_ENOMEM, "out of memory");
            s->n = decode_utf8(c, len, s->cp);
        }
        c += len + (slash ? 1 : 0);
    }
    return 0;
}

typedef struct path_segs {
    uint32_t *cp; /* all components, decoded */
    size_t off[RC_TOOLS_WALK_MAX_DEPTH + 2];
    size_t len[RC_TOOLS_WALK_MAX_DEPTH + 2];
    size_t n;
} path_segs;

static int split_path(const char *rel, path_segs *ps, rc_error *err)
{
    size_t total = strlen(rel);
    if (!(ps->cp = malloc((total + 1) * sizeof(uint32_t))))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    ps->n = 0;
    size_t o = 0;
    for (const char *c = rel; *c && ps->n < RC_TOOLS_WALK_MAX_DEPTH + 2;) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);
        ps->off[ps->n] = o;
        ps->len[ps->n] = decode_utf8(c, len, ps->cp + o);
        o += ps->len[ps->n++];
        c += len + (slash ? 1 : 0);
    }
    return 0;
}

/* dp over (pattern component, path component); prefix: could a longer path below match? */
static bool pattern_match(const glob_pat *gp, const path_segs *ps, bool prefix)
{
    size_t k = gp->n, n = ps->n;
    bool row[RC_TOOLS_WALK_MAX_DEPTH + 3], next[RC_TOOLS_WALK_MAX_DEPTH + 3];
    for (size_t j = 0; j <= n; j++) /* i == k: nothing left of the pattern */
        next[j] = !prefix && j == n;
    for (size_t i = k; i-- > 0;) {
        row[n] = prefix ? true : (gp->segs[i].globstar && next[n]);
        for (size_t j = n; j-- > 0;) {
            const glob_seg *s = &gp->segs[i];
            if (s->globstar)
                row[j] = next[j] || row[j + 1];
            else
                row[j] = next[j + 1] && segment_match(s->cp, s->n, ps->cp + ps->off[j], ps->len[j]);
        }
        memcpy(next, row, (n + 1) * sizeof(bool));
    }
    return next[0];
}

bool rc_glob_match(const char *pattern, const char *rel)
{
    glob_set g = {0};
    path_segs ps = {0};
    bool hit = false;
    if (brace_expand(&g, pattern, NULL) == 0 && split_path(rel, &ps, NULL) == 0)
        for (size_t i = 0; i < g.n && !hit; i++)
            hit = pattern_match(&g.pats[i], &ps, false);
    free(ps.cp);
    glob_set_free(&g);
    return hit;
}

/* ---- glob: the tool ----------------------------------------------------------------------- */

typedef struct glob_hit {
    char *path;
    struct timespec mtime;
    size_t seq;
} glob_hit;

typedef struct glob_ctx {
    glob_set set;
    const char *root;
    glob_hit *hits;
    size_t n, cap;
    rc_error *err;
} glob_ctx;

static bool glob_want_dir(walker *w, const char *rel)
{
    glob_ctx *g = w->ctx;
    path_segs ps = {0};
    bool want = split_path(rel, &ps, NULL) < 0; /* no memory: keep walking, match later */
    for (size_t i = 0; i < g->set.n && !want; i++)
        want = pattern_match(&g->set.pats[i], &ps, true);
    free(ps.cp);
    return want;
}

static int glob_on_file(walker *w, int dirfd, const char *name, const char *rel)
{
    glob_ctx *g = w->ctx;
    path_segs ps = {0};
    int r = split_path(rel, &ps, g->err);
    bool hit = false;
    for (size_t i = 0; r == 0 && i < g->set.n && !hit; i++)
        hit = pattern_match(&g->set.pats[i], &ps, false);
    free(ps.cp);
    if (r < 0 || !hit)
        return r;
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        st = (struct stat){.st_mode = S_IFREG}; /* unreadable mtime counts as 0 */
    if (!S_ISREG(st.st_mode))
        return 0;
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 64;
        glob_hit *nh = realloc(g->hits, ncap * sizeof(*nh));
        if (!nh)
            return rc_error_set(g->err, RC_ENOMEM, "out of memory");
        g->hits = nh;
        g->cap = ncap;
    }
    _cleanup_(rc_buf_free) rc_buf full = RC_BUF_INIT(PATH_MAX * 4);
    if ((r = join_path(&full, g->root, rel, g->err)) < 0 ||
        (r = rc_buf_steal(&full, &g->hits[g->n].path, NULL, g->err)) < 0)
        return r;
    g->hits[g->n].mtime = st.st_mtim;
    g->hits[g->n].seq = g->n;
    g->n++;
    return 0;
}

static int hit_cmp(const void *a, const void *b)
{
    const glob_hit *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec > y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec > y->mtime.tv_nsec ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void glob_ctx_free(glob_ctx *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->hits[i].path);
    free(g->hits);
    glob_set_free(&g->set);
}

static bool pattern_can_ascend(const char *pat)
{
    for (const char *c = pat;;) {
        size_t len = strcspn(c, "\\/{},");
        if (len == 2 && c[0] == '.' && c[1] == '.')
            return true;
        if (!c[len])
            return false;
        c += len + 1;
    }
}

static int glob_output(glob_ctx *g, rc_tool_result *ret, rc_error *err)
{
    if (g->n == 0)
        return rc_tools_result_text(ret, false, "no matches", 10, err);
    qsort(g->hits, g->n, sizeof(*g->hits), hit_cmp);
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(RC_TOOLS_MSG_MAX * 2);
    for (size_t i = 0; i < g->n && i < RC_TOOLS_GLOB_RESULTS; i++) {
        int r = rc_buf_appendf(&out, err, "%s%s", i ? "\n" : "", g->hits[i].path);
        if (r < 0)
            return r;
    }
    return rc_tools_result_text(ret, false, out.data, out.len, err);
}

/* Confine the optional `path` input (or take the workdir); TOOL_ERROR-style 1 when reported. */
static int search_root(rc_toolbox *tb, const char *tool, const cJSON *in, rc_confined *c,
                       const char **ret_label, rc_tool_result *ret, rc_error *err)
{
    const char *p = NULL;
    int has = rc_tools_input_string(in, "path", &p);
    if (has < 0) {
        int r = rc_tools_result_errorf(ret, err, "%s: path must be a string", tool);
        return r < 0 ? r : 1;
    }
    rc_error cause = {0};
    int r = rc_pathconf_confine(tb, has ? p : ".", c, &cause);
    if (r == -RC_ENOMEM)
        return rc_error_set(err, RC_ENOMEM, "%s", cause.msg);
    if (r < 0) {
        _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_TOOLS_MSG_MAX);
        if ((r = rc_pathconf_message(tb, has ? p : ".", &cause, &msg, err)) < 0 ||
            (r = rc_tools_result_text(ret, true, msg.data, msg.len, err)) < 0)
            return r;
        return 1;
    }
    *ret_label = has ? p : tb->workdir;
    return 0;
}

int rc_tool_glob(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err)
{
    const char *pattern = NULL;
    int has = rc_tools_input_string(in, "pattern", &pattern);
    if (has < 0)
        return rc_tools_result_errorf(ret, err, "glob: pattern must be a string");
    if (!has)
        return rc_tools_result_errorf(ret, err, "glob: pattern is required");
    if (pattern[0] == '/')
        return rc_tools_result_errorf(
            ret, err,
            "glob: absolute pattern not permitted; pass a relative pattern (and optionally path)");
    if (pattern_can_ascend(pattern))
        return rc_tools_result_errorf(ret, err, "glob: \"..\" is not permitted in the pattern");
    if (strlen(pattern) > PATTERN_MAX)
        return rc_tools_result_errorf(ret, err, "glob: pattern is longer than %d bytes",
                                      PATTERN_MAX);
    _cleanup_(rc_confined_clear) rc_confined c = {0};
    const char *label = NULL;
    int r = search_root(tb, "glob", in, &c, &label, ret, err);
    if (r != 0)
        return r < 0 ? r : 0;
    _cleanup_(glob_ctx_free) glob_ctx g = {.root = c.path, .err = err};
    rc_error cause = {0};
    if ((r = brace_expand(&g.set, pattern, &cause)) < 0)
        return r == -RC_ENOMEM ? rc_error_set(err, RC_ENOMEM, "%s", cause.msg)
                               : rc_tools_result_errorf(ret, err, "glob: %s", cause.msg);
    walker w = {.on_file = glob_on_file, .want_dir = glob_want_dir, .ctx = &g};
    if ((r = walk(&w, &c, &cause)) < 0) {
        if (r != -RC_EIO)
            return rc_error_set(err, -r, "%s", cause.msg);
        if (cause.sys_errno != ENOENT && cause.sys_errno != ENOTDIR) {
            _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_TOOLS_MSG_MAX);
            if ((r = rc_buf_append_str(&msg, "glob: ", err)) < 0 ||
                (r = rc_fs_message(&msg, label, cause.sys_errno, err)) < 0)
                return r;
            return rc_tools_result_text(ret, true, msg.data, msg.len, err);
        }
    }
    return glob_output(&g, ret, err);
}

/* ---- grep: JavaScript pattern -> POSIX ERE ------------------------------------------------ */

typedef struct translator {
    const char *s;
    size_t i, n;
    rc_buf *out;
    rc_buf *why;
    int depth;
    unsigned long inner[REGEX_GROUPS_MAX + 1]; /* largest repetition product inside each group */
    unsigned long last_group;                  /* product inside the group just closed */
    bool can_repeat;                           /* an atom precedes */
    bool after_group;
    rc_error *err;
} translator;

static int tr_fail(translator *t, const char *msg)
{
    rc_buf_reset(t->why);
    (void)rc_buf_append_str(t->why, msg, NULL);
    return rc_error_set(t->err, RC_EPARSE, "invalid regex");
}

static bool ere_special(uint32_t c)
{
    return c < 128 && strchr(".[]()*+?{}|^$\\", (int)c) && c != 0;
}

static int put_utf8(rc_buf *b, uint32_t c, rc_error *err)
{
    char u[4];
    size_t n;
    if (c >= 0xDC80 && c <= 0xDCFF) /* an invalid byte of the pattern, kept as it is */
        return rc_buf_putc(b, (char)(c - 0xDC00), err);
    if (c < 0x80) {
        u[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xC0 | (c >> 6));
        u[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        u[0] = (char)(0xE0 | (c >> 12));
        u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (c >> 18));
        u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    return rc_buf_append(b, u, n, err);
}

/* A literal character outside brackets; multi-byte ones grouped so a quantifier takes them
 * whole. */
static int tr_literal(translator *t, uint32_t c)
{
    int r;
    if (c >= 0x80)
        r = rc_buf_putc(t->out, '(', t->err) ?: put_utf8(t->out, c, t->err)
                                                 ?: rc_buf_putc(t->out, ')', t->err);
    else if (ere_special(c))
        r = rc_buf_putc(t->out, '\\', t->err) ?: rc_buf_putc(t->out, (char)c, t->err);
    else
        r = rc_buf_putc(t->out, (char)c, t->err);
    t->can_repeat = true;
    t->after_group = false;
    return r;
}

static int hex_value(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A raw character of the pattern (one UTF-8 sequence), advancing t->i. */
static uint32_t tr_next_char(translator *t)
{
    uint32_t cp[4];
    const unsigned char *u = (const unsigned char *)t->s + t->i;
    size_t len = u[0] < 0x80 ? 1 : u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC2 ? 2 : 1;
    if (t->i + len > t->n)
        len = 1;
    size_t got = decode_utf8(t->s + t->i, len, cp);
    if (got != 1) {
        len = 1;
        decode_utf8(t->s + t->i, 1, cp);
    }
    t->i += len;
    return cp[0];
}

/* The character of a simple escape (\t \xHH \uHHHH ...) after the backslash, or -1 when it
 * is not one. */
static long simple_escape(translator *t, char e)
{
    switch (e) {
    case 't':
        return '\t';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    case 'x':
        if (t->i + 2 <= t->n && hex_value(t->s + t->i, 2) >= 0) {
            t->i += 2;
            return hex_value(t->s + t->i - 2, 2);
        }
        return 'x';
    case 'u':
        if (t->i + 4 <= t->n && hex_value(t->s + t->i, 4) >= 0) {
            t->i += 4;
            long v = hex_value(t->s + t->i - 4, 4);
            return v >= 0xD800 && v <= 0xDFFF ? 0xFFFD : v;
        }
        return 'u';
    case 'c':
        if (t->i < t->n && ((t->s[t->i] | 32) >= 'a' && (t->s[t->i] | 32) <= 'z'))
            return t->s[t->i++] & 31;
        return -1;
    default:
        return -1;
    }
}

typedef struct class_set {
    bool ascii[128];
    uint32_t *wide; /* non-ASCII members */
    size_t nwide;
    bool any_member;
} class_set;

static int class_add(translator *t, class_set *cs, uint32_t lo, uint32_t hi)
{
    if (hi < lo)
        return tr_fail(t, "range out of order in character class");
    if (hi >= 128 && lo != hi)
        return tr_fail(t, "ranges of non-ASCII characters are not supported");
    cs->any_member = true;
    if (hi < 128) {
        for (uint32_t c = lo; c <= hi; c++)
            cs->ascii[c] = true;
        return 0;
    }
    uint32_t *nw = realloc(cs->wide, (cs->nwide + 1) * sizeof(uint32_t));
    if (!nw)
        return rc_error_set(t->err, RC_ENOMEM, "out of memory");
    cs->wide = nw;
    cs->wide[cs->nwide++] = lo;
    return 0;
}

/* \d \w \s inside a class: 1 when handled. */
static int class_escape_set(translator *t, class_set *cs, char e)
{
    int r = 0;
    switch (e) {
    case 'd':
        r = class_add(t, cs, '0', '9');
        break;
    case 'w':
        if ((r = class_add(t, cs, 'a', 'z')) == 0 && (r = class_add(t, cs, 'A', 'Z')) == 0 &&
            (r = class_add(t, cs, '0', '9')) == 0)
            r = class_add(t, cs, '_', '_');
        break;
    case 's':
        if ((r = class_add(t, cs, '\t', '\r')) == 0)
            r = class_add(t, cs, ' ', ' ');
        break;
    case 'D':
    case 'W':
    case 'S':
        return tr_fail(t, "negated class escapes inside [...] are not supported");
    default:
        return 0;
    }
    return r < 0 ? r : 1;
}

/* One class atom: *ret_c, or 1 when it was a set escape (already added). */
static int class_atom(translator *t, class_set *cs, uint32_t *ret_c)
{
    uint32_t c = tr_next_char(t);
    if (c != '\\') {
        *ret_c = c;
        return 0;
    }
    if (t->i >= t->n)
        return tr_fail(t, "\\ at end of pattern");
    char e = t->s[t->i++];
    int r = class_escape_set(t, cs, e);
    if (r != 0)
        return r;
    if (e == 'b') {
        *ret_c = '\b';
        return 0;
    }
    if (e >= '0' && e <= '9')
        return tr_fail(t, "numeric escapes in character classes are not supported");
    long v = simple_escape(t, e);
    if (v >= 0) {
        *ret_c = (uint32_t)v;
        return 0;
    }
    t->i--;
    *ret_c = tr_next_char(t);
    return 0;
}

static int class_emit(translator *t, const class_set *cs, bool neg)
{
    rc_buf *o = t->out;
    int r = 0;
    if (neg && cs->nwide)
        return tr_fail(t, "negated classes with non-ASCII characters are not supported");
    if (!cs->any_member) /* [] never matches, [^] matches any character */
        return neg ? rc_buf_putc(o, '.', t->err)
                   : rc_buf_append_str(o, "[^\x01-\x7f\x80-\xff]", t->err);
    bool ascii_any = false, only_caret = true;
    for (int c = 1; c < 128; c++) {
        ascii_any = ascii_any || cs->ascii[c];
        if (cs->ascii[c] && c != '^')
            only_caret = false;
    }
    if (cs->nwide && (r = rc_buf_putc(o, '(', t->err)) < 0)
        return r;
    if (ascii_any && only_caret && !neg) {
        r = rc_buf_append_str(o, "\\^", t->err);
    } else if (ascii_any || neg) {
        r = rc_buf_append_str(o, neg ? "[^" : "[", t->err);
        if (r == 0 && cs->ascii[']'])
            r = rc_buf_putc(o, ']', t->err);
        for (int c = 1; c < 128 && r == 0; c++) {
            if (!cs->ascii[c] || strchr("]^-[", c))
                continue;
            int hi = c; /* runs of three or more become a range */
            while (hi + 1 < 128 && cs->ascii[hi + 1] && !strchr("]^-[", hi + 1))
                hi++;
            if (hi - c >= 2)
                r = rc_buf_appendf(o, t->err, "%c-%c", c, hi);
            else
                for (int k = c; k <= hi && r == 0; k++)
                    r = rc_buf_putc(o, (char)k, t->err);
            c = hi;
        }
        if (r == 0 && cs->ascii['['])
            r = rc_buf_putc(o, '[', t->err);
        if (r == 0 && cs->ascii['^'])
            r = rc_buf_putc(o, '^', t->err);
        if (r == 0 && cs->ascii['-'])
            r = rc_buf_putc(o, '-', t->err);
        if (r == 0)
            r = rc_buf_putc(o, ']', t->err);
    }
    for (size_t i = 0; i < cs->nwide && r == 0; i++) {
        if ((i > 0 || ascii_any) && (r = rc_buf_putc(o, '|', t->err)) < 0)
            break;
        r = put_utf8(o, cs->wide[i], t->err);
    }
    if (r == 0 && cs->nwide)
        r = rc_buf_putc(o, ')', t->err);
    return r;
}

static int tr_class(translator *t)
{
    class_set cs = {0};
    bool neg = t->i < t->n && t->s[t->i] == '^';
    if (neg)
        t->i++;
    int r = 0;
    while (r >= 0) {
        if (t->i >= t->n) {
            r = tr_fail(t, "missing ] for character class");
            break;
        }
        if (t->s[t->i] == ']') {
            t->i++;
            break;
        }
        uint32_t lo, hi;
        int set = class_atom(t, &cs, &lo);
        if (set != 0) {
            r = set < 0 ? set : 0;
            continue;
        }
        hi = lo;
        if (t->i + 1 < t->n && t->s[t->i] == '-' && t->s[t->i + 1] != ']') {
            size_t save = t->i++;
            int hs = class_atom(t, &cs, &hi);
            if (hs < 0) {
                r = hs;
                break;
            }
            if (hs == 1) { /* [a-\d]: the set is in; '-' and a are literal */
                (void)save;
                r = class_add(t, &cs, lo, lo) ?: class_add(t, &cs, '-', '-');
                continue;
            }
        }
        r = class_add(t, &cs, lo, hi);
    }
    if (r >= 0)
        r = class_emit(t, &cs, neg);
    free(cs.wide);
    t->can_repeat = true;
    t->after_group = false;
    return r;
}

/* `{n}`, `{n,}`, `{n,m}` at t->i: 1 with the bounds, 0 when it is not a quantifier. */
static int parse_braces(translator *t, unsigned long *ret_lo, unsigned long *ret_hi, size_t *len)
{
    const char *s = t->s + t->i, *p = s + 1, *end = t->s + t->n;
    unsigned long lo = 0, hi;
    const char *d = p;
    while (p < end && *p >= '0' && *p <= '9' && lo < 100000)
        lo = lo * 10 + (unsigned long)(*p++ - '0');
    if (p == d || p >= end)
        return 0;
    hi = lo;
    if (*p == ',') {
        p++;
        d = p;
        hi = ULONG_MAX;
        if (p < end && *p >= '0' && *p <= '9') {
            hi = 0;
            while (p < end && *p >= '0' && *p <= '9' && hi < 100000)
                hi = hi * 10 + (unsigned long)(*p++ - '0');
        }
    }
    if (p >= end || *p != '}')
        return 0;
    *ret_lo = lo;
    *ret_hi = hi;
    *len = (size_t)(p - s) + 1;
    return 1;
}

static int tr_repeat_cost(translator *t, unsigned long copies)
{
    unsigned long base = t->after_group && t->last_group ? t->last_group : 1;
    if (copies > REPEAT_COST_MAX || (copies > 0 && base > REPEAT_COST_MAX / copies))
        return tr_fail(t, "repetition count too large");
    unsigned long eff = copies * base;
    if (eff > t->inner[t->depth])
        t->inner[t->depth] = eff;
    return 0;
}

static int tr_quantifier(translator *t, char q)
{
    if (!t->can_repeat)
        return tr_fail(t, "nothing to repeat");
    int r;
    if (q == '{') {
        unsigned long lo, hi;
        size_t len;
        parse_braces(t, &lo, &hi, &len);
        if (hi != ULONG_MAX && hi < lo)
            return tr_fail(t, "numbers out of order in {} quantifier");
        if ((r = tr_repeat_cost(t, hi == ULONG_MAX ? lo + 1 : hi)) < 0 ||
            (r = rc_buf_append(t->out, t->s + t->i, len, t->err)) < 0)
            return r;
        t->i += len;
    } else {
        if ((r = tr_repeat_cost(t, q == '+' ? 2 : 1)) < 0 ||
            (r = rc_buf_putc(t->out, q, t->err)) < 0)
            return r;
        t->i++;
    }
    if (t->i < t->n && t->s[t->i] == '?') /* lazy: the same lines match */
        t->i++;
    t->can_repeat = false;
    t->after_group = false;
    return 0;
}

static int tr_group_open(translator *t)
{
    t->i++;
    if (t->i < t->n && t->s[t->i] == '?') {
        const char *g = t->s + t->i + 1;
        size_t left = t->n - t->i - 1;
        if (left >= 1 && g[0] == ':')
            t->i += 2;
        else if (left >= 2 && g[0] == '<' && g[1] != '=' && g[1] != '!') {
            const char *close = memchr(g, '>', left);
            if (!close)
                return tr_fail(t, "invalid capture group name");
            t->i = (size_t)(close - t->s) + 1;
        } else if (left >= 1 && (g[0] == '=' || g[0] == '!' || g[0] == '<'))
            return tr_fail(t, "lookaround assertions are not supported");
        else
            return tr_fail(t, "invalid group");
    }
    if (t->depth >= REGEX_GROUPS_MAX)
        return tr_fail(t, "groups nested too deeply");
    t->inner[++t->depth] = 0;
    t->can_repeat = false;
    t->after_group = false;
    return rc_buf_putc(t->out, '(', t->err);
}

static int tr_group_close(translator *t)
{
    if (t->depth == 0)
        return tr_fail(t, "unmatched ')'");
    t->last_group = t->inner[t->depth--];
    if (t->last_group > t->inner[t->depth])
        t->inner[t->depth] = t->last_group;
    t->i++;
    t->can_repeat = true;
    t->after_group = true;
    return rc_buf_putc(t->out, ')', t->err);
}

static int tr_escape(translator *t)
{
    t->i++;
    if (t->i >= t->n)
        return tr_fail(t, "\\ at end of pattern");
    char e = t->s[t->i++];
    t->after_group = false;
    if (e >= '1' && e <= '9')
        return tr_fail(t, "back-references are not supported");
    if (e == '0')
        return tr_fail(t, "\\0 is not supported");
    if (e == 'k' && t->i < t->n && t->s[t->i] == '<')
        return tr_fail(t, "back-references are not supported");
    const char *set = e == 'd' ? "[0-9]" : e == 'D' ? "[^0-9]" : NULL;
    if (set || strchr("wWsS", e)) {
        t->can_repeat = true;
        if (set)
            return rc_buf_append_str(t->out, set, t->err);
        return rc_buf_putc(t->out, '\\', t->err) ?: rc_buf_putc(t->out, e, t->err);
    }
    if (e == 'b' || e == 'B') {
        t->can_repeat = false;
        return rc_buf_putc(t->out, '\\', t->err) ?: rc_buf_putc(t->out, e, t->err);
    }
    long v = simple_escape(t, e);
    if (v >= 0)
        return tr_literal(t, (uint32_t)v);
    t->i--;
    return tr_literal(t, tr_next_char(t));
}

static int tr_step(translator *t)
{
    char c = t->s[t->i];
    unsigned long lo, hi;
    size_t len;
    switch (c) {
    case '\\':
        return tr_escape(t);
    case '(':
        return tr_group_open(t);
    case ')':
        return tr_group_close(t);
    case '[':
        t->i++;
        return tr_class(t);
    case '*':
    case '+':
    case '?':
        return tr_quantifier(t, c);
    case '{':
        if (parse_braces(t, &lo, &hi, &len))
            return tr_quantifier(t, c);
        t->i++;
        return tr_literal(t, '{');
    case '}':
    case ']':
        t->i++;
        return tr_literal(t, (uint32_t)c);
    case '^':
    case '$':
    case '|':
        t->i++;
        t->can_repeat = false;
        t->after_group = false;
        return rc_buf_putc(t->out, c, t->err);
    case '.':
        t->i++;
        t->can_repeat = true;
        t->after_group = false;
        return rc_buf_putc(t->out, '.', t->err);
    default:
        return tr_literal(t, tr_next_char(t));
    }
}

int rc_grep_translate(const char *js, rc_buf *ere, rc_buf *why, rc_error *err)
{
    translator t = {.s = js, .n = strlen(js), .out = ere, .why = why, .err = err};
    if (t.n > PATTERN_MAX)
        return tr_fail(&t, "pattern too long");
    while (t.i < t.n) {
        int r = tr_step(&t);
        if (r < 0)
            return r;
    }
    if (t.depth != 0)
        return tr_fail(&t, "unterminated group");
    if (ere->len == 0)
        return rc_buf_append_str(ere, "()", err);
    return 0;
}

/* ---- grep: the built-in walker ------------------------------------------------------------ */

static pthread_mutex_t grep_slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t grep_slots_cond = PTHREAD_COND_INITIALIZER;
static int grep_running;

typedef struct grep_ctx {
    rc_toolbox *tb;
    regex_t re;
    const char *root;
    rc_buf out;
    long budget;
    size_t hits;
    bool truncated, timed_out, aborted;
    int64_t deadline;
    rc_buf line;
    size_t line_units; /* UTF-16 units, as JavaScript counts a line's length */
    bool line_long;
    rc_error *err;
} grep_ctx;

static bool grep_check(grep_ctx *g)
{
    if (rc_tools_cancelled(g->tb))
        g->aborted = true;
    else if (rc_tools_now_ms() >= g->deadline)
        g->timed_out = true;
    return g->aborted || g->timed_out;
}

static bool grep_interrupted(walker *w)
{
    return grep_check(w->ctx);
}

/* Push one output line; false when the budget ran out (the marker is pushed instead). */
static int grep_push(grep_ctx *g, const char *file, long long lineno, const char *text, size_t n)
{
    _cleanup_(rc_buf_free) rc_buf raw = RC_BUF_INIT(RC_TOOLS_MSG_MAX);
    _cleanup_(rc_buf_free) rc_buf clean = RC_BUF_INIT(RC_TOOLS_MSG_MAX * 3);
    int r = rc_buf_appendf(&raw, g->err, "%s:%lld:", file, lineno);
    if (r < 0 || (r = rc_buf_append(&raw, text, n, g->err)) < 0 ||
        (r = rc_utf8_repair(&clean, raw.data, raw.len, g->err)) < 0)
        return r;
    g->budget -= (long)clean.len + 1;
    const char *piece = clean.data;
    size_t plen = clean.len;
    if (g->budget < 0) {
        g->truncated = true;
        piece = "[output truncated at 102400 bytes]";
        plen = strlen(piece);
    }
    if ((g->hits++ && (r = rc_buf_putc(&g->out, '\n', g->err)) < 0) ||
        (r = rc_buf_append(&g->out, piece, plen, g->err)) < 0)
        return r;
    return g->truncated ? 1 : 0;
}

/* A complete line: match it (unless too long). 1 stops the search. */
static int grep_line(grep_ctx *g, const char *file, long long lineno)
{
    bool long_line = g->line_long || g->line_units > RC_TOOLS_GREP_MAX_LINE;
    int r = 0;
    if (!long_line && regexec(&g->re, rc_buf_cstr(&g->line), 0, NULL, 0) == 0)
        r = grep_push(g, file, lineno, rc_buf_cstr(&g->line), g->line.len);
    rc_buf_reset(&g->line);
    g->line_units = 0;
    g->line_long = false;
    return r;
}

static int grep_byte(grep_ctx *g, char c)
{
    unsigned char u = (unsigned char)c;
    if ((u & 0xC0) != 0x80)
        g->line_units += u >= 0xF0 ? 2 : 1;
    if (g->line_units > RC_TOOLS_GREP_MAX_LINE) {
        g->line_long = true;
        return 0;
    }
    return rc_buf_putc(&g->line, c, g->err);
}

typedef struct line_state {
    long long lineno;
    bool pending_cr; /* the previous chunk ended with '\r' */
} line_state;

/* Split a chunk into lines (\n, \r\n and a lone \r end a line, as Node's readline). */
static int grep_chunk(grep_ctx *g, const char *file, line_state *ls, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (ls->pending_cr) {
            ls->pending_cr = false;
            if (c == '\n')
                continue;
        }
        if (c == '\n' || c == '\r') {
            ls->pending_cr = c == '\r';
            int r = grep_line(g, file, ++ls->lineno);
            if (r != 0)
                return r;
            continue;
        }
        int r = g->line_long ? 0 : grep_byte(g, c);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Search one regular file; 1 stops the search. Unreadable files are skipped. */
static int grep_fd(grep_ctx *g, int fd, const char *file)
{
    _cleanup_free_ char *buf = malloc(READ_CHUNK);
    if (!buf)
        return rc_error_set(g->err, RC_ENOMEM, "out of memory");
    line_state ls = {0};
    rc_buf_reset(&g->line);
    g->line_units = 0;
    g->line_long = false;
    for (;;) {
        if (grep_check(g))
            return 1;
        ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (memchr(buf, '\0', (size_t)n))
            return 0; /* binary: abandon the file at this chunk */
        int r = grep_chunk(g, file, &ls, buf, (size_t)n);
        if (r != 0)
            return r;
    }
    if (g->line.len > 0 || g->line_long)
        return grep_line(g, file, ++ls.lineno);
    return 0;
}

static int grep_open_and_search(grep_ctx *g, int dirfd, const char *name, const char *file)
{
    _cleanup_close_ int fd =
        openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return grep_fd(g, fd, file);
}

static int grep_on_file(walker *w, int dirfd, const char *name, const char *rel)
{
    grep_ctx *g = w->ctx;
    _cleanup_(rc_buf_free) rc_buf full = RC_BUF_INIT(PATH_MAX * 4);
    int r = join_path(&full, g->root, rel, g->err);
    return r < 0 ? r : grep_open_and_search(g, dirfd, name, rc_buf_cstr(&full));
}

static int grep_slot_take(rc_toolbox *tb, int64_t deadline)
{
    pthread_mutex_lock(&grep_slots_lock);
    while (grep_running >= RC_TOOLS_GREP_MAX_RUNNING) {
        if (rc_tools_cancelled(tb) || rc_tools_now_ms() >= deadline) {
            pthread_mutex_unlock(&grep_slots_lock);
            return -1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&grep_slots_cond, &grep_slots_lock, &ts);
    }
    grep_running++;
    pthread_mutex_unlock(&grep_slots_lock);
    return 0;
}

static void grep_slot_give(void)
{
    pthread_mutex_lock(&grep_slots_lock);
    grep_running--;
    pthread_cond_signal(&grep_slots_cond);
    pthread_mutex_unlock(&grep_slots_lock);
}

/* Search the confined root (a file or a directory). */
static int grep_search(grep_ctx *g, const rc_confined *c)
{
    walker w = {.on_file = grep_on_file, .interrupted = grep_interrupted, .ctx = g};
    if (c->rel[0]) {
        _cleanup_free_ char *dir = NULL;
        const char *base;
        int r = rc_pathconf_split(c->rel, &dir, &base, g->err);
        if (r < 0)
            return r;
        int dfd;
        if (rc_pathconf_open_dir(c->root, dir, false, O_PATH, &dfd, NULL) < 0)
            return 0; /* nothing there: no matches */
        struct stat st;
        bool file = fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
        r = file ? grep_open_and_search(g, dfd, base, c->path) : 0;
        close(dfd);
        if (file)
            return r < 0 ? r : 0;
    }
    rc_error cause = {0};
    int r = walk(&w, c, &cause);
    if (r < 0 && r != -RC_EIO)
        return rc_error_set(g->err, -r, "%s", cause.msg);
    return 0;
}

static void format_seconds(char *out, size_t n, int ms)
{
    if (ms % 1000 == 0)
        snprintf(out, n, "%d", ms / 1000);
    else
        snprintf(out, n, "%g", ms / 1000.0);
}

static int grep_finish(grep_ctx *g, rc_tool_result *ret, rc_error *err)
{
    int ms = g->tb->grep_timeout_ms;
    if (g->aborted)
        return rc_tools_result_errorf(ret, err, "grep: aborted");
    if (g->timed_out && !g->truncated) {
        if (g->hits == 0) {
            char secs[32];
            format_seconds(secs, sizeof(secs), ms);
            return rc_tools_result_errorf(ret, err, "grep: timed out after %ss", secs);
        }
        int r = rc_buf_appendf(&g->out, err, "\n[the search was cut short after %d ms]", ms);
        if (r < 0)
            return r;
    }
    if (g->hits == 0)
        return rc_tools_result_text(ret, false, "no matches", 10, err);
    return rc_tools_result_text(ret, false, g->out.data, g->out.len, err);
}

static int grep_builtin(rc_toolbox *tb, const char *pattern, const rc_confined *c,
                        rc_tool_result *ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf ere = RC_BUF_INIT(PATTERN_MAX * 16);
    _cleanup_(rc_buf_free) rc_buf why = RC_BUF_INIT(256);
    rc_error cause = {0};
    int r = rc_grep_translate(pattern, &ere, &why, &cause);
    if (r == -RC_ENOMEM)
        return rc_error_set(err, RC_ENOMEM, "%s", cause.msg);
    if (r < 0)
        return rc_tools_result_errorf(ret, err, "grep: invalid regex: %s",
                                      why.len ? rc_buf_cstr(&why) : cause.msg);
    grep_ctx g = {.tb = tb,
                  .root = c->path,
                  .out = RC_BUF_INIT(RC_TOOLS_GREP_OUTPUT_MAX * 4),
                  .line = RC_BUF_INIT(RC_TOOLS_GREP_MAX_LINE * 4 + 8),
                  .budget = RC_TOOLS_GREP_OUTPUT_MAX,
                  .err = err};
    int limit =
        tb->grep_timeout_ms < tb->call_timeout_ms ? tb->grep_timeout_ms : tb->call_timeout_ms;
    g.deadline = rc_tools_now_ms() + limit;
    int rc = regcomp(&g.re, rc_buf_cstr(&ere), REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[256];
        regerror(rc, &g.re, msg, sizeof(msg));
        r = rc_tools_result_errorf(ret, err, "grep: invalid regex: %s", msg);
    } else if (grep_slot_take(tb, g.deadline) < 0) {
        r = rc_tools_result_errorf(ret, err, "grep: aborted");
        regfree(&g.re);
    } else {
        r = grep_search(&g, c);
        grep_slot_give();
        regfree(&g.re);
        if (r >= 0)
            r = grep_finish(&g, ret, err);
    }
    rc_buf_free(&g.out);
    rc_buf_free(&g.line);
    return r;
}

/* ---- grep: ripgrep ------------------------------------------------------------------------ */

typedef struct rg_run {
    rc_buf out, errout;
    bool truncated, aborted;
    int status;
} rg_run;

static int drain_fd(int fd, rc_buf *b, bool *eof, bool *full, rc_error *err)
{
    char chunk[READ_CHUNK];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        *eof = true;
        return 0;
    }
    if (n < 0)
        return 0;
    size_t room = b->max - b->len, take = (size_t)n < room ? (size_t)n : room;
    if ((size_t)n > room)
        *full = true;
    return rc_buf_append(b, chunk, take, err);
}

static int rg_collect(rc_toolbox *tb, pid_t pid, int out_fd, int err_fd, rg_run *run, rc_error *err)
{
    int pidfd = rc_toolenv_pidfd(pid);
    bool out_eof = false, err_eof = false;
    int64_t deadline = rc_tools_now_ms() + tb->call_timeout_ms;
    int r = 0;
    while (!out_eof || !err_eof) {
        int64_t left = deadline - rc_tools_now_ms();
        if (rc_tools_cancelled(tb) || left <= 0) {
            run->aborted = true;
            break;
        }
        struct pollfd pf[3] = {{.fd = out_eof ? -1 : out_fd, .events = POLLIN},
                               {.fd = err_eof ? -1 : err_fd, .events = POLLIN},
                               {.fd = tb->cancel_rd, .events = POLLIN}};
        if (poll(pf, 3, left > 1000 ? 1000 : (int)left) < 0 && errno != EINTR)
            break;
        bool full = false, ignore = false;
        if (pf[0].revents && (r = drain_fd(out_fd, &run->out, &out_eof, &full, err)) < 0)
            break;
        if (full) {
            run->truncated = true;
            break;
        }
        if (pf[1].revents && (r = drain_fd(err_fd, &run->errout, &err_eof, &ignore, err)) < 0)
            break;
    }
    if (run->truncated || run->aborted || r < 0) {
        run->status = rc_toolenv_kill_group(pid, pidfd, 2000);
    } else {
        int status = -1;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        run->status = status;
    }
    if (pidfd >= 0)
        close(pidfd);
    return r;
}

static int rg_spawn_and_collect(rc_toolbox *tb, const char *rg, const char *pattern,
                                const char *path, rg_run *run, rc_error *err)
{
    /* Only our ends are non-blocking: rg's must block when the pipe is full. */
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "pipe2");
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return rc_error_sys(err, RC_EIO, "pipe2");
    }
    (void)fcntl(po[0], F_SETFL, O_NONBLOCK);
    (void)fcntl(pe[0], F_SETFL, O_NONBLOCK);
    char *const argv[] = {"rg", "--no-config", "-n", "--no-heading", "-e", (char *)pattern,
                          "--", (char *)path,  NULL};
    rc_spawn s = {.path = rg,
                  .argv = argv,
                  .envp = tb->child_env,
                  .cwd = NULL,
                  .stdin_fd = -1,
                  .stdout_fd = po[1],
                  .stderr_fd = pe[1],
                  .set_ids = tb->set_ids,
                  .uid = tb->uid,
                  .gid = tb->gid};
    pid_t pid;
    int r = rc_toolenv_spawn(&s, &pid, err);
    close(po[1]);
    close(pe[1]);
    if (r == 0)
        r = rg_collect(tb, pid, po[0], pe[0], run, err);
    close(po[0]);
    close(pe[0]);
    return r;
}

static int grep_rg(rc_toolbox *tb, const char *rg, const char *pattern, const rc_confined *c,
                   rc_tool_result *ret, rc_error *err)
{
    rg_run run = {.out = RC_BUF_INIT(RC_TOOLS_GREP_OUTPUT_MAX),
                  .errout = RC_BUF_INIT(RG_STDERR_MAX),
                  .status = -1};
    rc_error cause = {0};
    int r = rg_spawn_and_collect(tb, rg, pattern, c->path, &run, &cause);
    if (r == -RC_ENOMEM)
        r = rc_error_set(err, RC_ENOMEM, "%s", cause.msg);
    else if (run.aborted || rc_tools_cancelled(tb))
        r = rc_tools_result_errorf(ret, err, "grep: aborted");
    else if (r < 0)
        r = rc_tools_result_errorf(ret, err, "grep: rg failed: %s", cause.msg);
    else if (run.truncated) {
        size_t keep = rc_utf8_cut_prefix(run.out.data, run.out.len);
        r = rc_tools_result_okf(ret, err, "%.*s\n[output truncated at %d bytes]", (int)keep,
                                run.out.data, RC_TOOLS_GREP_OUTPUT_MAX);
    } else if (WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0)
        r = rc_tools_result_text(ret, false, rc_buf_cstr(&run.out), run.out.len, err);
    else if (WIFEXITED(run.status) && WEXITSTATUS(run.status) == 1)
        r = rc_tools_result_text(ret, false, "no matches", 10, err);
    else if (run.errout.len)
        r = rc_tools_result_errorf(ret, err, "grep: rg failed: %s", rc_buf_cstr(&run.errout));
    else
        r = rc_tools_result_errorf(ret, err, "grep: rg failed: exit %d",
                                   WIFEXITED(run.status)     ? WEXITSTATUS(run.status)
                                   : WIFSIGNALED(run.status) ? 128 + WTERMSIG(run.status)
                                                             : -1);
    rc_buf_free(&run.out);
    rc_buf_free(&run.errout);
    return r;
}

/* The `rg` grep should use, or NULL for the built-in walker. */
static char *find_rg(const rc_toolbox *tb)
{
    if (tb->rg_mode == RC_TOOLBOX_RG_NEVER)
        return NULL;
    size_t n = 0;
    while (tb->allowed_roots[n])
        n++;
    const char **not_inside = calloc(n + 2, sizeof(char *));
    if (!not_inside)
        return NULL;
    not_inside[0] = tb->workdir;
    for (size_t i = 0; i < n; i++)
        not_inside[i + 1] = tb->allowed_roots[i];
    char *rg = NULL;
    (void)rc_toolenv_find_exec("rg", rc_toolenv_get(tb->child_env, "PATH"), not_inside, &rg, NULL);
    free(not_inside);
    return rg;
}

int rc_tool_grep(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err)
{
    const char *pattern = NULL;
    int has = rc_tools_input_string(in, "pattern", &pattern);
    if (has < 0)
        return rc_tools_result_errorf(ret, err, "grep: pattern must be a string");
    if (!has)
        return rc_tools_result_errorf(ret, err, "grep: pattern is required");
    _cleanup_(rc_confined_clear) rc_confined c = {0};
    const char *label = NULL;
    int r = search_root(tb, "grep", in, &c, &label, ret, err);
    if (r != 0)
        return r < 0 ? r : 0;
    _cleanup_free_ char *rg = find_rg(tb);
    if (rg)
        return grep_rg(tb, rg, pattern, &c, ret, err);
    return grep_builtin(tb, pattern, &c, ret, err);
}
