/* routes_env.c - /v1/environments and the work API under it (protocol.md 5, 6, 19.1).
 *
 * The work handlers implement the state machine of section 6 exactly: poll hands out (pending,
 * reclaimable after reclaim_older_than_ms), ack moves queued -> starting and starts the lease,
 * heartbeat compares the echoed stamp (412 with current_state on mismatch), stop moves to
 * stopping/stopped (409 with x-should-retry: false when already there). Every check happens
 * before the first change, so a refused request leaves the item as it was. */
#include "server.h"

#include "cleanup.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static bool only_keys(rc_em_ctx *c, const cJSON *o, const char *const *keys)
{
    return rc_emsrv_check_keys(c, o, keys) == 0;
}

static rc_em_env *env_lookup(rc_em_ctx *c)
{
    rc_em_env *env = rc_emstore_env_find(c->em, c->params[0]);
    if (!env) {
        rc_emsrv_error(c, 404, "not_found_error", "environment_not_found",
                       "environment %s not found", c->params[0]);
        return NULL;
    }
    if (rc_emsrv_scope_env(c, env) < 0)
        return NULL;
    return env;
}

/* For work calls: also refuse an archived environment (19.1.2). */
static rc_em_env *work_env(rc_em_ctx *c)
{
    rc_em_env *env = env_lookup(c);
    if (env && env->archived_us) {
        rc_emsrv_error(c, 400, "invalid_request_error", "environment_archived",
                       "environment %s is archived", env->id);
        return NULL;
    }
    return env;
}

static rc_em_work *work_lookup(rc_em_ctx *c, bool refuse_archived)
{
    rc_em_env *env = refuse_archived ? work_env(c) : env_lookup(c);
    rc_em_work *w;
    if (!env)
        return NULL;
    w = rc_emstore_work_find(c->em, env, c->params[1]);
    if (!w) {
        rc_emsrv_notfound(c, "work item %s not found", c->params[1]);
        return NULL;
    }
    if (rc_emsrv_scope_work(c, w) < 0)
        return NULL;
    return w;
}

static int check_opt_string(rc_em_ctx *c, const cJSON *o, const char *key, size_t max,
                            bool nullable)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || (nullable && cJSON_IsNull(v)))
        return 0;
    if (!cJSON_IsString(v)) {
        rc_emsrv_bad(c, "%s: must be a string", key);
        return -1;
    }
    if (strlen(v->valuestring) > max) {
        rc_emsrv_bad(c, "%s: must be at most %zu characters", key, max);
        return -1;
    }
    return 0;
}

static int check_config(rc_em_ctx *c, const cJSON *cfg)
{
    const char *type;
    if (!cfg)
        return 0;
    if (!cJSON_IsObject(cfg)) {
        rc_emsrv_bad(c, "config: must be an object");
        return -1;
    }
    type = rc_emutil_jstr(cfg, "type");
    if (!type) {
        rc_emsrv_bad(c, "config.type: required");
        return -1;
    }
    if (strcmp(type, "cloud") == 0) {
        rc_emsrv_bad(c, "config.type: the emulator supports only self_hosted environments");
        return -1;
    }
    if (strcmp(type, "self_hosted") != 0) {
        rc_emsrv_bad(c, "config.type: must be one of self_hosted, cloud");
        return -1;
    }
    return 0;
}

static int check_scope(rc_em_ctx *c, const cJSON *o)
{
    const char *scope;
    if (!cJSON_GetObjectItemCaseSensitive(o, "scope"))
        return 0;
    scope = rc_emutil_jstr(o, "scope");
    if (!scope || (strcmp(scope, "organization") != 0 && strcmp(scope, "account") != 0)) {
        rc_emsrv_bad(c, "scope: must be one of organization, account");
        return -1;
    }
    return 0;
}

static char *strdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- environments ---- */

