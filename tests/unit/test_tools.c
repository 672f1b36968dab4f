/* test_tools.c - the built-in tools (runner/tools.h) against the texts of protocol section 17:
 * table-driven cases per tool (success and every error message), path confinement escapes,
 * the persistent bash shell (state, timeouts, truncation, ANSI, exit codes, cancellation,
 * environment scrubbing), the tool user's ids, and the helpers underneath (lexical paths, UTF-8
 * repair, the glob matcher, the grep dialect). Every test builds its own mkdtemp tree:
 *   <base>/work      the workdir (files, symlinks in and out, a loop, a FIFO)
 *   <base>/outside   a directory the tools must never reach (outside/secret.txt) */
#include "cleanup.h"
#include "harness.h"
#include "tools.h"
#include "tools_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- fixture ------------------------------------------------------------------------------ */

typedef struct fixture {
    char base[64];
    char work[128];
    char outside[128];
    rc_toolbox *tb;
} fixture;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        chmod(p, 0700);
    return remove(p);
}

static void rmtree(const char *p)
{
    nftw(p, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static void fx_free(fixture *f)
{
    rc_toolbox_free(f->tb);
    f->tb = NULL;
    if (f->base[0])
        rmtree(f->base);
}

static void put_file(const char *dir, const char *name, const char *content, size_t len)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, content, len) < 0)
        perror("write");
    close(fd);
}

static void put_text(const char *dir, const char *name, const char *content)
{
    put_file(dir, name, content, strlen(content));
}

static void mk_dir(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    mkdir(p, 0755);
}

static void mk_link(const char *dir, const char *name, const char *target)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    if (symlink(target, p) < 0)
        perror("symlink");
}

/* The standard tree; the toolbox is made from cfg with workdir filled in. */
static int fx_init_cfg(fixture *f, rc_toolbox_config cfg)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->base, sizeof(f->base), "/tmp/rc-tools-XXXXXX");
    if (!mkdtemp(f->base))
        return -1;
    char *real = realpath(f->base, NULL);
    if (!real)
        return -1;
    snprintf(f->base, sizeof(f->base), "%s", real);
    free(real);
    snprintf(f->work, sizeof(f->work), "%s/work", f->base);
    snprintf(f->outside, sizeof(f->outside), "%s/outside", f->base);
    mkdir(f->work, 0755);
    mkdir(f->outside, 0755);
    put_text(f->outside, "secret.txt", "TOPSECRET\n");
    put_text(f->work, "hello.txt", "line1\nline2\nline3\n");
    put_text(f->work, "dup.txt", "foo bar foo\n");
    put_text(f->work, "empty.txt", "");
    put_text(f->work, "bad-utf8.txt",
             "a\xff"
             "b\xe2\x82");
    mk_dir(f->work, "sub");
    put_text(f->work, "sub/a.c", "int main(void) { return 0; }\n");
    put_text(f->work, "sub/b.h", "#define X 1\n");
    mk_dir(f->work, "dir");
    mk_dir(f->work, ".git");
    put_text(f->work, ".git/config", "[core]\n");
    mk_dir(f->work, "node_modules");
    put_text(f->work, "node_modules/x.c", "int main(void) { return 1; }\n");
    mk_link(f->work, "link_out", "../outside");
    mk_link(f->work, "link_secret", "../outside/secret.txt");
    mk_link(f->work, "link_abs", f->outside);
    mk_link(f->work, "loop1", "loop2");
    mk_link(f->work, "loop2", "loop1");
    mk_link(f->work, "dangling_out", "/nonexistent-rc-outside/x");
    mk_link(f->work, "link_in", "hello.txt");
    mk_link(f->work, "link_sub", "sub");
    char fifo[256];
    snprintf(fifo, sizeof(fifo), "%s/fifo", f->work);
    mkfifo(fifo, 0600);
    char big[5000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (i % 100 == 99) ? '\n' : 'x';
    put_file(f->work, "big.txt", big, sizeof(big));
    char oneline[5000];
    memset(oneline, 'y', sizeof(oneline));
    oneline[0] = 'a';
    oneline[1] = '\n';
    put_file(f->work, "oneline.txt", oneline, sizeof(oneline));
    cfg.workdir = f->work;
    return rc_toolbox_new(&cfg, &f->tb, NULL);
}

static const char *const TEST_ENV[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
                                       "HOME=/root",
                                       "KEEP_ME=1",
                                       "ANTHROPIC_FOO=secret-foo",
                                       "anthropic_lower=secret-lower",
                                       "Anthropic_Api_Key=secret-key",
                                       "RUNCELL_API_SOCKET=/run/x.sock",
                                       NULL};

static int fx_init(fixture *f)
{
    return fx_init_cfg(f, (rc_toolbox_config){.env = TEST_ENV,
                                              .rg_mode = RC_TOOLBOX_RG_NEVER,
                                              .max_file_bytes = 4096});
}

/* Replace {W} (workdir) and {O} (outside) in s; the result is static per call slot. */
static const char *subst(const fixture *f, const char *s, char *out, size_t outsz)
{
    size_t o = 0;
    for (const char *p = s; *p && o + 1 < outsz;) {
        const char *rep = NULL;
        if (!strncmp(p, "{W}", 3))
            rep = f->work;
        else if (!strncmp(p, "{O}", 3))
            rep = f->outside;
        if (rep) {
            o += (size_t)snprintf(out + o, outsz - o, "%s", rep);
            p += 3;
        } else {
            out[o++] = *p++;
        }
    }
    out[o < outsz ? o : outsz - 1] = '\0';
    return out;
}

/* Run a tool; the text of its single block (or "<image:media>") is returned, NULL on failure. */
static char *call(fixture *f, const char *tool, const char *json, int *is_error)
{
    size_t insz = strlen(json) * 2 + 1024;
    _cleanup_free_ char *in = malloc(insz);
    if (!in)
        return NULL;
    subst(f, json, in, insz);
    cJSON *input = cJSON_Parse(in);
    if (!input) {
        printf("#   bad test JSON: %.200s\n", in);
        return NULL;
    }
    rc_tool_result res = {0};
    rc_error err = {0};
    int r = rc_toolbox_run(f->tb, tool, input, &res, &err);
    cJSON_Delete(input);
    if (r < 0) {
        printf("#   rc_toolbox_run(%s): %d %s\n", tool, r, err.msg);
        return NULL;
    }
    *is_error = res.is_error;
    char *text = NULL;
    const char *t = rc_tool_result_text(&res);
    if (t)
        text = strdup(t);
    else {
        const cJSON *b = cJSON_GetArrayItem(res.content, 0);
        const cJSON *src = cJSON_GetObjectItem(b, "source");
        const cJSON *mt = cJSON_GetObjectItem(src, "media_type");
        char buf[128];
        snprintf(buf, sizeof(buf), "<image:%s>", cJSON_IsString(mt) ? mt->valuestring : "?");
        text = strdup(buf);
    }
    rc_tool_result_clear(&res);
    return text;
}

typedef struct tool_case {
    const char *tool;
    const char *input;
    int is_error;
    const char *expect; /* exact text, after {W}/{O} substitution */
} tool_case;

static void run_cases(fixture *f, const tool_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const tool_case *c = &cases[i];
        int is_error = -1;
        _cleanup_free_ char *got = call(f, c->tool, c->input, &is_error);
        char want[8192];
        subst(f, c->expect, want, sizeof(want));
        if (!got) {
            rc_test_fail(__FILE__, __LINE__, "case %zu %s %s: no result", i, c->tool, c->input);
            continue;
        }
        if (strcmp(got, want) != 0 || is_error != c->is_error)
            rc_test_fail(__FILE__, __LINE__,
                         "case %zu %s %s:\n#     got  (%d) \"%.300s\"\n#     want (%d) \"%.300s\"",
                         i, c->tool, c->input, is_error, got, c->is_error, want);
    }
}

#define RUN_CASES(f, cases) run_cases(f, cases, sizeof(cases) / sizeof(cases[0]))

static char *read_back(const fixture *f, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", f->work, name);
    FILE *fp = fopen(p, "re");
    if (!fp)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, fp) : 0;
    if (buf)
        buf[n] = '\0';
    fclose(fp);
    return buf;
}

