/* test_custom_tools.c - custom tools from a manifest (runner/custom.h): loading valid and invalid
 * manifests (an error for every field, naming the tool and the field), the agent's tool
 * definitions, argv/env/stdin built from inputs without any interpretation, path placeholders
 * confined to the workdir, and real runs: exit status and stderr, output cap, timeout and cancel
 * killing the process group, environment scrubbing, stdin, and the uid drop (as root). */
#include "cleanup.h"
#include "custom.h"
#include "harness.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A fresh workdir that the nobody user can enter. */
typedef struct workdir {
    char path[64];
} workdir;

static bool workdir_make(workdir *w)
{
    snprintf(w->path, sizeof(w->path), "/tmp/rc-custom-XXXXXX");
    if (!mkdtemp(w->path))
        return false;
    return chmod(w->path, 0755) == 0;
}

static void workdir_remove(workdir *w)
{
    if (w->path[0] == '/')
        nftw(w->path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *path_in(const workdir *w, const char *rel)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", w->path, rel) < 0)
        return NULL;
    return p;
}

static bool write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text);
}

/* Load a manifest holding the tool objects given (comma-separated JSON objects). */
static rc_custom_tools *load_tools(const char *tools_json, rc_error *err)
{
    _cleanup_free_ char *text = NULL;
    rc_custom_tools *ct = NULL;
    if (asprintf(&text, "{\"tools\":[%s]}", tools_json) < 0)
        return NULL;
    if (rc_custom_tools_from_text(text, strlen(text), "test", &ct, err) < 0)
        return NULL;
    return ct;
}

/* The error message of parsing {"tools":[tools_json]}, or "" when it parses. */
static const char *manifest_error(const char *tools_json, int *ret_code)
{
    static rc_error err;
    rc_custom_manifest *m = NULL;
    _cleanup_free_ char *text = NULL;
    rc_error_clear(&err);
    if (asprintf(&text, "{\"tools\":[%s]}", tools_json) < 0)
        return "asprintf";
    int r = rc_custom_manifest_parse(text, strlen(text), "m.json", &m, &err);
    rc_custom_manifest_free(m);
    if (ret_code)
        *ret_code = r;
    return r < 0 ? err.msg : "";
}

static cJSON *input_of(const char *json)
{
    cJSON *in = NULL;
    if (rc_json_parse(json, strlen(json), NULL, &in, NULL) < 0)
        return NULL;
    return in;
}

typedef struct run_out {
    int rc;
    int is_error;
    char *text; /* malloc'd copy, or NULL */
    long long ms;
} run_out;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static run_out run_on(rc_custom_tools *ct, const char *name, const char *input_json,
                      const rc_custom_run_opts *opts)
{
    run_out o = {0};
    _cleanup_json_ cJSON *in = input_of(input_json);
    rc_tool_result res = {0};
    rc_error err = {0};
    long long t0 = now_ms();
    o.rc = rc_custom_tools_run(ct, name, in, opts, &res, &err);
    o.ms = now_ms() - t0;
    if (o.rc < 0)
        printf("# run %s: %s\n", name, err.msg);
    o.is_error = res.is_error;
    const char *t = rc_tool_result_text(&res);
    o.text = t ? strdup(t) : NULL;
    rc_tool_result_clear(&res);
    return o;
}

/* Load one tool, run it once in w with input_json. */
static run_out run_one(const char *tool_json, const char *name, const char *input_json,
                       const workdir *w)
{
    rc_error err = {0};
    rc_custom_tools *ct = load_tools(tool_json, &err);
    if (!ct) {
        printf("# load: %s\n", err.msg);
        return (run_out){.rc = -999};
    }
    rc_custom_run_opts opts = {.workdir = w->path, .uid = -1, .gid = -1};
    run_out o = run_on(ct, name, input_json, &opts);
    rc_custom_tools_free(ct);
    return o;
}

static void run_out_free(run_out *o)
{
    free(o->text);
}

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle);
}

#define CHECK_HAS(hay, needle)                                                                     \
    do {                                                                                           \
        if (!contains((hay), (needle)))                                                            \
            rc_test_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"",                     \
                         (hay) ? (hay) : "(null)", (needle));                                      \
    } while (0)

/* Build the command only (no execution): 0, 1 refused (msg set), negative. */
static int build(const char *tool_json, const char *input_json, const char *workdir_path,
                 rc_custom_cmd *cmd, rc_buf *msg)
{
    rc_error err = {0};
    rc_custom_tools *ct = load_tools(tool_json, &err);
    if (!ct) {
        printf("# load: %s\n", err.msg);
        return -999;
    }
    _cleanup_json_ cJSON *in = input_of(input_json);
    const rc_custom_tool *t = &rc_custom_tools_manifest(ct)->tools[0];
    int r = rc_custom_cmd_build(t, in, workdir_path, cmd, msg, &err);
    if (r < 0)
        printf("# build: %s\n", err.msg);
    rc_custom_tools_free(ct);
    return r;
}

static size_t argc_of(char **argv)
{
    size_t n = 0;
    while (argv && argv[n])
        n++;
    return n;
}

/* ---- loading ------------------------------------------------------------------------------ */

TEST(load_null_and_missing_give_empty_set)
{
    rc_custom_tools *ct = NULL;
    rc_error err = {0};
    REQUIRE(rc_custom_tools_load(NULL, &ct, &err) == 0);
    CHECK_INT(rc_custom_tools_count(ct), 0);
    CHECK(!rc_custom_tools_owns(ct, "run_shell"));
    rc_custom_tools_free(ct);
    ct = NULL;
    REQUIRE(rc_custom_tools_load("/nonexistent/rc-custom/manifest.json", &ct, &err) == 0);
    CHECK_INT(rc_custom_tools_count(ct), 0);
    rc_tool_result res = {0};
    CHECK_INT(rc_custom_tools_run(ct, "run_shell", NULL, NULL, &res, &err), -RC_ENOTFOUND);
    cJSON *agent = NULL;
    REQUIRE(rc_custom_tools_agent_json(ct, &agent, &err) == 0);
    CHECK_INT(cJSON_GetArraySize(agent), 0);
    cJSON_Delete(agent);
    rc_custom_tools_free(ct);
}

