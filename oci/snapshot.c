/* snapshot.c - the snapshot store (see snapshot.h for the layout and the contract).
 *
 * Import is shaped around two facts. First, the digest names the content, so the tarball is
 * hashed before anything else, and hashed a second time as the extractor consumes it: if the
 * file changed in between (a writer racing the import), the tree would not be the digest's tree,
 * so the import fails. Second, extraction is slow and must happen once: a per-digest flock
 * serialises importers and pruners of one digest (shared for "is it there / hold it", exclusive
 * to create or remove it), the tree is built under tmp/ and renamed into sha256/ only when
 * complete and synced, and every failure removes what it made, lock file included.
 *
 * Compressed tarballs are piped through gzip/zstd/xz child processes (execve of a fixed path,
 * no shell, empty environment, no new privileges, an address-space cap, killed if we die). The
 * parent feeds the file into the child's stdin and reads its stdout in one poll loop, hashing
 * the compressed bytes as they are read from the file; the child's stdin is a socket so a child
 * that exits early cannot SIGPIPE us (send with MSG_NOSIGNAL). */
#include "snapshot.h"

#include "cleanup.h"
#include "json.h"
#include "log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const rc_tar_dir rc_snapshot_mountpoints[] = {
    {"workspace", 0755}, {"tmp", 01777},        {"proc", 0555}, {"sys", 0555},        {"dev", 0755},
    {"run", 0755},       {"run/runcell", 0755}, {"mnt", 0755},  {"mnt/memory", 0755},
};
const size_t rc_snapshot_n_mountpoints =
    sizeof rc_snapshot_mountpoints / sizeof rc_snapshot_mountpoints[0];

struct rc_snapshot_store {
    char *dir; /* absolute */
    int fd;    /* O_DIRECTORY fd of dir */
    rc_tar_limits limits;
};

#define HEX       RC_SNAPSHOT_DIGEST_HEX
#define IO_CHUNK  (128 * 1024)
#define STALL_MS  (120 * 1000) /* a decompressor that produces nothing for this long is stuck */
#define CHILD_MEM (2ULL << 30) /* address-space cap of a decompressor */

static void evp_freep(EVP_MD_CTX **c)
{
    if (*c)
        EVP_MD_CTX_free(*c);
}

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* ---- digests ------------------------------------------------------------------------------ */

static bool is_hex_digest(const char *s)
{
    for (int i = 0; i < HEX; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return s[HEX] == '\0';
}

int rc_snapshot_digest_parse(const char *digest, char *ret, rc_error *err)
{
    const char *hex = digest;
    if (!digest)
        return rc_error_set(err, RC_EINVAL, "no snapshot digest");
    if (strncmp(hex, "sha256:", 7) == 0)
        hex += 7;
    if (strlen(hex) != HEX || !is_hex_digest(hex))
        return rc_error_set(err, RC_EINVAL,
                            "snapshot digest must be sha256:<64 hex digits> or the bare hex");
    memcpy(ret, "sha256:", 7);
    for (int i = 0; i < HEX; i++)
        ret[7 + i] = (char)tolower((unsigned char)hex[i]);
    ret[7 + HEX] = '\0';
    return 0;
}

/* The bare lowercase hex of a digest argument, into hex (HEX + 1 bytes). */
static int digest_hex(const char *digest, char *hex, rc_error *err)
{
    char full[RC_SNAPSHOT_DIGEST_SIZE];
    int rc = rc_snapshot_digest_parse(digest, full, err);
    if (rc < 0)
        return rc;
    memcpy(hex, full + 7, HEX + 1);
    return 0;
}

static void hex_of(const unsigned char *md, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < HEX / 2; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[HEX] = '\0';
}

static int md_new(EVP_MD_CTX **ret, rc_error *err)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return rc_error_set(err, RC_ENOMEM, "cannot set up SHA-256");
    }
    *ret = c;
    return 0;
}

static int md_final(EVP_MD_CTX *c, char *hex, rc_error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(c, md, &n) != 1 || n != HEX / 2)
        return rc_error_set(err, RC_EIO, "SHA-256 failed");
    hex_of(md, hex);
    return 0;
}