static mode_t mode_of(const fixture *f, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", f->work, name);
    return stat(p, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

#define X10     "xxxxxxxxxx"
#define X99     X10 X10 X10 X10 X10 X10 X10 X10 X10 "xxxxxxxxx"
#define OUTSIDE " is outside the session's working directory"
#define READ_CAP                                                                                   \
    "exceeds 4096-byte limit. Use the view_range parameter to read specific line ranges, e.g. "    \
    "view_range: [1, 500]."

/* ---- read --------------------------------------------------------------------------------- */

static const tool_case READ_CASES[] = {
    {"read", "{}", 1, "read: file_path is required"},
    {"read", "{\"file_path\":\"\"}", 1, "read: file_path is required"},
    {"read", "{\"file_path\":null}", 1, "read: file_path is required"},
    {"read", "{\"file_path\":5}", 1, "read: file_path must be a string"},
    {"read", "{\"file_path\":\"hello.txt\"}", 0, "line1\nline2\nline3\n"},
    {"read", "{\"file_path\":\"./sub/../hello.txt\"}", 0, "line1\nline2\nline3\n"},
    {"read", "{\"file_path\":\"{W}/hello.txt\"}", 0, "line1\nline2\nline3\n"},
    {"read", "{\"file_path\":\"link_in\"}", 0, "line1\nline2\nline3\n"},
    {"read", "{\"file_path\":\"empty.txt\"}", 0, "(no output)"},
    {"read", "{\"file_path\":\"bad-utf8.txt\"}", 0,
     "a\xEF\xBF\xBD"
     "b\xEF\xBF\xBD"},
    /* confinement */
    {"read", "{\"file_path\":\"../outside/secret.txt\"}", 1,
     "path \"../outside/secret.txt\"" OUTSIDE},
    {"read", "{\"file_path\":\"{O}/secret.txt\"}", 1, "path \"{O}/secret.txt\"" OUTSIDE},
    {"read", "{\"file_path\":\"/etc/passwd\"}", 1, "path \"/etc/passwd\"" OUTSIDE},
    {"read", "{\"file_path\":\"link_secret\"}", 1, "path \"link_secret\"" OUTSIDE},
    {"read", "{\"file_path\":\"link_out/secret.txt\"}", 1, "path \"link_out/secret.txt\"" OUTSIDE},
    {"read", "{\"file_path\":\"link_abs/secret.txt\"}", 1, "path \"link_abs/secret.txt\"" OUTSIDE},
    {"read", "{\"file_path\":\"dangling_out\"}", 1, "path \"dangling_out\"" OUTSIDE},
    {"read", "{\"file_path\":\"../../../../../../etc/passwd\"}", 1,
     "path \"../../../../../../etc/passwd\"" OUTSIDE},
    {"read", "{\"file_path\":\"sub/../../outside/secret.txt\"}", 1,
     "path \"sub/../../outside/secret.txt\"" OUTSIDE},
    {"read", "{\"file_path\":\"loop1\"}", 1, "path \"loop1\": too many levels of symbolic links"},
    {"read", "{\"file_path\":\"loop1/x\"}", 1,
     "path \"loop1/x\": too many levels of symbolic links"},
    {"read", "{\"file_path\":\"../x\\\"y\\n\\u0001\"}", 1, "path \"../x\\\"y\\n\\u0001\"" OUTSIDE},
    /* filesystem errors */
    {"read", "{\"file_path\":\"missing.txt\"}", 1, "read: missing.txt: no such file or directory"},
    {"read", "{\"file_path\":\"nodir/missing.txt\"}", 1,
     "read: nodir/missing.txt: no such file or directory"},
    {"read", "{\"file_path\":\"hello.txt/x\"}", 1, "read: hello.txt/x: not a directory"},
    {"read", "{\"file_path\":\"sub\"}", 1, "read: sub is not a regular file"},
    {"read", "{\"file_path\":\"link_sub\"}", 1, "read: link_sub is not a regular file"},
    {"read", "{\"file_path\":\".\"}", 1, "read: . is not a regular file"},
    {"read", "{\"file_path\":\"fifo\"}", 1, "read: fifo is not a regular file"},
    /* view_range */
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[2,3]}", 0, "line2\nline3"},
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[2,0]}", 0, "line2\nline3\n"},
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[2,-1]}", 0, "line2\nline3\n"},
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[-5,1]}", 0, "line1"},
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[3,2]}", 0, "(no output)"},
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[4,4]}", 0, "(no output)"},
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[]}", 0, "line1\nline2\nline3\n"},
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[1]}", 1,
     "read: view_range must be [start_line, end_line]"},
    {"read", "{\"file_path\":\"hello.txt\",\"view_range\":[1,2,3]}", 1,
     "read: view_range must be [start_line, end_line]"},
    /* the view_range check comes after confinement, before the file is looked at */
    {"read", "{\"file_path\":\"missing.txt\",\"view_range\":[1]}", 1,
     "read: view_range must be [start_line, end_line]"},
    {"read", "{\"file_path\":\"../x\",\"view_range\":[1]}", 1, "path \"../x\"" OUTSIDE},
    /* size cap (4096 in this fixture) */
    {"read", "{\"file_path\":\"big.txt\"}", 1, "read: big.txt is 5000 bytes, " READ_CAP},
    {"read", "{\"file_path\":\"big.txt\",\"view_range\":[2,2]}", 0, X99},
    {"read", "{\"file_path\":\"big.txt\",\"view_range\":[1,0]}", 1,
     "read: view_range [1, 0] of big.txt exceeds 4096-byte limit. Narrow the view_range to read a "
     "smaller portion."},
    {"read", "{\"file_path\":\"oneline.txt\",\"view_range\":[2,2]}", 1,
     "read: line 2 of oneline.txt alone exceeds 4096-byte limit. The read tool cannot return part "
     "of a line, so view_range cannot narrow this further."},
    {"read", "{\"file_path\":\"oneline.txt\",\"view_range\":[1,1]}", 0, "a"},
};

TEST(read_cases)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    RUN_CASES(&f, READ_CASES);
}

TEST(read_images_as_image_blocks)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    put_file(f.work, "pic.png", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    put_file(f.work, "fake.png", "not a png", 9);
    int is_error;
    _cleanup_free_ char *a = call(&f, "read", "{\"file_path\":\"pic.png\"}", &is_error);
    CHECK_STR(a, "<image:image/png>");
    CHECK_INT(is_error, 0);
    _cleanup_free_ char *b = call(&f, "read", "{\"file_path\":\"fake.png\"}", &is_error);
    CHECK_STR(b, "not a png");

    /* the data round-trips */
    cJSON *in = cJSON_Parse("{\"file_path\":\"pic.png\"}");
    rc_tool_result res = {0};
    REQUIRE(rc_toolbox_run(f.tb, "read", in, &res, NULL) == 0);
    cJSON *src = cJSON_GetObjectItem(cJSON_GetArrayItem(res.content, 0), "source");
    CHECK_STR(cJSON_GetObjectItem(src, "type")->valuestring, "base64");
    CHECK_STR(cJSON_GetObjectItem(src, "data")->valuestring, "iVBORw0KGgoAAAANSUhEUg==");
    rc_tool_result_clear(&res);
    cJSON_Delete(in);
}

TEST(read_text_only_returns_images_as_text)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init_cfg(&f, (rc_toolbox_config){.env = TEST_ENV,
                                                .rg_mode = RC_TOOLBOX_RG_NEVER,
                                                .read_text_only = true}) == 0);
    put_file(f.work, "pic.png", "\x89PNG\r\n\x1a\nabc", 11);
    int is_error;
    _cleanup_free_ char *a = call(&f, "read", "{\"file_path\":\"pic.png\"}", &is_error);
    CHECK_STR(a, "\xEF\xBF\xBDPNG\r\n\x1a\nabc");
}

TEST(read_default_cap_is_256k)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init_cfg(&f, (rc_toolbox_config){.env = TEST_ENV}) == 0);
    char *big = malloc(262145);
    REQUIRE(big);
    memset(big, 'z', 262145);
    put_file(f.work, "huge.txt", big, 262145);
    put_file(f.work, "exact.txt", big, 262144);
    free(big);
    int is_error;
    _cleanup_free_ char *a = call(&f, "read", "{\"file_path\":\"huge.txt\"}", &is_error);
    CHECK_STR(a, "read: huge.txt is 262145 bytes, exceeds 262144-byte limit. Use the view_range "
                 "parameter to read specific line ranges, e.g. view_range: [1, 500].");
    _cleanup_free_ char *b = call(&f, "read", "{\"file_path\":\"exact.txt\"}", &is_error);
    REQUIRE(b);
    CHECK_INT(strlen(b), 262144);
    CHECK_INT(is_error, 0);
}

TEST(read_allowed_roots)
{
    _cleanup_(fx_free) fixture f = {0};
    char outside[128];
    {
        fixture tmp;
        REQUIRE(fx_init(&tmp) == 0);
        rc_toolbox_free(tmp.tb);
        tmp.tb = NULL;
        f = tmp;
    }
    snprintf(outside, sizeof(outside), "%s", f.outside);
    const char *roots[] = {outside, NULL};
    REQUIRE(rc_toolbox_new(&(rc_toolbox_config){.workdir = f.work,
                                                .allowed_roots = roots,
                                                .env = TEST_ENV,
                                                .rg_mode = RC_TOOLBOX_RG_NEVER},
                           &f.tb, NULL) == 0);
    static const tool_case cases[] = {
        {"read", "{\"file_path\":\"{O}/secret.txt\"}", 0, "TOPSECRET\n"},
        {"read", "{\"file_path\":\"link_secret\"}", 0, "TOPSECRET\n"},
        {"read", "{\"file_path\":\"/etc/passwd\"}", 1,
         "path \"/etc/passwd\" is outside the session's working directory and its other "
         "permitted directories"},
    };
    RUN_CASES(&f, cases);
}

