/* test_executor.c - the tool executor (runner/executor.c): the frame and message codecs, the
 * serve loop in a forked child, and the real executor (this build's runcell-runner re-executed
 * with --tool-executor): same result texts as the in-process toolbox, only its socket and
 * /dev/null open, restart after SIGKILL between calls and during a call, a hung executor cut off,
 * cancellation. */
#include "harness.h"

#include "cleanup.h"
#include "executor.h"
#include "tools.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- fixtures ---------------------------------------------------------------------------- */

typedef struct fixture {
    char dir[64];
    rc_toolbox_config tc;
} fixture;

static void fixture_init(fixture *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/rc-executor-test.XXXXXX");
    if (!mkdtemp(f->dir))
        f->dir[0] = '\0';
    f->tc = (rc_toolbox_config){.workdir = f->dir, .rg_mode = RC_TOOLBOX_RG_NEVER};
}

static void fixture_clear(fixture *f)
{
    if (!f->dir[0])
        return;
    /* rm -r without a shell */
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", "--", f->dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

static cJSON *json(const char *text)
{
    return cJSON_Parse(text);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* This build's runcell-runner: <build>/tests/test_executor -> <build>/runcell-runner. */
static bool runner_path(char *out, size_t n)
{
    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0)
        return false;
    self[k] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return false;
    *slash = '\0';
    snprintf(out, n, "%s/../runcell-runner", self);
    return access(out, X_OK) == 0;
}

/* Run name/input through the in-process toolbox: the reference text. */
static void local_run(const fixture *f, const char *name, const char *input, rc_tool_result *ret)
{
    rc_toolbox *tb = NULL;
    cJSON *in = json(input);
    if (rc_toolbox_new(&f->tc, &tb, NULL) == 0)
        (void)rc_toolbox_run(tb, name, in, ret, NULL);
    cJSON_Delete(in);
    rc_toolbox_free(tb);
}

static int exec_run(rc_executor *ex, const char *name, const char *input, rc_tool_result *ret)
{
    cJSON *in = json(input);
    int r = rc_executor_run(ex, name, in, ret, NULL);
    cJSON_Delete(in);
    return r;
}

/* text with every occurrence of from replaced by to (same length: both are mkdtemp names). */
static void same_dir_text(const char *text, const char *from, const char *to, char *out, size_t n)
{
    snprintf(out, n, "%s", text ? text : "");
    size_t fl = strlen(from);
    for (char *p = strstr(out, from); p && strlen(to) == fl; p = strstr(p + fl, from))
        memcpy(p, to, fl);
}

/* ---- frames ------------------------------------------------------------------------------ */

TEST(frame_roundtrip_and_partial)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(1024);
    const char *p = NULL;
    size_t len = 0, used = 0;
    REQUIRE(rc_executor_frame_append(&b, "{\"a\":1}", 7, NULL) == 0);
    REQUIRE(rc_executor_frame_append(&b, "{}", 2, NULL) == 0);
    CHECK_INT(b.len, 4 + 7 + 4 + 2);
    for (size_t n = 0; n < 11; n++)
        CHECK_INT(rc_executor_frame_parse(b.data, n, 100, &p, &len, &used, NULL), 0);
    CHECK_INT(rc_executor_frame_parse(b.data, b.len, 100, &p, &len, &used, NULL), 1);
    CHECK_INT(len, 7);
    CHECK_INT(used, 11);
    CHECK_MEM(p, len, "{\"a\":1}", 7);
    CHECK_INT(rc_executor_frame_parse(b.data + used, b.len - used, 100, &p, &len, &used, NULL), 1);
    CHECK_INT(len, 2);
}

