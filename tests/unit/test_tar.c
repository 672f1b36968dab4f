/* test_tar.c - the tar reader, the safe extractor and the snapshot store (oci/tar.h,
 * oci/snapshot.h).
 *
 * The malicious corpus is built here, header by header (tb_* below writes raw 512-byte blocks
 * with whatever fields a test wants, checksums included or deliberately wrong), so every rule
 * has an archive that tries to break it. Each corpus archive is extracted into sandbox/root next
 * to sandbox/outside, whose absolute path the archives aim at; a test passes when the extraction
 * fails (or skips the entry) AND outside is byte-for-byte unchanged AND, imported through the
 * snapshot store, the store's listing is unchanged (no partial snapshot, no lock file). Then
 * real-world archives (GNU tar in gnu, posix and ustar formats; gzip, zstd, xz) check that
 * honest input still extracts exactly, and the store's import/list/touch/hold/prune contract and
 * its concurrency (one extraction for many concurrent importers) are checked. */
#include "harness.h"

#include "buf.h"
#include "cleanup.h"
#include "log.h"
#include "snapshot.h"
#include "tar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* ---- raw tar builder ---------------------------------------------------------------------- */

typedef struct hdr {
    const char *name;
    char type;
    uint64_t size;
    unsigned mode;
    const char *link;
    unsigned uid, gid;
    long long mtime;
    const char *prefix;
    bool nul_type;                 /* typeflag NUL (old-style regular file) */
    bool gnu;                      /* "ustar  \0" magic instead of "ustar\0" "00" */
    bool bad_checksum;             /* store checksum + 1 */
    const unsigned char *raw_size; /* 12 bytes written verbatim into the size field */
    const char *magic;             /* 8 bytes written verbatim into magic+version */
} hdr;

static void put_octal(unsigned char *f, size_t len, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%0*llo", (int)len - 1, (unsigned long long)v);
    memcpy(f, tmp, len - 1);
    f[len - 1] = '\0';
}

static void tb_block(rc_buf *b, const unsigned char *blk)
{
    REQUIRE(rc_buf_append(b, blk, 512, NULL) == 0);
}

static void tb_header(rc_buf *b, const hdr *h)
{
    unsigned char blk[512] = {0};
    unsigned sum = 0;
    strncpy((char *)blk, h->name, 100);
    put_octal(blk + 100, 8, h->mode ? h->mode : 0644);
    put_octal(blk + 108, 8, h->uid);
    put_octal(blk + 116, 8, h->gid);
    if (h->raw_size)
        memcpy(blk + 124, h->raw_size, 12);
    else
        put_octal(blk + 124, 12, h->size);
    put_octal(blk + 136, 12, (uint64_t)(h->mtime ? h->mtime : 1700000000));
    blk[156] = h->nul_type ? 0 : (unsigned char)(h->type ? h->type : '0');
    if (h->link)
        strncpy((char *)blk + 157, h->link, 100);
    memcpy(blk + 257,
           h->magic ? h->magic
           : h->gnu ? "ustar  \0"
                    : "ustar\0"
                      "00",
           8);
    if (h->prefix)
        strncpy((char *)blk + 345, h->prefix, 155);
    memset(blk + 148, ' ', 8);
    for (int i = 0; i < 512; i++)
        sum += blk[i];
    if (h->bad_checksum)
        sum++;
    snprintf((char *)blk + 148, 8, "%06o", sum);
    blk[155] = ' ';
    tb_block(b, blk);
}

static void tb_data(rc_buf *b, const void *p, size_t n)
{
    static const unsigned char zero[512];
    REQUIRE(rc_buf_append(b, p, n, NULL) == 0);
    if (n % 512)
        REQUIRE(rc_buf_append(b, zero, 512 - n % 512, NULL) == 0);
}

static void tb_end(rc_buf *b)
{
    static const unsigned char zero[512];
    tb_block(b, zero);
    tb_block(b, zero);
}

static void tb_file(rc_buf *b, const char *name, const char *content, unsigned mode)
{
    size_t n = strlen(content);
    tb_header(b, &(hdr){.name = name, .type = '0', .size = n, .mode = mode});
    tb_data(b, content, n);
}

static void tb_dir(rc_buf *b, const char *name, unsigned mode)
{
    tb_header(b, &(hdr){.name = name, .type = '5', .mode = mode ? mode : 0755});
}

static void tb_link(rc_buf *b, char type, const char *name, const char *target)
{
    tb_header(b, &(hdr){.name = name, .type = type, .link = target, .mode = 0777});
}

/* A pax 'x' header with one record key=value (value may hold NULs: vlen). */
static void tb_pax_n(rc_buf *b, char type, const char *key, const char *value, size_t vlen)
{
    _cleanup_(rc_buf_free) rc_buf rec = RC_BUF_INIT(1 << 24);
    size_t base = strlen(key) + vlen + 3, len = base;
    char num[32];
    /* The length counts its own digits. */
    for (int i = 0; i < 3; i++)
        len = base + (size_t)snprintf(num, sizeof num, "%zu", len);
    REQUIRE(rc_buf_appendf(&rec, NULL, "%zu %s=", len, key) == 0);
    REQUIRE(rc_buf_append(&rec, value, vlen, NULL) == 0);
    REQUIRE(rc_buf_putc(&rec, '\n', NULL) == 0);
    REQUIRE(rec.len == len);
    tb_header(b, &(hdr){.name = "PaxHeaders/x", .type = type, .size = rec.len});
    tb_data(b, rec.data, rec.len);
}

static void tb_pax(rc_buf *b, const char *key, const char *value)
{
    tb_pax_n(b, 'x', key, value, strlen(value));
}

/* GNU 'L' or 'K' record (the name plus its NUL, like GNU tar writes). */
static void tb_gnu_long_n(rc_buf *b, char type, const char *name, size_t n)
{
    tb_header(b, &(hdr){.name = "././@LongLink", .type = type, .size = n, .gnu = true});
    tb_data(b, name, n);
}

static void tb_gnu_long(rc_buf *b, char type, const char *name)
{
    tb_gnu_long_n(b, type, name, strlen(name) + 1);
}

/* ---- sources and sandboxes ---------------------------------------------------------------- */

typedef struct memsrc {
    const unsigned char *p;
    size_t len, off, chunk;
} memsrc;

static int mem_read(void *ctx, void *buf, size_t n, rc_error *err)
{
    memsrc *m = ctx;
    (void)err;
    if (n > m->len - m->off)
        n = m->len - m->off;
    if (m->chunk && n > m->chunk)
        n = m->chunk;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (int)n;
}

typedef struct sandbox {
    char dir[PATH_MAX], root[PATH_MAX + 8], outside[PATH_MAX + 8], store[PATH_MAX + 8];
} sandbox;

static bool write_text(const char *path, const char *text)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t n = strlen(text);
    return fd >= 0 && write(fd, text, n) == (ssize_t)n;
}

static bool sb_init(sandbox *sb)
{
    char tmpl[] = "/tmp/rc-tar-XXXXXX";
    if (!mkdtemp(tmpl))
        return false;
    snprintf(sb->dir, sizeof sb->dir, "%s", tmpl);
    snprintf(sb->root, sizeof sb->root, "%s/root", tmpl);
    snprintf(sb->outside, sizeof sb->outside, "%s/outside", tmpl);
    snprintf(sb->store, sizeof sb->store, "%s/store", tmpl);
    if (mkdir(sb->root, 0755) < 0 || mkdir(sb->outside, 0755) < 0)
        return false;
    char t[PATH_MAX + 32];
    snprintf(t, sizeof t, "%s/target", sb->outside);
    return write_text(t, "original\n");
}

static void sb_free(sandbox *sb)
{
    if (sb->dir[0])
        rc_tar_remove_tree(AT_FDCWD, sb->dir, NULL);
}