/* ---- write -------------------------------------------------------------------------------- */

static const tool_case WRITE_CASES[] = {
    {"write", "{}", 1, "write: file_path is required"},
    {"write", "{\"content\":\"x\"}", 1, "write: file_path is required"},
    {"write", "{\"file_path\":[]}", 1, "write: file_path must be a string"},
    {"write", "{\"file_path\":\"c.txt\",\"content\":7}", 1, "write: content must be a string"},
    {"write", "{\"file_path\":\"new.txt\",\"content\":\"hi\"}", 0, "wrote 2 bytes to new.txt"},
    {"write", "{\"file_path\":\"u.txt\",\"content\":\"\xC3\xA9\"}", 0, "wrote 2 bytes to u.txt"},
    {"write", "{\"file_path\":\"nocontent.txt\"}", 0, "wrote 0 bytes to nocontent.txt"},
    {"write", "{\"file_path\":\"deep/er/x.txt\",\"content\":\"d\"}", 0,
     "wrote 1 bytes to deep/er/x.txt"},
    {"write", "{\"file_path\":\"{W}/abs.txt\",\"content\":\"a\"}", 0,
     "wrote 1 bytes to {W}/abs.txt"},
    {"write", "{\"file_path\":\"link_in\",\"content\":\"replaced\"}", 0,
     "wrote 8 bytes to link_in"},
    {"write", "{\"file_path\":\"../escape.txt\",\"content\":\"x\"}", 1,
     "path \"../escape.txt\"" OUTSIDE},
    {"write", "{\"file_path\":\"link_out/x.txt\",\"content\":\"x\"}", 1,
     "path \"link_out/x.txt\"" OUTSIDE},
    {"write", "{\"file_path\":\"link_secret\",\"content\":\"x\"}", 1,
     "path \"link_secret\"" OUTSIDE},
    {"write", "{\"file_path\":\"dangling_out\",\"content\":\"x\"}", 1,
     "path \"dangling_out\"" OUTSIDE},
    {"write", "{\"file_path\":\"{O}/new.txt\",\"content\":\"x\"}", 1,
     "path \"{O}/new.txt\"" OUTSIDE},
    {"write", "{\"file_path\":\"loop1\",\"content\":\"x\"}", 1,
     "path \"loop1\": too many levels of symbolic links"},
    {"write", "{\"file_path\":\"sub\",\"content\":\"x\"}", 1, "write: sub: is a directory"},
    {"write", "{\"file_path\":\".\",\"content\":\"x\"}", 1, "write: .: is a directory"},
    {"write", "{\"file_path\":\"hello.txt/x\",\"content\":\"x\"}", 1,
     "write: hello.txt/x: not a directory"},
};

TEST(write_cases)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    RUN_CASES(&f, WRITE_CASES);
    _cleanup_free_ char *a = read_back(&f, "new.txt");
    CHECK_STR(a, "hi");
    _cleanup_free_ char *b = read_back(&f, "deep/er/x.txt");
    CHECK_STR(b, "d");
    /* the symlink inside was resolved: the target changed, the link is still a link */
    _cleanup_free_ char *c = read_back(&f, "hello.txt");
    CHECK_STR(c, "replaced");
    char p[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/link_in", f.work);
    CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));
    /* modes: new files 0600, created directories 0700 */
    CHECK_INT(mode_of(&f, "new.txt"), 0600);
    CHECK_INT(mode_of(&f, "deep"), 0700);
    CHECK_INT(mode_of(&f, "deep/er"), 0700);
    /* nothing escaped, no temporary file left */
    CHECK_INT(count_entries(f.outside), 1);
    snprintf(p, sizeof(p), "%s/escape.txt", f.base);
    CHECK(access(p, F_OK) != 0);
    {
        char sp[256];
        snprintf(sp, sizeof(sp), "%s/secret.txt", f.outside);
        FILE *fp = fopen(sp, "re");
        REQUIRE(fp);
        char buf[64] = {0};
        CHECK(fread(buf, 1, sizeof(buf) - 1, fp) > 0);
        fclose(fp);
        CHECK_STR(buf, "TOPSECRET\n");
    }
    DIR *d = opendir(f.work);
    REQUIRE(d);
    struct dirent *de;
    while ((de = readdir(d)))
        CHECK(strncmp(de->d_name, ".tmp-", 5) != 0);
    closedir(d);
}

TEST(write_keeps_existing_mode)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    char p[256];
    snprintf(p, sizeof(p), "%s/script.sh", f.work);
    put_text(f.work, "script.sh", "#!/bin/sh\n");
    chmod(p, 0751);
    int is_error;
    _cleanup_free_ char *a =
        call(&f, "write", "{\"file_path\":\"script.sh\",\"content\":\"echo\"}", &is_error);
    CHECK_STR(a, "wrote 4 bytes to script.sh");
    CHECK_INT(mode_of(&f, "script.sh"), 0751);
}

TEST(write_and_edit_refuse_read_only_roots)
{
    _cleanup_(fx_free) fixture f = {0};
    {
        fixture tmp;
        REQUIRE(fx_init(&tmp) == 0);
        rc_toolbox_free(tmp.tb);
        tmp.tb = NULL;
        f = tmp;
    }
    mk_dir(f.work, "ro");
    put_text(f.work, "ro/f.txt", "abc");
    char ro[256];
    snprintf(ro, sizeof(ro), "%s/ro", f.work);
    const char *roots[] = {ro, NULL};
    REQUIRE(rc_toolbox_new(&(rc_toolbox_config){.workdir = f.work,
                                                .read_only_roots = roots,
                                                .env = TEST_ENV,
                                                .rg_mode = RC_TOOLBOX_RG_NEVER},
                           &f.tb, NULL) == 0);
    static const tool_case cases[] = {
        {"write", "{\"file_path\":\"ro/x.txt\",\"content\":\"x\"}", 1,
         "write: ro/x.txt is inside read-only directory {W}/ro"},
        {"edit", "{\"file_path\":\"ro/f.txt\",\"old_string\":\"a\",\"new_string\":\"b\"}", 1,
         "edit: ro/f.txt is inside read-only directory {W}/ro"},
        {"read", "{\"file_path\":\"ro/f.txt\"}", 0, "abc"},
        {"write", "{\"file_path\":\"rw.txt\",\"content\":\"x\"}", 0, "wrote 1 bytes to rw.txt"},
    };
    RUN_CASES(&f, cases);
}

/* ---- edit --------------------------------------------------------------------------------- */

static const tool_case EDIT_CASES[] = {
    {"edit", "{}", 1, "edit: file_path is required"},
    {"edit", "{\"file_path\":\"dup.txt\"}", 1, "edit: old_string is required"},
    {"edit", "{\"file_path\":\"dup.txt\",\"old_string\":\"\",\"new_string\":\"x\"}", 1,
     "edit: old_string is required"},
    {"edit", "{\"file_path\":\"dup.txt\",\"old_string\":\"foo\"}", 1,
     "edit: new_string is required"},
    {"edit", "{\"file_path\":\"dup.txt\",\"old_string\":1,\"new_string\":\"x\"}", 1,
     "edit: old_string must be a string"},
    {"edit", "{\"file_path\":\"dup.txt\",\"old_string\":\"foo\",\"new_string\":\"baz\"}", 1,
     "edit: old_string appears 2 times in dup.txt (must be unique)"},
    {"edit", "{\"file_path\":\"dup.txt\",\"old_string\":\"nope\",\"new_string\":\"baz\"}", 1,
     "edit: old_string not found in dup.txt"},
    {"edit", "{\"file_path\":\"missing.txt\",\"old_string\":\"a\",\"new_string\":\"b\"}", 1,
     "edit: missing.txt: no such file or directory"},
    {"edit", "{\"file_path\":\"sub\",\"old_string\":\"a\",\"new_string\":\"b\"}", 1,
     "edit: sub is not a regular file"},
    {"edit", "{\"file_path\":\"fifo\",\"old_string\":\"a\",\"new_string\":\"b\"}", 1,
     "edit: fifo is not a regular file"},
    {"edit", "{\"file_path\":\"big.txt\",\"old_string\":\"x\",\"new_string\":\"y\"}", 1,
     "edit: big.txt is 5000 bytes, exceeds 4096-byte limit. The edit tool loads the whole file "
     "and cannot modify a file this large."},
    {"edit", "{\"file_path\":\"link_secret\",\"old_string\":\"TOP\",\"new_string\":\"x\"}", 1,
     "path \"link_secret\"" OUTSIDE},
    {"edit", "{\"file_path\":\"../outside/secret.txt\",\"old_string\":\"T\",\"new_string\":\"x\"}",
     1, "path \"../outside/secret.txt\"" OUTSIDE},
    {"edit",
     "{\"file_path\":\"dup.txt\",\"old_string\":\"foo\",\"new_string\":\"b$&z\\\\1\","
     "\"replace_all\":true}",
     0, "edited dup.txt (2 replacement(s))"},
    {"read", "{\"file_path\":\"dup.txt\"}", 0, "b$&z\\1 bar b$&z\\1\n"},
    {"edit", "{\"file_path\":\"hello.txt\",\"old_string\":\"line2\\n\",\"new_string\":\"\"}", 0,
     "edited hello.txt (1 replacement(s))"},
    {"read", "{\"file_path\":\"hello.txt\"}", 0, "line1\nline3\n"},
    {"edit", "{\"file_path\":\"bad-utf8.txt\",\"old_string\":\"a\",\"new_string\":\"A\"}", 0,
     "edited bad-utf8.txt (1 replacement(s))"},
};

