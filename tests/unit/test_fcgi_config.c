/* test_fcgi_config.c - runcell-fcgi's environment inputs (fcgi/fcgi_config.c): required variables,
 * id and key checks, defaults, numeric ranges, paths, --socket precedence, messages that never
 * carry a value, and the scrubbing of ANTHROPIC_* / RUNCELL_* from the process environment. */
#include "fcgi_config.h"
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#define REQ                                                                                        \
    "ANTHROPIC_ENVIRONMENT_ID=env_01Abc", "ANTHROPIC_ENVIRONMENT_KEY=sk-ant-oat01-SECRETKEY",      \
        "ANTHROPIC_WEBHOOK_SIGNING_KEY=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

static int load(const char *const *envp, const char *sock, rc_fcgi_config *c, rc_error *err)
{
    memset(c, 0, sizeof *c);
    return rc_fcgi_config_load(envp, sock, c, err);
}

TEST(defaults)
{
    const char *envp[] = {REQ, NULL};
    rc_fcgi_config c;
    REQUIRE(load(envp, NULL, &c, NULL) == 0);
    CHECK_STR(c.base_url, "https://api.anthropic.com");
    CHECK_STR(c.environment_id, "env_01Abc");
    CHECK_STR(c.environment_key, "sk-ant-oat01-SECRETKEY");
    CHECK_STR(c.webhook_path, "/webhook");
    CHECK_STR(c.launcher_socket, "/run/runcell/launcher.sock");
    CHECK(c.socket_path == NULL);
    CHECK(c.api_socket == NULL);
    CHECK(c.worker_id == NULL);
    CHECK_INT(c.max_body, 1048576);
    CHECK_INT(c.threads, 4);
    CHECK_INT(c.drain_cap, 25);
    CHECK_INT(c.reclaim_ms, 2000);
    CHECK_INT(c.drain_deadline_ms, 4000);
    CHECK_INT(c.socket_mode, 0660);
    CHECK_INT(c.dedupe_entries, 4096);
    CHECK_INT(c.dedupe_ttl_s, 3600);
    rc_fcgi_config_clear(&c);
    CHECK(c.environment_key == NULL);
}

TEST(everything_set)
{
    const char *envp[] = {REQ,
                          "ANTHROPIC_BASE_URL=http://127.0.0.1:8787",
                          "RUNCELL_LAUNCHER_SOCKET=/tmp/l.sock",
                          "RUNCELL_WEBHOOK_PATH=/hooks/anthropic",
                          "RUNCELL_MAX_BODY=2048",
                          "RUNCELL_FCGI_SOCKET=/tmp/env.sock",
                          "RUNCELL_FCGI_SOCKET_MODE=0600",
                          "RUNCELL_FCGI_THREADS=8",
                          "RUNCELL_DRAIN_MAX_ITEMS=5",
                          "RUNCELL_RECLAIM_OLDER_THAN_MS=3000",
                          "RUNCELL_DRAIN_DEADLINE_MS=0",
                          "RUNCELL_WORKER_ID=host-1",
                          NULL};
    rc_fcgi_config c;
    REQUIRE(load(envp, NULL, &c, NULL) == 0);
    CHECK_STR(c.base_url, "http://127.0.0.1:8787");
    CHECK_STR(c.launcher_socket, "/tmp/l.sock");
    CHECK_STR(c.webhook_path, "/hooks/anthropic");
    CHECK_INT(c.max_body, 2048);
    CHECK_STR(c.socket_path, "/tmp/env.sock");
    CHECK_INT(c.socket_mode, 0600);
    CHECK_INT(c.threads, 8);
    CHECK_INT(c.drain_cap, 5);
    CHECK_INT(c.reclaim_ms, 3000);
    CHECK_INT(c.drain_deadline_ms, 0);
    CHECK_STR(c.worker_id, "host-1");
    rc_fcgi_config_clear(&c);
    /* --socket wins over the variable. */
    REQUIRE(load(envp, "/tmp/arg.sock", &c, NULL) == 0);
    CHECK_STR(c.socket_path, "/tmp/arg.sock");
    rc_fcgi_config_clear(&c);
}

