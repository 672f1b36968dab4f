/* store.c - the emulator's objects and the rules that change them: environments, agents,
 * sessions and their events and tool calls, work items with the state machine of protocol.md
 * section 6 (queue, pending hand-outs, leases), credentials, scenarios.
 *
 * Route handlers validate a request completely and only then call in here, so a refused request
 * changes nothing. Every function runs with rc_em.lock held. Lookups are linear scans: the
 * emulator holds hundreds of objects, not millions, and this keeps the code obvious. */
#include "em.h"

#include "base64.h"
#include "cleanup.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Grow an array of n elements of size sz with capacity *cap to hold one more. */
static int grow(void **arr, size_t n, size_t *cap, size_t sz, rc_error *err)
{
    void *p;
    size_t ncap;
    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 16;
    p = realloc(*arr, ncap * sz);
    if (!p)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    *arr = p;
    *cap = ncap;
    return 0;
}

int rc_emstore_init(rc_em *em, rc_error *err)
{
    em->reqlog = calloc(RC_EM_REQLOG_MAX, sizeof(*em->reqlog));
    if (!em->reqlog)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    em->faults.stop_status = 204;
    return 0;
}

static void env_free(rc_em_env *e)
{
    free(e->name);
    free(e->description);
    free(e->scope);
    cJSON_Delete(e->metadata);
    for (size_t i = 0; i < e->npollers; i++)
        free(e->pollers[i].worker_id);
    free(e->pollers);
    free(e);
}

static void session_free(rc_em_session *s)
{
    cJSON_Delete(s->agent);
    cJSON_Delete(s->metadata);
    cJSON_Delete(s->resources);
    cJSON_Delete(s->vault_ids);
    cJSON_Delete(s->budget);
    free(s->title);
    for (size_t i = 0; i < s->nevents; i++) {
        free(s->events[i]->type);
        free(s->events[i]->json);
        free(s->events[i]);
    }
    free(s->events);
    free(s->calls);
    rc_emplay_free(s->play);
    free(s);
}

static void work_free(rc_em_work *w)
{
    free(w->token);
    free(w->secret);
    cJSON_Delete(w->metadata);
    free(w);
}

void rc_emstore_free(rc_em *em)
{
    for (size_t i = 0; i < em->nenvs; i++)
        env_free(em->envs[i]);
    for (size_t i = 0; i < em->nagents; i++) {
        for (size_t v = 0; v < em->agents[i]->nversions; v++)
            cJSON_Delete(em->agents[i]->versions[v]);
        free(em->agents[i]->versions);
        free(em->agents[i]);
    }
    for (size_t i = 0; i < em->nsessions; i++)
        session_free(em->sessions[i]);
    for (size_t i = 0; i < em->nworks; i++)
        work_free(em->works[i]);
    for (size_t i = 0; i < em->ncreds; i++) {
        free(em->creds[i]->value);
        free(em->creds[i]);
    }
    rc_emskills_free(em);
    rc_emmem_free(em);
    for (size_t i = 0; i < em->nscenarios; i++) {
        free(em->scenarios[i].name);
        rc_emstore_scenario_unref(em->scenarios[i].s);
    }
    if (em->reqlog) {
        for (size_t i = 0; i < RC_EM_REQLOG_MAX; i++) {
            rc_em_reqlog *l = &em->reqlog[i];
            free(l->method);
            free(l->path);
            free(l->query);
            free(l->headers);
            free(l->safe);
            free(l->body);
        }
    }
    for (size_t i = 0; i < em->faults.n_http_error_paths; i++)
        free(em->faults.http_error_paths[i]);
    free(em->faults.http_error_paths);
    free(em->reqlog);
    free(em->envs);
    free(em->agents);
    free(em->sessions);
    free(em->works);
    free(em->creds);
    free(em->scenarios);
    free(em->api_key.value);
    free(em->state_api_key);
    free(em->state_webhook_secret);
}

/* ---- environments ---- */