TEST(edit_cases)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    char p[256];
    snprintf(p, sizeof(p), "%s/hello.txt", f.work);
    chmod(p, 0640);
    RUN_CASES(&f, EDIT_CASES);
    CHECK_INT(mode_of(&f, "hello.txt"), 0640);
    /* bytes outside the match survive (no UTF-8 round trip) */
    _cleanup_free_ char *b = read_back(&f, "bad-utf8.txt");
    CHECK_STR(b, "A\xff"
                 "b\xe2\x82");
    char sp[256];
    snprintf(sp, sizeof(sp), "%s/secret.txt", f.outside);
    FILE *fp = fopen(sp, "re");
    REQUIRE(fp);
    char buf[64] = {0};
    CHECK(fread(buf, 1, sizeof(buf) - 1, fp) > 0);
    fclose(fp);
    CHECK_STR(buf, "TOPSECRET\n");
}

TEST(edit_growth_is_bounded)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    char many[4000];
    memset(many, 'a', sizeof(many));
    put_file(f.work, "many.txt", many, sizeof(many));
    size_t n = 10000;
    char *json = malloc(n + 128);
    REQUIRE(json);
    int off = snprintf(json, n + 128,
                       "{\"file_path\":\"many.txt\",\"old_string\":\"a\",\"replace_all\":true,"
                       "\"new_string\":\"");
    memset(json + off, 'b', n);
    snprintf(json + off + n, 16, "\"}");
    int is_error;
    _cleanup_free_ char *a = call(&f, "edit", json, &is_error);
    free(json);
    CHECK_STR(a, "edit: the edited many.txt would exceed 16777216 bytes");
    CHECK_INT(is_error, 1);
}

/* ---- glob --------------------------------------------------------------------------------- */

static void set_mtime(const fixture *f, const char *name, time_t t)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", f->work, name);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
}

static const tool_case GLOB_CASES[] = {
    {"glob", "{}", 1, "glob: pattern is required"},
    {"glob", "{\"pattern\":\"\"}", 1, "glob: pattern is required"},
    {"glob", "{\"pattern\":\"/etc/*\"}", 1,
     "glob: absolute pattern not permitted; pass a relative pattern (and optionally path)"},
    {"glob", "{\"pattern\":\"../*\"}", 1, "glob: \"..\" is not permitted in the pattern"},
    {"glob", "{\"pattern\":\"sub/../../x\"}", 1, "glob: \"..\" is not permitted in the pattern"},
    {"glob", "{\"pattern\":\"{a,..}/x\"}", 1, "glob: \"..\" is not permitted in the pattern"},
    {"glob", "{\"pattern\":\"a\\\\..\\\\b\"}", 1, "glob: \"..\" is not permitted in the pattern"},
    {"glob", "{\"pattern\":\"*.txt\"}", 0,
     "{W}/hello.txt\n{W}/dup.txt\n{W}/empty.txt\n{W}/bad-utf8.txt\n{W}/big.txt\n{W}/"
     "oneline.txt\n{W}/.hidden.txt"},
    {"glob", "{\"pattern\":\"**/*.c\"}", 0, "{W}/sub/a.c"},
    {"glob", "{\"pattern\":\"sub/*\"}", 0, "{W}/sub/a.c\n{W}/sub/b.h"},
    {"glob", "{\"pattern\":\"**/*.[ch]\"}", 0, "{W}/sub/a.c\n{W}/sub/b.h"},
    {"glob", "{\"pattern\":\"{hello,dup}.txt\"}", 0, "{W}/hello.txt\n{W}/dup.txt"},
    {"glob", "{\"pattern\":\"h?llo.*\"}", 0, "{W}/hello.txt"},
    {"glob", "{\"pattern\":\"nomatch*\"}", 0, "no matches"},
    {"glob", "{\"pattern\":\"**/config\"}", 0, "no matches"},
    {"glob", "{\"pattern\":\"link_*\"}", 0, "no matches"},
    {"glob", "{\"pattern\":\"link_sub/*\"}", 0, "no matches"},
    {"glob", "{\"pattern\":\"*.h\",\"path\":\"sub\"}", 0, "{W}/sub/b.h"},
    {"glob", "{\"pattern\":\"*\",\"path\":\"missing\"}", 0, "no matches"},
    {"glob", "{\"pattern\":\"*\",\"path\":\"hello.txt\"}", 0, "no matches"},
    {"glob", "{\"pattern\":\"*\",\"path\":\"../outside\"}", 1, "path \"../outside\"" OUTSIDE},
    {"glob", "{\"pattern\":\"*\",\"path\":\"link_out\"}", 1, "path \"link_out\"" OUTSIDE},
    {"glob", "{\"pattern\":\"*\",\"path\":\"{O}\"}", 1, "path \"{O}\"" OUTSIDE},
};

TEST(glob_cases)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    put_text(f.work, ".hidden.txt", "h");
    const char *order[] = {"hello.txt", "dup.txt",     "empty.txt",  "bad-utf8.txt",
                           "big.txt",   "oneline.txt", ".hidden.txt"};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        set_mtime(&f, order[i], 2000000000 - (time_t)i * 10);
    set_mtime(&f, "sub/a.c", 1000);
    set_mtime(&f, "sub/b.h", 900);
    RUN_CASES(&f, GLOB_CASES);
}

TEST(glob_keeps_200_newest)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    mk_dir(f.work, "many");
    for (int i = 0; i < 250; i++) {
        char name[64];
        snprintf(name, sizeof(name), "many/f%03d.log", i);
        put_text(f.work, name, "x");
        set_mtime(&f, name, 1000000 + i);
    }
    int is_error;
    _cleanup_free_ char *out = call(&f, "glob", "{\"pattern\":\"many/*.log\"}", &is_error);
    REQUIRE(out);
    int lines = 1;
    for (char *c = out; *c; c++)
        lines += *c == '\n';
    CHECK_INT(lines, 200);
    char first[256];
    snprintf(first, sizeof(first), "%s/many/f249.log\n", f.work);
    CHECK(strncmp(out, first, strlen(first)) == 0);
    char last[256];
    snprintf(last, sizeof(last), "%s/many/f050.log", f.work);
    CHECK(strlen(out) >= strlen(last) && !strcmp(out + strlen(out) - strlen(last), last));
}

