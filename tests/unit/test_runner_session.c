/* test_runner_session.c - the session tool runner algorithm (runner/session.c, protocol 11-13)
 * against fake I/O: a scripted history, a recording result sink with scripted failures, a fake
 * tool registry and a fake clock. Each test states the rule of the spec it pins down. */
#include "cleanup.h"
#include "harness.h"
#include "json.h"
#include "session.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SENT 64
#define MAX_RUN  64

typedef struct fake {
    cJSON *history; /* array of events; NULL = empty */
    int list_pages; /* split the history into this many pages (0/1 = one) */
    int list_fail;  /* negative code: the list fails (after the first page when pages > 1) */
    int list_calls;

    cJSON *sent[MAX_SENT];
    int64_t sent_deadline[MAX_SENT];
    int nsent;
    int send_fail[16]; /* codes for the next sends (0 = succeed) */
    int nsend_fail;
    int send_calls;

    char ran[MAX_RUN][64];
    int nran;
    bool tool_is_error;
    const char *tool_text;   /* NULL = "ran <name>" */
    int tool_internal_error; /* negative: run_tool fails with it */
    bool cancel_during_tool;

    int64_t now;
    int64_t slept[64];
    int nslept;

    bool cancelled;
    bool cancel_in_sleep;
    bool allow_final;
    int finals;
    rc_session *s;
} fake;

static int fk_list(void *ud, rc_api_page_fn fn, void *fn_ud, rc_error *err)
{
    fake *f = ud;
    int pages = f->list_pages > 1 ? f->list_pages : 1;
    int n = f->history ? cJSON_GetArraySize(f->history) : 0;
    int per = (n + pages - 1) / pages, r;

    f->list_calls++;
    if (f->list_fail && pages == 1)
        return rc_error_set(err, f->list_fail, "list failed (scripted)");
    for (int p = 0; p < pages; p++) {
        _cleanup_json_ cJSON *page = cJSON_CreateArray();
        for (int i = p * per; i < n && i < (p + 1) * per; i++)
            cJSON_AddItemToArray(page, cJSON_Duplicate(cJSON_GetArrayItem(f->history, i), 1));
        if ((r = fn(page, fn_ud, err)) < 0)
            return r;
        if (f->list_fail)
            return rc_error_set(err, f->list_fail, "list failed on page 2 (scripted)");
    }
    return 0;
}

static int fk_send(void *ud, const cJSON *ev, int64_t deadline, rc_error *err)
{
    fake *f = ud;
    int code = f->send_calls < f->nsend_fail ? f->send_fail[f->send_calls] : 0;
    f->send_calls++;
    if (code)
        return rc_error_set(err, code, "send failed (scripted)");
    if (f->nsent < MAX_SENT) {
        f->sent_deadline[f->nsent] = deadline;
        f->sent[f->nsent++] = cJSON_Duplicate(ev, 1);
    }
    return 0;
}

static int text_result(rc_tool_result *ret, const char *text, bool is_error)
{
    cJSON *arr = cJSON_CreateArray(), *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "text");
    cJSON_AddStringToObject(b, "text", text);
    cJSON_AddItemToArray(arr, b);
    ret->content = arr;
    ret->is_error = is_error;
    return 0;
}

static int fk_run(void *ud, const cJSON *call, rc_tool_result *ret, rc_error *err)
{
    fake *f = ud;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(call, "name");
    char text[128];
    if (!cJSON_IsString(name) ||
        (strcmp(name->valuestring, "bash") != 0 && strcmp(name->valuestring, "read") != 0 &&
         strcmp(name->valuestring, "run_tests") != 0))
        return -RC_ENOTFOUND;
    if (f->nran < MAX_RUN)
        snprintf(f->ran[f->nran++], sizeof f->ran[0], "%s",
                 cJSON_GetObjectItemCaseSensitive(call, "id")->valuestring);
    f->now += 10;
    if (f->cancel_during_tool)
        f->cancelled = true;
    if (f->tool_internal_error)
        return rc_error_set(err, f->tool_internal_error, "disk on fire");
    snprintf(text, sizeof text, "ran %s", name->valuestring);
    return text_result(ret, f->tool_text ? f->tool_text : text, f->tool_is_error);
}

