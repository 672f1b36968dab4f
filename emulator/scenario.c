/* scenario.c - parses scenario files (spec/scenario.md §1) and checks tool results against a
 * step's `expect`.
 *
 * Parsing works on a cJSON tree from rc_json_parse (strict JSON within the scenario's size and
 * depth caps, so nothing the emulator later echoes into events can be invalid JSON). Each level has
 * its own small function that checks the keys of its object, reads the fields with typed getters,
 * and reports errors with the JSON path of the field. Owned cJSON pieces (the agent's tools,
 * session metadata, step inputs) are detached from the parsed tree, so no deep copies are made. */
#include "scenario.h"

#include "buf.h"
#include "cleanup.h"
#include "json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_MAX_LEN     96  /* "turns[1023].steps[4095].expect.not_contains" fits */
#define NAME_MAX_LEN     64  /* scenario name */
#define TOOLNAME_MAX_LEN 128 /* step tool / custom tool name */
#define META_MAX_PAIRS   16  /* session.metadata, as the real API limits it */
#define META_KEY_MAX     64
#define META_VALUE_MAX   512
#define DIR_MAX_FILES    4096
#define TEXT_MAX         (8u << 20) /* concatenated result text judged by rc_sc_expect_check */
#define QUOTE_MAX        160        /* bytes of result text quoted in a failure detail */

static void rc_sc_freep(rc_sc_scenario **s)
{
    rc_sc_free(*s);
}

/* ---- input ------------------------------------------------------------------------------ */

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Append a path component to path (cut when full; paths only decorate messages). */
static size_t path_push(char *path, size_t len, size_t cap, const cJSON *parent, const cJSON *c,
                        size_t index)
{
    int n;
    if (cJSON_IsObject(parent))
        n = snprintf(path + len, cap - len, "%s%.40s", len ? "." : "", c->string);
    else
        n = snprintf(path + len, cap - len, "[%zu]", index);
    if (n < 0)
        return len;
    return len + (size_t)n < cap ? len + (size_t)n : cap - 1;
}

/* Refuse an object that repeats a key anywhere in the tree, naming its path. (rc_json_parse can
 * refuse duplicates itself, but without saying where; this runs on a tree within the depth cap.) */
static int check_duplicates(const cJSON *node, char *path, size_t len, size_t cap, rc_error *err)
{
    size_t n = 0, i = 0;
    for (const cJSON *c = node->child; c; c = c->next)
        n++;
    if (cJSON_IsObject(node) && n > 1) {
        _cleanup_free_ const char **keys = calloc(n, sizeof *keys);
        if (!keys)
            return rc_error_set(err, RC_ENOMEM, "scenario: out of memory");
        for (const cJSON *c = node->child; c; c = c->next)
            keys[i++] = c->string;
        qsort(keys, n, sizeof *keys, cmp_keys);
        for (i = 1; i < n; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0)
                return rc_error_set(err, RC_EPARSE, "%s%s%.40s: given twice", path, len ? "." : "",
                                    keys[i]);
    }
    i = 0;
    for (const cJSON *c = node->child; c; c = c->next, i++) {
        size_t sub = path_push(path, len, cap, node, c, i);
        int r = check_duplicates(c, path, sub, cap, err);
        path[len] = '\0';
        if (r < 0)
            return r;
    }
    return 0;
}

/* Strict JSON (lib/json.h: UTF-8, no \u0000, nothing after the value) within the scenario caps,
 * and no repeated keys. */
static int parse_document(const char *json, size_t len, cJSON **ret, rc_error *err)
{
    static const rc_json_limits limits = {
        .max_size = RC_SC_MAX_BYTES, .max_depth = RC_SC_MAX_DEPTH, .allow_duplicates = true};
    _cleanup_json_ cJSON *doc = NULL;
    char path[160] = "";
    int r;

    if (!json && len)
        return rc_error_set(err, RC_EINVAL, "scenario: no input");
    r = rc_json_parse(json ? json : "", len, &limits, &doc, err);
    if (r < 0)
        return rc_error_wrap(err, -r, "scenario");
    if ((r = check_duplicates(doc, path, 0, sizeof path, err)) < 0)
        return r;
    *ret = take_ptr(doc);
    return 0;
}

