/* fuzz_tool_input.c - tool input JSON -> rc_toolbox_run on a scratch workdir.
 *
 * The file tools (read, write, edit, glob, grep; bash is unrestricted by design and is left out)
 * get inputs built from the fuzz data, either as raw JSON (first byte's high bit set) or as
 * structured fields split on NUL bytes, so paths full of `..`, symlinks, absolute names, long and
 * invalid-UTF-8 components are reached quickly. The workdir holds symlinks out (relative,
 * absolute, dangling), a loop, a FIFO (a tool that opened it would hang: libFuzzer reports the
 * timeout) and a read-only root. After every call the target aborts when:
 *   - the result is missing, or its text is not valid UTF-8 or holds a NUL byte,
 *   - any text shows the canary kept outside the workdir (unless the input holds it: messages
 *     quote their input),
 *   - anything outside the workdir changed (a new entry beside work/ or in outside/, or the
 *     canary file's content or mode). */
#include "buf.h"
#include "tools.h"
#include "tools_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CANARY "FUZZ-CANARY-7f3a9c"

static char base[64], work[128], outside[128], ro[160];
static rc_toolbox *tb;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void put(const char *name, const char *content)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", work, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    if (write(fd, content, strlen(content)) < 0)
        abort();
    close(fd);
}

static void link_in_work(const char *name, const char *target)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", work, name);
    if (symlink(target, p) < 0)
        abort();
}

static void reset_work(void)
{
    nftw(work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(work, 0755) < 0)
        abort();
    char p[512];
    snprintf(p, sizeof(p), "%s/sub", work);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/ro", work);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/.git", work);
    mkdir(p, 0755);
    put("a.txt", "alpha\nbeta\ngamma\n");
    put("sub/b.c", "int b;\nint c;\n");
    put("ro/keep.txt", "keep\n");
    put(".git/HEAD", "ref\n");
    put("bin.dat", "x\001\002\003");
    link_in_work("link_out", "../outside");
    link_in_work("link_secret", "../outside/secret.txt");
    link_in_work("link_abs", outside);
    link_in_work("dangling", "../outside/not-yet");
    link_in_work("loop1", "loop2");
    link_in_work("loop2", "loop1");
    link_in_work("link_in", "a.txt");
    snprintf(p, sizeof(p), "%s/fifo", work);
    mkfifo(p, 0600);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static void check_outside_intact(void)
{
    if (count_entries(base) != 2 || count_entries(outside) != 1)
        abort();
    char p[256], buf[64] = {0};
    snprintf(p, sizeof(p), "%s/secret.txt", outside);
    struct stat st;
    if (lstat(p, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 07777) != 0644)
        abort();
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof(buf) - 1) != (ssize_t)strlen(CANARY) + 1)
        abort();
    close(fd);
    if (strcmp(buf, CANARY "\n") != 0)
        abort();
}

static void cleanup(void)
{
    rc_toolbox_free(tb);
    tb = NULL;
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    snprintf(base, sizeof(base), "/tmp/rc-fuzz-tools-XXXXXX");
    if (!mkdtemp(base))
        abort();
    snprintf(work, sizeof(work), "%s/work", base);
    snprintf(outside, sizeof(outside), "%s/outside", base);
    snprintf(ro, sizeof(ro), "%s/ro", work);
    mkdir(outside, 0755);
    char p[256];
    snprintf(p, sizeof(p), "%s/secret.txt", outside);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, CANARY "\n", strlen(CANARY) + 1) < 0)
        abort();
    close(fd);
    mkdir(work, 0755);
    reset_work();
    static const char *const env[] = {"PATH=/usr/bin:/bin", "ANTHROPIC_FOO=" CANARY, NULL};
    const char *read_only[] = {ro, NULL};
    rc_toolbox_config cfg = {.workdir = work,
                             .read_only_roots = read_only,
                             .env = env,
                             .max_file_bytes = 4096,
                             .grep_timeout_ms = 500,
                             .call_timeout_ms = 2000,
                             .rg_mode = RC_TOOLBOX_RG_NEVER};
    if (rc_toolbox_new(&cfg, &tb, NULL) < 0)
        abort();
    atexit(cleanup);
}

