/* routes_events.c - session events: list (9.1), stream (9.2, via sse.c) and send (9.3, 19.4).
 *
 * Send is all-or-nothing: every event of the request is checked first (types, content blocks,
 * the credential's right to send it, and the pairing rules of 9.3.4-9.3.7: a result must answer
 * an emitted call of the matching kind that is not answered yet and, for an `ask` call, was
 * allowed), then all are applied in order. A refused send changes nothing, except that a
 * scenario session records the pairing failure in its verdict (scenario.md §1). */
#include "server.h"

#include "cleanup.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENTS_PER_SEND 50

static const char *const send_types[] = {
    "user.message",        "user.interrupt",   "user.tool_confirmation", "user.custom_tool_result",
    "user.define_outcome", "user.tool_result", "system.message",         NULL};

rc_em_session *rc_emroute_session_lookup(rc_em_ctx *c)
{
    rc_em_session *s = rc_emstore_session_find(c->em, c->params[0]);
    if (!s) {
        rc_emsrv_notfound(c, "session %s not found", c->params[0]);
        return NULL;
    }
    if (rc_emsrv_scope_session(c, s) < 0)
        return NULL;
    return s;
}

/* ---- content blocks ---- */

static int check_block(rc_em_ctx *c, const cJSON *b, const char *path, bool result)
{
    const char *type = rc_emutil_jstr(b, "type");
    if (!cJSON_IsObject(b) || !type)
        return rc_emsrv_bad(c, "%s.type: required", path), -1;
    if (strcmp(type, "text") == 0) {
        const char *t = rc_emutil_jstr(b, "text");
        if (!t)
            return rc_emsrv_bad(c, "%s.text: required, a string", path), -1;
        if (!*t)
            return rc_emsrv_bad(c, "%s.text: text content blocks must be non-empty", path), -1;
        return 0;
    }
    if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(b, "source")))
            return rc_emsrv_bad(c, "%s.source: required, an object", path), -1;
        return 0;
    }
    if (result && strcmp(type, "search_result") == 0)
        return 0;
    rc_emsrv_bad(c, "%s.type: unsupported content block type %s", path, type);
    return -1;
}

static int check_blocks(rc_em_ctx *c, const cJSON *content, const char *path, bool result,
                        bool need_nonempty, bool text_only)
{
    const cJSON *b;
    size_t i = 0;
    char sub[96];
    if (!cJSON_IsArray(content))
        return rc_emsrv_bad(c, "%s: must be an array of content blocks", path), -1;
    if (need_nonempty && cJSON_GetArraySize(content) == 0)
        return rc_emsrv_bad(c, "%s: must not be empty", path), -1;
    cJSON_ArrayForEach(b, content)
    {
        snprintf(sub, sizeof(sub), "%s[%zu]", path, i++);
        if (check_block(c, b, sub, result) < 0)
            return -1;
        if (text_only && strcmp(rc_emutil_jstr(b, "type"), "text") != 0)
            return rc_emsrv_bad(c, "%s: an is_error result may contain only text blocks", sub), -1;
    }
    return 0;
}

/* ---- send: checks ---- */

typedef struct send_check {
    rc_em_session *s; /* NULL for initial_events of a session being created */
    bool initial;
    const char **answered; /* ids answered earlier in this batch */
    size_t nanswered;
    const char **confirmed;
    size_t nconfirmed;
} send_check;

static bool in_batch(const char **ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return true;
    return false;
}

static int pairing_error(rc_em_ctx *c, send_check *k, const char *fmt, const char *a, const char *b)
{
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, a, b);
    if (k->s)
        rc_emplay_on_bad_result(c->em, k->s, msg);
    rc_emsrv_bad(c, "%s", msg);
    return -1;
}