/* ---- typed field access ----------------------------------------------------------------- */

/* Reject keys of obj other than known[]; keys starting with '_' are comments and always allowed.
 * (Repeated keys never get here: check_duplicates refuses them.) */
static int check_keys(const cJSON *obj, const char *const *known, const char *path, rc_error *err)
{
    for (const cJSON *c = obj->child; c; c = c->next) {
        size_t k;
        if (!c->string || c->string[0] == '_')
            continue;
        for (k = 0; known[k]; k++)
            if (strcmp(known[k], c->string) == 0)
                break;
        if (!known[k])
            return rc_error_set(err, RC_EPARSE, "%s: unknown field \"%.40s\"", path, c->string);
    }
    return 0;
}

static const char *dot(const char *path)
{
    return *path ? "." : "";
}

/* Copy a string field; absent leaves *ret NULL (or fails when required). */
static int get_string(const cJSON *obj, const char *key, bool required, const char *path,
                      char **ret, rc_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j) {
        if (required)
            return rc_error_set(err, RC_EPARSE, "%s%s%s: required", path, dot(path), key);
        return 0;
    }
    if (!cJSON_IsString(j) || !j->valuestring)
        return rc_error_set(err, RC_EPARSE, "%s%s%s: must be a string", path, dot(path), key);
    *ret = strdup(j->valuestring);
    if (!*ret)
        return rc_error_set(err, RC_ENOMEM, "%s%s%s: out of memory", path, dot(path), key);
    return 0;
}

/* A boolean field; *ret_present says whether it was given. */
static int get_bool(const cJSON *obj, const char *key, const char *path, int *ret_present, int *ret,
                    rc_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j)
        return 0;
    if (!cJSON_IsBool(j))
        return rc_error_set(err, RC_EPARSE, "%s%s%s: must be true or false", path, dot(path), key);
    if (ret_present)
        *ret_present = 1;
    *ret = cJSON_IsTrue(j);
    return 0;
}

/* A duration in milliseconds: an integer in [0, RC_SC_MAX_MS]. */
static int get_ms(const cJSON *obj, const char *key, const char *path, int *ret_present, long *ret,
                  rc_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    double v;
    if (!j)
        return 0;
    v = j->valuedouble;
    if (!cJSON_IsNumber(j) || !isfinite(v) || v < 0 || v > RC_SC_MAX_MS || v != (double)(long)v)
        return rc_error_set(err, RC_EPARSE, "%s%s%s: must be an integer from 0 to %d", path,
                            dot(path), key, RC_SC_MAX_MS);
    if (ret_present)
        *ret_present = 1;
    *ret = (long)v;
    return 0;
}

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > NAME_MAX_LEN)
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* Tool names: 1-128 printable ASCII characters without spaces. Any such name may be scripted
 * (including names no worker serves); the worker decides what it owns. */
static bool tool_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > TOOLNAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static bool one_of(const char *s, const char *const *allowed)
{
    for (; *allowed; allowed++)
        if (strcmp(s, *allowed) == 0)
            return true;
    return false;
}

/* ---- expect ------------------------------------------------------------------------------- */

static int check_regex(const char *re, const char *path, rc_error *err)
{
    regex_t rx;
    char msg[96];
    int rc = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &rx, msg, sizeof msg);
        regfree(&rx);
        return rc_error_set(err, RC_EPARSE, "%s.matches: invalid regular expression: %s", path,
                            msg);
    }
    regfree(&rx);
    return 0;
}