TEST(glob_matcher)
{
    static const struct {
        const char *pat, *path;
        bool match;
    } cases[] = {
        {"*.c", "a.c", true},
        {"*.c", "d/a.c", false},
        {"**/*.c", "a.c", true},
        {"**/*.c", "d/e/a.c", true},
        {"d/**", "d/e/f", true},
        {"d/**/f", "d/f", true},
        {"d/**/f", "d/x/y/f", true},
        {"*", ".hidden", true},
        {"?", "é", true},
        {"??", "é", false},
        {"[a-c]x", "bx", true},
        {"[!a-c]x", "bx", false},
        {"[^a-c]x", "dx", true},
        {"[]]", "]", true},
        {"[[:digit:]]1", "91", true},
        {"\\*", "*", true},
        {"\\*", "a", false},
        {"{a,b}.c", "b.c", true},
        {"{a,{b,c}}.c", "c.c", true},
        {"{a}.c", "{a}.c", true},
        {"a*b*c*d", "axbxcxd", true},
        {"*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
        {"./a.c", "a.c", true},
        {"a//b", "a/b", true},
        {"[abc", "[abc", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (rc_glob_match(cases[i].pat, cases[i].path) != cases[i].match)
            rc_test_fail(__FILE__, __LINE__, "glob %s vs %s: want %d", cases[i].pat, cases[i].path,
                         cases[i].match);
}

/* ---- grep --------------------------------------------------------------------------------- */

static const tool_case GREP_CASES[] = {
    {"grep", "{}", 1, "grep: pattern is required"},
    {"grep", "{\"pattern\":\"\"}", 1, "grep: pattern is required"},
    {"grep", "{\"pattern\":\"line2\"}", 0, "{W}/hello.txt:2:line2"},
    {"grep", "{\"pattern\":\"line\\\\d\"}", 0,
     "{W}/hello.txt:1:line1\n{W}/hello.txt:2:line2\n{W}/hello.txt:3:line3"},
    {"grep", "{\"pattern\":\"^(?:foo|int) \"}", 0,
     "{W}/dup.txt:1:foo bar foo\n{W}/sub/a.c:1:int main(void) { return 0; }"},
    {"grep", "{\"pattern\":\"return \\\\d;\",\"path\":\"sub\"}", 0,
     "{W}/sub/a.c:1:int main(void) { return 0; }"},
    {"grep", "{\"pattern\":\"line2\",\"path\":\"hello.txt\"}", 0, "{W}/hello.txt:2:line2"},
    {"grep", "{\"pattern\":\"line2\",\"path\":\"link_in\"}", 0, "{W}/hello.txt:2:line2"},
    {"grep", "{\"pattern\":\"nothing-here\"}", 0, "no matches"},
    {"grep", "{\"pattern\":\"x\",\"path\":\"missing\"}", 0, "no matches"},
    {"grep", "{\"pattern\":\"TOPSECRET\"}", 0, "no matches"},
    {"grep", "{\"pattern\":\"TOPSECRET\",\"path\":\"../outside\"}", 1,
     "path \"../outside\"" OUTSIDE},
    {"grep", "{\"pattern\":\"TOPSECRET\",\"path\":\"link_secret\"}", 1,
     "path \"link_secret\"" OUTSIDE},
    {"grep", "{\"pattern\":\"(\"}", 1, "grep: invalid regex: unterminated group"},
    {"grep", "{\"pattern\":\")\"}", 1, "grep: invalid regex: unmatched ')'"},
    {"grep", "{\"pattern\":\"*a\"}", 1, "grep: invalid regex: nothing to repeat"},
    {"grep", "{\"pattern\":\"(a)\\\\1\"}", 1,
     "grep: invalid regex: back-references are not supported"},
    {"grep", "{\"pattern\":\"a(?=b)\"}", 1,
     "grep: invalid regex: lookaround assertions are not supported"},
    {"grep", "{\"pattern\":\"((a{100}){100}){100}\"}", 1,
     "grep: invalid regex: repetition count too large"},
    {"grep", "{\"pattern\":\"[z-a]\"}", 1,
     "grep: invalid regex: range out of order in character class"},
    {"grep", "{\"pattern\":\"int main\\\\(void\\\\) {\"}", 0,
     "{W}/sub/a.c:1:int main(void) { return 0; }"},
};

TEST(grep_cases)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    RUN_CASES(&f, GREP_CASES);
}

TEST(grep_binary_long_lines_and_line_ends)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    mk_dir(f.work, "g");
    put_file(f.work, "g/bin.dat", "needle\n\0\x01\x02needle\n", 17);
    char long_line[2100];
    memset(long_line, 'q', sizeof(long_line));
    memcpy(long_line, "needle", 6);
    long_line[sizeof(long_line) - 1] = '\n';
    put_file(f.work, "g/long.txt", long_line, sizeof(long_line));
    put_text(f.work, "g/crlf.txt", "a\r\nneedle1\rneedle2\n\nneedle4");
    put_text(f.work, "g/utf.txt",
             "n\xc3\xa9"
             "edle \xff\n");
    static const tool_case cases[] = {
        {"grep", "{\"pattern\":\"needle\",\"path\":\"g\"}", 0,
         "{W}/g/crlf.txt:2:needle1\n{W}/g/crlf.txt:3:needle2\n{W}/g/crlf.txt:5:needle4"},
        {"grep", "{\"pattern\":\"n\xc3\xa9+edle\",\"path\":\"g\"}", 0,
         "{W}/g/utf.txt:1:n\xc3\xa9"
         "edle \xEF\xBF\xBD"},
        {"grep", "{\"pattern\":\"n[\xc3\xa9]edle\",\"path\":\"g\"}", 0,
         "{W}/g/utf.txt:1:n\xc3\xa9"
         "edle \xEF\xBF\xBD"},
    };
    RUN_CASES(&f, cases);
}

TEST(grep_output_budget)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    size_t n = 400000;
    char *data = malloc(n);
    REQUIRE(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (i % 40 == 39) ? '\n' : 'm';
    put_file(f.work, "many.txt", data, n);
    free(data);
    int is_error;
    _cleanup_free_ char *out =
        call(&f, "grep", "{\"pattern\":\"m\",\"path\":\"many.txt\"}", &is_error);
    REQUIRE(out);
    CHECK_INT(is_error, 0);
    const char *marker = "\n[output truncated at 102400 bytes]";
    size_t len = strlen(out), ml = strlen(marker);
    CHECK(len > ml && !strcmp(out + len - ml, marker));
    CHECK(len - ml <= 102400);
    /* each line costs its length + 1; the line that overflows is replaced by the marker */
    long budget = 102400;
    size_t want = 0;
    for (int line = 1;; line++) {
        char head[256];
        long cost = snprintf(head, sizeof(head), "%s/many.txt:%d:", f.work, line) + 39 + 1;
        if ((budget -= cost) < 0)
            break;
        want += (size_t)cost;
    }
    CHECK_INT(len - ml + 1, want);
}

TEST(grep_time_limit)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init_cfg(&f, (rc_toolbox_config){.env = TEST_ENV,
                                                .rg_mode = RC_TOOLBOX_RG_NEVER,
                                                .grep_timeout_ms = 30}) == 0);
    mk_dir(f.work, "t");
    char *data = malloc(1 << 20);
    REQUIRE(data);
    for (size_t i = 0; i < (1 << 20); i++)
        data[i] = (i % 1000 == 999) ? '\n' : 'a';
    memcpy(data, "hit\n", 4);
    for (int i = 0; i < 100; i++) {
        char name[64];
        snprintf(name, sizeof(name), "t/f%03d.txt", i);
        put_file(f.work, name, data, 1 << 20);
    }
    free(data);
    int is_error;
    /* 100 MiB cannot be searched in 30 ms: cut short with the hits found so far */
    _cleanup_free_ char *out =
        call(&f, "grep", "{\"pattern\":\"(a|aa)*b|hit\",\"path\":\"t\"}", &is_error);
    REQUIRE(out);
    const char *marker = "\n[the search was cut short after 30 ms]";
    CHECK(strlen(out) > strlen(marker) && !strcmp(out + strlen(out) - strlen(marker), marker));
    CHECK(!strncmp(out, f.work, strlen(f.work)));
    _cleanup_free_ char *none =
        call(&f, "grep", "{\"pattern\":\"(a|aa)*b\",\"path\":\"t\"}", &is_error);
    CHECK_STR(none, "grep: timed out after 0.03s");
    CHECK_INT(is_error, 1);
}

TEST(grep_aborted_when_cancelled)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    rc_toolbox_cancel(f.tb);
    int is_error;
    _cleanup_free_ char *a = call(&f, "grep", "{\"pattern\":\"line\"}", &is_error);
    CHECK_STR(a, "grep: aborted");
    /* the file tools ignore cancellation, as in the SDK */
    _cleanup_free_ char *b = call(&f, "read", "{\"file_path\":\"dup.txt\"}", &is_error);
    CHECK_STR(b, "foo bar foo\n");
}

/* A fake rg outside the workdir that reports its arguments or plays a failure. */
static void make_fake_rg(const char *dir)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/rg", dir);
    FILE *fp = fopen(p, "we");
    if (!fp)
        return;
    fputs("#!/bin/sh\n"
          "case \"$5\" in\n"
          "none) exit 1 ;;\n"
          "fail) echo 'regex parse error' >&2; exit 2 ;;\n"
          "quiet) exit 3 ;;\n"
          "big) head -c 300000 /dev/zero | tr '\\000' r; exit 0 ;;\n"
          "env) env; exit 0 ;;\n"
          "esac\n"
          "printf '%s|' \"$@\"; echo; exit 0\n",
          fp);
    fclose(fp);
    chmod(p, 0755);
}

