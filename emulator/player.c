/* player.c - the scripted agent (protocol.md 19.8, scenario.md): plays a scenario's turns on a
 * session, judges each tool result against the step's `expect`, and keeps the verdict.
 *
 * Event-driven, no thread per session: each session's player is a small state machine that
 * advances when something happens to the session (a result, a confirmation, an interrupt, all
 * delivered by the events route under the state lock) or when its deadline passes (the ticker
 * calls rc_emplay_tick). Emitting a step only appends events, so it never blocks.
 *
 * Sessions that play no scenario get the default agent of 19.8: a user message "run <command>"
 * makes the agent call `run_shell` (when the agent declares it) or `bash` with that command and
 * then answer with a message quoting the result; any other message gets a short reply. */
#include "em.h"

#include "cleanup.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum phase {
    PH_BEFORE_TURN, /* waiting pause_after_ms before the next turn */
    PH_READY,       /* play the current step now */
    PH_CONFIRM,     /* the emulator confirms an `ask` call at the deadline */
    PH_EXT_CONFIRM, /* an `ask` call without `confirm`: someone else must confirm it */
    PH_RESULT,      /* waiting for the worker's result until the deadline */
    PH_NO_RESULT,   /* no result may arrive before the deadline */
    PH_SLEEP,
    PH_DONE,
};

typedef struct vstep {
    long turn, step;
    bool passed;
    char *detail;
} vstep;

struct rc_em_play {
    rc_em_scenario *sc; /* NULL: the default agent */
    size_t turn, step;
    enum phase ph;
    int64_t deadline_ms;
    char call_id[RC_EM_ID_MAX]; /* the current step's call */
    vstep *v;
    size_t nv, vcap;
    bool failed;
    char (*noresult)[RC_EM_ID_MAX]; /* calls that must never get a result */
    size_t nnoresult;
    /* default agent */
    bool dflt_waiting;
    char dflt_call[RC_EM_ID_MAX];
    char *dflt_input; /* a user message the agent has not processed yet */
    int64_t dflt_due_ms;
};

static void emit(rc_em *em, rc_em_session *s, cJSON *ev, rc_em_event **ret)
{
    rc_error err = {0};
    if (rc_emstore_event_append(em, s, ev, false, ret, &err) < 0) {
        rc_log_error("session %s: cannot append an event: %s", s->id, err.msg);
        if (ret)
            *ret = NULL;
    }
}

static void set_running(rc_em *em, rc_em_session *s)
{
    rc_error err = {0};
    if (rc_emstore_session_running(em, s, &err) < 0)
        rc_log_error("session %s: %s", s->id, err.msg);
}

static void set_idle(rc_em *em, rc_em_session *s, bool end_turn)
{
    rc_error err = {0};
    if (rc_emstore_session_idle(em, s, end_turn, &err) < 0)
        rc_log_error("session %s: %s", s->id, err.msg);
}

static void ensure_work(rc_em *em, rc_em_session *s)
{
    rc_error err = {0};
    if (rc_emstore_session_ensure_work(em, s, &err) < 0)
        rc_log_error("session %s: %s", s->id, err.msg);
}

static cJSON *text_content(const char *text)
{
    cJSON *arr = cJSON_CreateArray(), *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "text");
    cJSON_AddStringToObject(b, "text", text);
    cJSON_AddItemToArray(arr, b);
    return arr;
}

static void emit_text(rc_em *em, rc_em_session *s, const char *type, const char *text)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddItemToObject(ev, "content", text_content(text));
    emit(em, s, ev, NULL);
}

/* ---- verdict ---- */

static void record(rc_em_session *s, long turn, long step, bool passed, const char *detail)
{
    struct rc_em_play *p = s->play;
    if (p->nv == p->vcap) {
        size_t ncap = p->vcap ? p->vcap * 2 : 16;
        vstep *nv = realloc(p->v, ncap * sizeof(*nv));
        if (!nv)
            return;
        p->v = nv;
        p->vcap = ncap;
    }
    p->v[p->nv++] = (vstep){turn, step, passed, strdup(detail && *detail ? detail : "ok")};
    if (!passed) {
        p->failed = true;
        rc_log_warn("session %s: scenario step %ld.%ld failed: %s", s->id, turn, step,
                    detail ? detail : "");
    }
}

static void record_current(rc_em_session *s, bool passed, const char *detail)
{
    record(s, (long)s->play->turn, (long)s->play->step, passed, detail);
}