TEST(frame_bounds)
{
    const unsigned char empty[] = {0, 0, 0, 0};
    const unsigned char huge[] = {0xff, 0xff, 0xff, 0xff, 'x'};
    const unsigned char over[] = {0, 0, 0, 101};
    const char *p = NULL;
    size_t len = 0, used = 0;
    rc_error e = {0};
    CHECK_INT(rc_executor_frame_parse(empty, 4, 100, &p, &len, &used, &e), -RC_EPARSE);
    CHECK_INT(rc_executor_frame_parse(huge, 5, RC_EXECUTOR_FRAME_MAX, &p, &len, &used, &e),
              -RC_ETOOBIG);
    CHECK_INT(rc_executor_frame_parse(over, 4, 100, &p, &len, &used, &e), -RC_ETOOBIG);
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(64);
    CHECK_INT(rc_executor_frame_append(&b, "", 0, &e), -RC_ETOOBIG);
}

/* ---- messages ---------------------------------------------------------------------------- */

static int decode_answer_text(const char *payload, rc_tool_result *res)
{
    return rc_executor_answer_decode(payload, strlen(payload), res, NULL);
}

TEST(request_roundtrip)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(4096);
    cJSON *in = json("{\"file_path\":\"a b\",\"content\":\"x\\u0000y\"}");
    _cleanup_free_ char *name = NULL;
    cJSON *got = NULL;
    REQUIRE(rc_executor_request_encode("write", in, &b, NULL) == 0);
    REQUIRE(rc_executor_request_decode(b.data + 4, b.len - 4, &name, &got, NULL) == 0);
    CHECK_STR(name, "write");
    CHECK(cJSON_Compare(in, got, true));
    cJSON_Delete(got);
    cJSON_Delete(in);

    /* no input at all decodes as {} */
    _cleanup_free_ char *n2 = NULL;
    REQUIRE(rc_executor_request_decode("{\"name\":\"glob\"}", 15, &n2, &got, NULL) == 0);
    CHECK(cJSON_IsObject(got) && cJSON_GetArraySize(got) == 0);
    cJSON_Delete(got);
    char *n3 = NULL;
    CHECK(rc_executor_request_decode("{\"input\":{}}", 12, &n3, &got, NULL) < 0);
    CHECK(rc_executor_request_decode("[]", 2, &n3, &got, NULL) < 0);
    CHECK(rc_executor_request_decode("{\"name\":", 8, &n3, &got, NULL) < 0);
}

TEST(answer_roundtrip_and_validation)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(4096);
    rc_tool_result res = {.content = json("[{\"type\":\"text\",\"text\":\"hi\"}]"), .is_error = 1};
    rc_tool_result got = {0};
    rc_error e = {0};
    REQUIRE(rc_executor_answer_encode(&res, NULL, &b, NULL) == 0);
    REQUIRE(rc_executor_answer_decode(b.data + 4, b.len - 4, &got, NULL) == 0);
    CHECK_STR(rc_tool_result_text(&got), "hi");
    CHECK_INT(got.is_error, 1);
    rc_tool_result_clear(&got);
    rc_tool_result_clear(&res);

    rc_buf_reset(&b);
    REQUIRE(rc_executor_answer_encode(NULL, "disk on fire", &b, NULL) == 0);
    CHECK_INT(rc_executor_answer_decode(b.data + 4, b.len - 4, &got, &e), -RC_EIO);
    CHECK_STR(e.msg, "disk on fire");

    CHECK_INT(decode_answer_text("{\"is_error\":false,\"content\":[]}", &got), -RC_EPARSE);
    CHECK_INT(decode_answer_text(
                  "{\"is_error\":1,\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}", &got),
              -RC_EPARSE);
    CHECK_INT(decode_answer_text("{\"is_error\":false,\"content\":[{\"type\":\"text\"}]}", &got),
              -RC_EPARSE);
    CHECK_INT(decode_answer_text("{\"is_error\":false,\"content\":[{\"type\":\"video\"}]}", &got),
              -RC_EPARSE);
    CHECK_INT(decode_answer_text("{\"is_error\":false,\"content\":[1]}", &got), -RC_EPARSE);
    CHECK_INT(decode_answer_text("{\"is_error\":false,\"content\":[{\"type\":\"image\",\"source\":{"
                                 "\"type\":\"base64\"}}]}",
                                 &got),
              0);
    rc_tool_result_clear(&got);
    CHECK(got.content == NULL);
}