int rc_emroute_env_create(rc_em_ctx *c)
{
    static const char *const keys[] = {"name", "config", "description", "metadata", "scope", NULL};
    const cJSON *b = c->body, *meta;
    const char *name;
    rc_em_env *env;
    rc_error err = {0};

    if (!b)
        return rc_emsrv_bad(c, "name: required");
    if (!only_keys(c, b, keys))
        return 0;
    name = rc_emutil_jstr(b, "name");
    if (!name || !*name || strlen(name) > 256)
        return rc_emsrv_bad(c, "name: required, a string of 1 to 256 characters");
    if (check_opt_string(c, b, "description", 4096, true) < 0 ||
        check_config(c, cJSON_GetObjectItemCaseSensitive(b, "config")) < 0 || check_scope(c, b) < 0)
        return 0;
    meta = cJSON_GetObjectItemCaseSensitive(b, "metadata");
    if (meta && rc_emutil_check_metadata(meta, false, &err) < 0)
        return rc_emsrv_error(c, 400, "invalid_request_error", "invalid_metadata", "%s", err.msg);
    env = calloc(1, sizeof(*env));
    if (!env || rc_emutil_random_id("env_", env->id, sizeof(env->id), &err) < 0) {
        free(env);
        return rc_emsrv_internal(c, &err);
    }
    env->name = strdup(name);
    env->description = strdup_or_null(rc_emutil_jstr(b, "description"));
    env->scope = strdup(rc_emutil_jstr(b, "scope") ? rc_emutil_jstr(b, "scope") : "organization");
    env->metadata = meta ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject();
    env->created_us = env->updated_us = rc_emutil_now_us();
    if (!env->name || !env->scope || !env->metadata || rc_emstore_env_add(c->em, env, &err) < 0) {
        free(env->name);
        free(env->description);
        free(env->scope);
        cJSON_Delete(env->metadata);
        free(env);
        return rc_emsrv_internal(c, &err);
    }
    rc_log_info("environment %s created", env->id);
    rc_emstate_save(c->em, NULL);
    return rc_emsrv_json(c, 200, rc_emstore_env_json(env));
}

int rc_emroute_env_list(rc_em_ctx *c)
{
    const char *ia = rc_emsrv_query(c, "include_archived");
    bool include_archived = ia && strcmp(ia, "true") == 0;
    _cleanup_free_ rc_em_env **sel = calloc(c->em->nenvs + 1, sizeof(*sel));
    size_t n = 0, start, count;
    char *next;
    cJSON *items;

    if (ia && strcmp(ia, "true") != 0 && strcmp(ia, "false") != 0)
        return rc_emsrv_bad(c, "include_archived: must be true or false");
    if (!sel)
        return rc_emsrv_internal(c, NULL);
    for (size_t i = 0; i < c->em->nenvs; i++) {
        rc_em_env *e = c->em->envs[i];
        if (!e->deleted && (include_archived || !e->archived_us))
            sel[n++] = e;
    }
    if (rc_emsrv_page(c, n, &start, &count, &next) < 0)
        return 0;
    items = cJSON_CreateArray();
    for (size_t i = start; i < start + count; i++)
        cJSON_AddItemToArray(items, rc_emstore_env_json(sel[i]));
    return rc_emsrv_page_json(c, items, next);
}

int rc_emroute_env_get(rc_em_ctx *c)
{
    rc_em_env *env = env_lookup(c);
    if (!env)
        return 0;
    return rc_emsrv_json(c, 200, rc_emstore_env_json(env));
}

int rc_emroute_env_update(rc_em_ctx *c)
{
    static const char *const keys[] = {"name", "config", "description", "metadata", "scope", NULL};
    rc_em_env *env = env_lookup(c);
    const cJSON *b = c->body, *meta, *cfg;
    const char *name;
    rc_error err = {0};

    if (!env || !only_keys(c, b, keys))
        return 0;
    if (!b)
        return rc_emsrv_json(c, 200, rc_emstore_env_json(env));
    name = rc_emutil_jstr(b, "name");
    if (cJSON_GetObjectItemCaseSensitive(b, "name") && (!name || !*name || strlen(name) > 256))
        return rc_emsrv_bad(c, "name: must be a string of 1 to 256 characters");
    cfg = cJSON_GetObjectItemCaseSensitive(b, "config");
    if (cfg && cJSON_IsObject(cfg) && rc_emutil_jstr(cfg, "type") &&
        strcmp(rc_emutil_jstr(cfg, "type"), "self_hosted") != 0)
        return rc_emsrv_error(c, 400, "invalid_request_error", "invalid_config_type_change",
                              "config.type cannot be changed");
    if (check_opt_string(c, b, "description", 4096, true) < 0 || check_config(c, cfg) < 0 ||
        check_scope(c, b) < 0)
        return 0;
    meta = cJSON_GetObjectItemCaseSensitive(b, "metadata");
    if (meta && rc_emutil_check_metadata(meta, true, &err) < 0)
        return rc_emsrv_error(c, 400, "invalid_request_error", "invalid_metadata", "%s", err.msg);
    if (name) {
        char *dup = strdup(name);
        if (!dup)
            return rc_emsrv_internal(c, NULL);
        free(env->name);
        env->name = dup;
    }
    if (cJSON_GetObjectItemCaseSensitive(b, "description")) {
        free(env->description);
        env->description = strdup_or_null(rc_emutil_jstr(b, "description"));
    }
    if (rc_emutil_jstr(b, "scope")) {
        char *dup = strdup(rc_emutil_jstr(b, "scope"));
        if (dup) {
            free(env->scope);
            env->scope = dup;
        }
    }
    if (meta)
        rc_emutil_merge_metadata(env->metadata, meta);
    env->updated_us = rc_emutil_now_us();
    rc_emstate_save(c->em, NULL);
    return rc_emsrv_json(c, 200, rc_emstore_env_json(env));
}