static bool is_noresult(const struct rc_em_play *p, const char *id)
{
    for (size_t i = 0; i < p->nnoresult; i++)
        if (strcmp(p->noresult[i], id) == 0)
            return true;
    return false;
}

static void add_noresult(struct rc_em_play *p, const char *id)
{
    char(*n)[RC_EM_ID_MAX] = realloc(p->noresult, (p->nnoresult + 1) * sizeof(*n));
    if (!n)
        return;
    p->noresult = n;
    snprintf(p->noresult[p->nnoresult++], RC_EM_ID_MAX, "%s", id);
}

/* ---- scenario ---- */

static const rc_sc_turn *cur_turn(const struct rc_em_play *p)
{
    return &p->sc->sc->turns[p->turn];
}

static const rc_sc_step *cur_step(const struct rc_em_play *p)
{
    return &cur_turn(p)->steps[p->step];
}

static void finish(rc_em_session *s)
{
    s->play->ph = PH_DONE;
    rc_log_info("session %s: scenario %s %s", s->id, s->play->sc->sc->name,
                s->play->failed ? "failed" : "passed");
}

static void advance(rc_em *em, rc_em_session *s);

static void next_step(rc_em *em, rc_em_session *s)
{
    s->play->step++;
    s->play->ph = PH_READY;
    advance(em, s);
}

static void start_turn(rc_em *em, rc_em_session *s)
{
    struct rc_em_play *p = s->play;
    emit_text(em, s, "user.message", cur_turn(p)->user);
    ensure_work(em, s);
    set_running(em, s);
    p->step = 0;
    p->ph = PH_READY;
    advance(em, s);
}

static void end_turn(rc_em *em, rc_em_session *s)
{
    struct rc_em_play *p = s->play;
    const rc_sc_turn *t = cur_turn(p);
    if (t->end_none) {
        finish(s);
        return;
    }
    set_idle(em, s, true);
    if (p->turn + 1 >= p->sc->sc->nturns) {
        finish(s);
        return;
    }
    p->turn++;
    p->step = 0;
    p->ph = PH_BEFORE_TURN;
    p->deadline_ms = rc_emutil_mono_ms() + t->pause_after_ms;
}

/* The server resolves a denied call itself with a synthetic error result (11.2, scenario.md). */
static void deny_call(rc_em *em, rc_em_session *s, rc_em_call *call, const char *why)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "user.tool_result");
    cJSON_AddStringToObject(ev, "tool_use_id", call->id);
    cJSON_AddTrueToObject(ev, "is_error");
    cJSON_AddItemToObject(ev, "content", text_content(why));
    call->answered = true;
    emit(em, s, ev, NULL);
}

/* After a denial: a no_result step waits for a (forbidden) result; otherwise `expect` is judged
 * against the synthetic result. */
static void after_denial(rc_em *em, rc_em_session *s, const char *why)
{
    const rc_sc_step *st = cur_step(s->play);
    char detail[512];
    if (st->has_expect && st->expect.no_result) {
        s->play->ph = PH_NO_RESULT;
        s->play->deadline_ms = rc_emutil_mono_ms() + st->expect.wait_ms;
        return;
    }
    if (st->has_expect) {
        cJSON *content = text_content(why);
        int r = rc_sc_expect_check(&st->expect, content, 1, detail, sizeof(detail));
        cJSON_Delete(content);
        record_current(s, r == 1, detail);
    } else {
        record_current(s, true, "denied");
    }
    next_step(em, s);
}

static void wait_result(rc_em_session *s)
{
    const rc_sc_step *st = cur_step(s->play);
    s->play->ph = st->has_expect && st->expect.no_result ? PH_NO_RESULT : PH_RESULT;
    s->play->deadline_ms = rc_emutil_mono_ms() + st->expect.wait_ms;
}

/* 10.2: which policy produced the verdict (informational). */
static cJSON *evaluation_json(const char *perm)
{
    cJSON *evl = cJSON_CreateObject(), *ep;
    if (strcmp(perm, "deny") == 0) {
        cJSON_AddStringToObject(evl, "type", "auto");
        ep = cJSON_AddObjectToObject(evl, "evaluated_permission");
        cJSON_AddStringToObject(ep, "type", "deny");
        cJSON_AddStringToObject(ep, "reason_code", "scenario");
    } else {
        cJSON_AddStringToObject(evl, "type",
                                strcmp(perm, "ask") == 0 ? "always_ask" : "always_allow");
    }
    return evl;
}