static int parse_expect(const cJSON *j, const char *path, rc_sc_expect *e, rc_error *err)
{
    static const char *const keys[] = {"is_error",     "text",       "contains",
                                       "not_contains", "matches",    "no_result",
                                       "wait_ms",      "block_type", NULL};
    int has_wait = 0, r;

    if (!cJSON_IsObject(j))
        return rc_error_set(err, RC_EPARSE, "%s: must be an object", path);
    if ((r = check_keys(j, keys, path, err)) < 0 ||
        (r = get_bool(j, "is_error", path, &e->has_is_error, &e->is_error, err)) < 0 ||
        (r = get_string(j, "text", false, path, &e->text, err)) < 0 ||
        (r = get_string(j, "contains", false, path, &e->contains, err)) < 0 ||
        (r = get_string(j, "not_contains", false, path, &e->not_contains, err)) < 0 ||
        (r = get_string(j, "matches", false, path, &e->matches, err)) < 0 ||
        (r = get_string(j, "block_type", false, path, &e->block_type, err)) < 0 ||
        (r = get_bool(j, "no_result", path, NULL, &e->no_result, err)) < 0 ||
        (r = get_ms(j, "wait_ms", path, &has_wait, &e->wait_ms, err)) < 0)
        return r;
    if (e->matches && (r = check_regex(e->matches, path, err)) < 0)
        return r;
    if (e->no_result && (e->has_is_error || e->text || e->contains || e->not_contains ||
                         e->matches || e->block_type))
        return rc_error_set(err, RC_EPARSE,
                            "%s: no_result cannot be combined with checks on the result", path);
    if (!has_wait)
        e->wait_ms = e->no_result ? RC_SC_NORESULT_WAIT : RC_SC_DEFAULT_WAIT;
    return 0;
}

/* ---- steps -------------------------------------------------------------------------------- */

static const char *const step_kinds[] = {"tool",     "custom_tool", "message",
                                         "sleep_ms", "terminate",   NULL};

static int step_kind(const cJSON *j, const char *path, enum rc_sc_step_kind *ret, rc_error *err)
{
    const char *found = NULL;
    int idx = -1;
    for (int k = 0; step_kinds[k]; k++) {
        if (!cJSON_GetObjectItemCaseSensitive(j, step_kinds[k]))
            continue;
        if (found)
            return rc_error_set(err, RC_EPARSE,
                                "%s: has both \"%s\" and \"%s\" (one kind per step)", path, found,
                                step_kinds[k]);
        found = step_kinds[k];
        idx = k;
    }
    if (idx < 0)
        return rc_error_set(err, RC_EPARSE,
                            "%s: needs one of tool, custom_tool, message, sleep_ms, terminate",
                            path);
    *ret = (enum rc_sc_step_kind)idx; /* step_kinds[] follows the enum's order */
    return 0;
}

/* Fields other than the kind key that a step of this kind may carry. */
static int check_step_fields(const cJSON *j, enum rc_sc_step_kind kind, const char *path,
                             rc_error *err)
{
    static const char *const extras[] = {"input", "permission", "confirm", "expect", NULL};
    for (int k = 0; extras[k]; k++) {
        bool ok = kind == RC_SC_TOOL || (kind == RC_SC_CUSTOM_TOOL && k != 1 && k != 2);
        if (!ok && cJSON_GetObjectItemCaseSensitive(j, extras[k]))
            return rc_error_set(err, RC_EPARSE, "%s.%s: not allowed in a %s step", path, extras[k],
                                step_kinds[kind]);
    }
    return 0;
}

static int parse_permission(const cJSON *j, const char *path, rc_sc_step *st, rc_error *err)
{
    static const char *const perms[] = {"allow", "ask", "deny", NULL};
    static const char *const verdicts[] = {"allow", "deny", NULL};
    int r;
    if ((r = get_string(j, "permission", false, path, &st->permission, err)) < 0 ||
        (r = get_string(j, "confirm", false, path, &st->confirm, err)) < 0)
        return r;
    if (st->permission && !one_of(st->permission, perms))
        return rc_error_set(err, RC_EPARSE, "%s.permission: must be \"allow\", \"ask\" or \"deny\"",
                            path);
    if (st->confirm && !one_of(st->confirm, verdicts))
        return rc_error_set(err, RC_EPARSE, "%s.confirm: must be \"allow\" or \"deny\"", path);
    if (st->confirm && (!st->permission || strcmp(st->permission, "ask") != 0))
        return rc_error_set(err, RC_EPARSE, "%s.confirm: only valid with permission \"ask\"", path);
    return 0;
}