/* Hash fd from its current offset to the end into c. */
static int md_rest_of_file(EVP_MD_CTX *c, int fd, unsigned char *buf, rc_error *err)
{
    for (;;) {
        ssize_t k = read(fd, buf, IO_CHUNK);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return rc_error_sys(err, RC_EIO, "cannot read the tarball");
        if (k == 0)
            return 0;
        if (EVP_DigestUpdate(c, buf, (size_t)k) != 1)
            return rc_error_set(err, RC_EIO, "SHA-256 failed");
    }
}

static int hash_file(int fd, char *hex, rc_error *err)
{
    _cleanup_(evp_freep) EVP_MD_CTX *c = NULL;
    _cleanup_free_ unsigned char *buf = malloc(IO_CHUNK);
    int rc;
    if (!buf)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (lseek(fd, 0, SEEK_SET) < 0)
        return rc_error_sys(err, RC_EIO, "cannot seek in the tarball");
    if ((rc = md_new(&c, err)) < 0 || (rc = md_rest_of_file(c, fd, buf, err)) < 0)
        return rc;
    return md_final(c, hex, err);
}

/* ---- paths and locks ---------------------------------------------------------------------- */

static int mkdir_mode(int dfd, const char *name, mode_t mode, rc_error *err)
{
    if (mkdirat(dfd, name, mode) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "cannot create snapshot store directory %s", name);
    if (fchmodat(dfd, name, mode, 0) < 0)
        return rc_error_sys(err, RC_EIO, "cannot set the mode of %s", name);
    return 0;
}

