/* test_fcgi_drain.c - the drain's decisions (fcgi/drain.c) with scripted fakes: the launcher is
 * asked before anything is polled, at capacity nothing is claimed, session items are acked then
 * handed off, refused / failed hand-offs end with a force-stop, non-session and malformed items
 * are acked and stopped, unusable ones are left alone, ack failures skip without a stop, stale
 * 404s are retried at most 3 times, the per-delivery cap and deadline, repeated items, shutdown,
 * and the reservation is released when unused. Also the item sorting, the poll-answer mapping,
 * the HTTP status and the JSON summary. */
#include "drain.h"
#include "harness.h"
#include "json.h"

#include <stdio.h>
#include <string.h>

#define ENV    "env_01Ours"
#define SECRET "eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtVE9LRU4xMjMifQ"

/* ---- the fake world ------------------------------------------------------------------------ */

struct fake {
    /* scripted poll answers: JSON text of a work object, or "" = empty, "404", "404env",
     * "500", "401"; past the end = empty */
    const char *polls[40];
    int n_polls, next_poll;
    enum rc_fcgi_reserve_answer reserve_answer;
    enum rc_fcgi_launch_answer launch_answer;
    int ack_fail; /* fail acks of this work id suffix... simple: all acks fail when 1 */
    int stop_fail;
    int64_t now, tick; /* now advances by tick per poll */
    bool cancel_after_first_launch;
    /* record */
    char log[4096];
    int reserves, releases, launches, acks, stops, poll_calls;
    bool cancelled;
};

static void rec(struct fake *f, const char *what, const char *id)
{
    size_t n = strlen(f->log);
    snprintf(f->log + n, sizeof f->log - n, "%s%s%s%s", n ? " " : "", what, id ? ":" : "",
             id ? id : "");
}

static enum rc_fcgi_reserve_answer f_reserve(void *ctx)
{
    struct fake *f = ctx;
    f->reserves++;
    rec(f, "reserve", NULL);
    return f->reserve_answer;
}

static void f_release(void *ctx)
{
    struct fake *f = ctx;
    f->releases++;
    rec(f, "release", NULL);
}

static enum rc_fcgi_launch_answer f_launch(void *ctx, const rc_fcgi_work_item *it)
{
    struct fake *f = ctx;
    f->launches++;
    rec(f, "launch", it->work_id);
    if (f->cancel_after_first_launch)
        f->cancelled = true;
    return f->launch_answer;
}

static enum rc_fcgi_poll_outcome f_poll(void *ctx, cJSON **ret)
{
    struct fake *f = ctx;
    const char *p = f->next_poll < f->n_polls ? f->polls[f->next_poll++] : "";
    f->poll_calls++;
    f->now += f->tick;
    rec(f, "poll", NULL);
    if (!*p)
        return RC_FCGI_POLL_EMPTY;
    if (strcmp(p, "404") == 0)
        return RC_FCGI_POLL_STALE_404;
    if (strcmp(p, "404env") == 0 || strcmp(p, "401") == 0)
        return RC_FCGI_POLL_FATAL;
    if (strcmp(p, "500") == 0)
        return RC_FCGI_POLL_ERROR;
    *ret = cJSON_Parse(p);
    return RC_FCGI_POLL_ITEM;
}

static int f_ack(void *ctx, const char *wid)
{
    struct fake *f = ctx;
    f->acks++;
    rec(f, "ack", wid);
    return f->ack_fail ? -RC_ESTATUS : 0;
}

static int f_stop(void *ctx, const char *wid)
{
    struct fake *f = ctx;
    f->stops++;
    rec(f, "stop", wid);
    return f->stop_fail ? -RC_EHTTP : 0;
}

static int64_t f_now(void *ctx)
{
    return ((struct fake *)ctx)->now;
}

static bool f_cancelled(void *ctx)
{
    return ((struct fake *)ctx)->cancelled;
}

static const rc_fcgi_drain_ops ops = {
    .reserve = f_reserve,
    .release = f_release,
    .launch = f_launch,
    .poll = f_poll,
    .ack = f_ack,
    .stop = f_stop,
    .now_ms = f_now,
    .cancelled = f_cancelled,
};

