/* skills.c - host-side skill download and unpacking (see skills.h and docs/SKILLS.md).
 *
 * Owns the per-skill pipeline: resolve -> name -> download -> unpack into a staging directory ->
 * verify and normalise -> strip the wrapper directory -> rename into place. Zip archives go to
 * lib/zip.c; tars are read with oci/tar.c's reader (hostile-input-safe headers and caps) but
 * written here, because skills follow different rules from snapshots: links and special files
 * are skipped, not created, and owners are never taken from the archive. gzip is inflated in
 * process with zlib; bzip2 and xz go through a child decompressor (fixed path, empty
 * environment, no new privileges, memory cap) reading the archive from a memfd. */
#include "skills.h"

#include "../oci/tar.h"
#include "buf.h"
#include "cleanup.h"
#include "fsio.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "zip.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK          (64 * 1024)
#define CHILD_MEM      (1ULL << 30) /* address-space cap of a decompressor */
#define CHILD_STALL_MS (60 * 1000)
#define MAX_TREE_DEPTH 64
#define STAGING_PREFIX ".staging-"
#define SKILL_ID_MAX   127
#define VERSION_ID_MAX 31

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static void limits_resolve(const rc_skills_limits *in, rc_skills_limits *ret)
{
    rc_skills_limits l = in ? *in : (rc_skills_limits){0};
    if (!l.max_archive_bytes)
        l.max_archive_bytes = RC_SKILLS_DEFAULT_MAX_ARCHIVE_BYTES;
    if (!l.max_total_bytes)
        l.max_total_bytes = RC_SKILLS_DEFAULT_MAX_TOTAL_BYTES;
    if (!l.max_file_bytes)
        l.max_file_bytes = RC_SKILLS_DEFAULT_MAX_FILE_BYTES;
    if (!l.max_entries)
        l.max_entries = RC_SKILLS_DEFAULT_MAX_ENTRIES;
    if (!l.max_skills)
        l.max_skills = RC_SKILLS_DEFAULT_MAX_SKILLS;
    *ret = l;
}

/* ---- byte sources for the tar reader ------------------------------------------------------ */

typedef struct mem_src {
    const unsigned char *p;
    size_t len, off;
} mem_src;

static int mem_read(void *ctx, void *buf, size_t n, rc_error *err)
{
    mem_src *m = ctx;
    (void)err;
    if (n > m->len - m->off)
        n = m->len - m->off;
    if (n > CHUNK)
        n = CHUNK;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (int)n;
}

typedef struct gz_src {
    z_stream z;
    bool started, ended;
} gz_src;

static int gz_read(void *ctx, void *buf, size_t n, rc_error *err)
{
    gz_src *g = ctx;
    if (g->ended)
        return 0;
    g->z.next_out = buf;
    g->z.avail_out = (uInt)(n > CHUNK ? CHUNK : n);
    while (g->z.avail_out > 0) {
        uInt before = g->z.avail_out;
        int zr = inflate(&g->z, Z_NO_FLUSH);
        if (zr == Z_STREAM_END) {
            g->ended = true;
            break;
        }
        if (zr != Z_OK || (g->z.avail_out == before && g->z.avail_in == 0))
            return rc_error_set(err, RC_EPARSE, "gzip data is corrupt or truncated");
        if (g->z.avail_out != before)
            break;
    }
    return (int)((n > CHUNK ? CHUNK : n) - g->z.avail_out);
}

typedef struct child_src {
    pid_t pid;
    int out; /* the child's stdout */
    const char *tool;
} child_src;