static int parse_call(cJSON *j, const char *path, rc_sc_step *st, rc_error *err)
{
    cJSON *input = cJSON_GetObjectItemCaseSensitive(j, "input");
    const cJSON *expect = cJSON_GetObjectItemCaseSensitive(j, "expect");
    const char *key = step_kinds[st->kind];
    int r;

    if ((r = get_string(j, key, true, path, &st->name, err)) < 0)
        return r;
    if (!tool_name_valid(st->name))
        return rc_error_set(err, RC_EPARSE,
                            "%s.%s: must be 1-%d printable characters without spaces", path, key,
                            TOOLNAME_MAX_LEN);
    if (input && !cJSON_IsObject(input))
        return rc_error_set(err, RC_EPARSE, "%s.input: must be an object", path);
    st->input = input ? cJSON_DetachItemViaPointer(j, input) : cJSON_CreateObject();
    if (!st->input)
        return rc_error_set(err, RC_ENOMEM, "%s.input: out of memory", path);
    if (st->kind == RC_SC_TOOL && (r = parse_permission(j, path, st, err)) < 0)
        return r;
    st->expect.wait_ms = RC_SC_DEFAULT_WAIT;
    if (expect) {
        char epath[PATH_MAX_LEN];
        snprintf(epath, sizeof epath, "%s.expect", path);
        st->has_expect = 1;
        if ((r = parse_expect(expect, epath, &st->expect, err)) < 0)
            return r;
    }
    return 0;
}

static int parse_step(cJSON *j, const char *path, rc_sc_step *st, rc_error *err)
{
    static const char *const keys[] = {"tool",  "custom_tool", "message", "sleep_ms", "terminate",
                                       "input", "permission",  "confirm", "expect",   NULL};
    int r, term = 0;

    if (!cJSON_IsObject(j))
        return rc_error_set(err, RC_EPARSE, "%s: must be an object", path);
    if ((r = check_keys(j, keys, path, err)) < 0 || (r = step_kind(j, path, &st->kind, err)) < 0 ||
        (r = check_step_fields(j, st->kind, path, err)) < 0)
        return r;
    switch (st->kind) {
    case RC_SC_TOOL:
    case RC_SC_CUSTOM_TOOL:
        return parse_call(j, path, st, err);
    case RC_SC_MESSAGE:
        if ((r = get_string(j, "message", true, path, &st->message, err)) < 0)
            return r;
        if (!*st->message)
            return rc_error_set(err, RC_EPARSE, "%s.message: must not be empty", path);
        return 0;
    case RC_SC_SLEEP:
        return get_ms(j, "sleep_ms", path, NULL, &st->sleep_ms, err);
    case RC_SC_TERMINATE:
        if ((r = get_bool(j, "terminate", path, NULL, &term, err)) < 0)
            return r;
        if (!term)
            return rc_error_set(err, RC_EPARSE, "%s.terminate: must be true", path);
        return 0;
    }
    return rc_error_set(err, RC_EINVAL, "%s: unknown step kind", path);
}

/* ---- turns and the document --------------------------------------------------------------- */