/* outside/ holds exactly "target" = "original\n", and the sandbox only root, outside, store. */
static bool sb_outside_intact(const sandbox *sb)
{
    char t[PATH_MAX + 32], buf[64] = {0};
    struct dirent *de;
    int n = 0;
    DIR *d = opendir(sb->outside);
    if (!d)
        return false;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    if (n != 1)
        return false;
    snprintf(t, sizeof t, "%s/target", sb->outside);
    _cleanup_close_ int fd = open(t, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || read(fd, buf, sizeof buf - 1) != 9 || strcmp(buf, "original\n") != 0 ||
        fstat(fd, &st) < 0 || st.st_nlink != 1 || (st.st_mode & 07777) != 0644)
        return false;
    d = opendir(sb->dir);
    n = 0;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && strcmp(de->d_name, "root") && strcmp(de->d_name, "outside") &&
            strcmp(de->d_name, "store") && strcmp(de->d_name, "in.tar"))
            n++;
    if (d)
        closedir(d);
    return n == 0;
}

static int extract_buf_lim(const sandbox *sb, const rc_buf *b, const rc_tar_limits *lim,
                           rc_tar_stats *st, rc_error *err)
{
    memsrc m = {.p = (const unsigned char *)b->data, .len = b->len, .chunk = 1000};
    rc_tar_source src = {.read = mem_read, .ctx = &m};
    _cleanup_close_ int fd = open(sb->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -RC_EIO;
    return rc_tar_extract(&src, fd, lim, rc_snapshot_mountpoints, rc_snapshot_n_mountpoints, st,
                          err);
}

static int extract_buf(const sandbox *sb, const rc_buf *b, rc_error *err)
{
    return extract_buf_lim(sb, b, NULL, NULL, err);
}

static bool root_has(const sandbox *sb, const char *rel, struct stat *st)
{
    char p[PATH_MAX * 2];
    struct stat tmp;
    snprintf(p, sizeof p, "%s/%s", sb->root, rel);
    return lstat(p, st ? st : &tmp) == 0;
}

static bool root_file_is(const sandbox *sb, const char *rel, const char *content)
{
    char p[PATH_MAX * 2], buf[256] = {0};
    snprintf(p, sizeof p, "%s/%s", sb->root, rel);
    _cleanup_close_ int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    return n >= 0 && strcmp(buf, content) == 0;
}

/* Recursive listing of a directory (names, types, modes, sizes) as one string, for "unchanged". */
static void listing(rc_buf *out, int dfd, const char *prefix)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;
    char *names[512];
    int n = 0;
    if (!d)
        return;
    while ((de = readdir(d)) && n < 512)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            names[n++] = strdup(de->d_name);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
            rc_buf_appendf(out, NULL, "%s/%s %o %lld\n", prefix, names[i], st.st_mode,
                           S_ISDIR(st.st_mode) ? 0LL : (long long)st.st_size);
            if (S_ISDIR(st.st_mode)) {
                int c = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                char sub[PATH_MAX];
                snprintf(sub, sizeof sub, "%s/%s", prefix, names[i]);
                if (c >= 0)
                    listing(out, c, sub);
            }
        }
        free(names[i]);
    }
    closedir(d);
}

static void store_listing(const char *store, rc_buf *out)
{
    int fd = open(store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc_buf_reset(out);
    if (fd >= 0)
        listing(out, fd, "");
}

static bool write_buf(const char *path, const rc_buf *b)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    return fd >= 0 && write(fd, b->data, b->len) == (ssize_t)b->len;
}

/* ---- the malicious corpus ----------------------------------------------------------------- */

typedef struct corpus_case {
    const char *name;
    void (*build)(rc_buf *b, const sandbox *sb);
    bool must_fail; /* false: extraction succeeds but the entry is skipped/neutralised */
    void (*check)(const sandbox *sb); /* extra checks after a successful extraction */
    rc_tar_limits lim;
    const char *expect; /* a must_fail case's error names the rule it broke */
} corpus_case;

static char *outside_path(const sandbox *sb, const char *rel)
{
    static char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", sb->outside, rel);
    return p;
}

