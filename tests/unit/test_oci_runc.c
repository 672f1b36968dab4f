/* test_oci_runc.c - the runc driver (oci/runc.h) against a fake runc, so it runs without root.
 *
 * The fake is a shell script written here: it parses the global flags the driver passes
 * (--root, --log, --log-format json), reads what to do from <root>/fakemode, records its argv in
 * <root>/argv, and for `create` starts a background "container" (stdout = the pipe the driver
 * gave runc) whose pid goes to --pid-file, exactly like runc's detached init. The test process
 * is a subreaper, so that background process becomes our child when the fake exits, and
 * rc_runc_wait gets its real exit status. Real runc is covered by tests/integration/oci_*.sh. */
#include "harness.h"

#include "cleanup.h"
#include "runc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char fake_runc[] =
    "#!/bin/sh\n"
    "root= log=\n"
    "while [ $# -gt 0 ]; do case \"$1\" in\n"
    "  --root) root=$2; shift 2 ;; --log) log=$2; shift 2 ;; --log-format) shift 2 ;;\n"
    "  *) break ;; esac; done\n"
    "echo \"$*\" >> \"$root/argv\"\n"
    "env >> \"$root/env\"\n"
    "mode=$(cat \"$root/fakemode\")\n"
    "sub=$1; shift\n"
    "case \"$mode/$sub\" in\n"
    "*/state)\n"
    "  if [ -e \"$root/$1/pid\" ] && kill -0 \"$(cat \"$root/$1/pid\")\" 2>/dev/null; then "
    "st=running;"
    " else st=stopped; fi\n"
    "  printf '{\"ociVersion\":\"1.0.2\",\"id\":\"%s\",\"pid\":%s,\"status\":\"%s\"}\\n' \"$1\""
    " \"$(cat \"$root/$1/pid\" 2>/dev/null || echo 0)\" \"$st\"; exit 0 ;;\n"
    "fail/*)\n"
    "  echo '{\"level\":\"info\",\"msg\":\"starting\",\"time\":\"t\"}' >> \"$log\"\n"
    "  echo '{\"level\":\"error\",\"msg\":\"runc run failed: exec: \\\"/x\\\": no such file\","
    "\"time\":\"t\"}' >> \"$log\"\n"
    "  echo 'stderr noise' >&2; exit 1 ;;\n"
    "stderr/*) echo 'first line' >&2; echo 'the real reason' >&2; exit 2 ;;\n"
    "hang/*) exec sleep 30 ;;\n"
    "*/create)\n"
    "  pidf= id=\n"
    "  while [ $# -gt 0 ]; do case \"$1\" in --bundle) shift 2 ;; --pid-file) pidf=$2; shift 2 ;;"
    " *) id=$1; shift ;; esac; done\n"
    "  mkdir -p \"$root/$id\"\n"
    "  case \"$mode\" in\n"
    "  ok) (echo hello-from-container; echo to-stderr >&2; sleep 0.3; exit 3) < /dev/null & ;;\n"
    "  big) (i=0; while [ $i -lt 3000 ]; do echo 0123456789012345678901234567890123456789;"
    " i=$((i+1)); done) < /dev/null & ;;\n"
    "  stubborn) (trap '' TERM; while :; do sleep 0.1; done) < /dev/null > /dev/null 2>&1 & ;;\n"
    "  *) (exec sleep 30) < /dev/null > /dev/null 2>&1 & ;;\n"
    "  esac\n"
    "  echo $! > \"$root/$id/pid\"; echo $! > \"$pidf\"; exit 0 ;;\n"
    "*/start) exit 0 ;;\n"
    "*/kill)\n"
    "  [ \"$1\" = --all ] && shift\n"
    "  kill -\"$2\" \"$(cat \"$root/$1/pid\")\"; exit 0 ;;\n"
    "*/delete) [ \"$1\" = --force ] && shift; rm -rf \"$root/$1\"; exit 0 ;;\n"
    "esac\n"
    "exit 9\n";

typedef struct fixture {
    char dir[64];
    char runc[128];
    char root[128];
    char bundle[128];
} fixture;

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        rc_test_fail(__FILE__, __LINE__, "cannot write %s", path);
    if (fd >= 0)
        close(fd);
}