rc_em_env *rc_emstore_env_find(rc_em *em, const char *id)
{
    for (size_t i = 0; i < em->nenvs; i++)
        if (!em->envs[i]->deleted && strcmp(em->envs[i]->id, id) == 0)
            return em->envs[i];
    return NULL;
}

int rc_emstore_env_add(rc_em *em, rc_em_env *env, rc_error *err)
{
    int r = grow((void **)&em->envs, em->nenvs, &em->envs_cap, sizeof(*em->envs), err);
    if (r < 0)
        return r;
    em->envs[em->nenvs++] = env;
    return 0;
}

cJSON *rc_emstore_env_json(const rc_em_env *e)
{
    cJSON *o = cJSON_CreateObject(), *cfg;
    cJSON_AddStringToObject(o, "type", "environment");
    cJSON_AddStringToObject(o, "id", e->id);
    cJSON_AddStringToObject(o, "name", e->name);
    if (e->description)
        cJSON_AddStringToObject(o, "description", e->description);
    else
        cJSON_AddNullToObject(o, "description");
    cfg = cJSON_AddObjectToObject(o, "config");
    cJSON_AddStringToObject(cfg, "type", "self_hosted");
    cJSON_AddItemToObject(o, "metadata", cJSON_Duplicate(e->metadata, 1));
    cJSON_AddStringToObject(o, "scope", e->scope);
    cJSON_AddItemToObject(o, "created_at", rc_emutil_ts(e->created_us));
    cJSON_AddItemToObject(o, "updated_at", rc_emutil_ts(e->updated_us));
    cJSON_AddItemToObject(o, "archived_at", rc_emutil_ts(e->archived_us));
    return o;
}

void rc_emstore_poller_seen(rc_em_env *env, const char *worker_id, int64_t now_ms)
{
    rc_em_poller *p;
    for (size_t i = 0; i < env->npollers; i++) {
        if (strcmp(env->pollers[i].worker_id, worker_id) == 0) {
            env->pollers[i].last_ms = now_ms;
            return;
        }
    }
    /* Replace the stalest entry once 256 are known; this only feeds a count. */
    if (env->npollers >= 256) {
        size_t oldest = 0;
        for (size_t i = 1; i < env->npollers; i++)
            if (env->pollers[i].last_ms < env->pollers[oldest].last_ms)
                oldest = i;
        free(env->pollers[oldest].worker_id);
        env->pollers[oldest].worker_id = strdup(worker_id);
        env->pollers[oldest].last_ms = now_ms;
        return;
    }
    p = realloc(env->pollers, (env->npollers + 1) * sizeof(*p));
    if (!p)
        return;
    env->pollers = p;
    p[env->npollers].worker_id = strdup(worker_id);
    if (!p[env->npollers].worker_id)
        return;
    p[env->npollers].last_ms = now_ms;
    env->npollers++;
}

/* ---- agents ---- */

rc_em_agent *rc_emstore_agent_find(rc_em *em, const char *id)
{
    for (size_t i = 0; i < em->nagents; i++)
        if (strcmp(em->agents[i]->id, id) == 0)
            return em->agents[i];
    return NULL;
}

int rc_emstore_agent_add(rc_em *em, rc_em_agent *a, rc_error *err)
{
    int r = grow((void **)&em->agents, em->nagents, &em->agents_cap, sizeof(*em->agents), err);
    if (r < 0)
        return r;
    em->agents[em->nagents++] = a;
    return 0;
}

/* ---- sessions and events ---- */

rc_em_session *rc_emstore_session_find_any(rc_em *em, const char *id)
{
    for (size_t i = 0; i < em->nsessions; i++)
        if (strcmp(em->sessions[i]->id, id) == 0)
            return em->sessions[i];
    return NULL;
}

rc_em_session *rc_emstore_session_find(rc_em *em, const char *id)
{
    rc_em_session *s = rc_emstore_session_find_any(em, id);
    return s && !s->deleted ? s : NULL;
}

