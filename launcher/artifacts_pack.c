/* artifacts_pack.c - the tarball form of an artifacts export and the pruning of old exports
 * (RUNCELL_ARTIFACTS_FORMAT=tar, RUNCELL_ARTIFACTS_KEEP_DAYS; docs/OPERATIONS.md "Artifacts").
 *
 * rc_artifacts_pack turns an export directory (written by rc_artifacts_export: root-owned, 0700,
 * regular files and directories only) into one gzip-compressed POSIX tar file. Entries are
 * written in name order with mode, size and mtime; owners are 0/0. Names longer than the ustar
 * header allows get a pax 'x' record. The archive is written under a ".partial" name and renamed
 * into place, so a reader never sees half an archive.
 *
 * rc_artifacts_prune removes exports older than a cut-off from <root>/<session id>/: only the
 * names an export can have (<UTC time>Z and <UTC time>Z.tar.gz) are looked at, and a session
 * directory left empty is removed too. Nothing else in <root> is touched. */
#include "artifacts.h"

#include "../oci/tar.h"
#include "cleanup.h"
#include "fsio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define BLOCK      512
#define NAME_LEN   100
#define COPY_CHUNK (64 * 1024)
#define PACK_DEPTH 64

typedef struct packer {
    gzFile gz;
    char path[4096]; /* the entry path being built, relative to the export dir */
    size_t path_len;
    unsigned char buf[COPY_CHUNK];
} packer;

/* ---- tar records ----------------------------------------------------------------------------- */

static int gz_put(packer *p, const void *data, size_t n, rc_error *err)
{
    if (n && gzwrite(p->gz, data, (unsigned)n) != (int)n)
        return rc_error_set(err, RC_EIO, "artifacts: compressing the archive failed");
    return 0;
}

static int gz_pad(packer *p, uint64_t size, rc_error *err)
{
    static const unsigned char zeros[BLOCK];
    size_t rem = (size_t)(size % BLOCK);
    return rem ? gz_put(p, zeros, BLOCK - rem, err) : 0;
}

static void octal(char *field, size_t width, uint64_t v)
{
    snprintf(field, width, "%0*llo", (int)width - 1, (unsigned long long)v);
}

static int put_header(packer *p, const char *name, char type, uint32_t mode, uint64_t size,
                      int64_t mtime, rc_error *err)
{
    unsigned char h[BLOCK] = {0};
    unsigned sum = 0;
    memcpy(h, name, strnlen(name, NAME_LEN));
    octal((char *)h + 100, 8, mode & 07777);
    octal((char *)h + 108, 8, 0);
    octal((char *)h + 116, 8, 0);
    octal((char *)h + 124, 12, size);
    octal((char *)h + 136, 12, mtime > 0 ? (uint64_t)mtime : 0);
    memset(h + 148, ' ', 8);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    for (size_t i = 0; i < BLOCK; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    return gz_put(p, h, BLOCK, err);
}

/* A pax record "<len> path=<path>\n", whose length counts its own digits. */
static int put_pax_path(packer *p, const char *path, rc_error *err)
{
    char rec[sizeof p->path + 32];
    size_t body = strlen(path) + sizeof " path=\n" - 1, len = body + 1;
    while ((size_t)snprintf(NULL, 0, "%zu", len) + body != len)
        len++;
    int n = snprintf(rec, sizeof rec, "%zu path=%s\n", len, path);
    if (n < 0 || (size_t)n != len)
        return rc_error_set(err, RC_EINVAL, "artifacts: path too long for the archive");
    int r = put_header(p, "././@PaxHeader", 'x', 0644, len, 0, err);
    if (r < 0 || (r = gz_put(p, rec, len, err)) < 0)
        return r;
    return gz_pad(p, len, err);
}

static int put_entry_header(packer *p, char type, const struct stat *st, rc_error *err)
{
    int r;
    if (p->path_len >= NAME_LEN && (r = put_pax_path(p, p->path, err)) < 0)
        return r;
    return put_header(p, p->path, type, st->st_mode, type == '0' ? (uint64_t)st->st_size : 0,
                      st->st_mtim.tv_sec, err);
}

/* ---- walk ------------------------------------------------------------------------------------ */

static int push_name(packer *p, const char *name, bool dir, size_t *ret_old)
{
    size_t old = p->path_len, n = strlen(name);
    if (old + n + 2 >= sizeof p->path)
        return -RC_EINVAL;
    memcpy(p->path + old, name, n);
    p->path_len = old + n;
    if (dir)
        p->path[p->path_len++] = '/';
    p->path[p->path_len] = '\0';
    *ret_old = old;
    return 0;
}

static void pop_name(packer *p, size_t old)
{
    p->path_len = old;
    p->path[old] = '\0';
}

static int put_file(packer *p, int dir_fd, const char *name, rc_error *err)
{
    _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    uint64_t done = 0;
    int r;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return rc_error_sys(err, RC_EIO, "artifacts: cannot read exported file");
    if ((r = put_entry_header(p, '0', &st, err)) < 0)
        return r;
    while (done < (uint64_t)st.st_size) {
        uint64_t left = (uint64_t)st.st_size - done;
        ssize_t k = read(fd, p->buf, left < COPY_CHUNK ? (size_t)left : COPY_CHUNK);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) /* the export is ours and quiet: a short file is an error, not a race */
            return rc_error_set(err, RC_EIO, "artifacts: exported file changed while packing");
        if ((r = gz_put(p, p->buf, (size_t)k, err)) < 0)
            return r;
        done += (uint64_t)k;
    }
    return gz_pad(p, done, err);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char ***names)
{
    for (char **n = *names; n && *n; n++)
        free(*n);
    free(*names);
}