static void play_call(rc_em *em, rc_em_session *s, const rc_sc_step *st)
{
    struct rc_em_play *p = s->play;
    bool custom = st->kind == RC_SC_CUSTOM_TOOL;
    const char *perm = custom ? NULL : st->permission;
    cJSON *ev = cJSON_CreateObject();
    rc_em_event *e = NULL;
    rc_em_call *call;
    rc_error err = {0};

    set_running(em, s);
    cJSON_AddStringToObject(ev, "type", custom ? "agent.custom_tool_use" : "agent.tool_use");
    cJSON_AddStringToObject(ev, "name", st->name);
    cJSON_AddItemToObject(ev, "input",
                          st->input ? cJSON_Duplicate(st->input, 1) : cJSON_CreateObject());
    if (perm) {
        cJSON_AddStringToObject(ev, "evaluated_permission", perm);
        cJSON_AddItemToObject(ev, "evaluation", evaluation_json(perm));
    }
    cJSON_AddNullToObject(ev, "session_thread_id");
    emit(em, s, ev, &e);
    if (!e || rc_emstore_call_add(s, e->id, custom, perm && strcmp(perm, "ask") == 0, &err) < 0) {
        record_current(s, false, "internal error emitting the call");
        next_step(em, s);
        return;
    }
    snprintf(p->call_id, sizeof(p->call_id), "%s", e->id);
    call = rc_emstore_call_find(s, e->id);
    if (perm && strcmp(perm, "deny") == 0) {
        deny_call(em, s, call, "Permission to use this tool was denied.");
        after_denial(em, s, "Permission to use this tool was denied.");
        return;
    }
    set_idle(em, s, false);
    if (call->ask) {
        p->ph = st->confirm ? PH_CONFIRM : PH_EXT_CONFIRM;
        p->deadline_ms =
            rc_emutil_mono_ms() + (st->confirm ? RC_EM_CONFIRM_DELAY_MS : st->expect.wait_ms);
        return;
    }
    wait_result(s);
}

static void play_step(rc_em *em, rc_em_session *s)
{
    struct rc_em_play *p = s->play;
    const rc_sc_step *st = cur_step(p);
    rc_error err = {0};

    switch (st->kind) {
    case RC_SC_MESSAGE:
        set_running(em, s);
        emit_text(em, s, "agent.message", st->message);
        record_current(s, true, "ok");
        next_step(em, s);
        return;
    case RC_SC_SLEEP:
        set_running(em, s);
        p->ph = PH_SLEEP;
        p->deadline_ms = rc_emutil_mono_ms() + st->sleep_ms;
        return;
    case RC_SC_TERMINATE:
        if (rc_emstore_session_terminate(em, s, &err) < 0)
            rc_log_error("session %s: %s", s->id, err.msg);
        record_current(s, true, "ok");
        finish(s);
        return;
    case RC_SC_TOOL:
    case RC_SC_CUSTOM_TOOL:
        play_call(em, s, st);
        return;
    }
}

static void advance(rc_em *em, rc_em_session *s)
{
    struct rc_em_play *p = s->play;
    while (p->ph == PH_READY) {
        if (s->deleted || s->status == RC_EM_SESSION_TERMINATED) {
            record_current(s, false, "session ended before the scenario finished");
            finish(s);
            return;
        }
        if (p->step >= cur_turn(p)->nsteps) {
            end_turn(em, s);
            return;
        }
        play_step(em, s);
    }
}

/* The current step's call ran out of time: fail, abandon it, end the scenario with an idle so
 * the worker can finish. */
static void give_up(rc_em *em, rc_em_session *s, const char *detail)
{
    rc_em_call *call = rc_emstore_call_find(s, s->play->call_id);
    if (call)
        call->abandoned = true;
    record_current(s, false, detail);
    set_idle(em, s, true);
    finish(s);
}

static void confirm(rc_em *em, rc_em_session *s, rc_em_call *call, bool allow, bool ours)
{
    if (ours) {
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", "user.tool_confirmation");
        cJSON_AddStringToObject(ev, "tool_use_id", call->id);
        cJSON_AddStringToObject(ev, "result", allow ? "allow" : "deny");
        if (!allow)
            cJSON_AddStringToObject(ev, "deny_message", "denied by the scenario");
        else
            cJSON_AddNullToObject(ev, "deny_message");
        emit(em, s, ev, NULL);
        call->confirmed = allow ? 1 : 2;
        ensure_work(em, s);
    }
    set_running(em, s);
    if (allow) {
        wait_result(s);
        return;
    }
    deny_call(em, s, call, "The user denied permission to use this tool.");
    after_denial(em, s, "The user denied permission to use this tool.");
}