int rc_emstore_session_add(rc_em *em, rc_em_session *s, rc_error *err)
{
    int r =
        grow((void **)&em->sessions, em->nsessions, &em->sessions_cap, sizeof(*em->sessions), err);
    if (r < 0)
        return r;
    em->sessions[em->nsessions++] = s;
    return 0;
}

const char *rc_emstore_status_name(enum rc_em_session_status st)
{
    switch (st) {
    case RC_EM_SESSION_IDLE:
        return "idle";
    case RC_EM_SESSION_RUNNING:
        return "running";
    case RC_EM_SESSION_RESCHEDULING:
        return "rescheduling";
    case RC_EM_SESSION_TERMINATED:
        return "terminated";
    }
    return "idle";
}

static cJSON *dup_or(const cJSON *j, cJSON *fallback)
{
    if (j) {
        cJSON_Delete(fallback);
        return cJSON_Duplicate(j, 1);
    }
    return fallback;
}

cJSON *rc_emstore_session_json(const rc_em_session *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "session");
    cJSON_AddStringToObject(o, "id", s->id);
    cJSON_AddStringToObject(o, "status", rc_emstore_status_name(s->status));
    cJSON_AddStringToObject(o, "environment_id", s->env->id);
    if (s->title)
        cJSON_AddStringToObject(o, "title", s->title);
    else
        cJSON_AddNullToObject(o, "title");
    cJSON_AddItemToObject(o, "metadata", cJSON_Duplicate(s->metadata, 1));
    cJSON_AddItemToObject(o, "resources", dup_or(s->resources, cJSON_CreateArray()));
    cJSON_AddItemToObject(o, "vault_ids", dup_or(s->vault_ids, cJSON_CreateArray()));
    cJSON_AddItemToObject(o, "agent", cJSON_Duplicate(s->agent, 1));
    cJSON_AddItemToObject(o, "budget", dup_or(s->budget, cJSON_CreateNull()));
    cJSON_AddItemToObject(o, "outcome_evaluations", cJSON_CreateArray());
    cJSON_AddItemToObject(o, "stats", cJSON_CreateObject());
    cJSON_AddItemToObject(o, "usage", cJSON_CreateObject());
    cJSON_AddItemToObject(o, "created_at", rc_emutil_ts(s->created_us));
    cJSON_AddItemToObject(o, "updated_at", rc_emutil_ts(s->updated_us));
    cJSON_AddItemToObject(o, "archived_at", rc_emutil_ts(s->archived_us));
    return o;
}

/* The stored form: type and id first, then the given members, then processed_at. */
static cJSON *event_stored_form(cJSON *ev, const char *id, int64_t processed_us)
{
    cJSON *out = cJSON_CreateObject(), *it, *next;
    cJSON *type = cJSON_DetachItemFromObjectCaseSensitive(ev, "type");
    cJSON_AddItemToObject(out, "type", type);
    cJSON_AddStringToObject(out, "id", id);
    for (it = ev->child; it; it = next) {
        next = it->next;
        if (strcmp(it->string, "id") == 0 || strcmp(it->string, "processed_at") == 0)
            continue;
        cJSON_AddItemToObject(out, it->string, cJSON_DetachItemViaPointer(ev, it));
    }
    cJSON_AddItemToObject(out, "processed_at", rc_emutil_ts(processed_us));
    return out;
}