static void c_abs_path(rc_buf *b, const sandbox *sb)
{
    tb_file(b, outside_path(sb, "pwned"), "x", 0644);
    tb_end(b);
}
static void c_abs_path_etc(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_file(b, "/etc/rc-tar-pwned", "x", 0644);
    tb_end(b);
}
static void c_dotdot(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_file(b, "../outside/pwned", "x", 0644);
    tb_end(b);
}
static void c_dotdot_middle(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_dir(b, "a", 0);
    tb_file(b, "a/../../outside/pwned", "x", 0644);
    tb_end(b);
}
static void c_symlink_then_file(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_link(b, '2', "l", "../outside");
    tb_file(b, "l/pwned", "x", 0644);
    tb_end(b);
}
static void c_abs_symlink_then_file(rc_buf *b, const sandbox *sb)
{
    tb_link(b, '2', "l", sb->outside);
    tb_file(b, "l/pwned", "x", 0644);
    tb_end(b);
}
static void c_symlink_then_overwrite(rc_buf *b, const sandbox *sb)
{
    /* A symlink to a file outside, then a regular entry of the same name: the symlink must be
     * replaced, never written through. */
    tb_link(b, '2', "t", outside_path(sb, "target"));
    tb_file(b, "t", "pwned\n", 0644);
    tb_end(b);
}
static void chk_symlink_replaced(const sandbox *sb)
{
    struct stat st;
    CHECK(root_has(sb, "t", &st) && S_ISREG(st.st_mode));
    CHECK(root_file_is(sb, "t", "pwned\n"));
}
static void c_symlink_etc_then_hardlink(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_link(b, '2', "etc", "/etc");
    tb_link(b, '1', "passwd", "etc/passwd");
    tb_end(b);
}
static void c_hardlink_outside(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_link(b, '1', "h", "../outside/target");
    tb_end(b);
}
static void c_hardlink_abs(rc_buf *b, const sandbox *sb)
{
    tb_link(b, '1', "h", outside_path(sb, "target"));
    tb_end(b);
}
static void c_hardlink_to_symlink(rc_buf *b, const sandbox *sb)
{
    tb_link(b, '2', "s", outside_path(sb, "target"));
    tb_link(b, '1', "h", "s");
    tb_file(b, "h", "pwned\n", 0644);
    tb_end(b);
}
static void c_hardlink_to_dir(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_dir(b, "d", 0);
    tb_link(b, '1', "h", "d");
    tb_end(b);
}
static void c_hardlink_missing(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_link(b, '1', "h", "nothere");
    tb_end(b);
}
static void c_hardlink_self(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_file(b, "a", "x", 0644);
    tb_link(b, '1', "a", "a");
    tb_end(b);
}
static void c_hardlink_then_overwrite(rc_buf *b, const sandbox *sb)
{
    /* h is a hardlink to a; a later regular entry h replaces h and must leave a alone. */
    (void)sb;
    tb_file(b, "a", "original a\n", 0644);
    tb_link(b, '1', "h", "a");
    tb_file(b, "h", "new h\n", 0644);
    tb_end(b);
}
static void chk_hardlink_overwrite(const sandbox *sb)
{
    CHECK(root_file_is(sb, "a", "original a\n"));
    CHECK(root_file_is(sb, "h", "new h\n"));
}
static void c_char_device(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_header(b, &(hdr){.name = "dev/mem2", .type = '3', .mode = 0666});
    tb_header(b, &(hdr){.name = "sda", .type = '4', .mode = 0666});
    tb_end(b);
}
static void chk_no_devices(const sandbox *sb)
{
    CHECK(!root_has(sb, "dev/mem2", NULL));
    CHECK(!root_has(sb, "sda", NULL));
}
static void c_fifo(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_header(b, &(hdr){.name = "fifo", .type = '6', .mode = 0666});
    tb_header(b, &(hdr){.name = "weird", .type = 'Z', .size = 3});
    tb_data(b, "abc", 3);
    tb_end(b);
}
static void chk_no_fifo(const sandbox *sb)
{
    CHECK(!root_has(sb, "fifo", NULL));
    CHECK(!root_has(sb, "weird", NULL));
}
static void c_setuid(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_file(b, "suid", "#!/bin/sh\n", 04755);
    tb_file(b, "sgid", "x", 02777);
    tb_dir(b, "sticky", 01777);
    tb_end(b);
}
static void chk_setuid(const sandbox *sb)
{
    struct stat st;
    CHECK(root_has(sb, "suid", &st) && (st.st_mode & 07777) == 0755);
    CHECK(root_has(sb, "sgid", &st) && (st.st_mode & 07777) == 0755);
    CHECK(root_has(sb, "sticky", &st) && (st.st_mode & 07777) == 0555);
}
static void c_xattr_capability(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_pax(b, "SCHILY.xattr.security.capability", "\x01\x00\x00\x02\xff\xff\xff\xff");
    tb_file(b, "cap", "x", 0755);
    tb_end(b);
}
static void chk_no_xattr(const sandbox *sb)
{
    char p[PATH_MAX * 2], v[64];
    snprintf(p, sizeof p, "%s/cap", sb->root);
    CHECK(root_has(sb, "cap", NULL));
    CHECK(lgetxattr(p, "security.capability", v, sizeof v) < 0);
}
static void c_huge_size(rc_buf *b, const sandbox *sb)
{
    /* 1 TiB in base-256, then nothing: refused on the declared size, before reading data. */
    static const unsigned char sz[12] = {0x80, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0};
    (void)sb;
    tb_header(b, &(hdr){.name = "big", .type = '0', .raw_size = sz});
    tb_end(b);
}
static void c_negative_size(rc_buf *b, const sandbox *sb)
{
    static const unsigned char sz[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xfe};
    (void)sb;
    tb_header(b, &(hdr){.name = "neg", .type = '0', .raw_size = sz});
    tb_end(b);
}
static void c_overflow_size(rc_buf *b, const sandbox *sb)
{
    static const unsigned char sz[12] = {0x80, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    (void)sb;
    tb_header(b, &(hdr){.name = "ovf", .type = '0', .raw_size = sz});
    tb_end(b);
}
static void c_garbage_size(rc_buf *b, const sandbox *sb)
{
    static const unsigned char sz[12] = "0000001x000";
    (void)sb;
    tb_header(b, &(hdr){.name = "g", .type = '0', .raw_size = sz});
    tb_end(b);
}
static void c_pax_size_overflow(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_pax(b, "size", "99999999999999999999999");
    tb_file(b, "f", "", 0644);
    tb_end(b);
}
static void c_truncated(rc_buf *b, const sandbox *sb)
{
    char data[512];
    (void)sb;
    memset(data, 'a', sizeof data);
    tb_header(b, &(hdr){.name = "f", .type = '0', .size = 2000});
    REQUIRE(rc_buf_append(b, data, sizeof data, NULL) == 0);
}
static void c_no_end_marker(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_file(b, "f", "x", 0644);
}
static void c_bad_checksum(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_header(b, &(hdr){.name = "f", .type = '0', .size = 0, .bad_checksum = true});
    tb_end(b);
}
static void c_bad_magic(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_header(b, &(hdr){.name = "f", .type = '0', .magic = "notatar\0"});
    tb_end(b);
}
static void c_pax_path_escape(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_pax(b, "path", "../../outside/pwned");
    tb_file(b, "innocent", "x", 0644);
    tb_end(b);
}
static void c_pax_long_path_escape(rc_buf *b, const sandbox *sb)
{
    char p[1200];
    size_t o = 0;
    (void)sb;
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(p + o, sizeof p - o, "d%d/", i);
    for (int i = 0; i < 101; i++)
        o += (size_t)snprintf(p + o, sizeof p - o, "../");
    snprintf(p + o, sizeof p - o, "outside/pwned");
    tb_pax(b, "path", p);
    tb_file(b, "innocent", "x", 0644);
    tb_end(b);
}
static void c_pax_linkpath_escape(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_pax(b, "linkpath", "../outside/target");
    tb_link(b, '1', "h", "innocent");
    tb_end(b);
}
static void c_gnu_longname_escape(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_gnu_long(b, 'L', "../outside/pwned");
    tb_header(b, &(hdr){.name = "innocent", .type = '0', .size = 1, .gnu = true});
    tb_data(b, "x", 1);
    tb_end(b);
}
static void c_gnu_longlink_escape(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_gnu_long(b, 'K', "../outside/target");
    tb_header(b, &(hdr){.name = "h", .type = '1', .link = "innocent", .gnu = true});
    tb_end(b);
}
static void c_too_many_entries(rc_buf *b, const sandbox *sb)
{
    char n[32];
    (void)sb;
    for (int i = 0; i < 11; i++) {
        snprintf(n, sizeof n, "f%d", i);
        tb_file(b, n, "x", 0644);
    }
    tb_end(b);
}
static void c_path_too_long(rc_buf *b, const sandbox *sb)
{
    char p[5001];
    (void)sb;
    for (int i = 0; i < 5000; i++)
        p[i] = i % 100 == 99 ? '/' : 'a';
    p[5000] = '\0';
    tb_pax(b, "path", p);
    tb_file(b, "x", "x", 0644);
    tb_end(b);
}
static void c_too_deep(rc_buf *b, const sandbox *sb)
{
    char p[1000];
    size_t o = 0;
    (void)sb;
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(p + o, sizeof p - o, "a/");
    snprintf(p + o, sizeof p - o, "f");
    tb_pax(b, "path", p);
    tb_file(b, "x", "x", 0644);
    tb_end(b);
}
static void c_component_too_long(rc_buf *b, const sandbox *sb)
{
    char p[300];
    (void)sb;
    memset(p, 'c', 299);
    p[299] = '\0';
    tb_gnu_long(b, 'L', p);
    tb_header(b, &(hdr){.name = "x", .type = '0', .gnu = true});
    tb_end(b);
}
static void c_symlink_replaced_by_dir(rc_buf *b, const sandbox *sb)
{
    tb_link(b, '2', "d", sb->outside);
    tb_dir(b, "d", 0);
    tb_file(b, "d/x", "inside\n", 0644);
    tb_end(b);
}
static void chk_symlink_replaced_by_dir(const sandbox *sb)
{
    struct stat st;
    CHECK(root_has(sb, "d", &st) && S_ISDIR(st.st_mode));
    CHECK(root_file_is(sb, "d/x", "inside\n"));
}
static void c_dir_replaced_by_symlink(rc_buf *b, const sandbox *sb)
{
    tb_dir(b, "d", 0);
    tb_link(b, '2', "d", sb->outside);
    tb_file(b, "d/pwned", "x", 0644);
    tb_end(b);
}
static void c_dir_replaced_by_file(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_dir(b, "d", 0);
    tb_file(b, "d", "x", 0644);
    tb_end(b);
}
static void c_file_as_parent(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_file(b, "f", "x", 0644);
    tb_file(b, "f/x", "x", 0644);
    tb_end(b);
}
static void c_symlink_loop(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_link(b, '2', "a", "a");
    tb_file(b, "a/x", "x", 0644);
    tb_end(b);
}
static void c_nul_in_pax_path(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_pax_n(b, 'x', "path", "safe\0../../outside/pwned", 24);
    tb_file(b, "x", "x", 0644);
    tb_end(b);
}
static void c_nul_in_gnu_longname(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_gnu_long_n(b, 'L', "safe\0../outside/pwned", 22);
    tb_header(b, &(hdr){.name = "x", .type = '0', .gnu = true});
    tb_end(b);
}
static void c_pax_without_entry(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_pax(b, "path", "x");
    tb_end(b);
}
static void c_pax_too_big(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_header(b, &(hdr){.name = "PaxHeaders/x", .type = 'x', .size = 2u << 20});
    tb_end(b);
}
static void c_pax_malformed(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_header(b, &(hdr){.name = "PaxHeaders/x", .type = 'x', .size = 12});
    tb_data(b, "99 path=abc\n", 12);
    tb_file(b, "x", "x", 0644);
    tb_end(b);
}
static void c_sparse(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_header(b, &(hdr){.name = "s", .type = 'S', .gnu = true});
    tb_end(b);
}
static void c_pax_sparse(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_pax(b, "GNU.sparse.major", "1");
    tb_file(b, "s", "x", 0644);
    tb_end(b);
}
static void c_total_cap(rc_buf *b, const sandbox *sb)
{
    char data[600];
    (void)sb;
    memset(data, 'z', sizeof data);
    data[599] = '\0';
    tb_file(b, "a", data, 0644);
    tb_file(b, "b", data, 0644);
    tb_end(b);
}
static void c_file_cap(rc_buf *b, const sandbox *sb)
{
    char data[2000];
    (void)sb;
    memset(data, 'z', sizeof data);
    data[1999] = '\0';
    tb_file(b, "a", data, 0644);
    tb_end(b);
}
static void c_bad_uid(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_pax(b, "uid", "4294967295");
    tb_file(b, "u", "x", 0644);
    tb_end(b);
}
static void c_mountpoint_symlinks(rc_buf *b, const sandbox *sb)
{
    /* Mount points the archive made symlinks or files: replaced by real directories. */
    tb_link(b, '2', "proc", sb->outside);
    tb_link(b, '2', "run", "../outside");
    tb_file(b, "tmp", "x", 0644);
    tb_end(b);
}
static void chk_mountpoints(const sandbox *sb)
{
    struct stat st;
    CHECK(root_has(sb, "proc", &st) && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0555);
    CHECK(root_has(sb, "run", &st) && S_ISDIR(st.st_mode));
    CHECK(root_has(sb, "run/runcell", &st) && S_ISDIR(st.st_mode));
    CHECK(root_has(sb, "tmp", &st) && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 01777);
}
static void c_hardlink_via_symlink_dir(rc_buf *b, const sandbox *sb)
{
    tb_link(b, '2', "o", sb->outside);
    tb_link(b, '1', "h", "o/target");
    tb_end(b);
}
static void c_root_entry_then_escape(rc_buf *b, const sandbox *sb)
{
    (void)sb;
    tb_dir(b, "./", 0777);
    tb_dir(b, ".", 0777);
    tb_file(b, "./../outside/pwned", "x", 0644);
    tb_end(b);
}

static const corpus_case corpus[] = {
    {.name = "absolute_path",
     .build = c_abs_path,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "absolute path"},
    {.name = "absolute_path_etc",
     .build = c_abs_path_etc,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "absolute path"},
    {.name = "dotdot",
     .build = c_dotdot,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "dotdot_middle",
     .build = c_dotdot_middle,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "root_entry_then_dotdot",
     .build = c_root_entry_then_escape,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "symlink_then_file_through_it",
     .build = c_symlink_then_file,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "symlink"},
    {.name = "abs_symlink_then_file_through_it",
     .build = c_abs_symlink_then_file,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "symlink"},
    {.name = "symlink_then_same_name_file",
     .build = c_symlink_then_overwrite,
     .must_fail = false,
     .check = chk_symlink_replaced,
     .lim = {0},
     .expect = NULL},
    {.name = "symlink_etc_then_hardlink",
     .build = c_symlink_etc_then_hardlink,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "symlink"},
    {.name = "hardlink_outside",
     .build = c_hardlink_outside,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "hardlink_absolute",
     .build = c_hardlink_abs,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "absolute path"},
    {.name = "hardlink_to_symlink",
     .build = c_hardlink_to_symlink,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "not point to a regular file"},
    {.name = "hardlink_through_symlink_dir",
     .build = c_hardlink_via_symlink_dir,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "symlink"},
    {.name = "hardlink_to_dir",
     .build = c_hardlink_to_dir,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "not point to a regular file"},
    {.name = "hardlink_missing",
     .build = c_hardlink_missing,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "not point to a regular file"},
    {.name = "hardlink_self",
     .build = c_hardlink_self,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "points to itself"},
    {.name = "hardlink_then_overwrite",
     .build = c_hardlink_then_overwrite,
     .must_fail = false,
     .check = chk_hardlink_overwrite,
     .lim = {0},
     .expect = NULL},
    {.name = "device_nodes_skipped",
     .build = c_char_device,
     .must_fail = false,
     .check = chk_no_devices,
     .lim = {0},
     .expect = NULL},
    {.name = "fifo_and_unknown_skipped",
     .build = c_fifo,
     .must_fail = false,
     .check = chk_no_fifo,
     .lim = {0},
     .expect = NULL},
    {.name = "setuid_setgid_sticky_dropped",
     .build = c_setuid,
     .must_fail = false,
     .check = chk_setuid,
     .lim = {0},
     .expect = NULL},
    {.name = "xattr_capability_not_applied",
     .build = c_xattr_capability,
     .must_fail = false,
     .check = chk_no_xattr,
     .lim = {0},
     .expect = NULL},
    {.name = "huge_declared_size",
     .build = c_huge_size,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "per-file cap"},
    {.name = "negative_size",
     .build = c_negative_size,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "malformed size"},
    {.name = "overflowing_size",
     .build = c_overflow_size,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "malformed size"},
    {.name = "garbage_size",
     .build = c_garbage_size,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "malformed size"},
    {.name = "pax_size_overflow",
     .build = c_pax_size_overflow,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "pax size"},
    {.name = "truncated_data",
     .build = c_truncated,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "truncated"},
    {.name = "no_end_marker",
     .build = c_no_end_marker,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "no end-of-archive marker"},
    {.name = "bad_checksum",
     .build = c_bad_checksum,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "checksum mismatch"},
    {.name = "bad_magic",
     .build = c_bad_magic,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "bad magic"},
    {.name = "pax_path_escape",
     .build = c_pax_path_escape,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "pax_long_path_escape",
     .build = c_pax_long_path_escape,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "pax_linkpath_escape",
     .build = c_pax_linkpath_escape,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "gnu_longname_escape",
     .build = c_gnu_longname_escape,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "gnu_longlink_escape",
     .build = c_gnu_longlink_escape,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "'..' component"},
    {.name = "too_many_entries",
     .build = c_too_many_entries,
     .must_fail = true,
     .check = NULL,
     .lim = {.max_entries = 10},
     .expect = "more than 10 entries"},
    {.name = "path_too_long",
     .build = c_path_too_long,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "longer than 4095"},
    {.name = "path_too_deep",
     .build = c_too_deep,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "deeper than 128"},
    {.name = "component_too_long",
     .build = c_component_too_long,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "over 255 bytes"},
    {.name = "symlink_replaced_by_dir",
     .build = c_symlink_replaced_by_dir,
     .must_fail = false,
     .check = chk_symlink_replaced_by_dir,
     .lim = {0},
     .expect = NULL},
    {.name = "dir_replaced_by_symlink",
     .build = c_dir_replaced_by_symlink,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "replace a directory"},
    {.name = "dir_replaced_by_file",
     .build = c_dir_replaced_by_file,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "replace a directory"},
    {.name = "file_as_parent",
     .build = c_file_as_parent,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "not a directory"},
    {.name = "symlink_loop",
     .build = c_symlink_loop,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "symlink"},
    {.name = "nul_in_pax_path",
     .build = c_nul_in_pax_path,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "NUL"},
    {.name = "nul_in_gnu_longname",
     .build = c_nul_in_gnu_longname,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "NUL"},
    {.name = "pax_header_without_entry",
     .build = c_pax_without_entry,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "without an entry"},
    {.name = "pax_header_too_big",
     .build = c_pax_too_big,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "exceeds the 1048576 cap"},
    {.name = "pax_record_malformed",
     .build = c_pax_malformed,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "malformed pax record"},
    {.name = "gnu_sparse",
     .build = c_sparse,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "sparse"},
    {.name = "pax_sparse",
     .build = c_pax_sparse,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "sparse"},
    {.name = "total_size_cap",
     .build = c_total_cap,
     .must_fail = true,
     .check = NULL,
     .lim = {.max_total_bytes = 1000},
     .expect = "total size cap"},
    {.name = "per_file_size_cap",
     .build = c_file_cap,
     .must_fail = true,
     .check = NULL,
     .lim = {.max_file_bytes = 1000},
     .expect = "per-file cap"},
    {.name = "uid_out_of_range",
     .build = c_bad_uid,
     .must_fail = true,
     .check = NULL,
     .lim = {0},
     .expect = "pax uid"},
    {.name = "mountpoints_replace_symlinks",
     .build = c_mountpoint_symlinks,
     .must_fail = false,
     .check = chk_mountpoints,
     .lim = {0},
     .expect = NULL},
};

static void run_corpus_case(const corpus_case *c)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(64u << 20);
    _cleanup_(rc_buf_free) rc_buf before = RC_BUF_INIT(1 << 20);
    _cleanup_(rc_buf_free) rc_buf after = RC_BUF_INIT(1 << 20);
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *store = NULL;
    sandbox sb = {0};
    rc_error err = {0};
    char tarpath[PATH_MAX + 16], digest[RC_SNAPSHOT_DIGEST_SIZE];
    int rc;

    if (!sb_init(&sb)) {
        rc_test_fail(__FILE__, __LINE__, "%s: sandbox", c->name);
        sb_free(&sb);
        return;
    }
    c->build(&b, &sb);
    /* 1. The extractor on its own. */
    rc = extract_buf_lim(&sb, &b, &c->lim, NULL, &err);
    if (!getenv("RUNCELL_TAR_NO_OPENAT2"))
        printf("#   %s: %s\n", c->name, rc < 0 ? err.msg : "extracted");
    if (c->must_fail && rc >= 0)
        rc_test_fail(__FILE__, __LINE__, "%s: extraction succeeded", c->name);
    if (!c->must_fail && rc < 0)
        rc_test_fail(__FILE__, __LINE__, "%s: extraction failed: %s", c->name, err.msg);
    if (c->must_fail && rc < 0 && (!c->expect || !strstr(err.msg, c->expect)))
        rc_test_fail(__FILE__, __LINE__, "%s: failed for another reason: %s", c->name, err.msg);
    if (!c->must_fail && rc >= 0 && c->check)
        c->check(&sb);
    if (!sb_outside_intact(&sb))
        rc_test_fail(__FILE__, __LINE__, "%s: something outside the root changed", c->name);
    if (access("/etc/rc-tar-pwned", F_OK) == 0)
        rc_test_fail(__FILE__, __LINE__, "%s: /etc/rc-tar-pwned exists", c->name);

    /* 2. Through the store: a refused archive leaves the store exactly as it was. */
    snprintf(tarpath, sizeof tarpath, "%s/in.tar", sb.dir);
    if (!write_buf(tarpath, &b) || rc_snapshot_store_open(sb.store, &c->lim, &store, &err) < 0) {
        rc_test_fail(__FILE__, __LINE__, "%s: store setup: %s", c->name, err.msg);
    } else {
        store_listing(sb.store, &before);
        rc = rc_snapshot_import(store, tarpath, digest, &err);
        store_listing(sb.store, &after);
        if (c->must_fail && rc >= 0)
            rc_test_fail(__FILE__, __LINE__, "%s: import succeeded", c->name);
        if (!c->must_fail && rc < 0)
            rc_test_fail(__FILE__, __LINE__, "%s: import failed: %s", c->name, err.msg);
        if (c->must_fail && strcmp(rc_buf_cstr(&before), rc_buf_cstr(&after)) != 0)
            rc_test_fail(__FILE__, __LINE__, "%s: store changed:\n%s---\n%s", c->name,
                         rc_buf_cstr(&before), rc_buf_cstr(&after));
        if (!sb_outside_intact(&sb))
            rc_test_fail(__FILE__, __LINE__, "%s: import changed something outside", c->name);
    }
    sb_free(&sb);
}