static int parse_steps(cJSON *arr, const char *path, rc_sc_turn *t, rc_error *err)
{
    int n, r;
    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr))
        return rc_error_set(err, RC_EPARSE, "%s.steps: must be an array", path);
    n = cJSON_GetArraySize(arr);
    if (n > RC_SC_MAX_STEPS)
        return rc_error_set(err, RC_ETOOBIG, "%s.steps: more than %d steps", path, RC_SC_MAX_STEPS);
    if (n == 0)
        return 0;
    t->steps = calloc((size_t)n, sizeof *t->steps);
    if (!t->steps)
        return rc_error_set(err, RC_ENOMEM, "%s.steps: out of memory", path);
    for (cJSON *s = arr->child; s; s = s->next) {
        char spath[PATH_MAX_LEN];
        snprintf(spath, sizeof spath, "%s.steps[%zu]", path, t->nsteps);
        r = parse_step(s, spath, &t->steps[t->nsteps++], err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int parse_turn(cJSON *j, const char *path, rc_sc_turn *t, rc_error *err)
{
    static const char *const keys[] = {"user", "steps", "end", "pause_after_ms", NULL};
    _cleanup_free_ char *end = NULL;
    int r;

    if (!cJSON_IsObject(j))
        return rc_error_set(err, RC_EPARSE, "%s: must be an object", path);
    if ((r = check_keys(j, keys, path, err)) < 0 ||
        (r = get_string(j, "user", true, path, &t->user, err)) < 0)
        return r;
    if (!*t->user)
        return rc_error_set(err, RC_EPARSE, "%s.user: must not be empty", path);
    if ((r = get_string(j, "end", false, path, &end, err)) < 0 ||
        (r = get_ms(j, "pause_after_ms", path, NULL, &t->pause_after_ms, err)) < 0)
        return r;
    if (end && strcmp(end, "end_turn") != 0 && strcmp(end, "none") != 0)
        return rc_error_set(err, RC_EPARSE, "%s.end: must be \"end_turn\" or \"none\"", path);
    t->end_none = end && strcmp(end, "none") == 0;
    return parse_steps(cJSON_GetObjectItemCaseSensitive(j, "steps"), path, t, err);
}

static int parse_turns(cJSON *doc, rc_sc_scenario *s, rc_error *err)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "turns");
    int n, r;
    if (!arr)
        return rc_error_set(err, RC_EPARSE, "turns: required");
    if (!cJSON_IsArray(arr))
        return rc_error_set(err, RC_EPARSE, "turns: must be an array");
    n = cJSON_GetArraySize(arr);
    if (n < 1)
        return rc_error_set(err, RC_EPARSE, "turns: needs at least one turn");
    if (n > RC_SC_MAX_TURNS)
        return rc_error_set(err, RC_ETOOBIG, "turns: more than %d turns", RC_SC_MAX_TURNS);
    s->turns = calloc((size_t)n, sizeof *s->turns);
    if (!s->turns)
        return rc_error_set(err, RC_ENOMEM, "turns: out of memory");
    for (cJSON *t = arr->child; t; t = t->next) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof path, "turns[%zu]", s->nturns);
        r = parse_turn(t, path, &s->turns[s->nturns++], err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int parse_agent(cJSON *doc, rc_sc_scenario *s, rc_error *err)
{
    cJSON *agent = cJSON_GetObjectItemCaseSensitive(doc, "agent");
    cJSON *tools;
    size_t i = 0;

    if (!agent)
        return rc_error_set(err, RC_EPARSE, "agent: required");
    if (!cJSON_IsObject(agent))
        return rc_error_set(err, RC_EPARSE, "agent: must be an object");
    tools = cJSON_GetObjectItemCaseSensitive(agent, "tools");
    if (!tools)
        return rc_error_set(err, RC_EPARSE, "agent.tools: required");
    if (!cJSON_IsArray(tools))
        return rc_error_set(err, RC_EPARSE, "agent.tools: must be an array");
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        if (!cJSON_IsObject(t))
            return rc_error_set(err, RC_EPARSE, "agent.tools[%zu]: must be an object", i);
        if (!cJSON_IsString(type))
            return rc_error_set(err, RC_EPARSE, "agent.tools[%zu].type: must be a string", i);
    }
    s->agent_tools = cJSON_DetachItemViaPointer(agent, tools);
    return 0;
}

static int check_metadata(const cJSON *meta, rc_error *err)
{
    size_t n = 0;
    if (!cJSON_IsObject(meta))
        return rc_error_set(err, RC_EPARSE, "session.metadata: must be an object");
    for (const cJSON *c = meta->child; c; c = c->next) {
        size_t klen = strlen(c->string);
        if (++n > META_MAX_PAIRS)
            return rc_error_set(err, RC_EPARSE, "session.metadata: more than %d pairs",
                                META_MAX_PAIRS);
        if (klen < 1 || klen > META_KEY_MAX)
            return rc_error_set(err, RC_EPARSE, "session.metadata: keys must be 1-%d characters",
                                META_KEY_MAX);
        if (!cJSON_IsString(c) || strlen(c->valuestring) > META_VALUE_MAX)
            return rc_error_set(err, RC_EPARSE,
                                "session.metadata.%.40s: must be a string of at most %d bytes",
                                c->string, META_VALUE_MAX);
    }
    return 0;
}