TEST(grep_uses_rg_from_path_outside_the_roots)
{
    _cleanup_(fx_free) fixture f = {0};
    {
        fixture tmp;
        REQUIRE(fx_init(&tmp) == 0);
        rc_toolbox_free(tmp.tb);
        tmp.tb = NULL;
        f = tmp;
    }
    char bin[256], path_var[600];
    snprintf(bin, sizeof(bin), "%s/bin", f.base);
    mkdir(bin, 0755);
    make_fake_rg(bin);
    /* an rg inside the workdir comes first on PATH and must be passed over */
    mk_dir(f.work, "wbin");
    char wbin[256];
    snprintf(wbin, sizeof(wbin), "%s/wbin", f.work);
    make_fake_rg(wbin);
    snprintf(path_var, sizeof(path_var), "PATH=%s:relative/dir:%s:/usr/bin:/bin", wbin, bin);
    const char *env[] = {path_var, "ANTHROPIC_FOO=secret-foo", NULL};
    REQUIRE(rc_toolbox_new(&(rc_toolbox_config){.workdir = f.work, .env = env}, &f.tb, NULL) == 0);
    static const tool_case cases[] = {
        {"grep", "{\"pattern\":\"abc\"}", 0, "--no-config|-n|--no-heading|-e|abc|--|{W}|\n"},
        {"grep", "{\"pattern\":\"-x; rm\",\"path\":\"sub\"}", 0,
         "--no-config|-n|--no-heading|-e|-x; rm|--|{W}/sub|\n"},
        {"grep", "{\"pattern\":\"none\"}", 0, "no matches"},
        {"grep", "{\"pattern\":\"fail\"}", 1, "grep: rg failed: regex parse error\n"},
        {"grep", "{\"pattern\":\"quiet\"}", 1, "grep: rg failed: exit 3"},
        {"grep", "{\"pattern\":\"x\",\"path\":\"../outside\"}", 1, "path \"../outside\"" OUTSIDE},
    };
    RUN_CASES(&f, cases);
    int is_error;
    _cleanup_free_ char *big = call(&f, "grep", "{\"pattern\":\"big\"}", &is_error);
    REQUIRE(big);
    const char *marker = "\n[output truncated at 102400 bytes]";
    CHECK_INT(strlen(big), 102400 + strlen(marker));
    CHECK(!strcmp(big + 102400, marker));
    _cleanup_free_ char *envout = call(&f, "grep", "{\"pattern\":\"env\"}", &is_error);
    REQUIRE(envout);
    CHECK(strstr(envout, "ANTHROPIC") == NULL);
    CHECK(strstr(envout, "PATH=") != NULL);
}

/* ---- bash --------------------------------------------------------------------------------- */

static const tool_case BASH_CASES[] = {
    {"bash", "{}", 1, "bash: command is required"},
    {"bash", "{\"command\":\"\"}", 1, "bash: command is required"},
    {"bash", "{\"command\":5}", 1, "bash: command must be a string"},
    {"bash", "{\"command\":\"echo hi\"}", 0, "hi"},
    {"bash", "{\"command\":\"pwd\"}", 0, "{W}"},
    {"bash", "{\"command\":\"cd sub && export FOO=bar\"}", 0, "(no output)"},
    {"bash", "{\"command\":\"pwd; echo $FOO\"}", 0, "{W}/sub\nbar"},
    {"bash", "{\"command\":\"echo out; echo err >&2; echo out2\"}", 0, "out\nerr\nout2"},
    {"bash", "{\"command\":\"false\"}", 1, "exit 1"},
    {"bash", "{\"command\":\"echo oops; (exit 7)\"}", 1, "oops"},
    {"bash", "{\"command\":\"cat; echo after-eof\"}", 0, "after-eof"},
    {"bash", "{\"command\":\"read x; echo \\\"[$x]\\\"\"}", 0, "[]"},
    {"bash",
     "{\"command\":\"printf '\\\\033[31mred\\\\033[0m "
     "\\\\033[?25lx\\\\033[1;2Hy\\\\n\\\\n\\\\n'\"}",
     0, "red xy"},
    {"bash", "{\"command\":\"printf 'a\\\\033b\\\\033[c'\"}", 0, "a\033b"},
    {"bash", "{\"command\":\"printf 'bad:\\\\377\\\\n'\"}", 0, "bad:\xEF\xBF\xBD"},
    {"bash", "{\"command\":\"echo \\\"[$PS1$PS2]\\\"; echo $TERM\"}", 0, "[]\ndumb"},
    {"bash", "{\"command\":\"echo x\",\"timeout_ms\":0}", 0, "x"},
    /* a syntax error ends a non-interactive bash before the sentinel (as with the SDK) */
    {"bash", "{\"command\":\"if\"}", 1, "bash: bash session terminated"},
    {"bash", "{\"command\":\"echo still-alive; pwd\"}", 0, "still-alive\n{W}"},
    {"bash", "{\"command\":\"cd sub; export FOO=bar\"}", 0, "(no output)"},
    {"bash", "{\"command\":\"exit 3\"}", 1, "bash: bash session terminated"},
    {"bash", "{\"command\":\"pwd; echo \\\"[$FOO]\\\"\"}", 0, "{W}\n[]"},
    {"bash", "{\"restart\":true}", 0, "bash session restarted"},
    {"bash", "{\"command\":\"cd sub; export FOO=1\"}", 0, "(no output)"},
    {"bash", "{\"restart\":true,\"command\":\"pwd; echo \\\"[$FOO]\\\"\"}", 0, "{W}\n[]"},
    {"bash", "{\"command\":\"kill -9 $$\"}", 1, "bash: bash session terminated"},
    {"bash", "{\"command\":\"echo back\"}", 0, "back"},
};

TEST(bash_cases)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    RUN_CASES(&f, BASH_CASES);
}

TEST(bash_environment_is_scrubbed)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    int is_error;
    _cleanup_free_ char *out = call(&f, "bash", "{\"command\":\"env\"}", &is_error);
    REQUIRE(out);
    CHECK(strstr(out, "ANTHROPIC_FOO") == NULL);
    CHECK(strstr(out, "anthropic_lower") == NULL);
    CHECK(strstr(out, "Anthropic_Api_Key") == NULL);
    CHECK(strstr(out, "secret-") == NULL);
    CHECK(strstr(out, "KEEP_ME=1") != NULL);
    CHECK(strstr(out, "PATH=/usr/local/bin:/usr/bin:/bin") != NULL);
    CHECK(strstr(out, "RUNCELL_API_SOCKET=/run/x.sock") != NULL);
    /* nor can the shell read them from its own /proc environ */
    _cleanup_free_ char *env2 =
        call(&f, "bash", "{\"command\":\"tr '\\\\0' '\\\\n' < /proc/$$/environ\"}", &is_error);
    REQUIRE(env2);
    CHECK(strstr(env2, "ANTHROPIC") == NULL);
}

TEST(bash_scrubs_extra_prefixes)
{
    _cleanup_(fx_free) fixture f = {0};
    static const char *const extra[] = {"RUNCELL_", NULL};
    REQUIRE(fx_init_cfg(&f, (rc_toolbox_config){.env = TEST_ENV,
                                                .scrub_prefixes = extra,
                                                .rg_mode = RC_TOOLBOX_RG_NEVER}) == 0);
    int is_error;
    _cleanup_free_ char *out = call(&f, "bash", "{\"command\":\"env\"}", &is_error);
    REQUIRE(out);
    CHECK(strstr(out, "RUNCELL_") == NULL);
    CHECK(strstr(out, "KEEP_ME=1") != NULL);
}

TEST(bash_environment_of_this_process_by_default)
{
    setenv("ANTHROPIC_RC_TEST_TOKEN", "sk-ant-should-not-leak", 1);
    setenv("RC_TEST_VISIBLE", "yes", 1);
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init_cfg(&f, (rc_toolbox_config){.rg_mode = RC_TOOLBOX_RG_NEVER}) == 0);
    unsetenv("ANTHROPIC_RC_TEST_TOKEN");
    int is_error;
    _cleanup_free_ char *out = call(&f, "bash", "{\"command\":\"env\"}", &is_error);
    REQUIRE(out);
    CHECK(strstr(out, "sk-ant-should-not-leak") == NULL);
    CHECK(strstr(out, "RC_TEST_VISIBLE=yes") != NULL);
}