TEST(load_file_errors)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    rc_custom_tools *ct = NULL;
    rc_error err = {0};
    /* a directory */
    CHECK_INT(rc_custom_tools_load(w.path, &ct, &err), -RC_EINVAL);
    CHECK_HAS(err.msg, "not a regular file");
    /* too big */
    _cleanup_free_ char *big = path_in(&w, "big.json");
    _cleanup_free_ char *text = malloc(RC_CUSTOM_MANIFEST_MAX_BYTES + 2);
    REQUIRE(big && text);
    memset(text, ' ', RC_CUSTOM_MANIFEST_MAX_BYTES + 1);
    text[RC_CUSTOM_MANIFEST_MAX_BYTES + 1] = '\0';
    REQUIRE(write_file(big, text));
    CHECK_INT(rc_custom_tools_load(big, &ct, &err), -RC_ETOOBIG);
    /* not JSON */
    _cleanup_free_ char *bad = path_in(&w, "bad.json");
    REQUIRE(bad && write_file(bad, "{\"tools\":[}"));
    CHECK_INT(rc_custom_tools_load(bad, &ct, &err), -RC_EPARSE);
    CHECK_HAS(err.msg, bad);
    /* a program that does not exist is reported at load, naming tool and field */
    _cleanup_free_ char *noprog = path_in(&w, "noprog.json");
    REQUIRE(noprog && write_file(noprog, "{\"tools\":[{\"name\":\"t1\",\"program\":\"/bin/true\"},"
                                         "{\"name\":\"t2\",\"program\":\"/no/such/prog\"}]}"));
    CHECK_INT(rc_custom_tools_load(noprog, &ct, &err), -RC_EINVAL);
    CHECK_HAS(err.msg, "tools[1] (\"t2\"): program: /no/such/prog");
    CHECK_HAS(err.msg, "No such file");
    workdir_remove(&w);
}

static const char *example_manifest_path(char *buf, size_t len)
{
    if (access("examples/tools-manifest.json", R_OK) == 0)
        return "examples/tools-manifest.json";
    /* build/<x>/tests/test_custom_tools -> the repository root */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    for (int i = 0; i < 4; i++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            return NULL;
        *slash = '\0';
    }
    snprintf(buf, len, "%s/examples/tools-manifest.json", exe);
    return buf;
}

TEST(example_manifest_loads)
{
    char buf[PATH_MAX + 64];
    const char *path = example_manifest_path(buf, sizeof(buf));
    rc_custom_tools *ct = NULL;
    rc_error err = {0};
    REQUIRE(path);
    int r = rc_custom_tools_load(path, &ct, &err);
    if (r == -RC_EINVAL && strstr(err.msg, ": program: "))
        SKIP("a program of the example manifest is not installed here (git, make)");
    if (r < 0)
        printf("# %s\n", err.msg);
    REQUIRE(r == 0);
    CHECK(rc_custom_tools_count(ct) >= 4);
    CHECK(rc_custom_tools_owns(ct, "run_shell"));
    CHECK(rc_custom_tools_owns(ct, "read_file"));
    CHECK(rc_custom_tools_owns(ct, "run_tests"));
    CHECK(rc_custom_tools_owns(ct, "list_changed_files"));
    /* the agent definitions are exactly the manifest's schemas */
    cJSON *agent = NULL;
    REQUIRE(rc_custom_tools_agent_json(ct, &agent, &err) == 0);
    const rc_custom_manifest *m = rc_custom_tools_manifest(ct);
    CHECK_INT(cJSON_GetArraySize(agent), m->count);
    for (size_t i = 0; i < m->count; i++) {
        const cJSON *o = cJSON_GetArrayItem(agent, (int)i);
        CHECK_STR(cJSON_GetObjectItem(o, "type")->valuestring, "custom");
        CHECK_STR(cJSON_GetObjectItem(o, "name")->valuestring, m->tools[i].name);
        CHECK(cJSON_Compare(cJSON_GetObjectItem(o, "input_schema"), m->tools[i].input_schema, 1));
    }
    cJSON_Delete(agent);

    /* read_file reads inside the workdir and refuses outside */
    workdir w;
    REQUIRE(workdir_make(&w));
    _cleanup_free_ char *f = path_in(&w, "hello.txt");
    REQUIRE(f && write_file(f, "hello\n"));
    rc_custom_run_opts opts = {.workdir = w.path, .uid = -1, .gid = -1};
    run_out o = run_on(ct, "read_file", "{\"path\":\"hello.txt\"}", &opts);
    CHECK_INT(o.is_error, 0);
    CHECK_STR(o.text, "hello");
    run_out_free(&o);
    o = run_on(ct, "read_file", "{\"path\":\"/etc/passwd\"}", &opts);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "path \"/etc/passwd\" is outside the session's working directory");
    run_out_free(&o);
    o = run_on(ct, "run_shell", "{\"command\":\"echo out; echo err >&2; exit 4\"}", &opts);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "out\nerr\n[exit status 4]");
    run_out_free(&o);
    /* long files: the first 256 KiB and a note */
    _cleanup_free_ char *big = path_in(&w, "big.txt");
    _cleanup_free_ char *content = malloc(300001);
    REQUIRE(big && content);
    memset(content, 'a', 300000);
    content[300000] = '\0';
    REQUIRE(write_file(big, content));
    o = run_on(ct, "read_file", "{\"path\":\"big.txt\"}", &opts);
    CHECK_INT(o.is_error, 0);
    CHECK(o.text && strlen(o.text) == 262144 + 1 + 58);
    CHECK_HAS(o.text, "aaaa\n[file truncated: showing the first 262144 of 300000 bytes]");
    run_out_free(&o);
    o = run_on(ct, "read_file", "{\"path\":\".\"}", &opts);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "read_file: not a regular file\n[exit status 1]");
    run_out_free(&o);
    /* git tools in a fresh repository */
    o = run_on(ct, "run_shell", "{\"command\":\"git init -q . && git add hello.txt\"}", &opts);
    CHECK_INT(o.is_error, 0);
    run_out_free(&o);
    o = run_on(ct, "list_changed_files", "{}", &opts);
    CHECK_INT(o.is_error, 0);
    CHECK_HAS(o.text, "A  hello.txt\n?? big.txt"); /* git may warn first (HOME) */
    run_out_free(&o);
    o = run_on(ct, "list_changed_files", "{\"path\":\"../..\"}", &opts);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "path \"../..\" is outside the session's working directory");
    run_out_free(&o);
    o = run_on(ct, "show_diff", "{\"base\":\"--output=/tmp/x\"}", &opts);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "show_diff: base must not start with \"-\" (it would be read as an option)");
    run_out_free(&o);
    rc_custom_tools_free(ct);
    workdir_remove(&w);
}