static int parse_session(cJSON *doc, rc_sc_scenario *s, rc_error *err)
{
    cJSON *sess = cJSON_GetObjectItemCaseSensitive(doc, "session");
    cJSON *meta;
    int r;

    if (!sess)
        return 0;
    if (!cJSON_IsObject(sess))
        return rc_error_set(err, RC_EPARSE, "session: must be an object");
    meta = cJSON_GetObjectItemCaseSensitive(sess, "metadata");
    if (!meta)
        return 0;
    if ((r = check_metadata(meta, err)) < 0)
        return r;
    s->session_metadata = cJSON_DetachItemViaPointer(sess, meta);
    return 0;
}

static int parse_header(cJSON *doc, rc_sc_scenario *s, rc_error *err)
{
    int r;
    if (!cJSON_IsObject(doc))
        return rc_error_set(err, RC_EPARSE, "scenario: must be a JSON object");
    if ((r = get_string(doc, "name", true, "", &s->name, err)) < 0)
        return r;
    if (!name_valid(s->name))
        return rc_error_set(err, RC_EPARSE, "name: must match [A-Za-z0-9_.-]{1,%d}", NAME_MAX_LEN);
    return get_string(doc, "description", false, "", &s->description, err);
}

int rc_sc_parse(const char *json, size_t len, rc_sc_scenario **ret, rc_error *err)
{
    _cleanup_json_ cJSON *doc = NULL;
    _cleanup_(rc_sc_freep) rc_sc_scenario *s = NULL;
    int r;

    if (!ret)
        return rc_error_set(err, RC_EINVAL, "scenario: no result pointer");
    if ((r = parse_document(json, len, &doc, err)) < 0)
        return r;
    s = calloc(1, sizeof *s);
    if (!s)
        return rc_error_set(err, RC_ENOMEM, "scenario: out of memory");
    if ((r = parse_header(doc, s, err)) < 0 || (r = parse_agent(doc, s, err)) < 0 ||
        (r = parse_session(doc, s, err)) < 0 || (r = parse_turns(doc, s, err)) < 0)
        return r;
    *ret = take_ptr(s);
    return 0;
}

static void expect_free(rc_sc_expect *e)
{
    free(e->text);
    free(e->contains);
    free(e->not_contains);
    free(e->matches);
    free(e->block_type);
}

static void step_free(rc_sc_step *st)
{
    free(st->name);
    cJSON_Delete(st->input);
    free(st->permission);
    free(st->confirm);
    expect_free(&st->expect);
    free(st->message);
}

void rc_sc_free(rc_sc_scenario *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nturns; i++) {
        rc_sc_turn *t = &s->turns[i];
        for (size_t k = 0; k < t->nsteps; k++)
            step_free(&t->steps[k]);
        free(t->steps);
        free(t->user);
    }
    free(s->turns);
    free(s->name);
    free(s->description);
    cJSON_Delete(s->agent_tools);
    cJSON_Delete(s->session_metadata);
    free(s);
}

/* ---- loading a directory -------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_scenario_file(const char *name)
{
    return name[0] != '.' && ends_with(name, ".json") && !ends_with(name, RC_SC_FAULTS_SUFFIX);
}

/* Read the regular file name (relative to dfd) into out; messages leave naming the file to the
 * caller. out's max decides how much is read (one byte over the scenario limit is enough to
 * reject it). */
