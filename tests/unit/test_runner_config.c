/* test_runner_config.c - runcell-runner's environment inputs (runner/config.c): strict ids
 * (protocol 1.1.1), the endpoint, the credential rules (socket mode refuses any credential and
 * sends a placeholder; outside a container the secret's token, else the environment key), the
 * numeric inputs (including the memory-store sync interval, `off`, and the test-only delete
 * delay), and the scrubbing of ANTHROPIC_* from the process environment. */
#include "config.h"
#include "harness.h"
#include "memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* base64url of {"sessions_token":"sk-ant-req-TOKEN123"} without padding */
#define SECRET "eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtVE9LRU4xMjMifQ"
/* base64url of {"other":1} */
#define SECRET_NO_TOKEN "eyJvdGhlciI6MX0"

#define IDS                                                                                        \
    "ANTHROPIC_ENVIRONMENT_ID=env_01Abc", "ANTHROPIC_WORK_ID=work_9", "ANTHROPIC_SESSION_ID=sesn_X1"

static int load(rc_runner_config *c, rc_error *err, const char *const *envp)
{
    memset(c, 0, sizeof *c);
    return rc_runner_config_load(envp, c, err);
}

TEST(id_shapes)
{
    CHECK(rc_id_valid("env_abcXYZ019", "env_"));
    CHECK(!rc_id_valid("env_", "env_"));
    CHECK(!rc_id_valid("env_a-b", "env_"));
    CHECK(!rc_id_valid("env_a/../b", "env_"));
    CHECK(!rc_id_valid("sesn_abc", "env_"));
    CHECK(!rc_id_valid("work_a b", "work_"));
    CHECK(!rc_id_valid(NULL, "work_"));
    char longid[200] = "work_";
    memset(longid + 5, 'a', 150);
    longid[155] = '\0';
    CHECK(!rc_id_valid(longid, "work_"));
}

TEST(minimal_host_config_with_secret)
{
    const char *envp[] = {IDS, "ANTHROPIC_WORK_SECRET=" SECRET, NULL};
    rc_runner_config c;
    rc_error err = {0};
    REQUIRE(load(&c, &err, envp) == 0);
    CHECK_STR(c.environment_id, "env_01Abc");
    CHECK_STR(c.work_id, "work_9");
    CHECK_STR(c.session_id, "sesn_X1");
    CHECK_STR(c.base_url, "https://api.anthropic.com");
    CHECK(c.api_socket == NULL);
    CHECK_STR(c.credential, "sk-ant-req-TOKEN123");
    CHECK_INT(c.credential_kind, RC_RUNNER_CRED_SESSIONS_TOKEN);
    CHECK_STR(c.workdir, "/workspace");
    CHECK(c.tools_manifest == NULL);
    CHECK_INT(c.max_idle_ms, 60000);
    CHECK(!c.set_tool_ids);
    rc_runner_config_clear(&c);
    CHECK(c.credential == NULL);
}

TEST(missing_or_bad_ids_name_the_variable)
{
    const char *no_work[] = {"ANTHROPIC_ENVIRONMENT_ID=env_1", "ANTHROPIC_SESSION_ID=sesn_1",
                             "ANTHROPIC_WORK_SECRET=" SECRET, NULL};
    const char *empty[] = {"ANTHROPIC_ENVIRONMENT_ID=env_1",
                           "ANTHROPIC_WORK_ID=", "ANTHROPIC_SESSION_ID=sesn_1",
                           "ANTHROPIC_WORK_SECRET=" SECRET, NULL};
    const char *bad[] = {"ANTHROPIC_ENVIRONMENT_ID=env_1", "ANTHROPIC_WORK_ID=work_1",
                         "ANTHROPIC_SESSION_ID=sesn_../x", "ANTHROPIC_WORK_SECRET=" SECRET, NULL};
    rc_runner_config c;
    rc_error err = {0};
    CHECK_INT(load(&c, &err, no_work), -RC_EINVAL);
    CHECK(strstr(err.msg, "ANTHROPIC_WORK_ID") != NULL);
    CHECK_INT(load(&c, &err, empty), -RC_EINVAL); /* empty counts as unset (4.3.1) */
    CHECK(strstr(err.msg, "ANTHROPIC_WORK_ID is not set") != NULL);
    CHECK_INT(load(&c, &err, bad), -RC_EINVAL);
    CHECK(strstr(err.msg, "ANTHROPIC_SESSION_ID") != NULL);
    CHECK(strstr(err.msg, "../x") == NULL); /* never the value */
}

