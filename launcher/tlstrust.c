/* tlstrust.c - the session CA's certificate, published to the container (issue 11).
 *
 * Owns the per-session host dir S/tls/<sid>: what goes in it (certificates only: every PEM written
 * is checked to be CERTIFICATE blocks), where it is bound, and its removal. The CA itself
 * (broker/ca.h) and its private key stay in the shim's memory; this file never sees the key.
 * Everything read from the snapshot is opened with openat2(RESOLVE_IN_ROOT), so the snapshot's
 * symlinks resolve inside the snapshot and can never pull a host file into the container. */
#include "tlstrust.h"

#include "../broker/policy.h"
#include "../oci/tar.h"
#include "cleanup.h"
#include "fsio.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PEM_BEGIN_CERT "-----BEGIN CERTIFICATE-----"
#define PEM_END_CERT   "-----END CERTIFICATE-----"
#define READ_SLACK     4096 /* a read buffer's room beyond the file cap (read_capped checks it) */

/* System bundles of the common distributions, relative to the root (Debian/Ubuntu/Alpine/Arch,
 * Fedora/RHEL, Alpine's and LibreSSL's cert.pem). Each one present gets the merged bundle bound
 * over it; the first one found is the base of the merge. */
static const char *const bundle_files[] = {"etc/ssl/certs/ca-certificates.crt",
                                           "etc/pki/tls/certs/ca-bundle.crt", "etc/ssl/cert.pem",
                                           NULL};

/* Anchor dirs that update-ca-certificates / update-ca-trust read, with the name our CA takes
 * there (Debian's tool only picks up *.crt). */
static const struct {
    const char *dir;
    const char *name;
} anchor_dirs[] = {{"usr/local/share/ca-certificates", RC_TLSTRUST_ANCHOR_NAME},
                   {"etc/pki/ca-trust/source/anchors", RC_TLSTRUST_ANCHOR_NAME},
                   {NULL, NULL}};

/* ---- policy -------------------------------------------------------------------------------- */

bool rc_tlstrust_policy_wants_ca(const struct rc_policy *p)
{
    size_t n = p ? rc_policy_domain_count(p) : 0;
    for (size_t i = 0; i < n; i++) {
        const rc_policy_domain *d = rc_policy_domain_at(p, i);
        if (d && d->n_rules > 0)
            return true;
    }
    return false;
}

/* ---- PEM checks and the merge (pure) ------------------------------------------------------- */

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static bool is_b64(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/' || ch == '=';
}

static bool has(const char *p, size_t len, const char *needle)
{
    return p && memmem(p, len, needle, strlen(needle)) != NULL;
}

int rc_tlstrust_cert_check(const char *pem, size_t len, rc_error *err)
{
    size_t b = 0, e = len, nb = strlen(PEM_BEGIN_CERT), ne = strlen(PEM_END_CERT);
    if (!pem)
        return rc_error_set(err, RC_EINVAL, "no CA certificate");
    if (len > RC_TLSTRUST_CA_PEM_MAX)
        return rc_error_set(err, RC_ETOOBIG, "the CA certificate is too large");
    while (b < e && is_space(pem[b]))
        b++;
    while (e > b && is_space(pem[e - 1]))
        e--;
    if (e - b < nb + ne + 1 || memcmp(pem + b, PEM_BEGIN_CERT, nb) != 0 ||
        memcmp(pem + e - ne, PEM_END_CERT, ne) != 0)
        return rc_error_set(err, RC_EINVAL, "the CA certificate is not one PEM CERTIFICATE block");
    size_t n_b64 = 0;
    for (size_t i = b + nb; i < e - ne; i++) {
        if (!is_b64(pem[i]) && !is_space(pem[i]))
            return rc_error_set(err, RC_EINVAL,
                                "the CA certificate holds more than one PEM block or stray text");
        n_b64 += is_b64(pem[i]);
    }
    if (n_b64 == 0)
        return rc_error_set(err, RC_EINVAL, "the CA certificate is empty");
    return 0;
}