TEST(required_and_refused)
{
    struct {
        const char *var;
        const char *needle;
    } cases[] = {
        {"ANTHROPIC_ENVIRONMENT_ID=env_a-b", "ANTHROPIC_ENVIRONMENT_ID"},
        {"ANTHROPIC_ENVIRONMENT_ID=sesn_abc", "ANTHROPIC_ENVIRONMENT_ID"},
        {"ANTHROPIC_ENVIRONMENT_KEY=sk ant", "ANTHROPIC_ENVIRONMENT_KEY"},
        {"ANTHROPIC_WEBHOOK_SIGNING_KEY=whsec_***", "ANTHROPIC_WEBHOOK_SIGNING_KEY"},
        {"ANTHROPIC_BASE_URL=ftp://x", "ANTHROPIC_BASE_URL"},
        {"RUNCELL_WEBHOOK_PATH=webhook", "RUNCELL_WEBHOOK_PATH"},
        {"RUNCELL_WEBHOOK_PATH=/metrics", "RUNCELL_WEBHOOK_PATH"},
        {"RUNCELL_WEBHOOK_PATH=/a?b", "RUNCELL_WEBHOOK_PATH"},
        {"RUNCELL_MAX_BODY=0", "RUNCELL_MAX_BODY"},
        {"RUNCELL_MAX_BODY=12abc", "RUNCELL_MAX_BODY"},
        {"RUNCELL_FCGI_THREADS=0", "RUNCELL_FCGI_THREADS"},
        {"RUNCELL_DRAIN_MAX_ITEMS=-1", "RUNCELL_DRAIN_MAX_ITEMS"},
        {"RUNCELL_FCGI_SOCKET_MODE=999", "RUNCELL_FCGI_SOCKET_MODE"},
        {"RUNCELL_LAUNCHER_SOCKET=relative.sock", "RUNCELL_LAUNCHER_SOCKET"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* The case's variable comes first, so it wins over the defaults in REQ (first match). */
        const char *envp[] = {cases[i].var, REQ, NULL};
        rc_fcgi_config c;
        rc_error err = {0};
        CHECK_INT(load(envp, NULL, &c, &err), -RC_EINVAL);
        CHECK(strstr(err.msg, cases[i].needle) != NULL);
        CHECK(strstr(err.msg, "SECRETKEY") == NULL);
        CHECK(strstr(err.msg, "MfKQ9r8") == NULL);
    }
    const char *none[] = {NULL};
    rc_fcgi_config c;
    rc_error err = {0};
    CHECK_INT(load(none, NULL, &c, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "ANTHROPIC_ENVIRONMENT_ID is not set") != NULL);
    const char *nokey[] = {"ANTHROPIC_ENVIRONMENT_ID=env_1", NULL};
    CHECK_INT(load(nokey, NULL, &c, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "ANTHROPIC_ENVIRONMENT_KEY is not set") != NULL);
    const char *empty[] = {"ANTHROPIC_ENVIRONMENT_ID=env_1", "ANTHROPIC_ENVIRONMENT_KEY=k",
                           "ANTHROPIC_WEBHOOK_SIGNING_KEY=", NULL};
    CHECK_INT(load(empty, NULL, &c, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "ANTHROPIC_WEBHOOK_SIGNING_KEY is not set") != NULL);
}

TEST(id_valid)
{
    CHECK(rc_id_valid("work_abc123", "work_"));
    CHECK(!rc_id_valid("work_", "work_"));
    CHECK(!rc_id_valid("work_a_b", "work_"));
    CHECK(!rc_id_valid(NULL, "work_"));
    char id[RC_FCGI_ID_MAX + 2] = "sesn_";
    memset(id + 5, 'x', RC_FCGI_ID_MAX - 5);
    id[RC_FCGI_ID_MAX] = '\0';
    CHECK(rc_id_valid(id, "sesn_"));
    id[RC_FCGI_ID_MAX] = 'x';
    id[RC_FCGI_ID_MAX + 1] = '\0';
    CHECK(!rc_id_valid(id, "sesn_"));
}

TEST(scrub_removes_credentials)
{
    setenv("ANTHROPIC_ENVIRONMENT_KEY", "sk-ant-oat01-x", 1);
    setenv("RUNCELL_WEBHOOK_PATH", "/x", 1);
    setenv("RC_TEST_KEEP", "1", 1);
    CHECK(rc_fcgi_env_scrub() >= 2);
    CHECK(getenv("ANTHROPIC_ENVIRONMENT_KEY") == NULL);
    CHECK(getenv("RUNCELL_WEBHOOK_PATH") == NULL);
    CHECK_STR(getenv("RC_TEST_KEEP"), "1");
    unsetenv("RC_TEST_KEEP");
}

TEST(help_lists_every_variable)
{
    const char *h = rc_fcgi_config_help();
    const char *vars[] = {"ANTHROPIC_BASE_URL",
                          "ANTHROPIC_ENVIRONMENT_ID",
                          "ANTHROPIC_ENVIRONMENT_KEY",
                          "ANTHROPIC_WEBHOOK_SIGNING_KEY",
                          "RUNCELL_LAUNCHER_SOCKET",
                          "RUNCELL_WEBHOOK_PATH",
                          "RUNCELL_MAX_BODY",
                          "RUNCELL_FCGI_THREADS",
                          "RUNCELL_DRAIN_MAX_ITEMS",
                          "RUNCELL_RECLAIM_OLDER_THAN_MS",
                          "RUNCELL_DRAIN_DEADLINE_MS",
                          "RUNCELL_API_TIMEOUT_MS",
                          "RUNCELL_LAUNCHER_TIMEOUT_MS",
                          "RUNCELL_DEDUPE_ENTRIES",
                          "RUNCELL_DEDUPE_TTL_SECONDS",
                          "RUNCELL_FCGI_SOCKET",
                          "RUNCELL_FCGI_SOCKET_MODE",
                          "RUNCELL_API_SOCKET",
                          "RUNCELL_CA_FILE",
                          "RUNCELL_WORKER_ID",
                          "--socket"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        CHECK(strstr(h, vars[i]) != NULL);
}