static bool process_gone(pid_t pid)
{
    for (int i = 0; i < 100; i++) {
        char p[64], buf[512] = {0};
        snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
        FILE *fp = fopen(p, "re");
        if (!fp)
            return true;
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        const char *rp = strrchr(buf, ')');
        if (n > 0 && rp && rp[1] == ' ' && rp[2] == 'Z')
            return true; /* killed, waiting for its (re)parent to reap it */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

TEST(bash_timeout_kills_the_process_group)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    int is_error;
    _cleanup_free_ char *a = call(&f, "bash", "{\"command\":\"cd sub\"}", &is_error);
    CHECK_STR(a, "(no output)");
    int64_t t0 = rc_tools_now_ms();
    _cleanup_free_ char *b = call(&f, "bash",
                                  "{\"command\":\"sleep 30 & echo $! > {W}/bg.pid; echo $$ > "
                                  "{W}/sh.pid; sleep 40\",\"timeout_ms\":300}",
                                  &is_error);
    int64_t took = rc_tools_now_ms() - t0;
    CHECK_STR(b, "bash: bash command timed out after 300ms");
    CHECK_INT(is_error, 1);
    CHECK(took >= 300 && took < 3000);
    _cleanup_free_ char *bg = read_back(&f, "bg.pid");
    _cleanup_free_ char *sh = read_back(&f, "sh.pid");
    REQUIRE(bg && sh);
    CHECK(process_gone((pid_t)strtol(bg, NULL, 10)));
    CHECK(process_gone((pid_t)strtol(sh, NULL, 10)));
    /* the next call works, in a fresh shell */
    _cleanup_free_ char *c = call(&f, "bash", "{\"command\":\"pwd\"}", &is_error);
    CHECK_STR(c, f.work);
    CHECK_INT(is_error, 0);
}

TEST(bash_call_cap_aborts)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init_cfg(&f, (rc_toolbox_config){.env = TEST_ENV,
                                                .rg_mode = RC_TOOLBOX_RG_NEVER,
                                                .call_timeout_ms = 300}) == 0);
    int is_error;
    _cleanup_free_ char *a =
        call(&f, "bash", "{\"command\":\"sleep 20\",\"timeout_ms\":5000}", &is_error);
    CHECK_STR(a, "bash: This operation was aborted");
    _cleanup_free_ char *b =
        call(&f, "bash", "{\"command\":\"sleep 20\",\"timeout_ms\":200}", &is_error);
    CHECK_STR(b, "bash: bash command timed out after 200ms");
    _cleanup_free_ char *c = call(&f, "bash", "{\"command\":\"echo ok\"}", &is_error);
    CHECK_STR(c, "ok");
}

TEST(bash_output_truncation_keeps_the_tail)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    int is_error;
    _cleanup_free_ char *out = call(
        &f, "bash", "{\"command\":\"head -c 200000 /dev/zero | tr '\\\\0' a; echo; echo END\"}",
        &is_error);
    REQUIRE(out);
    const char *prefix = "[output truncated]\n";
    CHECK(!strncmp(out, prefix, strlen(prefix)));
    /* the last 102,400 bytes of the stream include "\n<sentinel>0\n" (56 bytes) */
    size_t body = strlen(out) - strlen(prefix);
    CHECK_INT(body, 102400 - 56 - 1); /* minus the trailing newline before the sentinel */
    CHECK(!strcmp(out + strlen(out) - 4, "\nEND"));
    CHECK(out[strlen(prefix)] == 'a');
    /* exactly at the limit nothing is dropped */
    _cleanup_free_ char *fits =
        call(&f, "bash", "{\"command\":\"head -c 1000 /dev/zero | tr '\\\\0' b\"}", &is_error);
    REQUIRE(fits);
    CHECK_INT(strlen(fits), 1000);
}

TEST(bash_truncation_cuts_on_a_character_boundary)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    int is_error;
    /* 3-byte characters: whatever the cut, no U+FFFD may appear from a split sequence */
    _cleanup_free_ char *out =
        call(&f, "bash",
             "{\"command\":\"for i in $(seq 1 40000); do printf '\\\\xe2\\\\x82\\\\xac'; done\"}",
             &is_error);
    REQUIRE(out);
    CHECK(!strncmp(out, "[output truncated]\n\xe2\x82\xac", 22));
    CHECK(strstr(out, "\xEF\xBF\xBD") == NULL);
}

TEST(bash_large_command_does_not_deadlock)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    size_t n = 300000;
    char *json = malloc(n + 64);
    REQUIRE(json);
    int off = snprintf(json, n + 64, "{\"command\":\"echo ");
    memset(json + off, 'w', n);
    snprintf(json + off + n, 32, " | wc -c\"}");
    int is_error;
    _cleanup_free_ char *out = call(&f, "bash", json, &is_error);
    free(json);
    CHECK_STR(out, "300001");
}

typedef struct cancel_arg {
    rc_toolbox *tb;
    int delay_ms;
} cancel_arg;

static void *cancel_later(void *p)
{
    cancel_arg *a = p;
    struct timespec ts = {a->delay_ms / 1000, (a->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    rc_toolbox_cancel(a->tb);
    return NULL;
}

TEST(bash_cancel_from_another_thread)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    pthread_t th;
    cancel_arg a = {f.tb, 200};
    REQUIRE(pthread_create(&th, NULL, cancel_later, &a) == 0);
    int64_t t0 = rc_tools_now_ms();
    int is_error;
    _cleanup_free_ char *out =
        call(&f, "bash", "{\"command\":\"echo $$ > {W}/sh.pid; sleep 30\"}", &is_error);
    int64_t took = rc_tools_now_ms() - t0;
    pthread_join(th, NULL);
    CHECK_STR(out, "bash: This operation was aborted");
    CHECK(took < 3000);
    _cleanup_free_ char *sh = read_back(&f, "sh.pid");
    REQUIRE(sh);
    CHECK(process_gone((pid_t)strtol(sh, NULL, 10)));
    /* cancellation is sticky: the runner is shutting down */
    _cleanup_free_ char *again = call(&f, "bash", "{\"command\":\"echo x\"}", &is_error);
    CHECK_STR(again, "bash: This operation was aborted");
}

TEST(bash_free_kills_the_shell)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    int is_error;
    _cleanup_free_ char *a =
        call(&f, "bash", "{\"command\":\"sleep 60 >/dev/null 2>&1 & echo $!\"}", &is_error);
    REQUIRE(a);
    pid_t bg = (pid_t)strtol(a, NULL, 10);
    CHECK(bg > 0 && kill(bg, 0) == 0);
    rc_toolbox_free(f.tb);
    f.tb = NULL;
    CHECK(process_gone(bg));
}

/* ---- the tool user ------------------------------------------------------------------------ */

TEST(tools_run_as_the_configured_user)
{
    if (geteuid() != 0)
        SKIP("needs root to switch to uid 65534");
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init_cfg(&f, (rc_toolbox_config){.env = TEST_ENV,
                                                .rg_mode = RC_TOOLBOX_RG_NEVER,
                                                .set_ids = true,
                                                .uid = 65534,
                                                .gid = 65534}) == 0);
    chmod(f.base, 0755);
    chmod(f.work, 0755);
    int is_error;
    _cleanup_free_ char *id = call(&f, "bash", "{\"command\":\"id -u; id -g; id -G\"}", &is_error);
    CHECK_STR(id, "65534\n65534\n65534");
    /* the file tools check permissions as that user: the workdir is root's 0755 */
    _cleanup_free_ char *w =
        call(&f, "write", "{\"file_path\":\"x.txt\",\"content\":\"x\"}", &is_error);
    CHECK_STR(w, "write: x.txt: permission denied");
    char p[256];
    snprintf(p, sizeof(p), "%s/private.txt", f.work);
    put_text(f.work, "private.txt", "root only");
    chmod(p, 0600);
    _cleanup_free_ char *r = call(&f, "read", "{\"file_path\":\"private.txt\"}", &is_error);
    CHECK_STR(r, "read: private.txt: permission denied");
    _cleanup_free_ char *e = call(
        &f, "edit", "{\"file_path\":\"hello.txt\",\"old_string\":\"line1\",\"new_string\":\"L\"}",
        &is_error);
    CHECK_STR(e, "edit: write: hello.txt: permission denied");
    /* in a directory it may write to, files are its own */
    chmod(f.work, 0777);
    _cleanup_free_ char *w2 =
        call(&f, "write", "{\"file_path\":\"mine/x.txt\",\"content\":\"x\"}", &is_error);
    CHECK_STR(w2, "wrote 1 bytes to mine/x.txt");
    struct stat st;
    snprintf(p, sizeof(p), "%s/mine/x.txt", f.work);
    CHECK(stat(p, &st) == 0 && st.st_uid == 65534 && st.st_gid == 65534);
    /* and the runner's thread is itself again afterwards */
    CHECK_INT(setfsuid((uid_t)-1), 0);
    put_text(f.work, "after.txt", "ok");
    snprintf(p, sizeof(p), "%s/after.txt", f.work);
    CHECK(stat(p, &st) == 0 && st.st_uid == 0);
}

/* ---- dispatch and helpers ----------------------------------------------------------------- */