TEST(manifest_valid_fields)
{
    rc_error err = {0};
    rc_custom_tools *ct =
        load_tools("{\"name\":\"t\",\"description\":\"d\",\"program\":\"/usr/bin/env\","
                   "\"argv\":[\"-0\",{\"input\":\"a\",\"optional\":true,\"flag\":\"-u\"}],"
                   "\"env\":{\"FOO\":\"bar\",\"X\":{\"input\":\"x\",\"default\":3}},"
                   "\"stdin\":{\"input\":\"data\",\"optional\":true},\"cwd\":\"./sub//dir/.\","
                   "\"timeout_ms\":5000,\"max_output_bytes\":2048,\"ok_exit_codes\":[0,1],"
                   "\"inherit_env\":false}",
                   &err);
    if (!ct)
        printf("# %s\n", err.msg);
    REQUIRE(ct);
    const rc_custom_tool *t = &rc_custom_tools_manifest(ct)->tools[0];
    CHECK_STR(t->name, "t");
    CHECK_STR(t->description, "d");
    CHECK_STR(t->program, "/usr/bin/env");
    CHECK(!t->shell);
    CHECK_INT(t->nargs, 2);
    CHECK_INT(t->args[0].kind, RC_CUSTOM_ARG_LITERAL);
    CHECK_INT(t->args[1].kind, RC_CUSTOM_ARG_INPUT);
    CHECK_STR(t->args[1].flag, "-u");
    CHECK(t->args[1].optional);
    CHECK_INT(t->nenv, 2);
    CHECK(t->has_stdin);
    CHECK_STR(t->cwd, "sub/dir");
    CHECK_INT(t->timeout_ms, 5000);
    CHECK_INT(t->max_output_bytes, 2048);
    CHECK_INT(t->n_ok_exit_codes, 2);
    CHECK(!t->inherit_env);
    rc_custom_tools_free(ct);

    /* defaults */
    ct = load_tools("{\"name\":\"d\",\"program\":\"/bin/true\"}", &err);
    REQUIRE(ct);
    t = &rc_custom_tools_manifest(ct)->tools[0];
    CHECK_INT(t->timeout_ms, 120000);
    CHECK_INT(t->max_output_bytes, 102400);
    CHECK_INT(t->n_ok_exit_codes, 1);
    CHECK_INT(t->ok_exit_codes[0], 0);
    CHECK(t->inherit_env);
    CHECK_STR(t->cwd, "");
    CHECK(!t->has_stdin);
    rc_custom_tools_free(ct);

    /* shell defaults to /bin/sh; names up to 128 characters of the API's alphabet */
    ct = load_tools("{\"name\":\"Ab-9_z\",\"shell\":true,\"script\":\"echo hi\"}", &err);
    REQUIRE(ct);
    CHECK_STR(rc_custom_tools_manifest(ct)->tools[0].program, "/bin/sh");
    rc_custom_tools_free(ct);
    char name[129];
    memset(name, 'n', 128);
    name[128] = '\0';
    char tool[400];
    snprintf(tool, sizeof(tool), "{\"name\":\"%s\",\"program\":\"/bin/true\"}", name);
    CHECK_STR(manifest_error(tool, NULL), "");
}