static int fk_sleep(void *ud, int64_t ms)
{
    fake *f = ud;
    if (f->nslept < 64)
        f->slept[f->nslept++] = ms;
    f->now += ms;
    if (f->cancel_in_sleep)
        f->cancelled = true;
    return f->cancelled ? -RC_ECANCELED : 0;
}

static int64_t fk_now(void *ud)
{
    return ((fake *)ud)->now;
}

static bool fk_cancelled(void *ud)
{
    return ((fake *)ud)->cancelled;
}

static bool fk_final(void *ud, int64_t *deadline)
{
    fake *f = ud;
    f->finals++;
    *deadline = 777;
    return f->allow_final;
}

static double fk_rand(void *ud)
{
    (void)ud;
    return 0.0;
}

static void fake_init(fake *f, long long max_idle_ms)
{
    rc_session_io io = {.list = fk_list,
                        .send = fk_send,
                        .run_tool = fk_run,
                        .sleep = fk_sleep,
                        .now_ms = fk_now,
                        .cancelled = fk_cancelled,
                        .final_post = fk_final,
                        .rand = fk_rand,
                        .ud = f};
    rc_session_config cfg = {.max_idle_ms = max_idle_ms};
    memset(f, 0, sizeof *f);
    f->now = 1000000;
    if (rc_session_new(&cfg, &io, &f->s, NULL) < 0)
        f->s = NULL;
}

static void fake_free(fake *f)
{
    for (int i = 0; i < f->nsent; i++)
        cJSON_Delete(f->sent[i]);
    cJSON_Delete(f->history);
    rc_session_free(f->s);
}

static cJSON *js(const char *text)
{
    cJSON *j = NULL;
    if (rc_json_parse(text, strlen(text), NULL, &j, NULL) < 0)
        return NULL;
    return j;
}

static void history(fake *f, const char *json_array)
{
    cJSON_Delete(f->history);
    f->history = js(json_array);
}

static int live(fake *f, const char *json)
{
    _cleanup_json_ cJSON *ev = js(json);
    rc_error err = {0};
    if (!ev)
        return -999;
    return rc_session_on_event(f->s, ev, &err);
}

