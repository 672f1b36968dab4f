/* routes_agents.c - /v1/agents (protocol.md 19.2, 17.1, 17.13): create, update (new version),
 * retrieve, list, archive, and the tool list rules shared with scenarios.
 *
 * rc_emroute_tools_resolve validates an agent's `tools` exactly as 19.2.3 and 17.13.2 require and
 * returns them resolved (every toolset config with `enabled` and `permission_policy`), which is
 * also how a scenario's `agent.tools` become the tools of its sessions. */
#include "server.h"

#include "cleanup.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOOLS 256

static const char *const toolset_names[] = {"bash", "read",      "write",      "edit", "glob",
                                            "grep", "web_fetch", "web_search", NULL};

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static int fail(char *msg, size_t msgsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t msgsz, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msgsz, fmt, ap);
    va_end(ap);
    return -RC_EINVAL;
}

static int check_policy(const cJSON *pp, const char *path, char *msg, size_t msgsz)
{
    static const char *const types[] = {"always_allow", "always_ask", "auto", NULL};
    const char *t;
    if (!cJSON_IsObject(pp))
        return fail(msg, msgsz, "%s.permission_policy: must be an object", path);
    t = rc_emutil_jstr(pp, "type");
    if (!t || !in_list(t, types))
        return fail(msg, msgsz,
                    "%s.permission_policy.type: must be one of always_allow, always_ask, auto",
                    path);
    return 0;
}

/* {enabled, permission_policy} resolved against the defaults. */
static int resolve_config(const cJSON *given, const cJSON *def_enabled, const cJSON *def_pp,
                          const char *path, cJSON *out, char *msg, size_t msgsz)
{
    const cJSON *en = given ? cJSON_GetObjectItemCaseSensitive(given, "enabled") : NULL;
    const cJSON *pp = given ? cJSON_GetObjectItemCaseSensitive(given, "permission_policy") : NULL;
    if (en && !cJSON_IsBool(en))
        return fail(msg, msgsz, "%s.enabled: must be a boolean", path);
    if (pp && check_policy(pp, path, msg, msgsz) < 0)
        return -RC_EINVAL;
    cJSON_AddItemToObject(out, "enabled", cJSON_Duplicate(en ? en : def_enabled, 1));
    cJSON_AddItemToObject(out, "permission_policy", cJSON_Duplicate(pp ? pp : def_pp, 1));
    return 0;
}

static int resolve_toolset(const cJSON *t, const char *path, cJSON **ret, char *msg, size_t msgsz)
{
    const cJSON *dc = cJSON_GetObjectItemCaseSensitive(t, "default_config");
    const cJSON *configs = cJSON_GetObjectItemCaseSensitive(t, "configs"), *it;
    _cleanup_json_ cJSON *out = cJSON_CreateObject();
    cJSON *def, *carr, *true_item = cJSON_CreateTrue(), *allow = cJSON_CreateObject();
    char sub[96];
    int r = 0;
    size_t i = 0;

    cJSON_AddStringToObject(allow, "type", "always_allow");
    cJSON_AddStringToObject(out, "type", "agent_toolset_20260401");
    def = cJSON_AddObjectToObject(out, "default_config");
    snprintf(sub, sizeof(sub), "%s.default_config", path);
    if (dc && !cJSON_IsObject(dc))
        r = fail(msg, msgsz, "%s: must be an object", sub);
    if (r == 0)
        r = resolve_config(dc, true_item, allow, sub, def, msg, msgsz);
    carr = cJSON_AddArrayToObject(out, "configs");
    if (r == 0 && configs && !cJSON_IsArray(configs))
        r = fail(msg, msgsz, "%s.configs: must be an array", path);
    if (r == 0 && configs) {
        cJSON_ArrayForEach(it, configs)
        {
            const char *name = rc_emutil_jstr(it, "name");
            cJSON *rc;
            snprintf(sub, sizeof(sub), "%s.configs[%zu]", path, i++);
            if (!cJSON_IsObject(it) || !name || !in_list(name, toolset_names)) {
                r = fail(msg, msgsz,
                         "%s.name: must be one of bash, read, write, edit, glob, grep, "
                         "web_fetch, web_search",
                         sub);
                break;
            }
            for (const cJSON *prev = carr->child; prev; prev = prev->next)
                if (strcmp(rc_emutil_jstr(prev, "name"), name) == 0)
                    r = fail(msg, msgsz, "%s.name: duplicate config for %s", sub, name);
            if (r < 0)
                break;
            rc = cJSON_CreateObject();
            cJSON_AddStringToObject(rc, "name", name);
            cJSON_AddItemToArray(carr, rc);
            r = resolve_config(it, cJSON_GetObjectItemCaseSensitive(def, "enabled"),
                               cJSON_GetObjectItemCaseSensitive(def, "permission_policy"), sub, rc,
                               msg, msgsz);
            if (r < 0)
                break;
        }
    }
    cJSON_Delete(true_item);
    cJSON_Delete(allow);
    if (r < 0)
        return r;
    *ret = take_ptr(out);
    return 0;
}

