/* drain.c - one webhook-triggered drain of the work queue (see drain.h).
 *
 * The loop is deliberately plain: each iteration asks the launcher for a slot (unless one is
 * still held from an iteration that did not use it), polls once, and handles what came back.
 * Everything that touches the outside world is an ops call, so every branch here is reachable
 * from the unit tests with scripted fakes. */
#include "drain.h"

#include "cleanup.h"
#include "fcgi_config.h"
#include "json.h"
#include "webhook.h"

#include <stdlib.h>
#include <string.h>

/* ---- item sorting -------------------------------------------------------------------------- */

static const char *string_member(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool secret_ok(const char *s)
{
    size_t n = 0;
    for (; *s; s++, n++) {
        char c = *s;
        if (n >= RC_WORKSECRET_MAX)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '+' || c == '/' || c == '='))
            return false;
    }
    return true;
}

/* The session part: data.id and the secret. */
static enum rc_fcgi_item_kind classify_session(const cJSON *work, const cJSON *data,
                                               rc_fcgi_work_item *it, const char **why)
{
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(work, "secret");

    it->session_id = string_member(data, "id");
    if (!rc_id_valid(it->session_id, "sesn_")) {
        *why = "malformed session id (data.id)";
        return RC_FCGI_ITEM_MALFORMED;
    }
    if (secret && !cJSON_IsNull(secret)) {
        if (!cJSON_IsString(secret) || !secret_ok(secret->valuestring)) {
            *why = "secret is not a base64url string of acceptable length";
            return RC_FCGI_ITEM_MALFORMED;
        }
        it->secret = secret->valuestring;
    }
    *why = NULL;
    return RC_FCGI_ITEM_SESSION;
}

enum rc_fcgi_item_kind rc_fcgi_item_classify(const cJSON *work, const char *env_id,
                                             rc_fcgi_work_item *ret, const char **ret_reason)
{
    rc_fcgi_work_item it = {0};
    const cJSON *data;
    enum rc_fcgi_item_kind kind;
    const char *why = NULL;

    if (!cJSON_IsObject(work)) {
        why = "work is not a JSON object";
        kind = RC_FCGI_ITEM_UNUSABLE;
        goto out;
    }
    it.work_id = string_member(work, "id");
    it.environment_id = string_member(work, "environment_id");
    data = cJSON_GetObjectItemCaseSensitive(work, "data");
    if (cJSON_IsObject(data))
        it.data_type = string_member(data, "type");
    if (!rc_id_valid(it.work_id, "work_")) {
        why = "malformed work id";
        kind = RC_FCGI_ITEM_UNUSABLE;
    } else if (!it.environment_id || !env_id || strcmp(it.environment_id, env_id) != 0) {
        why = "environment_id is not this environment";
        kind = RC_FCGI_ITEM_UNUSABLE;
    } else if (!it.data_type || strcmp(it.data_type, "session") != 0) {
        why = "not a session item";
        kind = RC_FCGI_ITEM_NOT_SESSION;
    } else {
        kind = classify_session(work, data, &it, &why);
    }
out:
    *ret = it;
    if (ret_reason)
        *ret_reason = why;
    return kind;
}

/* ---- poll answers -------------------------------------------------------------------------- */

enum rc_fcgi_poll_outcome rc_fcgi_poll_classify(int r, const rc_api_result *res)
{
    if (r == 1)
        return RC_FCGI_POLL_ITEM;
    if (r == 0)
        return RC_FCGI_POLL_EMPTY;
    if ((r == -RC_ESTATUS || r == -RC_EFATAL) && res && res->status == 404)
        return strcmp(res->error_code, "environment_not_found") == 0 ? RC_FCGI_POLL_FATAL
                                                                     : RC_FCGI_POLL_STALE_404;
    if (r == -RC_EFATAL)
        return RC_FCGI_POLL_FATAL;
    return RC_FCGI_POLL_ERROR;
}

/* ---- the loop ------------------------------------------------------------------------------ */

struct drain {
    const rc_fcgi_drain_ops *ops;
    void *ctx;
    rc_fcgi_drain_summary s;
    bool reserved;
    bool over; /* set by item handling to end the loop with s.end */
    char (*seen)[RC_FCGI_ID_MAX + 1];
    int n_seen, max_seen;
};

static void note(struct drain *d, const char *event, const rc_fcgi_work_item *it,
                 const char *detail)
{
    if (d->ops->note)
        d->ops->note(d->ctx, event, it, detail);
}