/* Set when the input itself holds the canary: messages echo their input (paths, patterns). */
static bool input_has_canary;

static void check_text(const char *text)
{
    size_t n = strlen(text);
    rc_buf clean = RC_BUF_INIT(n * 3 + 16);
    if (rc_utf8_repair(&clean, text, n, NULL) < 0 || clean.len != n ||
        memcmp(clean.data ? clean.data : "", text, n) != 0)
        abort(); /* invalid UTF-8 reached the result */
    rc_buf_free(&clean);
    if (!input_has_canary && strstr(text, CANARY))
        abort(); /* the secret outside the workdir was read */
}

static void check_result(const rc_tool_result *res)
{
    if (!cJSON_IsArray(res->content) || cJSON_GetArraySize(res->content) < 1)
        abort();
    const cJSON *block;
    cJSON_ArrayForEach(block, res->content)
    {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(block, "text");
        if (cJSON_IsString(text))
            check_text(text->valuestring);
        else if (!cJSON_GetObjectItemCaseSensitive(block, "source"))
            abort();
    }
}

static const char *const TOOLS[] = {"read", "write", "edit", "glob", "grep"};

/* Next NUL-separated field of the data (may be empty), copied. */
static char *next_field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *start = *p;
    while (*p < end && **p)
        (*p)++;
    size_t n = (size_t)(*p - start);
    if (*p < end)
        (*p)++;
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, start, n);
    s[n] = '\0';
    return s;
}

/* Add key: the string, or another type when the flag bit says so. */
static void add_field(cJSON *obj, const char *key, const char *value, unsigned flags, int bit)
{
    if (flags & (1u << bit))
        cJSON_AddNumberToObject(obj, key, (double)strlen(value));
    else
        cJSON_AddStringToObject(obj, key, value);
}

static cJSON *structured_input(int tool, const uint8_t *data, size_t size)
{
    if (size < 1)
        return cJSON_CreateObject();
    unsigned flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    char *f0 = next_field(&p, end), *f1 = next_field(&p, end), *f2 = next_field(&p, end);
    cJSON *in = cJSON_CreateObject();
    switch (tool) {
    case 0: /* read */
        add_field(in, "file_path", f0, flags, 0);
        if (flags & 2) {
            cJSON *vr = cJSON_AddArrayToObject(in, "view_range");
            cJSON_AddItemToArray(vr, cJSON_CreateNumber((int8_t)(f1[0])));
            if (!(flags & 4))
                cJSON_AddItemToArray(vr, cJSON_CreateNumber((int8_t)(f1[0] ? f1[1] : 0)));
        }
        break;
    case 1: /* write */
        add_field(in, "file_path", f0, flags, 0);
        if (!(flags & 2))
            add_field(in, "content", f1, flags, 3);
        break;
    case 2: /* edit */
        add_field(in, "file_path", f0, flags, 0);
        add_field(in, "old_string", f1, flags, 3);
        if (!(flags & 2))
            cJSON_AddStringToObject(in, "new_string", f2);
        if (flags & 4)
            cJSON_AddBoolToObject(in, "replace_all", 1);
        break;
    default: /* glob, grep */
        add_field(in, "pattern", f0, flags, 0);
        if (flags & 2)
            add_field(in, "path", f1, flags, 3);
        break;
    }
    free(f0);
    free(f1);
    free(f2);
    return in;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tb)
        setup();
    if (size < 1)
        return 0;
    int tool = (data[0] & 0x7f) % 5;
    input_has_canary = memmem(data, size, "CANARY", 6) != NULL;
    cJSON *in = (data[0] & 0x80) ? cJSON_ParseWithLength((const char *)data + 1, size - 1)
                                 : structured_input(tool, data + 1, size - 1);
    if (!in)
        return 0;
    rc_tool_result res = {0};
    int r = rc_toolbox_run(tb, TOOLS[tool], in, &res, NULL);
    cJSON_Delete(in);
    if (r < 0)
        abort(); /* only out-of-memory may fail without a result */
    check_result(&res);
    rc_tool_result_clear(&res);
    check_outside_intact();
    if (tool == 1 || tool == 2)
        reset_work();
    return 0;
}