static char items[40][512];

static const char *session_item(int i)
{
    snprintf(items[i], sizeof items[i],
             "{\"type\":\"work\",\"id\":\"work_%d\",\"environment_id\":\"" ENV "\","
             "\"data\":{\"type\":\"session\",\"id\":\"sesn_%d\"},\"secret\":\"" SECRET "\"}",
             i, i);
    return items[i];
}

static rc_fcgi_drain_summary run(struct fake *f, int max_items, int64_t deadline)
{
    rc_fcgi_drain_params p = {
        .environment_id = ENV, .max_items = max_items, .deadline_ms = deadline};
    rc_fcgi_drain_summary s;
    rc_fcgi_drain_run(&ops, f, &p, &s);
    return s;
}

/* ---- the loop ------------------------------------------------------------------------------ */

TEST(at_capacity_claims_nothing)
{
    struct fake f = {.reserve_answer = RC_FCGI_RESERVE_AT_CAPACITY, .n_polls = 1};
    f.polls[0] = session_item(1);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.end, RC_FCGI_DRAIN_AT_CAPACITY);
    CHECK_STR(f.log, "reserve");
    CHECK_INT(s.claimed, 0);
    CHECK_INT(rc_fcgi_drain_http_status(&s), 200);
}

TEST(launcher_down_claims_nothing_503)
{
    struct fake f = {.reserve_answer = RC_FCGI_RESERVE_FAILED};
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.end, RC_FCGI_DRAIN_LAUNCHER_DOWN);
    CHECK_STR(f.log, "reserve");
    CHECK_INT(rc_fcgi_drain_http_status(&s), 503);
}

TEST(empty_queue_releases_reservation)
{
    struct fake f = {0};
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.end, RC_FCGI_DRAIN_EMPTY);
    CHECK_STR(f.log, "reserve poll release");
    CHECK_INT(s.polls, 1);
    CHECK_INT(rc_fcgi_drain_http_status(&s), 200);
}

TEST(session_items_acked_then_handed_off_in_order)
{
    struct fake f = {.n_polls = 2};
    f.polls[0] = session_item(1);
    f.polls[1] = session_item(2);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_STR(f.log, "reserve poll ack:work_1 launch:work_1 reserve poll ack:work_2 "
                     "launch:work_2 reserve poll release");
    CHECK_INT(s.end, RC_FCGI_DRAIN_EMPTY);
    CHECK_INT(s.claimed, 2);
    CHECK_INT(s.handed_off, 2);
    CHECK_INT(s.stopped, 0);
}

TEST(refused_handoff_is_force_stopped)
{
    struct fake f = {.n_polls = 1, .launch_answer = RC_FCGI_LAUNCH_REFUSED};
    f.polls[0] = session_item(1);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_STR(f.log, "reserve poll ack:work_1 launch:work_1 stop:work_1 reserve poll release");
    CHECK_INT(s.refused, 1);
    CHECK_INT(s.stopped, 1);
    CHECK_INT(s.handed_off, 0);
}

TEST(failed_handoff_is_force_stopped)
{
    enum rc_fcgi_launch_answer answers[] = {RC_FCGI_LAUNCH_FAILED, RC_FCGI_LAUNCH_AT_CAPACITY};
    for (int i = 0; i < 2; i++) {
        struct fake f = {.n_polls = 1, .launch_answer = answers[i], .stop_fail = i};
        f.polls[0] = session_item(1);
        rc_fcgi_drain_summary s = run(&f, 25, 0);
        CHECK_INT(s.handoff_failed, 1);
        CHECK_INT(f.stops, 1);
        CHECK_INT(s.stopped, i ? 0 : 1);
        CHECK_INT(s.stop_failed, i ? 1 : 0);
    }
}