static bool has_ref(const cJSON *j)
{
    const cJSON *it;
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
        return false;
    cJSON_ArrayForEach(it, j)
    {
        if (it->string && strcmp(it->string, "$ref") == 0)
            return true;
        if (has_ref(it))
            return true;
    }
    return false;
}

static bool custom_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static int resolve_custom(const cJSON *t, const char *path, const cJSON *seen, cJSON **ret,
                          char *msg, size_t msgsz)
{
    const char *name = rc_emutil_jstr(t, "name");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(t, "description");
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(t, "input_schema");
    const char *stype;
    cJSON *out;

    if (!name || !custom_name_ok(name))
        return fail(msg, msgsz, "%s.name: must be 1 to 128 characters of [A-Za-z0-9_-]", path);
    if (in_list(name, toolset_names))
        return fail(msg, msgsz, "%s.name: %s clashes with a built-in tool", path, name);
    if (strncmp(name, "mcp__", 5) == 0)
        return fail(msg, msgsz, "%s.name: must not start with mcp__", path);
    for (const cJSON *prev = seen ? seen->child : NULL; prev; prev = prev->next) {
        const char *pn = rc_emutil_jstr(prev, "name");
        if (pn && strcmp(rc_emutil_jstr(prev, "type"), "custom") == 0 && strcmp(pn, name) == 0)
            return fail(msg, msgsz, "%s.name: duplicate tool name %s", path, name);
    }
    if (desc && !cJSON_IsString(desc))
        return fail(msg, msgsz, "%s.description: must be a string", path);
    if (!cJSON_IsObject(schema))
        return fail(msg, msgsz, "%s.input_schema: required, an object", path);
    stype = rc_emutil_jstr(schema, "type");
    if (!stype || strcmp(stype, "object") != 0)
        return fail(msg, msgsz, "%s.input_schema.type: must be \"object\"", path);
    if (cJSON_GetObjectItemCaseSensitive(schema, "oneOf") ||
        cJSON_GetObjectItemCaseSensitive(schema, "anyOf") ||
        cJSON_GetObjectItemCaseSensitive(schema, "allOf"))
        return fail(msg, msgsz,
                    "%s.input_schema: oneOf, anyOf and allOf are not allowed at the "
                    "top level",
                    path);
    if (has_ref(schema))
        return fail(msg, msgsz, "%s.input_schema: $ref is not allowed", path);
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "type", "custom");
    cJSON_AddStringToObject(out, "name", name);
    if (desc)
        cJSON_AddStringToObject(out, "description", desc->valuestring);
    cJSON_AddItemToObject(out, "input_schema", cJSON_Duplicate(schema, 1));
    *ret = out;
    return 0;
}

