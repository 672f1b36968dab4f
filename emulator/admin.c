/* admin.c - the emulator's own endpoints under /_emulator/v1/ (scenario.md §3, protocol.md 19.7).
 * They are not part of the real API: scenarios, environment keys (the Console's "Generate
 * environment key"), verdicts, the request log, fault injection and stats, plus a few
 * extensions (key revocation, healthcheck items, expiring a lease now).
 *
 * The request log never holds credential values: only header names, the values of a fixed list
 * of harmless headers, and the (truncated) body. */
#include "server.h"

#include "cleanup.h"
#include "log.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rc_emadmin_scenario_put(rc_em_ctx *c)
{
    rc_sc_scenario *sc = NULL;
    cJSON *tools = NULL, *o;
    rc_error err = {0};
    char msg[256];
    const char *name;

    if (!c->body)
        return rc_emsrv_bad(c, "body: required, a scenario");
    if (rc_sc_parse(c->req->body.data, c->req->body.len, &sc, &err) < 0)
        return rc_emsrv_bad(c, "%s", err.msg);
    if (sc->agent_tools &&
        rc_emroute_tools_resolve(sc->agent_tools, &tools, msg, sizeof(msg)) < 0) {
        rc_sc_free(sc);
        return rc_emsrv_bad(c, "agent.%s", msg);
    }
    cJSON_Delete(tools);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", sc->name);
    name = sc->name;
    rc_log_info("scenario %s loaded", name);
    if (rc_emstore_scenario_put(c->em, sc, &err) < 0) {
        cJSON_Delete(o);
        return rc_emsrv_internal(c, &err);
    }
    return rc_emsrv_json(c, 200, o);
}

int rc_emadmin_key_mint(rc_em_ctx *c)
{
    rc_em_env *env = rc_emstore_env_find(c->em, c->params[0]);
    _cleanup_free_ char *key = NULL;
    rc_error err = {0};
    cJSON *o;

    if (!env)
        return rc_emsrv_error(c, 404, "not_found_error", "environment_not_found",
                              "environment %s not found", c->params[0]);
    if (rc_emstore_envkey_mint(c->em, env, &key, &err) < 0)
        return rc_emsrv_internal(c, &err);
    rc_log_info("environment key minted for %s", env->id);
    rc_emstate_save(c->em, NULL);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", key);
    cJSON_AddStringToObject(o, "environment_id", env->id);
    explicit_bzero(key, strlen(key));
    return rc_emsrv_json(c, 200, o);
}

int rc_emadmin_key_revoke(rc_em_ctx *c)
{
    const char *key = c->body ? rc_emutil_jstr(c->body, "key") : NULL;
    rc_em_cred *cr;
    cJSON *o;

    if (!key)
        return rc_emsrv_bad(c, "key: required, a string");
    cr = rc_emstore_cred_lookup(c->em, key);
    if (!cr || cr->kind != RC_EM_CRED_ENV_KEY)
        return rc_emsrv_notfound(c, "no such environment key");
    cr->revoked = true;
    rc_log_info("environment key of %s revoked", cr->env->id);
    rc_emstate_save(c->em, NULL);
    o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "revoked", true);
    cJSON_AddStringToObject(o, "environment_id", cr->env->id);
    return rc_emsrv_json(c, 200, o);
}

int rc_emadmin_verdict(rc_em_ctx *c)
{
    rc_em_session *s = rc_emstore_session_find_any(c->em, c->params[0]);
    cJSON *v;
    if (!s)
        return rc_emsrv_notfound(c, "session %s not found", c->params[0]);
    v = rc_emplay_verdict_json(s);
    if (!v)
        return rc_emsrv_notfound(c, "session %s plays no scenario", s->id);
    return rc_emsrv_json(c, 200, v);
}

static cJSON *reqlog_json(const rc_em_reqlog *l)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *h = l->headers ? cJSON_Parse(l->headers) : NULL;
    cJSON *sv = l->safe ? cJSON_Parse(l->safe) : NULL;
    cJSON_AddNumberToObject(o, "seq", (double)l->seq);
    cJSON_AddItemToObject(o, "time", rc_emutil_ts(l->ts_us));
    cJSON_AddStringToObject(o, "method", l->method ? l->method : "");
    cJSON_AddStringToObject(o, "path", l->path ? l->path : "");
    if (l->query)
        cJSON_AddStringToObject(o, "query", l->query);
    else
        cJSON_AddNullToObject(o, "query");
    cJSON_AddNumberToObject(o, "status", l->status);
    cJSON_AddStringToObject(o, "credential", rc_emsrv_cred_name(l->cred_kind));
    cJSON_AddItemToObject(o, "headers", h ? h : cJSON_CreateArray());
    cJSON_AddItemToObject(o, "header_values", sv ? sv : cJSON_CreateObject());
    if (l->body)
        cJSON_AddStringToObject(o, "body", l->body);
    else
        cJSON_AddNullToObject(o, "body");
    cJSON_AddBoolToObject(o, "body_truncated", l->body_truncated);
    cJSON_AddNumberToObject(o, "duration_ms", (double)l->duration_ms);
    return o;
}

