/* routes_sessions.c - /v1/sessions (protocol.md 8.1, 19.3): create (queues a work item, plays
 * the scenario named in metadata.scenario), retrieve, list, update, archive, delete.
 *
 * A session holds a snapshot of its agent version; when it plays a scenario whose `agent.tools`
 * are given, those (resolved) tools replace the agent's (scenario.md §2). Its `resources` are
 * memory stores only, resolved by memory.c into the 8.1 shape (name, description, access,
 * mount_path); the list filters on `memory_store_id`. */
#include "server.h"

#include "cleanup.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const create_keys[] = {"agent",     "environment_id", "title",
                                          "metadata",  "resources",      "initial_events",
                                          "vault_ids", "budget",         NULL};

/* The agent version a create request names: an id (latest) or {"type":"agent","id","version"}. */
static const cJSON *resolve_agent(rc_em_ctx *c, const cJSON *ref)
{
    const char *id = cJSON_IsString(ref) ? ref->valuestring : rc_emutil_jstr(ref, "id");
    const cJSON *ver =
        cJSON_IsObject(ref) ? cJSON_GetObjectItemCaseSensitive(ref, "version") : NULL;
    rc_em_agent *a;
    long v;

    if (!id) {
        rc_emsrv_bad(c, "agent: required, an agent id or {\"type\":\"agent\",\"id\":...}");
        return NULL;
    }
    if (ver && (!cJSON_IsNumber(ver) || ver->valuedouble < 1)) {
        rc_emsrv_bad(c, "agent.version: must be a positive integer");
        return NULL;
    }
    a = rc_emstore_agent_find(c->em, id);
    if (!a) {
        rc_emsrv_notfound(c, "agent %s not found", id);
        return NULL;
    }
    v = ver ? (long)ver->valuedouble : (long)a->nversions;
    if (v > (long)a->nversions) {
        rc_emsrv_notfound(c, "agent %s has no version %ld", id, v);
        return NULL;
    }
    return a->versions[v - 1];
}

static cJSON *agent_snapshot(const cJSON *agent, const cJSON *tools)
{
    static const char *const keys[] = {"type",        "id",         "version", "name",
                                       "description", "model",      "system",  "skills",
                                       "mcp_servers", "multiagent", "tools",   NULL};
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; keys[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(agent, keys[i]);
        if (strcmp(keys[i], "tools") == 0 && tools)
            v = tools;
        cJSON_AddItemToObject(o, keys[i], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
    }
    return o;
}

static int check_optional_fields(rc_em_ctx *c, const cJSON *b)
{
    const cJSON *v, *it;
    rc_error err = {0};

    v = cJSON_GetObjectItemCaseSensitive(b, "title");
    if (v && !cJSON_IsString(v) && !cJSON_IsNull(v))
        return rc_emsrv_bad(c, "title: must be a string or null"), -1;
    v = cJSON_GetObjectItemCaseSensitive(b, "metadata");
    if (v && rc_emutil_check_metadata(v, false, &err) < 0)
        return rc_emsrv_bad(c, "%s", err.msg), -1;
    v = cJSON_GetObjectItemCaseSensitive(b, "vault_ids");
    if (v && !cJSON_IsArray(v))
        return rc_emsrv_bad(c, "vault_ids: must be an array of strings"), -1;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it))
            return rc_emsrv_bad(c, "vault_ids: must be an array of strings"), -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(b, "budget");
    if (v && !cJSON_IsObject(v) && !cJSON_IsNull(v))
        return rc_emsrv_bad(c, "budget: must be an object or null"), -1;
    return 0;
}

/* The scenario named by metadata.scenario (NULL and no error when none is named). */
static int find_scenario(rc_em_ctx *c, const cJSON *b, rc_em_scenario **ret, cJSON **ret_tools)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(b, "metadata");
    const char *name = meta ? rc_emutil_jstr(meta, "scenario") : NULL;
    rc_em_scenario *sc;
    char msg[256];

    *ret = NULL;
    *ret_tools = NULL;
    if (!name)
        return 0;
    sc = rc_emstore_scenario_find(c->em, name);
    if (!sc)
        return rc_emsrv_bad(c, "metadata.scenario: no scenario named %s is loaded", name), -1;
    if (sc->sc->agent_tools &&
        rc_emroute_tools_resolve(sc->sc->agent_tools, ret_tools, msg, sizeof(msg)) < 0)
        return rc_emsrv_bad(c, "scenario %s: agent.%s", name, msg), -1;
    *ret = sc;
    return 0;
}

