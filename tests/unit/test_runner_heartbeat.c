/* test_runner_heartbeat.c - the lease rules of protocol section 7: the heartbeat state machine
 * with an injected clock (interval from the TTL, exact echo, the classification of every
 * answer, the first end reason winning), then the heartbeat thread against a local HTTP server
 * (NO_HEARTBEAT first, the echo percent-encoded, the TTL-driven interval, a 412 ending the loop
 * with lease_lost). */
#include "cleanup.h"
#include "fixture_http.h"
#include "harness.h"
#include "heartbeat.h"
#include "http.h"
#include "json.h"

#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define JSON_CT "Content-Type: application/json\r\n"

static cJSON *js(const char *text)
{
    cJSON *j = NULL;
    if (rc_json_parse(text, strlen(text), NULL, &j, NULL) < 0)
        return NULL;
    return j;
}

static int success(rc_hb_state *s, int64_t now, const char *body, int64_t *ttl)
{
    _cleanup_json_ cJSON *j = js(body);
    int64_t dummy;
    return rc_hb_state_on_success(s, now, j, ttl ? ttl : &dummy);
}

#define OK_BODY(last, ttl, state, ext)                                                             \
    "{\"type\":\"work_heartbeat\",\"last_heartbeat\":\"" last "\",\"lease_extended\":" ext         \
    ",\"state\":\"" state "\",\"ttl_seconds\":" ttl "}"

/* ---- state machine ------------------------------------------------------------------------ */

TEST(initial_values_7_2)
{
    rc_hb_state s;
    rc_hb_state_init(&s, 5000);
    CHECK_STR(s.expected, "NO_HEARTBEAT");
    CHECK_INT(s.interval_ms, 30000);
    CHECK_INT(s.ttl_ms, 90000);
    CHECK_INT(s.last_success_ms, 5000);
}

TEST(success_echoes_byte_for_byte_and_follows_ttl)
{
    rc_hb_state s;
    int64_t ttl = 0;
    rc_hb_state_init(&s, 0);
    CHECK_INT(success(&s, 100, OK_BODY("2026-05-01T12:00:31.123456+00:00", "300", "active", "true"),
                      &ttl),
              RC_LEASE_HELD);
    CHECK_STR(s.expected, "2026-05-01T12:00:31.123456+00:00");
    CHECK_INT(ttl, 300000);
    CHECK_INT(s.ttl_ms, 300000);
    CHECK_INT(s.interval_ms, 30000); /* min(ttl/2, 30 s) */
    CHECK_INT(s.last_success_ms, 100);
    CHECK_INT(success(&s, 200, OK_BODY("b", "4", "active", "true"), &ttl), RC_LEASE_HELD);
    CHECK_INT(s.interval_ms, 2000);
    CHECK_INT(success(&s, 300, OK_BODY("c", "1", "active", "true"), &ttl), RC_LEASE_HELD);
    CHECK_INT(s.interval_ms, 1000); /* max(1 s, ...) */
    /* no TTL (or 0): the previous values stay, and no window update is reported */
    CHECK_INT(success(&s, 400, OK_BODY("", "0", "active", "true"), &ttl), RC_LEASE_HELD);
    CHECK_INT(ttl, 0);
    CHECK_INT(s.ttl_ms, 1000);
    CHECK_STR(s.expected, ""); /* "" is a valid last_heartbeat, echoed as is */
}

TEST(success_with_stop_signals)
{
    rc_hb_state s;
    rc_hb_state_init(&s, 0);
    CHECK_INT(success(&s, 1, OK_BODY("a", "60", "stopping", "true"), NULL),
              RC_LEASE_HEARTBEAT_STOP);
    CHECK_INT(success(&s, 1, OK_BODY("a", "60", "stopped", "false"), NULL),
              RC_LEASE_HEARTBEAT_STOP);
    CHECK_INT(success(&s, 1, OK_BODY("a", "60", "active", "false"), NULL), RC_LEASE_HEARTBEAT_STOP);
    CHECK_INT(success(&s, 1, "{\"last_heartbeat\":\"a\",\"state\":\"active\"}", NULL),
              RC_LEASE_HEARTBEAT_STOP); /* lease_extended absent: the SDK's !undefined */
    CHECK_INT(success(&s, 1, OK_BODY("a", "60", "starting", "true"), NULL), RC_LEASE_HELD);
}

TEST(malformed_success_changes_nothing)
{
    rc_hb_state s;
    rc_hb_state_init(&s, 7);
    CHECK_INT(success(&s, 100, "{\"ttl_seconds\":4}", NULL), -RC_EPARSE);
    CHECK_INT(success(&s, 100, "{\"last_heartbeat\":5}", NULL), -RC_EPARSE);
    CHECK_INT(success(&s, 100, "[]", NULL), -RC_EPARSE);
    CHECK_STR(s.expected, "NO_HEARTBEAT");
    CHECK_INT(s.last_success_ms, 7);
    CHECK_INT(s.interval_ms, 30000);
}