TEST(owns_only_file_tools)
{
    CHECK(rc_executor_owns("read") && rc_executor_owns("write") && rc_executor_owns("edit"));
    CHECK(rc_executor_owns("glob") && rc_executor_owns("grep"));
    CHECK(!rc_executor_owns("bash") && !rc_executor_owns("run_tests") && !rc_executor_owns(NULL));
}

/* ---- the serve loop in a forked child ---------------------------------------------------- */

TEST(serve_in_child)
{
    fixture f;
    fixture_init(&f);
    REQUIRE(f.dir[0]);
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        rc_toolbox *tb = NULL;
        close(sv[0]);
        if (rc_toolbox_new(&f.tc, &tb, NULL) < 0)
            _exit(2);
        _exit(rc_executor_serve(sv[1], tb, NULL) == 0 ? 0 : 1);
    }
    close(sv[1]);
    _cleanup_(rc_buf_free) rc_buf req = RC_BUF_INIT(4096);
    cJSON *in = json("{\"file_path\":\"x.txt\",\"content\":\"hello\"}");
    REQUIRE(rc_executor_request_encode("write", in, &req, NULL) == 0);
    cJSON_Delete(in);
    REQUIRE(write(sv[0], req.data, req.len) == (ssize_t)req.len);
    char buf[4096];
    size_t got = 0;
    const char *p = NULL;
    size_t len = 0, used = 0;
    while (rc_executor_frame_parse(buf, got, sizeof buf, &p, &len, &used, NULL) == 0) {
        ssize_t k = read(sv[0], buf + got, sizeof buf - got);
        REQUIRE(k > 0);
        got += (size_t)k;
    }
    rc_tool_result res = {0};
    REQUIRE(rc_executor_answer_decode(p, len, &res, NULL) == 0);
    CHECK_STR(rc_tool_result_text(&res), "wrote 5 bytes to x.txt");
    rc_tool_result_clear(&res);
    close(sv[0]); /* EOF: the loop ends with 0 */
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fixture_clear(&f);
}

/* ---- the real executor ------------------------------------------------------------------- */

static bool start_real(fixture *f, int wait_ms, rc_executor **ret)
{
    static char path[PATH_MAX];
    if (!runner_path(path, sizeof path))
        return false;
    rc_executor_config ec = {.tools = &f->tc, .exe_path = path, .call_wait_ms = wait_ms};
    rc_error e = {0};
    if (rc_executor_start(&ec, ret, &e) < 0) {
        fprintf(stderr, "# rc_executor_start: %s\n", e.msg);
        return false;
    }
    return true;
}

static const char *const SAME_TEXT_CALLS[][2] = {
    {"write", "{\"file_path\":\"d/a.txt\",\"content\":\"one\\ntwo\\n\"}"},
    {"read", "{\"file_path\":\"d/a.txt\"}"},
    {"read", "{\"file_path\":\"d/a.txt\",\"view_range\":[2,2]}"},
    {"read", "{\"file_path\":\"missing.txt\"}"},
    {"read", "{\"file_path\":\"/etc/passwd\"}"},
    {"edit", "{\"file_path\":\"d/a.txt\",\"old_string\":\"two\",\"new_string\":\"2\"}"},
    {"edit", "{\"file_path\":\"d/a.txt\",\"old_string\":\"zzz\",\"new_string\":\"2\"}"},
    {"glob", "{\"pattern\":\"**/*.txt\"}"},
    {"glob", "{\"pattern\":\"/abs\"}"},
    {"grep", "{\"pattern\":\"on.\"}"},
    {"grep", "{\"pattern\":\"(\"}"},
    {"write", "{}"},
};