static int read_file_at(int dfd, const char *name, rc_buf *out, rc_error *err)
{
    _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;

    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "open");
    if (fstat(fd, &st) < 0)
        return rc_error_sys(err, RC_EIO, "stat");
    if (!S_ISREG(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "not a regular file");
    for (;;) {
        size_t room = out->max - out->len;
        ssize_t n;
        if (room == 0)
            return rc_error_set(err, RC_ETOOBIG, "over the %d-byte scenario limit",
                                RC_SC_MAX_BYTES);
        int r = rc_buf_reserve(out, room < 65536 ? room : 65536, err);
        if (r < 0)
            return r;
        n = read(fd, out->data + out->len, out->cap - 1 - out->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rc_error_sys(err, RC_EIO, "read");
        if (n == 0)
            return 0;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Sorted names of the scenario files in d. */
static int list_scenario_files(DIR *d, const char *dir, char ***ret, size_t *ret_n, rc_error *err)
{
    char **names = calloc(DIR_MAX_FILES, sizeof *names);
    size_t n = 0;
    struct dirent *de;

    if (!names)
        return rc_error_set(err, RC_ENOMEM, "%s: out of memory", dir);
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (!is_scenario_file(de->d_name))
            continue;
        if (n == DIR_MAX_FILES || !(names[n] = strdup(de->d_name))) {
            names_free(names, n);
            return rc_error_set(err, n == DIR_MAX_FILES ? RC_ETOOBIG : RC_ENOMEM,
                                "%s: too many scenario files or out of memory", dir);
        }
        n++;
    }
    if (errno != 0) {
        names_free(names, n);
        return rc_error_sys(err, RC_EIO, "%s: readdir", dir);
    }
    qsort(names, n, sizeof *names, cmp_names);
    *ret = names;
    *ret_n = n;
    return 0;
}

static int load_one(int dfd, const char *dir, const char *name, rc_sc_scenario **ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(RC_SC_MAX_BYTES + 1);
    char ctx[320];
    int r = read_file_at(dfd, name, &b, err);
    if (r >= 0)
        r = rc_sc_parse(b.data ? b.data : "", b.len, ret, err);
    if (r < 0) {
        snprintf(ctx, sizeof ctx, "%s/%s", dir, name);
        return rc_error_wrap(err, -r, ctx);
    }
    return 0;
}

static int find_duplicate(rc_sc_scenario **list, size_t n, char **names, rc_error *err)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < i; k++)
            if (strcmp(list[i]->name, list[k]->name) == 0)
                return rc_error_set(err, RC_EINVAL, "%s and %s both define scenario \"%s\"",
                                    names[k], names[i], list[i]->name);
    return 0;
}

int rc_sc_load_dir(const char *dir, rc_sc_scenario ***ret_list, size_t *ret_n, rc_error *err)
{
    DIR *d;
    char **names = NULL;
    size_t nnames = 0, n = 0;
    rc_sc_scenario **list = NULL;
    int r;

    if (!dir || !ret_list || !ret_n)
        return rc_error_set(err, RC_EINVAL, "scenarios: bad arguments");
    d = opendir(dir);
    if (!d)
        return rc_error_sys(err, RC_EIO, "%s: cannot open scenario directory", dir);
    r = list_scenario_files(d, dir, &names, &nnames, err);
    if (r >= 0 && nnames > 0 && !(list = calloc(nnames, sizeof *list)))
        r = rc_error_set(err, RC_ENOMEM, "%s: out of memory", dir);
    for (; r >= 0 && n < nnames; n++)
        r = load_one(dirfd(d), dir, names[n], &list[n], err);
    if (r >= 0)
        r = find_duplicate(list, n, names, err);
    closedir(d);
    if (r < 0) {
        rc_sc_list_free(list, n);
        names_free(names, nnames);
        return r;
    }
    names_free(names, nnames);
    *ret_list = list;
    *ret_n = n;
    return (int)(n > (size_t)0x7fffffff ? 0x7fffffff : n);
}

void rc_sc_list_free(rc_sc_scenario **list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        rc_sc_free(list[i]);
    free(list);
}

/* ---- expectation checks ----------------------------------------------------------------- */

/* Concatenate the text blocks of content into out. */
static int concat_text(const cJSON *content, rc_buf *out, const char **ret_first_type,
                       rc_error *err)
{
    size_t i = 0;
    *ret_first_type = NULL;
    if (!content)
        return 0;
    if (!cJSON_IsArray(content))
        return rc_error_set(err, RC_EINVAL, "content is not an array");
    for (const cJSON *b = content->child; b; b = b->next, i++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
        const cJSON *text;
        if (!cJSON_IsObject(b) || !cJSON_IsString(type))
            return rc_error_set(err, RC_EINVAL, "content[%zu] has no string \"type\"", i);
        if (i == 0)
            *ret_first_type = type->valuestring;
        if (strcmp(type->valuestring, "text") != 0)
            continue;
        text = cJSON_GetObjectItemCaseSensitive(b, "text");
        if (!cJSON_IsString(text))
            return rc_error_set(err, RC_EINVAL, "content[%zu] is a text block without text", i);
        if (rc_buf_append_str(out, text->valuestring, NULL) < 0)
            return rc_error_set(err, RC_ETOOBIG, "result text over %u bytes", TEXT_MAX);
    }
    return 0;
}