static const char *sent_str(fake *f, int i, const char *key)
{
    const cJSON *v = i < f->nsent ? cJSON_GetObjectItemCaseSensitive(f->sent[i], key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int sent_is_error(fake *f, int i)
{
    const cJSON *v = i < f->nsent ? cJSON_GetObjectItemCaseSensitive(f->sent[i], "is_error") : NULL;
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

static const char *sent_text(fake *f, int i, int block)
{
    const cJSON *c = i < f->nsent ? cJSON_GetObjectItemCaseSensitive(f->sent[i], "content") : NULL;
    const cJSON *b = cJSON_GetArrayItem(c, block);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

#define USE(id, name)                                                                              \
    "{\"type\":\"agent.tool_use\",\"id\":\"" id "\",\"name\":\"" name "\",\"input\":{}}"
#define USE_P(id, name, p)                                                                         \
    "{\"type\":\"agent.tool_use\",\"id\":\"" id "\",\"name\":\"" name                              \
    "\",\"input\":{},\"evaluated_permission\":" p "}"
#define USE_T(id, name, th)                                                                        \
    "{\"type\":\"agent.tool_use\",\"id\":\"" id "\",\"name\":\"" name                              \
    "\",\"input\":{},\"session_thread_id\":\"" th "\"}"
#define CUSTOM(id, name)                                                                           \
    "{\"type\":\"agent.custom_tool_use\",\"id\":\"" id "\",\"name\":\"" name "\",\"input\":{}}"
#define RESULT(id) "{\"type\":\"user.tool_result\",\"id\":\"r" id "\",\"tool_use_id\":\"" id "\"}"
#define CRESULT(id)                                                                                \
    "{\"type\":\"user.custom_tool_result\",\"id\":\"r" id "\",\"custom_tool_use_id\":\"" id "\"}"
#define CONFIRM(id, verdict)                                                                       \
    "{\"type\":\"user.tool_confirmation\",\"id\":\"c" id "\",\"tool_use_id\":\"" id                \
    "\",\"result\":\"" verdict "\"}"
#define IDLE(reason)                                                                               \
    "{\"type\":\"session.status_idle\",\"id\":\"i1\",\"stop_reason\":{\"type\":\"" reason "\"}}"
#define THREAD_END(th)                                                                             \
    "{\"type\":\"session.thread_status_terminated\",\"id\":\"t1\",\"session_thread_id\":\"" th "\"}"
#define MESSAGE "{\"type\":\"agent.message\",\"id\":\"m1\",\"content\":[]}"

/* ---- reconcile (13.3) --------------------------------------------------------------------- */

TEST(reconcile_runs_only_unanswered_calls_in_history_order)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[" USE("a", "bash") "," USE("b", "read") "," RESULT("a") "," USE("c", "bash") "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nran, 2);
    CHECK_STR(f.ran[0], "b");
    CHECK_STR(f.ran[1], "c");
    REQUIRE(f.nsent == 2);
    CHECK_STR(sent_str(&f, 0, "type"), "user.tool_result");
    CHECK_STR(sent_str(&f, 0, "tool_use_id"), "b");
    CHECK_INT(sent_is_error(&f, 0), 0); /* is_error always present (10.3.1) */
    CHECK_STR(sent_text(&f, 0, 0), "ran read");
    CHECK(rc_session_is_answered(f.s, "a") && rc_session_is_answered(f.s, "b"));
    CHECK(rc_session_is_seen(f.s, "a") && rc_session_is_seen(f.s, "c"));
    fake_free(&f);
}

TEST(reconcile_never_reruns_a_call_whose_result_comes_later_in_history)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    /* Gap 2 of the reference app: a single pass would run "a" before reaching its result. */
    history(&f, "[" USE("a", "bash") "," USE("b", "bash") "," RESULT("a") "," RESULT("b") "]");
    f.list_pages = 2; /* the results are on the second page */
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nran, 0);
    CHECK_INT(f.nsent, 0);
    fake_free(&f);
}

TEST(custom_calls_get_custom_results)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[" CUSTOM("x", "run_tests") "," CUSTOM("y", "run_tests") "," CRESULT("y") "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    REQUIRE(f.nsent == 1);
    CHECK_STR(sent_str(&f, 0, "type"), "user.custom_tool_result");
    CHECK_STR(sent_str(&f, 0, "custom_tool_use_id"), "x");
    CHECK(sent_str(&f, 0, "tool_use_id") == NULL);
    fake_free(&f);
}

TEST(unknown_names_get_no_reply_and_stay_pending)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[" USE("w", "web_fetch") "," CUSTOM("z", "not_ours") "," IDLE("end_turn") "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nsent, 0);
    CHECK(!rc_session_is_answered(f.s, "w"));
    CHECK(!rc_session_is_answered(f.s, "z"));
    int64_t d;
    CHECK(!rc_session_idle_deadline(f.s, &d)); /* outstanding calls: no arm (12.5) */
    /* a later pass surfaces them again, still without a reply */
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nsent, 0);
    fake_free(&f);
}

TEST(failed_post_is_rerun_by_next_reconcile)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[" USE("a", "bash") "]");
    f.send_fail[0] = RC_EFATAL; /* 400: not retried (13.9) */
    f.nsend_fail = 1;
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.send_calls, 1);
    CHECK(rc_session_is_seen(f.s, "a") && !rc_session_is_answered(f.s, "a"));
    /* a replay on the stream is deduplicated by seen... */
    CHECK_INT(live(&f, USE("a", "bash")), 0);
    CHECK_INT(f.nran, 1);
    /* ...but the next reconcile decides from answered and runs it again (23.5) */
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nran, 2);
    CHECK_INT(f.nsent, 1);
    CHECK(rc_session_is_answered(f.s, "a"));
    fake_free(&f);
}

TEST(list_failure_unmarks_seen_so_the_stream_can_route)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[" USE("a", "bash") "," USE("b", "bash") "]");
    f.list_pages = 2;
    f.list_fail = RC_EHTTP; /* the first page is ingested, then the list fails */
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nran, 0);
    CHECK(!rc_session_is_seen(f.s, "a"));
    CHECK_INT(live(&f, USE("a", "bash")), 0);
    CHECK_INT(f.nran, 1);
    fake_free(&f);
}

/* A failed history read is retried on the reconnect back-off even when the stream stays quiet:
 * the call listed only in history runs once the list succeeds, and never twice. */