int rc_emroute_env_archive(rc_em_ctx *c)
{
    rc_em_env *env = env_lookup(c);
    if (!env)
        return 0;
    if (!env->archived_us)
        env->archived_us = env->updated_us = rc_emutil_now_us();
    rc_emstate_save(c->em, NULL);
    return rc_emsrv_json(c, 200, rc_emstore_env_json(env));
}

int rc_emroute_env_delete(rc_em_ctx *c)
{
    rc_em_env *env = env_lookup(c);
    cJSON *o;
    if (!env)
        return 0;
    for (size_t i = 0; i < c->em->nworks; i++)
        if (c->em->works[i]->env == env && c->em->works[i]->state != RC_EM_WORK_STOPPED)
            rc_emstore_work_stopped(c->em, c->em->works[i]);
    env->deleted = true;
    rc_emstate_save(c->em, NULL);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", env->id);
    cJSON_AddStringToObject(o, "type", "environment_deleted");
    return rc_emsrv_json(c, 200, o);
}

/* ---- work ---- */

static int empty_poll(rc_em_ctx *c)
{
    /* 5.2.6: 204 by default; the other two forms the SDK accepts on request (faults). */
    switch (c->em->faults.empty_poll) {
    case 1:
        return rc_emsrv_json(c, 200, cJSON_CreateNull());
    case 2:
        rc_emsrv_empty(c, 200);
        c->resp.content_type = "application/json";
        return 0;
    default:
        return rc_emsrv_empty(c, 204);
    }
}

int rc_emroute_work_poll(rc_em_ctx *c)
{
    rc_em_env *env = work_env(c);
    long block_ms = 0, reclaim_ms = RC_EM_RECLAIM_DEFAULT_MS;
    const char *worker;
    int has_block;
    rc_em_work *w;
    int64_t now;

    if (!env)
        return 0;
    if (c->auth.kind == RC_EM_CRED_TOKEN)
        return rc_emsrv_forbidden(c, "a sessions token may not poll");
    if ((has_block = rc_emsrv_query_long(c, "block_ms", 1, 999, &block_ms)) < 0 ||
        rc_emsrv_query_long(c, "reclaim_older_than_ms", 1, 86400000L * 365, &reclaim_ms) < 0)
        return 0;
    now = rc_emutil_mono_ms();
    worker = rc_emsrv_header(c, "anthropic-worker-id");
    if (worker && *worker)
        rc_emstore_poller_seen(env, worker, now);
    w = rc_emstore_work_take(c->em, env, reclaim_ms);
    if (w) {
        rc_log_info("work %s handed out", w->id);
        return rc_emsrv_json(c, 200, rc_emstore_work_json(w, true));
    }
    if (has_block > 0) {
        if (!c->req->poll_deadline_ms)
            c->req->poll_deadline_ms = now + block_ms;
        if (now < c->req->poll_deadline_ms) {
            rc_emsrv_park(c, c->req->poll_deadline_ms, env);
            return 0;
        }
    }
    return empty_poll(c);
}

int rc_emroute_work_stats(rc_em_ctx *c)
{
    rc_em_env *env = env_lookup(c);
    int64_t now = rc_emutil_mono_ms(), oldest = 0;
    long depth = 0, pending = 0, polling = 0;
    cJSON *o;

    if (!env)
        return 0;
    for (size_t i = 0; i < c->em->nworks; i++) {
        rc_em_work *w = c->em->works[i];
        if (w->env != env || w->state != RC_EM_WORK_QUEUED)
            continue;
        if (w->pending_ms && now - w->pending_ms < RC_EM_RECLAIM_DEFAULT_MS)
            pending++;
        else
            depth++;
        if (!oldest || w->created_us < oldest)
            oldest = w->created_us;
    }
    for (size_t i = 0; i < env->npollers; i++)
        if (now - env->pollers[i].last_ms <= RC_EM_POLLING_WINDOW_MS)
            polling++;
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "work_queue_stats");
    cJSON_AddNumberToObject(o, "depth", (double)depth);
    cJSON_AddNumberToObject(o, "pending", (double)pending);
    cJSON_AddItemToObject(o, "oldest_queued_at", rc_emutil_ts(oldest));
    cJSON_AddNumberToObject(o, "workers_polling", (double)polling);
    return rc_emsrv_json(c, 200, o);
}

