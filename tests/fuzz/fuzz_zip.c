/* fuzz_zip.c - libFuzzer target for the strict zip reader (lib/zip.h).
 *
 * Input: raw archive bytes, extracted with small caps into a fresh root two directories deep
 * inside a private sandbox, next to a canary file. After every input, with or without an error:
 * the canary is unchanged, nothing else appeared beside the root, and the tree holds only
 * regular files (0644 or 0755) and directories (0755), within the caps. */
#include "tar.h"
#include "zip.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_zip: check failed: %s (line %d)\n", #c, __LINE__);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char base[PATH_MAX], outer[PATH_MAX + 16], rootp[PATH_MAX + 32], canary[PATH_MAX + 32];
static const rc_zip_limits lim = {.max_total_bytes = 1 << 20,
                                  .max_file_bytes = 256 << 10,
                                  .max_entries = 256,
                                  .max_path_len = 512,
                                  .max_depth = 16};

/* At exit (libFuzzer's normal end), so runs do not leave /tmp/rc-fuzz-zip-PID behind. */
static void remove_base(void)
{
    rc_tar_remove_tree(AT_FDCWD, base, NULL);
}

static void setup(void)
{
    int fd;
    snprintf(base, sizeof base, "/tmp/rc-fuzz-zip-%d", (int)getpid());
    if (access(base, F_OK) != 0)
        atexit(remove_base); /* first call only: later ones find the dir */
    snprintf(outer, sizeof outer, "%s/a", base);
    snprintf(rootp, sizeof rootp, "%s/root", outer);
    snprintf(canary, sizeof canary, "%s/canary", outer);
    CHECK(mkdir(base, 0700) == 0 || errno == EEXIST);
    CHECK(mkdir(outer, 0700) == 0 || errno == EEXIST);
    fd = open(canary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, "canary", 6) == 6);
    close(fd);
}

static uint64_t check_tree(int dfd, int depth)
{
    int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
    DIR *d = fdopendir(dup_fd);
    struct dirent *de;
    uint64_t bytes = 0;
    CHECK(d);
    CHECK(depth <= 17);
    while ((de = readdir(d))) {
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        CHECK(fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0);
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            CHECK(sub >= 0);
            CHECK((st.st_mode & 07777) == 0755);
            bytes += check_tree(sub, depth + 1);
            close(sub);
        } else {
            CHECK(S_ISREG(st.st_mode));
            CHECK(st.st_nlink == 1);
            CHECK((st.st_mode & 07777) == 0644 || (st.st_mode & 07777) == 0755);
            bytes += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return bytes;
}

static void check_outer(void)
{
    char buf[16] = {0};
    int fd = open(canary, O_RDONLY | O_CLOEXEC), n = 0;
    DIR *d = opendir(outer);
    struct dirent *de;
    CHECK(fd >= 0);
    CHECK(read(fd, buf, sizeof buf) == 6 && memcmp(buf, "canary", 6) == 0);
    close(fd);
    CHECK(d);
    while ((de = readdir(d)))
        n++;
    closedir(d);
    CHECK(n == 4); /* ., .., root, canary */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    rc_error err = {0};
    rc_zip_stats st = {0};
    int root;

    if (!ready) {
        setup();
        ready = 1;
    }
    CHECK(mkdir(rootp, 0755) == 0);
    root = open(rootp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(root >= 0);
    if (rc_zip_extract(data, size, root, &lim, &st, &err) == 0) {
        CHECK(st.bytes <= lim.max_total_bytes);
        CHECK(check_tree(root, 0) == st.bytes);
    } else {
        CHECK(err.msg[0] != '\0');
        (void)check_tree(root, 0);
    }
    close(root);
    check_outer();
    CHECK(rc_tar_remove_tree(AT_FDCWD, rootp, &err) == 0);
    return 0;
}