TEST(list_failure_is_retried_without_a_reconnect)
{
    fake f;
    int64_t at, first;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[" USE("a", "bash") "]");
    f.list_fail = RC_ESTATUS;
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    REQUIRE(rc_session_relist_due(f.s, &at));
    CHECK_INT(at - f.now, 500);
    CHECK_INT(rc_session_tick(f.s, NULL), 0); /* not due yet: no list */
    CHECK_INT(f.list_calls, 1);
    f.now = at;
    CHECK_INT(rc_session_tick(f.s, NULL), 0); /* due: lists, fails again, backs off (1 s) */
    CHECK_INT(f.list_calls, 2);
    REQUIRE(rc_session_relist_due(f.s, &first));
    CHECK_INT(first - f.now, 1000);
    CHECK_INT(f.nran, 0);
    f.list_fail = 0;
    f.now = first;
    CHECK_INT(rc_session_tick(f.s, NULL), 0);
    CHECK_INT(f.list_calls, 3);
    CHECK_INT(f.nran, 1);
    CHECK(!rc_session_relist_due(f.s, NULL));
    CHECK_INT(rc_session_tick(f.s, NULL), 0);
    CHECK_INT(f.list_calls, 3);
    CHECK_INT(live(&f, USE("a", "bash")), 0); /* the live copy is deduplicated */
    CHECK_INT(f.nran, 1);
    fake_free(&f);
}

TEST(relist_back_off_is_capped_at_ten_seconds)
{
    fake f;
    int64_t at = 0;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    f.list_fail = RC_EHTTP;
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    for (int i = 0; i < 8; i++) {
        REQUIRE(rc_session_relist_due(f.s, &at));
        f.now = at;
        CHECK_INT(rc_session_tick(f.s, NULL), 0);
    }
    REQUIRE(rc_session_relist_due(f.s, &at));
    CHECK_INT(at - f.now, 10000);
    fake_free(&f);
}

TEST(live_calls_are_deduplicated_by_event_id)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(live(&f, USE("a", "bash")), 0);
    CHECK_INT(live(&f, USE("a", "bash")), 0);
    CHECK_INT(live(&f, USE("b", "bash")), 0);
    CHECK_INT(f.nran, 2);
    CHECK_INT(f.nsent, 2);
    CHECK_STR(sent_str(&f, 1, "tool_use_id"), "b");
    fake_free(&f);
}

TEST(live_echoed_result_marks_answered)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, RESULT("q")), 0);
    CHECK_INT(live(&f, CRESULT("p")), 0);
    CHECK(rc_session_is_answered(f.s, "q") && rc_session_is_answered(f.s, "p"));
    history(&f, "[" USE("q", "bash") "," CUSTOM("p", "run_tests") "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nran, 0);
    fake_free(&f);
}

TEST(events_without_usable_ids_are_ignored)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, "{\"type\":\"agent.tool_use\",\"name\":\"bash\"}"), 0);
    CHECK_INT(live(&f, "{\"type\":\"agent.tool_use\",\"id\":\"\",\"name\":\"bash\"}"), 0);
    CHECK_INT(live(&f, "{\"type\":\"agent.tool_use\",\"id\":7,\"name\":\"bash\"}"), 0);
    CHECK_INT(live(&f, "{\"no_type\":true}"), 0);
    CHECK_INT(f.nran, 0);
    fake_free(&f);
}

/* ---- results (13.7, 10.3) ----------------------------------------------------------------- */

TEST(tool_error_and_empty_output_conventions)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    f.tool_is_error = true;
    f.tool_text = "bash: boom";
    CHECK_INT(live(&f, USE("a", "bash")), 0);
    f.tool_is_error = false;
    f.tool_text = "";
    CHECK_INT(live(&f, USE("b", "bash")), 0);
    f.tool_internal_error = RC_EIO;
    CHECK_INT(live(&f, USE("c", "bash")), 0);
    REQUIRE(f.nsent == 3);
    CHECK_INT(sent_is_error(&f, 0), 1);
    CHECK_STR(sent_text(&f, 0, 0), "bash: boom");
    CHECK_INT(sent_is_error(&f, 1), 0);
    CHECK_STR(sent_text(&f, 1, 0), "(no output)");
    CHECK_INT(sent_is_error(&f, 2), 1);
    CHECK_STR(sent_text(&f, 2, 0), "Error: disk on fire");
    fake_free(&f);
}