static void scenario_tick(rc_em *em, rc_em_session *s, int64_t now)
{
    struct rc_em_play *p = s->play;
    const rc_sc_step *st;
    char detail[128];
    rc_em_call *call;

    if (p->ph == PH_DONE || now < p->deadline_ms)
        return;
    if (p->ph == PH_BEFORE_TURN) {
        if (s->deleted || s->status == RC_EM_SESSION_TERMINATED) {
            record(s, (long)p->turn, -1, false, "session ended before the scenario finished");
            finish(s);
            return;
        }
        start_turn(em, s);
        return;
    }
    if (p->ph == PH_READY)
        return;
    st = cur_step(p);
    call = rc_emstore_call_find(s, p->call_id);
    switch (p->ph) {
    case PH_SLEEP:
        record_current(s, true, "ok");
        next_step(em, s);
        break;
    case PH_CONFIRM:
        if (call)
            confirm(em, s, call, strcmp(st->confirm, "allow") == 0, true);
        break;
    case PH_EXT_CONFIRM:
        /* Nobody confirmed: the call stays held. That is what a no_result step expects. */
        if (st->has_expect && st->expect.no_result) {
            if (call)
                call->abandoned = true;
            add_noresult(p, p->call_id);
            record_current(s, true, "held without confirmation, no result, as expected");
            next_step(em, s);
            break;
        }
        snprintf(detail, sizeof(detail), "no user.tool_confirmation within %ld ms",
                 st->expect.wait_ms);
        give_up(em, s, detail);
        break;
    case PH_RESULT:
        snprintf(detail, sizeof(detail), "no result within %ld ms", st->expect.wait_ms);
        give_up(em, s, detail);
        break;
    case PH_NO_RESULT:
        if (call && !call->answered)
            call->abandoned = true;
        add_noresult(p, p->call_id);
        record_current(s, true, "no result, as expected");
        next_step(em, s);
        break;
    default:
        break;
    }
}

/* ---- default agent (19.8) ---- */

static char *content_text(const cJSON *content, size_t max)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(max);
    const cJSON *blk;
    char *out;
    size_t len;
    if (cJSON_IsString(content))
        return strndup(content->valuestring, max);
    cJSON_ArrayForEach(blk, content)
    {
        const char *t = rc_emutil_jstr(blk, "text");
        if (t && rc_buf_append_str(&b, t, NULL) < 0) {
            size_t room = b.max - b.len;
            rc_buf_append(&b, t, room, NULL);
            break;
        }
    }
    if (rc_buf_steal(&b, &out, &len, NULL) < 0)
        return NULL;
    return out;
}

static bool agent_has_custom(const rc_em_session *s, const char *name)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(s->agent, "tools"), *t;
    cJSON_ArrayForEach(t, tools)
    {
        const char *type = rc_emutil_jstr(t, "type"), *n = rc_emutil_jstr(t, "name");
        if (type && n && strcmp(type, "custom") == 0 && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

/* evaluated_permission for a toolset tool from the agent's resolved policy (19.8.3). */
static const char *toolset_permission(const rc_em_session *s, const char *tool)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(s->agent, "tools"), *t, *cfg;
    cJSON_ArrayForEach(t, tools)
    {
        const char *type = rc_emutil_jstr(t, "type");
        const cJSON *use;
        const char *pol;
        if (!type || strcmp(type, "agent_toolset_20260401") != 0)
            continue;
        use = cJSON_GetObjectItemCaseSensitive(t, "default_config");
        cJSON_ArrayForEach(cfg, cJSON_GetObjectItemCaseSensitive(t, "configs"))
        {
            const char *n = rc_emutil_jstr(cfg, "name");
            if (n && strcmp(n, tool) == 0)
                use = cfg;
        }
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(use, "enabled")))
            return "deny";
        pol = rc_emutil_jstr(cJSON_GetObjectItemCaseSensitive(use, "permission_policy"), "type");
        return pol && strcmp(pol, "always_ask") == 0 ? "ask" : "allow";
    }
    return "deny"; /* no toolset: the tool is not enabled */
}

static void default_reply(rc_em *em, rc_em_session *s, const char *text)
{
    set_running(em, s);
    emit_text(em, s, "agent.message", text);
    set_idle(em, s, true);
}

