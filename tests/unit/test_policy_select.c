/* test_policy_select.c - which egress policy a session gets (launcher/policy_select.c): the
 * precedence table (session metadata > agent file > default file > built-in deny-all), refused
 * names and missing files (errors, never a fallback), the session fetch against a real HTTP
 * fixture, and the start-up check of every policy file. */
#include "../broker/policy.h"
#include "cleanup.h"
#include "fixture_http.h"
#include "harness.h"
#include "json.h"
#include "launcher.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[128];
static char pdir[256], agents[256], deffile[256];

static void put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (write(fd, text, strlen(text)) < 0)
        perror("write");
    close(fd);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    if (strncmp(dir, "/tmp/rc-polsel.", 15) == 0)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh tree: default.json, pdir/{github,npm}.json, pdir/agents/agent_A.json. */
static bool setup_tree(void)
{
    char p[300];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rc-polsel.XXXXXX");
    if (!mkdtemp(tmpdir))
        return false;
    snprintf(pdir, sizeof pdir, "%s/policies", tmpdir);
    snprintf(agents, sizeof agents, "%s/agents", pdir);
    snprintf(deffile, sizeof deffile, "%s/default.json", tmpdir);
    if (mkdir(pdir, 0700) < 0 || mkdir(agents, 0700) < 0)
        return false;
    put(deffile, "{\"allow\": [\"default.test\"]}");
    snprintf(p, sizeof p, "%s/github.json", pdir);
    put(p, "{\"allow\": [\"github.com\"]}");
    snprintf(p, sizeof p, "%s/npm-1.json", pdir);
    put(p, "{\"allow\": [\"registry.npmjs.org\"]}");
    snprintf(p, sizeof p, "%s/agent_A.json", agents);
    put(p, "{\"allow\": [\"agent.test\"]}");
    return true;
}

static rc_launcher_config cfg(bool dir, bool def)
{
    rc_launcher_config c = {0};
    c.policy_dir = dir ? pdir : NULL;
    c.policy_file = def ? deffile : NULL;
    return c;
}