static int check_result(rc_em_ctx *c, send_check *k, const cJSON *ev, const char *path, bool custom,
                        rc_em_call **ret_call)
{
    const char *idkey = custom ? "custom_tool_use_id" : "tool_use_id";
    const char *id = rc_emutil_jstr(ev, idkey);
    const cJSON *is_error = cJSON_GetObjectItemCaseSensitive(ev, "is_error");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    rc_em_call *call;
    char sub[96];

    if (!id)
        return rc_emsrv_bad(c, "%s.%s: required, a string", path, idkey), -1;
    if (is_error && !cJSON_IsBool(is_error))
        return rc_emsrv_bad(c, "%s.is_error: must be a boolean", path), -1;
    snprintf(sub, sizeof(sub), "%s.content", path);
    if (content || cJSON_IsTrue(is_error)) {
        if (check_blocks(c, content, sub, true, cJSON_IsTrue(is_error), cJSON_IsTrue(is_error)) < 0)
            return -1;
    }
    call = rc_emstore_call_find(k->s, id);
    if (!call)
        return pairing_error(c, k, "%s: no tool call with id %s was emitted in this session", idkey,
                             id);
    if (call->custom != custom)
        return pairing_error(
            c, k, "%s: %s", idkey,
            custom ? "refers to an agent.tool_use; answer it with user.tool_result and tool_use_id"
                   : "refers to an agent.custom_tool_use; answer it with "
                     "user.custom_tool_result and custom_tool_use_id");
    if (call->answered || in_batch(k->answered, k->nanswered, id))
        return pairing_error(c, k, "%s: tool call %s already has a result", idkey, id);
    if (call->ask && call->confirmed != 1)
        return pairing_error(c, k,
                             "%s: tool call %s awaits a user.tool_confirmation and was "
                             "not allowed",
                             idkey, id);
    k->answered[k->nanswered++] = id;
    *ret_call = call;
    return 0;
}

static int check_confirmation(rc_em_ctx *c, send_check *k, const cJSON *ev, const char *path,
                              rc_em_call **ret_call)
{
    const char *id = rc_emutil_jstr(ev, "tool_use_id");
    const char *result = rc_emutil_jstr(ev, "result");
    const cJSON *dm = cJSON_GetObjectItemCaseSensitive(ev, "deny_message");
    rc_em_call *call;

    if (!id)
        return rc_emsrv_bad(c, "%s.tool_use_id: required, a string", path), -1;
    if (!result || (strcmp(result, "allow") != 0 && strcmp(result, "deny") != 0))
        return rc_emsrv_bad(c, "%s.result: must be allow or deny", path), -1;
    if (dm && !cJSON_IsNull(dm) && (!cJSON_IsString(dm) || strcmp(result, "deny") != 0))
        return rc_emsrv_bad(c, "%s.deny_message: a string, only with result deny", path), -1;
    call = rc_emstore_call_find(k->s, id);
    if (!call || call->custom)
        return rc_emsrv_bad(c, "%s.tool_use_id: no agent.tool_use with id %s", path, id), -1;
    if (!call->ask || call->confirmed || call->answered ||
        in_batch(k->confirmed, k->nconfirmed, id))
        return rc_emsrv_bad(c, "%s.tool_use_id: tool call %s does not await a confirmation", path,
                            id),
               -1;
    k->confirmed[k->nconfirmed++] = id;
    *ret_call = call;
    return 0;
}

static int check_message(rc_em_ctx *c, const cJSON *ev, const char *path)
{
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    char sub[96];
    snprintf(sub, sizeof(sub), "%s.content", path);
    if (cJSON_IsString(content)) {
        if (!*content->valuestring)
            return rc_emsrv_bad(c, "%s: must not be empty", sub), -1;
        return 0; /* 10.4: a plain string is wrapped in one text block */
    }
    return check_blocks(c, content, sub, false, true, false);
}