TEST(real_executor_same_texts)
{
    fixture f, g;
    rc_executor *ex = NULL;
    fixture_init(&f);
    fixture_init(&g);
    REQUIRE(f.dir[0] && g.dir[0]);
    if (!start_real(&f, 0, &ex)) {
        fixture_clear(&f);
        fixture_clear(&g);
        SKIP("runcell-runner not built next to the tests");
    }
    CHECK(rc_executor_pid(ex) > 0);
    for (size_t i = 0; i < sizeof SAME_TEXT_CALLS / sizeof SAME_TEXT_CALLS[0]; i++) {
        rc_tool_result a = {0}, b = {0};
        CHECK_INT(exec_run(ex, SAME_TEXT_CALLS[i][0], SAME_TEXT_CALLS[i][1], &a), 0);
        local_run(&g, SAME_TEXT_CALLS[i][0], SAME_TEXT_CALLS[i][1], &b);
        const char *ta = rc_tool_result_text(&a), *tb = rc_tool_result_text(&b);
        char want[4096];
        same_dir_text(tb, g.dir, f.dir, want, sizeof want);
        CHECK_STR(ta, want);
        CHECK_INT(a.is_error, b.is_error);
        rc_tool_result_clear(&a);
        rc_tool_result_clear(&b);
    }
    rc_tool_result r = {0};
    CHECK_INT(exec_run(ex, "bash", "{\"command\":\"true\"}", &r), -RC_ENOTFOUND);
    CHECK_INT(rc_executor_restarts(ex), 0);
    rc_executor_free(ex);
    fixture_clear(&f);
    fixture_clear(&g);
}

TEST(real_executor_only_its_socket)
{
    fixture f;
    rc_executor *ex = NULL;
    fixture_init(&f);
    REQUIRE(f.dir[0]);
    if (!start_real(&f, 0, &ex)) {
        fixture_clear(&f);
        SKIP("runcell-runner not built next to the tests");
    }
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)rc_executor_pid(ex));
    DIR *d = opendir(path);
    REQUIRE(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char fdpath[128];
        snprintf(fdpath, sizeof fdpath, "%s/%s", path, de->d_name);
        ssize_t k = readlink(fdpath, link, sizeof link - 1);
        REQUIRE(k > 0);
        link[k] = '\0';
        /* 0: its socket; 1, 2: /dev/null; its own toolbox's cancel pipe; nothing else, and
         * in particular no other socket (the API channel) */
        if (strcmp(de->d_name, "0") == 0)
            CHECK(strncmp(link, "socket:[", 8) == 0);
        else if (strcmp(de->d_name, "1") == 0 || strcmp(de->d_name, "2") == 0)
            CHECK_STR(link, "/dev/null");
        else
            CHECK(strncmp(link, "pipe:[", 6) == 0);
        n += strncmp(link, "socket:[", 8) == 0;
    }
    closedir(d);
    CHECK_INT(n, 1);
    rc_executor_free(ex);
    fixture_clear(&f);
}

TEST(real_executor_restarts_after_kill_between_calls)
{
    fixture f;
    rc_executor *ex = NULL;
    rc_tool_result r = {0};
    fixture_init(&f);
    REQUIRE(f.dir[0]);
    if (!start_real(&f, 0, &ex)) {
        fixture_clear(&f);
        SKIP("runcell-runner not built next to the tests");
    }
    pid_t first = rc_executor_pid(ex);
    kill(first, SIGKILL);
    sleep_ms(50);
    CHECK_INT(exec_run(ex, "write", "{\"file_path\":\"a\",\"content\":\"x\"}", &r), 0);
    CHECK_STR(rc_tool_result_text(&r), "wrote 1 bytes to a");
    CHECK_INT(r.is_error, 0);
    CHECK_INT(rc_executor_restarts(ex), 1);
    CHECK(rc_executor_pid(ex) != first && rc_executor_pid(ex) > 0);
    rc_tool_result_clear(&r);
    rc_executor_free(ex);
    fixture_clear(&f);
}

static void *kill_later(void *arg)
{
    pid_t pid = (pid_t)(intptr_t)arg;
    sleep_ms(200);
    kill(pid, SIGKILL);
    return NULL;
}