int rc_emadmin_requests(rc_em_ctx *c)
{
    rc_em *em = c->em;
    long since = 0, limit = RC_EM_REQLOG_MAX;
    uint64_t first, seq;
    cJSON *o, *data;

    if (rc_emsrv_query_long(c, "since", 0, LONG_MAX, &since) < 0 ||
        rc_emsrv_query_long(c, "limit", 1, RC_EM_REQLOG_MAX, &limit) < 0)
        return 0;
    first = em->reqlog_seq > RC_EM_REQLOG_MAX ? em->reqlog_seq - RC_EM_REQLOG_MAX + 1 : 1;
    seq = (uint64_t)since + 1 > first ? (uint64_t)since + 1 : first;
    o = cJSON_CreateObject();
    data = cJSON_AddArrayToObject(o, "data");
    for (long n = 0; seq <= em->reqlog_seq && n < limit; seq++, n++)
        cJSON_AddItemToArray(data, reqlog_json(&em->reqlog[(seq - 1) % RC_EM_REQLOG_MAX]));
    cJSON_AddNumberToObject(o, "last_seq",
                            (double)(seq - 1 > em->reqlog_seq ? em->reqlog_seq : seq - 1));
    cJSON_AddBoolToObject(o, "has_more", seq <= em->reqlog_seq);
    return rc_emsrv_json(c, 200, o);
}

/* ---- faults ---- */

static int get_long(rc_em_ctx *c, const cJSON *b, const char *key, long lo, long hi, long *ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, key);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi) {
        rc_emsrv_bad(c, "%s: must be an integer between %ld and %ld", key, lo, hi);
        return -1;
    }
    *ret = (long)v->valuedouble;
    return 1;
}

static int parse_statuses(rc_em_ctx *c, const cJSON *v, rc_em_faults *f)
{
    const cJSON *it;
    if (!v)
        return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 16)
        return rc_emsrv_bad(c, "http_error_statuses: an array of at most 16 statuses"), -1;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble < 400 || it->valuedouble > 599 ||
            it->valuedouble != (double)(int)it->valuedouble)
            return rc_emsrv_bad(c, "http_error_statuses: statuses must be integers 400-599"), -1;
        f->http_error_statuses[f->n_http_error_statuses++] = (int)it->valuedouble;
    }
    return 0;
}

static int parse_paths(rc_em_ctx *c, const cJSON *v, rc_em_faults *f)
{
    const cJSON *it;
    if (!v)
        return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 32)
        return rc_emsrv_bad(c, "http_error_paths: an array of at most 32 strings"), -1;
    f->http_error_paths = calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(char *));
    if (!f->http_error_paths)
        return rc_emsrv_internal(c, NULL), -1;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it) || !*it->valuestring)
            return rc_emsrv_bad(c, "http_error_paths: must be non-empty strings"), -1;
        f->http_error_paths[f->n_http_error_paths++] = strdup(it->valuestring);
    }
    return 0;
}

static int parse_enum(rc_em_ctx *c, const cJSON *b, const char *key, const char *const *names,
                      int *ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, key);
    if (!v)
        return 0;
    for (int i = 0; names[i]; i++) {
        if (cJSON_IsString(v) && strcmp(v->valuestring, names[i]) == 0) {
            *ret = i;
            return 0;
        }
    }
    rc_emsrv_bad(c, "%s: unknown value", key);
    return -1;
}

static void faults_clear(rc_em_faults *f)
{
    for (size_t i = 0; i < f->n_http_error_paths; i++)
        free(f->http_error_paths[i]);
    free(f->http_error_paths);
    memset(f, 0, sizeof(*f));
    f->stop_status = 204;
}