static int child_read(void *ctx, void *buf, size_t n, rc_error *err)
{
    child_src *c = ctx;
    for (;;) {
        struct pollfd p = {.fd = c->out, .events = POLLIN};
        int rc = poll(&p, 1, CHILD_STALL_MS);
        ssize_t k;
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return rc_error_set(err, RC_ETIMEOUT, "%s produced no output", c->tool);
        k = read(c->out, buf, n > CHUNK ? CHUNK : n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return rc_error_sys(err, RC_EIO, "cannot read from %s", c->tool);
        return (int)k;
    }
}

static void child_stop(child_src *c)
{
    if (c->out >= 0)
        close(c->out);
    c->out = -1;
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    c->pid = 0;
}

/* In the child between fork and execve: async-signal-safe calls only. */
static void __attribute__((noreturn)) child_exec(const char *path, int in, int out)
{
    static char *const envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};
    char *const argv[] = {(char *)path, "-dc", NULL};
    struct rlimit mem = {CHILD_MEM, CHILD_MEM}, core = {0, 0};
    sigset_t none;
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || devnull < 0 || dup2(devnull, 2) < 0)
        _exit(127);
    close_range(3, ~0U, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    setrlimit(RLIMIT_AS, &mem);
    setrlimit(RLIMIT_CORE, &core);
    execve(path, argv, envp);
    _exit(127);
}

static const char *find_tool(const char *a, const char *b)
{
    if (access(a, X_OK) == 0)
        return a;
    if (access(b, X_OK) == 0)
        return b;
    return NULL;
}