int rc_emstore_event_append(rc_em *em, rc_em_session *s, cJSON *ev, bool processed_null,
                            rc_em_event **ret_ev, rc_error *err)
{
    _cleanup_free_ rc_em_event *e = calloc(1, sizeof(*e));
    cJSON *stored;
    const char *type = rc_emutil_jstr(ev, "type");
    int r;

    if (!e || !type) {
        cJSON_Delete(ev);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    r = grow((void **)&s->events, s->nevents, &s->events_cap, sizeof(*s->events), err);
    if (r < 0 || (r = rc_emutil_random_id("sevt_", e->id, sizeof(e->id), err)) < 0) {
        cJSON_Delete(ev);
        return r;
    }
    e->processed_us = processed_null ? 0 : rc_emutil_now_us();
    e->type = strdup(type);
    stored = event_stored_form(ev, e->id, e->processed_us);
    cJSON_Delete(ev);
    e->json = rc_emutil_print(stored);
    cJSON_Delete(stored);
    if (!e->type || !e->json) {
        free(e->type);
        free(e->json);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    e->json_len = strlen(e->json);
    s->events[s->nevents++] = e;
    s->updated_us = rc_emutil_now_us();
    rc_emsse_fanout(em, s, e);
    if (ret_ev)
        *ret_ev = e;
    e = NULL;
    return 0;
}

rc_em_call *rc_emstore_call_find(rc_em_session *s, const char *id)
{
    for (size_t i = 0; i < s->ncalls; i++)
        if (strcmp(s->calls[i].id, id) == 0)
            return &s->calls[i];
    return NULL;
}

int rc_emstore_call_add(rc_em_session *s, const char *id, bool custom, bool ask, rc_error *err)
{
    int r = grow((void **)&s->calls, s->ncalls, &s->calls_cap, sizeof(*s->calls), err);
    rc_em_call *c;
    if (r < 0)
        return r;
    c = &s->calls[s->ncalls++];
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->custom = custom;
    c->ask = ask;
    return 0;
}

static int append_simple(rc_em *em, rc_em_session *s, const char *type, rc_error *err)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", type);
    return rc_emstore_event_append(em, s, ev, false, NULL, err);
}

int rc_emstore_session_running(rc_em *em, rc_em_session *s, rc_error *err)
{
    int r;
    if (s->status == RC_EM_SESSION_RUNNING || s->status == RC_EM_SESSION_TERMINATED)
        return 0;
    s->status = RC_EM_SESSION_RUNNING;
    r = append_simple(em, s, "session.status_running", err);
    if (r < 0)
        return r;
    rc_emhook_run_started(em, s);
    return 0;
}

int rc_emstore_session_idle(rc_em *em, rc_em_session *s, bool force_end_turn, rc_error *err)
{
    cJSON *ev, *reason, *ids = cJSON_CreateArray();
    size_t outstanding = 0;

    if (s->status == RC_EM_SESSION_TERMINATED) {
        cJSON_Delete(ids);
        return 0;
    }
    for (size_t i = 0; i < s->ncalls && !force_end_turn; i++) {
        rc_em_call *c = &s->calls[i];
        if (!c->answered && !c->abandoned) {
            cJSON_AddItemToArray(ids, cJSON_CreateString(c->id));
            outstanding++;
        }
    }
    ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "session.status_idle");
    reason = cJSON_AddObjectToObject(ev, "stop_reason");
    if (outstanding) {
        cJSON_AddStringToObject(reason, "type", "requires_action");
        cJSON_AddItemToObject(reason, "event_ids", ids);
    } else {
        cJSON_AddStringToObject(reason, "type", "end_turn");
        cJSON_Delete(ids);
    }
    cJSON_AddNullToObject(ev, "stop_details");
    s->status = RC_EM_SESSION_IDLE;
    return rc_emstore_event_append(em, s, ev, false, NULL, err);
}

int rc_emstore_session_terminate(rc_em *em, rc_em_session *s, rc_error *err)
{
    if (s->status == RC_EM_SESSION_TERMINATED)
        return 0;
    s->status = RC_EM_SESSION_TERMINATED;
    if (!s->archived_us)
        s->archived_us = rc_emutil_now_us();
    return append_simple(em, s, "session.status_terminated", err);
}