/* True when the drain already saw this work id; otherwise remembers it. */
static bool seen_before(struct drain *d, const char *work_id)
{
    if (!work_id || !d->seen)
        return false;
    for (int i = 0; i < d->n_seen; i++)
        if (strcmp(d->seen[i], work_id) == 0)
            return true;
    if (d->n_seen < d->max_seen && strlen(work_id) <= RC_FCGI_ID_MAX)
        memcpy(d->seen[d->n_seen++], work_id, strlen(work_id) + 1);
    return false;
}

static void force_stop(struct drain *d, const rc_fcgi_work_item *it)
{
    if (d->ops->stop(d->ctx, it->work_id) == 0) {
        d->s.stopped++;
        note(d, "stopped", it, NULL);
    } else {
        d->s.stop_failed++;
        note(d, "stop_failed", it, NULL);
    }
}

/* Non-session and malformed items: ack, then force-stop (14.2 step 4, 6.4.1). */
static void claim_and_stop(struct drain *d, const rc_fcgi_work_item *it, const char *why)
{
    if (d->ops->ack(d->ctx, it->work_id) != 0) {
        d->s.ack_failed++;
        note(d, "ack_failed", it, why);
        return;
    }
    d->s.claimed++;
    note(d, "claimed_to_stop", it, why);
    force_stop(d, it);
}

static void hand_off(struct drain *d, const rc_fcgi_work_item *it)
{
    enum rc_fcgi_launch_answer a;

    if (d->ops->ack(d->ctx, it->work_id) != 0) {
        d->s.ack_failed++;
        note(d, "ack_failed", it, NULL);
        return;
    }
    d->s.claimed++;
    note(d, "claimed", it, NULL);
    a = d->ops->launch(d->ctx, it);
    d->reserved = false; /* any answer ends the reservation */
    if (a == RC_FCGI_LAUNCH_ACCEPTED) {
        d->s.handed_off++;
        note(d, "handed_off", it, NULL);
        return;
    }
    if (a == RC_FCGI_LAUNCH_REFUSED) {
        d->s.refused++;
        note(d, "refused", it, NULL);
    } else {
        d->s.handoff_failed++;
        note(d, "handoff_failed", it,
             a == RC_FCGI_LAUNCH_AT_CAPACITY ? "launcher at capacity" : "launcher unreachable");
    }
    force_stop(d, it);
}

static void handle_item(struct drain *d, const cJSON *work, const char *env_id)
{
    rc_fcgi_work_item it;
    const char *why = NULL;
    enum rc_fcgi_item_kind kind = rc_fcgi_item_classify(work, env_id, &it, &why);

    d->s.items++;
    if (seen_before(d, it.work_id)) {
        note(d, "repeated", &it, NULL);
        d->s.end = RC_FCGI_DRAIN_REPEAT;
        d->over = true;
        return;
    }
    switch (kind) {
    case RC_FCGI_ITEM_UNUSABLE:
        d->s.unusable++;
        note(d, "skipped", &it, why);
        break;
    case RC_FCGI_ITEM_NOT_SESSION:
        d->s.not_session++;
        claim_and_stop(d, &it, why);
        break;
    case RC_FCGI_ITEM_MALFORMED:
        d->s.malformed++;
        claim_and_stop(d, &it, why);
        break;
    case RC_FCGI_ITEM_SESSION:
        hand_off(d, &it);
        break;
    }
}

/* Whether the loop may go on before the next claim; sets s.end when it may not. */
static bool may_continue(struct drain *d, const rc_fcgi_drain_params *lim, int64_t start)
{
    if (d->ops->cancelled && d->ops->cancelled(d->ctx))
        d->s.end = RC_FCGI_DRAIN_SHUTDOWN;
    else if (d->s.items >= lim->max_items)
        d->s.end = RC_FCGI_DRAIN_LIMIT;
    else if (lim->deadline_ms > 0 && d->ops->now_ms(d->ctx) - start >= lim->deadline_ms)
        d->s.end = RC_FCGI_DRAIN_DEADLINE;
    else
        return true;
    return false;
}

static bool ensure_reserved(struct drain *d)
{
    enum rc_fcgi_reserve_answer a;

    if (d->reserved)
        return true;
    a = d->ops->reserve(d->ctx);
    if (a == RC_FCGI_RESERVED) {
        d->reserved = true;
        return true;
    }
    d->s.end =
        a == RC_FCGI_RESERVE_AT_CAPACITY ? RC_FCGI_DRAIN_AT_CAPACITY : RC_FCGI_DRAIN_LAUNCHER_DOWN;
    return false;
}