/* Start tool -dc with the archive on stdin (a memfd, so no feeding loop is needed). */
static int child_start(child_src *c, const char *tool, const char *path, const void *data,
                       size_t len, rc_error *err)
{
    _cleanup_close_ int mfd = memfd_create("skill-archive", MFD_CLOEXEC);
    int out[2];
    const unsigned char *p = data;
    size_t done = 0;

    c->tool = tool;
    if (!path)
        return rc_error_set(err, RC_ENOTFOUND, "%s is not installed (needed for this archive)",
                            tool);
    if (mfd < 0)
        return rc_error_sys(err, RC_EIO, "memfd_create");
    while (done < len) {
        ssize_t k = write(mfd, p + done, len - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return rc_error_sys(err, RC_EIO, "cannot stage the archive");
        done += (size_t)k;
    }
    if (lseek(mfd, 0, SEEK_SET) < 0 || pipe2(out, O_CLOEXEC) < 0)
        return rc_error_sys(err, RC_EIO, "cannot set up %s", tool);
    c->pid = fork();
    if (c->pid == 0)
        child_exec(path, mfd, out[1]);
    close(out[1]);
    c->out = out[0];
    if (c->pid < 0) {
        c->pid = 0;
        child_stop(c);
        return rc_error_sys(err, RC_EIO, "cannot start %s", tool);
    }
    return 0;
}

/* ---- writing a tree ----------------------------------------------------------------------- */

static int tar_make_dir(int root_fd, char *path, rc_error *err)
{
    const char *leaf;
    _cleanup_close_ int parent = rc_fs_open_parent(root_fd, path, 0755, &leaf, err);
    struct stat st;

    if (parent < 0)
        return parent;
    if (mkdirat(parent, leaf, 0755) == 0)
        return 0;
    if (errno == EEXIST && fstatat(parent, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISDIR(st.st_mode))
        return 0;
    return rc_error_sys(err, RC_EIO, "cannot create directory %s", path);
}

static int tar_make_file(rc_tar_reader *r, const rc_tar_entry *e, int root_fd, char *path,
                         char *buf, rc_error *err)
{
    const char *leaf;
    _cleanup_close_ int parent = rc_fs_open_parent(root_fd, path, 0755, &leaf, err);
    _cleanup_close_ int fd = -1;
    int k;

    if (parent < 0)
        return parent;
    fd = openat(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
        return rc_error_set(err, RC_EINVAL, "tar entry %llu: %s appears twice",
                            (unsigned long long)e->index, path);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "cannot create %s", path);
    while ((k = rc_tar_read_data(r, buf, CHUNK, err)) > 0)
        if ((k = rc_fd_write_all(fd, buf, (size_t)k, NULL, err)) < 0)
            return k;
    if (k < 0)
        return k;
    if (fchmod(fd, (e->mode & 0111) ? 0755 : 0644) < 0)
        return rc_error_sys(err, RC_EIO, "chmod %s", path);
    return 0;
}

static int tar_entry(rc_tar_reader *r, const rc_tar_entry *e, const rc_tar_limits *tl, int root_fd,
                     char *buf, uint64_t *skipped, rc_error *err)
{
    char path[PATH_MAX];
    rc_error why = {0};
    int rc = rc_tar_path_normalize(e->path, tl, path, sizeof path, &why);

    if (rc < 0)
        return rc_error_set(err, RC_EINVAL, "tar entry %llu refused: %s",
                            (unsigned long long)e->index, why.msg);
    if (rc == 0 || (e->type != RC_TAR_FILE && e->type != RC_TAR_DIR)) {
        (*skipped)++; /* the root, links, devices, FIFOs, unknown types */
        return 0;
    }
    if (e->type == RC_TAR_DIR)
        return tar_make_dir(root_fd, path, err);
    return tar_make_file(r, e, root_fd, path, buf, err);
}

static int tar_unpack(const rc_tar_source *src, const rc_skills_limits *l, int root_fd,
                      uint64_t *ret_skipped, rc_error *err)
{
    rc_tar_limits tl = {.max_total_bytes = l->max_total_bytes,
                        .max_file_bytes = l->max_file_bytes,
                        .max_entries = l->max_entries};
    _cleanup_(rc_tar_reader_freep) rc_tar_reader *r = NULL;
    _cleanup_free_ char *buf = malloc(CHUNK);
    const rc_tar_entry *e;
    int rc;

    rc_tar_limits_resolve(&tl, &tl);
    if (!buf)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((rc = rc_tar_reader_new(src, &tl, &r, err)) < 0)
        return rc;
    while ((rc = rc_tar_next(r, &e, err)) > 0)
        if ((rc = tar_entry(r, e, &tl, root_fd, buf, ret_skipped, err)) < 0)
            return rc;
    return rc;
}

enum archive_kind { ARCH_ZIP, ARCH_TAR, ARCH_GZIP, ARCH_BZIP2, ARCH_XZ };
static const char *const archive_names[] = {"zip", "tar", "tar.gz", "tar.bz2", "tar.xz"};

static enum archive_kind detect(const unsigned char *p, size_t n)
{
    if (rc_zip_is_zip(p, n))
        return ARCH_ZIP;
    if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b)
        return ARCH_GZIP;
    if (n >= 3 && memcmp(p, "BZh", 3) == 0)
        return ARCH_BZIP2;
    if (n >= 6 && memcmp(p,
                         "\xfd"
                         "7zXZ\0",
                         6) == 0)
        return ARCH_XZ;
    return ARCH_TAR;
}

static void inflate_endp(gz_src *g)
{
    if (g->started)
        inflateEnd(&g->z);
}

static int unpack_compressed_tar(enum archive_kind k, const void *data, size_t len,
                                 const rc_skills_limits *l, int root_fd, uint64_t *skipped,
                                 rc_error *err)
{
    _cleanup_(inflate_endp) gz_src g = {0};
    child_src c = {.out = -1};
    rc_tar_source src;
    int rc;

    if (k == ARCH_GZIP) {
        if (len > UINT_MAX || inflateInit2(&g.z, 15 + 16) != Z_OK)
            return rc_error_set(err, RC_EINVAL, "cannot start gzip decoding");
        g.started = true;
        g.z.next_in = (Bytef *)(uintptr_t)data;
        g.z.avail_in = (uInt)len;
        src = (rc_tar_source){.read = gz_read, .ctx = &g};
        return tar_unpack(&src, l, root_fd, skipped, err);
    }
    rc = k == ARCH_XZ
             ? child_start(&c, "xz", find_tool("/usr/bin/xz", "/bin/xz"), data, len, err)
             : child_start(&c, "bzip2", find_tool("/usr/bin/bzip2", "/bin/bzip2"), data, len, err);
    if (rc == 0) {
        src = (rc_tar_source){.read = child_read, .ctx = &c};
        rc = tar_unpack(&src, l, root_fd, skipped, err);
    }
    child_stop(&c);
    return rc;
}

static int unpack(const void *data, size_t len, const rc_skills_limits *l, int root_fd,
                  const char **ret_kind, rc_error *err)
{
    enum archive_kind k = detect(data, len);
    uint64_t skipped = 0;
    mem_src m = {.p = data, .len = len};
    rc_tar_source src = {.read = mem_read, .ctx = &m};
    int rc;

    *ret_kind = archive_names[k];
    if (k == ARCH_ZIP) {
        rc_zip_limits zl = {.max_total_bytes = l->max_total_bytes,
                            .max_file_bytes = l->max_file_bytes,
                            .max_entries = l->max_entries};
        rc_zip_stats st = {0};
        rc = rc_zip_extract(data, len, root_fd, &zl, &st, err);
        skipped = st.skipped;
    } else if (k == ARCH_TAR) {
        rc = tar_unpack(&src, l, root_fd, &skipped, err);
    } else {
        rc = unpack_compressed_tar(k, data, len, l, root_fd, &skipped, err);
    }
    if (rc == 0 && skipped > 0)
        rc_log_info("skills: skipped %llu link, special or root entries",
                    (unsigned long long)skipped);
    return rc < 0 ? rc : 0;
}

/* ---- verify and normalise ----------------------------------------------------------------- */

/* Every entry below dfd must be a directory or a regular file with one link; directories
 * become 0755, files 0755 (any x bit) or 0644. */
static int normalise_tree(int dfd, int depth, rc_error *err)
{
    int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
    _cleanup_(closedirp) DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    struct dirent *de;
    int rc;

    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return rc_error_sys(err, RC_EIO, "cannot read the unpacked tree");
    }
    rewinddir(d); /* the dup shares its offset with fds read before */
    if (depth > MAX_TREE_DEPTH)
        return rc_error_set(err, RC_ETOOBIG, "unpacked tree deeper than %d", MAX_TREE_DEPTH);
    while ((errno = 0, de = readdir(d))) {
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return rc_error_sys(err, RC_EIO, "stat %s", de->d_name);
        if (S_ISDIR(st.st_mode)) {
            _cleanup_close_ int sub =
                openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                return rc_error_sys(err, RC_EIO, "open %s", de->d_name);
            if ((rc = normalise_tree(sub, depth + 1, err)) < 0)
                return rc;
            if (fchmod(sub, 0755) < 0)
                return rc_error_sys(err, RC_EIO, "chmod %s", de->d_name);
        } else if (S_ISREG(st.st_mode)) {
            if (st.st_nlink != 1)
                return rc_error_set(err, RC_EINVAL, "%s has %lu hard links", de->d_name,
                                    (unsigned long)st.st_nlink);
            if (fchmodat(dfd, de->d_name, (st.st_mode & 0111) ? 0755 : 0644, 0) < 0)
                return rc_error_sys(err, RC_EIO, "chmod %s", de->d_name);
        } else {
            return rc_error_set(err, RC_EINVAL, "%s is neither a file nor a directory", de->d_name);
        }
    }
    if (errno != 0)
        return rc_error_sys(err, RC_EIO, "readdir");
    return 0;
}