static cJSON *session_metadata(const cJSON *b, const rc_em_scenario *sc)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(b, "metadata"), *it;
    cJSON *out = m ? cJSON_Duplicate(m, 1) : cJSON_CreateObject();
    if (sc && sc->sc->session_metadata) {
        cJSON_ArrayForEach(it, sc->sc->session_metadata)
        {
            if (!cJSON_GetObjectItemCaseSensitive(out, it->string))
                cJSON_AddItemToObject(out, it->string, cJSON_Duplicate(it, 1));
        }
    }
    return out;
}

static rc_em_session *session_new(const cJSON *b, rc_em_env *env, const cJSON *agent, cJSON *tools,
                                  const rc_em_scenario *sc, cJSON **resources, rc_error *err)
{
    rc_em_session *s = calloc(1, sizeof(*s));
    const char *title = rc_emutil_jstr(b, "title");
    const cJSON *v;

    if (!s || rc_emutil_random_id("sesn_", s->id, sizeof(s->id), err) < 0) {
        free(s);
        return NULL;
    }
    s->env = env;
    s->agent = agent_snapshot(agent, tools);
    s->metadata = session_metadata(b, sc);
    s->title = title ? strdup(title) : NULL;
    s->resources = take_ptr(*resources); /* resolved memory_store resources (memory.c) */
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "vault_ids")))
        s->vault_ids = cJSON_Duplicate(v, 1);
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "budget")))
        s->budget = cJSON_Duplicate(v, 1);
    s->status = RC_EM_SESSION_IDLE;
    s->created_us = s->updated_us = rc_emutil_now_us();
    return s;
}

int rc_emroute_session_create(rc_em_ctx *c)
{
    const cJSON *b = c->body, *agent, *initial;
    const char *env_id;
    rc_em_env *env;
    rc_em_scenario *sc;
    cJSON *tools = NULL, *echoes;
    _cleanup_json_ cJSON *resources = NULL;
    rc_em_session *s;
    rc_em_call *calls[64] = {0};
    rc_error err = {0};

    if (!b)
        return rc_emsrv_bad(c, "agent: required");
    if (rc_emsrv_check_keys(c, b, create_keys) < 0)
        return 0;
    if (!cJSON_GetObjectItemCaseSensitive(b, "agent"))
        return rc_emsrv_bad(c, "agent: required");
    env_id = rc_emutil_jstr(b, "environment_id");
    if (!env_id)
        return rc_emsrv_bad(c, "environment_id: required, a string");
    if (check_optional_fields(c, b) < 0)
        return 0;
    /* Self-hosted sessions take only memory stores (19.3), resolved to the 8.1 shape. */
    if (rc_emmem_session_resources(c, cJSON_GetObjectItemCaseSensitive(b, "resources"),
                                   &resources) < 0)
        return 0;
    if (!(agent = resolve_agent(c, cJSON_GetObjectItemCaseSensitive(b, "agent"))))
        return 0;
    env = rc_emstore_env_find(c->em, env_id);
    if (!env)
        return rc_emsrv_error(c, 404, "not_found_error", "environment_not_found",
                              "environment %s not found", env_id);
    if (env->archived_us)
        return rc_emsrv_error(c, 400, "invalid_request_error", "environment_archived",
                              "environment %s is archived", env_id);
    initial = cJSON_GetObjectItemCaseSensitive(b, "initial_events");
    if (initial && rc_emroute_events_check(c, NULL, initial, true, calls) < 0)
        return 0;
    if (find_scenario(c, b, &sc, &tools) < 0)
        return 0;
    /* Everything is checked: from here on the request changes state. */
    s = session_new(b, env, agent, tools, sc, &resources, &err);
    cJSON_Delete(tools);
    if (!s || rc_emstore_session_add(c->em, s, &err) < 0) {
        if (s) {
            cJSON_Delete(s->resources);
            cJSON_Delete(s->agent);
            cJSON_Delete(s->metadata);
            free(s->title);
            free(s);
        }
        return rc_emsrv_internal(c, &err);
    }
    rc_log_info("session %s created in %s%s%s", s->id, env->id, sc ? ", scenario " : "",
                sc ? sc->sc->name : "");
    if (rc_emstore_session_ensure_work(c->em, s, &err) < 0)
        return rc_emsrv_internal(c, &err);
    if (sc && rc_emplay_start(c->em, s, sc, &err) < 0)
        return rc_emsrv_internal(c, &err);
    if (initial) {
        echoes = cJSON_CreateArray();
        if (rc_emroute_events_apply(c, s, initial, calls, echoes, &err) < 0) {
            cJSON_Delete(echoes);
            return rc_emsrv_internal(c, &err);
        }
        cJSON_Delete(echoes);
    }
    return rc_emsrv_json(c, 200, rc_emstore_session_json(s));
}