static int check_one(rc_em_ctx *c, send_check *k, const cJSON *ev, size_t idx,
                     rc_em_call **ret_call)
{
    const char *type = rc_emutil_jstr(ev, "type");
    char path[32];
    bool is_result;

    snprintf(path, sizeof(path), "events[%zu]", idx);
    *ret_call = NULL;
    if (!cJSON_IsObject(ev) || !type)
        return rc_emsrv_bad(c, "%s.type: required", path), -1;
    if (k->initial && strcmp(type, "user.message") != 0 && strcmp(type, "user.define_outcome") != 0)
        return rc_emsrv_bad(c, "initial_%s.type: must be user.message or user.define_outcome",
                            path),
               -1;
    {
        bool known = false;
        for (size_t i = 0; send_types[i]; i++)
            if (strcmp(type, send_types[i]) == 0)
                known = true;
        if (!known)
            return rc_emsrv_bad(c, "%s.type: %s cannot be sent", path, type), -1;
    }
    is_result =
        strcmp(type, "user.tool_result") == 0 || strcmp(type, "user.custom_tool_result") == 0;
    /* 3.2: environment keys and sessions tokens post tool results; user input needs the API
     * key. */
    if (c->auth.kind != RC_EM_CRED_API_KEY && !is_result)
        return rc_emsrv_forbidden(c, "%s: a %s may only send tool results", path,
                                  c->auth.kind == RC_EM_CRED_TOKEN ? "sessions token"
                                                                   : "environment key"),
               -1;
    if (k->s && k->s->status == RC_EM_SESSION_TERMINATED)
        return rc_emsrv_bad(c, "session %s is terminated", k->s->id), -1;
    if (strcmp(type, "user.message") == 0)
        return check_message(c, ev, path);
    if (strcmp(type, "user.tool_result") == 0)
        return check_result(c, k, ev, path, false, ret_call);
    if (strcmp(type, "user.custom_tool_result") == 0)
        return check_result(c, k, ev, path, true, ret_call);
    if (strcmp(type, "user.tool_confirmation") == 0)
        return check_confirmation(c, k, ev, path, ret_call);
    return 0;
}

int rc_emroute_events_check(rc_em_ctx *c, rc_em_session *s, const cJSON *events, bool initial,
                            rc_em_call **calls)
{
    const char *answered[EVENTS_PER_SEND], *confirmed[EVENTS_PER_SEND];
    send_check k = {.s = s, .initial = initial, .answered = answered, .confirmed = confirmed};
    const cJSON *ev;
    size_t i = 0;
    int n = cJSON_GetArraySize(events);

    if (!cJSON_IsArray(events) || (!initial && n == 0))
        return rc_emsrv_bad(c, "%s: required, a non-empty array",
                            initial ? "initial_events" : "events"),
               -1;
    if (n > EVENTS_PER_SEND)
        return rc_emsrv_bad(c, "events: at most %d events per request", EVENTS_PER_SEND), -1;
    cJSON_ArrayForEach(ev, events)
    {
        if (check_one(c, &k, ev, i, &calls[i]) < 0)
            return -1;
        i++;
    }
    return 0;
}

/* ---- send: apply ---- */

static cJSON *message_copy(const cJSON *ev)
{
    cJSON *copy = cJSON_Duplicate(ev, 1);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(ev, "content");
    if (cJSON_IsString(content)) {
        cJSON *arr = cJSON_CreateArray(), *blk = cJSON_CreateObject();
        cJSON_AddStringToObject(blk, "type", "text");
        cJSON_AddStringToObject(blk, "text", content->valuestring);
        cJSON_AddItemToArray(arr, blk);
        cJSON_ReplaceItemInObjectCaseSensitive(copy, "content", arr);
    }
    return copy;
}

static void add_echo(cJSON *echoes, const rc_em_event *e, bool processed_null)
{
    cJSON *echo = cJSON_Parse(e->json);
    if (!echo)
        return;
    if (processed_null)
        cJSON_ReplaceItemInObjectCaseSensitive(echo, "processed_at", cJSON_CreateNull());
    cJSON_AddItemToArray(echoes, echo);
}