int rc_tlstrust_bundle_merge(const char *system, size_t system_len, const char *ca_pem,
                             size_t ca_len, rc_buf *out, rc_error *err)
{
    int r;
    if ((r = rc_tlstrust_cert_check(ca_pem, ca_len, err)) < 0)
        return r;
    if (system_len && !system)
        return rc_error_set(err, RC_EINVAL, "no system bundle text");
    if (system_len && (has(system, system_len, "PRIVATE KEY") || memchr(system, '\0', system_len)))
        return rc_error_set(err, RC_EINVAL,
                            "the system bundle holds a private key or binary data: not published");
    if ((r = rc_buf_append(out, system, system_len, err)) < 0 ||
        (system_len && system[system_len - 1] != '\n' && (r = rc_buf_putc(out, '\n', err)) < 0) ||
        (r = rc_buf_append_str(out, "# runcell per-session egress CA (TLS interception)\n", err)) <
            0 ||
        (r = rc_buf_append(out, ca_pem, ca_len, err)) < 0 ||
        (ca_pem[ca_len - 1] != '\n' && (r = rc_buf_putc(out, '\n', err)) < 0))
        return r;
    return 0;
}

/* ---- reading the snapshot ------------------------------------------------------------------ */

static int open_in_root(int rootfd, const char *rel, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
}

/* Read a regular file of at most max bytes from fd into out (whose own max is at least
 * max + READ_SLACK). */
static int read_capped(int fd, size_t max, rc_buf *out, const char *what, rc_error *err)
{
    struct stat st;
    ssize_t n;
    int r;
    if (fstat(fd, &st) < 0)
        return rc_error_sys(err, RC_EIO, "stat %s", what);
    if (!S_ISREG(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "%s is not a regular file", what);
    if ((uint64_t)st.st_size > max)
        return rc_error_set(err, RC_ETOOBIG, "%s is larger than %zu bytes", what, max);
    for (;;) {
        if ((r = rc_buf_reserve(out, READ_SLACK, err)) < 0)
            return r;
        n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "read %s", what);
        if (n == 0)
            return 0;
        if (out->len + (size_t)n > max)
            return rc_error_set(err, RC_ETOOBIG, "%s grew past %zu bytes", what, max);
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
}

/* ---- writing the dir ----------------------------------------------------------------------- */

static int write_at(int dirfd, const char *name, const void *p, size_t n, rc_error *err)
{
    _cleanup_close_ int fd =
        openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    int r;
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "create %s", name);
    if (fchmod(fd, 0644) < 0)
        return rc_error_sys(err, RC_EIO, "chmod %s", name);
    if ((r = rc_fd_write_all(fd, p, n, name, err)) < 0)
        return r;
    return 0;
}

static int add_bind(rc_tlstrust_result *res, const char *dir, const char *src_name,
                    const char *dest, rc_error *err)
{
    size_t i = res->n_binds;
    int a, b;
    if (i >= RC_TLSTRUST_BINDS_MAX)
        return rc_error_set(err, RC_ETOOBIG, "too many trust binds");
    a = snprintf(res->sources[i], sizeof res->sources[i], "%s/%s", dir, src_name);
    b = snprintf(res->dests[i], sizeof res->dests[i], "/%s", dest);
    if (a < 0 || (size_t)a >= sizeof res->sources[i] || b < 0 || (size_t)b >= sizeof res->dests[i])
        return rc_error_set(err, RC_ETOOBIG, "trust bind path too long");
    res->binds[i].source = res->sources[i];
    res->binds[i].destination = res->dests[i];
    res->n_binds++;
    return 0;
}

/* The system bundles present in the snapshot: each distinct file gets a bind; the first one
 * read is the base of the merged bundle (appended to base). */