TEST(malicious_corpus)
{
    size_t n = sizeof corpus / sizeof corpus[0];
    size_t failing = 0;
    for (size_t i = 0; i < n; i++) {
        int before = rc_test_failures();
        run_corpus_case(&corpus[i]);
        if (rc_test_failures() != before)
            printf("#   corpus case %s failed\n", corpus[i].name);
        failing += corpus[i].must_fail;
    }
    CHECK(n >= 20);
    printf("# %zu corpus archives (%zu refused as a whole)\n", n, failing);
}

/* The same corpus with openat2 disabled: the O_NOFOLLOW component walk alone must hold. */
TEST(malicious_corpus_without_openat2)
{
    setenv("RUNCELL_TAR_NO_OPENAT2", "1", 1);
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        int before = rc_test_failures();
        run_corpus_case(&corpus[i]);
        if (rc_test_failures() != before)
            printf("#   corpus case %s failed (no openat2)\n", corpus[i].name);
    }
    unsetenv("RUNCELL_TAR_NO_OPENAT2");
}

/* ---- honest archives ---------------------------------------------------------------------- */

TEST(extracts_files_dirs_links_modes_mtimes)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(1 << 20);
    sandbox sb = {0};
    rc_error err = {0};
    rc_tar_stats st = {0};
    struct stat a, h, d, l;
    char target[64] = {0};

    REQUIRE(sb_init(&sb));
    tb_header(&b, &(hdr){.name = "etc/", .type = '5', .mode = 0755, .mtime = 1600000000});
    tb_header(&b, &(hdr){.name = "etc/hosts",
                         .type = '0',
                         .size = 6,
                         .mode = 0640,
                         .uid = 1234,
                         .gid = 4321,
                         .mtime = 1500000000});
    tb_data(&b, "hosts\n", 6);
    tb_link(&b, '1', "etc/hosts.link", "etc/hosts");
    tb_link(&b, '2', "bin/sh", "/bin/busybox");
    tb_file(&b, "usr/share/deep/file", "deep\n", 0666);
    tb_pax(&b, "mtime", "1234567890.5");
    tb_file(&b, "paxtime", "t", 0644);
    tb_header(&b, &(hdr){.name = "olddir/", .nul_type = true, .mode = 0700});
    tb_end(&b);
    REQUIRE(extract_buf_lim(&sb, &b, NULL, &st, &err) == 0);
    CHECK_STR(err.msg, "");
    CHECK(root_file_is(&sb, "etc/hosts", "hosts\n"));
    REQUIRE(root_has(&sb, "etc/hosts", &a) && root_has(&sb, "etc/hosts.link", &h));
    CHECK(a.st_ino == h.st_ino);
    CHECK_INT(a.st_mode & 07777, 0640);
    CHECK_INT(a.st_mtim.tv_sec, 1500000000);
    if (geteuid() == 0) {
        CHECK_INT(a.st_uid, 1234);
        CHECK_INT(a.st_gid, 4321);
    }
    REQUIRE(root_has(&sb, "etc", &d));
    CHECK_INT(d.st_mode & 07777, 0555);
    CHECK_INT(d.st_mtim.tv_sec, 1600000000);
    REQUIRE(root_has(&sb, "bin/sh", &l) && S_ISLNK(l.st_mode));
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/bin/sh", sb.root);
    CHECK(readlink(p, target, sizeof target - 1) == 12);
    CHECK_STR(target, "/bin/busybox");
    REQUIRE(root_has(&sb, "usr/share/deep/file", &a));
    CHECK_INT(a.st_mode & 07777, 0644); /* group/other write dropped */
    REQUIRE(root_has(&sb, "usr/share", &d));
    CHECK_INT(d.st_mode & 07777, 0555); /* implicit directory */
    REQUIRE(root_has(&sb, "paxtime", &a));
    CHECK_INT(a.st_mtim.tv_sec, 1234567890);
    CHECK_INT(a.st_mtim.tv_nsec, 500000000);
    REQUIRE(root_has(&sb, "olddir", &d));
    CHECK(S_ISDIR(d.st_mode));
    REQUIRE(root_has(&sb, ".", &d));
    CHECK_INT(d.st_mode & 07777, 0555);
    REQUIRE(root_has(&sb, "workspace", &d));
    CHECK(S_ISDIR(d.st_mode));
    CHECK_INT(st.files, 3);
    CHECK_INT(st.hardlinks, 1);
    CHECK_INT(st.symlinks, 1);
    CHECK_INT(st.bytes, 12);
    sb_free(&sb);
}