/* Every field's error: the manifest fragment and a piece of the expected message. */
static const struct {
    const char *tools;
    const char *msg;
} bad_manifests[] = {
    {"1", "tools[0]: tool: must be an object"},
    {"{\"program\":\"/bin/true\"}", "tools[0]: name: is required"},
    {"{\"name\":\"\",\"program\":\"/bin/true\"}", "name: must be 1 to 128 characters"},
    {"{\"name\":\"a b\",\"program\":\"/bin/true\"}", "may only contain letters"},
    {"{\"name\":\"a.b\",\"program\":\"/bin/true\"}", "may only contain letters"},
    {"{\"name\":7,\"program\":\"/bin/true\"}", "name: must be a string"},
    {"{\"name\":\"bash\",\"program\":\"/bin/true\"}", "\"bash\" is a built-in toolset tool"},
    {"{\"name\":\"web_fetch\",\"program\":\"/bin/true\"}", "is a built-in toolset tool"},
    {"{\"name\":\"mcp__x\",\"program\":\"/bin/true\"}", "mcp__ are reserved"},
    {"{\"name\":\"a\",\"program\":\"/bin/true\"},{\"name\":\"a\",\"program\":\"/bin/true\"}",
     "tools[1]: name: \"a\" is declared twice"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"timeout\":5}",
     "tools[0] (\"t\"): tool: unknown key \"timeout\""},
    {"{\"name\":\"t\"}", "(\"t\"): program: is required"},
    {"{\"name\":\"t\",\"program\":\"true\"}", "program: must be an absolute path"},
    {"{\"name\":\"t\",\"program\":\"\"}", "program: must not be empty"},
    {"{\"name\":\"t\",\"program\":\"/bin/bash\",\"argv\":[\"-c\",{\"input\":\"c\"}]}",
     "program: is a shell: declare \"shell\": true"},
    {"{\"name\":\"t\",\"program\":\"/usr/bin/busybox\"}", "program: is a shell"},
    {"{\"name\":\"t\",\"shell\":true}", "script: is required with \"shell\": true"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"script\":\"x\"}",
     "script: is only allowed with \"shell\": true"},
    {"{\"name\":\"t\",\"shell\":\"yes\",\"script\":\"x\"}", "shell: must be true or false"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"description\":\"\"}",
     "description: must not be empty"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":\"-x\"}", "argv: must be an array"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[1]}",
     "argv[0]: must be a string or an {\"input\": ...} placeholder"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[\"a\",{\"optional\":true}]}",
     "argv[1]: a placeholder needs \"input\""},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[{\"input\":\"\"}]}",
     "argv[0]: must not be empty"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[{\"input\":\"a\",\"split\":true}]}",
     "argv[0]: unknown key \"split\""},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[{\"input\":\"a\",\"optional\":1}]}",
     "argv[0]: must be true or false"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[{\"input\":\"a\",\"default\":[1]}]}",
     "default must be a string, number or boolean"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[{\"input\":\"a\",\"path\":true,"
     "\"default\":1}]}",
     "default of a path must be a string"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[{\"input\":\"a\",\"flag\":\"\"}]}",
     "argv[0]: must not be empty"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":[]}", "env: must be an object"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":{\"1X\":\"v\"}}",
     "env: \"1X\" is not a valid variable name"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":{\"A=B\":\"v\"}}",
     "is not a valid variable name"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":{\"anthropic_api_key\":\"v\"}}",
     "env.anthropic_api_key: ANTHROPIC_* variables are never passed to tools"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":{\"X\":1}}",
     "env.X: must be a string or an {\"input\": ...} placeholder"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":{\"X\":{\"input\":\"a\",\"flag\":\"-f\"}}}",
     "env.X: unknown key \"flag\""},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":{\"LD_PRELOAD\":{\"input\":\"a\"}}}",
     "env.LD_PRELOAD: a value from the tool input cannot set LD_PRELOAD"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":{\"BASH_ENV\":{\"input\":\"a\"}}}",
     "cannot set BASH_ENV"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"inherit_env\":0}",
     "inherit_env: must be true or false"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"stdin\":{\"input\":\"a\",\"path\":true}}",
     "stdin: unknown key \"path\""},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"stdin\":5}", "stdin: must be a string or"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"cwd\":\"/abs\"}",
     "cwd: must be relative to the workdir"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"cwd\":\"a/../../b\"}",
     "cwd: must not contain \"..\""},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"cwd\":3}", "cwd: must be a string"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"timeout_ms\":0}",
     "timeout_ms: must be between 1 and 120000"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"timeout_ms\":120001}",
     "timeout_ms: must be between 1 and 120000"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"timeout_ms\":1.5}",
     "timeout_ms: must be an integer"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"timeout_ms\":\"5\"}",
     "timeout_ms: must be an integer"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"max_output_bytes\":0}",
     "max_output_bytes: must be between 1 and 524288"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"max_output_bytes\":524289}",
     "max_output_bytes: must be between"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"ok_exit_codes\":[]}",
     "ok_exit_codes: must be an array of 1 to 16"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"ok_exit_codes\":[256]}",
     "ok_exit_codes: entries must be integers from 0 to 255"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"ok_exit_codes\":[\"0\"]}",
     "ok_exit_codes: entries must be integers"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"input_schema\":[]}",
     "input_schema: must be an object"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"input_schema\":{\"type\":\"string\"}}",
     "input_schema: must have \"type\": \"object\""},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"input_schema\":{\"type\":\"object\","
     "\"properties\":{\"a\":{\"$ref\":\"#/x\"}}}}",
     "input_schema: must not use $ref"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"input_schema\":{\"type\":\"object\","
     "\"anyOf\":[]}}",
     "must not have a top-level anyOf"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"input_schema\":{\"type\":\"object\","
     "\"properties\":[]}}",
     "properties must be an object"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"input_schema\":{\"type\":\"object\","
     "\"required\":[1]}}",
     "required must be an array of names"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[{\"input\":\"b\"}],"
     "\"input_schema\":{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"a\"]}}",
     "argv[0]: input \"b\" is not declared in input_schema.properties"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"argv\":[{\"input\":\"a\"}],"
     "\"input_schema\":{\"type\":\"object\",\"properties\":{\"a\":{}}}}",
     "argv[0]: input \"a\" is required here (no optional/default) but not listed in "
     "input_schema.required"},
    {"{\"name\":\"t\",\"program\":\"/bin/true\",\"env\":{\"E\":{\"input\":\"e\"}},"
     "\"input_schema\":{\"type\":\"object\"}}",
     "env.E: input \"e\" is not declared"},
};

TEST(manifest_errors_name_tool_and_field)
{
    for (size_t i = 0; i < sizeof(bad_manifests) / sizeof(bad_manifests[0]); i++) {
        int code = 0;
        const char *msg = manifest_error(bad_manifests[i].tools, &code);
        if (!strstr(msg, bad_manifests[i].msg) || code != -RC_EINVAL)
            rc_test_fail(__FILE__, __LINE__, "case %zu: got %s \"%s\", want \"%s\"", i,
                         rc_errcode_name(code), msg, bad_manifests[i].msg);
        else
            CHECK_HAS(msg, "m.json: ");
    }
}

TEST(manifest_top_level_errors)
{
    static const struct {
        const char *text;
        int code;
        const char *msg;
    } cases[] = {
        {"[]", RC_EINVAL, "must be a JSON object"},
        {"{}", RC_EINVAL, "tools: is required and must be an array"},
        {"{\"tools\":{}}", RC_EINVAL, "tools: is required"},
        {"{\"tools\":[],\"extra\":1}", RC_EINVAL, "manifest: unknown key \"extra\""},
        {"{\"tools\":[],\"version\":2}", RC_EINVAL, "version: must be 1"},
        {"{\"tools\":[],\"tools\":[]}", RC_EPARSE, "m.json"},
        {"{\"tools\":[]", RC_EPARSE, "m.json"},
        {"{\"tools\":[]} x", RC_EPARSE, "m.json"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rc_custom_manifest *m = NULL;
        rc_error err = {0};
        int r = rc_custom_manifest_parse(cases[i].text, strlen(cases[i].text), "m.json", &m, &err);
        if (r != -cases[i].code || !strstr(err.msg, cases[i].msg))
            rc_test_fail(__FILE__, __LINE__, "case %zu: got %d \"%s\"", i, r, err.msg);
        rc_custom_manifest_free(m);
    }
    /* more than 128 tools */
    rc_buf b = RC_BUF_INIT(1 << 20);
    rc_buf_append_str(&b, "{\"tools\":[", NULL);
    for (int i = 0; i < 129; i++)
        rc_buf_appendf(&b, NULL, "%s{\"name\":\"t%d\",\"program\":\"/bin/true\"}", i ? "," : "", i);
    rc_buf_append_str(&b, "]}", NULL);
    rc_custom_manifest *m = NULL;
    rc_error err = {0};
    CHECK_INT(rc_custom_manifest_parse(b.data, b.len, NULL, &m, &err), -RC_EINVAL);
    CHECK_HAS(err.msg, "more than 128 tools");
    rc_buf_free(&b);
}

TEST(agent_json_generated_schema)
{
    rc_error err = {0};
    rc_custom_tools *ct = load_tools(
        "{\"name\":\"gen\",\"program\":\"/bin/echo\",\"argv\":[{\"input\":\"a\"},"
        "{\"input\":\"b\",\"optional\":true},{\"input\":\"c\",\"default\":true,\"flag\":\"-c\"}],"
        "\"env\":{\"N\":{\"input\":\"n\",\"default\":5}},\"stdin\":{\"input\":\"a\"}}",
        &err);
    REQUIRE(ct);
    cJSON *agent = NULL;
    REQUIRE(rc_custom_tools_agent_json(ct, &agent, &err) == 0);
    char *s = cJSON_PrintUnformatted(agent);
    CHECK_STR(s,
              "[{\"type\":\"custom\",\"name\":\"gen\",\"input_schema\":{\"type\":\"object\","
              "\"properties\":{\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"string\"},"
              "\"c\":{\"type\":\"boolean\"},\"n\":{\"type\":\"number\"}},\"required\":[\"a\"]}}]");
    free(s);
    cJSON_Delete(agent);
    rc_custom_tools_free(ct);
}

/* ---- building argv ------------------------------------------------------------------------ */

TEST(argv_values_are_never_split_or_interpreted)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    rc_custom_cmd cmd = {0};
    rc_buf msg = RC_BUF_INIT(4096);
    const char *tool = "{\"name\":\"p\",\"program\":\"/usr/bin/printf\","
                       "\"argv\":[\"[%s]\\n\",{\"input\":\"a\"},{\"input\":\"b\"},"
                       "{\"input\":\"c\"},{\"input\":\"d\"},{\"input\":\"e\"}]}";
    const char *input = "{\"a\":\"two words\",\"b\":\"it's \\\"quoted\\\"\","
                        "\"c\":\"x; rm -rf / ; `id`\",\"d\":\"$(touch /tmp/rc-pwned) $HOME *\","
                        "\"e\":\"line1\\nline2\"}";
    REQUIRE(build(tool, input, w.path, &cmd, &msg) == 0);
    REQUIRE(argc_of(cmd.argv) == 7);
    CHECK_STR(cmd.argv[0], "/usr/bin/printf");
    CHECK_STR(cmd.argv[1], "[%s]\n");
    CHECK_STR(cmd.argv[2], "two words");
    CHECK_STR(cmd.argv[3], "it's \"quoted\"");
    CHECK_STR(cmd.argv[4], "x; rm -rf / ; `id`");
    CHECK_STR(cmd.argv[5], "$(touch /tmp/rc-pwned) $HOME *");
    CHECK_STR(cmd.argv[6], "line1\nline2");
    CHECK_STR(cmd.cwd, w.path);
    CHECK(cmd.stdin_data == NULL);
    rc_custom_cmd_clear(&cmd);

    /* and when run, the program receives exactly those strings */
    unlink("/tmp/rc-pwned");
    run_out o = run_one("{\"name\":\"p\",\"program\":\"/usr/bin/printf\","
                        "\"argv\":[\"[%s]\",{\"input\":\"a\"},{\"input\":\"b\"},"
                        "{\"input\":\"c\"},{\"input\":\"d\"}]}",
                        "p", input, &w);
    CHECK_INT(o.is_error, 0);
    CHECK_STR(o.text, "[two words][it's \"quoted\"][x; rm -rf / ; `id`]"
                      "[$(touch /tmp/rc-pwned) $HOME *]");
    CHECK(access("/tmp/rc-pwned", F_OK) != 0);
    run_out_free(&o);
    rc_buf_free(&msg);
    workdir_remove(&w);
}

TEST(argv_placeholders_flags_defaults_numbers)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    rc_custom_cmd cmd = {0};
    rc_buf msg = RC_BUF_INIT(4096);
    const char *tool = "{\"name\":\"p\",\"program\":\"/bin/echo\",\"argv\":["
                       "{\"input\":\"v\",\"flag\":\"--verbose\",\"optional\":true},"
                       "{\"input\":\"q\",\"flag\":\"--quiet\",\"optional\":true},"
                       "{\"input\":\"k\",\"flag\":\"-k\",\"optional\":true},"
                       "{\"input\":\"n\",\"prefix\":\"--count=\"},"
                       "{\"input\":\"f\",\"default\":1.5},"
                       "{\"input\":\"big\",\"optional\":true},"
                       "{\"input\":\"absent\",\"optional\":true,\"flag\":\"-x\"},"
                       "{\"input\":\"d\",\"default\":\"dflt\"},"
                       "{\"input\":\"b\",\"default\":false}]}";
    REQUIRE(build(tool,
                  "{\"v\":true,\"q\":false,\"k\":\"expr with space\",\"n\":42,"
                  "\"big\":9007199254740993,\"absent\":null}",
                  w.path, &cmd, &msg) == 0);
    const char *want[] = {"/bin/echo", "--verbose",        "-k",   "expr with space", "--count=42",
                          "1.5",       "9007199254740993", "dflt", "false",           NULL};
    size_t n = argc_of(cmd.argv);
    CHECK_INT(n, 9);
    for (size_t i = 0; i < n && want[i]; i++)
        CHECK_STR(cmd.argv[i], want[i]);
    rc_custom_cmd_clear(&cmd);

    /* numbers: integers as integers, fractions in the shortest exact form */
    REQUIRE(build("{\"name\":\"p\",\"program\":\"/bin/echo\",\"argv\":[{\"input\":\"a\"},"
                  "{\"input\":\"b\"},{\"input\":\"c\"},{\"input\":\"d\",\"allow_dash\":true}]}",
                  "{\"a\":1e3,\"b\":0.1,\"c\":1.0,\"d\":-7}", w.path, &cmd, &msg) == 0);
    CHECK_STR(cmd.argv[1], "1000");
    CHECK_STR(cmd.argv[2], "0.1");
    CHECK_STR(cmd.argv[3], "1");
    CHECK_STR(cmd.argv[4], "-7");
    rc_custom_cmd_clear(&cmd);
    rc_buf_free(&msg);
    workdir_remove(&w);
}

TEST(argv_refused_inputs)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    static const struct {
        const char *tool_argv;
        const char *input;
        const char *msg;
    } cases[] = {
        {"[{\"input\":\"a\"}]", "{}", "p: a is required"},
        {"[{\"input\":\"a\"}]", "{\"a\":null}", "p: a is required"},
        {"[{\"input\":\"a\"}]", "[1,2]", "p: a is required"},
        {"[{\"input\":\"a\"}]", "{\"a\":[\"x\"]}", "p: a must be a string, number or boolean"},
        {"[{\"input\":\"a\"}]", "{\"a\":{\"x\":1}}", "p: a must be a string, number or boolean"},
        {"[{\"input\":\"a\"}]", "{\"a\":\"-rf\"}",
         "p: a must not start with \"-\" (it would be read as an option)"},
        {"[{\"input\":\"a\"}]", "{\"a\":-1}", "must not start with \"-\""},
        {"[{\"input\":\"a\",\"path\":true}]", "{\"a\":5}", "p: a must be a string"},
        {"[{\"input\":\"a\",\"path\":true}]", "{\"a\":\"../outside\"}",
         "path \"../outside\" is outside the session's working directory"},
        {"[{\"input\":\"a\",\"path\":true}]", "{\"a\":\"/etc/passwd\"}",
         "path \"/etc/passwd\" is outside the session's working directory"},
        {"[{\"input\":\"a\",\"path\":true}]", "{\"a\":\"link/passwd\"}",
         "path \"link/passwd\" is outside the session's working directory"},
        {"[{\"input\":\"a\",\"path\":true}]", "{\"a\":\"sub/../../x\\\"y\"}",
         "path \"sub/../../x\\\"y\" is outside"},
    };
    _cleanup_free_ char *link = path_in(&w, "link");
    REQUIRE(link && symlink("/etc", link) == 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char tool[512];
        snprintf(tool, sizeof(tool), "{\"name\":\"p\",\"program\":\"/bin/echo\",\"argv\":%s}",
                 cases[i].tool_argv);
        rc_custom_cmd cmd = {0};
        rc_buf msg = RC_BUF_INIT(4096);
        int r = build(tool, cases[i].input, w.path, &cmd, &msg);
        if (r != 1 || !strstr(rc_buf_cstr(&msg), cases[i].msg))
            rc_test_fail(__FILE__, __LINE__, "case %zu: got %d \"%s\"", i, r, rc_buf_cstr(&msg));
        rc_custom_cmd_clear(&cmd);
        rc_buf_free(&msg);
    }
    /* a dash is fine after a literal "--", with allow_dash, with a flag or a prefix */
    rc_custom_cmd cmd = {0};
    rc_buf msg = RC_BUF_INIT(4096);
    REQUIRE(build("{\"name\":\"p\",\"program\":\"/bin/echo\",\"argv\":[{\"input\":\"a\","
                  "\"flag\":\"-e\"},{\"input\":\"a\",\"prefix\":\"x=\"},\"--\",{\"input\":\"a\"}]}",
                  "{\"a\":\"-v\"}", w.path, &cmd, &msg) == 0);
    CHECK_INT(argc_of(cmd.argv), 6);
    CHECK_STR(cmd.argv[1], "-e");
    CHECK_STR(cmd.argv[2], "-v");
    CHECK_STR(cmd.argv[3], "x=-v");
    CHECK_STR(cmd.argv[4], "--");
    CHECK_STR(cmd.argv[5], "-v");
    rc_custom_cmd_clear(&cmd);
    rc_buf_free(&msg);
    workdir_remove(&w);
}

TEST(path_placeholder_resolves_inside_workdir)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    _cleanup_free_ char *sub = path_in(&w, "sub");
    _cleanup_free_ char *inner = path_in(&w, "inner");
    REQUIRE(sub && inner && mkdir(sub, 0755) == 0 && symlink("sub", inner) == 0);
    rc_custom_cmd cmd = {0};
    rc_buf msg = RC_BUF_INIT(4096);
    _cleanup_free_ char *input = NULL;
    REQUIRE(asprintf(&input, "{\"a\":\"inner/new.txt\",\"b\":\"%s/sub/../sub\",\"c\":\"\"}",
                     w.path) > 0);
    REQUIRE(build("{\"name\":\"p\",\"program\":\"/bin/echo\",\"argv\":["
                  "{\"input\":\"a\",\"path\":true},{\"input\":\"b\",\"path\":true,"
                  "\"prefix\":\"--dir=\"},{\"input\":\"c\",\"path\":true}]}",
                  input, w.path, &cmd, &msg) == 0);
    _cleanup_free_ char *want_a = path_in(&w, "sub/new.txt");
    _cleanup_free_ char *want_b = NULL;
    REQUIRE(asprintf(&want_b, "--dir=%s/sub", w.path) > 0);
    CHECK_STR(cmd.argv[1], want_a);
    CHECK_STR(cmd.argv[2], want_b);
    CHECK_STR(cmd.argv[3], w.path);
    rc_custom_cmd_clear(&cmd);
    rc_buf_free(&msg);
    workdir_remove(&w);
}

TEST(shell_mode_inputs_arrive_as_arguments_and_env)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    unlink("/tmp/rc-pwned2");
    const char *tool = "{\"name\":\"s\",\"shell\":true,"
                       "\"script\":\"printf '%s|%s|%s' \\\"$0\\\" \\\"$1\\\" \\\"$FILTER\\\"\","
                       "\"argv\":[{\"input\":\"a\"}],\"env\":{\"FILTER\":{\"input\":\"f\"}}}";
    rc_custom_cmd cmd = {0};
    rc_buf msg = RC_BUF_INIT(4096);
    REQUIRE(build(tool, "{\"a\":\"-x $(touch /tmp/rc-pwned2)\",\"f\":\"`touch /tmp/rc-pwned2`\"}",
                  w.path, &cmd, &msg) == 0);
    CHECK_INT(argc_of(cmd.argv), 5);
    CHECK_STR(cmd.argv[0], "/bin/sh");
    CHECK_STR(cmd.argv[1], "-c");
    CHECK_STR(cmd.argv[3], "s");
    CHECK_STR(cmd.argv[4], "-x $(touch /tmp/rc-pwned2)");
    CHECK_STR(cmd.env_set[0], "FILTER=`touch /tmp/rc-pwned2`");
    rc_custom_cmd_clear(&cmd);
    run_out o = run_one(
        tool, "s", "{\"a\":\"-x $(touch /tmp/rc-pwned2)\",\"f\":\"`touch /tmp/rc-pwned2`\"}", &w);
    CHECK_INT(o.is_error, 0);
    CHECK_STR(o.text, "s|-x $(touch /tmp/rc-pwned2)|`touch /tmp/rc-pwned2`");
    CHECK(access("/tmp/rc-pwned2", F_OK) != 0);
    run_out_free(&o);
    rc_buf_free(&msg);
    workdir_remove(&w);
}

/* ---- running ------------------------------------------------------------------------------ */

TEST(missing_input_is_an_error_result)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    run_out o = run_one("{\"name\":\"e\",\"program\":\"/bin/echo\",\"argv\":[{\"input\":\"x\"}]}",
                        "e", "{}", &w);
    CHECK_INT(o.rc, 0);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "e: x is required");
    run_out_free(&o);
    workdir_remove(&w);
}

TEST(exit_status_and_stderr_are_reported)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    const char *tool = "{\"name\":\"x\",\"shell\":true,\"script\":\"echo out; echo err >&2; "
                       "exit $1\",\"argv\":[{\"input\":\"code\"}],\"ok_exit_codes\":[0,1]}";
    run_out o = run_one(tool, "x", "{\"code\":3}", &w);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "out\nerr\n[exit status 3]");
    run_out_free(&o);
    o = run_one(tool, "x", "{\"code\":1}", &w); /* declared as not an error */
    CHECK_INT(o.is_error, 0);
    CHECK_STR(o.text, "out\nerr");
    run_out_free(&o);
    o = run_one(tool, "x", "{\"code\":0}", &w);
    CHECK_INT(o.is_error, 0);
    CHECK_STR(o.text, "out\nerr");
    run_out_free(&o);
    /* no output at all */
    o = run_one("{\"name\":\"f\",\"program\":\"/bin/false\"}", "f", "{}", &w);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "[exit status 1]");
    run_out_free(&o);
    o = run_one("{\"name\":\"t\",\"program\":\"/bin/true\"}", "t", "{}", &w);
    CHECK_INT(o.is_error, 0);
    CHECK_STR(o.text, "(no output)");
    run_out_free(&o);
    /* killed by a signal */
    o = run_one("{\"name\":\"k\",\"shell\":true,\"script\":\"echo before; kill -TERM $$\"}", "k",
                "{}", &w);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "before\n[killed by signal 15 (SIGTERM)]");
    run_out_free(&o);
    /* a program that cannot start */
    rc_error err = {0};
    rc_custom_tools *ct = load_tools("{\"name\":\"n\",\"program\":\"/no/such/program\"}", &err);
    REQUIRE(ct);
    rc_custom_run_opts opts = {.workdir = w.path, .uid = -1, .gid = -1};
    o = run_on(ct, "n", "{}", &opts);
    CHECK_INT(o.rc, 0);
    CHECK_INT(o.is_error, 1);
    CHECK_HAS(o.text, "Error: n: cannot exec for /no/such/program: No such file or directory");
    run_out_free(&o);
    rc_custom_tools_free(ct);
    workdir_remove(&w);
}

