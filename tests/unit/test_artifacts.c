/* test_artifacts.c - the session-end artifact export (launcher/artifacts.c) over a hostile
 * scratch tree: symlinks out of the tree and in loops, a FIFO, a hard-linked file, deep
 * directories, hidden files; glob syntax (`*` per component, `**`, whole directories); the caps
 * (files, per-file size, total, depth, entries); an existing destination refused; the glob list
 * parser. */
#include "artifacts.h"
#include "cleanup.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[128];
static char ws[192];

static void put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", ws, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, text, strlen(text)) < 0)
        perror("write");
    close(fd);
}

static void dir(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", ws, rel);
    mkdir(p, 0755);
}

static void link_to(const char *target, const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", ws, rel);
    if (symlink(target, p) < 0)
        perror("symlink");
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The scratch workspace (made once; every test exports into a fresh destination). */
static void make_tree(void)
{
    char p[512], q[512];
    if (root[0])
        return;
    snprintf(root, sizeof root, "/tmp/rc-artifacts-XXXXXX");
    if (!mkdtemp(root)) {
        root[0] = '\0';
        return;
    }
    snprintf(ws, sizeof ws, "%s/ws", root);
    mkdir(ws, 0755);
    dir("out");
    dir("out/sub");
    dir("out/sub/deep");
    put("out/a.txt", "alpha\n");
    put("out/b.log", "bravo\n");
    put("out/sub/deep/c.txt", "charlie\n");
    put("out/.hidden.txt", "hidden\n");
    put("report.md", "# report\n");
    put("secret.bin", "SECRET\n");
    link_to("/etc/passwd", "out/evil.txt");       /* out of the tree */
    link_to("/etc", "out/etcdir");                /* a directory out of the tree */
    link_to("loop.txt", "out/loop.txt");          /* a loop */
    link_to("..", "out/sub/up");                  /* a directory loop */
    snprintf(p, sizeof p, "%s/out/fifo.txt", ws); /* a FIFO (would block an open) */
    mkfifo(p, 0644);
    put("out/hard.txt", "hardlinked\n");
    snprintf(p, sizeof p, "%s/out/hard.txt", ws);
    snprintf(q, sizeof q, "%s/hard-other", ws);
    if (link(p, q) < 0)
        perror("link");
    /* deep/d1/d2/.../d20/f.txt */
    size_t n = (size_t)snprintf(p, sizeof p, "deep");
    dir(p);
    for (int i = 1; i <= 20; i++) {
        n += (size_t)snprintf(p + n, sizeof p - n, "/d%d", i);
        dir(p);
    }
    snprintf(p + n, sizeof p - n, "/f.txt");
    put(p, "deepest\n");
}

__attribute__((destructor)) static void remove_tree(void)
{
    if (root[0])
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int dest_n;

static void fresh_dest(char *buf, size_t n)
{
    snprintf(buf, n, "%s/dest%d", root, ++dest_n);
}

static char *slurp(const char *dest, const char *rel)
{
    static char text[256];
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dest, rel);
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    ssize_t k = read(fd, text, sizeof text - 1);
    close(fd);
    if (k < 0)
        return NULL;
    text[k] = '\0';
    return text;
}

static bool exists(const char *dest, const char *rel)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dest, rel);
    return lstat(p, &st) == 0;
}

static int mode_of(const char *dest, const char *rel)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dest, rel);
    return lstat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static int export(const char *const *globs, const rc_artifacts_limits *lim, char *dest,
                  size_t destsz, rc_artifacts_report *rep)
{
    rc_error e = {0};
    fresh_dest(dest, destsz);
    int r = rc_artifacts_export(ws, globs, dest, lim, rep, &e);
    if (r < 0)
        fprintf(stderr, "# export: %s\n", e.msg);
    return r;
}

TEST(star_globs_skip_symlinks_fifos_hardlinks)
{
    const char *globs[] = {"out/*.txt", "report.md", NULL};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    CHECK_INT(export(globs, NULL, dest, sizeof dest, &rep), 2);
    CHECK_INT(rep.files, 2);
    CHECK_INT(rep.bytes, 6 + 9);
    CHECK_STR(slurp(dest, "out/a.txt"), "alpha\n");
    CHECK_STR(slurp(dest, "report.md"), "# report\n");
    CHECK(!exists(dest, "out/evil.txt"));
    CHECK(!exists(dest, "out/loop.txt"));
    CHECK(!exists(dest, "out/fifo.txt"));
    CHECK(!exists(dest, "out/hard.txt"));
    CHECK(!exists(dest, "out/.hidden.txt")); /* `*` never matches a leading dot */
    CHECK(!exists(dest, "out/b.log"));
    CHECK(!exists(dest, "secret.bin"));
    CHECK(!exists(dest, "out/sub")); /* `*` does not cross '/' */
    CHECK_INT(rep.skipped_symlink, 2);
    CHECK_INT(rep.skipped_special, 1);
    CHECK_INT(rep.skipped_hardlink, 1);
    CHECK_INT(rep.skipped, 4);
    CHECK_INT(mode_of(dest, ""), 0700);
    CHECK_INT(mode_of(dest, "out"), 0700);
    CHECK_INT(mode_of(dest, "out/a.txt"), 0600);
}

TEST(double_star_any_depth_and_no_symlinked_dirs)
{
    const char *globs[] = {"out/**/*.txt", NULL};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    CHECK_INT(export(globs, NULL, dest, sizeof dest, &rep), 2);
    CHECK_STR(slurp(dest, "out/a.txt"), "alpha\n");
    CHECK_STR(slurp(dest, "out/sub/deep/c.txt"), "charlie\n");
    CHECK(!exists(dest, "out/etcdir"));
    CHECK(!exists(dest, "out/sub/up"));
}