TEST(healthcheck_acked_and_stopped_reservation_kept)
{
    struct fake f = {.n_polls = 2};
    f.polls[0] = "{\"id\":\"work_h\",\"environment_id\":\"" ENV "\","
                 "\"data\":{\"type\":\"healthcheck\",\"id\":\"hc_1\"}}";
    f.polls[1] = session_item(2);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    /* One reservation serves the healthcheck iteration and the session after it. */
    CHECK_STR(f.log, "reserve poll ack:work_h stop:work_h poll ack:work_2 launch:work_2 reserve "
                     "poll release");
    CHECK_INT(s.not_session, 1);
    CHECK_INT(s.claimed, 2);
    CHECK_INT(s.handed_off, 1);
}

TEST(missing_data_type_is_not_a_session)
{
    struct fake f = {.n_polls = 1};
    f.polls[0] = "{\"id\":\"work_h\",\"environment_id\":\"" ENV "\",\"data\":{\"id\":\"x\"}}";
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.not_session, 1);
    CHECK_INT(f.stops, 1);
}

TEST(malformed_session_id_acked_and_stopped)
{
    struct fake f = {.n_polls = 1};
    f.polls[0] = "{\"id\":\"work_m\",\"environment_id\":\"" ENV "\","
                 "\"data\":{\"type\":\"session\",\"id\":\"sesn_../../x\"}}";
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_STR(f.log, "reserve poll ack:work_m stop:work_m poll release");
    CHECK_INT(s.malformed, 1);
    CHECK_INT(f.launches, 0);
}

TEST(unusable_items_left_untouched)
{
    struct fake f = {.n_polls = 3};
    f.polls[0] = "{\"id\":\"work_a/b\",\"environment_id\":\"" ENV "\","
                 "\"data\":{\"type\":\"session\",\"id\":\"sesn_1\"}}";
    f.polls[1] = "{\"id\":\"work_b\",\"environment_id\":\"env_Other\","
                 "\"data\":{\"type\":\"session\",\"id\":\"sesn_1\"}}";
    f.polls[2] = "[1,2]";
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_STR(f.log, "reserve poll poll poll poll release");
    CHECK_INT(s.unusable, 3);
    CHECK_INT(s.claimed, 0);
}

TEST(ack_failure_skips_without_stop)
{
    struct fake f = {.n_polls = 1, .ack_fail = 1};
    f.polls[0] = session_item(1);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_STR(f.log, "reserve poll ack:work_1 poll release");
    CHECK_INT(s.ack_failed, 1);
    CHECK_INT(f.stops, 0);
    CHECK_INT(f.launches, 0);
}

TEST(stale_404_retried_three_times)
{
    struct fake f = {.n_polls = 4};
    f.polls[0] = f.polls[1] = f.polls[2] = "404";
    f.polls[3] = session_item(1);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.stale_404, 3);
    CHECK_INT(s.handed_off, 1);
    CHECK_INT(s.end, RC_FCGI_DRAIN_EMPTY);

    struct fake g = {.n_polls = 5};
    g.polls[0] = g.polls[1] = g.polls[2] = g.polls[3] = "404";
    g.polls[4] = session_item(1);
    s = run(&g, 25, 0);
    CHECK_INT(s.stale_404, 4);
    CHECK_INT(g.poll_calls, 4);
    CHECK_INT(s.end, RC_FCGI_DRAIN_POLL_ERROR);
    CHECK_INT(rc_fcgi_drain_http_status(&s), 503);
    CHECK_INT(g.releases, 1);
}

TEST(poll_errors_end_the_drain)
{
    struct fake f = {.n_polls = 1};
    f.polls[0] = "404env";
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.end, RC_FCGI_DRAIN_POLL_FATAL);
    CHECK_INT(rc_fcgi_drain_http_status(&s), 500);
    struct fake g = {.n_polls = 2};
    g.polls[0] = session_item(1);
    g.polls[1] = "500";
    s = run(&g, 25, 0);
    CHECK_INT(s.end, RC_FCGI_DRAIN_POLL_ERROR);
    CHECK_INT(s.handed_off, 1);
    CHECK_INT(g.releases, 1);
}

TEST(per_delivery_cap)
{
    struct fake f = {.n_polls = 30};
    for (int i = 0; i < 30; i++)
        f.polls[i] = session_item(i);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.end, RC_FCGI_DRAIN_LIMIT);
    CHECK_INT(s.handed_off, 25);
    CHECK_INT(f.poll_calls, 25);
    CHECK_INT(f.releases, 0); /* the last reservation was used by the 25th launch */
    CHECK_INT(rc_fcgi_drain_http_status(&s), 200);
}