static void default_on_message(rc_em *em, rc_em_session *s, char *text_owned)
{
    struct rc_em_play *p = s->play;
    _cleanup_free_ char *text = text_owned;
    const char *cmd;
    bool custom;
    const char *perm = NULL;
    cJSON *ev, *input;
    rc_em_event *e = NULL;
    rc_error err = {0};

    if (!text || strncmp(text, "run ", 4) != 0 || !text[4]) {
        default_reply(em, s, "I am the runcell emulator's default agent. Say \"run <command>\".");
        return;
    }
    cmd = text + 4;
    custom = agent_has_custom(s, "run_shell");
    set_running(em, s);
    ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", custom ? "agent.custom_tool_use" : "agent.tool_use");
    cJSON_AddStringToObject(ev, "name", custom ? "run_shell" : "bash");
    input = cJSON_AddObjectToObject(ev, "input");
    cJSON_AddStringToObject(input, "command", cmd);
    if (!custom) {
        perm = toolset_permission(s, "bash");
        cJSON_AddStringToObject(ev, "evaluated_permission", perm);
        if (strcmp(perm, "deny") != 0)
            cJSON_AddItemToObject(ev, "evaluation", evaluation_json(perm));
    }
    cJSON_AddNullToObject(ev, "session_thread_id");
    emit(em, s, ev, &e);
    if (!e || rc_emstore_call_add(s, e->id, custom, perm && strcmp(perm, "ask") == 0, &err) < 0)
        return;
    if (perm && strcmp(perm, "deny") == 0) {
        deny_call(em, s, rc_emstore_call_find(s, e->id), "The bash tool is not enabled.");
        default_reply(em, s, "I could not run that: the bash tool is not enabled.");
        return;
    }
    p->dflt_waiting = true;
    snprintf(p->dflt_call, sizeof(p->dflt_call), "%s", e->id);
    set_idle(em, s, false);
}

static void default_on_result(rc_em *em, rc_em_session *s, const cJSON *content, bool is_error)
{
    _cleanup_free_ char *text = content_text(content, 8000);
    _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(9000);
    s->play->dflt_waiting = false;
    set_running(em, s);
    rc_buf_appendf(&msg, NULL, "%s:\n%s", is_error ? "The command failed" : "Result",
                   text && *text ? text : "(no output)");
    emit_text(em, s, "agent.message", rc_buf_cstr(&msg));
    set_idle(em, s, true);
}

/* ---- entry points ---- */

static struct rc_em_play *play_get(rc_em_session *s)
{
    if (!s->play)
        s->play = calloc(1, sizeof(*s->play));
    return s->play;
}

int rc_emplay_start(rc_em *em, rc_em_session *s, rc_em_scenario *sc, rc_error *err)
{
    struct rc_em_play *p = play_get(s);
    if (!p)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    p->sc = sc;
    sc->refs++;
    p->turn = 0;
    start_turn(em, s);
    return 0;
}

static bool scenario_active(const rc_em_session *s)
{
    return s->play && s->play->sc && s->play->ph != PH_DONE;
}

void rc_emplay_on_result(rc_em *em, rc_em_session *s, rc_em_call *call, const cJSON *content,
                         bool is_error)
{
    struct rc_em_play *p = s->play;
    const rc_sc_step *st;
    char detail[512];
    int r;

    if (!p)
        return;
    if (p->sc && is_noresult(p, call->id)) {
        record(s, (long)p->turn, (long)p->step, false,
               "a result arrived for a call that must get none");
        return;
    }
    if (!p->sc || p->ph == PH_DONE) {
        if (p->dflt_waiting && strcmp(p->dflt_call, call->id) == 0)
            default_on_result(em, s, content, is_error);
        return;
    }
    if (strcmp(p->call_id, call->id) != 0 || (p->ph != PH_RESULT && p->ph != PH_NO_RESULT))
        return;
    st = cur_step(p);
    if (p->ph == PH_NO_RESULT) {
        add_noresult(p, call->id);
        record_current(s, false, "a result arrived but the step expects none");
    } else if (st->has_expect) {
        r = rc_sc_expect_check(&st->expect, content, is_error, detail, sizeof(detail));
        record_current(s, r == 1, detail);
    } else {
        record_current(s, true, "result received");
    }
    set_running(em, s);
    next_step(em, s);
}

void rc_emplay_on_bad_result(rc_em *em, rc_em_session *s, const char *detail)
{
    (void)em;
    if (s->play && s->play->sc)
        record(s, (long)s->play->turn, (long)s->play->step, false, detail);
}

