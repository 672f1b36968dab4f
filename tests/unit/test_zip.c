/* test_zip.c - the strict zip reader (lib/zip.h).
 *
 * Archives are built here byte by byte (zb_* below: local headers, data, central directory,
 * end record, with any field overridable), so every rule has an archive that tries to break it:
 * hostile names, links and devices, CRC and size lies, zip64 markers, encryption, unknown
 * methods, overlaps, truncation, bombs over the caps, and a symlink planted in the destination.
 * Each archive is extracted into sandbox/root next to sandbox/outside; a refusal must leave the
 * root empty (the checking pass runs before any write) and outside untouched. */
#include "harness.h"

#include "buf.h"
#include "cleanup.h"
#include "zip.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* ---- zip builder -------------------------------------------------------------------------- */

typedef struct zent {
    const char *name;
    size_t name_len; /* 0 = strlen(name) (set it to include NULs) */
    const char *data;
    size_t len;
    bool deflate;
    bool dos;        /* made by MS-DOS: no unix mode */
    uint32_t mode;   /* unix st_mode (type + permissions); 0 = regular 0644 */
    uint16_t flags;  /* general purpose flags */
    uint16_t method; /* override (with force_method) */
    bool force_method;
    bool bad_crc;
    bool usize_set;
    uint32_t usize; /* override of the declared uncompressed size */
    bool z64;       /* sizes 0xffffffff */
    const char *local_name;
} zent;

typedef struct zip_out {
    unsigned char *p;
    size_t len, cap;
} zip_out;

static void put(zip_out *z, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (z->len + n > z->cap) {
        z->cap = (z->len + n) * 2 + 1024;
        z->p = realloc(z->p, z->cap);
    }
    memcpy(z->p + z->len, p, n);
    z->len += n;
}

static void put16(zip_out *z, uint32_t v)
{
    unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put(z, b, 2);
}

static void put32(zip_out *z, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(z, b, 4);
}

static size_t raw_deflate(const char *in, size_t n, unsigned char **ret)
{
    z_stream s = {0};
    size_t cap = compressBound(n) + 64;
    unsigned char *out = malloc(cap);
    deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)n;
    s.next_out = out;
    s.avail_out = (uInt)cap;
    deflate(&s, Z_FINISH);
    deflateEnd(&s);
    *ret = out;
    return cap - s.avail_out;
}

/* Build an archive of n entries. Returns the buffer (malloc'd) and its length. */
static unsigned char *zb_build(const zent *e, size_t n, size_t *ret_len)
{
    zip_out z = {0}, cd = {0};
    for (size_t i = 0; i < n; i++) {
        size_t nl = e[i].name_len ? e[i].name_len : strlen(e[i].name);
        const char *ln = e[i].local_name ? e[i].local_name : e[i].name;
        size_t lnl = e[i].local_name ? strlen(ln) : nl;
        _cleanup_free_ unsigned char *comp = NULL;
        size_t clen = e[i].len;
        const void *data = e[i].data;
        uint16_t method = e[i].deflate ? 8 : 0;
        uint32_t crc = (uint32_t)crc32(0, (const Bytef *)e[i].data, (uInt)e[i].len);
        uint32_t usize = e[i].usize_set ? e[i].usize : (uint32_t)e[i].len;
        uint32_t mode = e[i].mode ? e[i].mode : 0100644;
        uint32_t off = (uint32_t)z.len;
        if (e[i].deflate) {
            clen = raw_deflate(e[i].data, e[i].len, &comp);
            data = comp;
        }
        if (e[i].force_method)
            method = e[i].method;
        if (e[i].bad_crc)
            crc ^= 1;
        /* local header */
        put32(&z, 0x04034b50);
        put16(&z, 20), put16(&z, e[i].flags), put16(&z, method), put16(&z, 0), put16(&z, 0);
        put32(&z, crc), put32(&z, (uint32_t)clen), put32(&z, usize);
        put16(&z, (uint32_t)lnl), put16(&z, 0);
        put(&z, ln, lnl);
        put(&z, data, clen);
        /* central record */
        put32(&cd, 0x02014b50);
        put16(&cd, e[i].dos ? 20 : (3 << 8) | 20), put16(&cd, 20), put16(&cd, e[i].flags);
        put16(&cd, method), put16(&cd, 0), put16(&cd, 0), put32(&cd, crc);
        put32(&cd, e[i].z64 ? 0xffffffffU : (uint32_t)clen);
        put32(&cd, e[i].z64 ? 0xffffffffU : usize);
        put16(&cd, (uint32_t)nl), put16(&cd, 0), put16(&cd, 0), put16(&cd, 0), put16(&cd, 0);
        put32(&cd, e[i].dos ? (mode & S_IFDIR ? 0x10 : 0) : mode << 16);
        put32(&cd, off);
        put(&cd, e[i].name, nl);
    }
    uint32_t cd_off = (uint32_t)z.len;
    put(&z, cd.p, cd.len);
    put32(&z, 0x06054b50);
    put16(&z, 0), put16(&z, 0), put16(&z, (uint32_t)n), put16(&z, (uint32_t)n);
    put32(&z, (uint32_t)cd.len), put32(&z, cd_off), put16(&z, 0);
    free(cd.p);
    *ret_len = z.len;
    return z.p;
}