static int find_bundles(int rootfd, const char *dir, rc_tlstrust_result *res, rc_buf *base,
                        rc_error *err)
{
    dev_t seen_dev[4];
    ino_t seen_ino[4];
    size_t n_seen = 0;
    struct stat st;
    int r;

    for (size_t i = 0; bundle_files[i]; i++) {
        _cleanup_close_ int fd = open_in_root(rootfd, bundle_files[i], O_RDONLY | O_NOCTTY);
        bool dup = false;
        if (fd < 0 && errno == ENOSYS)
            return rc_error_sys(err, RC_EIO, "openat2 (Linux 5.6 or later is required)");
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        for (size_t k = 0; k < n_seen; k++)
            dup = dup || (seen_dev[k] == st.st_dev && seen_ino[k] == st.st_ino);
        if (dup || n_seen == sizeof seen_dev / sizeof seen_dev[0])
            continue;
        seen_dev[n_seen] = st.st_dev;
        seen_ino[n_seen++] = st.st_ino;
        if (!res->system_bundle) {
            if ((r = read_capped(fd, RC_TLSTRUST_SYSTEM_BUNDLE_MAX, base, bundle_files[i], err)) <
                0)
                return r;
            res->system_bundle = true;
        }
        if ((r = add_bind(res, dir, RC_OCI_CA_BUNDLE_NAME, bundle_files[i], err)) < 0)
            return r;
    }
    return 0;
}

/* Copy one regular anchor file (a certificate the snapshot ships) into outfd's dir. 0 copied,
 * 1 when the entry cannot be reproduced (not a regular file, too large). */
static int copy_anchor(int srcdir, const char *name, int outfd, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf data = RC_BUF_INIT(RC_TLSTRUST_ANCHOR_FILE_MAX + READ_SLACK);
    _cleanup_close_ int fd = -1;
    struct stat st;
    int r;
    if (fstatat(srcdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > RC_TLSTRUST_ANCHOR_FILE_MAX)
        return 1;
    if ((fd = openat(srcdir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC)) < 0)
        return 1;
    if ((r = read_capped(fd, RC_TLSTRUST_ANCHOR_FILE_MAX, &data, "anchor", err)) < 0)
        return 1;
    if (has(data.data ? data.data : "", data.len, "PRIVATE KEY"))
        return 1; /* never publish a key, whoever put it there */
    return write_at(outfd, name, data.data ? data.data : "", data.len, err);
}

/* Read-only root: the anchor dir's own entries (regular files only) plus our CA, in a host dir
 * bound over it. 1 when the dir holds something we do not reproduce (it is then left alone). */
static int copy_anchor_dir(int anchor_fd, int dirfd, const char *sub, const char *our_name,
                           const char *ca_pem, size_t ca_len, rc_error *err)
{
    _cleanup_close_ int outfd = -1;
    DIR *d;
    struct dirent *de;
    size_t n = 0;
    int r = 0, dupfd;

    if (mkdirat(dirfd, sub, 0755) < 0 ||
        (outfd = openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
        fchmod(outfd, 0755) < 0)
        return rc_error_sys(err, RC_EIO, "create %s", sub);
    if ((dupfd = fcntl(anchor_fd, F_DUPFD_CLOEXEC, 3)) < 0 || !(d = fdopendir(dupfd))) {
        if (dupfd >= 0)
            close(dupfd);
        return rc_error_sys(err, RC_EIO, "read an anchor dir");
    }
    while (r == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, our_name))
            continue;
        r = ++n > RC_TLSTRUST_ANCHOR_FILES_MAX ? 1 : copy_anchor(anchor_fd, de->d_name, outfd, err);
    }
    closedir(d);
    if (r != 0)
        return r;
    return write_at(outfd, our_name, ca_pem, ca_len, err);
}

static int add_anchors(int rootfd, int dirfd, const char *dir, bool writable_root,
                       const char *ca_pem, size_t ca_len, rc_tlstrust_result *res, rc_error *err)
{
    char sub[32], dest[256];
    int r;

    for (size_t i = 0; anchor_dirs[i].dir; i++) {
        _cleanup_close_ int afd =
            open_in_root(rootfd, anchor_dirs[i].dir, O_RDONLY | O_DIRECTORY | O_NOCTTY);
        if (afd < 0)
            continue;
        if (writable_root) { /* runc makes the file in the session's overlay */
            snprintf(dest, sizeof dest, "%s/%s", anchor_dirs[i].dir, anchor_dirs[i].name);
            if ((r = add_bind(res, dir, RC_OCI_CA_PEM_NAME, dest, err)) < 0)
                return r;
            continue;
        }
        snprintf(sub, sizeof sub, "anchors-%zu", i);
        r = copy_anchor_dir(afd, dirfd, sub, anchor_dirs[i].name, ca_pem, ca_len, err);
        if (r < 0)
            return r;
        if (r > 0) {
            rc_log_warn("tls: /%s holds entries other than small regular files: the session CA "
                        "is not added there (it is in %s)",
                        anchor_dirs[i].dir, RC_OCI_DEFAULT_CA_DIR);
            continue;
        }
        if ((r = add_bind(res, dir, sub, anchor_dirs[i].dir, err)) < 0)
            return r;
    }
    return 0;
}