static bool snapshot_exists(const rc_snapshot_store *s, const char *hex)
{
    char rel[HEX + 16];
    struct stat st;
    snprintf(rel, sizeof rel, "sha256/%s/rootfs", hex);
    return fstatat(s->fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* flock locks/<hex>.lock with op (LOCK_SH/LOCK_EX, maybe |LOCK_NB). Retries when the file was
 * unlinked by its previous holder between our open and our lock. -RC_ECANCELED when LOCK_NB
 * finds it taken. */
static int lock_digest(const rc_snapshot_store *s, const char *hex, int op, int *ret_fd,
                       rc_error *err)
{
    char rel[HEX + 16];
    snprintf(rel, sizeof rel, "locks/%s.lock", hex);
    for (;;) {
        _cleanup_close_ int fd =
            openat(s->fd, rel, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        struct stat a, b;
        if (fd < 0)
            return rc_error_sys(err, RC_EIO, "cannot open the snapshot lock");
        while (flock(fd, op) < 0) {
            if (errno == EWOULDBLOCK)
                return -RC_ECANCELED;
            if (errno != EINTR)
                return rc_error_sys(err, RC_EIO, "cannot lock the snapshot");
        }
        if (fstat(fd, &a) < 0)
            return rc_error_sys(err, RC_EIO, "cannot stat the snapshot lock");
        if (fstatat(s->fd, rel, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            *ret_fd = take_fd(fd);
            return 0;
        }
    }
}

/* Release an exclusive lock, removing its file when the snapshot does not exist (so a failed
 * import or a prune leaves nothing behind). Waiters on the old file notice and retry. */
static void unlock_forget(const rc_snapshot_store *s, const char *hex, int fd)
{
    char rel[HEX + 16];
    if (!snapshot_exists(s, hex)) {
        snprintf(rel, sizeof rel, "locks/%s.lock", hex);
        unlinkat(s->fd, rel, 0);
    }
    close(fd);
}

/* Remove tmp/ entries nobody is working on: "<hex>.<anything>" whose digest lock is free. */
static void sweep_tmp(rc_snapshot_store *s)
{
    _cleanup_close_ int tfd = openat(s->fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_(closedirp) DIR *d = NULL;
    struct dirent *de;
    if (tfd < 0)
        return;
    d = fdopendir(tfd);
    if (!d)
        return;
    tfd = -1; /* owned by d now */
    while ((de = readdir(d))) {
        char hex[HEX + 1];
        int lfd;
        rc_error e = {0};
        if (strlen(de->d_name) <= HEX || de->d_name[HEX] != '.')
            continue;
        memcpy(hex, de->d_name, HEX);
        hex[HEX] = '\0';
        if (!is_hex_digest(hex) || lock_digest(s, hex, LOCK_EX | LOCK_NB, &lfd, NULL) < 0)
            continue;
        if (rc_tar_remove_tree(dirfd(d), de->d_name, &e) < 0)
            rc_log_warn("snapshot: cannot remove leftover tmp/%s: %s", de->d_name, e.msg);
        else
            rc_log_info("snapshot: removed leftover tmp/%s", de->d_name);
        unlock_forget(s, hex, lfd);
    }
}

/* ---- store -------------------------------------------------------------------------------- */

int rc_snapshot_store_open(const char *dir, const rc_tar_limits *limits,
                           rc_snapshot_store **ret_store, rc_error *err)
{
    _cleanup_free_ char *abs = NULL;
    _cleanup_close_ int fd = -1;
    rc_snapshot_store *s;
    int rc;

    if (!dir || !dir[0])
        return rc_error_set(err, RC_EINVAL, "no snapshot store directory");
    if (mkdir(dir, 0711) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "cannot create the snapshot store %s", dir);
    abs = realpath(dir, NULL);
    if (!abs)
        return rc_error_sys(err, RC_EIO, "cannot resolve the snapshot store %s", dir);
    fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "cannot open the snapshot store %s", abs);
    /* 0711: the container's mapped root must be able to reach rootfs/, nobody may list. */
    if (fchmod(fd, 0711) < 0)
        return rc_error_sys(err, RC_EIO, "cannot set the mode of the snapshot store");
    if ((rc = mkdir_mode(fd, "sha256", 0711, err)) < 0 ||
        (rc = mkdir_mode(fd, "tmp", 0700, err)) < 0 ||
        (rc = mkdir_mode(fd, "locks", 0700, err)) < 0)
        return rc;
    s = calloc(1, sizeof *s);
    if (!s)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    s->dir = take_ptr(abs);
    s->fd = take_fd(fd);
    rc_tar_limits_resolve(limits, &s->limits);
    sweep_tmp(s);
    *ret_store = s;
    return 0;
}

void rc_snapshot_store_free(rc_snapshot_store *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    free(s->dir);
    free(s);
}

/* ---- the import source: file -> (decompressor) -> tar reader, hashing the file bytes ----- */

enum compression { COMP_NONE, COMP_GZIP, COMP_ZSTD, COMP_XZ };

static const char *const comp_names[] = {"none", "gzip", "zstd", "xz"};

typedef struct import_src {
    int file_fd;
    EVP_MD_CTX *md;
    unsigned char *inbuf; /* file bytes read (and hashed) but not yet given to the child */
    size_t in_off, in_len;
    bool file_eof;
    pid_t child;
    const char *tool;
    int to_child, from_child, err_child;
    char errtail[160]; /* the end of the child's stderr, for messages */
    size_t errlen;
} import_src;

static int detect_compression(int fd, enum compression *ret, rc_error *err)
{
    unsigned char m[6] = {0};
    ssize_t k = pread(fd, m, sizeof m, 0);
    if (k < 0)
        return rc_error_sys(err, RC_EIO, "cannot read the tarball");
    if (k >= 2 && m[0] == 0x1f && m[1] == 0x8b)
        *ret = COMP_GZIP;
    else if (k >= 4 && memcmp(m, "\x28\xb5\x2f\xfd", 4) == 0)
        *ret = COMP_ZSTD;
    else if (k >= 6 && memcmp(m,
                              "\xfd"
                              "7zXZ\0",
                              6) == 0)
        *ret = COMP_XZ;
    else if (k >= 3 && memcmp(m, "BZh", 3) == 0)
        return rc_error_set(err, RC_EINVAL,
                            "bzip2 tarballs are not supported (use gzip, zstd "
                            "or xz)");
    else
        *ret = COMP_NONE;
    return 0;
}

static int file_read_hashed(import_src *src, void *buf, size_t n, rc_error *err)
{
    for (;;) {
        ssize_t k = read(src->file_fd, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return rc_error_sys(err, RC_EIO, "cannot read the tarball");
        if (k > 0 && EVP_DigestUpdate(src->md, buf, (size_t)k) != 1)
            return rc_error_set(err, RC_EIO, "SHA-256 failed");
        return (int)k;
    }
}

static int plain_read(void *ctx, void *buf, size_t n, rc_error *err)
{
    if (n > IO_CHUNK)
        n = IO_CHUNK;
    return file_read_hashed(ctx, buf, n, err);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void collect_stderr(import_src *src)
{
    char tmp[256];
    ssize_t k = read(src->err_child, tmp, sizeof tmp);
    if (k <= 0) {
        if (k == 0 || (errno != EAGAIN && errno != EINTR))
            close_fd(&src->err_child);
        return;
    }
    for (ssize_t i = 0; i < k; i++) {
        char c = (tmp[i] >= 0x20 && tmp[i] < 0x7f) ? tmp[i] : ' ';
        if (src->errlen == sizeof src->errtail - 1) {
            memmove(src->errtail, src->errtail + 1, src->errlen - 1);
            src->errlen--;
        }
        src->errtail[src->errlen++] = c;
    }
    src->errtail[src->errlen] = '\0';
}

/* Give the child more of the file; closes its stdin at the end of the file. */
static int feed_child(import_src *src, rc_error *err)
{
    ssize_t k;
    if (src->in_off == src->in_len && !src->file_eof) {
        int got = file_read_hashed(src, src->inbuf, IO_CHUNK, err);
        if (got < 0)
            return got;
        src->in_off = 0;
        src->in_len = (size_t)got;
        src->file_eof = got == 0;
    }
    if (src->in_off == src->in_len) {
        close_fd(&src->to_child);
        return 0;
    }
    k = send(src->to_child, src->inbuf + src->in_off, src->in_len - src->in_off,
             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        close_fd(&src->to_child); /* the child stopped reading: its output will end */
        return 0;
    }
    src->in_off += (size_t)k;
    return 0;
}

static int child_read(void *ctx, void *buf, size_t n, rc_error *err)
{
    import_src *src = ctx;
    for (;;) {
        struct pollfd p[3] = {{.fd = src->from_child, .events = POLLIN},
                              {.fd = src->to_child, .events = POLLOUT},
                              {.fd = src->err_child, .events = POLLIN}};
        int rc;
        if (src->from_child < 0)
            return 0;
        rc = poll(p, 3, STALL_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return rc_error_sys(err, RC_EIO, "poll");
        if (rc == 0)
            return rc_error_set(err, RC_ETIMEOUT, "%s produced no output for %d s", src->tool,
                                STALL_MS / 1000);
        if (p[2].revents)
            collect_stderr(src);
        if (p[1].revents && (rc = feed_child(src, err)) < 0)
            return rc;
        if (p[0].revents) {
            ssize_t k = read(src->from_child, buf, n > IO_CHUNK ? IO_CHUNK : n);
            if (k > 0)
                return (int)k;
            if (k == 0) {
                close_fd(&src->from_child);
                return 0;
            }
            if (errno != EAGAIN && errno != EINTR)
                return rc_error_sys(err, RC_EIO, "cannot read from %s", src->tool);
        }
    }
}

static const char *find_tool(enum compression c)
{
    static const char *const paths[][2] = {
        [COMP_GZIP] = {"/usr/bin/gzip", "/bin/gzip"},
        [COMP_ZSTD] = {"/usr/bin/zstd", "/bin/zstd"},
        [COMP_XZ] = {"/usr/bin/xz", "/bin/xz"},
    };
    for (int i = 0; i < 2; i++)
        if (access(paths[c][i], X_OK) == 0)
            return paths[c][i];
    return NULL;
}

/* In the child between fork and execve: async-signal-safe calls only. */
static void __attribute__((noreturn))
child_exec(const char *path, char *const argv[], int in, int out, int errfd)
{
    static char *const envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};
    struct rlimit mem = {CHILD_MEM, CHILD_MEM}, core = {0, 0};
    sigset_t none;

    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
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

static int spawn_decompressor(import_src *src, enum compression c, rc_error *err)
{
    static char *const argvs[][4] = {
        [COMP_GZIP] = {"gzip", "-dc", NULL},
        [COMP_ZSTD] = {"zstd", "-dcq", NULL},
        [COMP_XZ] = {"xz", "-dcq", NULL},
    };
    int in[2], out[2], errp[2];
    const char *path = find_tool(c);
    pid_t pid;

    if (!path)
        return rc_error_set(err, RC_ENOTFOUND, "%s is not installed (needed for a %s tarball)",
                            comp_names[c], comp_names[c]);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0)
        return rc_error_sys(err, RC_EIO, "socketpair");
    if (pipe2(out, O_CLOEXEC) < 0) {
        close(in[0]), close(in[1]);
        return rc_error_sys(err, RC_EIO, "pipe2");
    }
    if (pipe2(errp, O_CLOEXEC) < 0) {
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        return rc_error_sys(err, RC_EIO, "pipe2");
    }
    pid = fork();
    if (pid == 0)
        child_exec(path, argvs[c], in[1], out[1], errp[1]);
    close(in[1]), close(out[1]), close(errp[1]);
    if (pid < 0) {
        close(in[0]), close(out[0]), close(errp[0]);
        return rc_error_sys(err, RC_EIO, "cannot start %s", comp_names[c]);
    }
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    src->child = pid;
    src->tool = comp_names[c];
    src->to_child = in[0];
    src->from_child = out[0];
    src->err_child = errp[0];
    return 0;
}

/* Stop the child (its output past the end of the archive is not needed), then hash whatever of
 * the file it had not been given, into hex. Returns the child's exit status or -1. */
static int src_finish(import_src *src, char *hex, rc_error *err)
{
    int status = -1, rc;
    close_fd(&src->to_child);
    close_fd(&src->from_child);
    close_fd(&src->err_child);
    if (src->child > 0) {
        kill(src->child, SIGKILL);
        while (waitpid(src->child, &status, 0) < 0 && errno == EINTR)
            ;
        src->child = 0;
    }
    if ((rc = md_rest_of_file(src->md, src->file_fd, src->inbuf, err)) < 0)
        return rc;
    return md_final(src->md, hex, err);
}

static void src_done(import_src *src)
{
    close_fd(&src->to_child);
    close_fd(&src->from_child);
    close_fd(&src->err_child);
    if (src->child > 0) {
        kill(src->child, SIGKILL);
        while (waitpid(src->child, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    EVP_MD_CTX_free(src->md);
    free(src->inbuf);
}

/* ---- import ------------------------------------------------------------------------------- */

static int write_file_at(int dfd, const char *name, const char *text, rc_error *err)
{
    _cleanup_close_ int fd =
        openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n)
        return rc_error_sys(err, RC_EIO, "cannot write %s", name);
    return 0;
}

static int write_info(int dfd, const char *hex, const rc_tar_stats *st, enum compression c,
                      rc_error *err)
{
    char text[512];
    snprintf(text, sizeof text,
             "{\"digest\":\"sha256:%s\",\"imported_at\":%lld,\"bytes\":%llu,\"entries\":%llu,"
             "\"files\":%llu,\"dirs\":%llu,\"symlinks\":%llu,\"hardlinks\":%llu,"
             "\"skipped\":%llu,\"compression\":\"%s\"}\n",
             hex, (long long)time(NULL), (unsigned long long)st->bytes,
             (unsigned long long)st->entries, (unsigned long long)st->files,
             (unsigned long long)st->dirs, (unsigned long long)st->symlinks,
             (unsigned long long)st->hardlinks, (unsigned long long)st->skipped, comp_names[c]);
    return write_file_at(dfd, "info.json", text, err);
}

/* Extract fd (already hashed to hex) into tmpfd/rootfs and check the second hash. */
static int extract_into(rc_snapshot_store *s, int fd, const char *hex, int tmpfd,
                        enum compression c, rc_tar_stats *st, rc_error *err)
{
    import_src src = {.file_fd = fd, .to_child = -1, .from_child = -1, .err_child = -1};
    rc_tar_source tsrc = {.read = c == COMP_NONE ? plain_read : child_read, .ctx = &src};
    _cleanup_close_ int root = -1;
    char hex2[HEX + 1];
    int rc;

    if (mkdirat(tmpfd, "rootfs", 0700) < 0)
        return rc_error_sys(err, RC_EIO, "cannot create rootfs");
    root = openat(tmpfd, "rootfs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return rc_error_sys(err, RC_EIO, "cannot open rootfs");
    src.inbuf = malloc(IO_CHUNK);
    if (!src.inbuf || lseek(fd, 0, SEEK_SET) < 0 || md_new(&src.md, err) < 0) {
        src_done(&src);
        return rc_error_set(err, RC_EIO, "cannot start reading the tarball");
    }
    rc = c == COMP_NONE ? 0 : spawn_decompressor(&src, c, err);
    if (rc == 0)
        rc = rc_tar_extract(&tsrc, root, &s->limits, rc_snapshot_mountpoints,
                            rc_snapshot_n_mountpoints, st, err);
    if (rc < 0 && src.errlen > 0) {
        char ctx[220];
        snprintf(ctx, sizeof ctx, "%s said '%s'", src.tool, src.errtail);
        rc_error_wrap(err, -rc, ctx);
    }
    if (rc == 0 && (rc = src_finish(&src, hex2, err)) == 0 && strcmp(hex, hex2) != 0)
        rc = rc_error_set(err, RC_EIO, "the tarball changed while it was being imported");
    src_done(&src);
    return rc;
}

/* Build tmp/<hex>.XXXXXX completely, then rename it to sha256/<hex>. Caller holds the
 * exclusive lock and has checked the digest is absent. */
static int import_locked(rc_snapshot_store *s, int fd, const char *hex, rc_error *err)
{
    char path[PATH_MAX], tmprel[HEX + 32], final[HEX + 16];
    _cleanup_close_ int tmpfd = -1;
    enum compression c = COMP_NONE;
    rc_tar_stats st = {0};
    int rc = 0;

    if ((rc = detect_compression(fd, &c, err)) < 0)
        return rc;
    if (snprintf(path, sizeof path, "%s/tmp/%s.XXXXXX", s->dir, hex) >= (int)sizeof path)
        return rc_error_set(err, RC_ETOOBIG, "snapshot store path too long");
    if (!mkdtemp(path))
        return rc_error_sys(err, RC_EIO, "cannot create a temporary directory");
    snprintf(tmprel, sizeof tmprel, "tmp/%s", strrchr(path, '/') + 1);
    snprintf(final, sizeof final, "sha256/%s", hex);
    tmpfd = openat(s->fd, tmprel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tmpfd < 0)
        rc = rc_error_sys(err, RC_EIO, "cannot open the temporary directory");
    if (rc == 0)
        rc = extract_into(s, fd, hex, tmpfd, c, &st, err);
    if (rc == 0)
        rc = write_info(tmpfd, hex, &st, c, err);
    if (rc == 0)
        rc = write_file_at(tmpfd, "last-use", "", err);
    if (rc == 0 && fchmod(tmpfd, 0711) < 0)
        rc = rc_error_sys(err, RC_EIO, "cannot set the snapshot's mode");
    if (rc == 0 && syncfs(tmpfd) < 0) /* the tree is complete on disk before it has a name */
        rc = rc_error_sys(err, RC_EIO, "syncfs");
    if (rc == 0 && renameat2(s->fd, tmprel, s->fd, final, RENAME_NOREPLACE) < 0)
        rc = rc_error_sys(err, RC_EIO, "cannot move the snapshot into place");
    if (rc < 0) {
        rc_error ignored = {0};
        if (rc_tar_remove_tree(s->fd, tmprel, &ignored) < 0)
            rc_log_warn("snapshot: cannot remove %s: %s", tmprel, ignored.msg);
        return rc;
    }
    rc_log_info("snapshot: imported sha256:%s (%llu entries, %llu bytes, %s)", hex,
                (unsigned long long)st.entries, (unsigned long long)st.bytes, comp_names[c]);
    return 0;
}

static int touch_hex(rc_snapshot_store *s, const char *hex, rc_error *err)
{
    char rel[HEX + 24];
    snprintf(rel, sizeof rel, "sha256/%s/last-use", hex);
    if (utimensat(s->fd, rel, NULL, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return rc_error_set(err, RC_ENOTFOUND, "snapshot sha256:%s is not imported", hex);
        return rc_error_sys(err, RC_EIO, "cannot record the use of a snapshot");
    }
    return 0;
}

int rc_snapshot_import(rc_snapshot_store *s, const char *tarball_path, char *ret_digest,
                       rc_error *err)
{
    _cleanup_close_ int fd = -1;
    char hex[HEX + 1];
    struct stat st;
    int lfd = -1, rc;

    fd = open(tarball_path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "cannot open %s", tarball_path);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "%s is not a regular file", tarball_path);
    if ((rc = hash_file(fd, hex, err)) < 0)
        return rc;
    if ((rc = lock_digest(s, hex, LOCK_SH, &lfd, err)) < 0)
        return rc;
    if (!snapshot_exists(s, hex)) {
        close(lfd);
        if ((rc = lock_digest(s, hex, LOCK_EX, &lfd, err)) < 0)
            return rc;
        if (!snapshot_exists(s, hex) && (rc = import_locked(s, fd, hex, err)) < 0) {
            unlock_forget(s, hex, lfd);
            return rc_error_wrap(err, RC_EINVAL, "snapshot import failed");
        }
    }
    rc = touch_hex(s, hex, err);
    close(lfd);
    if (rc < 0)
        return rc;
    if (ret_digest)
        snprintf(ret_digest, RC_SNAPSHOT_DIGEST_SIZE, "sha256:%s", hex);
    return 0;
}

/* ---- queries ------------------------------------------------------------------------------ */

int rc_snapshot_rootfs_path(rc_snapshot_store *s, const char *digest, char *buf, size_t bufsz,
                            rc_error *err)
{
    char hex[HEX + 1];
    int rc = digest_hex(digest, hex, err), n;
    if (rc < 0)
        return rc;
    if (!snapshot_exists(s, hex))
        return rc_error_set(err, RC_ENOTFOUND, "snapshot sha256:%s is not imported", hex);
    n = snprintf(buf, bufsz, "%s/sha256/%s/rootfs", s->dir, hex);
    if (n < 0 || (size_t)n >= bufsz)
        return rc_error_set(err, RC_ETOOBIG, "rootfs path does not fit in %zu bytes", bufsz);
    return 0;
}

int rc_snapshot_touch(rc_snapshot_store *s, const char *digest, rc_error *err)
{
    char hex[HEX + 1];
    int lfd, rc = digest_hex(digest, hex, err);
    if (rc < 0)
        return rc;
    if ((rc = lock_digest(s, hex, LOCK_SH, &lfd, err)) < 0)
        return rc;
    rc = touch_hex(s, hex, err);
    if (rc < 0)
        unlock_forget(s, hex, lfd); /* a shared lock: the file goes only if nothing exists */
    else
        close(lfd);
    return rc;
}

int rc_snapshot_hold(rc_snapshot_store *s, const char *digest, int *ret_fd, rc_error *err)
{
    char hex[HEX + 1];
    int lfd, rc = digest_hex(digest, hex, err);
    if (rc < 0)
        return rc;
    if ((rc = lock_digest(s, hex, LOCK_SH, &lfd, err)) < 0)
        return rc;
    if ((rc = touch_hex(s, hex, err)) < 0) {
        unlock_forget(s, hex, lfd);
        return rc;
    }
    *ret_fd = lfd;
    return 0;
}

static int64_t mtime_of(int dfd, const char *rel)
{
    struct stat st;
    if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    return (int64_t)st.st_mtim.tv_sec;
}

static void read_info(const rc_snapshot_store *s, const char *hex, rc_snapshot_info *out)
{
    char rel[HEX + 24], text[1024];
    _cleanup_json_ cJSON *j = NULL;
    _cleanup_close_ int fd = -1;
    int64_t v;
    ssize_t n;

    snprintf(rel, sizeof rel, "sha256/%s/info.json", hex);
    fd = openat(s->fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || (n = read(fd, text, sizeof text)) <= 0 ||
        rc_json_parse(text, (size_t)n, NULL, &j, NULL) < 0)
        return;
    if (rc_json_get_int64(j, "imported_at", &v, NULL) == 0)
        out->imported_at = v;
    if (rc_json_get_int64(j, "bytes", &v, NULL) == 0 && v >= 0)
        out->bytes = (uint64_t)v;
    if (rc_json_get_int64(j, "entries", &v, NULL) == 0 && v >= 0)
        out->entries = (uint64_t)v;
}

static void describe(const rc_snapshot_store *s, const char *hex, rc_snapshot_info *out)
{
    char rel[HEX + 24];
    int lfd;
    *out = (rc_snapshot_info){0};
    snprintf(out->digest, sizeof out->digest, "sha256:%s", hex);
    snprintf(rel, sizeof rel, "sha256/%s", hex);
    out->imported_at = mtime_of(s->fd, rel);
    read_info(s, hex, out);
    snprintf(rel, sizeof rel, "sha256/%s/last-use", hex);
    out->last_used_at = mtime_of(s->fd, rel);
    if (out->last_used_at < 0) /* no last-use file: the import is the last use */
        out->last_used_at = out->imported_at;
    if (lock_digest(s, hex, LOCK_EX | LOCK_NB, &lfd, NULL) == 0)
        close(lfd);
    else
        out->held = 1;
}

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const rc_snapshot_info *)a)->digest, ((const rc_snapshot_info *)b)->digest);
}

/* The hex names under sha256/, in a fresh array of HEX+1 strings. */
static int list_hex(rc_snapshot_store *s, char (**ret)[HEX + 1], size_t *ret_n, rc_error *err)
{
    _cleanup_close_ int dfd = openat(s->fd, "sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_(closedirp) DIR *d = NULL;
    _cleanup_free_ char(*names)[HEX + 1] = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;

    if (dfd < 0)
        return rc_error_sys(err, RC_EIO, "cannot open the snapshot store");
    d = fdopendir(dfd);
    if (!d)
        return rc_error_sys(err, RC_EIO, "cannot read the snapshot store");
    dfd = -1;
    while ((de = readdir(d))) {
        if (!is_hex_digest(de->d_name))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            void *p = realloc(names, ncap * sizeof *names);
            if (!p)
                return rc_error_set(err, RC_ENOMEM, "out of memory");
            names = p;
            cap = ncap;
        }
        memcpy(names[n++], de->d_name, HEX + 1);
    }
    *ret = take_ptr(names);
    *ret_n = n;
    return 0;
}

int rc_snapshot_list(rc_snapshot_store *s, rc_snapshot_info **ret_items, size_t *ret_n,
                     rc_error *err)
{
    _cleanup_free_ char(*names)[HEX + 1] = NULL;
    _cleanup_free_ rc_snapshot_info *items = NULL;
    size_t n = 0;
    int rc = list_hex(s, &names, &n, err);
    if (rc < 0)
        return rc;
    if (n > 0) {
        items = calloc(n, sizeof *items);
        if (!items)
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            describe(s, names[i], &items[i]);
        qsort(items, n, sizeof *items, info_cmp);
    }
    *ret_items = take_ptr(items);
    *ret_n = n;
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* ---- prune -------------------------------------------------------------------------------- */

/* Remove one snapshot if unheld and idle; 1 removed, 0 kept, negative on error. */
static int prune_one(rc_snapshot_store *s, const char *hex, int64_t cutoff, rc_error *err)
{
    char rel[HEX + 24], gone[HEX + 24];
    rc_snapshot_info info;
    rc_error ignored = {0};
    int lfd, rc;

    rc = lock_digest(s, hex, LOCK_EX | LOCK_NB, &lfd, err);
    if (rc == -RC_ECANCELED)
        return 0; /* held by a session (or being imported) */
    if (rc < 0)
        return rc;
    describe(s, hex, &info); /* re-read under the lock */
    if (!snapshot_exists(s, hex) || info.last_used_at > cutoff) {
        close(lfd);
        return 0;
    }
    /* Renamed out of sha256/ first: it disappears at once, then is deleted at leisure; the
     * exclusive lock is kept until the end so a concurrent import waits and re-extracts. */
    snprintf(rel, sizeof rel, "sha256/%s", hex);
    snprintf(gone, sizeof gone, "tmp/%s.pruned", hex);
    rc = rc_tar_remove_tree(s->fd, gone, err); /* a leftover of a crashed prune */
    if (rc == 0 && renameat(s->fd, rel, s->fd, gone) < 0)
        rc = rc_error_sys(err, RC_EIO, "cannot move sha256:%s out of the store", hex);
    if (rc == 0 && rc_tar_remove_tree(s->fd, gone, &ignored) < 0)
        rc_log_warn("snapshot: cannot remove %s: %s (removed at the next prune)", gone,
                    ignored.msg);
    unlock_forget(s, hex, lfd);
    if (rc < 0)
        return rc;
    rc_log_info("snapshot: pruned sha256:%s", hex);
    return 1;
}

int rc_snapshot_prune(rc_snapshot_store *s, int64_t older_than_s, rc_error *err)
{
    _cleanup_free_ char(*names)[HEX + 1] = NULL;
    size_t n = 0;
    int removed = 0, rc;
    int64_t cutoff;

    if (older_than_s < 0)
        return rc_error_set(err, RC_EINVAL, "prune age must not be negative");
    cutoff = (int64_t)time(NULL) - older_than_s;
    if ((rc = list_hex(s, &names, &n, err)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        rc = prune_one(s, names[i], cutoff, err);
        if (rc < 0)
            return rc;
        removed += rc;
    }
    sweep_tmp(s);
    return removed;
}