static const char *const fault_keys[] = {"stream_drop_after_events",
                                         "http_error_rate",
                                         "http_error_statuses",
                                         "http_error_paths",
                                         "heartbeat_412_on",
                                         "lease_ttl_seconds",
                                         "webhook_duplicates",
                                         "webhook_delay_ms",
                                         "latency_ms",
                                         "seed",
                                         "empty_poll",
                                         "secret",
                                         "stop_status",
                                         NULL};

static int check_fault_keys(rc_em_ctx *c, const cJSON *b)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, b)
    {
        bool ok = it->string[0] == '_';
        for (size_t i = 0; fault_keys[i] && !ok; i++)
            ok = strcmp(it->string, fault_keys[i]) == 0;
        if (!ok)
            return rc_emsrv_bad(c, "%s: unknown fault", it->string), -1;
    }
    return 0;
}

static int parse_faults(rc_em_ctx *c, const cJSON *b, rc_em_faults *f, long *ret_seed,
                        int *ret_has_seed)
{
    static const char *const empty_forms[] = {"204", "null", "empty", NULL};
    static const char *const secret_forms[] = {"normal", "null", "corrupt", NULL};
    const cJSON *rate = cJSON_GetObjectItemCaseSensitive(b, "http_error_rate");
    long stop = 204;

    if (check_fault_keys(c, b) < 0)
        return -1;
    if (get_long(c, b, "stream_drop_after_events", 0, 1000000, &f->stream_drop_after_events) < 0 ||
        get_long(c, b, "heartbeat_412_on", 0, 1000000, &f->heartbeat_412_on) < 0 ||
        get_long(c, b, "lease_ttl_seconds", 0, 86400, &f->lease_ttl_seconds) < 0 ||
        get_long(c, b, "webhook_duplicates", 0, 10, &f->webhook_duplicates) < 0 ||
        get_long(c, b, "webhook_delay_ms", 0, 600000, &f->webhook_delay_ms) < 0 ||
        get_long(c, b, "latency_ms", 0, 60000, &f->latency_ms) < 0 ||
        get_long(c, b, "stop_status", 200, 204, &stop) < 0 ||
        (*ret_has_seed = get_long(c, b, "seed", LONG_MIN, LONG_MAX, ret_seed)) < 0)
        return -1;
    if (stop != 200 && stop != 204)
        return rc_emsrv_bad(c, "stop_status: must be 200 or 204"), -1;
    f->stop_status = (int)stop;
    if (rate && (!cJSON_IsNumber(rate) || rate->valuedouble < 0 || rate->valuedouble > 1))
        return rc_emsrv_bad(c, "http_error_rate: must be a number between 0 and 1"), -1;
    f->http_error_rate = rate ? rate->valuedouble : 0;
    if (parse_statuses(c, cJSON_GetObjectItemCaseSensitive(b, "http_error_statuses"), f) < 0 ||
        parse_paths(c, cJSON_GetObjectItemCaseSensitive(b, "http_error_paths"), f) < 0 ||
        parse_enum(c, b, "empty_poll", empty_forms, &f->empty_poll) < 0 ||
        parse_enum(c, b, "secret", secret_forms, &f->secret_mode) < 0)
        return -1;
    return 0;
}

static cJSON *faults_json(const rc_em_faults *f)
{
    static const char *const empty_forms[] = {"204", "null", "empty"};
    static const char *const secret_forms[] = {"normal", "null", "corrupt"};
    cJSON *o = cJSON_CreateObject(), *arr;
    cJSON_AddNumberToObject(o, "stream_drop_after_events", (double)f->stream_drop_after_events);
    cJSON_AddNumberToObject(o, "http_error_rate", f->http_error_rate);
    arr = cJSON_AddArrayToObject(o, "http_error_statuses");
    for (size_t i = 0; i < f->n_http_error_statuses; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(f->http_error_statuses[i]));
    arr = cJSON_AddArrayToObject(o, "http_error_paths");
    for (size_t i = 0; i < f->n_http_error_paths; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(f->http_error_paths[i]));
    cJSON_AddNumberToObject(o, "heartbeat_412_on", (double)f->heartbeat_412_on);
    cJSON_AddNumberToObject(o, "lease_ttl_seconds", (double)f->lease_ttl_seconds);
    cJSON_AddNumberToObject(o, "webhook_duplicates", (double)f->webhook_duplicates);
    cJSON_AddNumberToObject(o, "webhook_delay_ms", (double)f->webhook_delay_ms);
    cJSON_AddNumberToObject(o, "latency_ms", (double)f->latency_ms);
    cJSON_AddStringToObject(o, "empty_poll", empty_forms[f->empty_poll]);
    cJSON_AddStringToObject(o, "secret", secret_forms[f->secret_mode]);
    cJSON_AddNumberToObject(o, "stop_status", f->stop_status);
    return o;
}