/* ---- sandbox ------------------------------------------------------------------------------ */

static char sandbox[64];

static int sandbox_new(void)
{
    char p[128];
    snprintf(sandbox, sizeof sandbox, "/tmp/rc-test-zip.XXXXXX");
    if (!mkdtemp(sandbox))
        return -1;
    snprintf(p, sizeof p, "%s/root", sandbox);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/outside", sandbox);
    mkdir(p, 0755);
    return open(sandbox, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void sandbox_free(void)
{
    char cmd[128];
    pid_t pid;
    snprintf(cmd, sizeof cmd, "%s", sandbox);
    pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", cmd, (char *)NULL);
        _exit(127);
    }
    waitpid(pid, NULL, 0);
}

static int count_entries(int dfd, const char *rel)
{
    int fd = openat(dfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Extract into sandbox/root; returns rc and fills err. */
static int extract(const zent *e, size_t n, const rc_zip_limits *l, rc_zip_stats *st, rc_error *err)
{
    size_t len;
    _cleanup_free_ unsigned char *z = zb_build(e, n, &len);
    char p[128];
    _cleanup_close_ int root = -1;
    snprintf(p, sizeof p, "%s/root", sandbox);
    root = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return rc_zip_extract(z, len, root, l, st, err);
}

static int mode_of(int sfd, const char *rel)
{
    struct stat st;
    if (fstatat(sfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    return (int)(st.st_mode & 07777);
}

static bool file_is(int sfd, const char *rel, const char *want, size_t len)
{
    char buf[8192];
    _cleanup_close_ int fd = openat(sfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t k = fd >= 0 ? read(fd, buf, sizeof buf) : -1;
    return k == (ssize_t)len && memcmp(buf, want, len) == 0;
}

/* An archive the reader must refuse: error containing `why`, nothing written. */
static void refuse_at(const zent *e, size_t n, const rc_zip_limits *l, const char *why,
                      bool while_writing)
{
    _cleanup_close_ int sfd = sandbox_new();
    rc_error err = {0};
    int rc;
    REQUIRE(sfd >= 0);
    rc = extract(e, n, l, NULL, &err);
    CHECK(rc < 0);
    if (!strstr(err.msg, why))
        rc_test_fail(__FILE__, __LINE__, "message '%s' lacks '%s'", err.msg, why);
    if (!while_writing)
        CHECK_INT(count_entries(sfd, "root"), 0);
    CHECK_INT(count_entries(sfd, "outside"), 0);
    sandbox_free();
}

static void refuse(const zent *e, size_t n, const rc_zip_limits *l, const char *why)
{
    refuse_at(e, n, l, why, false);
}

/* Refused only while writing (CRC and inflated sizes are known once the data is read): the
 * root may hold the partial entry, which the caller deletes. */
static void refuse_late(const zent *e, size_t n, const char *why)
{
    refuse_at(e, n, NULL, why, true);
}

/* ---- tests -------------------------------------------------------------------------------- */

TEST(zip_honest_archive)
{
    static char big[5000];
    _cleanup_close_ int sfd = sandbox_new();
    rc_zip_stats st = {0};
    rc_error err = {0};
    memset(big, 'x', sizeof big);
    zent e[] = {
        {.name = "skill/", .mode = 040700},
        {.name = "skill/SKILL.md", .data = "hello\n", .len = 6, .mode = 0100600},
        {.name = "skill/bin/run.sh", .data = "#!/bin/sh\n", .len = 10, .mode = 0100700},
        {.name = "skill/big.txt", .data = big, .len = sizeof big, .deflate = true},
        {.name = "./skill//docs/./a.md", .data = "", .len = 0, .deflate = true},
        {.name = "dos/", .dos = true, .mode = 040000},
        {.name = "dos/readme.txt", .data = "dos", .len = 3, .dos = true},
        {.name = "skill/link", .data = "/etc/passwd", .len = 11, .mode = 0120777},
        {.name = "skill/dev", .mode = 020644},
        {.name = "./", .mode = 040755},
    };
    REQUIRE(sfd >= 0);
    CHECK_INT(extract(e, sizeof e / sizeof e[0], NULL, &st, &err), 0);
    if (err.msg[0])
        rc_test_fail(__FILE__, __LINE__, "%s", err.msg);
    CHECK(file_is(sfd, "root/skill/SKILL.md", "hello\n", 6));
    CHECK(file_is(sfd, "root/skill/big.txt", big, sizeof big));
    CHECK(file_is(sfd, "root/skill/docs/a.md", "", 0));
    CHECK(file_is(sfd, "root/dos/readme.txt", "dos", 3));
    CHECK_INT(mode_of(sfd, "root/skill"), 0755);
    CHECK_INT(mode_of(sfd, "root/skill/SKILL.md"), 0644);
    CHECK_INT(mode_of(sfd, "root/skill/bin/run.sh"), 0755);
    CHECK_INT(mode_of(sfd, "root/skill/bin"), 0755);
    CHECK_INT(mode_of(sfd, "root/skill/link"), -1);
    CHECK_INT(mode_of(sfd, "root/skill/dev"), -1);
    CHECK_INT(st.entries, 10);
    CHECK_INT(st.files, 5);
    CHECK_INT(st.dirs, 2);
    CHECK_INT(st.skipped, 3);
    CHECK_INT(st.bytes, 6 + 10 + sizeof big + 0 + 3);
    sandbox_free();
}

TEST(zip_hostile_names)
{
    static const char nul_name[] = "a\0b";
    zent e1[] = {{.name = "ok", .data = "x", .len = 1}, {.name = "../x", .data = "x", .len = 1}};
    zent e2[] = {{.name = "a/../../outside/x", .data = "x", .len = 1}};
    zent e3[] = {{.name = "/tmp/x", .data = "x", .len = 1}};
    zent e4[] = {{.name = "a\\..\\x", .data = "x", .len = 1}};
    zent e5[] = {{.name = nul_name, .name_len = 3, .data = "x", .len = 1}};
    zent e6[] = {{.name = "a/..", .mode = 040755}};
    refuse(e1, 2, NULL, "'..'");
    refuse(e2, 1, NULL, "'..'");
    refuse(e3, 1, NULL, "absolute");
    refuse(e4, 1, NULL, "backslash");
    refuse(e5, 1, NULL, "NUL");
    refuse(e6, 1, NULL, "'..'");
}

TEST(zip_integrity)
{
    zent crc[] = {{.name = "a", .data = "abc", .len = 3, .bad_crc = true}};
    zent crcd[] = {{.name = "a", .data = "abcabc", .len = 6, .deflate = true, .bad_crc = true}};
    zent longer[] = {
        {.name = "a", .data = "abcdef", .len = 6, .deflate = true, .usize_set = true, .usize = 3}};
    zent shorter[] = {
        {.name = "a", .data = "abc", .len = 3, .deflate = true, .usize_set = true, .usize = 9}};
    zent stored_lie[] = {{.name = "a", .data = "abc", .len = 3, .usize_set = true, .usize = 4}};
    zent enc[] = {{.name = "a", .data = "abc", .len = 3, .flags = 1}};
    zent meth[] = {{.name = "a", .data = "abc", .len = 3, .force_method = true, .method = 12}};
    zent z64[] = {{.name = "a", .data = "abc", .len = 3, .z64 = true}};
    zent local[] = {{.name = "a", .data = "abc", .len = 3, .local_name = "b"}};
    zent dup[] = {{.name = "a", .data = "1", .len = 1}, {.name = "./a", .data = "2", .len = 1}};
    zent filedir[] = {{.name = "a", .data = "1", .len = 1}, {.name = "a/b", .data = "2", .len = 1}};
    refuse_late(crc, 1, "CRC");
    refuse_late(crcd, 1, "CRC");
    refuse_late(longer, 1, "past its size");
    refuse_late(shorter, 1, "size does not match");
    refuse(stored_lie, 1, NULL, "stored sizes");
    refuse(enc, 1, NULL, "encrypted");
    refuse(meth, 1, NULL, "method 12");
    refuse(z64, 1, NULL, "zip64");
    refuse(local, 1, NULL, "disagrees");
    /* these two fail while writing: the root holds the first entry, nothing outside */
    {
        _cleanup_close_ int sfd = sandbox_new();
        rc_error err = {0};
        REQUIRE(sfd >= 0);
        CHECK(extract(dup, 2, NULL, NULL, &err) < 0);
        CHECK(strstr(err.msg, "appears twice") != NULL);
        CHECK(extract(filedir, 2, NULL, NULL, &err) < 0);
        CHECK_INT(count_entries(sfd, "outside"), 0);
        sandbox_free();
    }
}

TEST(zip_caps)
{
    static char zeros[200000];
    rc_zip_limits small = {.max_file_bytes = 100000,
                           .max_total_bytes = 150000,
                           .max_entries = 3,
                           .max_path_len = 20,
                           .max_depth = 3};
    zent bomb[] = {{.name = "a", .data = zeros, .len = sizeof zeros, .deflate = true}};
    zent total[] = {{.name = "a", .data = zeros, .len = 90000, .deflate = true},
                    {.name = "b", .data = zeros, .len = 90000, .deflate = true}};
    zent many[] = {{.name = "a", .len = 0},
                   {.name = "b", .len = 0},
                   {.name = "c", .len = 0},
                   {.name = "d", .len = 0}};
    zent longname[] = {{.name = "abcdefghijklmnopqrstuvwxyz", .len = 0}};
    zent deep[] = {{.name = "a/b/c/d", .len = 0}};
    refuse(bomb, 1, &small, "cap");
    refuse(total, 2, &small, "in total");
    refuse(many, 4, &small, "entries");
    refuse(longname, 1, &small, "longer than");
    refuse(deep, 1, &small, "deeper");
}

TEST(zip_malformed)
{
    size_t len;
    _cleanup_free_ unsigned char *z = NULL;
    _cleanup_close_ int sfd = sandbox_new();
    _cleanup_close_ int root = -1;
    rc_error err = {0};
    zent e[] = {{.name = "a", .data = "hello", .len = 5}};
    REQUIRE(sfd >= 0);
    root = openat(sfd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    z = zb_build(e, 1, &len);
    CHECK(rc_zip_is_zip(z, len));
    CHECK(!rc_zip_is_zip("PK", 2));
    CHECK(rc_zip_extract(z, 10, root, NULL, NULL, &err) < 0); /* truncated: no end record */
    CHECK(rc_zip_extract(z, len - 1, root, NULL, NULL, &err) < 0);
    CHECK(rc_zip_extract("", 0, root, NULL, NULL, &err) < 0);
    z[len - 6] ^= 0x40; /* central directory offset past the end */
    CHECK(rc_zip_extract(z, len, root, NULL, NULL, &err) < 0);
    z[len - 6] ^= 0x40;
    z[len - 13] = 1; /* 257 entries on this disk but 1 in total */
    CHECK(rc_zip_extract(z, len, root, NULL, NULL, &err) < 0);
    CHECK(strstr(err.msg, "multi-disk") != NULL);
    CHECK_INT(count_entries(sfd, "root"), 0);
    sandbox_free();
}

TEST(zip_planted_symlink_not_followed)
{
    _cleanup_close_ int sfd = sandbox_new();
    rc_error err = {0};
    char target[128];
    zent e[] = {{.name = "evil/x", .data = "x", .len = 1}};
    zent f[] = {{.name = "evilfile", .data = "x", .len = 1}};
    REQUIRE(sfd >= 0);
    snprintf(target, sizeof target, "%s/outside", sandbox);
    REQUIRE(symlinkat(target, sfd, "root/evil") == 0);
    REQUIRE(symlinkat("../outside/y", sfd, "root/evilfile") == 0);
    CHECK(extract(e, 1, NULL, NULL, &err) < 0);
    CHECK(extract(f, 1, NULL, NULL, &err) < 0);
    CHECK_INT(count_entries(sfd, "outside"), 0);
    sandbox_free();
}

TEST(zip_name_normalize)
{
    char out[64];
    rc_error err = {0};
    CHECK_INT(rc_zip_name_normalize("./a//b/", 7, NULL, out, sizeof out, &err), 1);
    CHECK_STR(out, "a/b");
    CHECK_INT(rc_zip_name_normalize("./", 2, NULL, out, sizeof out, &err), 0);
    CHECK_STR(out, "");
    CHECK(rc_zip_name_normalize("a/../b", 6, NULL, out, sizeof out, &err) < 0);
    CHECK(rc_zip_name_normalize("abc", 3, NULL, out, 3, &err) < 0);
    CHECK_INT(rc_zip_name_normalize("..a/b..", 7, NULL, out, sizeof out, &err), 1);
    CHECK_STR(out, "..a/b..");
}
