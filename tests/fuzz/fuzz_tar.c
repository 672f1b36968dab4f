/* fuzz_tar.c - libFuzzer target for the tar reader and the safe extractor (oci/tar.h).
 *
 * Input: raw archive bytes, extracted (with small caps) into a fresh root four directories deep
 * inside a private sandbox, next to a canary directory. After every input, with or without an
 * error: nothing exists in the sandbox but the path to root and the canary, the canary is
 * unchanged, and the tree holds only regular files, directories and symlinks, with no
 * setuid/setgid bits, no group/other write bits on files and no write bits on directories
 * (except the mount points the extractor adds with fixed modes). Odd inputs also go through the
 * reader alone, reading data in odd-sized pieces, to cover its API apart from the extractor. */
#include "snapshot.h"
#include "tar.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_tar: check failed: %s (line %d)\n", #c, __LINE__);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char base[PATH_MAX];           /* /tmp/rc-fuzz-tar-PID */
static char levels[3][PATH_MAX + 16]; /* base/a, base/a/b, base/a/b/c */
static char rootp[PATH_MAX + 32], canary[PATH_MAX + 48];

typedef struct memsrc {
    const uint8_t *p;
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

/* At exit (libFuzzer's normal end), so runs do not leave /tmp/rc-fuzz-tar-PID behind. */
static void remove_base(void)
{
    rc_tar_remove_tree(AT_FDCWD, base, NULL);
}

static void setup(void)
{
    int fd;
    snprintf(base, sizeof base, "/tmp/rc-fuzz-tar-%d", (int)getpid());
    snprintf(levels[0], sizeof levels[0], "%s/a", base);
    snprintf(levels[1], sizeof levels[1], "%s/a/b", base);
    snprintf(levels[2], sizeof levels[2], "%s/a/b/c", base);
    snprintf(rootp, sizeof rootp, "%s/root", levels[2]);
    snprintf(canary, sizeof canary, "%s/outside", levels[2]);
    rc_tar_remove_tree(AT_FDCWD, base, NULL);
    CHECK(mkdir(base, 0700) == 0);
    static bool registered;
    if (!registered && atexit(remove_base) == 0)
        registered = true;
    for (int i = 0; i < 3; i++)
        CHECK(mkdir(levels[i], 0755) == 0);
    CHECK(mkdir(canary, 0755) == 0);
    char t[PATH_MAX + 64];
    snprintf(t, sizeof t, "%s/target", canary);
    fd = open(t, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    CHECK(fd >= 0 && write(fd, "canary", 6) == 6);
    close(fd);
}

/* dir holds exactly the names given (NULL-terminated). */
static void only(const char *dir, const char *a, const char *b)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    CHECK(d);
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (strcmp(de->d_name, a) != 0 && (!b || strcmp(de->d_name, b) != 0)) {
            fprintf(stderr, "fuzz_tar: unexpected %s/%s\n", dir, de->d_name);
            abort();
        }
    }
    closedir(d);
}

static void check_canary(void)
{
    char t[PATH_MAX + 64], buf[16] = {0};
    struct stat st;
    snprintf(t, sizeof t, "%s/target", canary);
    int fd = open(t, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 6 && memcmp(buf, "canary", 6) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_nlink == 1 && (st.st_mode & 07777) == 0644);
    close(fd);
    only(canary, "target", NULL);
    only(base, "a", NULL);
    only(levels[0], "b", NULL);
    only(levels[1], "c", NULL);
    only(levels[2], "root", "outside");
}

static int is_mountpoint(const char *rel)
{
    for (size_t i = 0; i < rc_snapshot_n_mountpoints; i++)
        if (strcmp(rel, rc_snapshot_mountpoints[i].path) == 0)
            return 1;
    return 0;
}

static void check_tree(int dfd, const char *rel, int depth)
{
    DIR *d;
    struct dirent *de;
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0 && depth < 64);
    d = fdopendir(fd);
    CHECK(d);
    while ((de = readdir(d))) {
        struct stat st;
        char sub[PATH_MAX];
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        CHECK(fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0);
        CHECK(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode));
        if (S_ISREG(st.st_mode))
            CHECK((st.st_mode & 07022) == 0);
        if (S_ISDIR(st.st_mode)) {
            if (!is_mountpoint(sub))
                CHECK((st.st_mode & 07222) == 0);
            int c = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            CHECK(c >= 0);
            check_tree(c, sub, depth + 1);
            close(c);
        }
    }
    closedir(d);
}

static void reader_only(const uint8_t *data, size_t size, const rc_tar_limits *lim)
{
    memsrc m = {.p = data, .len = size, .chunk = 13};
    rc_tar_source src = {.read = mem_read, .ctx = &m};
    rc_tar_reader *r = NULL;
    const rc_tar_entry *e;
    char buf[37];
    int rc;
    CHECK(rc_tar_reader_new(&src, lim, &r, NULL) == 0);
    while ((rc = rc_tar_next(r, &e, NULL)) > 0) {
        CHECK(e->path && e->link && strlen(e->path) <= lim->max_path_len);
        CHECK(e->size <= lim->max_file_bytes);
        while ((rc = rc_tar_read_data(r, buf, sizeof buf, NULL)) > 0)
            CHECK((size_t)rc <= sizeof buf);
        if (rc < 0)
            break;
    }
    rc_tar_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    rc_tar_limits lim = {.max_total_bytes = 1 << 20,
                         .max_file_bytes = 256 << 10,
                         .max_entries = 256,
                         .max_path_len = 1024,
                         .max_depth = 32,
                         .max_meta_bytes = 64 << 10};
    memsrc m = {.p = data, .len = size, .chunk = size % 7 ? 4096 : 0};
    rc_tar_source src = {.read = mem_read, .ctx = &m};
    rc_error err = {0};
    int fd, rc;

    if (!ready) {
        setup();
        ready = 1;
    }
    if (size % 3 == 0)
        reader_only(data, size, &lim);
    CHECK(mkdir(rootp, 0755) == 0);
    fd = open(rootp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0);
    rc = rc_tar_extract(&src, fd, &lim, rc_snapshot_mountpoints, rc_snapshot_n_mountpoints, NULL,
                        &err);
    CHECK(rc == 0 || (rc < 0 && err.msg[0]));
    check_canary();
    if (rc == 0)
        check_tree(fd, "", 0);
    close(fd);
    CHECK(rc_tar_remove_tree(AT_FDCWD, rootp, NULL) == 0);
    return 0;
}
