/* test_emulator_store.c - unit tests of runcell-emulator's pure pieces: RFC 3339 stamps, the
 * strict body parser, ids, metadata rules, agent tool resolution, and the work item state
 * machine of protocol.md section 6 driven directly through the store (queue order, pending
 * hand-outs and reclaim, lease expiry, one live item per session). The HTTP side is covered by
 * tests/integration/emulator_*.sh. */
#include "em.h"
#include "harness.h"
#include "log.h"
#include "server.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST(rfc3339_round_trip)
{
    char buf[40];
    int64_t us = 0;
    rc_emutil_rfc3339(1777636831123456LL, buf);
    CHECK_STR(buf, "2026-05-01T12:00:31.123456Z");
    REQUIRE(rc_emutil_parse_rfc3339(buf, &us) == 0);
    CHECK_INT(us, 1777636831123456LL);
    REQUIRE(rc_emutil_parse_rfc3339("2026-05-01T14:00:31+02:00", &us) == 0);
    CHECK_INT(us, 1777636831000000LL);
    REQUIRE(rc_emutil_parse_rfc3339("2026-05-01t12:00:31.1z", &us) == 0);
    CHECK_INT(us, 1777636831100000LL);
}

TEST(rfc3339_rejects)
{
    int64_t us = 7;
    const char *bad[] = {"",
                         "2026-05-01",
                         "2026-05-01T12:00:31",
                         "yesterday",
                         "2026-13-01T00:00:00Z",
                         "2026-05-01T12:00:31.Z",
                         "2026-05-01T12:00:31Zx"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(rc_emutil_parse_rfc3339(bad[i], &us) < 0);
    CHECK_INT(us, 7);
}

TEST(utf8_validation)
{
    CHECK(rc_emutil_utf8_valid("h\xc3\xa9llo \xf0\x9f\x98\x80", 11));
    CHECK(!rc_emutil_utf8_valid("\xc0\xaf", 2));         /* overlong */
    CHECK(!rc_emutil_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!rc_emutil_utf8_valid("\xe2\x82", 2));         /* truncated */
    CHECK(!rc_emutil_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
}

TEST(json_body_parser)
{
    cJSON *j = NULL;
    char deep[300];
    REQUIRE(rc_emutil_parse_json("{\"a\":1} \n", 9, &j, NULL) == 0);
    CHECK(cJSON_IsObject(j));
    cJSON_Delete(j);
    j = NULL;
    CHECK(rc_emutil_parse_json("{\"a\":1} x", 9, &j, NULL) < 0);
    CHECK(rc_emutil_parse_json("{\"a\":\"\xff\"}", 9, &j, NULL) < 0);
    CHECK(rc_emutil_parse_json("{\"a\":\"\0\"}", 9, &j, NULL) < 0);
    memset(deep, '[', sizeof(deep));
    CHECK(rc_emutil_parse_json(deep, sizeof(deep), &j, NULL) < 0);
    CHECK(j == NULL);
    /* Brackets inside strings do not count towards the depth. */
    CHECK(rc_emutil_json_depth_ok("\"[[[[[[\"", 8, 2));
}

TEST(random_ids)
{
    char a[RC_EM_ID_MAX], b[RC_EM_ID_MAX];
    REQUIRE(rc_emutil_random_id("sesn_", a, sizeof(a), NULL) == 0);
    REQUIRE(rc_emutil_random_id("sesn_", b, sizeof(b), NULL) == 0);
    CHECK_INT(strlen(a), 29);
    CHECK(strncmp(a, "sesn_", 5) == 0);
    CHECK(strspn(a + 5, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == 24);
    CHECK(strcmp(a, b) != 0);
    CHECK(rc_emutil_random_id("x", a, 10, NULL) < 0);
}

TEST(metadata_rules)
{
    cJSON *m = cJSON_Parse("{\"k\":\"v\",\"gone\":null}");
    cJSON *dst = cJSON_Parse("{\"gone\":\"x\",\"keep\":\"y\"}");
    char big[600];
    CHECK(rc_emutil_check_metadata(m, true, NULL) == 0);
    CHECK(rc_emutil_check_metadata(m, false, NULL) < 0);
    rc_emutil_merge_metadata(dst, m);
    CHECK(cJSON_GetObjectItem(dst, "gone") == NULL);
    CHECK_STR(rc_emutil_jstr(dst, "k"), "v");
    CHECK_STR(rc_emutil_jstr(dst, "keep"), "y");
    cJSON_Delete(m);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "k", big);
    CHECK(rc_emutil_check_metadata(m, false, NULL) < 0);
    cJSON_Delete(m);
    cJSON_Delete(dst);
}

TEST(tools_resolve)
{
    cJSON *in = cJSON_Parse(
        "[{\"type\":\"agent_toolset_20260401\",\"default_config\":{\"permission_policy\":"
        "{\"type\":\"always_ask\"}},\"configs\":[{\"name\":\"read\",\"enabled\":false}]},"
        "{\"type\":\"custom\",\"name\":\"run_tests\",\"input_schema\":{\"type\":\"object\"}}]");
    cJSON *out = NULL, *cfg;
    char msg[256];
    REQUIRE(rc_emroute_tools_resolve(in, &out, msg, sizeof(msg)) == 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(out, 0), "default_config"), "enabled")));
    cfg = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 0), "configs"), 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cfg, "enabled")));
    CHECK_STR(rc_emutil_jstr(cJSON_GetObjectItem(cfg, "permission_policy"), "type"), "always_ask");
    cJSON_Delete(out);
    cJSON_Delete(in);
    in = cJSON_Parse("[{\"type\":\"custom\",\"name\":\"grep\",\"input_schema\":"
                     "{\"type\":\"object\"}}]");
    out = NULL;
    CHECK(rc_emroute_tools_resolve(in, &out, msg, sizeof(msg)) < 0);
    CHECK(strstr(msg, "tools[0].name") != NULL);
    CHECK(out == NULL);
    cJSON_Delete(in);
}