/* The entries of dir_fd except . and .., sorted, NULL-terminated. */
static int list_sorted(int dir_fd, char ***ret, rc_error *err)
{
    _cleanup_(names_free) char **names = NULL;
    size_t n = 0, cap = 0;
    int fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return rc_error_sys(err, RC_EIO, "artifacts: cannot list the export");
    }
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n + 2 > cap) {
            char **more = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
            if (!more) {
                closedir(d);
                return rc_error_set(err, RC_ENOMEM, "artifacts: out of memory");
            }
            names = more;
        }
        if (!(names[n] = strdup(de->d_name))) {
            closedir(d);
            return rc_error_set(err, RC_ENOMEM, "artifacts: out of memory");
        }
        names[++n] = NULL;
    }
    closedir(d);
    if (names)
        qsort(names, n, sizeof *names, cmp_names);
    *ret = take_ptr(names);
    return 0;
}

static int put_dir(packer *p, int dir_fd, unsigned depth, rc_error *err);

static int put_child(packer *p, int dir_fd, const char *name, unsigned depth, rc_error *err)
{
    struct stat st;
    size_t old;
    int r;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return rc_error_sys(err, RC_EIO, "artifacts: cannot stat exported entry");
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return rc_error_set(err, RC_EIO, "artifacts: unexpected entry type in the export");
    if (push_name(p, name, S_ISDIR(st.st_mode), &old) < 0)
        return rc_error_set(err, RC_EINVAL, "artifacts: path too long for the archive");
    if (S_ISREG(st.st_mode)) {
        r = put_file(p, dir_fd, name, err);
    } else {
        _cleanup_close_ int sub =
            openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            r = rc_error_sys(err, RC_EIO, "artifacts: cannot open exported directory");
        else if ((r = put_entry_header(p, '5', &st, err)) >= 0)
            r = put_dir(p, sub, depth + 1, err);
    }
    pop_name(p, old);
    return r;
}

static int put_dir(packer *p, int dir_fd, unsigned depth, rc_error *err)
{
    _cleanup_(names_free) char **names = NULL;
    int r;
    if (depth > PACK_DEPTH)
        return rc_error_set(err, RC_EINVAL, "artifacts: export nested too deeply");
    if ((r = list_sorted(dir_fd, &names, err)) < 0)
        return r;
    for (char **n = names; n && *n; n++)
        if ((r = put_child(p, dir_fd, *n, depth, err)) < 0)
            return r;
    return 0;
}