TEST(send_retries_with_doubling_backoff_then_succeeds)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    f.send_fail[0] = RC_ESTATUS; /* 5xx */
    f.send_fail[1] = RC_EHTTP;
    f.send_fail[2] = RC_ESTATUS; /* 429/409/408 are transient too */
    f.nsend_fail = 3;
    CHECK_INT(live(&f, USE("a", "bash")), 0);
    CHECK_INT(f.send_calls, 4);
    CHECK_INT(f.nslept, 3);
    CHECK_INT(f.slept[0], 1000);
    CHECK_INT(f.slept[1], 2000);
    CHECK_INT(f.slept[2], 4000);
    CHECK(rc_session_is_answered(f.s, "a"));
    fake_free(&f);
}

TEST(send_gives_up_when_the_window_runs_out)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    rc_session_set_send_window(f.s, 5000);
    for (int i = 0; i < 16; i++)
        f.send_fail[i] = RC_ESTATUS;
    f.nsend_fail = 16;
    CHECK_INT(live(&f, USE("a", "bash")), 0);
    /* 1000 + 2000 + min(4000, remaining 2000) = the 5000 ms window */
    CHECK_INT(f.nslept, 3);
    CHECK_INT(f.slept[2], 2000);
    CHECK_INT(f.send_calls, 4);
    CHECK(!rc_session_is_answered(f.s, "a"));
    fake_free(&f);
}

TEST(send_backoff_caps_at_30s)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    for (int i = 0; i < 8; i++)
        f.send_fail[i] = RC_ESTATUS;
    f.nsend_fail = 8;
    CHECK_INT(live(&f, USE("a", "bash")), 0);
    REQUIRE(f.nslept == 8);
    CHECK_INT(f.slept[4], 16000);
    CHECK_INT(f.slept[5], 30000);
    CHECK_INT(f.slept[7], 30000);
    fake_free(&f);
}

/* ---- permission gating (11) --------------------------------------------------------------- */

TEST(server_deny_posts_nothing_and_marks_answered)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, CONFIRM("a", "allow")), 0); /* a stray allow does not override (11.4) */
    CHECK_INT(live(&f, USE_P("a", "bash", "\"deny\"")), 0);
    CHECK_INT(f.nran, 0);
    CHECK_INT(f.nsent, 0);
    CHECK(rc_session_is_answered(f.s, "a"));
    fake_free(&f);
}

TEST(ask_holds_until_allow)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, USE_P("a", "bash", "\"ask\"")), 0);
    CHECK_INT(f.nran, 0);
    CHECK(rc_session_is_held(f.s, "a"));
    CHECK_INT(live(&f, CONFIRM("a", "allow")), 0);
    CHECK_INT(f.nran, 1);
    CHECK_INT(f.nsent, 1);
    CHECK(!rc_session_is_held(f.s, "a"));
    fake_free(&f);
}

TEST(ask_then_deny_or_unknown_verdict_runs_nothing)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, USE_P("a", "bash", "\"ask\"")), 0);
    CHECK_INT(live(&f, USE_P("b", "bash", "\"ask\"")), 0);
    CHECK_INT(live(&f, CONFIRM("a", "deny")), 0);
    CHECK_INT(live(&f, CONFIRM("b", "maybe")), 0); /* unrecognised verdict: denial */
    CHECK_INT(f.nran, 0);
    CHECK_INT(f.nsent, 0);
    CHECK(rc_session_is_answered(f.s, "a") && rc_session_is_answered(f.s, "b"));
    CHECK_INT(rc_session_held_count(f.s), 0);
    fake_free(&f);
}

TEST(unrecognised_or_null_permission_is_held)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, USE_P("a", "bash", "\"sometimes\"")), 0);
    CHECK_INT(live(&f, USE_P("b", "bash", "null")), 0);
    CHECK_INT(live(&f, USE_P("c", "bash", "\"allow\"")), 0);
    CHECK_INT(f.nran, 1);
    CHECK_STR(f.ran[0], "c");
    CHECK_INT(rc_session_held_count(f.s), 2);
    fake_free(&f);
}