TEST(path_normalize)
{
    char out[64];
    rc_error err = {0};
    CHECK_INT(rc_tar_path_normalize("./a//b/./c/", NULL, out, sizeof out, &err), 1);
    CHECK_STR(out, "a/b/c");
    CHECK_INT(rc_tar_path_normalize("./", NULL, out, sizeof out, &err), 0);
    CHECK_INT(rc_tar_path_normalize(".", NULL, out, sizeof out, &err), 0);
    CHECK(rc_tar_path_normalize("/a", NULL, out, sizeof out, &err) < 0);
    CHECK(rc_tar_path_normalize("a/..", NULL, out, sizeof out, &err) < 0);
    CHECK(rc_tar_path_normalize("..", NULL, out, sizeof out, &err) < 0);
    CHECK_INT(rc_tar_path_normalize("a/..b/c..", NULL, out, sizeof out, &err), 1);
    CHECK_STR(out, "a/..b/c..");
    CHECK_INT(rc_tar_path_normalize("...", NULL, out, sizeof out, &err), 1);
}

TEST(reader_partial_reads_and_pax_overrides)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(1 << 20);
    _cleanup_(rc_tar_reader_freep) rc_tar_reader *r = NULL;
    const rc_tar_entry *e;
    char data[16] = {0};
    rc_error err = {0};

    tb_pax(&b, "path", "long/path/name");
    tb_pax(&b, "uid", "70000");
    tb_file(&b, "short", "hello", 0644);
    tb_gnu_long(&b, 'L', "gnu/long/name");
    tb_header(&b, &(hdr){.name = "x", .type = '0', .gnu = true});
    tb_end(&b);
    memsrc m = {.p = (const unsigned char *)b.data, .len = b.len, .chunk = 7};
    rc_tar_source src = {.read = mem_read, .ctx = &m};
    REQUIRE(rc_tar_reader_new(&src, NULL, &r, &err) == 0);
    REQUIRE(rc_tar_next(r, &e, &err) == 1);
    CHECK_STR(e->path, "long/path/name");
    CHECK_INT(e->uid, 70000);
    CHECK_INT(e->size, 5);
    CHECK_INT(rc_tar_read_data(r, data, 3, &err), 3);
    CHECK_INT(rc_tar_read_data(r, data + 3, 10, &err), 2);
    CHECK_INT(rc_tar_read_data(r, data, 10, &err), 0);
    CHECK_STR(data, "hello");
    REQUIRE(rc_tar_next(r, &e, &err) == 1);
    CHECK_STR(e->path, "gnu/long/name");
    CHECK_INT(e->uid, 0);
    CHECK_INT(rc_tar_next(r, &e, &err), 0);
    CHECK_INT(rc_tar_next(r, &e, &err), 0);
}