TEST(unknown_tool_is_not_ours)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    cJSON *in = cJSON_CreateObject();
    rc_tool_result res = {0};
    rc_error err = {0};
    CHECK_INT(rc_toolbox_run(f.tb, "web_fetch", in, &res, &err), -RC_ENOTFOUND);
    CHECK(res.content == NULL);
    CHECK_INT(rc_toolbox_run(f.tb, "mcp__x", in, &res, &err), -RC_ENOTFOUND);
    CHECK(rc_toolbox_owns("bash") && rc_toolbox_owns("grep") && !rc_toolbox_owns("web_search"));
    /* a non-object input counts as {} */
    cJSON *arr = cJSON_CreateArray();
    CHECK_INT(rc_toolbox_run(f.tb, "read", arr, &res, &err), 0);
    CHECK_STR(rc_tool_result_text(&res), "read: file_path is required");
    CHECK_INT(res.is_error, 1);
    rc_tool_result_clear(&res);
    cJSON_Delete(arr);
    cJSON_Delete(in);
}

TEST(config_is_validated)
{
    rc_toolbox *tb = NULL;
    rc_error err = {0};
    CHECK_INT(rc_toolbox_new(&(rc_toolbox_config){.workdir = "relative"}, &tb, &err), -RC_EINVAL);
    CHECK_INT(rc_toolbox_new(&(rc_toolbox_config){0}, &tb, &err), -RC_EINVAL);
    CHECK(tb == NULL);
}

TEST(lexical_paths)
{
    static const struct {
        const char *base, *p, *want;
    } cases[] = {
        {"/w", "a/../b", "/w/b"}, {"/w", "../../..", "/"},    {"/w", "/x//y/./z/..", "/x/y"},
        {"/w/", "./", "/w"},      {"/", "a", "/a"},           {"/w", "a/b/../../..", "/"},
        {"/w", "...", "/w/..."},  {"/w", "a/./b/", "/w/a/b"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = NULL;
        REQUIRE(rc_pathconf_lexical(cases[i].base, cases[i].p, &got, NULL) == 0);
        CHECK_STR(got, cases[i].want);
        free(got);
    }
    CHECK(rc_pathconf_within("/w", "/w"));
    CHECK(rc_pathconf_within("/w", "/w/x"));
    CHECK(!rc_pathconf_within("/w", "/wx"));
    CHECK(!rc_pathconf_within("/w/x", "/w"));
    CHECK(rc_pathconf_within("/", "/anything"));
}

TEST(canonicalize_follows_every_symlink)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    char in[512], want[512];
    char *got = NULL;
    snprintf(in, sizeof(in), "%s/link_sub/new/deeper", f.work);
    snprintf(want, sizeof(want), "%s/sub/new/deeper", f.work);
    REQUIRE(rc_pathconf_canonicalize(in, &got, NULL) == 0);
    CHECK_STR(got, want);
    free(got);
    snprintf(in, sizeof(in), "%s/dangling_out", f.work);
    REQUIRE(rc_pathconf_canonicalize(in, &got, NULL) == 0);
    CHECK_STR(got, "/nonexistent-rc-outside/x");
    free(got);
    rc_error err = {0};
    snprintf(in, sizeof(in), "%s/loop1", f.work);
    CHECK_INT(rc_pathconf_canonicalize(in, &got, &err), -RC_EIO);
    CHECK_INT(err.sys_errno, ELOOP);
    /* a chain of 40 links resolves, 41 do not */
    for (int i = 0; i <= 41; i++) {
        char name[32], target[32];
        snprintf(name, sizeof(name), "chain%d", i);
        snprintf(target, sizeof(target), i == 0 ? "hello.txt" : "chain%d", i - 1);
        mk_link(f.work, name, target);
    }
    snprintf(in, sizeof(in), "%s/chain39", f.work);
    CHECK_INT(rc_pathconf_canonicalize(in, &got, NULL), 0);
    free(got);
    snprintf(in, sizeof(in), "%s/chain40", f.work);
    CHECK_INT(rc_pathconf_canonicalize(in, &got, &err), -RC_EIO);
    CHECK_INT(err.sys_errno, ELOOP);
}

TEST(fs_error_wording)
{
    char s[64];
    CHECK_STR(rc_fs_reason(ENOENT, s, sizeof(s)), "no such file or directory");
    CHECK_STR(rc_fs_reason(EPERM, s, sizeof(s)), "permission denied");
    CHECK_STR(rc_fs_reason(EACCES, s, sizeof(s)), "permission denied");
    CHECK_STR(rc_fs_reason(ENOTDIR, s, sizeof(s)), "not a directory");
    CHECK_STR(rc_fs_reason(EISDIR, s, sizeof(s)), "is a directory");
    CHECK_STR(rc_fs_reason(ELOOP, s, sizeof(s)), "too many levels of symbolic links");
    CHECK_STR(rc_fs_reason(ENAMETOOLONG, s, sizeof(s)), "file name too long");
    CHECK_STR(rc_fs_reason(ENOSPC, s, sizeof(s)), "no space left on device");
    CHECK_STR(rc_fs_reason(EMFILE, s, sizeof(s)), "too many open files");
    CHECK_STR(rc_fs_reason(ENFILE, s, sizeof(s)), "too many open files");
    CHECK_STR(rc_fs_reason(EIO, s, sizeof(s)), "i/o error (EIO)");
    CHECK_STR(rc_fs_reason(EROFS, s, sizeof(s)), "i/o error (EROFS)");
    CHECK_STR(rc_fs_reason(0, s, sizeof(s)), "i/o error");
}

TEST(long_paths_are_reported_not_crashed)
{
    _cleanup_(fx_free) fixture f = {0};
    REQUIRE(fx_init(&f) == 0);
    char json[6000];
    int off = snprintf(json, sizeof(json), "{\"file_path\":\"");
    memset(json + off, 'n', 300);
    snprintf(json + off + 300, 64, "\"}");
    int is_error;
    _cleanup_free_ char *a = call(&f, "read", json, &is_error);
    REQUIRE(a);
    CHECK(strstr(a, ": file name too long") != NULL);
    CHECK_INT(is_error, 1);
}

TEST(utf8_repair)
{
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"plain", 5, "plain"},
        {"\xff", 1, "\xEF\xBF\xBD"},
        {"a\xe2\x82", 3, "a\xEF\xBF\xBD"},
        {"\xe2\x82\xac", 3, "\xe2\x82\xac"},
        {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},
        {"\xc0\xaf", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xed\xa0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xf4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"a\0b", 3,
         "a\xEF\xBF\xBD"
         "b"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(64);
        REQUIRE(rc_utf8_repair(&b, cases[i].in, cases[i].n, NULL) == 0);
        CHECK_STR(rc_buf_cstr(&b), cases[i].want);
    }
    CHECK_INT(rc_utf8_cut_prefix("ab\xe2\x82", 4), 2);
    CHECK_INT(rc_utf8_cut_prefix("ab\xe2\x82\xac", 5), 5);
    CHECK_INT(rc_utf8_cut_prefix("ab\xc3", 3), 2);
    CHECK_INT(rc_utf8_skip_continuation("\x82\xac"
                                        "a",
                                        3),
              2);
}

TEST(ansi_stripping)
{
    char s[] = "\x1b[1;31mred\x1b[0m \x1b[?25h\x1b[2J\x1b[!p|\x1b]0;title\a|\x1b[";
    size_t n = rc_bash_strip_ansi(s, strlen(s));
    s[n] = '\0';
    CHECK_STR(s, "red |\x1b]0;title\a|\x1b[");
}

TEST(grep_dialect_translation)
{
    static const struct {
        const char *js, *ere;
    } cases[] = {
        {"a\\d+", "a[0-9]+"},
        {"(?:ab)+?c", "(ab)+c"},
        {"(?<year>\\d{4})", "([0-9]{4})"},
        {"a{", "a\\{"},
        {"{x}", "\\{x\\}"},
        {"\\t\\x41\\u0042", "\tAB"},
        {"[\\d_-]", "[0-9_-]"},
        {"[^\\]x]", "[^]x]"},
        {"[\\w]", "[0-9A-Z_a-z]"},
        {"[]", "[^\x01-\x7f\x80-\xff]"},
        {"[^]", "."},
        {"\\.\\/", "\\./"},
        {"\xc3\xa9+", "(\xc3\xa9)+"},
        {"[a\xc3\xa9]", "([a]|\xc3\xa9)"},
        {"\\bword\\b", "\\bword\\b"},
        {"a|", "a|"},
        {"", "()"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        _cleanup_(rc_buf_free) rc_buf ere = RC_BUF_INIT(4096);
        _cleanup_(rc_buf_free) rc_buf why = RC_BUF_INIT(256);
        int r = rc_grep_translate(cases[i].js, &ere, &why, NULL);
        if (r < 0 || strcmp(rc_buf_cstr(&ere), cases[i].ere) != 0)
            rc_test_fail(__FILE__, __LINE__, "translate %s: got %s (%s), want %s", cases[i].js,
                         rc_buf_cstr(&ere), rc_buf_cstr(&why), cases[i].ere);
    }
}
