/* fuzz_emulator_events.c - libFuzzer target for runcell-emulator's request-body handling: the
 * strict JSON body parser, the `POST /v1/sessions/{id}/events` checks (content blocks, pairing
 * rules, credential rules) and, when they pass, applying the events to a session (store, player,
 * default agent), plus the agent tool validator and the RFC 3339 parser.
 *
 * Each input gets a fresh in-memory emulator holding one session with three tool calls (a plain
 * tool call, a custom tool call and an `ask` call) so that the pairing rules have something to
 * match. The first input byte picks the credential kind. Checks: no crash, leak or overread; a
 * refused body leaves the session's events untouched; an accepted one appends exactly one stored
 * event per input event at least. */
#include "em.h"
#include "log.h"
#include "server.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static rc_em_session *make_session(rc_em *em)
{
    rc_em_env *env = calloc(1, sizeof(*env));
    rc_em_session *s = calloc(1, sizeof(*s));
    CHECK(env && s);
    snprintf(env->id, sizeof(env->id), "env_fuzz");
    env->name = strdup("fuzz");
    env->scope = strdup("organization");
    env->metadata = cJSON_CreateObject();
    CHECK(rc_emstore_env_add(em, env, NULL) == 0);
    snprintf(s->id, sizeof(s->id), "sesn_fuzz");
    s->env = env;
    s->agent = cJSON_Parse("{\"type\":\"agent\",\"id\":\"agent_f\",\"version\":1,\"tools\":["
                           "{\"type\":\"custom\",\"name\":\"run_shell\",\"input_schema\":"
                           "{\"type\":\"object\"}}]}");
    s->metadata = cJSON_CreateObject();
    s->status = RC_EM_SESSION_IDLE;
    CHECK(rc_emstore_session_add(em, s, NULL) == 0);
    CHECK(rc_emstore_call_add(s, "sevt_tool", false, false, NULL) == 0);
    CHECK(rc_emstore_call_add(s, "sevt_custom", true, false, NULL) == 0);
    CHECK(rc_emstore_call_add(s, "sevt_ask", false, true, NULL) == 0);
    return s;
}

static void fuzz_events(rc_em *em, rc_em_session *s, const cJSON *body, int kind)
{
    rc_em_ctx c = {.em = em, .method = "POST"};
    rc_em_call *calls[64] = {0};
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(body, "events");
    size_t before = s->nevents;
    cJSON *echoes;

    c.resp.should_retry = -1;
    snprintf(c.request_id, sizeof(c.request_id), "req_fuzz");
    c.auth.kind = kind;
    if (!events)
        return;
    if (rc_emroute_events_check(&c, s, events, false, calls) < 0) {
        CHECK(c.resp.status == 400 || c.resp.status == 403);
        CHECK(s->nevents == before);
        free(c.resp.body);
        return;
    }
    echoes = cJSON_CreateArray();
    CHECK(rc_emroute_events_apply(&c, s, events, calls, echoes, NULL) == 0);
    CHECK(s->nevents >= before + (size_t)cJSON_GetArraySize(events));
    CHECK(cJSON_GetArraySize(echoes) == cJSON_GetArraySize(events));
    cJSON_Delete(echoes);
    /* Let the default agent act on any user message, then check the stored events parse. */
    rc_emplay_tick(em, INT64_MAX);
    for (size_t i = 0; i < s->nevents; i++) {
        cJSON *e = cJSON_Parse(s->events[i]->json);
        CHECK(e && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "id")));
        cJSON_Delete(e);
    }
    free(c.resp.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int kinds[] = {RC_EM_CRED_API_KEY, RC_EM_CRED_ENV_KEY, RC_EM_CRED_TOKEN};
    static int log_ready;
    rc_em em = {0};
    rc_em_session *s;
    cJSON *body = NULL, *tools = NULL;
    char msg[256], *str;
    int64_t us;

    if (!log_ready) {
        rc_log_init("fuzz", RC_LOG_ERROR, -1);
        log_ready = 1;
    }
    if (size < 1)
        return 0;
    str = strndup((const char *)data + 1, size - 1);
    if (str) {
        (void)rc_emutil_parse_rfc3339(str, &us);
        free(str);
    }
    if (rc_emutil_parse_json((const char *)data + 1, size - 1, &body, NULL) < 0)
        return 0;
    CHECK(body);
    if (cJSON_IsObject(body)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "tools");
        if (t && rc_emroute_tools_resolve(t, &tools, msg, sizeof(msg)) == 0) {
            CHECK(cJSON_IsArray(tools));
            cJSON_Delete(tools);
        }
        (void)rc_emutil_check_metadata(body, data[0] & 1, NULL);
        pthread_mutex_init(&em.lock, NULL);
        em.cfg.default_ttl_s = RC_EM_DEFAULT_TTL_S;
        em.cfg.ping_ms = 15000;
        CHECK(rc_emstore_init(&em, NULL) == 0);
        s = make_session(&em);
        fuzz_events(&em, s, body, kinds[data[0] % 3]);
        rc_emstore_free(&em);
        pthread_mutex_destroy(&em.lock);
    }
    cJSON_Delete(body);
    return 0;
}