int rc_emroute_tools_resolve(const cJSON *tools, cJSON **ret, char *msg, size_t msgsz)
{
    _cleanup_json_ cJSON *out = cJSON_CreateArray();
    const cJSON *t;
    size_t i = 0;
    bool toolset = false;

    if (!cJSON_IsArray(tools))
        return fail(msg, msgsz, "tools: must be an array");
    if (cJSON_GetArraySize(tools) > MAX_TOOLS)
        return fail(msg, msgsz, "tools: at most %d tools are allowed", MAX_TOOLS);
    cJSON_ArrayForEach(t, tools)
    {
        char path[32];
        const char *type = rc_emutil_jstr(t, "type");
        cJSON *res = NULL;
        int r;
        snprintf(path, sizeof(path), "tools[%zu]", i++);
        if (!cJSON_IsObject(t) || !type)
            return fail(msg, msgsz, "%s.type: required", path);
        if (strcmp(type, "agent_toolset_20260401") == 0) {
            if (toolset)
                return fail(msg, msgsz, "%s: agent_toolset_20260401 given twice", path);
            toolset = true;
            r = resolve_toolset(t, path, &res, msg, msgsz);
        } else if (strcmp(type, "custom") == 0) {
            r = resolve_custom(t, path, out, &res, msg, msgsz);
        } else if (strcmp(type, "mcp_toolset") == 0) {
            if (!rc_emutil_jstr(t, "mcp_server_name"))
                return fail(msg, msgsz, "%s.mcp_server_name: required", path);
            res = cJSON_Duplicate(t, 1);
            r = res ? 0 : -RC_ENOMEM;
        } else {
            return fail(msg, msgsz,
                        "%s.type: must be one of agent_toolset_20260401, custom, mcp_toolset",
                        path);
        }
        if (r < 0)
            return r;
        cJSON_AddItemToArray(out, res);
    }
    *ret = take_ptr(out);
    return 0;
}

/* ---- agent objects ---- */

static const char *const agent_keys[] = {"name",       "model",   "description", "system",
                                         "tools",      "skills",  "mcp_servers", "metadata",
                                         "multiagent", "version", NULL};

static int check_keys(rc_em_ctx *c, const cJSON *b, bool allow_version)
{
    if (!allow_version && cJSON_GetObjectItemCaseSensitive(b, "version"))
        return rc_emsrv_bad(c, "version: Extra inputs are not permitted"), -1;
    return rc_emsrv_check_keys(c, b, agent_keys);
}

static int check_skills(const cJSON *skills, char *msg, size_t msgsz)
{
    const cJSON *s;
    size_t i = 0;
    if (!cJSON_IsArray(skills))
        return fail(msg, msgsz, "skills: must be an array");
    cJSON_ArrayForEach(s, skills)
    {
        const char *type = rc_emutil_jstr(s, "type");
        if (!type || (strcmp(type, "anthropic") != 0 && strcmp(type, "custom") != 0))
            return fail(msg, msgsz, "skills[%zu].type: must be anthropic or custom", i);
        if (!rc_emutil_jstr(s, "skill_id"))
            return fail(msg, msgsz, "skills[%zu].skill_id: required", i);
        i++;
    }
    return 0;
}

/* Validate the fields of a create/update body; *ret_tools gets the resolved tools (or NULL). */
static int check_agent_fields(rc_em_ctx *c, const cJSON *b, bool create, cJSON **ret_tools)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(b, "name");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(b, "model");
    const cJSON *v;
    char msg[256];
    rc_error err = {0};

    *ret_tools = NULL;
    if ((create || name) &&
        (!cJSON_IsString(name) || !*name->valuestring || strlen(name->valuestring) > 256))
        return rc_emsrv_bad(c, "name: required, a string of 1 to 256 characters"), -1;
    if (create && !model)
        return rc_emsrv_bad(c, "model: required"), -1;
    if (model && !cJSON_IsString(model) && !(cJSON_IsObject(model) && rc_emutil_jstr(model, "id")))
        return rc_emsrv_bad(c, "model: must be a string or an object with an id"), -1;
    for (const char *const *k = (const char *const[]){"description", "system", NULL}; *k; k++) {
        v = cJSON_GetObjectItemCaseSensitive(b, *k);
        if (v && !cJSON_IsString(v) && !cJSON_IsNull(v))
            return rc_emsrv_bad(c, "%s: must be a string or null", *k), -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(b, "skills");
    if (v && check_skills(v, msg, sizeof(msg)) < 0)
        return rc_emsrv_bad(c, "%s", msg), -1;
    v = cJSON_GetObjectItemCaseSensitive(b, "mcp_servers");
    if (v && (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 20))
        return rc_emsrv_bad(c, "mcp_servers: must be an array of at most 20 servers"), -1;
    v = cJSON_GetObjectItemCaseSensitive(b, "metadata");
    if (v && rc_emutil_check_metadata(v, !create, &err) < 0)
        return rc_emsrv_bad(c, "%s", err.msg), -1;
    v = cJSON_GetObjectItemCaseSensitive(b, "tools");
    if (v && rc_emroute_tools_resolve(v, ret_tools, msg, sizeof(msg)) < 0)
        return rc_emsrv_bad(c, "%s", msg), -1;
    return 0;
}