static bool process_gone(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        char path[64], state = 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
            return true;
        int n = fscanf(f, "%*d %*s %c", &state);
        fclose(f);
        if (n == 1 && (state == 'Z' || state == 'X'))
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static pid_t read_pid(const char *path)
{
    FILE *f = fopen(path, "re");
    long pid = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

TEST(timeout_kills_the_process_group)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    _cleanup_free_ char *pidfile = path_in(&w, "bg.pid");
    REQUIRE(pidfile);
    run_out o =
        run_one("{\"name\":\"slow\",\"shell\":true,\"script\":\"sleep 30 & echo $! > bg.pid;"
                " echo started; wait\",\"timeout_ms\":300}",
                "slow", "{}", &w);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "started\n[timed out after 300ms; the tool's processes were killed]");
    CHECK(o.ms < 20000); /* did not wait for the 30 s sleep */
    pid_t bg = read_pid(pidfile);
    CHECK(bg > 0);
    if (bg > 0)
        CHECK(process_gone(bg));
    run_out_free(&o);
    workdir_remove(&w);
}

TEST(leftover_background_process_is_killed_when_the_tool_exits)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    _cleanup_free_ char *pidfile = path_in(&w, "bg.pid");
    run_out o = run_one("{\"name\":\"bg\",\"shell\":true,"
                        "\"script\":\"sleep 30 & echo $! > bg.pid; echo done\"}",
                        "bg", "{}", &w);
    CHECK_INT(o.is_error, 0);
    CHECK_STR(o.text, "done");
    CHECK(o.ms < 20000); /* the sleep holds the pipe open: we do not wait for it */
    pid_t bg = read_pid(pidfile);
    CHECK(bg > 0);
    if (bg > 0)
        CHECK(process_gone(bg));
    run_out_free(&o);
    workdir_remove(&w);
}