/* ---- real archives from GNU tar ----------------------------------------------------------- */

static int run_argv(char *const argv[])
{
    int status;
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool have_tool(const char *name)
{
    char p[64];
    snprintf(p, sizeof p, "/usr/bin/%s", name);
    return access(p, X_OK) == 0;
}

/* A source tree with long names, deep paths, symlinks, hardlinks and odd modes. */
static bool make_source_tree(const char *src)
{
    char p[PATH_MAX * 2], longname[201];
    memset(longname, 'L', 200);
    longname[200] = '\0';
    snprintf(p, sizeof p, "%s/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6",
             src);
    char cmd_mkdir[PATH_MAX * 2 + 16];
    snprintf(cmd_mkdir, sizeof cmd_mkdir, "%s", p);
    char *mk[] = {"mkdir", "-p", cmd_mkdir, NULL};
    if (run_argv(mk) != 0)
        return false;
    snprintf(p, sizeof p, "%s/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6/%s",
             src, longname);
    if (!write_text(p, "long\n"))
        return false;
    snprintf(p, sizeof p, "%s/file", src);
    if (!write_text(p, "content\n") || chmod(p, 0751) < 0)
        return false;
    char l[PATH_MAX * 2];
    snprintf(l, sizeof l, "%s/hard", src);
    if (link(p, l) < 0)
        return false;
    snprintf(l, sizeof l, "%s/sym", src);
    return symlink("a/b/c", l) == 0;
}

TEST(gnu_tar_formats_round_trip)
{
    static const char *const formats[] = {"gnu", "posix", "ustar", "oldgnu"};
    sandbox sb = {0};
    char src[PATH_MAX + 16], tarp[PATH_MAX + 16];

    if (!have_tool("tar"))
        SKIP("GNU tar not installed");
    REQUIRE(sb_init(&sb));
    snprintf(src, sizeof src, "%s/src", sb.dir);
    REQUIRE(mkdir(src, 0755) == 0);
    REQUIRE(make_source_tree(src));
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        char fmt[32];
        snprintf(fmt, sizeof fmt, "--format=%s", formats[i]);
        snprintf(tarp, sizeof tarp, "%s/t.tar", sb.dir);
        char *argv[] = {"tar", fmt, "-C", src, "-cf", tarp, ".", NULL};
        int tr = run_argv(argv);
        if (strcmp(formats[i], "ustar") == 0 && tr != 0)
            continue; /* ustar cannot hold the 200-byte name: GNU tar refuses, as it should */
        REQUIRE(tr == 0);
        _cleanup_close_ int fd = open(tarp, O_RDONLY | O_CLOEXEC);
        struct stat st;
        REQUIRE(fd >= 0 && fstat(fd, &st) == 0);
        _cleanup_free_ char *data = malloc((size_t)st.st_size);
        REQUIRE(data && read(fd, data, (size_t)st.st_size) == st.st_size);
        rc_buf b = {.data = data, .len = (size_t)st.st_size};
        rc_error err = {0};
        rc_tar_remove_tree(AT_FDCWD, sb.root, NULL);
        REQUIRE(mkdir(sb.root, 0755) == 0);
        int rc = extract_buf(&sb, &b, &err);
        if (rc < 0)
            printf("# format %s: %s\n", formats[i], err.msg);
        CHECK(rc == 0);
        char lp[PATH_MAX];
        memset(lp, 'L', 200);
        snprintf(lp, sizeof lp,
                 "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6/");
        size_t o = strlen(lp);
        memset(lp + o, 'L', 200);
        lp[o + 200] = '\0';
        CHECK(root_file_is(&sb, lp, "long\n"));
        struct stat f, h, s;
        CHECK(root_has(&sb, "file", &f) && (f.st_mode & 07777) == 0751);
        CHECK(root_has(&sb, "hard", &h) && h.st_ino == f.st_ino);
        CHECK(root_has(&sb, "sym", &s) && S_ISLNK(s.st_mode));
    }
    sb_free(&sb);
}

/* ---- the store ---------------------------------------------------------------------------- */

/* A small honest tarball at path (plain), made by our builder. */
static bool honest_tar(const char *path, const char *marker)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(1 << 20);
    tb_dir(&b, "bin", 0755);
    tb_file(&b, "bin/tool", "#!/bin/sh\necho hi\n", 0755);
    tb_file(&b, "etc/marker", marker, 0644);
    tb_link(&b, '2', "etc/alias", "marker");
    tb_end(&b);
    return write_buf(path, &b);
}