static bool file_contains(const char *path, const char *needle)
{
    static char buf[1 << 20];
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static int fixture_init(fixture *fx, const char *mode)
{
    char p[256];
    snprintf(fx->dir, sizeof fx->dir, "/tmp/rc-test-runc.XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->runc, sizeof fx->runc, "%s/runc", fx->dir);
    snprintf(fx->root, sizeof fx->root, "%s/root", fx->dir);
    snprintf(fx->bundle, sizeof fx->bundle, "%s/bundle", fx->dir);
    write_text(fx->runc, fake_runc, 0755);
    if (mkdir(fx->root, 0700) < 0 || mkdir(fx->bundle, 0700) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/fakemode", fx->root);
    write_text(p, mode, 0644);
    return 0;
}

static void fixture_done(fixture *fx)
{
    char cmd[256];
    /* Test scaffolding only: the fixture dir is ours, made by mkdtemp. */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    pid_t p = fork();
    if (p == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (p > 0)
        waitpid(p, NULL, 0);
}

static rc_runc_container *new_container(fixture *fx, size_t output_max, int timeout_ms)
{
    rc_runc_container *c = NULL;
    rc_error e = {0};
    rc_runc_opts o = {.runc_path = fx->runc,
                      .root = fx->root,
                      .output_max = output_max,
                      .call_timeout_ms = timeout_ms,
                      .echo_fd = -1};
    if (rc_runc_container_new(&o, "sesn_test", fx->bundle, &c, &e) < 0)
        rc_test_fail(__FILE__, __LINE__, "container_new: %s", e.msg);
    return c;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

TEST(lifecycle_real_exit_status_and_output)
{
    fixture fx;
    rc_error e = {0};
    char p[256];
    int ws = -1;
    REQUIRE(rc_runc_become_subreaper(&e) == 0);
    REQUIRE(fixture_init(&fx, "ok") == 0);
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = new_container(&fx, 0, 0);
    REQUIRE(c);
    CHECK_INT(rc_runc_create(c, &e), 0);
    CHECK(rc_runc_init_pid(c) > 1);
    CHECK(rc_runc_output_fd(c) >= 0);
    CHECK_INT(rc_runc_start(c, &e), 0);
    int status = -1;
    pid_t pid = 0;
    CHECK_INT(rc_runc_state(c, &status, &pid, &e), 0);
    CHECK_INT(status, RC_RUNC_RUNNING);
    CHECK_INT(pid, rc_runc_init_pid(c));
    CHECK_INT(rc_runc_wait(c, 5000, &ws, &e), 0);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 3);
    CHECK_INT(rc_runc_delete(c, &e), 0);
    CHECK_INT(rc_runc_state(c, &status, NULL, &e), 0);
    CHECK_INT(status, RC_RUNC_ABSENT);
    snprintf(p, sizeof p, "%s/output.log", fx.bundle);
    CHECK(file_contains(p, "hello-from-container"));
    CHECK(file_contains(p, "to-stderr"));
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    /* argv: global flags first, json logs, no shell; a fixed environment. */
    snprintf(p, sizeof p, "%s/argv", fx.root);
    char want[512];
    snprintf(want, sizeof want,
             "create --no-new-keyring --bundle %s --pid-file %s/init.pid sesn_test", fx.bundle,
             fx.bundle);
    CHECK(file_contains(p, want));
    CHECK(file_contains(p, "start sesn_test"));
    CHECK(file_contains(p, "delete --force sesn_test"));
    snprintf(p, sizeof p, "%s/env", fx.root);
    CHECK(!file_contains(p, "HOME="));
    fixture_done(&fx);
}

TEST(error_quotes_runc_json_log)
{
    fixture fx;
    rc_error e = {0};
    REQUIRE(fixture_init(&fx, "fail") == 0);
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = new_container(&fx, 0, 0);
    REQUIRE(c);
    CHECK_INT(rc_runc_create(c, &e), -RC_EIO);
    CHECK(strstr(e.msg, "runc create sesn_test failed: runc run failed: exec: \"/x\"") != NULL);
    CHECK(strstr(e.msg, "stderr noise") == NULL);
    fixture_done(&fx);
}

TEST(error_falls_back_on_stderr)
{
    fixture fx;
    rc_error e = {0};
    REQUIRE(fixture_init(&fx, "stderr") == 0);
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = new_container(&fx, 0, 0);
    REQUIRE(c);
    CHECK_INT(rc_runc_start(c, &e), -RC_EIO);
    CHECK(strstr(e.msg, "runc start sesn_test failed: the real reason") != NULL);
    fixture_done(&fx);
}

TEST(hung_runc_is_killed)
{
    fixture fx;
    rc_error e = {0};
    REQUIRE(fixture_init(&fx, "hang") == 0);
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = new_container(&fx, 0, 300);
    REQUIRE(c);
    int64_t t0 = mono_ms();
    CHECK_INT(rc_runc_start(c, &e), -RC_ETIMEOUT);
    CHECK(mono_ms() - t0 < 20000); /* the fake sleeps 30 s */
    fixture_done(&fx);
}

TEST(missing_runc)
{
    rc_error e = {0};
    char *path = NULL;
    rc_runc_container *c = NULL;
    rc_runc_opts o = {.runc_path = "/nonexistent/runc", .root = "/tmp", .echo_fd = -1};
    CHECK_INT(rc_runc_container_new(&o, "sesn_x", "/tmp", &c, &e), -RC_ENOTFOUND);
    CHECK(strstr(e.msg, "/nonexistent/runc") != NULL);
    CHECK_INT(rc_runc_find("runc-that-does-not-exist", &path, &e), -RC_ENOTFOUND);
    CHECK(strstr(e.msg, "not found on PATH") != NULL);
    CHECK_INT(rc_runc_find("relative/runc", &path, &e), -RC_EINVAL);
    CHECK(path == NULL);
    rc_runc_opts bad = {.runc_path = "/bin/sh", .root = "relative", .echo_fd = -1};
    CHECK_INT(rc_runc_container_new(&bad, "sesn_x", "/tmp", &c, &e), -RC_EINVAL);
    rc_runc_opts ok = {.runc_path = "/bin/sh", .root = "/tmp", .echo_fd = -1};
    CHECK_INT(rc_runc_container_new(&ok, "../x", "/tmp", &c, &e), -RC_EINVAL);
    CHECK(c == NULL);
}

TEST(output_is_capped)
{
    fixture fx;
    rc_error e = {0};
    char p[256];
    int ws;
    REQUIRE(rc_runc_become_subreaper(&e) == 0);
    REQUIRE(fixture_init(&fx, "big") == 0);
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = new_container(&fx, 4096, 0);
    REQUIRE(c);
    CHECK_INT(rc_runc_create(c, &e), 0);
    CHECK_INT(rc_runc_start(c, &e), 0);
    CHECK_INT(rc_runc_wait(c, 10000, &ws, &e), 0);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    snprintf(p, sizeof p, "%s/output.log", fx.bundle);
    off_t size = file_size(p);
    CHECK(size >= 4096 && size < 4096 + 100);
    CHECK(file_contains(p, "output cap reached"));
    CHECK_INT(rc_runc_output_dropped(c), 3000 * 41 - 4096);
    CHECK_INT(rc_runc_delete(c, &e), 0);
    fixture_done(&fx);
}

TEST(wait_times_out_then_stop_kills)
{
    fixture fx;
    rc_error e = {0};
    int ws = -1;
    REQUIRE(rc_runc_become_subreaper(&e) == 0);
    REQUIRE(fixture_init(&fx, "sleep") == 0);
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = new_container(&fx, 0, 0);
    REQUIRE(c);
    CHECK_INT(rc_runc_create(c, &e), 0);
    CHECK_INT(rc_runc_start(c, &e), 0);
    CHECK_INT(rc_runc_wait(c, 200, &ws, &e), -RC_ETIMEOUT);
    CHECK_INT(rc_runc_stop(c, 2000, &ws, &e), 0);
    CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGTERM);
    CHECK_INT(rc_runc_delete(c, &e), 0);
    fixture_done(&fx);
}

TEST(stop_escalates_to_sigkill)
{
    fixture fx;
    rc_error e = {0};
    int ws = -1;
    REQUIRE(rc_runc_become_subreaper(&e) == 0);
    REQUIRE(fixture_init(&fx, "stubborn") == 0);
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = new_container(&fx, 0, 0);
    REQUIRE(c);
    CHECK_INT(rc_runc_create(c, &e), 0);
    CHECK_INT(rc_runc_start(c, &e), 0);
    usleep(200000); /* let the trap be installed */
    int64_t t0 = mono_ms();
    CHECK_INT(rc_runc_stop(c, 300, &ws, &e), 0);
    CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    CHECK(mono_ms() - t0 < 20000); /* it would never end */
    CHECK_INT(rc_runc_delete(c, &e), 0);
    fixture_done(&fx);
}

TEST(status_names)
{
    CHECK_STR(rc_runc_status_name(RC_RUNC_RUNNING), "running");
    CHECK_STR(rc_runc_status_name(RC_RUNC_ABSENT), "absent");
    CHECK_STR(rc_runc_status_name(99), "unknown");
}