TEST(output_cap_keeps_the_tail)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    run_out o =
        run_one("{\"name\":\"many\",\"shell\":true,\"script\":\"i=0; while [ $i -lt 20000 ];"
                " do echo \\\"line $i\\\"; i=$((i+1)); done\",\"max_output_bytes\":1000}",
                "many", "{}", &w);
    CHECK_INT(o.is_error, 0);
    REQUIRE(o.text);
    CHECK(strncmp(o.text, "[output truncated]\n", 19) == 0);
    size_t len = strlen(o.text);
    CHECK(len <= 19 + 1000);
    CHECK(len > 19 + 900);
    CHECK(len >= 10 && strcmp(o.text + len - 10, "line 19999") == 0);
    run_out_free(&o);

    /* a large flood (several MiB) with the default cap */
    o = run_one("{\"name\":\"flood\",\"program\":\"/usr/bin/head\",\"argv\":[\"-c\",\"8000000\","
                "\"/dev/zero\"]}",
                "flood", "{}", &w);
    REQUIRE(o.text);
    CHECK(strncmp(o.text, "[output truncated]\n", 19) == 0);
    run_out_free(&o);

    /* the cut never starts inside a UTF-8 character; ANSI colours are removed */
    o = run_one("{\"name\":\"u\",\"program\":\"/usr/bin/printf\",\"argv\":"
                "[\"a\\u00e9\\u00e9\\u00e9\\u00e9\"],\"max_output_bytes\":5}",
                "u", "{}", &w);
    CHECK_STR(o.text, "[output truncated]\n\xc3\xa9\xc3\xa9");
    run_out_free(&o);
    o = run_one("{\"name\":\"u\",\"program\":\"/usr/bin/printf\",\"argv\":"
                "[\"\\u001b[1;31mred\\u001b[0m plain\"]}",
                "u", "{}", &w);
    CHECK_STR(o.text, "red plain");
    run_out_free(&o);
    /* invalid UTF-8 is replaced */
    o = run_one("{\"name\":\"b\",\"program\":\"/usr/bin/printf\",\"argv\":[\"a\\\\377b\"]}", "b",
                "{}", &w);
    CHECK_STR(o.text, "a\xef\xbf\xbd"
                      "b");
    run_out_free(&o);
    workdir_remove(&w);
}