/* Write the archive of dir_fd into a new file at tmp (a path that must not exist). */
static int pack_to(int dir_fd, const char *tmp, rc_error *err)
{
    static const unsigned char end[2 * BLOCK];
    _cleanup_free_ packer *p = calloc(1, sizeof *p);
    int fd, r;
    if (!p)
        return rc_error_set(err, RC_ENOMEM, "artifacts: out of memory");
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "artifacts: cannot create %s", tmp);
    if (!(p->gz = gzdopen(fd, "wb6"))) {
        close(fd);
        return rc_error_set(err, RC_ENOMEM, "artifacts: gzip stream");
    }
    r = put_dir(p, dir_fd, 0, err);
    if (r >= 0)
        r = gz_put(p, end, sizeof end, err);
    if (r >= 0 && (gzflush(p->gz, Z_FINISH) != Z_OK || fsync(fd) < 0))
        r = rc_error_set(err, RC_EIO, "artifacts: writing %s failed", tmp);
    int zr = gzclose(p->gz); /* closes fd */
    p->gz = NULL;
    if (r >= 0 && zr != Z_OK)
        r = rc_error_set(err, RC_EIO, "artifacts: writing %s failed", tmp);
    return r;
}

int rc_artifacts_pack(const char *dir, const char *out_path, rc_error *err)
{
    char tmp[4096];
    _cleanup_close_ int dir_fd = -1;
    int r;
    if (!dir || !out_path)
        return rc_error_set(err, RC_EINVAL, "artifacts: missing argument");
    r = snprintf(tmp, sizeof tmp, "%s.partial", out_path);
    if (r < 0 || (size_t)r >= sizeof tmp)
        return rc_error_set(err, RC_EINVAL, "artifacts: archive path too long");
    dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd < 0)
        return rc_error_sys(err, RC_EIO, "artifacts: open %s", dir);
    if ((r = pack_to(dir_fd, tmp, err)) < 0) {
        unlink(tmp);
        return r;
    }
    if (rename(tmp, out_path) < 0) {
        r = rc_error_sys(err, RC_EIO, "artifacts: rename to %s", out_path);
        unlink(tmp);
        return r;
    }
    return 0;
}

/* ---- pruning --------------------------------------------------------------------------------- */

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* 20261123T215200.123Z, optionally followed by .tar.gz (or .tar.gz.partial, left by a crash
 * while packing): the names export_artifacts makes. */
bool rc_artifacts_is_export_name(const char *name)
{
    size_t n = strnlen(name, 64);
    if (n < 20 || !all_digits(name, 8) || name[8] != 'T' || !all_digits(name + 9, 6) ||
        name[15] != '.' || !all_digits(name + 16, 3) || name[19] != 'Z')
        return false;
    return n == 20 || !strcmp(name + 20, ".tar.gz") || !strcmp(name + 20, ".tar.gz.partial");
}

static int prune_session(int root_fd, const char *sid, time_t cutoff, unsigned *removed,
                         rc_error *err)
{
    _cleanup_(names_free) char **names = NULL;
    _cleanup_close_ int fd = openat(root_fd, sid, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    int r;
    if (fd < 0)
        return 0; /* not a directory (or gone): not ours to judge */
    if ((r = list_sorted(fd, &names, err)) < 0)
        return r;
    for (char **n = names; n && *n; n++) {
        if (!rc_artifacts_is_export_name(*n) || fstatat(fd, *n, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            st.st_mtim.tv_sec >= cutoff)
            continue;
        if (S_ISDIR(st.st_mode))
            r = rc_tar_remove_tree(fd, *n, err);
        else
            r = unlinkat(fd, *n, 0) < 0 ? rc_error_sys(err, RC_EIO, "artifacts: unlink") : 0;
        if (r < 0)
            return r;
        (*removed)++;
    }
    unlinkat(root_fd, sid, AT_REMOVEDIR); /* only succeeds when it is now empty */
    return 0;
}

int rc_artifacts_prune(const char *root, time_t cutoff, rc_error *err)
{
    _cleanup_(names_free) char **names = NULL;
    _cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    unsigned removed = 0;
    int r;
    if (fd < 0)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "artifacts: open %s", root);
    if ((r = list_sorted(fd, &names, err)) < 0)
        return r;
    for (char **n = names; n && *n; n++)
        if (!strncmp(*n, "sesn_", 5) && (r = prune_session(fd, *n, cutoff, &removed, err)) < 0)
            return r;
    return (int)removed;
}