void rc_emplay_on_confirmation(rc_em *em, rc_em_session *s, rc_em_call *call, bool allow)
{
    struct rc_em_play *p = s->play;
    if (!p)
        return;
    if (!p->sc || p->ph == PH_DONE) {
        if (!p->dflt_waiting || strcmp(p->dflt_call, call->id) != 0)
            return;
        if (allow) {
            set_running(em, s);
            return;
        }
        p->dflt_waiting = false;
        deny_call(em, s, call, "The user denied permission to use this tool.");
        default_reply(em, s, "Understood, I will not run that.");
        return;
    }
    if ((p->ph == PH_CONFIRM || p->ph == PH_EXT_CONFIRM) && strcmp(p->call_id, call->id) == 0)
        confirm(em, s, call, allow, false);
}

void rc_emplay_on_user_message(rc_em *em, rc_em_session *s, const cJSON *content)
{
    struct rc_em_play *p;
    if (scenario_active(s) || s->status == RC_EM_SESSION_TERMINATED)
        return; /* the script decides what the agent does */
    p = play_get(s);
    if (!p || p->dflt_waiting || p->dflt_input)
        return;
    /* The agent works after the request returns, as the real one does: running now, the reply
     * on the next tick. */
    p->dflt_input = content_text(content, 65536);
    p->dflt_due_ms = rc_emutil_mono_ms();
    set_running(em, s);
}

void rc_emplay_on_interrupt(rc_em *em, rc_em_session *s)
{
    struct rc_em_play *p = s->play;
    /* 19.4.2: the turn ends; outstanding calls are abandoned. */
    for (size_t i = 0; i < s->ncalls; i++)
        if (!s->calls[i].answered)
            s->calls[i].abandoned = true;
    if (p) {
        p->dflt_waiting = false;
        free(p->dflt_input);
        p->dflt_input = NULL;
    }
    if (scenario_active(s) && p->ph != PH_BEFORE_TURN) {
        record_current(s, false, "turn interrupted by user.interrupt");
        p->step = cur_turn(p)->nsteps;
        p->ph = PH_READY;
        end_turn(em, s);
        return;
    }
    set_idle(em, s, true);
}

void rc_emplay_tick(rc_em *em, int64_t now_ms)
{
    for (size_t i = 0; i < em->nsessions; i++) {
        rc_em_session *s = em->sessions[i];
        struct rc_em_play *p = s->play;
        if (scenario_active(s)) {
            scenario_tick(em, s, now_ms);
        } else if (p && p->dflt_input && now_ms >= p->dflt_due_ms) {
            char *text = p->dflt_input;
            p->dflt_input = NULL;
            if (!s->deleted && s->status != RC_EM_SESSION_TERMINATED)
                default_on_message(em, s, text);
            else
                free(text);
        }
    }
}

cJSON *rc_emplay_verdict_json(const rc_em_session *s)
{
    const struct rc_em_play *p = s->play;
    cJSON *o, *steps;
    if (!p || !p->sc)
        return NULL;
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "scenario", p->sc->sc->name);
    cJSON_AddStringToObject(o, "session_id", s->id);
    cJSON_AddStringToObject(o, "state",
                            p->failed          ? "failed"
                            : p->ph == PH_DONE ? "passed"
                                               : "running");
    steps = cJSON_AddArrayToObject(o, "steps");
    for (size_t i = 0; i < p->nv; i++) {
        cJSON *st = cJSON_CreateObject();
        cJSON_AddNumberToObject(st, "turn", (double)p->v[i].turn);
        cJSON_AddNumberToObject(st, "step", (double)p->v[i].step);
        cJSON_AddBoolToObject(st, "passed", p->v[i].passed);
        cJSON_AddStringToObject(st, "detail", p->v[i].detail ? p->v[i].detail : "");
        cJSON_AddItemToArray(steps, st);
    }
    return o;
}

void rc_emplay_count(const rc_em *em, size_t *running, size_t *passed, size_t *failed)
{
    *running = *passed = *failed = 0;
    for (size_t i = 0; i < em->nsessions; i++) {
        const struct rc_em_play *p = em->sessions[i]->play;
        if (!p || !p->sc)
            continue;
        if (p->failed)
            (*failed)++;
        else if (p->ph == PH_DONE)
            (*passed)++;
        else
            (*running)++;
    }
}

void rc_emplay_free(struct rc_em_play *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nv; i++)
        free(p->v[i].detail);
    free(p->v);
    free(p->noresult);
    free(p->dflt_input);
    rc_emstore_scenario_unref(p->sc);
    free(p);
}