TEST(environment_is_scrubbed)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    setenv("ANTHROPIC_TEST_SECRET", "sk-ant-test-value", 1);
    setenv("anthropic_lower", "x", 1);
    setenv("RC_CUSTOM_VISIBLE", "yes", 1);
    run_out o = run_one("{\"name\":\"env\",\"program\":\"/usr/bin/env\",\"env\":{\"EXTRA\":\"1\"}}",
                        "env", "{}", &w);
    CHECK_INT(o.is_error, 0);
    CHECK(!contains(o.text, "ANTHROPIC_"));
    CHECK(!contains(o.text, "anthropic_lower"));
    CHECK(!contains(o.text, "sk-ant"));
    CHECK_HAS(o.text, "RC_CUSTOM_VISIBLE=yes");
    CHECK_HAS(o.text, "EXTRA=1");
    run_out_free(&o);
    /* inherit_env false: PATH and the manifest's variables only */
    o = run_one("{\"name\":\"env\",\"program\":\"/usr/bin/env\",\"inherit_env\":false,"
                "\"env\":{\"EXTRA\":{\"input\":\"v\"}}}",
                "env", "{\"v\":\"a b\"}", &w);
    CHECK_STR(o.text, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
                      "EXTRA=a b");
    run_out_free(&o);
    unsetenv("ANTHROPIC_TEST_SECRET");
    unsetenv("anthropic_lower");
    unsetenv("RC_CUSTOM_VISIBLE");
    workdir_remove(&w);
}

TEST(stdin_and_cwd)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    /* stdin is /dev/null unless declared */
    run_out o = run_one("{\"name\":\"c\",\"program\":\"/bin/cat\"}", "c", "{}", &w);
    CHECK_INT(o.is_error, 0);
    CHECK_STR(o.text, "(no output)");
    run_out_free(&o);
    o = run_one("{\"name\":\"c\",\"program\":\"/bin/cat\",\"stdin\":{\"input\":\"data\"}}", "c",
                "{\"data\":\"some; $(text)\\n\"}", &w);
    CHECK_STR(o.text, "some; $(text)");
    run_out_free(&o);
    /* a big stdin echoed back: writing and reading go on together (no deadlock) */
    size_t n = 600000;
    _cleanup_free_ char *input = malloc(n + 32);
    REQUIRE(input);
    memcpy(input, "{\"data\":\"", 9);
    memset(input + 9, 'z', n);
    memcpy(input + 9 + n, "\"}", 3);
    o = run_one("{\"name\":\"c\",\"program\":\"/bin/cat\",\"stdin\":{\"input\":\"data\"},"
                "\"max_output_bytes\":524288,\"timeout_ms\":10000}",
                "c", input, &w);
    CHECK_INT(o.is_error, 0);
    CHECK(o.text && strlen(o.text) == 19 + 524288);
    run_out_free(&o);
    /* cwd relative to the workdir */
    _cleanup_free_ char *sub = path_in(&w, "sub");
    REQUIRE(sub && mkdir(sub, 0755) == 0);
    o = run_one("{\"name\":\"pwd\",\"program\":\"/bin/pwd\",\"cwd\":\"sub\"}", "pwd", "{}", &w);
    CHECK_STR(o.text, sub);
    run_out_free(&o);
    /* a cwd that a symlink moves out of the workdir is refused */
    _cleanup_free_ char *out = path_in(&w, "out");
    REQUIRE(out && symlink("/tmp", out) == 0);
    o = run_one("{\"name\":\"pwd\",\"program\":\"/bin/pwd\",\"cwd\":\"out\"}", "pwd", "{}", &w);
    CHECK_INT(o.is_error, 1);
    CHECK_HAS(o.text, "is not inside the session's working directory");
    run_out_free(&o);
    workdir_remove(&w);
}