static int make_dir(const char *dir, int *ret_fd, rc_error *err)
{
    _cleanup_free_ char *parent = strdup(dir);
    char *slash = parent ? strrchr(parent, '/') : NULL;
    int fd;
    if (!parent)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (!slash || slash == parent)
        return rc_error_set(err, RC_EINVAL, "the trust dir needs a parent");
    *slash = '\0';
    if (mkdir(parent, 0711) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "mkdir %s", parent);
    if (mkdir(dir, 0755) < 0)
        return rc_error_sys(err, RC_EIO, "mkdir %s", dir);
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return rc_error_sys(err, RC_EIO, "open %s", dir);
    if ((geteuid() == 0 && fchown(fd, 0, 0) < 0) || fchmod(fd, 0755) < 0) {
        close(fd);
        return rc_error_sys(err, RC_EIO, "chmod %s", dir);
    }
    *ret_fd = fd;
    return 0;
}

int rc_tlstrust_prepare(const char *rootfs, const char *dir, const char *ca_pem, size_t ca_len,
                        bool writable_root, rc_tlstrust_result *ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf bundle =
        RC_BUF_INIT(RC_TLSTRUST_SYSTEM_BUNDLE_MAX + RC_TLSTRUST_CA_PEM_MAX + 2 * READ_SLACK);
    _cleanup_(rc_buf_free) rc_buf sys = RC_BUF_INIT(RC_TLSTRUST_SYSTEM_BUNDLE_MAX + READ_SLACK);
    _cleanup_close_ int rootfd = -1, dirfd = -1;
    int r;

    if (!rootfs || !dir || !ret)
        return rc_error_set(err, RC_EINVAL, "tls trust: rootfs, dir and result are required");
    *ret = (rc_tlstrust_result){0};
    if ((r = rc_tlstrust_cert_check(ca_pem, ca_len, err)) < 0)
        return r;
    if ((r = rc_tlstrust_remove(dir, err)) < 0 || (r = make_dir(dir, &dirfd, err)) < 0)
        return r;
    if ((rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return rc_error_sys(err, RC_EIO, "open the snapshot rootfs");
    if ((r = find_bundles(rootfd, dir, ret, &sys, err)) < 0 ||
        (r = rc_tlstrust_bundle_merge(sys.data, sys.len, ca_pem, ca_len, &bundle, err)) < 0 ||
        (r = write_at(dirfd, RC_OCI_CA_PEM_NAME, ca_pem, ca_len, err)) < 0 ||
        (r = write_at(dirfd, RC_OCI_CA_BUNDLE_NAME, bundle.data, bundle.len, err)) < 0 ||
        (r = add_anchors(rootfd, dirfd, dir, writable_root, ca_pem, ca_len, ret, err)) < 0)
        return r;
    if (!ret->system_bundle)
        rc_log_warn("tls: the snapshot has no system CA bundle: %s/%s holds only the session CA, "
                    "so clients pointed at it trust nothing else",
                    RC_OCI_DEFAULT_CA_DIR, RC_OCI_CA_BUNDLE_NAME);
    return 0;
}

int rc_tlstrust_remove(const char *dir, rc_error *err)
{
    _cleanup_free_ char *copy = strdup(dir ? dir : "");
    _cleanup_close_ int parent = -1;
    char *slash;

    if (!copy || !copy[0])
        return rc_error_set(err, RC_EINVAL, "tls trust: no directory to remove");
    slash = strrchr(copy, '/');
    if (!slash || slash == copy || !slash[1])
        return rc_error_set(err, RC_EINVAL, "tls trust: refusing to remove %s", dir);
    *slash = '\0';
    parent = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0)
        return errno == ENOENT ? 0 : rc_error_sys(err, RC_EIO, "open %s", copy);
    return rc_tar_remove_tree(parent, slash + 1, err);
}