/* The single top-level directory of the staging root, if that is all it holds: its name into
 * ret (NAME_MAX + 1 bytes), 1; else 0. */
static int single_top_dir(int root_fd, char *ret, rc_error *err)
{
    int dup_fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
    _cleanup_(closedirp) DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    struct dirent *de;
    int n = 0, is_dir = 0;

    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return rc_error_sys(err, RC_EIO, "cannot read the unpacked tree");
    }
    rewinddir(d); /* the dup shares its offset with fds read before */
    while ((de = readdir(d))) {
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (++n > 1)
            return 0;
        is_dir = fstatat(root_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        snprintf(ret, NAME_MAX + 1, "%s", de->d_name);
    }
    return n == 1 && is_dir;
}

/* ---- one skill ---------------------------------------------------------------------------- */

static bool valid_id(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return false;
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* 15.1.2: last path component of the trimmed name, else the skill id. */
static void choose_dir(const char *name, const char *skill_id, char *out, size_t outsz)
{
    const char *s = name ? name : "", *e, *last;
    size_t n;

    while (*s && isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    while (e > s && e[-1] == '/') /* "pdf/" names pdf */
        e--;
    last = e;
    while (last > s && last[-1] != '/')
        last--;
    n = (size_t)(e - last);
    if (n == 0 || n >= outsz || n > NAME_MAX - 16 || (n == 1 && last[0] == '.') ||
        (n == 2 && last[0] == '.' && last[1] == '.') || memchr(last, '\\', n) ||
        strncmp(last, STAGING_PREFIX, strlen(STAGING_PREFIX)) == 0) {
        snprintf(out, outsz, "%s", skill_id);
        return;
    }
    memcpy(out, last, n);
    out[n] = '\0';
}

static int skill_path(rc_buf *p, const char *skill_id, const char *version, bool content,
                      rc_error *err)
{
    int rc;
    if ((rc = rc_buf_append_str(p, "/v1/skills", err)) < 0 ||
        (rc = rc_http_path_add_segment(p, skill_id, err)) < 0 ||
        (rc = rc_buf_append_str(p, "/versions", err)) < 0 ||
        (rc = rc_http_path_add_segment(p, version, err)) < 0 ||
        (content && (rc = rc_buf_append_str(p, "/content", err)) < 0))
        return rc;
    return 0;
}

/* 15.1.1: GET the version; fills item->version and the skill's name (into name). */
static int resolve(rc_api *api, rc_skills_item *item, const char *version, char *name,
                   size_t namesz, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(1024);
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    rc_api_request req = {.method = "GET", .beta = RC_API_BETA_NONE};
    const cJSON *id, *nm;
    int rc;

    if ((rc = skill_path(&path, item->skill_id, version, false, err)) < 0)
        return rc;
    req.path = rc_buf_cstr(&path);
    if ((rc = rc_api_request_do(api, &req, &res, err)) < 0)
        return rc;
    if (res.kind != RC_API_BODY_JSON || !cJSON_IsObject(res.json))
        return rc_error_set(err, RC_EPARSE, "version answer is not a JSON object");
    id = cJSON_GetObjectItemCaseSensitive(res.json, "id");
    if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 1e15)
        snprintf(item->version, sizeof item->version, "%lld", (long long)id->valuedouble);
    else if (cJSON_IsString(id) && valid_id(id->valuestring, VERSION_ID_MAX))
        snprintf(item->version, sizeof item->version, "%s", id->valuestring);
    else
        return rc_error_set(err, RC_EPARSE, "version answer has no usable id");
    nm = cJSON_GetObjectItemCaseSensitive(res.json, "name");
    snprintf(name, namesz, "%s", cJSON_IsString(nm) ? nm->valuestring : "");
    return 0;
}

/* 15.1.3: the archive by concrete version id. */
static int download(rc_api *api, const rc_skills_item *item, const rc_skills_limits *l,
                    rc_api_result *res, rc_error *err)
{
    static const char *const accept[] = {"Accept: application/binary", NULL};
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(1024);
    rc_api_request req = {.method = "GET",
                          .beta = RC_API_BETA_NONE,
                          .extra_headers = accept,
                          .accept_any_body = true};
    int rc;

    if ((rc = skill_path(&path, item->skill_id, item->version, true, err)) < 0)
        return rc;
    req.path = rc_buf_cstr(&path);
    if ((rc = rc_api_request_do(api, &req, res, err)) < 0)
        return rc;
    if (res->kind != RC_API_BODY_TEXT)
        return rc_error_set(err, RC_EPARSE, "content answer is not an archive (HTTP %ld)",
                            res->status);
    if (res->text_len > l->max_archive_bytes)
        return rc_error_set(err, RC_ETOOBIG, "archive of %zu bytes, over the %zu-byte cap",
                            res->text_len, l->max_archive_bytes);
    if (res->text_len == 0)
        return rc_error_set(err, RC_EPARSE, "empty archive");
    return 0;
}

static void remove_quietly(int dfd, const char *name)
{
    rc_error ignored = {0};
    if (rc_tar_remove_tree(dfd, name, &ignored) < 0)
        rc_log_warn("skills: cannot remove %s: %s", name, ignored.msg);
}

/* Unpack into dest/.staging-XXXXXX, normalise, move the content to dest/<dir>. */
static int install(int dest_fd, const char *dest_dir, const rc_skills_item *item, const void *data,
                   size_t len, const rc_skills_limits *l, const char **ret_kind, rc_error *err)
{
    char tmpl[PATH_MAX], top[NAME_MAX + 1], from[NAME_MAX * 2 + 2];
    const char *staging;
    _cleanup_close_ int sfd = -1;
    int rc, single = 0;

    if (snprintf(tmpl, sizeof tmpl, "%s/" STAGING_PREFIX "XXXXXX", dest_dir) >= (int)sizeof tmpl)
        return rc_error_set(err, RC_ETOOBIG, "destination path too long");
    if (!mkdtemp(tmpl))
        return rc_error_sys(err, RC_EIO, "cannot create a staging directory");
    staging = strrchr(tmpl, '/') + 1;
    sfd = openat(dest_fd, staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0)
        rc = rc_error_sys(err, RC_EIO, "cannot open the staging directory");
    else
        rc = unpack(data, len, l, sfd, ret_kind, err);
    if (rc == 0)
        rc = normalise_tree(sfd, 0, err);
    if (rc == 0 && fchmod(sfd, 0755) < 0)
        rc = rc_error_sys(err, RC_EIO, "chmod");
    if (rc == 0 && (single = single_top_dir(sfd, top, err)) < 0)
        rc = single;
    if (rc == 0) {
        if (single)
            snprintf(from, sizeof from, "%s/%s", staging, top);
        else
            snprintf(from, sizeof from, "%s", staging);
        if (renameat2(dest_fd, from, dest_fd, item->dir, RENAME_NOREPLACE) < 0)
            rc = rc_error_sys(err, RC_EIO, "cannot move the skill into place");
    }
    if (rc < 0 || single)
        remove_quietly(dest_fd, staging);
    return rc;
}

static int fetch_one(rc_api *api, int dest_fd, const char *dest_dir, const cJSON *entry,
                     const rc_skills_limits *l, rc_skills_item *item, rc_error *err)
{
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(entry, "skill_id");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(entry, "version");
    char version[64] = "latest", name[512];
    const char *kind = "archive";
    int rc;

    if (!cJSON_IsString(id) || !valid_id(id->valuestring, SKILL_ID_MAX))
        return rc_error_set(err, RC_EINVAL, "skill entry has no valid skill_id");
    snprintf(item->skill_id, sizeof item->skill_id, "%s", id->valuestring);
    if (cJSON_IsString(ver) && valid_id(ver->valuestring, VERSION_ID_MAX))
        snprintf(version, sizeof version, "%s", ver->valuestring);
    else if (cJSON_IsNumber(ver) && ver->valuedouble >= 0 && ver->valuedouble < 1e15)
        snprintf(version, sizeof version, "%lld", (long long)ver->valuedouble);
    else if (ver && !cJSON_IsNull(ver))
        return rc_error_set(err, RC_EINVAL, "skill %s has an invalid version", item->skill_id);
    if ((rc = resolve(api, item, version, name, sizeof name, err)) < 0)
        return rc;
    choose_dir(name, item->skill_id, item->dir, sizeof item->dir);
    remove_quietly(dest_fd, item->dir); /* 15.1.4: an older copy goes first */
    if ((rc = download(api, item, l, &res, err)) < 0 ||
        (rc = install(dest_fd, dest_dir, item, res.text, res.text_len, l, &kind, err)) < 0)
        return rc;
    rc_log_info("skills: %s version %s (%s, %zu bytes) ready in %s/", item->skill_id, item->version,
                kind, res.text_len, item->dir);
    return 0;
}

/* ---- the session's skills ----------------------------------------------------------------- */

static const cJSON *skills_array(const cJSON *in)
{
    const cJSON *agent;
    if (cJSON_IsArray(in))
        return in;
    agent = cJSON_GetObjectItemCaseSensitive(in, "agent");
    return cJSON_GetObjectItemCaseSensitive(agent, "skills");
}

static int open_dest(const char *dest_dir, rc_error *err)
{
    int fd;
    if (mkdir(dest_dir, 0755) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "cannot create the skills directory");
    fd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "cannot open the skills directory");
    return fd;
}