/* ---- the work state machine, through the store ---- */

typedef struct fixture {
    rc_em em;
    rc_em_env *env;
} fixture;

static int fixture_init(fixture *f)
{
    memset(f, 0, sizeof(*f));
    rc_log_init("test", RC_LOG_ERROR, -1);
    pthread_mutex_init(&f->em.lock, NULL);
    f->em.cfg.default_ttl_s = 300;
    f->em.cfg.ping_ms = 15000;
    if (rc_emstore_init(&f->em, NULL) < 0)
        return -1;
    f->env = calloc(1, sizeof(*f->env));
    if (!f->env)
        return -1;
    snprintf(f->env->id, sizeof(f->env->id), "env_test");
    f->env->name = strdup("t");
    f->env->scope = strdup("organization");
    f->env->metadata = cJSON_CreateObject();
    return rc_emstore_env_add(&f->em, f->env, NULL);
}

static rc_em_session *add_session(fixture *f, const char *id)
{
    rc_em_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->env = f->env;
    s->agent = cJSON_CreateObject();
    s->metadata = cJSON_CreateObject();
    if (rc_emstore_session_add(&f->em, s, NULL) < 0)
        return NULL;
    return s;
}

static void fixture_free(fixture *f)
{
    rc_emstore_free(&f->em);
    pthread_mutex_destroy(&f->em.lock);
}

TEST(work_queue_order_and_reclaim)
{
    fixture f;
    rc_em_session *s1, *s2;
    rc_em_work *w;
    REQUIRE(fixture_init(&f) == 0);
    s1 = add_session(&f, "sesn_1");
    s2 = add_session(&f, "sesn_2");
    REQUIRE(s1 && s2);
    REQUIRE(rc_emstore_session_ensure_work(&f.em, s1, NULL) == 0);
    REQUIRE(rc_emstore_session_ensure_work(&f.em, s2, NULL) == 0);
    REQUIRE(rc_emstore_session_ensure_work(&f.em, s1, NULL) == 0); /* still one live item */
    CHECK_INT(f.em.nworks, 2);
    w = rc_emstore_work_take(&f.em, f.env, 5000);
    REQUIRE(w != NULL);
    CHECK(w->session == s1); /* oldest first */
    CHECK(w->state == RC_EM_WORK_QUEUED && w->pending_ms != 0);
    CHECK(rc_emstore_work_take(&f.em, f.env, 5000)->session == s2);
    CHECK(rc_emstore_work_take(&f.em, f.env, 5000) == NULL); /* both pending */
    usleep(5000);
    CHECK(rc_emstore_work_take(&f.em, f.env, 1)->session == s1); /* reclaimed */
    fixture_free(&f);
}