TEST(verdict_recorded_before_the_call_applies_at_routing)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    /* in history, the confirmation may precede the call (11.5) */
    history(&f, "[" CONFIRM("a", "allow") "," USE_P("a", "bash", "\"ask\"") "," CONFIRM(
                    "b", "deny") "," USE_P("b", "bash", "\"ask\"") "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nran, 1);
    CHECK_STR(f.ran[0], "a");
    CHECK(rc_session_is_answered(f.s, "b"));
    CHECK_INT(rc_session_held_count(f.s), 0);
    fake_free(&f);
}

TEST(held_call_keeps_its_hold_across_reconcile_and_gets_a_later_verdict)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[" USE_P("a", "bash", "\"ask\"") "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(rc_session_held_count(f.s), 1);
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0); /* reconnect */
    CHECK_INT(rc_session_held_count(f.s), 1);
    /* the verdict lands while disconnected: the next history pass applies it */
    history(&f, "[" USE_P("a", "bash", "\"ask\"") "," CONFIRM("a", "allow") "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(f.nran, 1);
    CHECK_INT(rc_session_held_count(f.s), 0);
    fake_free(&f);
}

/* ---- threads (13.6) ----------------------------------------------------------------------- */

TEST(terminated_thread_calls_are_dropped_and_their_holds_released)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, "{\"type\":\"agent.tool_use\",\"id\":\"h\",\"name\":\"bash\","
                       "\"evaluated_permission\":\"ask\",\"session_thread_id\":\"sthr_1\"}"),
              0);
    CHECK_INT(rc_session_held_count(f.s), 1);
    CHECK_INT(live(&f, THREAD_END("sthr_1")), 0);
    CHECK_INT(rc_session_held_count(f.s), 0);
    CHECK_INT(live(&f, USE_T("x", "bash", "sthr_1")), 0);
    CHECK_INT(live(&f, USE_T("y", "bash", "sthr_2")), 0);
    CHECK_INT(f.nran, 1);
    CHECK_STR(f.ran[0], "y");
    CHECK_INT(f.nsent, 1);
    fake_free(&f);
}

/* ---- termination and idle (12) ------------------------------------------------------------ */

TEST(live_termination_ends_but_history_termination_does_not)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[{\"type\":\"session.status_terminated\",\"id\":\"e1\"}]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK_INT(live(&f, MESSAGE), 0);
    CHECK_INT(live(&f, "{\"type\":\"session.status_terminated\",\"id\":\"e2\"}"), 1);
    CHECK_INT(live(&f, "{\"type\":\"session.deleted\",\"id\":\"e3\"}"), 1);
    fake_free(&f);
}

TEST(idle_arms_on_end_turn_and_unknown_reasons_only)
{
    fake f;
    int64_t d = 0;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, IDLE("end_turn")), 0);
    CHECK(rc_session_idle_deadline(f.s, &d));
    CHECK_INT(d, f.now + 60000);
    CHECK_INT(live(&f, IDLE("requires_action")), 0);
    CHECK(!rc_session_idle_deadline(f.s, &d));
    CHECK_INT(live(&f, IDLE("some_future_reason")), 0);
    CHECK(rc_session_idle_deadline(f.s, &d));
    CHECK_INT(live(&f, "{\"type\":\"session.status_idle\",\"id\":\"i9\"}"), 0); /* no reason */
    CHECK(rc_session_idle_deadline(f.s, &d));
    /* neutral events leave it alone; anything else disarms (12.2) */
    CHECK_INT(live(&f, CONFIRM("zz", "allow")), 0);
    CHECK_INT(live(&f, THREAD_END("sthr_9")), 0);
    CHECK(rc_session_idle_deadline(f.s, &d));
    CHECK_INT(live(&f, "{\"type\":\"session.thread_status_idle\",\"id\":\"x\"}"), 0);
    CHECK(!rc_session_idle_deadline(f.s, &d));
    CHECK_INT(live(&f, IDLE("retries_exhausted")), 0);
    CHECK_INT(live(&f, MESSAGE), 0);
    CHECK(!rc_session_idle_deadline(f.s, &d));
    fake_free(&f);
}