int rc_emroute_session_get(rc_em_ctx *c)
{
    rc_em_session *s = rc_emroute_session_lookup(c);
    if (!s)
        return 0;
    return rc_emsrv_json(c, 200, rc_emstore_session_json(s));
}

int rc_emroute_session_list(rc_em_ctx *c)
{
    _cleanup_free_ rc_em_session **sel = calloc(c->em->nsessions + 1, sizeof(*sel));
    const char *store = rc_emsrv_query(c, "memory_store_id"); /* filter (SDK list param) */
    size_t n = 0, start, count;
    char *next;
    cJSON *items;

    if (!sel)
        return rc_emsrv_internal(c, NULL);
    for (size_t i = 0; i < c->em->nsessions; i++)
        if (!c->em->sessions[i]->deleted &&
            (!store || rc_emmem_session_has_store(c->em->sessions[i], store)))
            sel[n++] = c->em->sessions[i];
    if (rc_emsrv_page(c, n, &start, &count, &next) < 0)
        return 0;
    items = cJSON_CreateArray();
    for (size_t i = start; i < start + count; i++)
        cJSON_AddItemToArray(items, rc_emstore_session_json(sel[i]));
    return rc_emsrv_page_json(c, items, next);
}

int rc_emroute_session_update(rc_em_ctx *c)
{
    static const char *const keys[] = {"title", "metadata", NULL};
    rc_em_session *s = rc_emroute_session_lookup(c);
    const cJSON *meta, *title;
    rc_error err = {0};

    if (!s)
        return 0;
    if (c->body) {
        if (rc_emsrv_check_keys(c, c->body, keys) < 0)
            return 0;
        title = cJSON_GetObjectItemCaseSensitive(c->body, "title");
        if (title && !cJSON_IsString(title) && !cJSON_IsNull(title))
            return rc_emsrv_bad(c, "title: must be a string or null");
        meta = cJSON_GetObjectItemCaseSensitive(c->body, "metadata");
        if (meta && rc_emutil_check_metadata(meta, true, &err) < 0)
            return rc_emsrv_bad(c, "%s", err.msg);
        if (title) {
            free(s->title);
            s->title = cJSON_IsString(title) ? strdup(title->valuestring) : NULL;
        }
        if (meta)
            rc_emutil_merge_metadata(s->metadata, meta);
        s->updated_us = rc_emutil_now_us();
    }
    return rc_emsrv_json(c, 200, rc_emstore_session_json(s));
}

int rc_emroute_session_archive(rc_em_ctx *c)
{
    rc_em_session *s = rc_emroute_session_lookup(c);
    rc_error err = {0};
    if (!s)
        return 0;
    if (rc_emstore_session_terminate(c->em, s, &err) < 0)
        return rc_emsrv_internal(c, &err);
    rc_log_info("session %s archived", s->id);
    return rc_emsrv_json(c, 200, rc_emstore_session_json(s));
}

int rc_emroute_session_delete(rc_em_ctx *c)
{
    rc_em_session *s = rc_emroute_session_lookup(c);
    rc_error err = {0};
    cJSON *o;
    if (!s)
        return 0;
    if (rc_emstore_session_delete(c->em, s, &err) < 0)
        return rc_emsrv_internal(c, &err);
    rc_log_info("session %s deleted", s->id);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->id);
    cJSON_AddStringToObject(o, "type", "session_deleted");
    return rc_emsrv_json(c, 200, o);
}