static bool compress_to(const char *tool, const char *in, const char *out)
{
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof cmd, "%s -c < '%s' > '%s'", tool, in, out);
    char *argv[] = {"sh", "-c", cmd, NULL};
    return run_argv(argv) == 0;
}

TEST(store_import_formats_and_idempotence)
{
    static const char *const tools[] = {"gzip", "zstd", "xz"};
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *s = NULL;
    sandbox sb = {0};
    rc_error err = {0};
    char tarp[PATH_MAX + 16], d1[RC_SNAPSHOT_DIGEST_SIZE], d2[RC_SNAPSHOT_DIGEST_SIZE];
    char root[PATH_MAX * 2];
    struct stat a, b2;

    REQUIRE(sb_init(&sb));
    REQUIRE(rc_snapshot_store_open(sb.store, NULL, &s, &err) == 0);
    snprintf(tarp, sizeof tarp, "%s/in.tar", sb.dir);
    REQUIRE(honest_tar(tarp, "plain\n"));
    REQUIRE(rc_snapshot_import(s, tarp, d1, &err) == 0);
    CHECK(strncmp(d1, "sha256:", 7) == 0 && strlen(d1) == 71);
    REQUIRE(rc_snapshot_rootfs_path(s, d1, root, sizeof root, &err) == 0);
    REQUIRE(stat(root, &a) == 0);
    CHECK_INT(a.st_mode & 07777, 0555);
    /* Idempotent: same digest, same tree (not re-extracted). */
    REQUIRE(rc_snapshot_import(s, tarp, d2, &err) == 0);
    CHECK_STR(d1, d2);
    REQUIRE(stat(root, &b2) == 0);
    CHECK(a.st_ino == b2.st_ino);
    /* The bare hex and upper case are accepted too. */
    char upper[80];
    for (int i = 0; i < 64; i++)
        upper[i] = (char)(d1[7 + i] >= 'a' ? d1[7 + i] - 32 : d1[7 + i]);
    upper[64] = '\0';
    char root2[PATH_MAX * 2];
    CHECK(rc_snapshot_rootfs_path(s, upper, root2, sizeof root2, &err) == 0);
    CHECK_STR(root, root2);
    CHECK(rc_snapshot_rootfs_path(s, root, root2, 10, &err) < 0);
    CHECK(rc_snapshot_rootfs_path(s, "sha256:00", root2, sizeof root2, &err) == -RC_EINVAL);
    char zero[80];
    snprintf(zero, sizeof zero, "sha256:%064d", 0);
    CHECK(rc_snapshot_rootfs_path(s, zero, root2, sizeof root2, &err) == -RC_ENOTFOUND);

    for (size_t i = 0; i < 3; i++) {
        char cp[PATH_MAX + 32], dg[RC_SNAPSHOT_DIGEST_SIZE], rp[PATH_MAX * 2], mk[PATH_MAX * 3];
        if (!have_tool(tools[i])) {
            printf("# %s not installed: not checked\n", tools[i]);
            continue;
        }
        snprintf(cp, sizeof cp, "%s/in.%s", sb.dir, tools[i]);
        REQUIRE(compress_to(tools[i], tarp, cp));
        rc_error_clear(&err);
        if (rc_snapshot_import(s, cp, dg, &err) < 0) {
            rc_test_fail(__FILE__, __LINE__, "%s import: %s", tools[i], err.msg);
            continue;
        }
        CHECK(strcmp(dg, d1) != 0); /* the digest is of the file as given */
        REQUIRE(rc_snapshot_rootfs_path(s, dg, rp, sizeof rp, &err) == 0);
        snprintf(mk, sizeof mk, "%s/etc/marker", rp);
        _cleanup_close_ int fd = open(mk, O_RDONLY | O_CLOEXEC);
        char buf[16] = {0};
        CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 6 && strcmp(buf, "plain\n") == 0);
        unlink(cp);
    }
    rc_snapshot_info *items = NULL;
    size_t n = 0;
    int cnt = rc_snapshot_list(s, &items, &n, &err);
    CHECK(cnt >= 1 && (size_t)cnt == n);
    for (size_t i = 1; i < n; i++)
        CHECK(strcmp(items[i - 1].digest, items[i].digest) < 0);
    for (size_t i = 0; i < n; i++) {
        CHECK_INT(items[i].entries, 4);
        CHECK(items[i].bytes > 0);
        CHECK(items[i].imported_at > 0 && items[i].last_used_at >= items[i].imported_at);
    }
    free(items);
    sb_free(&sb);
}

TEST(store_refuses_bad_compressed_input)
{
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *s = NULL;
    _cleanup_(rc_buf_free) rc_buf before = RC_BUF_INIT(1 << 20);
    _cleanup_(rc_buf_free) rc_buf after = RC_BUF_INIT(1 << 20);
    sandbox sb = {0};
    rc_error err = {0};
    char tarp[PATH_MAX + 16], gz[PATH_MAX + 16], bz[PATH_MAX + 16];

    if (!have_tool("gzip") || !have_tool("zstd"))
        SKIP("gzip or zstd not installed");
    REQUIRE(sb_init(&sb));
    rc_tar_limits lim = {.max_file_bytes = 1 << 20};
    REQUIRE(rc_snapshot_store_open(sb.store, &lim, &s, &err) == 0);
    store_listing(sb.store, &before);
    /* A truncated gzip stream. */
    snprintf(tarp, sizeof tarp, "%s/in.tar", sb.dir);
    snprintf(gz, sizeof gz, "%s/in.gz", sb.dir);
    REQUIRE(honest_tar(tarp, "x\n"));
    REQUIRE(compress_to("gzip", tarp, gz));
    REQUIRE(truncate(gz, 40) == 0);
    CHECK(rc_snapshot_import(s, gz, NULL, &err) < 0);
    printf("# truncated gzip: %s\n", err.msg);
    /* A zstd bomb: 64 MiB of zeros in one entry against a 1 MiB per-file cap. */
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && head -c 67108864 /dev/zero > zeros && tar -cf - zeros | zstd -q -c > "
             "bomb.zst && rm zeros",
             sb.dir);
    char *argv[] = {"sh", "-c", cmd, NULL};
    REQUIRE(run_argv(argv) == 0);
    snprintf(bz, sizeof bz, "%s/bomb.zst", sb.dir);
    rc_error_clear(&err);
    CHECK(rc_snapshot_import(s, bz, NULL, &err) == -RC_ETOOBIG);
    printf("# zstd bomb: %s\n", err.msg);
    unlink(bz);
    /* bzip2 is refused by magic. */
    REQUIRE(write_text(bz, "BZh91AY&SY"));
    CHECK(rc_snapshot_import(s, bz, NULL, &err) == -RC_EINVAL);
    unlink(bz);
    /* Not a regular file. */
    CHECK(rc_snapshot_import(s, sb.dir, NULL, &err) < 0);
    store_listing(sb.store, &after);
    CHECK_STR(rc_buf_cstr(&before), rc_buf_cstr(&after));
    sb_free(&sb);
}

static void set_last_use(const char *store, const char *digest, time_t when)
{
    char p[PATH_MAX * 2];
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    snprintf(p, sizeof p, "%s/sha256/%s/last-use", store, digest + 7);
    CHECK(utimensat(AT_FDCWD, p, ts, 0) == 0);
}