int rc_emadmin_faults(rc_em_ctx *c)
{
    rc_em_faults f = {0};
    long seed = 0;
    int has_seed = 0;

    f.stop_status = 204;
    if (c->body && parse_faults(c, c->body, &f, &seed, &has_seed) < 0) {
        faults_clear(&f);
        return 0;
    }
    faults_clear(&c->em->faults);
    c->em->faults = f;
    if (has_seed > 0)
        c->em->rng = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
    rc_log_info("faults set");
    return rc_emsrv_json(c, 200, faults_json(&c->em->faults));
}

/* ---- stats ---- */

int rc_emadmin_stats(rc_em_ctx *c)
{
    rc_em *em = c->em;
    long sess[4] = {0}, deleted = 0, work[5] = {0}, pending = 0;
    size_t running, passed, failed;
    int64_t now = rc_emutil_mono_ms();
    cJSON *o = cJSON_CreateObject(), *so, *wo, *sc;

    for (size_t i = 0; i < em->nsessions; i++) {
        if (em->sessions[i]->deleted)
            deleted++;
        else
            sess[em->sessions[i]->status]++;
    }
    for (size_t i = 0; i < em->nworks; i++) {
        const rc_em_work *w = em->works[i];
        if (w->state == RC_EM_WORK_QUEUED && w->pending_ms &&
            now - w->pending_ms < RC_EM_RECLAIM_DEFAULT_MS)
            pending++;
        else
            work[w->state]++;
    }
    so = cJSON_AddObjectToObject(o, "sessions");
    for (int i = 0; i < 4; i++)
        cJSON_AddNumberToObject(so, rc_emstore_status_name((enum rc_em_session_status)i),
                                (double)sess[i]);
    cJSON_AddNumberToObject(so, "deleted", (double)deleted);
    wo = cJSON_AddObjectToObject(o, "work_items");
    for (int i = 0; i < 5; i++)
        cJSON_AddNumberToObject(wo, rc_emstore_work_state_name((enum rc_em_work_state)i),
                                (double)work[i]);
    cJSON_AddNumberToObject(wo, "pending", (double)pending);
    cJSON_AddItemToObject(o, "webhooks", rc_emhook_stats_json(em));
    cJSON_AddNumberToObject(o, "streams_open", (double)em->nstreams);
    cJSON_AddNumberToObject(o, "requests", (double)em->reqlog_seq);
    rc_emplay_count(em, &running, &passed, &failed);
    sc = cJSON_AddObjectToObject(o, "scenarios");
    cJSON_AddNumberToObject(sc, "loaded", (double)em->nscenarios);
    cJSON_AddNumberToObject(sc, "running", (double)running);
    cJSON_AddNumberToObject(sc, "passed", (double)passed);
    cJSON_AddNumberToObject(sc, "failed", (double)failed);
    return rc_emsrv_json(c, 200, o);
}

/* ---- extensions ---- */

int rc_emadmin_healthcheck(rc_em_ctx *c)
{
    rc_em_env *env = rc_emstore_env_find(c->em, c->params[0]);
    rc_em_work *w = NULL;
    rc_error err = {0};
    if (!env)
        return rc_emsrv_error(c, 404, "not_found_error", "environment_not_found",
                              "environment %s not found", c->params[0]);
    if (rc_emstore_work_create(c->em, env, NULL, "healthcheck", &w, &err) < 0)
        return rc_emsrv_internal(c, &err);
    return rc_emsrv_json(c, 200, rc_emstore_work_json(w, false));
}

int rc_emadmin_expire_lease(rc_em_ctx *c)
{
    rc_em_env *env = rc_emstore_env_find(c->em, c->params[0]);
    rc_em_work *w = env ? rc_emstore_work_find(c->em, env, c->params[1]) : NULL;
    if (!w)
        return rc_emsrv_notfound(c, "work item not found");
    if (w->state != RC_EM_WORK_STARTING && w->state != RC_EM_WORK_ACTIVE)
        return rc_emsrv_error(c, 409, "conflict_error", NULL, "work item %s holds no lease", w->id);
    rc_emstore_work_requeue(c->em, w);
    return rc_emsrv_json(c, 200, rc_emstore_work_json(w, false));
}