static int apply_one(rc_em_ctx *c, rc_em_session *s, const cJSON *ev, rc_em_call *call,
                     cJSON *echoes, rc_error *err)
{
    const char *type = rc_emutil_jstr(ev, "type");
    bool is_msg = strcmp(type, "user.message") == 0;
    cJSON *copy = is_msg ? message_copy(ev) : cJSON_Duplicate(ev, 1);
    rc_em_event *e;
    int r;

    if (strcmp(type, "user.tool_result") == 0 || strcmp(type, "user.custom_tool_result") == 0) {
        if (!cJSON_GetObjectItemCaseSensitive(copy, "is_error"))
            cJSON_AddFalseToObject(copy, "is_error");
        call->answered = true;
    }
    if ((r = rc_emstore_event_append(c->em, s, copy, false, &e, err)) < 0)
        return r;
    add_echo(echoes, e, is_msg);
    /* 6.5.2: input to a session without a live work item queues one. */
    if (!call || strcmp(type, "user.tool_confirmation") == 0) {
        if (strcmp(type, "system.message") != 0 &&
            (r = rc_emstore_session_ensure_work(c->em, s, err)) < 0)
            return r;
    }
    if (is_msg) {
        rc_emplay_on_user_message(c->em, s, cJSON_GetObjectItemCaseSensitive(ev, "content"));
    } else if (strcmp(type, "user.interrupt") == 0) {
        rc_emplay_on_interrupt(c->em, s);
    } else if (strcmp(type, "user.tool_confirmation") == 0) {
        bool allow = strcmp(rc_emutil_jstr(ev, "result"), "allow") == 0;
        call->confirmed = allow ? 1 : 2;
        rc_emplay_on_confirmation(c->em, s, call, allow);
    } else if (call) {
        const cJSON *is_error = cJSON_GetObjectItemCaseSensitive(ev, "is_error");
        rc_emplay_on_result(c->em, s, call, cJSON_GetObjectItemCaseSensitive(ev, "content"),
                            cJSON_IsTrue(is_error));
    }
    return 0;
}