/* Select with a session JSON text; returns r, fills ch and err. */
static int sel(const rc_launcher_config *c, const char *session_json, rc_launcher_policy_choice *ch,
               rc_error *err)
{
    _cleanup_json_ cJSON *s = session_json ? cJSON_Parse(session_json) : NULL;
    memset(ch, 0, sizeof *ch);
    rc_error_clear(err);
    return rc_launcher_policy_select(c, s, ch, err);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

TEST(name_pattern)
{
    static const struct {
        const char *name;
        bool ok;
    } t[] = {
        {"github", true},
        {"npm-1", true},
        {"A_b-9", true},
        {"0", true},
        {"", false},
        {"-x", false},
        {"_x", false},
        {".hidden", false},
        {"..", false},
        {"../etc/passwd", false},
        {"a/b", false},
        {"a.json", false},
        {"a b", false},
        {"a%2fb", false},
        {"caf\xc3\xa9", false},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true},   /* 64 */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, /* 65 */
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (rc_launcher_policy_name_valid(t[i].name) != t[i].ok)
            rc_test_fail(__FILE__, __LINE__, "name \"%s\": want %s", t[i].name,
                         t[i].ok ? "valid" : "refused");
    CHECK(!rc_launcher_policy_name_valid(NULL));
}

TEST(precedence_table)
{
    REQUIRE(setup_tree());
    static const struct {
        bool dir, def;
        const char *session;
        int source;
        const char *file; /* basename of the chosen path, "" for the built-in */
    } t[] = {
        /* nothing configured: deny-all, the session is not even looked at */
        {false, false, NULL, RC_LAUNCHER_POLICY_BUILTIN, ""},
        {false, true, NULL, RC_LAUNCHER_POLICY_DEFAULT, "default.json"},
        /* no policy dir: metadata and agent are ignored (documented) */
        {false, true,
         "{\"metadata\":{\"runcell_policy\":\"github\"},\"agent\":{\"id\":\"agent_A\"}}",
         RC_LAUNCHER_POLICY_DEFAULT, "default.json"},
        /* session metadata wins over the agent and the default */
        {true, true,
         "{\"metadata\":{\"runcell_policy\":\"github\"},\"agent\":{\"id\":\"agent_A\"}}",
         RC_LAUNCHER_POLICY_SESSION, "github.json"},
        {true, false, "{\"metadata\":{\"runcell_policy\":\"npm-1\"}}", RC_LAUNCHER_POLICY_SESSION,
         "npm-1.json"},
        /* the agent's file wins over the default */
        {true, true, "{\"metadata\":{},\"agent\":{\"id\":\"agent_A\"}}", RC_LAUNCHER_POLICY_AGENT,
         "agent_A.json"},
        {true, true, "{\"metadata\":{\"other\":\"x\"},\"agent\":{\"id\":\"agent_A\"}}",
         RC_LAUNCHER_POLICY_AGENT, "agent_A.json"},
        /* an explicit null is "not set" */
        {true, true, "{\"metadata\":{\"runcell_policy\":null},\"agent\":{\"id\":\"agent_A\"}}",
         RC_LAUNCHER_POLICY_AGENT, "agent_A.json"},
        /* an agent without a file: the default, then the built-in */
        {true, true, "{\"metadata\":{},\"agent\":{\"id\":\"agent_B\"}}", RC_LAUNCHER_POLICY_DEFAULT,
         "default.json"},
        {true, false, "{\"metadata\":{},\"agent\":{\"id\":\"agent_B\"}}",
         RC_LAUNCHER_POLICY_BUILTIN, ""},
        {true, true, "{}", RC_LAUNCHER_POLICY_DEFAULT, "default.json"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        rc_launcher_config c = cfg(t[i].dir, t[i].def);
        rc_launcher_policy_choice ch;
        rc_error e = {0};
        int r = sel(&c, t[i].session, &ch, &e);
        if (r < 0) {
            rc_test_fail(__FILE__, __LINE__, "row %zu: %s", i, e.msg);
            continue;
        }
        if (ch.source != t[i].source || strcmp(base_name(ch.path), t[i].file) != 0)
            rc_test_fail(__FILE__, __LINE__, "row %zu: got %s %s, want %s %s", i,
                         rc_launcher_policy_source_name(ch.source), ch.path,
                         rc_launcher_policy_source_name(t[i].source), t[i].file);
    }
    rm_rf(tmpdir);
}

TEST(refusals_never_fall_back)
{
    REQUIRE(setup_tree());
    char p[300];
    snprintf(p, sizeof p, "%s/adir.json", pdir);
    REQUIRE(mkdir(p, 0700) == 0);
    static const struct {
        const char *session;
        int code;
        const char *msg; /* substring of the error */
    } t[] = {
        {"{\"metadata\":{\"runcell_policy\":\"../default\"}}", RC_EINVAL, "is not a policy name"},
        {"{\"metadata\":{\"runcell_policy\":\"agents/agent_A\"}}", RC_EINVAL,
         "is not a policy name"},
        {"{\"metadata\":{\"runcell_policy\":\"github.json\"}}", RC_EINVAL, "is not a policy name"},
        {"{\"metadata\":{\"runcell_policy\":\"\"}}", RC_EINVAL, "is not a policy name"},
        {"{\"metadata\":{\"runcell_policy\":5}}", RC_EINVAL, "is not a policy name"},
        {"{\"metadata\":{\"runcell_policy\":[\"github\"]}}", RC_EINVAL, "is not a policy name"},
        {"{\"metadata\":{\"runcell_policy\":\"{\\\"allow\\\":[\\\"*\\\"]}\"}}", RC_EINVAL,
         "is not a policy name"},
        /* a valid name with no file: an error naming the file, not the default */
        {"{\"metadata\":{\"runcell_policy\":\"missing\"},\"agent\":{\"id\":\"agent_A\"}}",
         RC_ENOTFOUND, "missing.json does not exist"},
        {"{\"metadata\":{\"runcell_policy\":\"adir\"}}", RC_EINVAL, "is not a regular file"},
        /* agent ids are checked before they become a path */
        {"{\"agent\":{\"id\":\"../../default\"}}", RC_EINVAL, "agent id is not a valid id"},
        {"{\"agent\":{\"id\":7}}", RC_EINVAL, "agent id is not a valid id"},
    };
    rc_launcher_config c = cfg(true, true);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        rc_launcher_policy_choice ch;
        rc_error e = {0};
        int r = sel(&c, t[i].session, &ch, &e);
        if (r != -t[i].code || !strstr(e.msg, t[i].msg))
            rc_test_fail(__FILE__, __LINE__, "row %zu: r=%d msg \"%s\", want -%d \"%s\"", i, r,
                         e.msg, t[i].code, t[i].msg);
        if (strstr(e.msg, "allow"))
            rc_test_fail(__FILE__, __LINE__, "row %zu: the error echoes the input", i);
    }
    /* a policy dir but no session object at all */
    rc_launcher_policy_choice ch;
    rc_error e = {0};
    CHECK_INT(sel(&c, NULL, &ch, &e), -RC_EINVAL);
    rm_rf(tmpdir);
}

/* ---- the session fetch --------------------------------------------------------------------- */

static const char session_fmt[] =
    "{\"type\":\"session\",\"id\":\"%s\",\"status\":\"idle\",\"metadata\":%s,"
    "\"agent\":{\"type\":\"agent\",\"id\":\"agent_A\",\"version\":1}}";

static void push_session(fixture_http *fx, int status, const char *id, const char *meta)
{
    char body[512];
    snprintf(body, sizeof body, session_fmt, id, meta);
    fixture_http_push_simple(fx, status, "content-type: application/json\r\n", body);
}

TEST(load_fetches_the_session_with_its_token)
{
    REQUIRE(setup_tree());
    fixture_http *fx = fixture_http_start(NULL);
    REQUIRE(fx);
    rc_launcher_config c = cfg(true, true);
    c.base_url = fixture_http_url(fx);
    rc_launcher_policy_choice ch;
    rc_policy *p = NULL;
    rc_error e = {0};
    char auth[256];

    push_session(fx, 200, "sesn_1", "{\"runcell_policy\":\"github\"}");
    CHECK_INT(rc_launcher_policy_load(&c, "sesn_1", "tok-abc", &p, &ch, &e), 0);
    CHECK_INT(ch.source, RC_LAUNCHER_POLICY_SESSION);
    CHECK_STR(ch.name, "github");
    REQUIRE(p);
    rc_policy_verdict v;
    CHECK_INT(rc_policy_check_host(p, "github.com", &v, NULL), 0);
    CHECK(v.allow);
    CHECK_INT(rc_policy_check_host(p, "default.test", &v, NULL), 0);
    CHECK(!v.allow);
    rc_policy_free(p);
    p = NULL;
    const fixture_http_request *rq = fixture_http_get(fx, 0);
    REQUIRE(rq);
    CHECK_STR(rq->method, "GET");
    CHECK_STR(rq->target, "/v1/sessions/sesn_1");
    CHECK_STR(fixture_http_header(rq, "authorization", auth, sizeof auth), "Bearer tok-abc");

    /* the agent's file when the metadata names nothing */
    push_session(fx, 200, "sesn_2", "{}");
    CHECK_INT(rc_launcher_policy_load(&c, "sesn_2", "tok-abc", &p, &ch, &e), 0);
    CHECK_INT(ch.source, RC_LAUNCHER_POLICY_AGENT);
    rc_policy_free(p);
    p = NULL;

    /* a failed fetch refuses the session */
    fixture_http_push_simple(fx, 404, "content-type: application/json\r\n",
                             "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\","
                             "\"message\":\"no\"}}");
    CHECK(rc_launcher_policy_load(&c, "sesn_3", "tok-abc", &p, &ch, &e) < 0);
    CHECK(strstr(e.msg, "select its egress policy") != NULL);
    CHECK(p == NULL);
    /* another session's object is not accepted */
    push_session(fx, 200, "sesn_other", "{\"runcell_policy\":\"github\"}");
    CHECK_INT(rc_launcher_policy_load(&c, "sesn_4", "tok-abc", &p, &ch, &e), -RC_EPARSE);
    /* a named policy that does not parse: the error names the file and the JSON path */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/broken.json", pdir);
    put(bad, "{\"allow\": [\"ok.test\", 5]}");
    push_session(fx, 200, "sesn_5", "{\"runcell_policy\":\"broken\"}");
    CHECK(rc_launcher_policy_load(&c, "sesn_5", "tok-abc", &p, &ch, &e) < 0);
    CHECK(strstr(e.msg, "broken.json") != NULL);
    CHECK(strstr(e.msg, "$.allow[1]") != NULL);
    /* no token: nothing is fetched */
    size_t before = fixture_http_count(fx);
    CHECK_INT(rc_launcher_policy_load(&c, "sesn_6", NULL, &p, &ch, &e), -RC_EAUTH);
    CHECK_INT(fixture_http_count(fx), before);

    /* without a policy dir the session is never fetched */
    c.policy_dir = NULL;
    CHECK_INT(rc_launcher_policy_load(&c, "sesn_7", "tok-abc", &p, &ch, &e), 0);
    CHECK_INT(ch.source, RC_LAUNCHER_POLICY_DEFAULT);
    CHECK_INT(fixture_http_count(fx), before);
    rc_policy_free(p);
    p = NULL;
    c.policy_file = NULL;
    CHECK_INT(rc_launcher_policy_load(&c, "sesn_8", "tok-abc", &p, &ch, &e), 0);
    CHECK_INT(ch.source, RC_LAUNCHER_POLICY_BUILTIN);
    CHECK_INT(rc_policy_mode(p), RC_POLICY_DENY_ALL);
    rc_policy_free(p);
    fixture_http_stop(fx);
    rm_rf(tmpdir);
}

/* ---- start-up validation ------------------------------------------------------------------- */

TEST(check_all)
{
    REQUIRE(setup_tree());
    rc_launcher_config c = cfg(true, true);
    rc_error e = {0};
    char p[300];

    CHECK_INT(rc_launcher_policy_check_all(&c, &e), 4);
    c.policy_dir = NULL;
    CHECK_INT(rc_launcher_policy_check_all(&c, &e), 1);
    c.policy_file = NULL;
    CHECK_INT(rc_launcher_policy_check_all(&c, &e), 0);
    c = cfg(true, true);

    /* hidden files are skipped */
    snprintf(p, sizeof p, "%s/.swp", pdir);
    put(p, "junk");
    CHECK_INT(rc_launcher_policy_check_all(&c, &e), 4);

    /* a bad policy in the dir: file and JSON path */
    snprintf(p, sizeof p, "%s/bad.json", pdir);
    put(p, "{\"allow\": {\"x.test\": [{\"match\": {\"path\": {\"exact\": \"nope\"}}, "
           "\"transform\": []}]}}");
    CHECK(rc_launcher_policy_check_all(&c, &e) < 0);
    CHECK(strstr(e.msg, "bad.json") != NULL);
    CHECK(strstr(e.msg, "$.allow[\"x.test\"][0].match.path.exact") != NULL);
    unlink(p);

    /* a bad agent file */
    snprintf(p, sizeof p, "%s/agent_Z.json", agents);
    put(p, "{\"allow\": [\"a.test\"], \"subnet\": {}}");
    CHECK(rc_launcher_policy_check_all(&c, &e) < 0);
    CHECK(strstr(e.msg, "agents/agent_Z.json") != NULL);
    CHECK(strstr(e.msg, "unknown member \"subnet\"") != NULL);
    unlink(p);

    /* a file that is not <name>.json */
    snprintf(p, sizeof p, "%s/github.json~", pdir);
    put(p, "\"deny-all\"");
    CHECK_INT(rc_launcher_policy_check_all(&c, &e), -RC_EINVAL);
    CHECK(strstr(e.msg, "github.json~: not a policy file name") != NULL);
    unlink(p);
    snprintf(p, sizeof p, "%s/two words.json", pdir);
    put(p, "\"deny-all\"");
    CHECK_INT(rc_launcher_policy_check_all(&c, &e), -RC_EINVAL);
    unlink(p);

    /* not JSON at all */
    snprintf(p, sizeof p, "%s/notjson.json", pdir);
    put(p, "allow: everything");
    CHECK(rc_launcher_policy_check_all(&c, &e) < 0);
    CHECK(strstr(e.msg, "notjson.json") != NULL);
    CHECK(strstr(e.msg, "not valid JSON") != NULL);
    unlink(p);
    CHECK_INT(rc_launcher_policy_check_all(&c, &e), 4);

    /* the default file is checked too */
    put(deffile, "{\"allow\": [\"*\"], \"allow\": []}");
    CHECK(rc_launcher_policy_check_all(&c, &e) < 0);
    CHECK(strstr(e.msg, "default.json") != NULL);
    put(deffile, "\"deny-all\"");

    /* a dir anyone may write to */
    REQUIRE(chmod(pdir, 0777) == 0);
    CHECK_INT(rc_launcher_policy_check_all(&c, &e), -RC_EINVAL);
    CHECK(strstr(e.msg, "writable by group or others") != NULL);
    REQUIRE(chmod(pdir, 0700) == 0);

    /* a missing dir */
    char gone[300];
    snprintf(gone, sizeof gone, "%s/none", tmpdir);
    c.policy_dir = gone;
    CHECK_INT(rc_launcher_policy_check_all(&c, &e), -RC_EIO);
    CHECK(strstr(e.msg, "RUNCELL_POLICY_DIR") != NULL);
    rm_rf(tmpdir);
}