TEST(work_lease_expiry_and_stop)
{
    fixture f;
    rc_em_session *s;
    rc_em_work *w;
    REQUIRE(fixture_init(&f) == 0);
    s = add_session(&f, "sesn_1");
    REQUIRE(s && rc_emstore_session_ensure_work(&f.em, s, NULL) == 0);
    w = s->live;
    REQUIRE(w != NULL);
    w->state = RC_EM_WORK_ACTIVE;
    snprintf(w->last_hb, sizeof(w->last_hb), "2026-05-01T12:00:31.123456Z");
    w->lease_until_ms = 1000;
    rc_emstore_lease_tick(&f.em, 999);
    CHECK(w->state == RC_EM_WORK_ACTIVE);
    rc_emstore_lease_tick(&f.em, 1000);
    CHECK(w->state == RC_EM_WORK_QUEUED);
    CHECK(w->last_hb[0] == '\0');
    CHECK(s->live == w);
    w->state = RC_EM_WORK_STOPPING;
    w->lease_until_ms = 2000;
    rc_emstore_lease_tick(&f.em, 2000);
    CHECK(w->state == RC_EM_WORK_STOPPED);
    CHECK(s->live == NULL);
    /* A stop never queues new work by itself; new input does. */
    CHECK_INT(f.em.nworks, 1);
    REQUIRE(rc_emstore_session_ensure_work(&f.em, s, NULL) == 0);
    CHECK_INT(f.em.nworks, 2);
    fixture_free(&f);
}

TEST(work_stale_entry_dropped)
{
    fixture f;
    rc_em_session *s;
    REQUIRE(fixture_init(&f) == 0);
    s = add_session(&f, "sesn_1");
    REQUIRE(s && rc_emstore_session_ensure_work(&f.em, s, NULL) == 0);
    s->deleted = true;
    CHECK(rc_emstore_work_take(&f.em, f.env, 5000) == NULL);
    CHECK(f.em.works[0]->state == RC_EM_WORK_STOPPED);
    fixture_free(&f);
}

TEST(heartbeat_stamps_unique)
{
    fixture f;
    char a[40], b[40];
    int64_t ua, ub;
    REQUIRE(fixture_init(&f) == 0);
    rc_emstore_heartbeat_stamp(&f.em, a, &ua);
    rc_emstore_heartbeat_stamp(&f.em, b, &ub);
    CHECK(ub > ua);
    CHECK(strcmp(a, b) != 0);
    fixture_free(&f);
}

TEST(credential_lookup_by_value)
{
    fixture f;
    char *key = NULL;
    REQUIRE(fixture_init(&f) == 0);
    f.em.api_key.kind = RC_EM_CRED_API_KEY;
    f.em.api_key.value = strdup("sk-ant-api03-test");
    REQUIRE(rc_emstore_envkey_mint(&f.em, f.env, &key, NULL) == 0);
    CHECK(strncmp(key, "sk-ant-oat01-", 13) == 0);
    CHECK(rc_emstore_cred_lookup(&f.em, key)->kind == RC_EM_CRED_ENV_KEY);
    CHECK(rc_emstore_cred_lookup(&f.em, key)->env == f.env);
    CHECK(rc_emstore_cred_lookup(&f.em, "sk-ant-api03-test")->kind == RC_EM_CRED_API_KEY);
    /* The prefix decides nothing: an unknown value of any shape is unknown. */
    CHECK(rc_emstore_cred_lookup(&f.em, "sk-ant-oat01-unknown") == NULL);
    free(key);
    fixture_free(&f);
}
