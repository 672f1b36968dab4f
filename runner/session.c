/* session.c - the session tool runner algorithm (see session.h; protocol 11-13).
 *
 * Layout: id sets (a small chained hash table, capped), the held-call list (arrival order, as the
 * SDK's Map iterates), the idle clock with its deferral (IdleClock in SessionToolRunner.ts), then
 * routing, execution and result sending, the history pass, live event handling and the main
 * loop. Function names follow the SDK's private methods where there is one, so the two can be
 * read side by side. */
#include "session.h"

#include "cleanup.h"
#include "json.h"
#include "log.h"

#include "http.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

/* ---- id sets ------------------------------------------------------------------------------ */

struct ident {
    struct ident *next;
    int val;
    char key[];
};

struct idmap {
    struct ident **buckets;
    size_t nbuckets, count;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct ident **idmap_slot(const struct idmap *m, const char *key)
{
    struct ident **p;
    if (!m->nbuckets)
        return NULL;
    p = &m->buckets[hash_str(key) & (m->nbuckets - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

static bool idmap_get(const struct idmap *m, const char *key, int *ret_val)
{
    struct ident **p = idmap_slot(m, key);
    if (!p || !*p)
        return false;
    if (ret_val)
        *ret_val = (*p)->val;
    return true;
}

static int idmap_grow(struct idmap *m)
{
    size_t nb = m->nbuckets ? m->nbuckets * 2 : 64;
    struct ident **b = calloc(nb, sizeof *b);
    if (!b)
        return -RC_ENOMEM;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct ident *e = m->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            size_t k = hash_str(e->key) & (nb - 1);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
    return 0;
}

/* Insert or update. */
static int idmap_put(struct idmap *m, const char *key, int val, rc_error *err)
{
    struct ident **p, *e;
    size_t len = strlen(key);

    if ((p = idmap_slot(m, key)) && *p) {
        (*p)->val = val;
        return 0;
    }
    if (m->count >= RC_SESSION_MAX_IDS)
        return rc_error_set(err, RC_ETOOBIG, "more than %u ids in one session run",
                            RC_SESSION_MAX_IDS);
    if (m->count >= m->nbuckets && idmap_grow(m) < 0)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if (!(e = malloc(sizeof *e + len + 1)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    memcpy(e->key, key, len + 1);
    e->val = val;
    p = &m->buckets[hash_str(key) & (m->nbuckets - 1)];
    e->next = *p;
    *p = e;
    m->count++;
    return 0;
}

static void idmap_del(struct idmap *m, const char *key)
{
    struct ident **p = idmap_slot(m, key), *e;
    if (!p || !*p)
        return;
    e = *p;
    *p = e->next;
    free(e);
    m->count--;
}

static void idmap_free(struct idmap *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct ident *e = m->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->buckets);
    *m = (struct idmap){0};
}

/* ---- event accessors ---------------------------------------------------------------------- */

static const char *ev_str(const cJSON *ev, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *ev_type(const cJSON *ev)
{
    const char *t = ev_str(ev, "type");
    return t ? t : "";
}

/* An id we accept as a set key: a non-empty string of bounded length. */
static const char *ev_id(const cJSON *ev, const char *key)
{
    const char *id = ev_str(ev, key);
    return id && *id && strlen(id) <= RC_SESSION_ID_MAX ? id : NULL;
}

static bool type_is(const char *t, const char *want)
{
    return strcmp(t, want) == 0;
}

static bool is_call_type(const char *t)
{
    return type_is(t, "agent.tool_use") || type_is(t, "agent.custom_tool_use");
}

/* 12.2: an idle whose stop reason is anything but requires_action (absent included) ends the
 * turn, as the SDK's `ev.stop_reason?.type !== 'requires_action'`. */
static bool ends_turn(const cJSON *ev)
{
    const cJSON *sr;
    if (!type_is(ev_type(ev), "session.status_idle"))
        return false;
    sr = cJSON_GetObjectItemCaseSensitive(ev, "stop_reason");
    return !(cJSON_IsObject(sr) && ev_str(sr, "type") &&
             type_is(ev_str(sr, "type"), "requires_action"));
}

static bool is_idle_neutral(const char *t)
{
    return type_is(t, "user.tool_confirmation") || type_is(t, "session.thread_status_terminated");
}

/* ---- the run's state ---------------------------------------------------------------------- */

struct idle_clock {
    long long max_idle_ms;
    bool armed;
    int64_t deadline_ms;
    bool arm_pending;
    bool may_be_stale;
    struct idmap blockers;
};

struct rc_session {
    rc_session_io io;
    struct idmap seen, answered, verdicts, terminated_threads;
    cJSON **held; /* duplicated call events awaiting confirmation, arrival order */
    size_t nheld, held_cap;
    struct idle_clock idle;
    _Atomic int64_t send_window_ms;
    int fatal; /* a positive RC_E* once an internal failure poisoned the run */
    /* After a failed history read: when to list again (0 = not due) and the back-off used. A live
     * stream may stay quiet for ever while a call listed only in history waits (the agent waits
     * for its result), so the runner does not count on a reconnect to fill the gap. */
    int64_t relist_at_ms;
    int64_t relist_backoff_ms;
};

static int64_t now_ms(rc_session *s)
{
    return s->io.now_ms(s->io.ud);
}

static bool cancelled(rc_session *s)
{
    return s->io.cancelled && s->io.cancelled(s->io.ud);
}

/* ---- idle clock (12) ---------------------------------------------------------------------- */

static void idle_disarm(rc_session *s)
{
    s->idle.arm_pending = false;
    s->idle.armed = false;
}

static void idle_arm(rc_session *s)
{
    if (s->idle.max_idle_ms <= 0)
        return;
    if (s->idle.blockers.count > 0) {
        s->idle.arm_pending = true;
        return;
    }
    s->idle.arm_pending = false;
    s->idle.armed = true;
    s->idle.deadline_ms = now_ms(s) + s->idle.max_idle_ms;
}

static void idle_note_event(rc_session *s, const cJSON *ev)
{
    const char *t = ev_type(ev);
    if (s->idle.may_be_stale && type_is(t, "session.thread_status_terminated"))
        idle_disarm(s);
    if (is_idle_neutral(t))
        return;
    s->idle.may_be_stale = false;
    if (ends_turn(ev))
        idle_arm(s);
    else
        idle_disarm(s);
}

static int idle_block(rc_session *s, const char *id, rc_error *err)
{
    int r = idmap_put(&s->idle.blockers, id, 1, err);
    if (r < 0)
        return r;
    if (s->idle.armed) { /* stale countdown: turn it into a pending arm */
        s->idle.arm_pending = true;
        s->idle.armed = false;
    }
    return 0;
}

static void idle_unblock(rc_session *s, const char *id)
{
    idmap_del(&s->idle.blockers, id);
    if (s->idle.blockers.count == 0 && s->idle.arm_pending)
        idle_arm(s);
}

static void idle_abandon(rc_session *s, const char *id)
{
    if (s->idle.may_be_stale)
        idle_disarm(s);
    idle_unblock(s, id);
}

bool rc_session_idle_deadline(rc_session *s, int64_t *ret_deadline_ms)
{
    if (!s->idle.armed)
        return false;
    *ret_deadline_ms = s->idle.deadline_ms;
    return true;
}

/* ---- held calls (11) ---------------------------------------------------------------------- */

static ssize_t held_index(rc_session *s, const char *id)
{
    for (size_t i = 0; i < s->nheld; i++)
        if (strcmp(ev_str(s->held[i], "id"), id) == 0)
            return (ssize_t)i;
    return -1;
}

static int held_add(rc_session *s, const cJSON *ev, rc_error *err)
{
    cJSON *dup;
    if (s->nheld == s->held_cap) {
        size_t cap = s->held_cap ? s->held_cap * 2 : 8;
        cJSON **n = cap <= RC_SESSION_MAX_IDS ? realloc(s->held, cap * sizeof *n) : NULL;
        if (!n)
            return rc_error_set(err, RC_ENOMEM, "too many held calls");
        s->held = n;
        s->held_cap = cap;
    }
    if (!(dup = cJSON_Duplicate(ev, true)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    s->held[s->nheld++] = dup;
    return 0;
}

/* Remove the held call with this id and hand it to the caller (NULL when not held). */
static cJSON *held_take(rc_session *s, const char *id)
{
    ssize_t i = held_index(s, id);
    cJSON *ev;
    if (i < 0)
        return NULL;
    ev = s->held[i];
    memmove(&s->held[i], &s->held[i + 1], (s->nheld - (size_t)i - 1) * sizeof *s->held);
    s->nheld--;
    return ev;
}

static bool in_terminated_thread(rc_session *s, const cJSON *ev)
{
    const char *th = ev_str(ev, "session_thread_id");
    return th && *th && idmap_get(&s->terminated_threads, th, NULL);
}

/* Drop the held calls of terminated session threads, and their idle-clock blockers. */
static void release_terminated_holds(rc_session *s)
{
    for (size_t i = 0; i < s->nheld;) {
        if (!in_terminated_thread(s, s->held[i])) {
            i++;
            continue;
        }
        _cleanup_json_ cJSON *ev = held_take(s, ev_str(s->held[i], "id"));
        rc_log_info("session thread terminated; not executing held call %s (%s)", ev_str(ev, "id"),
                    ev_str(ev, "name") ? ev_str(ev, "name") : "");
        idle_abandon(s, ev_str(ev, "id"));
    }
}

/* ---- results ------------------------------------------------------------------------------ */

static double rand_unit(rc_session *s)
{
    uint64_t x = 0;
    if (s->io.rand)
        return s->io.rand(s->io.ud);
    if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x)
        return 0.0;
    return (double)(x >> 11) / 9007199254740992.0;
}

/* 10.3.3 + the SDK's toSessionContent: never an empty text, never an empty array. */
static int normalize_content(cJSON **content, rc_error *err)
{
    cJSON *b;
    if (!cJSON_IsArray(*content)) {
        cJSON_Delete(*content);
        if (!(*content = cJSON_CreateArray()))
            return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    cJSON_ArrayForEach(b, *content)
    {
        const char *t = ev_str(b, "type");
        const char *text = ev_str(b, "text");
        if (t && type_is(t, "text") && (!text || !*text)) {
            cJSON *rep = cJSON_CreateString("(no output)");
            if (!rep || !cJSON_ReplaceItemInObjectCaseSensitive(b, "text", rep)) {
                if (!rep || !cJSON_AddItemToObject(b, "text", rep)) {
                    cJSON_Delete(rep);
                    return rc_error_set(err, RC_ENOMEM, "out of memory");
                }
            }
        }
    }
    if (cJSON_GetArraySize(*content) == 0) {
        cJSON *blk = cJSON_CreateObject();
        if (!blk || !cJSON_AddStringToObject(blk, "type", "text") ||
            !cJSON_AddStringToObject(blk, "text", "(no output)") ||
            !cJSON_AddItemToArray(*content, blk)) {
            cJSON_Delete(blk);
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
    }
    return 0;
}

static size_t content_bytes(const cJSON *content)
{
    const cJSON *b;
    size_t n = 0;
    cJSON_ArrayForEach(b, content)
    {
        const char *text = ev_str(b, "text");
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(b, "source");
        const char *data = ev_str(src, "data");
        n += text ? strlen(text) : 0;
        n += data ? strlen(data) : 0;
    }
    return n;
}

/* A run interrupted by a local shutdown: say so first, keep the tool's own text after it. */
static int mark_cancelled(cJSON *content, rc_error *err)
{
    cJSON *blk = cJSON_CreateObject();
    if (!blk || !cJSON_AddStringToObject(blk, "type", "text") ||
        !cJSON_AddStringToObject(blk, "text", RC_SESSION_CANCELLED_TEXT) ||
        !cJSON_InsertItemInArray(content, 0, blk)) {
        cJSON_Delete(blk);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    return 0;
}

/* 9.3.4: user.tool_result + tool_use_id for agent.tool_use, user.custom_tool_result +
 * custom_tool_use_id for agent.custom_tool_use; is_error always present (10.3.1). */
static cJSON *build_result(const char *id, bool custom, bool is_error, cJSON *content)
{
    cJSON *ev = cJSON_CreateObject();
    if (!ev ||
        !cJSON_AddStringToObject(ev, "type",
                                 custom ? "user.custom_tool_result" : "user.tool_result") ||
        !cJSON_AddStringToObject(ev, custom ? "custom_tool_use_id" : "tool_use_id", id) ||
        !cJSON_AddBoolToObject(ev, "is_error", is_error)) {
        cJSON_Delete(ev);
        cJSON_Delete(content);
        return NULL;
    }
    cJSON_AddItemToObject(ev, "content", content);
    return ev;
}

static int64_t send_backoff(rc_session *s, int attempt)
{
    int64_t base = RC_SESSION_SEND_BACKOFF_MS;
    for (int i = 1; i < attempt && base < RC_SESSION_SEND_BACKOFF_CAP_MS; i++)
        base *= 2;
    if (base > RC_SESSION_SEND_BACKOFF_CAP_MS)
        base = RC_SESSION_SEND_BACKOFF_CAP_MS;
    return (int64_t)((double)base * (1.0 - 0.25 * rand_unit(s)));
}

/* 13.9: retry until success, a fatal 4xx, cancellation, or the window (the lease TTL) runs out.
 * Returns 0, -RC_EFATAL, -RC_ETIMEOUT (window over), -RC_ECANCELED or a transient code. */
static int send_result(rc_session *s, const cJSON *event, const char *id, int *ret_attempts)
{
    int64_t start = now_ms(s);
    int attempt = 0, r = 0;
    rc_error e = {0};

    for (;;) {
        int64_t window = atomic_load(&s->send_window_ms), remaining, wait;
        if (cancelled(s))
            return -RC_ECANCELED;
        attempt++;
        *ret_attempts = attempt;
        r = s->io.send(s->io.ud, event, start + window, &e);
        if (r == 0 || r == -RC_ECANCELED)
            return r;
        if (r == -RC_EFATAL)
            break;
        remaining = window - (now_ms(s) - start);
        if (remaining <= 0) {
            r = -RC_ETIMEOUT;
            break;
        }
        wait = send_backoff(s, attempt);
        if (wait > remaining)
            wait = remaining;
        rc_log_warn("tool result send failed; retrying (call %s, attempt %d, back-off %lld ms): %s",
                    id, attempt, (long long)wait, e.msg);
        if (s->io.sleep(s->io.ud, wait) < 0)
            return -RC_ECANCELED;
    }
    rc_log_error("failed to send tool result (call %s, %d attempts): %s", id, attempt, e.msg);
    return r;
}

/* ---- executing a call (13.7) -------------------------------------------------------------- */

static void report(rc_session *s, const rc_session_call_report *rep)
{
    if (s->io.on_call)
        s->io.on_call(s->io.ud, rep);
}

/* Run the tool; fill *res with the model-facing outcome. -RC_ENOTFOUND: not ours. */
static int run_tool(rc_session *s, const cJSON *call, rc_tool_result *res, rc_error *err)
{
    rc_error cause = {0};
    int r = s->io.run_tool(s->io.ud, call, res, &cause);
    if (r == -RC_ENOTFOUND)
        return r;
    if (r < 0) { /* 13.7.5: any other failure becomes "Error: <message>" */
        cJSON *content = cJSON_CreateArray(), *blk = cJSON_CreateObject();
        char text[RC_ERR_MSG_MAX + 16];
        snprintf(text, sizeof text, "Error: %s", cause.msg[0] ? cause.msg : rc_errcode_name(-r));
        rc_tool_result_clear(res);
        if (!content || !blk || !cJSON_AddStringToObject(blk, "type", "text") ||
            !cJSON_AddStringToObject(blk, "text", text) || !cJSON_AddItemToArray(content, blk)) {
            cJSON_Delete(blk);
            cJSON_Delete(content);
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
        res->content = content;
        res->is_error = 1;
    }
    return normalize_content(&res->content, err);
}

/* Post the result; on cancellation, once more if the lifecycle allows (14.5.3). */
static int post_result(rc_session *s, const cJSON *event, const char *id, int *ret_attempts)
{
    int64_t deadline = 0;
    rc_error e = {0};
    int r = send_result(s, event, id, ret_attempts);

    if (r != -RC_ECANCELED || !s->io.final_post || !s->io.final_post(s->io.ud, &deadline))
        return r;
    (*ret_attempts)++;
    r = s->io.send(s->io.ud, event, deadline, &e);
    if (r < 0)
        rc_log_warn("final result post for call %s failed: %s", id, e.msg);
    return r;
}

static int execute(rc_session *s, const cJSON *call, bool confirmed, rc_error *err)
{
    _cleanup_(rc_tool_result_clear) rc_tool_result res = {0};
    _cleanup_json_ cJSON *event = NULL;
    const char *id = ev_str(call, "id"), *name = ev_str(call, "name");
    bool custom = type_is(ev_type(call), "agent.custom_tool_use");
    rc_session_call_report rep = {
        .id = id, .name = name ? name : "", .custom = custom, .confirmed = confirmed};
    int64_t t0;
    int r;

    if (idmap_get(&s->answered, id, NULL))
        return 0;
    if (cancelled(s)) /* no new tool once the run is shutting down */
        return -RC_ECANCELED;
    rc_log_info("executing tool %s (call %s)", rep.name, id);
    t0 = now_ms(s);
    r = run_tool(s, call, &res, err);
    rep.duration_ms = now_ms(s) - t0;
    if (r == -RC_ENOTFOUND) {
        rc_log_info("tool %s not owned by this runner; leaving call %s pending for its owner",
                    rep.name, id);
        if (confirmed) /* the approval kept the idle countdown pending: drop it instead */
            idle_disarm(s);
        rep.outcome = RC_CALL_NOT_OWNED;
        report(s, &rep);
        return 0;
    }
    if (r < 0)
        return r;
    if (cancelled(s) && res.is_error && (r = mark_cancelled(res.content, err)) < 0)
        return r;
    rep.is_error = res.is_error != 0;
    rep.output_bytes = content_bytes(res.content);
    if (!(event = build_result(id, custom, res.is_error != 0, res.content)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    res.content = NULL; /* now owned by event */
    r = post_result(s, event, id, &rep.attempts);
    if (r == 0 && (r = idmap_put(&s->answered, id, 1, err)) < 0)
        return r;
    rep.outcome = r == 0 ? RC_CALL_POSTED : RC_CALL_NOT_POSTED;
    report(s, &rep);
    return cancelled(s) ? -RC_ECANCELED : 0;
}

/* ---- routing and permission gating (11, 13.6) --------------------------------------------- */

enum perm { PERM_ABSENT, PERM_ALLOW, PERM_DENY, PERM_OTHER };

/* evaluated_permission as the SDK reads it: absent (undefined) and "allow" execute; "deny"
 * denies; "ask", null, and anything unrecognised are held (fail closed). */
static int call_permission(const cJSON *ev)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(ev, "evaluated_permission");
    if (!p)
        return PERM_ABSENT;
    if (cJSON_IsString(p) && type_is(p->valuestring, "allow"))
        return PERM_ALLOW;
    if (cJSON_IsString(p) && type_is(p->valuestring, "deny"))
        return PERM_DENY;
    return PERM_OTHER;
}

static int apply_verdict(rc_session *s, const cJSON *ev, bool allow, rc_error *err)
{
    const char *id = ev_str(ev, "id");
    _cleanup_json_ cJSON *taken = held_take(s, id); /* may be ev itself: freed at the end */
    bool was_held = taken != NULL;
    int r;

    if (allow) {
        rc_log_info("tool call %s confirmed", id);
        if (!was_held && (r = idle_block(s, id, err)) < 0)
            return r;
        r = execute(s, ev, true, err);
        idle_unblock(s, id); /* the sole place an allow's blocker retires */
        return r;
    }
    if (was_held)
        idle_unblock(s, id);
    if ((r = idmap_put(&s->answered, id, 1, err)) < 0)
        return r;
    rc_log_info("tool call %s denied; not executing", id);
    report(s, &(rc_session_call_report){.id = id,
                                        .name = ev_str(ev, "name") ? ev_str(ev, "name") : "",
                                        .custom = type_is(ev_type(ev), "agent.custom_tool_use"),
                                        .outcome = RC_CALL_DENIED});
    return 0;
}

static int route_call(rc_session *s, const cJSON *ev, rc_error *err)
{
    const char *id = ev_str(ev, "id");
    int perm = call_permission(ev), v, r;

    if (in_terminated_thread(s, ev)) {
        rc_log_debug("session thread terminated; not executing call %s", id);
        return 0;
    }
    if (perm == PERM_DENY) /* a server-side deny overrides any recorded verdict (11.4) */
        return apply_verdict(s, ev, false, err);
    if (idmap_get(&s->verdicts, id, &v))
        return apply_verdict(s, ev, v == 1, err);
    if (perm == PERM_ABSENT || perm == PERM_ALLOW)
        return execute(s, ev, false, err);
    if (held_index(s, id) >= 0) /* a reconcile re-routes a held call: keep the hold */
        return 0;
    rc_log_info("tool call %s awaiting confirmation; holding", id);
    if ((r = held_add(s, ev, err)) < 0)
        return r;
    return idle_block(s, id, err);
}

/* Record a verdict and release the held call it gates, if any (11.3, 11.5). */
static int note_confirmation(rc_session *s, const cJSON *ev, rc_error *err)
{
    const char *id = ev_id(ev, "tool_use_id");
    const char *result = ev_str(ev, "result");
    bool allow = result && type_is(result, "allow");
    ssize_t i;
    int r;

    if (!id)
        return 0;
    if ((r = idmap_put(&s->verdicts, id, allow ? 1 : 0, err)) < 0)
        return r;
    if ((i = held_index(s, id)) < 0)
        return 0;
    return apply_verdict(s, s->held[i], allow, err);
}

/* ---- reconcile (13.3) --------------------------------------------------------------------- */

struct pass {
    rc_session *s;
    cJSON **pending; /* duplicated calls not answered when met, history order */
    size_t npending, cap;
    bool last_ended_turn;
    int fatal;
    rc_error fatal_err;
};

static void pass_free(struct pass *p)
{
    for (size_t i = 0; i < p->npending; i++)
        cJSON_Delete(p->pending[i]);
    free(p->pending);
}

static int pass_keep(struct pass *p, const cJSON *ev)
{
    cJSON *dup;
    if (p->npending == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        cJSON **n = cap <= RC_SESSION_MAX_IDS ? realloc(p->pending, cap * sizeof *n) : NULL;
        if (!n)
            return -RC_ENOMEM;
        p->pending = n;
        p->cap = cap;
    }
    if (!(dup = cJSON_Duplicate(ev, true)))
        return -RC_ENOMEM;
    p->pending[p->npending++] = dup;
    return 0;
}

/* #ingestHistory */
static int ingest_history(struct pass *p, const cJSON *ev, rc_error *err)
{
    rc_session *s = p->s;
    const char *t = ev_type(ev), *id;
    int r = 0;

    if (is_call_type(t)) {
        if (!(id = ev_id(ev, "id")))
            return 0;
        if ((r = idmap_put(&s->seen, id, 1, err)) < 0)
            return r;
        if (!idmap_get(&s->answered, id, NULL) && pass_keep(p, ev) < 0)
            return rc_error_set(err, RC_ENOMEM, "out of memory");
    } else if (type_is(t, "user.tool_result") && (id = ev_id(ev, "tool_use_id"))) {
        r = idmap_put(&s->answered, id, 1, err);
    } else if (type_is(t, "user.custom_tool_result") && (id = ev_id(ev, "custom_tool_use_id"))) {
        r = idmap_put(&s->answered, id, 1, err);
    } else if (type_is(t, "user.tool_confirmation") && (id = ev_id(ev, "tool_use_id"))) {
        /* Record only: the routing pass below applies it. */
        const char *res = ev_str(ev, "result");
        if (!idmap_get(&s->answered, id, NULL))
            r = idmap_put(&s->verdicts, id, res && type_is(res, "allow") ? 1 : 0, err);
    } else if (type_is(t, "session.thread_status_terminated") &&
               (id = ev_id(ev, "session_thread_id"))) {
        r = idmap_put(&s->terminated_threads, id, 1, err);
    }
    return r;
}

static int on_history_page(const cJSON *data, void *ud, rc_error *err)
{
    struct pass *p = ud;
    const cJSON *ev;
    (void)err;
    cJSON_ArrayForEach(ev, data)
    {
        int r;
        if (!cJSON_IsObject(ev))
            continue;
        if ((r = ingest_history(p, ev, &p->fatal_err)) < 0) {
            p->fatal = -r;
            return r;
        }
        if (!is_idle_neutral(ev_type(ev)))
            p->last_ended_turn = ends_turn(ev);
    }
    return 0;
}

/* Re-list back-off after a failed history read: the stream reconnect's schedule (13.4). */
#define RELIST_FIRST_MS 500
#define RELIST_MAX_MS   10000

static void reconcile_list_failed(rc_session *s, struct pass *p, const rc_error *e)
{
    s->relist_backoff_ms =
        s->relist_backoff_ms
            ? (s->relist_backoff_ms * 2 > RELIST_MAX_MS ? RELIST_MAX_MS : s->relist_backoff_ms * 2)
            : RELIST_FIRST_MS;
    s->relist_at_ms = now_ms(s) + s->relist_backoff_ms;
    rc_log_warn("reconcile list failed; continuing with the live stream, listing again in %lld ms: "
                "%s",
                (long long)s->relist_backoff_ms, e->msg);
    for (size_t i = 0; i < p->npending; i++)
        idmap_del(&s->seen, ev_str(p->pending[i], "id"));
    s->idle.may_be_stale = true; /* noteHistoryRead(false) */
    release_terminated_holds(s);
}

/* Step 5: a held call whose verdict is known (its tool_use may be outside the listed window). */
static int apply_known_verdicts(rc_session *s, rc_error *err)
{
    size_t n = s->nheld;
    _cleanup_free_ char **ids = n ? calloc(n, sizeof *ids) : NULL;
    int r = 0;

    if (n && !ids)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(ids[i] = strdup(ev_str(s->held[i], "id"))))
            r = rc_error_set(err, RC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && r == 0; i++) {
        ssize_t k = held_index(s, ids[i]);
        int v;
        if (k >= 0 && idmap_get(&s->verdicts, ids[i], &v))
            r = apply_verdict(s, s->held[k], v == 1, err);
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    return r;
}

int rc_session_reconcile(rc_session *s, rc_error *err)
{
    _cleanup_(pass_free) struct pass p = {.s = s};
    rc_error e = {0};
    size_t outstanding = 0;
    int r;

    if (s->fatal)
        return rc_error_set(err, s->fatal, "session run already failed");
    r = s->io.list(s->io.ud, on_history_page, &p, &e);
    if (p.fatal) {
        s->fatal = p.fatal;
        if (err)
            *err = p.fatal_err;
        return -p.fatal;
    }
    if (r == -RC_ECANCELED || cancelled(s))
        return -RC_ECANCELED;
    if (r < 0) {
        reconcile_list_failed(s, &p, &e);
        return 0;
    }
    s->idle.may_be_stale = false; /* noteHistoryRead(true) */
    s->relist_at_ms = s->relist_backoff_ms = 0;
    release_terminated_holds(s);
    idle_disarm(s); /* before routing: a stale countdown must not fire over a running tool */
    for (size_t i = 0; i < p.npending; i++) {
        if (idmap_get(&s->answered, ev_str(p.pending[i], "id"), NULL))
            continue;
        if ((r = route_call(s, p.pending[i], err)) < 0)
            return r;
    }
    if ((r = apply_known_verdicts(s, err)) < 0)
        return r;
    for (size_t i = 0; i < p.npending; i++) {
        const char *id = ev_str(p.pending[i], "id");
        if (!idmap_get(&s->answered, id, NULL) && !in_terminated_thread(s, p.pending[i]) &&
            held_index(s, id) < 0)
            outstanding++;
    }
    if (p.last_ended_turn && outstanding == 0)
        idle_arm(s);
    else
        idle_disarm(s);
    return 0;
}

/* ---- live events (13.5) ------------------------------------------------------------------- */

int rc_session_on_event(rc_session *s, const cJSON *ev, rc_error *err)
{
    const char *t = ev_type(ev), *id;
    int r = 0;

    if (s->fatal)
        return rc_error_set(err, s->fatal, "session run already failed");
    idle_note_event(s, ev);
    if (is_call_type(t)) {
        if (!(id = ev_id(ev, "id"))) {
            rc_log_warn("ignoring a %s event without a usable id", t);
            return 0;
        }
        if (idmap_get(&s->seen, id, NULL))
            return 0; /* deduplication by event id */
        if ((r = idmap_put(&s->seen, id, 1, err)) < 0)
            return r;
        return route_call(s, ev, err);
    }
    if (type_is(t, "user.tool_confirmation"))
        return note_confirmation(s, ev, err);
    if (type_is(t, "user.tool_result") && (id = ev_id(ev, "tool_use_id")))
        return idmap_put(&s->answered, id, 1, err);
    if (type_is(t, "user.custom_tool_result") && (id = ev_id(ev, "custom_tool_use_id")))
        return idmap_put(&s->answered, id, 1, err);
    if (type_is(t, "session.thread_status_terminated")) {
        if ((id = ev_id(ev, "session_thread_id")) &&
            (r = idmap_put(&s->terminated_threads, id, 1, err)) < 0)
            return r;
        release_terminated_holds(s);
        return 0;
    }
    if (type_is(t, "session.status_terminated") || type_is(t, "session.deleted")) {
        rc_log_info("session terminated (%s)", t);
        return 1;
    }
    return 0;
}

/* ---- main loop (13.2) --------------------------------------------------------------------- */

const char *rc_session_end_name(int end)
{
    switch (end) {
    case RC_SESSION_END_IDLE:
        return "idle";
    case RC_SESSION_END_TERMINATED:
        return "session_terminated";
    case RC_SESSION_END_STREAM_FATAL:
        return "stream_fatal";
    case RC_SESSION_END_CANCELLED:
        return "cancelled";
    default:
        return "error";
    }
}

bool rc_session_relist_due(rc_session *s, int64_t *ret_at_ms)
{
    if (!s->relist_at_ms)
        return false;
    if (ret_at_ms)
        *ret_at_ms = s->relist_at_ms;
    return true;
}

int rc_session_tick(rc_session *s, rc_error *err)
{
    if (!s->relist_at_ms || now_ms(s) < s->relist_at_ms)
        return 0;
    s->relist_at_ms = 0;
    return rc_session_reconcile(s, err);
}

/* The loop's deadline for rc_stream_next: the earlier of the idle expiry and a due re-list,
 * converted from io's clock to the monotonic clock the stream waits on (they are the same clock
 * in production). */
static int64_t wait_deadline(rc_session *s)
{
    int64_t d, relist;
    bool have = rc_session_idle_deadline(s, &d);
    if (rc_session_relist_due(s, &relist) && (!have || relist < d)) {
        d = relist;
        have = true;
    }
    if (!have)
        return 0;
    d = rc_http_now_mono_ms() + (d - now_ms(s));
    return d > 0 ? d : 1;
}

static int handle_item(rc_session *s, rc_stream_item *it, rc_error *err)
{
    int r;
    switch (it->kind) {
    case RC_STREAM_OPENED:
        r = rc_session_reconcile(s, err);
        return r == -RC_ECANCELED ? RC_SESSION_END_CANCELLED : r;
    case RC_STREAM_EVENT:
        r = rc_session_on_event(s, it->event, err);
        if (r == 1)
            return RC_SESSION_END_TERMINATED;
        return r == -RC_ECANCELED ? RC_SESSION_END_CANCELLED : r;
    case RC_STREAM_FATAL:
        return RC_SESSION_END_STREAM_FATAL;
    default:
        return 0;
    }
}

int rc_session_serve(rc_session *s, rc_stream *stream, rc_error *err)
{
    for (;;) {
        rc_stream_item it = {0};
        int64_t idle_at;
        int r;

        if (cancelled(s))
            return RC_SESSION_END_CANCELLED;
        r = rc_stream_next(stream, wait_deadline(s), &it);
        if (r < 0)
            return RC_SESSION_END_CANCELLED;
        if (r == 0) {
            if ((r = rc_session_tick(s, err)) < 0)
                return r == -RC_ECANCELED ? RC_SESSION_END_CANCELLED : r;
            if (rc_session_idle_deadline(s, &idle_at) && now_ms(s) >= idle_at) {
                rc_log_info("session idle after its turn ended; stopping (max idle %lld ms)",
                            s->idle.max_idle_ms);
                return RC_SESSION_END_IDLE;
            }
            continue;
        }
        r = handle_item(s, &it, err);
        rc_stream_item_clear(&it);
        if (r != 0)
            return r;
    }
}

/* ---- lifetime and introspection ----------------------------------------------------------- */

int rc_session_new(const rc_session_config *cfg, const rc_session_io *io, rc_session **ret,
                   rc_error *err)
{
    rc_session *s;
    if (!io->list || !io->send || !io->run_tool || !io->sleep || !io->now_ms)
        return rc_error_set(err, RC_EINVAL, "session io is incomplete");
    if (!(s = calloc(1, sizeof *s)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    s->io = *io;
    s->idle.max_idle_ms = cfg->max_idle_ms;
    atomic_store(&s->send_window_ms,
                 cfg->send_window_ms > 0 ? cfg->send_window_ms : RC_SESSION_SEND_WINDOW_MS);
    *ret = s;
    return 0;
}

void rc_session_free(rc_session *s)
{
    if (!s)
        return;
    idmap_free(&s->seen);
    idmap_free(&s->answered);
    idmap_free(&s->verdicts);
    idmap_free(&s->terminated_threads);
    idmap_free(&s->idle.blockers);
    for (size_t i = 0; i < s->nheld; i++)
        cJSON_Delete(s->held[i]);
    free(s->held);
    free(s);
}

void rc_session_set_send_window(rc_session *s, int64_t ms)
{
    if (ms > 0)
        atomic_store(&s->send_window_ms, ms);
}

bool rc_session_is_answered(rc_session *s, const char *call_id)
{
    return idmap_get(&s->answered, call_id, NULL);
}

bool rc_session_is_seen(rc_session *s, const char *call_id)
{
    return idmap_get(&s->seen, call_id, NULL);
}

bool rc_session_is_held(rc_session *s, const char *call_id)
{
    return held_index(s, call_id) >= 0;
}

size_t rc_session_held_count(rc_session *s)
{
    return s->nheld;
}
