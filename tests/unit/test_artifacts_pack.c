/* test_artifacts_pack.c - the tarball form of an artifacts export and the pruning of old exports
 * (launcher/artifacts_pack.c): the archive read back with the project's strict tar reader
 * (names incl. a pax long name, sizes, contents, modes, sorted order, end marker), no .partial
 * left behind, a failed pack leaves no archive; pruning removes only old export-shaped entries
 * of sesn_* directories and empty session directories. */
#include "../oci/tar.h"
#include "artifacts.h"
#include "cleanup.h"
#include "harness.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char root[128];

static void path_of(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s/%s", root, rel);
}

static void put(const char *rel, const char *text, size_t len)
{
    char p[512];
    path_of(p, sizeof p, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (write(fd, text, len) != (ssize_t)len)
        perror("write");
    close(fd);
}

static void mk(const char *rel)
{
    char p[512];
    path_of(p, sizeof p, rel);
    mkdir(p, 0700);
}

static bool exists(const char *rel)
{
    char p[512];
    struct stat st;
    path_of(p, sizeof p, rel);
    return lstat(p, &st) == 0;
}

static void age(const char *rel, time_t when)
{
    char p[512];
    struct timespec ts[2] = {{.tv_sec = when}, {.tv_sec = when}};
    path_of(p, sizeof p, rel);
    utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/rc-artpack-%d", (int)getpid());
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(root, 0700);
}

static void teardown(void)
{
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int gz_source_read(void *ctx, void *buf, size_t n, rc_error *err)
{
    int k = gzread((gzFile)ctx, buf, (unsigned)n);
    if (k < 0)
        return rc_error_set(err, RC_EIO, "gzread");
    return k;
}

/* Read the archive back: "path:size:mode;..." for every entry, and the concatenated data. */
static int read_back(const char *archive, char *list, size_t list_n, char *data, size_t data_n)
{
    gzFile gz = gzopen(archive, "rb");
    rc_tar_source src = {gz_source_read, gz};
    _cleanup_(rc_tar_reader_freep) rc_tar_reader *rd = NULL;
    const rc_tar_entry *e;
    size_t used = 0, dused = 0;
    int r;
    if (!gz || rc_tar_reader_new(&src, NULL, &rd, NULL) < 0)
        return -1;
    list[0] = data[0] = '\0';
    while ((r = rc_tar_next(rd, &e, NULL)) == 1) {
        used += (size_t)snprintf(list + used, list_n - used, "%s:%llu:%o;", e->path,
                                 (unsigned long long)e->size, (unsigned)e->mode & 07777);
        int k;
        while ((k = rc_tar_read_data(rd, data + dused, data_n - dused - 1, NULL)) > 0)
            dused += (size_t)k;
        data[dused] = '\0';
    }
    gzclose(gz);
    return r;
}

TEST(pack_reads_back_in_name_order_with_long_names)
{
    char list[4096], data[256], dir[512], out[512], longdir[160];
    setup();
    memset(longdir, 'd', 120);
    longdir[120] = '\0';
    mk("exp");
    mk("exp/sub");
    put("exp/b.txt", "bee", 3);
    put("exp/a.txt", "ay", 2);
    put("exp/sub/empty", "", 0);
    char rel[300];
    snprintf(rel, sizeof rel, "exp/%s", longdir);
    mk(rel);
    snprintf(rel, sizeof rel, "exp/%s/deep.md", longdir);
    put(rel, "deep", 4);
    path_of(dir, sizeof dir, "exp");
    path_of(out, sizeof out, "exp.tar.gz");
    CHECK_INT(rc_artifacts_pack(dir, out, NULL), 0);
    CHECK(!exists("exp.tar.gz.partial"));
    REQUIRE(read_back(out, list, sizeof list, data, sizeof data) == 0);
    char want[4096];
    snprintf(want, sizeof want,
             "a.txt:2:600;b.txt:3:600;%s/:0:700;%s/deep.md:4:600;sub/:0:700;sub/empty:0:600;",
             longdir, longdir);
    CHECK_STR(list, want);
    CHECK_STR(data, "aybeedeep");
    teardown();
}

TEST(pack_of_missing_dir_fails_and_leaves_nothing)
{
    char dir[512], out[512];
    setup();
    path_of(dir, sizeof dir, "nope");
    path_of(out, sizeof out, "nope.tar.gz");
    rc_error e = {0};
    CHECK(rc_artifacts_pack(dir, out, &e) < 0);
    CHECK(e.msg[0] != '\0');
    CHECK(!exists("nope.tar.gz"));
    CHECK(!exists("nope.tar.gz.partial"));
    teardown();
}

TEST(export_names)
{
    CHECK(rc_artifacts_is_export_name("20261123T215200.123Z"));
    CHECK(rc_artifacts_is_export_name("20261123T215200.123Z.tar.gz"));
    CHECK(rc_artifacts_is_export_name("20261123T215200.123Z.tar.gz.partial"));
    CHECK(!rc_artifacts_is_export_name("20261123T215200.123Z.tar"));
    CHECK(!rc_artifacts_is_export_name("20261123T215200.123"));
    CHECK(!rc_artifacts_is_export_name("2026112xT215200.123Z"));
    CHECK(!rc_artifacts_is_export_name("notes.txt"));
    CHECK(!rc_artifacts_is_export_name(""));
}

TEST(prune_removes_only_old_exports)
{
    time_t now = time(NULL), old = now - 10 * 86400;
    setup();
    mk("sesn_a");
    mk("sesn_a/20200101T000000.000Z");
    put("sesn_a/20200101T000000.000Z/f", "x", 1);
    age("sesn_a/20200101T000000.000Z", old);
    put("sesn_a/20200102T000000.000Z.tar.gz", "gz", 2);
    age("sesn_a/20200102T000000.000Z.tar.gz", old);
    put("sesn_a/20991231T000000.000Z.tar.gz", "new", 3);
    put("sesn_a/notes.txt", "keep", 4);
    age("sesn_a/notes.txt", old);
    mk("sesn_b");
    put("sesn_b/20200101T000000.000Z.tar.gz", "gz", 2);
    age("sesn_b/20200101T000000.000Z.tar.gz", old);
    mk("other");
    put("other/20200101T000000.000Z.tar.gz", "gz", 2);
    age("other/20200101T000000.000Z.tar.gz", old);

    CHECK_INT(rc_artifacts_prune(root, now - 86400, NULL), 3);
    CHECK(!exists("sesn_a/20200101T000000.000Z"));
    CHECK(!exists("sesn_a/20200102T000000.000Z.tar.gz"));
    CHECK(exists("sesn_a/20991231T000000.000Z.tar.gz"));
    CHECK(exists("sesn_a/notes.txt"));
    CHECK(!exists("sesn_b"));
    CHECK(exists("other/20200101T000000.000Z.tar.gz"));
    teardown();
    CHECK_INT(rc_artifacts_prune(root, now, NULL), 0); /* missing root: nothing to do */
}