TEST(real_executor_death_during_call)
{
    fixture f;
    rc_executor *ex = NULL;
    rc_tool_result r = {0};
    pthread_t th;
    fixture_init(&f);
    REQUIRE(f.dir[0]);
    if (!start_real(&f, 5000, &ex)) {
        fixture_clear(&f);
        SKIP("runcell-runner not built next to the tests");
    }
    pid_t first = rc_executor_pid(ex);
    kill(first, SIGSTOP); /* the request is written but never answered... */
    REQUIRE(pthread_create(&th, NULL, kill_later, (void *)(intptr_t)first) == 0);
    CHECK_INT(exec_run(ex, "read", "{\"file_path\":\"a\"}", &r), 0); /* ...until it dies */
    pthread_join(th, NULL);
    CHECK_INT(r.is_error, 1);
    CHECK_STR(rc_tool_result_text(&r),
              "Error: the tool executor died during the call; it was restarted");
    rc_tool_result_clear(&r);
    CHECK(rc_executor_pid(ex) != first && rc_executor_pid(ex) > 0);
    CHECK_INT(exec_run(ex, "write", "{\"file_path\":\"a\",\"content\":\"x\"}", &r), 0);
    CHECK_STR(rc_tool_result_text(&r), "wrote 1 bytes to a");
    rc_tool_result_clear(&r);
    rc_executor_free(ex);
    fixture_clear(&f);
}

TEST(real_executor_hung_is_cut_off)
{
    fixture f;
    rc_executor *ex = NULL;
    rc_tool_result r = {0};
    fixture_init(&f);
    REQUIRE(f.dir[0]);
    if (!start_real(&f, 1500, &ex)) {
        fixture_clear(&f);
        SKIP("runcell-runner not built next to the tests");
    }
    kill(rc_executor_pid(ex), SIGSTOP);
    CHECK_INT(exec_run(ex, "glob", "{\"pattern\":\"*\"}", &r), 0);
    CHECK_INT(r.is_error, 1);
    CHECK_STR(rc_tool_result_text(&r), "Error: the tool executor did not answer within 1500 ms");
    rc_tool_result_clear(&r);
    CHECK_INT(rc_executor_restarts(ex), 1);
    CHECK_INT(exec_run(ex, "write", "{\"file_path\":\"b\",\"content\":\"yy\"}", &r), 0);
    CHECK_STR(rc_tool_result_text(&r), "wrote 2 bytes to b");
    rc_tool_result_clear(&r);
    rc_executor_free(ex);
    fixture_clear(&f);
}

TEST(real_executor_cancel)
{
    fixture f;
    rc_executor *ex = NULL;
    rc_tool_result r = {0};
    fixture_init(&f);
    REQUIRE(f.dir[0]);
    if (!start_real(&f, 0, &ex)) {
        fixture_clear(&f);
        SKIP("runcell-runner not built next to the tests");
    }
    rc_executor_cancel(ex);
    CHECK_INT(exec_run(ex, "grep", "{\"pattern\":\"x\"}", &r), 0);
    CHECK_INT(r.is_error, 1);
    CHECK_STR(rc_tool_result_text(&r), "grep: This operation was aborted");
    rc_tool_result_clear(&r);
    rc_executor_free(ex);
    fixture_clear(&f);
}

TEST(start_fails_cleanly)
{
    fixture f;
    rc_executor *ex = NULL;
    rc_error e = {0};
    fixture_init(&f);
    REQUIRE(f.dir[0]);
    rc_executor_config ec = {.tools = &f.tc, .exe_path = "/nonexistent/runcell-runner"};
    CHECK(rc_executor_start(&ec, &ex, &e) < 0);
    CHECK(strstr(e.msg, "tool executor") != NULL);
    /* /bin/true exits without a ready message */
    ec.exe_path = "/bin/true";
    CHECK(rc_executor_start(&ec, &ex, &e) < 0);
    CHECK(strstr(e.msg, "did not start") != NULL);
    fixture_clear(&f);
}