TEST(credential_fallbacks_outside_a_container)
{
    const char *key_only[] = {IDS, "ANTHROPIC_ENVIRONMENT_KEY=sk-ant-oat01-KEY", NULL};
    const char *bad_secret_key[] = {IDS, "ANTHROPIC_WORK_SECRET=" SECRET_NO_TOKEN,
                                    "ANTHROPIC_ENVIRONMENT_KEY=sk-ant-oat01-KEY", NULL};
    const char *bad_secret[] = {IDS, "ANTHROPIC_WORK_SECRET=!!notbase64", NULL};
    const char *none[] = {IDS, NULL};
    rc_runner_config c;
    rc_error err = {0};

    REQUIRE(load(&c, &err, key_only) == 0);
    CHECK_STR(c.credential, "sk-ant-oat01-KEY");
    CHECK_INT(c.credential_kind, RC_RUNNER_CRED_ENVIRONMENT_KEY);
    CHECK(!c.secret_undecodable);
    rc_runner_config_clear(&c);

    REQUIRE(load(&c, &err, bad_secret_key) == 0);
    CHECK_INT(c.credential_kind, RC_RUNNER_CRED_ENVIRONMENT_KEY);
    CHECK(c.secret_undecodable);
    rc_runner_config_clear(&c);

    CHECK_INT(load(&c, &err, bad_secret), -RC_EINVAL);
    CHECK(strstr(err.msg, "no sessions token") != NULL);
    CHECK_INT(load(&c, &err, none), -RC_EINVAL);
    CHECK(strstr(err.msg, "ANTHROPIC_WORK_SECRET") != NULL);
}

TEST(socket_mode_sends_placeholder_and_refuses_credentials)
{
    const char *ok[] = {IDS, "RUNCELL_API_SOCKET=/run/runcell/api.sock", NULL};
    const char *with_key[] = {IDS, "RUNCELL_API_SOCKET=/run/runcell/api.sock",
                              "ANTHROPIC_ENVIRONMENT_KEY=sk-ant-oat01-KEY", NULL};
    const char *with_secret[] = {IDS, "RUNCELL_API_SOCKET=/run/runcell/api.sock",
                                 "ANTHROPIC_WORK_SECRET=" SECRET, NULL};
    const char *relative[] = {IDS, "RUNCELL_API_SOCKET=api.sock", NULL};
    rc_runner_config c;
    rc_error err = {0};

    REQUIRE(load(&c, &err, ok) == 0);
    CHECK_STR(c.api_socket, "/run/runcell/api.sock");
    CHECK(c.base_url == NULL);
    CHECK_STR(c.credential, RC_RUNNER_PLACEHOLDER_CREDENTIAL);
    CHECK_INT(c.credential_kind, RC_RUNNER_CRED_PLACEHOLDER);
    rc_runner_config_clear(&c);
    CHECK_INT(load(&c, &err, with_key), -RC_EINVAL);
    CHECK(strstr(err.msg, "sk-ant") == NULL);
    CHECK_INT(load(&c, &err, with_secret), -RC_EINVAL);
    CHECK_INT(load(&c, &err, relative), -RC_EINVAL);
}

TEST(endpoint_and_local_inputs)
{
    const char *full[] = {IDS,
                          "ANTHROPIC_WORK_SECRET=" SECRET,
                          "ANTHROPIC_BASE_URL=http://127.0.0.1:8080",
                          "RUNCELL_WORKDIR=/srv/work",
                          "RUNCELL_TOOLS_MANIFEST=/etc/runcell/tools.json",
                          "RUNCELL_MAX_IDLE_MS=0",
                          "RUNCELL_TOOL_UID=1000",
                          "RUNCELL_TOOL_GID=1001",
                          "RUNCELL_LOG_LEVEL=debug",
                          NULL};
    rc_runner_config c;
    rc_error err = {0};
    REQUIRE(load(&c, &err, full) == 0);
    CHECK_STR(c.base_url, "http://127.0.0.1:8080");
    CHECK_STR(c.workdir, "/srv/work");
    CHECK_STR(c.tools_manifest, "/etc/runcell/tools.json");
    CHECK_INT(c.max_idle_ms, 0);
    CHECK(c.set_tool_ids);
    CHECK_INT(c.tool_uid, 1000);
    CHECK_INT(c.tool_gid, 1001);
    CHECK_INT(c.log_level, 0);
    rc_runner_config_clear(&c);
}