TEST(deadline_stops_claiming)
{
    struct fake f = {.n_polls = 10, .tick = 400};
    for (int i = 0; i < 10; i++)
        f.polls[i] = session_item(i);
    rc_fcgi_drain_summary s = run(&f, 25, 1000);
    CHECK_INT(s.end, RC_FCGI_DRAIN_DEADLINE);
    CHECK_INT(s.handed_off, 3); /* polls at 400, 800, 1200 ms; then 1200 >= 1000 */
}

TEST(repeated_item_ends_drain)
{
    struct fake f = {.n_polls = 3, .ack_fail = 1};
    f.polls[0] = session_item(1);
    f.polls[1] = session_item(1);
    f.polls[2] = session_item(2);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.end, RC_FCGI_DRAIN_REPEAT);
    CHECK_INT(f.acks, 1);
    CHECK_INT(f.poll_calls, 2);
    CHECK_INT(f.releases, 1);
}

TEST(shutdown_stops_before_next_claim)
{
    struct fake f = {.n_polls = 3, .cancel_after_first_launch = true};
    for (int i = 0; i < 3; i++)
        f.polls[i] = session_item(i);
    rc_fcgi_drain_summary s = run(&f, 25, 0);
    CHECK_INT(s.end, RC_FCGI_DRAIN_SHUTDOWN);
    CHECK_INT(s.handed_off, 1);
    CHECK_INT(f.poll_calls, 1);
    CHECK_INT(rc_fcgi_drain_http_status(&s), 503);
}

/* ---- pieces -------------------------------------------------------------------------------- */

static enum rc_fcgi_item_kind classify(const char *json, rc_fcgi_work_item *it, const char **why)
{
    cJSON *w = cJSON_Parse(json);
    enum rc_fcgi_item_kind k = rc_fcgi_item_classify(w, ENV, it, why);
    cJSON_Delete(w);
    return k;
}

TEST(classify_fields)
{
    rc_fcgi_work_item it;
    const char *why = "x";
    cJSON *w = cJSON_Parse(session_item(7));
    CHECK_INT(rc_fcgi_item_classify(w, ENV, &it, &why), RC_FCGI_ITEM_SESSION);
    CHECK(why == NULL);
    CHECK_STR(it.work_id, "work_7");
    CHECK_STR(it.session_id, "sesn_7");
    CHECK_STR(it.environment_id, ENV);
    CHECK_STR(it.secret, SECRET);
    CHECK_STR(it.data_type, "session");
    cJSON_Delete(w);
}

TEST(classify_secret_rules)
{
    rc_fcgi_work_item it;
    const char *why;
    const char *base = "{\"id\":\"work_1\",\"environment_id\":\"" ENV "\","
                       "\"data\":{\"type\":\"session\",\"id\":\"sesn_1\"}";
    char buf[512];
    snprintf(buf, sizeof buf, "%s}", base);
    CHECK_INT(classify(buf, &it, &why), RC_FCGI_ITEM_SESSION);
    CHECK(it.secret == NULL);
    snprintf(buf, sizeof buf, "%s,\"secret\":null}", base);
    CHECK_INT(classify(buf, &it, &why), RC_FCGI_ITEM_SESSION);
    CHECK(it.secret == NULL);
    snprintf(buf, sizeof buf, "%s,\"secret\":\"abc\\\"def\"}", base);
    CHECK_INT(classify(buf, &it, &why), RC_FCGI_ITEM_MALFORMED);
    snprintf(buf, sizeof buf, "%s,\"secret\":42}", base);
    CHECK_INT(classify(buf, &it, &why), RC_FCGI_ITEM_MALFORMED);
    snprintf(buf, sizeof buf, "%s,\"secret\":\"a+b/c=\"}", base);
    CHECK_INT(classify(buf, &it, &why), RC_FCGI_ITEM_SESSION);
}