TEST(idle_disabled_by_nonpositive_max)
{
    fake f;
    int64_t d;
    fake_init(&f, 0);
    REQUIRE(f.s);
    CHECK_INT(live(&f, IDLE("end_turn")), 0);
    CHECK(!rc_session_idle_deadline(f.s, &d));
    fake_free(&f);
}

TEST(reconcile_arms_when_history_ends_a_turn_with_nothing_outstanding)
{
    fake f;
    int64_t d;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    history(&f, "[" USE("a", "bash") "," RESULT("a") "," IDLE("end_turn") "," CONFIRM("zz",
                                                                                      "allow") "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK(rc_session_idle_deadline(f.s, &d)); /* the trailing confirmation is neutral */
    history(&f, "[" IDLE("end_turn") "," MESSAGE "]");
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK(!rc_session_idle_deadline(f.s, &d));
    history(&f, "[]"); /* a session with no input never arms (12.7) */
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK(!rc_session_idle_deadline(f.s, &d));
    fake_free(&f);
}

TEST(idle_is_deferred_while_a_call_is_held)
{
    fake f;
    int64_t d;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, USE_P("a", "bash", "\"ask\"")), 0);
    CHECK_INT(live(&f, IDLE("end_turn")), 0);  /* e.g. a turn that ended around the held call */
    CHECK(!rc_session_idle_deadline(f.s, &d)); /* pending, not running */
    f.now += 500000;
    CHECK_INT(live(&f, CONFIRM("a", "allow")), 0);
    CHECK_INT(f.nran, 1);
    CHECK(rc_session_idle_deadline(f.s, &d)); /* a fresh full window once the last hold resolves */
    CHECK_INT(d, f.now + 60000);
    fake_free(&f);
}

TEST(history_read_failure_makes_idle_stale_until_next_event)
{
    fake f;
    int64_t d;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    CHECK_INT(live(&f, IDLE("end_turn")), 0);
    f.list_fail = RC_EHTTP;
    CHECK_INT(rc_session_reconcile(f.s, NULL), 0);
    CHECK(rc_session_idle_deadline(f.s, &d)); /* a running countdown keeps running */
    CHECK_INT(live(&f, THREAD_END("sthr_3")), 0);
    CHECK(!rc_session_idle_deadline(f.s, &d)); /* 12.6 */
    fake_free(&f);
}

/* ---- cancellation (13.9, 14.5.3) ---------------------------------------------------------- */

TEST(cancel_during_tool_posts_error_result_once_when_allowed)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    f.cancel_during_tool = true;
    f.tool_is_error = true;
    f.tool_text = "bash: This operation was aborted";
    f.allow_final = true;
    CHECK_INT(live(&f, USE("a", "bash")), -RC_ECANCELED);
    CHECK_INT(f.finals, 1);
    REQUIRE(f.nsent == 1);
    CHECK_INT(f.sent_deadline[0], 777);
    CHECK_INT(sent_is_error(&f, 0), 1);
    CHECK_STR(sent_text(&f, 0, 0), RC_SESSION_CANCELLED_TEXT);
    CHECK_STR(sent_text(&f, 0, 1), "bash: This operation was aborted");
    CHECK(rc_session_is_answered(f.s, "a"));
    fake_free(&f);
}

TEST(cancel_during_tool_posts_nothing_when_the_lease_is_lost)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    f.cancel_during_tool = true;
    f.allow_final = false;
    CHECK_INT(live(&f, USE("a", "bash")), -RC_ECANCELED);
    CHECK_INT(f.nsent, 0);
    CHECK(!rc_session_is_answered(f.s, "a"));
    /* and nothing new starts once cancelled */
    CHECK_INT(live(&f, USE("b", "bash")), -RC_ECANCELED);
    CHECK_INT(f.nran, 1);
    fake_free(&f);
}

TEST(cancel_during_send_backoff_stops_at_once)
{
    fake f;
    fake_init(&f, 60000);
    REQUIRE(f.s);
    f.send_fail[0] = RC_ESTATUS;
    f.nsend_fail = 1;
    f.cancel_in_sleep = true;
    f.allow_final = false;
    CHECK_INT(live(&f, USE("a", "bash")), -RC_ECANCELED);
    CHECK_INT(f.send_calls, 1);
    CHECK_INT(f.finals, 1);
    CHECK_INT(f.nsent, 0);
    fake_free(&f);
}