void rc_skills_report_free(rc_skills_report *r)
{
    if (!r)
        return;
    free(r->items);
    *r = (rc_skills_report){0};
}

int rc_skills_fetch(rc_api *api, const cJSON *skills, const char *dest_dir,
                    const rc_skills_limits *limits, rc_skills_report *ret_report, rc_error *err)
{
    const cJSON *arr = skills ? skills_array(skills) : NULL;
    rc_skills_report rep = {0};
    rc_skills_limits l;
    _cleanup_close_ int dest_fd = -1;
    const cJSON *entry;
    size_t i = 0;

    if (!api || !dest_dir || !ret_report)
        return rc_error_set(err, RC_EINVAL, "skills: missing argument");
    if (arr && !cJSON_IsArray(arr))
        return rc_error_set(err, RC_EINVAL, "skills: agent.skills is not an array");
    limits_resolve(limits, &l);
    if ((dest_fd = open_dest(dest_dir, err)) < 0)
        return dest_fd;
    rep.n_items = arr ? (size_t)cJSON_GetArraySize(arr) : 0;
    if (rep.n_items > 0 && !(rep.items = calloc(rep.n_items, sizeof *rep.items)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    cJSON_ArrayForEach(entry, arr)
    {
        rc_skills_item *it = &rep.items[i++];
        rc_error e = {0};
        it->rc = i > l.max_skills
                     ? rc_error_set(&e, RC_ETOOBIG, "more than %u skills", l.max_skills)
                     : fetch_one(api, dest_fd, dest_dir, entry, &l, it, &e);
        if (it->rc == 0) {
            rep.n_ok++;
            continue;
        }
        rep.n_failed++;
        snprintf(it->reason, sizeof it->reason, "%s", e.msg);
        rc_log_warn("skills: %s failed (the others go on): %s",
                    it->skill_id[0] ? it->skill_id : "(unnamed)", e.msg);
    }
    *ret_report = rep;
    return (int)rep.n_ok;
}

int rc_skills_remove(const char *dest_dir, rc_error *err)
{
    _cleanup_free_ char *copy = strdup(dest_dir ? dest_dir : "");
    char *slash;
    _cleanup_close_ int parent = -1;

    if (!copy || !copy[0])
        return rc_error_set(err, RC_EINVAL, "skills: no directory to remove");
    slash = strrchr(copy, '/');
    if (slash == copy)
        return rc_error_set(err, RC_EINVAL, "skills: refusing to remove a top-level directory");
    if (slash) {
        *slash = '\0';
        parent = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0)
            return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "open %s", copy);
        return rc_tar_remove_tree(parent, slash + 1, err);
    }
    return rc_tar_remove_tree(AT_FDCWD, copy, err);
}