TEST(failure_classification_7_6_to_7_8)
{
    rc_hb_state s;
    rc_hb_state_init(&s, 0);
    CHECK_INT(success(&s, 1000, OK_BODY("x", "10", "active", "true"), NULL), RC_LEASE_HELD);
    CHECK_INT(rc_hb_state_on_failure(&s, 2000, 412), RC_LEASE_LOST);
    CHECK_INT(rc_hb_state_on_failure(&s, 2000, 400), RC_LEASE_REJECTED);
    CHECK_INT(rc_hb_state_on_failure(&s, 2000, 401), RC_LEASE_REJECTED);
    CHECK_INT(rc_hb_state_on_failure(&s, 2000, 403), RC_LEASE_REJECTED);
    CHECK_INT(rc_hb_state_on_failure(&s, 2000, 404), RC_LEASE_REJECTED);
    /* transient within the TTL: keep beating with the same value (7.9: never NO_HEARTBEAT) */
    CHECK_INT(rc_hb_state_on_failure(&s, 2000, 500), RC_LEASE_HELD);
    CHECK_INT(rc_hb_state_on_failure(&s, 5000, 429), RC_LEASE_HELD);
    CHECK_INT(rc_hb_state_on_failure(&s, 8000, 409), RC_LEASE_HELD);
    CHECK_INT(rc_hb_state_on_failure(&s, 9000, 408), RC_LEASE_HELD);
    CHECK_INT(rc_hb_state_on_failure(&s, 11000, 0), RC_LEASE_HELD); /* exactly ttl: still held */
    CHECK_STR(s.expected, "x");
    CHECK_INT(rc_hb_state_on_failure(&s, 11001, 503), RC_LEASE_ASSUMED_LOST);
    CHECK_INT(rc_hb_state_on_failure(&s, 11001, 0), RC_LEASE_ASSUMED_LOST);
}

TEST(assumed_ttl_before_first_success_is_90s)
{
    rc_hb_state s;
    rc_hb_state_init(&s, 0);
    CHECK_INT(rc_hb_state_on_failure(&s, 90000, 0), RC_LEASE_HELD);
    CHECK_INT(rc_hb_state_on_failure(&s, 90001, 0), RC_LEASE_ASSUMED_LOST);
}

TEST(lease_first_reason_wins)
{
    rc_lease l = {0};
    CHECK_INT(rc_lease_reason(&l), RC_LEASE_HELD);
    CHECK(!rc_lease_finish(&l, RC_LEASE_HELD));
    CHECK(rc_lease_finish(&l, RC_LEASE_LOST));
    CHECK(!rc_lease_finish(&l, RC_LEASE_RUNNER_DONE));
    CHECK_INT(rc_lease_reason(&l), RC_LEASE_LOST);
    CHECK(rc_lease_reason_is_lost(RC_LEASE_LOST));
    CHECK(rc_lease_reason_is_lost(RC_LEASE_ASSUMED_LOST));
    CHECK(!rc_lease_reason_is_lost(RC_LEASE_REJECTED));
    CHECK(!rc_lease_reason_is_lost(RC_LEASE_HEARTBEAT_STOP));
    CHECK(!rc_lease_reason_is_lost(RC_LEASE_RUNNER_DONE));
    CHECK_STR(rc_lease_reason_name(RC_LEASE_ASSUMED_LOST), "assumed_lost");
}

/* ---- the thread --------------------------------------------------------------------------- */

typedef struct ends {
    atomic_int reason;
    atomic_int calls;
    _Atomic int64_t ttl;
} ends;

static void on_end(void *ud, int reason)
{
    ends *e = ud;
    atomic_store(&e->reason, reason);
    atomic_fetch_add(&e->calls, 1);
}

static void on_ttl(void *ud, int64_t ttl)
{
    atomic_store(&((ends *)ud)->ttl, ttl);
}

static rc_heartbeat *start(fixture_http *fx, ends *e)
{
    rc_api_config ac = {.http = {.base_url = fixture_http_url(fx)},
                        .credential = "sk-ant-req-test-token-123456"};
    rc_heartbeat_config hc = {.environment_id = "env_1",
                              .work_id = "work_1",
                              .on_end = on_end,
                              .on_ttl = on_ttl,
                              .userdata = e};
    rc_heartbeat *hb = NULL;
    if (rc_api_new(&ac, &hc.api, NULL) < 0)
        return NULL;
    if (rc_heartbeat_start(&hc, &hb, NULL) < 0) {
        rc_api_free(hc.api);
        return NULL;
    }
    return hb;
}