/* Quote up to QUOTE_MAX bytes of s for a detail line: escapes for quotes, backslashes and
 * control characters, cut on a UTF-8 boundary, "..." when cut. */
static void quote(const char *s, char *out, size_t outsz)
{
    size_t o = 0, i = 0, n = strlen(s);
    size_t lim = n > QUOTE_MAX ? QUOTE_MAX : n;
    while (lim < n && lim > 0 && ((unsigned char)s[lim] & 0xC0) == 0x80)
        lim--;
    if (outsz < 8) {
        if (outsz)
            out[0] = '\0';
        return;
    }
    out[o++] = '"';
    for (; i < lim && o + 10 < outsz; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
}

static bool regex_matches(const char *re, const char *text)
{
    regex_t rx;
    bool hit;
    if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    hit = regexec(&rx, text, 0, NULL, 0) == 0;
    regfree(&rx);
    return hit;
}

/* Append one failure to the detail list ("; "-separated). */
__attribute__((format(printf, 2, 3))) static void add_failure(rc_buf *d, const char *fmt, ...)
{
    va_list ap;
    if (d->len)
        rc_buf_append_str(d, "; ", NULL);
    va_start(ap, fmt);
    rc_buf_vappendf(d, NULL, fmt, ap);
    va_end(ap);
}

static void judge(const rc_sc_expect *e, const char *text, const char *first_type, int is_error,
                  rc_buf *d)
{
    char got[QUOTE_MAX * 4 + 16], want[QUOTE_MAX * 4 + 16];
    quote(text, got, sizeof got);
    if (e->has_is_error && !e->is_error != !is_error)
        add_failure(d, "is_error: expected %s, got %s (text %s)", e->is_error ? "true" : "false",
                    is_error ? "true" : "false", got);
    if (e->text && strcmp(e->text, text) != 0) {
        quote(e->text, want, sizeof want);
        add_failure(d, "text: expected %s, got %s", want, got);
    }
    if (e->contains && !strstr(text, e->contains)) {
        quote(e->contains, want, sizeof want);
        add_failure(d, "contains %s: not found in %s", want, got);
    }
    if (e->not_contains && strstr(text, e->not_contains)) {
        quote(e->not_contains, want, sizeof want);
        add_failure(d, "not_contains %s: found in %s", want, got);
    }
    if (e->matches && !regex_matches(e->matches, text)) {
        quote(e->matches, want, sizeof want);
        add_failure(d, "matches %s: no match in %s", want, got);
    }
    if (e->block_type && (!first_type || strcmp(e->block_type, first_type) != 0)) {
        quote(e->block_type, want, sizeof want);
        add_failure(d, "block_type: expected %s, got %s%s%s", want, first_type ? "\"" : "",
                    first_type ? first_type : "no content blocks", first_type ? "\"" : "");
    }
}

static void put_detail(char *detail, size_t detailsz, const char *msg)
{
    if (detail && detailsz)
        snprintf(detail, detailsz, "%s", msg);
}

int rc_sc_expect_check(const rc_sc_expect *e, const cJSON *content, int is_error, char *detail,
                       size_t detailsz)
{
    _cleanup_(rc_buf_free) rc_buf text = RC_BUF_INIT(TEXT_MAX);
    _cleanup_(rc_buf_free) rc_buf d = RC_BUF_INIT(4096);
    const char *first_type = NULL;
    char got[QUOTE_MAX * 4 + 16];
    rc_error err = {0};
    int r;

    put_detail(detail, detailsz, "");
    if (!e) {
        put_detail(detail, detailsz, "no expectation given");
        return -RC_EINVAL;
    }
    r = concat_text(content, &text, &first_type, &err);
    if (r < 0) {
        put_detail(detail, detailsz, err.msg);
        return r;
    }
    if (e->no_result) {
        quote(rc_buf_cstr(&text), got, sizeof got);
        add_failure(&d, "no_result: a result arrived (is_error %s, text %s)",
                    is_error ? "true" : "false", got);
    } else {
        judge(e, rc_buf_cstr(&text), first_type, is_error, &d);
    }
    put_detail(detail, detailsz, rc_buf_cstr(&d));
    return d.len ? 0 : 1;
}