int rc_emroute_events_apply(rc_em_ctx *c, rc_em_session *s, const cJSON *events, rc_em_call **calls,
                            cJSON *echoes, rc_error *err)
{
    const cJSON *ev;
    size_t i = 0;
    cJSON_ArrayForEach(ev, events)
    {
        int r = apply_one(c, s, ev, calls[i++], echoes, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int rc_emroute_events_send(rc_em_ctx *c)
{
    rc_em_session *s = rc_emroute_session_lookup(c);
    rc_em_call *calls[EVENTS_PER_SEND] = {0};
    const cJSON *events;
    cJSON *echoes, *o;
    rc_error err = {0};

    if (!s)
        return 0;
    events = c->body ? cJSON_GetObjectItemCaseSensitive(c->body, "events") : NULL;
    if (!events)
        return rc_emsrv_bad(c, "events: required, a non-empty array");
    if (rc_emroute_events_check(c, s, events, false, calls) < 0)
        return 0;
    echoes = cJSON_CreateArray();
    if (rc_emroute_events_apply(c, s, events, calls, echoes, &err) < 0) {
        cJSON_Delete(echoes);
        return rc_emsrv_internal(c, &err);
    }
    o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "data", echoes);
    return rc_emsrv_json(c, 200, o);
}

/* ---- list ---- */

typedef struct list_filter {
    const char *types[32];
    size_t ntypes;
    bool too_many;
} list_filter;

static enum MHD_Result collect_types(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    list_filter *f = cls;
    (void)kind;
    if (value && (strcmp(key, "types[]") == 0 || strcmp(key, "types") == 0)) {
        if (f->ntypes < 32)
            f->types[f->ntypes++] = value;
        else
            f->too_many = true;
    }
    return MHD_YES;
}

static bool type_selected(const list_filter *f, const char *type)
{
    if (!f->ntypes)
        return true;
    for (size_t i = 0; i < f->ntypes; i++)
        if (strcmp(f->types[i], type) == 0)
            return true;
    return false;
}

/* created_at[gt|gte|lt|lte] bounds against processed_at (9.1). */
static int parse_bounds(rc_em_ctx *c, int64_t b[4], bool has[4])
{
    static const char *const keys[] = {"created_at[gt]", "created_at[gte]", "created_at[lt]",
                                       "created_at[lte]"};
    for (int i = 0; i < 4; i++) {
        const char *v = rc_emsrv_query(c, keys[i]);
        has[i] = v != NULL;
        if (v && rc_emutil_parse_rfc3339(v, &b[i]) < 0) {
            rc_emsrv_bad(c, "%s: must be an RFC 3339 timestamp", keys[i]);
            return -1;
        }
    }
    return 0;
}

static bool in_bounds(const rc_em_event *e, const int64_t b[4], const bool has[4])
{
    int64_t t = e->processed_us;
    if (!has[0] && !has[1] && !has[2] && !has[3])
        return true;
    if (!t)
        return false;
    return (!has[0] || t > b[0]) && (!has[1] || t >= b[1]) && (!has[2] || t < b[2]) &&
           (!has[3] || t <= b[3]);
}

int rc_emroute_events_list(rc_em_ctx *c)
{
    rc_em_session *s = rc_emroute_session_lookup(c);
    const char *order = rc_emsrv_query(c, "order");
    list_filter f = {0};
    int64_t bounds[4] = {0};
    bool has[4];
    _cleanup_free_ rc_em_event **sel = NULL;
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT((size_t)1 << 30);
    size_t n = 0, start, count;
    _cleanup_free_ char *next = NULL;
    bool desc;

    if (!s)
        return 0;
    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0)
        return rc_emsrv_bad(c, "order: must be asc or desc");
    desc = order && strcmp(order, "desc") == 0;
    MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, collect_types, &f);
    if (f.too_many)
        return rc_emsrv_bad(c, "types: at most 32 values");
    if (parse_bounds(c, bounds, has) < 0)
        return 0;
    sel = calloc(s->nevents + 1, sizeof(*sel));
    if (!sel)
        return rc_emsrv_internal(c, NULL);
    for (size_t i = 0; i < s->nevents; i++) {
        rc_em_event *e = s->events[desc ? s->nevents - 1 - i : i];
        if (type_selected(&f, e->type) && in_bounds(e, bounds, has))
            sel[n++] = e;
    }
    if (rc_emsrv_page(c, n, &start, &count, &next) < 0)
        return 0;
    /* The stored events are already serialized: splice them into the page. */
    if (rc_buf_append_str(&out, "{\"data\":[", NULL) < 0)
        return rc_emsrv_internal(c, NULL);
    for (size_t i = start; i < start + count; i++) {
        if ((i > start && rc_buf_putc(&out, ',', NULL) < 0) ||
            rc_buf_append(&out, sel[i]->json, sel[i]->json_len, NULL) < 0)
            return rc_emsrv_internal(c, NULL);
    }
    if ((next ? rc_buf_appendf(&out, NULL, "],\"next_page\":\"%s\"}", next)
              : rc_buf_append_str(&out, "],\"next_page\":null}", NULL)) < 0)
        return rc_emsrv_internal(c, NULL);
    rc_emsrv_empty(c, 200);
    if (rc_buf_steal(&out, &c->resp.body, &c->resp.len, NULL) < 0)
        return rc_emsrv_internal(c, NULL);
    c->resp.content_type = "application/json";
    return 0;
}

int rc_emroute_events_stream(rc_em_ctx *c)
{
    rc_em_session *s = rc_emroute_session_lookup(c);
    if (!s)
        return 0;
    return rc_emsse_open(c, s);
}