int rc_emstore_session_delete(rc_em *em, rc_em_session *s, rc_error *err)
{
    int r = append_simple(em, s, "session.deleted", err);
    if (r < 0)
        return r;
    rc_emsse_close_session(em, s);
    for (size_t i = 0; i < em->nworks; i++) {
        rc_em_work *w = em->works[i];
        if (w->session == s && w->state != RC_EM_WORK_STOPPED)
            rc_emstore_work_stopped(em, w);
    }
    s->deleted = true;
    s->status = RC_EM_SESSION_TERMINATED;
    return 0;
}

int rc_emstore_session_ensure_work(rc_em *em, rc_em_session *s, rc_error *err)
{
    if (s->live || s->env->deleted || s->env->archived_us)
        return 0;
    return rc_emstore_work_create(em, s->env, s, "session", NULL, err);
}

/* ---- work items ---- */

const char *rc_emstore_work_state_name(enum rc_em_work_state st)
{
    static const char *const names[] = {"queued", "starting", "active", "stopping", "stopped"};
    return names[st];
}

int rc_emstore_lease_ttl(const rc_em *em)
{
    if (em->faults.lease_ttl_seconds > 0)
        return (int)em->faults.lease_ttl_seconds;
    return (int)em->cfg.default_ttl_s;
}

rc_em_work *rc_emstore_work_find(rc_em *em, const rc_em_env *env, const char *id)
{
    for (size_t i = 0; i < em->nworks; i++)
        if (em->works[i]->env == env && strcmp(em->works[i]->id, id) == 0)
            return em->works[i];
    return NULL;
}

static int make_secret(rc_em *em, const char *token, char **ret, rc_error *err)
{
    _cleanup_free_ char *json = NULL;
    cJSON *o;

    if (em->faults.secret_mode == 1) {
        *ret = NULL;
        return 0;
    }
    if (em->faults.secret_mode == 2) {
        /* Valid base64url of "not json {": decodes, but is not a JSON object (4.4.3). */
        return rc_base64_encode_alloc("not json {", 10, RC_BASE64_URL | RC_BASE64_NOPAD, ret, err);
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "sessions_token", token);
    cJSON_AddStringToObject(o, "api_base_url", em->base_url);
    json = rc_emutil_print(o);
    cJSON_Delete(o);
    if (!json)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    return rc_base64_encode_alloc(json, strlen(json), RC_BASE64_URL | RC_BASE64_NOPAD, ret, err);
}