static void set_field(cJSON *o, const char *key, cJSON *val)
{
    if (cJSON_GetObjectItemCaseSensitive(o, key))
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, val);
    else
        cJSON_AddItemToObject(o, key, val);
}

/* Apply the body's fields to agent object a (tools already resolved). */
static void apply_fields(cJSON *a, const cJSON *b, cJSON *tools)
{
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "name")))
        set_field(a, "name", cJSON_Duplicate(v, 1));
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "model"))) {
        cJSON *m = cJSON_IsString(v) ? cJSON_CreateObject() : cJSON_Duplicate(v, 1);
        if (cJSON_IsString(v))
            cJSON_AddStringToObject(m, "id", v->valuestring);
        set_field(a, "model", m);
    }
    for (const char *const *k = (const char *const[]){"description", "system", "skills",
                                                      "mcp_servers", "multiagent", NULL};
         *k; k++)
        if ((v = cJSON_GetObjectItemCaseSensitive(b, *k)))
            set_field(a, *k, cJSON_Duplicate(v, 1));
    if (tools)
        set_field(a, "tools", tools);
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "metadata")))
        rc_emutil_merge_metadata(cJSON_GetObjectItemCaseSensitive(a, "metadata"), v);
}

static cJSON *agent_new_object(const char *id)
{
    cJSON *a = cJSON_CreateObject();
    char ts[40];
    rc_emutil_rfc3339(rc_emutil_now_us(), ts);
    cJSON_AddStringToObject(a, "type", "agent");
    cJSON_AddStringToObject(a, "id", id);
    cJSON_AddNumberToObject(a, "version", 1);
    cJSON_AddStringToObject(a, "name", "");
    cJSON_AddNullToObject(a, "description");
    cJSON_AddItemToObject(a, "model", cJSON_CreateObject());
    cJSON_AddNullToObject(a, "system");
    cJSON_AddItemToObject(a, "tools", cJSON_CreateArray());
    cJSON_AddItemToObject(a, "skills", cJSON_CreateArray());
    cJSON_AddItemToObject(a, "mcp_servers", cJSON_CreateArray());
    cJSON_AddItemToObject(a, "metadata", cJSON_CreateObject());
    cJSON_AddNullToObject(a, "multiagent");
    cJSON_AddStringToObject(a, "created_at", ts);
    cJSON_AddStringToObject(a, "updated_at", ts);
    cJSON_AddNullToObject(a, "archived_at");
    return a;
}

int rc_emroute_agent_create(rc_em_ctx *c)
{
    cJSON *tools = NULL, *obj;
    rc_em_agent *a;
    rc_error err = {0};

    if (!c->body)
        return rc_emsrv_bad(c, "name: required");
    if (check_keys(c, c->body, false) < 0 || check_agent_fields(c, c->body, true, &tools) < 0)
        return 0;
    a = calloc(1, sizeof(*a));
    if (!a || rc_emutil_random_id("agent_", a->id, sizeof(a->id), &err) < 0 ||
        !(a->versions = calloc(1, sizeof(*a->versions)))) {
        free(a);
        cJSON_Delete(tools);
        return rc_emsrv_internal(c, &err);
    }
    obj = agent_new_object(a->id);
    apply_fields(obj, c->body, tools);
    a->versions[0] = obj;
    a->nversions = 1;
    if (rc_emstore_agent_add(c->em, a, &err) < 0) {
        cJSON_Delete(obj);
        free(a->versions);
        free(a);
        return rc_emsrv_internal(c, &err);
    }
    rc_log_info("agent %s created", a->id);
    rc_emstate_save(c->em, NULL);
    return rc_emsrv_json(c, 200, cJSON_Duplicate(obj, 1));
}