TEST(runs_as_the_tool_user)
{
    if (geteuid() != 0)
        SKIP("needs root to switch to the nobody user");
    workdir w;
    REQUIRE(workdir_make(&w));
    rc_error err = {0};
    rc_custom_tools *ct = load_tools("{\"name\":\"id\",\"shell\":true,"
                                     "\"script\":\"id -u; id -g; id -G; pwd\"}",
                                     &err);
    REQUIRE(ct);
    rc_custom_run_opts opts = {.workdir = w.path, .uid = 65534, .gid = 65534};
    run_out o = run_on(ct, "id", "{}", &opts);
    CHECK_INT(o.is_error, 0);
    _cleanup_free_ char *want = NULL;
    REQUIRE(asprintf(&want, "65534\n65534\n65534\n%s", w.path) > 0);
    CHECK_STR(o.text, want);
    run_out_free(&o);
    /* the tool user cannot write where it has no permission */
    rc_custom_tools_free(ct);
    ct = load_tools("{\"name\":\"w\",\"shell\":true,\"script\":\"echo x > f\"}", &err);
    REQUIRE(ct);
    o = run_on(ct, "w", "{}", &opts);
    CHECK_INT(o.is_error, 1);
    CHECK_HAS(o.text, "Permission denied");
    run_out_free(&o);
    rc_custom_tools_free(ct);
    workdir_remove(&w);
}

typedef struct cancel_arg {
    rc_custom_tools *ct;
    int delay_ms;
} cancel_arg;

static void *cancel_later(void *p)
{
    cancel_arg *a = p;
    struct timespec ts = {a->delay_ms / 1000, (long)(a->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    rc_custom_tools_cancel(a->ct);
    return NULL;
}

TEST(cancel_from_another_thread)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    rc_error err = {0};
    rc_custom_tools *ct =
        load_tools("{\"name\":\"s\",\"shell\":true,"
                   "\"script\":\"sleep 30 & echo $! > bg.pid; echo waiting; wait\"}",
                   &err);
    REQUIRE(ct);
    rc_custom_run_opts opts = {.workdir = w.path, .uid = -1, .gid = -1};
    cancel_arg a = {ct, 300};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, cancel_later, &a) == 0);
    run_out o = run_on(ct, "s", "{}", &opts);
    pthread_join(th, NULL);
    CHECK_INT(o.rc, 0);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "waiting\n[cancelled; the tool's processes were killed]");
    CHECK(o.ms < 20000); /* did not wait for the 30 s sleep */
    _cleanup_free_ char *pidfile = path_in(&w, "bg.pid");
    pid_t bg = read_pid(pidfile);
    CHECK(bg > 0 && process_gone(bg));
    run_out_free(&o);
    /* later calls fail at once */
    o = run_on(ct, "s", "{}", &opts);
    CHECK_INT(o.is_error, 1);
    CHECK_STR(o.text, "s: [cancelled before it started]");
    run_out_free(&o);
    rc_custom_tools_free(ct);
    workdir_remove(&w);
}

TEST(workdir_defaults_to_the_current_directory)
{
    rc_error err = {0};
    rc_custom_tools *ct = load_tools("{\"name\":\"pwd\",\"program\":\"/bin/pwd\"}", &err);
    REQUIRE(ct);
    char here[PATH_MAX];
    REQUIRE(getcwd(here, sizeof(here)));
    _cleanup_free_ char *canon = realpath(here, NULL);
    run_out o = run_on(ct, "pwd", "{}", NULL);
    CHECK_STR(o.text, canon);
    run_out_free(&o);
    rc_custom_run_opts opts = {.workdir = "relative/dir", .uid = -1, .gid = -1};
    o = run_on(ct, "pwd", "{}", &opts);
    CHECK_INT(o.is_error, 1);
    CHECK_HAS(o.text, "Error: pwd: the workdir must be an absolute path");
    run_out_free(&o);
    rc_custom_tools_free(ct);
}

TEST(last_run_info_for_the_log_line)
{
    workdir w;
    REQUIRE(workdir_make(&w));
    rc_error err = {0};
    rc_custom_tools *ct =
        load_tools("{\"name\":\"x\",\"shell\":true,\"script\":\"printf abc; exit $1\","
                   "\"argv\":[{\"input\":\"code\"}],\"timeout_ms\":200},"
                   "{\"name\":\"lit\",\"program\":\"/bin/cat\",\"stdin\":\"fixed text\"}",
                   &err);
    REQUIRE(ct);
    rc_custom_run_opts opts = {.workdir = w.path, .uid = -1, .gid = -1};
    rc_custom_run_info info;
    rc_custom_tools_last_run(ct, &info);
    CHECK(!info.started);
    run_out o = run_on(ct, "x", "{\"code\":5}", &opts);
    rc_custom_tools_last_run(ct, &info);
    CHECK(info.started);
    CHECK_INT(info.exit_code, 5);
    CHECK_INT(info.signal, 0);
    CHECK_INT(info.output_bytes, 3);
    CHECK(!info.timed_out && !info.cancelled);
    CHECK(info.duration_ms >= 0);
    run_out_free(&o);
    o = run_on(ct, "x", "{\"code\":\"$(sleep 5)\"}", &opts); /* never evaluated: exit fails */
    rc_custom_tools_last_run(ct, &info);
    CHECK(info.started);
    CHECK(!info.timed_out);
    CHECK_INT(info.exit_code, 2); /* "exit: Illegal number" */
    CHECK_HAS(o.text, "$(sleep");
    run_out_free(&o);
    o = run_on(ct, "x", "{}", &opts); /* refused: not started */
    rc_custom_tools_last_run(ct, &info);
    CHECK(!info.started);
    run_out_free(&o);
    o = run_on(ct, "lit", "{}", &opts);
    CHECK_STR(o.text, "fixed text");
    run_out_free(&o);
    rc_custom_tools_free(ct);

    ct = load_tools("{\"name\":\"slow\",\"program\":\"/bin/sleep\",\"argv\":[\"5\"],"
                    "\"timeout_ms\":100}",
                    &err);
    REQUIRE(ct);
    o = run_on(ct, "slow", "{}", &opts);
    rc_custom_tools_last_run(ct, &info);
    CHECK(info.timed_out);
    CHECK_INT(info.signal, SIGKILL);
    CHECK_INT(info.exit_code, -1);
    CHECK_STR(o.text, "[timed out after 100ms; the tool's processes were killed]");
    run_out_free(&o);
    rc_custom_tools_free(ct);
    workdir_remove(&w);
}