int rc_emstore_work_create(rc_em *em, rc_em_env *env, rc_em_session *s, const char *type,
                           rc_em_work **ret, rc_error *err)
{
    _cleanup_free_ rc_em_work *w = calloc(1, sizeof(*w));
    char token[11 + 32 + 1];
    int r;

    if (!w)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    r = grow((void **)&em->works, em->nworks, &em->works_cap, sizeof(*em->works), err);
    if (r < 0)
        return r;
    if ((r = rc_emutil_random_id("work_", w->id, sizeof(w->id), err)) < 0)
        return r;
    memcpy(token, "sk-ant-req-", 11);
    if ((r = rc_emutil_random_base62(token + 11, 32, err)) < 0)
        return r;
    w->env = env;
    w->session = s;
    snprintf(w->data_type, sizeof(w->data_type), "%s", type);
    if (s)
        snprintf(w->data_id, sizeof(w->data_id), "%s", s->id);
    else if ((r = rc_emutil_random_id("hc_", w->data_id, sizeof(w->data_id), err)) < 0)
        return r;
    w->state = RC_EM_WORK_QUEUED;
    w->token = strdup(token);
    w->metadata = cJSON_CreateObject();
    if (!w->token || !w->metadata) {
        free(w->token);
        cJSON_Delete(w->metadata);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    if ((r = make_secret(em, token, &w->secret, err)) < 0 ||
        (r = rc_emstore_cred_add(em, RC_EM_CRED_TOKEN, env, w, token, NULL, err)) < 0) {
        free(w->token);
        free(w->secret);
        cJSON_Delete(w->metadata);
        return r;
    }
    explicit_bzero(token, sizeof(token));
    w->created_us = rc_emutil_now_us();
    w->queued_seq = ++em->queue_seq;
    w->ttl_s = rc_emstore_lease_ttl(em);
    em->works[em->nworks++] = w;
    if (s)
        s->live = w;
    rc_log_info("work %s queued for %s %s", w->id, w->data_type, w->data_id);
    rc_emsrv_wake_pollers(em, env);
    if (ret)
        *ret = w;
    w = NULL;
    return 0;
}

cJSON *rc_emstore_work_json(const rc_em_work *w, bool with_secret)
{
    cJSON *o = cJSON_CreateObject(), *data;
    cJSON_AddStringToObject(o, "type", "work");
    cJSON_AddStringToObject(o, "id", w->id);
    cJSON_AddStringToObject(o, "environment_id", w->env->id);
    data = cJSON_AddObjectToObject(o, "data");
    cJSON_AddStringToObject(data, "type", w->data_type);
    cJSON_AddStringToObject(data, "id", w->data_id);
    cJSON_AddStringToObject(o, "state", rc_emstore_work_state_name(w->state));
    if (with_secret && w->secret)
        cJSON_AddStringToObject(o, "secret", w->secret);
    else
        cJSON_AddNullToObject(o, "secret");
    cJSON_AddItemToObject(o, "metadata", cJSON_Duplicate(w->metadata, 1));
    cJSON_AddItemToObject(o, "created_at", rc_emutil_ts(w->created_us));
    cJSON_AddItemToObject(o, "acknowledged_at", rc_emutil_ts(w->acked_us));
    cJSON_AddItemToObject(o, "started_at", rc_emutil_ts(w->started_us));
    cJSON_AddItemToObject(o, "latest_heartbeat_at", rc_emutil_ts(w->latest_hb_us));
    cJSON_AddItemToObject(o, "stop_requested_at", rc_emutil_ts(w->stop_req_us));
    cJSON_AddItemToObject(o, "stopped_at", rc_emutil_ts(w->stopped_us));
    return o;
}

rc_em_work *rc_emstore_work_take(rc_em *em, rc_em_env *env, long reclaim_ms)
{
    int64_t now = rc_emutil_mono_ms();
    rc_em_work *best = NULL;

    for (size_t i = 0; i < em->nworks; i++) {
        rc_em_work *w = em->works[i];
        if (w->env != env || w->state != RC_EM_WORK_QUEUED)
            continue;
        if (w->session && w->session->deleted) {
            /* A stale entry: consume it silently, never a 404 (5.2.7). */
            rc_emstore_work_stopped(em, w);
            continue;
        }
        if (w->pending_ms && now - w->pending_ms < reclaim_ms)
            continue;
        if (!best || w->queued_seq < best->queued_seq)
            best = w;
    }
    if (best)
        best->pending_ms = now ? now : 1;
    return best;
}

void rc_emstore_work_requeue(rc_em *em, rc_em_work *w)
{
    w->state = RC_EM_WORK_QUEUED;
    w->last_hb[0] = '\0';
    w->lease_until_ms = 0;
    w->pending_ms = 0;
    w->queued_seq = ++em->queue_seq;
    rc_log_info("work %s re-queued", w->id);
    rc_emsrv_wake_pollers(em, w->env);
}

void rc_emstore_work_stopped(rc_em *em, rc_em_work *w)
{
    (void)em;
    w->state = RC_EM_WORK_STOPPED;
    w->stopped_us = rc_emutil_now_us();
    w->pending_ms = 0;
    w->lease_until_ms = 0;
    if (w->session && w->session->live == w)
        w->session->live = NULL;
}

void rc_emstore_lease_tick(rc_em *em, int64_t now_ms)
{
    for (size_t i = 0; i < em->nworks; i++) {
        rc_em_work *w = em->works[i];
        if (!w->lease_until_ms || now_ms < w->lease_until_ms)
            continue;
        if (w->state == RC_EM_WORK_STARTING || w->state == RC_EM_WORK_ACTIVE) {
            rc_log_info("work %s: lease expired", w->id);
            rc_emstore_work_requeue(em, w);
        } else if (w->state == RC_EM_WORK_STOPPING) {
            /* Nobody is left to confirm the graceful stop. */
            rc_log_info("work %s: lease expired while stopping", w->id);
            rc_emstore_work_stopped(em, w);
        }
    }
}

void rc_emstore_heartbeat_stamp(rc_em *em, char out[40], int64_t *ret_us)
{
    int64_t us = rc_emutil_now_us();
    if (us <= em->last_hb_us)
        us = em->last_hb_us + 1;
    em->last_hb_us = us;
    rc_emutil_rfc3339(us, out);
    *ret_us = us;
}

/* ---- credentials ---- */

rc_em_cred *rc_emstore_cred_lookup(rc_em *em, const char *value)
{
    rc_em_cred *found = NULL;
    /* Compare against every credential (no early exit) in constant time per value. */
    if (em->api_key.value && rc_emutil_const_eq(em->api_key.value, value))
        found = &em->api_key;
    for (size_t i = 0; i < em->ncreds; i++)
        if (rc_emutil_const_eq(em->creds[i]->value, value))
            found = em->creds[i];
    return found;
}

int rc_emstore_cred_add(rc_em *em, int kind, rc_em_env *env, rc_em_work *w, const char *value,
                        rc_em_cred **ret, rc_error *err)
{
    rc_em_cred *c;
    int r = grow((void **)&em->creds, em->ncreds, &em->creds_cap, sizeof(*em->creds), err);
    if (r < 0)
        return r;
    c = calloc(1, sizeof(*c));
    if (!c || !(c->value = strdup(value))) {
        free(c);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    c->kind = kind;
    c->env = env;
    c->work = w;
    em->creds[em->ncreds++] = c;
    if (ret)
        *ret = c;
    return 0;
}

int rc_emstore_envkey_mint(rc_em *em, rc_em_env *env, char **ret_key, rc_error *err)
{
    char key[13 + 40 + 1];
    char *dup;
    int r;
    memcpy(key, "sk-ant-oat01-", 13);
    if ((r = rc_emutil_random_base62(key + 13, 40, err)) < 0)
        return r;
    if ((r = rc_emstore_cred_add(em, RC_EM_CRED_ENV_KEY, env, NULL, key, NULL, err)) < 0)
        return r;
    dup = strdup(key);
    explicit_bzero(key, sizeof(key));
    if (!dup)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    *ret_key = dup;
    return 0;
}

/* ---- scenarios ---- */

rc_em_scenario *rc_emstore_scenario_find(rc_em *em, const char *name)
{
    for (size_t i = 0; i < em->nscenarios; i++)
        if (strcmp(em->scenarios[i].name, name) == 0)
            return em->scenarios[i].s;
    return NULL;
}

void rc_emstore_scenario_unref(rc_em_scenario *s)
{
    if (s && --s->refs == 0) {
        rc_sc_free(s->sc);
        free(s);
    }
}

int rc_emstore_scenario_put(rc_em *em, rc_sc_scenario *sc, rc_error *err)
{
    rc_em_scenario *s = calloc(1, sizeof(*s));
    int r;
    if (!s) {
        rc_sc_free(sc);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    s->sc = sc;
    s->refs = 1;
    for (size_t i = 0; i < em->nscenarios; i++) {
        if (strcmp(em->scenarios[i].name, sc->name) == 0) {
            rc_emstore_scenario_unref(em->scenarios[i].s);
            em->scenarios[i].s = s;
            return 0;
        }
    }
    r = grow((void **)&em->scenarios, em->nscenarios, &em->scenarios_cap, sizeof(*em->scenarios),
             err);
    if (r < 0 || !(em->scenarios[em->nscenarios].name = strdup(sc->name))) {
        rc_emstore_scenario_unref(s);
        return r < 0 ? r : rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    em->scenarios[em->nscenarios++].s = s;
    return 0;
}