TEST(directory_glob_exports_everything_under_it)
{
    const char *globs[] = {"out/sub/", NULL};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    CHECK_INT(export(globs, NULL, dest, sizeof dest, &rep), 1);
    CHECK_STR(slurp(dest, "out/sub/deep/c.txt"), "charlie\n");
    CHECK_INT(rep.skipped_symlink, 1); /* out/sub/up */
}

TEST(whole_tree_never_leaks_outside_content)
{
    const char *globs[] = {"**", NULL};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    int r = export(globs, NULL, dest, sizeof dest, &rep);
    CHECK(r >= 7); /* a b c .hidden report secret deep/.../f */
    CHECK_STR(slurp(dest, "deep/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/d15/d16/d17/d18/"
                          "d19/d20/f.txt"),
              "deepest\n");
    CHECK(!exists(dest, "hard-other"));
    CHECK(!exists(dest, "out/etcdir"));
    CHECK_INT(rep.skipped_hardlink, 2);
    CHECK_INT(rep.skipped_error, 0);
}

TEST(depth_cap)
{
    const char *globs[] = {"deep/**", NULL};
    rc_artifacts_limits lim = {.max_depth = 5};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    CHECK_INT(export(globs, &lim, dest, sizeof dest, &rep), 0);
    CHECK_INT(rep.skipped_depth, 1);
    CHECK(!exists(dest, "")); /* nothing exported: the empty destination is removed */
}

TEST(file_count_cap)
{
    const char *globs[] = {"out/*.txt", "report.md", "secret.bin", NULL};
    rc_artifacts_limits lim = {.max_files = 1};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    CHECK_INT(export(globs, &lim, dest, sizeof dest, &rep), 1);
    CHECK_INT(rep.skipped_cap, 2);
}

TEST(per_file_and_total_caps)
{
    const char *globs[] = {"out/a.txt", "report.md", "out/sub/deep/c.txt", NULL};
    rc_artifacts_limits lim = {.max_file_bytes = 7, .max_total_bytes = 100};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    CHECK_INT(export(globs, &lim, dest, sizeof dest, &rep), 1); /* report.md, c.txt > 7 */
    CHECK_INT(rep.skipped_too_big, 2);
    lim = (rc_artifacts_limits){.max_total_bytes = 10};
    /* 6, 8 and 9 bytes: whichever comes first fits, no second one does */
    CHECK_INT(export(globs, &lim, dest, sizeof dest, &rep), 1);
    CHECK(rep.bytes >= 6 && rep.bytes <= 9);
    CHECK_INT(rep.skipped_cap, 2);
}

TEST(entry_cap_truncates_walk)
{
    const char *globs[] = {"**", NULL};
    rc_artifacts_limits lim = {.max_entries = 3};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    CHECK(export(globs, &lim, dest, sizeof dest, &rep) >= 0);
    CHECK_INT(rep.walk_truncated, 1);
}

TEST(existing_destination_refused)
{
    const char *globs[] = {"report.md", NULL};
    rc_artifacts_report rep = {0};
    rc_error e = {0};
    char dest[256], target[256];
    make_tree();
    REQUIRE(root[0]);
    fresh_dest(dest, sizeof dest);
    REQUIRE(mkdir(dest, 0700) == 0);
    CHECK_INT(rc_artifacts_export(ws, globs, dest, NULL, &rep, &e), -RC_EINVAL);
    /* a symlink planted at the destination is not followed either */
    fresh_dest(target, sizeof target);
    REQUIRE(mkdir(target, 0700) == 0);
    fresh_dest(dest, sizeof dest);
    REQUIRE(symlink(target, dest) == 0);
    CHECK(rc_artifacts_export(ws, globs, dest, NULL, &rep, &e) < 0);
    CHECK(!slurp(target, "report.md"));
}

TEST(no_globs_exports_nothing)
{
    const char *globs[] = {NULL};
    rc_artifacts_report rep;
    char dest[256];
    make_tree();
    REQUIRE(root[0]);
    CHECK_INT(export(globs, NULL, dest, sizeof dest, &rep), 0);
    CHECK_INT(rep.files, 0);
    CHECK(!exists(dest, ""));
}

TEST(parse_globs)
{
    char **g = NULL;
    rc_error e = {0};
    REQUIRE(rc_artifacts_parse_globs(" out/*.txt , report.md,,dir/ ", &g, &e) == 0);
    CHECK_STR(g[0], "out/*.txt");
    CHECK_STR(g[1], "report.md");
    CHECK_STR(g[2], "dir");
    CHECK(g[3] == NULL);
    rc_artifacts_globs_free(g);
    REQUIRE(rc_artifacts_parse_globs(NULL, &g, &e) == 0);
    CHECK(g[0] == NULL);
    rc_artifacts_globs_free(g);
    g = NULL;
    CHECK_INT(rc_artifacts_parse_globs("/etc/shadow", &g, &e), -RC_EINVAL);
    CHECK_INT(rc_artifacts_parse_globs("out/../x", &g, &e), -RC_EINVAL);
    CHECK_INT(rc_artifacts_parse_globs("..", &g, &e), -RC_EINVAL);
    CHECK_INT(rc_artifacts_parse_globs("a//b", &g, &e), -RC_EINVAL);
    CHECK_INT(rc_artifacts_parse_globs("./a", &g, &e), -RC_EINVAL);
    CHECK(g == NULL);
}