TEST(thread_claims_echoes_and_stops_on_412)
{
    fixture_http *fx = fixture_http_start(NULL);
    ends e = {0};
    rc_heartbeat *hb;
    const fixture_http_request *rq;
    REQUIRE(fx);
    fixture_http_push_simple(fx, 200, JSON_CT,
                             OK_BODY("2026-01-01T00:00:01+00:00", "2", "active", "true"));
    fixture_http_push_simple(fx, 200, JSON_CT, OK_BODY("t2", "2", "active", "true"));
    fixture_http_push_simple(
        fx, 412, JSON_CT,
        "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"no\","
        "\"details\":{\"error_code\":\"heartbeat_precondition_failed\",\"current_state\":"
        "{\"state\":\"queued\",\"last_heartbeat\":null,\"lease_extended\":false,\"ttl_seconds\":2}}"
        "}}");
    hb = start(fx, &e);
    REQUIRE(hb);
    CHECK(rc_heartbeat_wait_first(hb, 5000));
    CHECK(fixture_http_wait(fx, 3, 6000));
    for (int i = 0; i < 50 && atomic_load(&e.calls) == 0; i++)
        usleep(20000);
    CHECK_INT(atomic_load(&e.calls), 1);
    CHECK_INT(atomic_load(&e.reason), RC_LEASE_LOST);
    CHECK_INT(atomic_load(&e.ttl), 2000);
    CHECK_INT(rc_heartbeat_beats(hb), 2);
    usleep(1300000); /* no beat after the 412 */
    CHECK_INT(fixture_http_count(fx), 3);
    rq = fixture_http_get(fx, 0);
    REQUIRE(rq);
    CHECK_STR(rq->method, "POST");
    CHECK_STR(rq->target, "/v1/environments/env_1/work/work_1/heartbeat"
                          "?expected_last_heartbeat=NO_HEARTBEAT");
    rq = fixture_http_get(fx, 1);
    REQUIRE(rq);
    CHECK_STR(rq->target, "/v1/environments/env_1/work/work_1/heartbeat"
                          "?expected_last_heartbeat=2026-01-01T00%3A00%3A01%2B00%3A00");
    rq = fixture_http_get(fx, 2);
    REQUIRE(rq);
    CHECK(strstr(rq->target, "expected_last_heartbeat=t2") != NULL);
    /* the interval follows the TTL: 2 s -> a beat every 1 s */
    CHECK(fixture_http_get(fx, 1)->received_ms - fixture_http_get(fx, 0)->received_ms >= 900);
    CHECK(fixture_http_get(fx, 1)->received_ms - fixture_http_get(fx, 0)->received_ms < 2500);
    rc_heartbeat_stop(hb);
    fixture_http_stop(fx);
}

TEST(thread_keeps_old_value_after_transient_failure_and_stop_ends_it)
{
    fixture_http *fx = fixture_http_start(NULL);
    ends e = {0};
    rc_heartbeat *hb;
    REQUIRE(fx);
    fixture_http_push_simple(fx, 200, JSON_CT, OK_BODY("v1", "2", "active", "true"));
    /* one failed beat (x-should-retry: false keeps the client from retrying inside it) */
    fixture_http_push_simple(fx, 503, "x-should-retry: false\r\n" JSON_CT, "{}");
    fixture_http_push_simple(fx, 200, JSON_CT, OK_BODY("v2", "2", "stopping", "true"));
    hb = start(fx, &e);
    REQUIRE(hb);
    CHECK(fixture_http_wait(fx, 3, 6000));
    for (int i = 0; i < 200 && atomic_load(&e.calls) == 0; i++)
        usleep(20000);
    CHECK_INT(atomic_load(&e.reason), RC_LEASE_HEARTBEAT_STOP);
    REQUIRE(fixture_http_count(fx) >= 3);
    CHECK(strstr(fixture_http_get(fx, 1)->target, "expected_last_heartbeat=v1") != NULL);
    CHECK(strstr(fixture_http_get(fx, 2)->target, "expected_last_heartbeat=v1") != NULL);
    rc_heartbeat_stop(hb);
    fixture_http_stop(fx);
}

TEST(stop_aborts_a_hung_beat_promptly)
{
    fixture_http *fx = fixture_http_start(NULL);
    ends e = {0};
    rc_heartbeat *hb;
    int64_t t0;
    REQUIRE(fx);
    fixture_http_push(fx, &(fixture_http_response){.status = 200, .delay_ms = 20000});
    hb = start(fx, &e);
    REQUIRE(hb);
    CHECK(fixture_http_wait(fx, 1, 3000));
    t0 = rc_http_now_mono_ms();
    rc_heartbeat_stop(hb);
    CHECK(rc_http_now_mono_ms() - t0 < 2000);
    CHECK_INT(atomic_load(&e.calls), 0); /* stopping is not a lease end */
    fixture_http_stop(fx);
}

/* After failed beats the next comes sooner than the interval: 1 s, 2 s, 4 s, ... capped. */
TEST(next_delay_backs_off_to_the_interval)
{
    CHECK(rc_hb_next_delay_ms(30000, 0) == 30000);
    CHECK(rc_hb_next_delay_ms(30000, 1) == 1000);
    CHECK(rc_hb_next_delay_ms(30000, 2) == 2000);
    CHECK(rc_hb_next_delay_ms(30000, 3) == 4000);
    CHECK(rc_hb_next_delay_ms(30000, 5) == 16000);
    CHECK(rc_hb_next_delay_ms(30000, 6) == 30000);
    CHECK(rc_hb_next_delay_ms(30000, 4000000000U) == 30000);
    CHECK(rc_hb_next_delay_ms(5000, 1) == 1000);
    CHECK(rc_hb_next_delay_ms(5000, 4) == 5000);
    CHECK(rc_hb_next_delay_ms(1000, 1) == 1000);
}