int rc_emroute_work_list(rc_em_ctx *c)
{
    rc_em_env *env = env_lookup(c);
    _cleanup_free_ rc_em_work **sel = NULL;
    size_t n = 0, start, count;
    char *next;
    cJSON *items;

    if (!env)
        return 0;
    if (c->auth.kind == RC_EM_CRED_TOKEN)
        return rc_emsrv_forbidden(c, "a sessions token may not list work");
    sel = calloc(c->em->nworks + 1, sizeof(*sel));
    if (!sel)
        return rc_emsrv_internal(c, NULL);
    for (size_t i = 0; i < c->em->nworks; i++)
        if (c->em->works[i]->env == env)
            sel[n++] = c->em->works[i];
    if (rc_emsrv_page(c, n, &start, &count, &next) < 0)
        return 0;
    items = cJSON_CreateArray();
    for (size_t i = start; i < start + count; i++)
        cJSON_AddItemToArray(items, rc_emstore_work_json(sel[i], false));
    return rc_emsrv_page_json(c, items, next);
}

int rc_emroute_work_get(rc_em_ctx *c)
{
    rc_em_work *w = work_lookup(c, false);
    if (!w)
        return 0;
    return rc_emsrv_json(c, 200, rc_emstore_work_json(w, false));
}

int rc_emroute_work_update(rc_em_ctx *c)
{
    static const char *const keys[] = {"metadata", NULL};
    rc_em_work *w = work_lookup(c, false);
    const cJSON *meta;
    rc_error err = {0};

    if (!w || !only_keys(c, c->body, keys))
        return 0;
    meta = c->body ? cJSON_GetObjectItemCaseSensitive(c->body, "metadata") : NULL;
    if (meta && !cJSON_IsNull(meta)) {
        if (rc_emutil_check_metadata(meta, true, &err) < 0)
            return rc_emsrv_error(c, 400, "invalid_request_error", "invalid_metadata", "%s",
                                  err.msg);
        rc_emutil_merge_metadata(w->metadata, meta);
    }
    return rc_emsrv_json(c, 200, rc_emstore_work_json(w, false));
}

int rc_emroute_work_ack(rc_em_ctx *c)
{
    rc_em_work *w = work_lookup(c, true);
    if (!w)
        return 0;
    if (w->state != RC_EM_WORK_QUEUED)
        return rc_emsrv_error(c, 409, "conflict_error", NULL,
                              "work item %s cannot be acknowledged: it is %s", w->id,
                              rc_emstore_work_state_name(w->state));
    w->state = RC_EM_WORK_STARTING;
    w->acked_us = rc_emutil_now_us();
    w->pending_ms = 0;
    w->ttl_s = rc_emstore_lease_ttl(c->em);
    /* 6.3.2: the lease starts at the ack. */
    w->lease_until_ms = rc_emutil_mono_ms() + (int64_t)w->ttl_s * 1000;
    rc_log_info("work %s acknowledged", w->id);
    return rc_emsrv_json(c, 200, rc_emstore_work_json(w, false));
}

static cJSON *heartbeat_json(const rc_em_work *w, bool extended)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "work_heartbeat");
    cJSON_AddStringToObject(o, "last_heartbeat", w->last_hb);
    cJSON_AddBoolToObject(o, "lease_extended", extended);
    cJSON_AddStringToObject(o, "state", rc_emstore_work_state_name(w->state));
    cJSON_AddNumberToObject(o, "ttl_seconds", w->ttl_s);
    return o;
}

/* 5.4.3: 412 with the lease as the server holds it. */
static int heartbeat_412(rc_em_ctx *c, const rc_em_work *w, const char *expected)
{
    char msg[256];
    cJSON *o = cJSON_CreateObject(), *e, *d, *cs;
    snprintf(msg, sizeof(msg), "Heartbeat precondition failed: expected %s, actual was %s",
             expected ? expected : "(none)", w->last_hb[0] ? w->last_hb : "NULL");
    cJSON_AddStringToObject(o, "type", "error");
    e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "type", "invalid_request_error");
    cJSON_AddStringToObject(e, "message", msg);
    d = cJSON_AddObjectToObject(e, "details");
    cJSON_AddStringToObject(d, "error_code", "heartbeat_precondition_failed");
    cs = cJSON_AddObjectToObject(d, "current_state");
    cJSON_AddStringToObject(cs, "state", rc_emstore_work_state_name(w->state));
    if (w->last_hb[0])
        cJSON_AddStringToObject(cs, "last_heartbeat", w->last_hb);
    else
        cJSON_AddNullToObject(cs, "last_heartbeat");
    cJSON_AddBoolToObject(cs, "lease_extended", false);
    cJSON_AddNumberToObject(cs, "ttl_seconds", w->ttl_s);
    cJSON_AddStringToObject(o, "request_id", c->request_id);
    return rc_emsrv_json(c, 412, o);
}