TEST(classify_ids)
{
    rc_fcgi_work_item it;
    const char *why;
    CHECK_INT(classify("{\"id\":\"work_1\",\"environment_id\":\"" ENV "\","
                       "\"data\":{\"type\":\"session\",\"id\":\"sesn_\"}}",
                       &it, &why),
              RC_FCGI_ITEM_MALFORMED);
    CHECK_INT(classify("{\"id\":\"work_1\",\"environment_id\":\"" ENV "\","
                       "\"data\":{\"type\":\"session\",\"id\":7}}",
                       &it, &why),
              RC_FCGI_ITEM_MALFORMED);
    CHECK_INT(classify("{\"id\":\"wrk_1\",\"environment_id\":\"" ENV "\","
                       "\"data\":{\"type\":\"session\",\"id\":\"sesn_1\"}}",
                       &it, &why),
              RC_FCGI_ITEM_UNUSABLE);
    CHECK_INT(classify("{\"id\":\"work_1\",\"data\":{\"type\":\"session\",\"id\":\"sesn_1\"}}", &it,
                       &why),
              RC_FCGI_ITEM_UNUSABLE);
    CHECK_INT(
        classify("{\"id\":\"work_1\",\"environment_id\":\"" ENV "\",\"data\":null}", &it, &why),
        RC_FCGI_ITEM_NOT_SESSION);
    CHECK_INT(classify("\"work\"", &it, &why), RC_FCGI_ITEM_UNUSABLE);
}

TEST(poll_classify)
{
    rc_api_result res = RC_API_RESULT_INIT;
    CHECK_INT(rc_fcgi_poll_classify(1, &res), RC_FCGI_POLL_ITEM);
    CHECK_INT(rc_fcgi_poll_classify(0, &res), RC_FCGI_POLL_EMPTY);
    res.status = 404;
    CHECK_INT(rc_fcgi_poll_classify(-RC_EFATAL, &res), RC_FCGI_POLL_STALE_404);
    snprintf(res.error_code, sizeof res.error_code, "environment_not_found");
    CHECK_INT(rc_fcgi_poll_classify(-RC_EFATAL, &res), RC_FCGI_POLL_FATAL);
    res.error_code[0] = '\0';
    res.status = 401;
    CHECK_INT(rc_fcgi_poll_classify(-RC_EFATAL, &res), RC_FCGI_POLL_FATAL);
    res.status = 503;
    CHECK_INT(rc_fcgi_poll_classify(-RC_ESTATUS, &res), RC_FCGI_POLL_ERROR);
    res.status = 0;
    CHECK_INT(rc_fcgi_poll_classify(-RC_EHTTP, &res), RC_FCGI_POLL_ERROR);
    CHECK_INT(rc_fcgi_poll_classify(-RC_EPARSE, NULL), RC_FCGI_POLL_ERROR);
}

TEST(summary_json)
{
    rc_fcgi_drain_summary s = {.end = RC_FCGI_DRAIN_AT_CAPACITY,
                               .claimed = 2,
                               .handed_off = 1,
                               .refused = 1,
                               .stopped = 1,
                               .polls = 3};
    rc_buf b = RC_BUF_INIT(4096);
    cJSON *j = NULL;
    REQUIRE(rc_fcgi_drain_summary_json(&s, &b, NULL) == 0);
    REQUIRE(rc_json_parse(b.data, b.len, NULL, &j, NULL) == 0);
    CHECK_STR(cJSON_GetObjectItem(j, "status")->valuestring, "at_capacity");
    CHECK_INT(cJSON_GetObjectItem(j, "claimed")->valueint, 2);
    CHECK_INT(cJSON_GetObjectItem(j, "handed_off")->valueint, 1);
    CHECK_INT(cJSON_GetObjectItem(j, "polls")->valueint, 3);
    cJSON_Delete(j);
    rc_buf_free(&b);
    for (int e = RC_FCGI_DRAIN_EMPTY; e <= RC_FCGI_DRAIN_SHUTDOWN; e++)
        CHECK(strcmp(rc_fcgi_drain_end_name((enum rc_fcgi_drain_end)e), "unknown") != 0);
}