static rc_em_agent *agent_lookup(rc_em_ctx *c)
{
    rc_em_agent *a = rc_emstore_agent_find(c->em, c->params[0]);
    if (!a)
        rc_emsrv_notfound(c, "agent %s not found", c->params[0]);
    return a;
}

int rc_emroute_agent_get(rc_em_ctx *c)
{
    rc_em_agent *a = agent_lookup(c);
    long version = 0;
    if (!a)
        return 0;
    if (rc_emsrv_query_long(c, "version", 1, 1L << 30, &version) < 0)
        return 0;
    if (version > (long)a->nversions)
        return rc_emsrv_notfound(c, "agent %s has no version %ld", a->id, version);
    return rc_emsrv_json(
        c, 200, cJSON_Duplicate(a->versions[(version ? version : (long)a->nversions) - 1], 1));
}

int rc_emroute_agent_update(rc_em_ctx *c)
{
    rc_em_agent *a = agent_lookup(c);
    const cJSON *ver;
    cJSON *tools = NULL, *obj, **nv;
    char ts[40];

    if (!a)
        return 0;
    if (!c->body)
        return rc_emsrv_json(c, 200, cJSON_Duplicate(a->versions[a->nversions - 1], 1));
    if (check_keys(c, c->body, true) < 0)
        return 0;
    ver = cJSON_GetObjectItemCaseSensitive(c->body, "version");
    if (ver && (!cJSON_IsNumber(ver) || ver->valuedouble != (double)a->nversions))
        return rc_emsrv_error(c, 409, "conflict_error", NULL,
                              "version does not match the agent's current version %zu",
                              a->nversions);
    if (check_agent_fields(c, c->body, false, &tools) < 0)
        return 0;
    nv = realloc(a->versions, (a->nversions + 1) * sizeof(*nv));
    if (!nv) {
        cJSON_Delete(tools);
        return rc_emsrv_internal(c, NULL);
    }
    a->versions = nv;
    obj = cJSON_Duplicate(a->versions[a->nversions - 1], 1);
    apply_fields(obj, c->body, tools);
    set_field(obj, "version", cJSON_CreateNumber((double)a->nversions + 1));
    rc_emutil_rfc3339(rc_emutil_now_us(), ts);
    set_field(obj, "updated_at", cJSON_CreateString(ts));
    a->versions[a->nversions++] = obj;
    rc_emstate_save(c->em, NULL);
    return rc_emsrv_json(c, 200, cJSON_Duplicate(obj, 1));
}

int rc_emroute_agent_archive(rc_em_ctx *c)
{
    rc_em_agent *a = agent_lookup(c);
    cJSON *obj;
    if (!a)
        return 0;
    obj = a->versions[a->nversions - 1];
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, "archived_at"))) {
        char ts[40];
        rc_emutil_rfc3339(rc_emutil_now_us(), ts);
        set_field(obj, "archived_at", cJSON_CreateString(ts));
    }
    rc_emstate_save(c->em, NULL);
    return rc_emsrv_json(c, 200, cJSON_Duplicate(obj, 1));
}

int rc_emroute_agent_list(rc_em_ctx *c)
{
    size_t start, count;
    char *next;
    cJSON *items;
    if (rc_emsrv_page(c, c->em->nagents, &start, &count, &next) < 0)
        return 0;
    items = cJSON_CreateArray();
    for (size_t i = start; i < start + count; i++) {
        rc_em_agent *a = c->em->agents[i];
        cJSON_AddItemToArray(items, cJSON_Duplicate(a->versions[a->nversions - 1], 1));
    }
    return rc_emsrv_page_json(c, items, next);
}

int rc_emroute_not_supported(rc_em_ctx *c)
{
    return rc_emsrv_notfound(c, "not found: %s is not emulated", c->req->url);
}