static bool heartbeat_matches(const rc_em_work *w, const char *expected)
{
    if (!expected)
        return true; /* 5.4.5: absent = unconditional */
    if (!w->last_hb[0])
        return strcmp(expected, "NO_HEARTBEAT") == 0;
    return strcmp(expected, w->last_hb) == 0;
}

int rc_emroute_work_heartbeat(rc_em_ctx *c)
{
    rc_em_work *w = work_lookup(c, true);
    const char *expected = rc_emsrv_query(c, "expected_last_heartbeat");
    long desired = 0;
    int has_desired;
    int64_t us;

    if (!w)
        return 0;
    if ((has_desired = rc_emsrv_query_long(c, "desired_ttl_seconds", 1, 86400L * 365, &desired)) <
        0)
        return 0;
    w->heartbeats++;
    switch (w->state) {
    case RC_EM_WORK_STOPPING:
        /* 5.4.4: no comparison; the holder gets a lease to tear down in. */
        w->lease_until_ms = rc_emutil_mono_ms() + (int64_t)w->ttl_s * 1000;
        return rc_emsrv_json(c, 200, heartbeat_json(w, true));
    case RC_EM_WORK_STOPPED:
        return rc_emsrv_json(c, 200, heartbeat_json(w, false));
    case RC_EM_WORK_QUEUED:
        return heartbeat_412(c, w, expected);
    default:
        break;
    }
    if (c->em->faults.heartbeat_412_on > 0 && w->heartbeats == c->em->faults.heartbeat_412_on) {
        rc_log_info("work %s: heartbeat %d answers 412 (fault)", w->id, w->heartbeats);
        rc_emstore_work_requeue(c->em, w);
        return heartbeat_412(c, w, expected);
    }
    if (!heartbeat_matches(w, expected))
        return heartbeat_412(c, w, expected);
    rc_emstore_heartbeat_stamp(c->em, w->last_hb, &us);
    w->latest_hb_us = us;
    if (w->state == RC_EM_WORK_STARTING) {
        w->state = RC_EM_WORK_ACTIVE;
        w->started_us = us;
    }
    w->ttl_s = rc_emstore_lease_ttl(c->em);
    if (has_desired > 0)
        w->ttl_s = (int)(desired < 10 ? 10 : desired > 3600 ? 3600 : desired);
    w->lease_until_ms = rc_emutil_mono_ms() + (int64_t)w->ttl_s * 1000;
    return rc_emsrv_json(c, 200, heartbeat_json(w, true));
}

int rc_emroute_work_stop(rc_em_ctx *c)
{
    rc_em_work *w = work_lookup(c, true);
    const cJSON *force = c->body ? cJSON_GetObjectItemCaseSensitive(c->body, "force") : NULL;
    bool f;

    if (!w)
        return 0;
    if (force && !cJSON_IsBool(force))
        return rc_emsrv_bad(c, "force: must be a boolean");
    f = force && cJSON_IsTrue(force);
    switch (w->state) {
    case RC_EM_WORK_STOPPED:
        return rc_emsrv_error(c, 409, "conflict_error", NULL, "work item %s is already stopped",
                              w->id);
    case RC_EM_WORK_STOPPING:
        if (!f)
            return rc_emsrv_error(c, 409, "conflict_error", NULL,
                                  "work item %s is already stopping", w->id);
        rc_emstore_work_stopped(c->em, w);
        break;
    case RC_EM_WORK_QUEUED:
        rc_emstore_work_stopped(c->em, w);
        break;
    case RC_EM_WORK_STARTING:
    case RC_EM_WORK_ACTIVE:
        if (f) {
            rc_emstore_work_stopped(c->em, w);
        } else {
            w->state = RC_EM_WORK_STOPPING;
            w->stop_req_us = rc_emutil_now_us();
        }
        break;
    }
    if (!w->stop_req_us)
        w->stop_req_us = rc_emutil_now_us();
    rc_log_info("work %s: stop%s -> %s", w->id, f ? " (force)" : "",
                rc_emstore_work_state_name(w->state));
    if (c->em->faults.stop_status == 200)
        return rc_emsrv_json(c, 200, rc_emstore_work_json(w, false));
    return rc_emsrv_empty(c, 204);
}