TEST(store_touch_hold_and_prune)
{
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *s = NULL;
    sandbox sb = {0};
    rc_error err = {0};
    char t1[PATH_MAX + 16], t2[PATH_MAX + 16], d1[RC_SNAPSHOT_DIGEST_SIZE],
        d2[RC_SNAPSHOT_DIGEST_SIZE], rp[PATH_MAX * 2];
    rc_snapshot_info *items = NULL;
    size_t n = 0;
    int hold = -1;

    REQUIRE(sb_init(&sb));
    REQUIRE(rc_snapshot_store_open(sb.store, NULL, &s, &err) == 0);
    snprintf(t1, sizeof t1, "%s/one.tar", sb.dir);
    snprintf(t2, sizeof t2, "%s/two.tar", sb.dir);
    REQUIRE(honest_tar(t1, "one\n") && honest_tar(t2, "two\n"));
    REQUIRE(rc_snapshot_import(s, t1, d1, &err) == 0);
    REQUIRE(rc_snapshot_import(s, t2, d2, &err) == 0);
    /* Both used "now": an age-based prune keeps both. */
    CHECK_INT(rc_snapshot_prune(s, 3600, &err), 0);
    /* Both idle for two hours; one is touched, so only the other goes. */
    set_last_use(sb.store, d1, time(NULL) - 7200);
    set_last_use(sb.store, d2, time(NULL) - 7200);
    REQUIRE(rc_snapshot_touch(s, d2, &err) == 0);
    REQUIRE(rc_snapshot_list(s, &items, &n, &err) == 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i].digest, d2) == 0)
            CHECK(items[i].last_used_at >= time(NULL) - 5);
        else
            CHECK(items[i].last_used_at <= time(NULL) - 7000);
    }
    free(items);
    CHECK_INT(rc_snapshot_prune(s, 3600, &err), 1);
    CHECK(rc_snapshot_rootfs_path(s, d1, rp, sizeof rp, &err) == -RC_ENOTFOUND);
    CHECK(rc_snapshot_rootfs_path(s, d2, rp, sizeof rp, &err) == 0);
    CHECK(rc_snapshot_touch(s, d1, &err) == -RC_ENOTFOUND);
    /* A held snapshot is never pruned, whatever its age; released, it goes. */
    REQUIRE(rc_snapshot_hold(s, d2, &hold, &err) == 0);
    set_last_use(sb.store, d2, time(NULL) - 7200);
    REQUIRE(rc_snapshot_list(s, &items, &n, &err) == 1);
    CHECK_INT(items[0].held, 1);
    free(items);
    CHECK_INT(rc_snapshot_prune(s, 0, &err), 0);
    CHECK(rc_snapshot_rootfs_path(s, d2, rp, sizeof rp, &err) == 0);
    close(hold);
    CHECK_INT(rc_snapshot_prune(s, 0, &err), 1);
    CHECK(rc_snapshot_hold(s, d2, &hold, &err) == -RC_ENOTFOUND);
    REQUIRE(rc_snapshot_list(s, &items, &n, &err) == 0);
    free(items);
    /* Nothing left behind: sha256/, tmp/ and locks/ are empty. */
    _cleanup_(rc_buf_free) rc_buf l = RC_BUF_INIT(1 << 20);
    store_listing(sb.store, &l);
    CHECK_STR(rc_buf_cstr(&l), "/locks 40700 0\n/sha256 40711 0\n/tmp 40700 0\n");
    /* Re-import after prune works. */
    CHECK(rc_snapshot_import(s, t1, d1, &err) == 0);
    sb_free(&sb);
}

TEST(store_concurrent_imports_extract_once)
{
    sandbox sb = {0};
    char tarp[PATH_MAX + 16], logp[PATH_MAX + 16];
    pid_t kids[6];
    int ok = 0;

    REQUIRE(sb_init(&sb));
    snprintf(tarp, sizeof tarp, "%s/in.tar", sb.dir);
    snprintf(logp, sizeof logp, "%s/log", sb.dir);
    {
        /* A tarball big enough that the imports overlap (4 MiB over 64 files). */
        _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(64u << 20);
        _cleanup_free_ char *data = malloc(65536);
        REQUIRE(data);
        memset(data, 'q', 65535);
        data[65535] = '\0';
        for (int i = 0; i < 64; i++) {
            char n[32];
            snprintf(n, sizeof n, "d/f%d", i);
            tb_file(&b, n, data, 0644);
        }
        tb_end(&b);
        REQUIRE(write_buf(tarp, &b));
    }
    int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    REQUIRE(logfd >= 0);
    for (int i = 0; i < 6; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            rc_snapshot_store *s = NULL;
            char d[RC_SNAPSHOT_DIGEST_SIZE];
            rc_log_init("test", RC_LOG_INFO, logfd);
            if (rc_snapshot_store_open(sb.store, NULL, &s, NULL) < 0 ||
                rc_snapshot_import(s, tarp, d, NULL) < 0)
                _exit(1);
            _exit(0);
        }
    }
    for (int i = 0; i < 6; i++) {
        int st;
        if (kids[i] > 0 && waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) &&
            WEXITSTATUS(st) == 0)
            ok++;
    }
    close(logfd);
    CHECK_INT(ok, 6);
    /* Exactly one "imported" line: one extraction. */
    char buf[8192] = {0};
    int fd = open(logp, O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    REQUIRE(n > 0);
    int imported = 0;
    for (char *p = buf; (p = strstr(p, "snapshot: imported")); p++)
        imported++;
    CHECK_INT(imported, 1);
    sb_free(&sb);
}

TEST(store_sweeps_leftovers_of_crashed_imports)
{
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *s = NULL;
    sandbox sb = {0};
    rc_error err = {0};
    char p[PATH_MAX * 2];
    struct stat st;

    REQUIRE(sb_init(&sb));
    REQUIRE(mkdir(sb.store, 0711) == 0);
    snprintf(p, sizeof p, "%s/tmp", sb.store);
    REQUIRE(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/tmp/%064d.abcdef", sb.store, 7);
    REQUIRE(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/tmp/%064d.abcdef/rootfs", sb.store, 7);
    REQUIRE(mkdir(p, 0555) == 0);
    REQUIRE(rc_snapshot_store_open(sb.store, NULL, &s, &err) == 0);
    snprintf(p, sizeof p, "%s/tmp/%064d.abcdef", sb.store, 7);
    CHECK(stat(p, &st) < 0 && errno == ENOENT);
    sb_free(&sb);
}

/* A snapshot bind-mounted into a bundle (same filesystem, so only the mount-root attribute
 * tells) and a tmpfs (another filesystem) both stop the removal, and their files survive. */
TEST(remove_tree_stops_at_mount_points)
{
    static const char *const kinds[] = {"bind", "tmpfs"};
    sandbox sb = {0};
    char mnt[PATH_MAX * 2], keep[PATH_MAX * 3], src[PATH_MAX * 2];
    rc_error err = {0};

    if (geteuid() != 0)
        SKIP("needs root (mount)");
    REQUIRE(sb_init(&sb));
    snprintf(src, sizeof src, "%s/snapshot", sb.outside);
    snprintf(mnt, sizeof mnt, "%s/bundle/rootfs", sb.root);
    for (int k = 0; k < 2; k++) {
        char *mk[] = {"mkdir", "-p", mnt, src, NULL};
        char *bind[] = {"mount", "--bind", src, mnt, NULL};
        char *tmpfs[] = {"mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt, NULL};
        char *umount[] = {"umount", mnt, NULL};
        REQUIRE(run_argv(mk) == 0);
        if (run_argv(k == 0 ? bind : tmpfs) != 0) {
            printf("# cannot mount (%s) here: not checked\n", kinds[k]);
            continue;
        }
        snprintf(keep, sizeof keep, "%s/precious", mnt);
        REQUIRE(write_text(keep, "keep\n"));
        rc_error_clear(&err);
        CHECK(rc_tar_remove_tree(AT_FDCWD, sb.root, &err) == -RC_EINVAL);
        printf("# %s: %s\n", kinds[k], err.msg);
        CHECK(access(keep, F_OK) == 0);
        CHECK(run_argv(umount) == 0);
        CHECK(rc_tar_remove_tree(AT_FDCWD, sb.root, &err) == 0);
        CHECK(access(sb.root, F_OK) < 0);
        REQUIRE(mkdir(sb.root, 0755) == 0);
    }
    rc_tar_remove_tree(AT_FDCWD, src, NULL);
    sb_free(&sb);
}