/* One poll and its consequences; false when the drain is over (s.end set). */
static bool poll_once(struct drain *d, const char *env_id, int *stale)
{
    _cleanup_json_ cJSON *work = NULL;

    d->s.polls++;
    switch (d->ops->poll(d->ctx, &work)) {
    case RC_FCGI_POLL_EMPTY:
        d->s.end = RC_FCGI_DRAIN_EMPTY;
        return false;
    case RC_FCGI_POLL_STALE_404:
        d->s.stale_404++;
        if (++*stale > RC_FCGI_DRAIN_404_RETRIES) {
            d->s.end = RC_FCGI_DRAIN_POLL_ERROR;
            return false;
        }
        return true;
    case RC_FCGI_POLL_FATAL:
        d->s.end = RC_FCGI_DRAIN_POLL_FATAL;
        return false;
    case RC_FCGI_POLL_ERROR:
        d->s.end = RC_FCGI_DRAIN_POLL_ERROR;
        return false;
    case RC_FCGI_POLL_ITEM:
        break;
    }
    *stale = 0;
    handle_item(d, work, env_id);
    return !d->over;
}

void rc_fcgi_drain_run(const rc_fcgi_drain_ops *ops, void *ctx, const rc_fcgi_drain_params *p,
                       rc_fcgi_drain_summary *ret)
{
    struct drain d = {.ops = ops, .ctx = ctx};
    int64_t start = ops->now_ms(ctx);
    int stale = 0;

    d.max_seen = p->max_items > 0 ? p->max_items : 1;
    d.seen = calloc((size_t)d.max_seen, sizeof *d.seen); /* NULL: no repeat detection */
    while (may_continue(&d, p, start) && ensure_reserved(&d) &&
           poll_once(&d, p->environment_id, &stale))
        ;
    if (d.reserved)
        ops->release(ctx);
    free(d.seen);
    *ret = d.s;
}

/* ---- the answer ---------------------------------------------------------------------------- */

const char *rc_fcgi_drain_end_name(enum rc_fcgi_drain_end end)
{
    switch (end) {
    case RC_FCGI_DRAIN_EMPTY:
        return "drained";
    case RC_FCGI_DRAIN_LIMIT:
        return "limit_reached";
    case RC_FCGI_DRAIN_DEADLINE:
        return "deadline_reached";
    case RC_FCGI_DRAIN_AT_CAPACITY:
        return "at_capacity";
    case RC_FCGI_DRAIN_REPEAT:
        return "repeated_item";
    case RC_FCGI_DRAIN_LAUNCHER_DOWN:
        return "launcher_unavailable";
    case RC_FCGI_DRAIN_POLL_ERROR:
        return "poll_failed";
    case RC_FCGI_DRAIN_POLL_FATAL:
        return "poll_refused";
    case RC_FCGI_DRAIN_SHUTDOWN:
        return "shutting_down";
    }
    return "unknown";
}

int rc_fcgi_drain_http_status(const rc_fcgi_drain_summary *s)
{
    switch (s->end) {
    case RC_FCGI_DRAIN_LAUNCHER_DOWN:
    case RC_FCGI_DRAIN_POLL_ERROR:
    case RC_FCGI_DRAIN_SHUTDOWN:
        return 503;
    case RC_FCGI_DRAIN_POLL_FATAL:
        return 500;
    default:
        return 200;
    }
}

int rc_fcgi_drain_summary_json(const rc_fcgi_drain_summary *s, rc_buf *out, rc_error *err)
{
    return rc_buf_appendf(out, err,
                          "{\"status\":\"%s\",\"claimed\":%d,\"handed_off\":%d,\"refused\":%d,"
                          "\"handoff_failed\":%d,\"not_session\":%d,\"malformed\":%d,"
                          "\"skipped\":%d,\"ack_failed\":%d,\"stopped\":%d,\"stop_failed\":%d,"
                          "\"polls\":%d}",
                          rc_fcgi_drain_end_name(s->end), s->claimed, s->handed_off, s->refused,
                          s->handoff_failed, s->not_session, s->malformed, s->unusable,
                          s->ack_failed, s->stopped, s->stop_failed, s->polls);
}