TEST(bad_local_inputs)
{
    static const char *const cases[][2] = {
        {"ANTHROPIC_BASE_URL=ftp://x", "ANTHROPIC_BASE_URL"},
        {"RUNCELL_WORKDIR=relative/dir", "RUNCELL_WORKDIR"},
        {"RUNCELL_MAX_IDLE_MS=12abc", "RUNCELL_MAX_IDLE_MS"},
        {"RUNCELL_MAX_IDLE_MS=99999999999999999999", "RUNCELL_MAX_IDLE_MS"},
        {"RUNCELL_TOOL_UID=1000", "RUNCELL_TOOL_GID"},
        {"RUNCELL_LOG_LEVEL=loud", "RUNCELL_LOG_LEVEL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *envp[] = {IDS, "ANTHROPIC_WORK_SECRET=" SECRET, cases[i][0], NULL};
        rc_runner_config c;
        rc_error err = {0};
        CHECK_INT(load(&c, &err, envp), -RC_EINVAL);
        if (!strstr(err.msg, cases[i][1]))
            printf("# case %zu: %s\n", i, err.msg);
        CHECK(strstr(err.msg, cases[i][1]) != NULL);
    }
    const char *uid_max[] = {IDS, "ANTHROPIC_WORK_SECRET=" SECRET, "RUNCELL_TOOL_UID=4294967295",
                             "RUNCELL_TOOL_GID=0", NULL};
    rc_runner_config c;
    CHECK_INT(load(&c, NULL, uid_max), -RC_EINVAL); /* (uid_t)-1 means "unchanged" */
}

TEST(scrub_removes_every_anthropic_variable)
{
    setenv("ANTHROPIC_WORK_SECRET", "very-secret-value", 1);
    setenv("ANTHROPIC_ENVIRONMENT_KEY", "sk-ant-oat01-zzz", 1);
    setenv("ANTHROPIC_ANYTHING_ELSE", "x", 1);
    setenv("RUNCELL_KEEP_ME", "1", 1);
    CHECK(rc_runner_env_scrub() >= 3);
    CHECK(getenv("ANTHROPIC_WORK_SECRET") == NULL);
    CHECK(getenv("ANTHROPIC_ENVIRONMENT_KEY") == NULL);
    CHECK(getenv("ANTHROPIC_ANYTHING_ELSE") == NULL);
    CHECK_STR(getenv("RUNCELL_KEEP_ME"), "1");
    CHECK_INT(rc_runner_env_scrub(), 0);
}

TEST(help_documents_every_variable)
{
    static const char *const vars[] = {
        "ANTHROPIC_ENVIRONMENT_ID",  "ANTHROPIC_WORK_ID",  "ANTHROPIC_SESSION_ID",
        "ANTHROPIC_BASE_URL",        "RUNCELL_API_SOCKET", "ANTHROPIC_WORK_SECRET",
        "ANTHROPIC_ENVIRONMENT_KEY", "RUNCELL_WORKDIR",    "RUNCELL_TOOLS_MANIFEST",
        "RUNCELL_MAX_IDLE_MS",       "RUNCELL_TOOL_UID",   "RUNCELL_TOOL_GID",
        "RUNCELL_LOG_LEVEL"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        CHECK(strstr(rc_runner_config_help(), vars[i]) != NULL);
}

/* ---- memory stores (protocol 16): RUNCELL_MEMORY_SYNC_INTERVAL_MS, RUNCELL_MEMORY_DELETE_DELAY_MS
 */

/* Load IDS + a secret + one extra variable (NULL = none). */
static int load_with(rc_runner_config *c, rc_error *err, const char *extra)
{
    const char *envp[] = {IDS, "ANTHROPIC_WORK_SECRET=" SECRET, extra, NULL};
    return load(c, err, envp);
}

TEST(memory_defaults)
{
    rc_runner_config c;
    rc_error err = {0};
    REQUIRE(load_with(&c, &err, NULL) == 0);
    CHECK_INT(c.memory_sync_interval_ms, 0); /* 0 = memory.c's default */
    CHECK_INT(c.memory_delete_delay_ms, -1); /* -1 = the protocol's 30 s */
    rc_runner_config_clear(&c);
    CHECK_INT(RC_MEMORY_SYNC_INTERVAL_MS, 15000);
    CHECK_INT(RC_MEMORY_MIN_SYNC_INTERVAL_MS, 5000);
    CHECK_INT(RC_MEMORY_DELETE_DELAY_MS, 30000);
    /* Empty values count as unset (4.3.1). */
    const char *empty[] = {IDS, "ANTHROPIC_WORK_SECRET=" SECRET, "RUNCELL_MEMORY_SYNC_INTERVAL_MS=",
                           "RUNCELL_MEMORY_DELETE_DELAY_MS=", NULL};
    REQUIRE(load(&c, &err, empty) == 0);
    CHECK_INT(c.memory_sync_interval_ms, 0);
    CHECK_INT(c.memory_delete_delay_ms, -1);
    rc_runner_config_clear(&c);
}

TEST(memory_sync_interval_accepted)
{
    static const struct {
        const char *env;
        long long want;
    } cases[] = {
        {"RUNCELL_MEMORY_SYNC_INTERVAL_MS=off", -1},
        {"RUNCELL_MEMORY_SYNC_INTERVAL_MS=5000", 5000}, /* the minimum itself */
        {"RUNCELL_MEMORY_SYNC_INTERVAL_MS=15000", 15000},
        {"RUNCELL_MEMORY_SYNC_INTERVAL_MS=60000", 60000},
        {"RUNCELL_MEMORY_SYNC_INTERVAL_MS=604800000", 604800000LL}, /* a week */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc_runner_config c;
        rc_error err = {0};
        int r = load_with(&c, &err, cases[i].env);
        if (r != 0 || c.memory_sync_interval_ms != cases[i].want)
            rc_test_fail(__FILE__, __LINE__, "%s: r=%d interval=%lld (%s)", cases[i].env, r,
                         r == 0 ? c.memory_sync_interval_ms : 0, err.msg);
        if (r == 0)
            CHECK_INT(c.memory_delete_delay_ms, -1);
        rc_runner_config_clear(&c);
    }
}

/* Below the minimum is refused, not clamped; anything that is not exactly "off" or a whole
 * decimal number in range is refused, naming the variable and the range, never the value. */
TEST(memory_sync_interval_refused)
{
    static const char *const values[] = {
        "4999",
        "0",
        "1",
        "-1",
        "-5000",
        "604800001",                     /* a week + 1 ms */
        "9223372036854775807",           /* LLONG_MAX: in range for strtoll, not for us */
        "9223372036854775808",           /* overflows long long */
        "99999999999999999999999999999", /* overflows long long */
        "-9223372036854775809",          /* underflows */
        "15s",
        "15000ms",
        "1e4",
        "0x3a98",
        "15000.0",
        "15,000",
        "15000 ",
        "15000\n",
        "off ",
        "offx",
        "of",
        "on",
        "no",
        "false",
        "disabled",
        "abc",
        "-",
        "+",
        " ",
        "\t",
        " 6000",
        "+6000",
        "\t6000",
        "\n6000",
        "-0"}; /* strtoll alone would take the first four */
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char env[128];
        snprintf(env, sizeof env, "RUNCELL_MEMORY_SYNC_INTERVAL_MS=%s", values[i]);
        rc_runner_config c;
        rc_error err = {0};
        int r = load_with(&c, &err, env);
        if (r != -RC_EINVAL) {
            rc_test_fail(__FILE__, __LINE__, "RUNCELL_MEMORY_SYNC_INTERVAL_MS=\"%s\": %d",
                         values[i], r);
            if (r == 0)
                rc_runner_config_clear(&c);
            continue;
        }
        if (!strstr(err.msg, "RUNCELL_MEMORY_SYNC_INTERVAL_MS") ||
            !strstr(err.msg, "between 5000 and 604800000"))
            rc_test_fail(__FILE__, __LINE__, "\"%s\": unclear error \"%s\"", values[i], err.msg);
        if (strlen(values[i]) > 2 && strstr(err.msg, values[i]))
            rc_test_fail(__FILE__, __LINE__, "\"%s\": the error echoes the value", values[i]);
    }
}

TEST(memory_delete_delay)
{
    static const struct {
        const char *v;
        long long want; /* -2 = refused */
    } cases[] = {
        {"0", 0},
        {"1", 1},
        {"3000", 3000},
        {"30000", 30000},
        {"30001", -2},
        {"-1", -2},
        {"-30000", -2},
        {"off", -2},
        {"3s", -2},
        {"1e3", -2},
        {"3000 ", -2},
        {"abc", -2},
        {"99999999999999999999", -2},
        {"9223372036854775808", -2},
        {" 3000", -2},
        {"+3000", -2},
        {"-0", -2},
        {"0003000", 3000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char env[128];
        snprintf(env, sizeof env, "RUNCELL_MEMORY_DELETE_DELAY_MS=%s", cases[i].v);
        rc_runner_config c;
        rc_error err = {0};
        int r = load_with(&c, &err, env);
        if (cases[i].want >= 0) {
            if (r != 0 || c.memory_delete_delay_ms != cases[i].want)
                rc_test_fail(__FILE__, __LINE__, "%s: r=%d (%s)", env, r, err.msg);
            else
                CHECK_INT(c.memory_sync_interval_ms, 0);
            if (r == 0)
                rc_runner_config_clear(&c);
            continue;
        }
        if (r != -RC_EINVAL) {
            rc_test_fail(__FILE__, __LINE__, "%s accepted (%d)", env, r);
            if (r == 0)
                rc_runner_config_clear(&c);
            continue;
        }
        if (!strstr(err.msg, "RUNCELL_MEMORY_DELETE_DELAY_MS") ||
            !strstr(err.msg, "between 0 and 30000"))
            rc_test_fail(__FILE__, __LINE__, "%s: unclear error \"%s\"", env, err.msg);
    }
}

TEST(memory_both_variables_together)
{
    const char *off[] = {IDS, "ANTHROPIC_WORK_SECRET=" SECRET,
                         "RUNCELL_MEMORY_SYNC_INTERVAL_MS=off", "RUNCELL_MEMORY_DELETE_DELAY_MS=0",
                         NULL};
    const char *set[] = {IDS, "RUNCELL_API_SOCKET=/run/runcell/api.sock",
                         "RUNCELL_MEMORY_SYNC_INTERVAL_MS=7000",
                         "RUNCELL_MEMORY_DELETE_DELAY_MS=2500", NULL};
    const char *bad_delay[] = {IDS, "ANTHROPIC_WORK_SECRET=" SECRET,
                               "RUNCELL_MEMORY_SYNC_INTERVAL_MS=7000",
                               "RUNCELL_MEMORY_DELETE_DELAY_MS=x", NULL};
    rc_runner_config c;
    rc_error err = {0};
    REQUIRE(load(&c, &err, off) == 0);
    CHECK_INT(c.memory_sync_interval_ms, -1);
    CHECK_INT(c.memory_delete_delay_ms, 0);
    rc_runner_config_clear(&c);
    REQUIRE(load(&c, &err, set) == 0);
    CHECK_INT(c.memory_sync_interval_ms, 7000);
    CHECK_INT(c.memory_delete_delay_ms, 2500);
    rc_runner_config_clear(&c);
    /* A bad delete delay fails the load even when the interval is fine; nothing is written. */
    memset(&c, 0, sizeof c);
    c.memory_sync_interval_ms = 12345;
    CHECK_INT(rc_runner_config_load(bad_delay, &c, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "RUNCELL_MEMORY_DELETE_DELAY_MS") != NULL);
    CHECK_INT(c.memory_sync_interval_ms, 12345);
    CHECK(c.credential == NULL);
}

TEST(memory_help_names_the_variables)
{
    CHECK(strstr(rc_runner_config_help(), "RUNCELL_MEMORY_SYNC_INTERVAL_MS") != NULL);
    CHECK(strstr(rc_runner_config_help(), "RUNCELL_MEMORY_DELETE_DELAY_MS") != NULL);
    CHECK(strstr(rc_runner_config_help(), "15000") != NULL);
    CHECK(strstr(rc_runner_config_help(), "5000") != NULL);
}
