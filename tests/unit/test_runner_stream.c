/* test_runner_stream.c - the session event stream reader (runner/stream.c) against a local
 * HTTP server: the OPENED marker when the headers arrive, events in order with pings, unnamed
 * and empty messages dropped (protocol 9.2.4), reconnect with back-off after a clean end, an
 * `error` event, silence (9.2.6) or a full queue, FATAL on a fatal 4xx (13.4), and the
 * deadline / cancel behaviour of rc_stream_next. */
#include "cleanup.h"
#include "fixture_http.h"
#include "harness.h"
#include "http.h"
#include "stream.h"

#include <string.h>
#include <unistd.h>

#define SSE_CT "Content-Type: text/event-stream\r\n"

static rc_stream *start(fixture_http *fx, long inactivity_ms, size_t queue_max)
{
    rc_api_config ac = {.http = {.base_url = fixture_http_url(fx), .max_attempts = 1},
                        .credential = "sk-ant-req-test-token-123456"};
    rc_stream_config sc = {.session_id = "sesn_1",
                           .inactivity_ms = inactivity_ms,
                           .backoff_start_ms = 50,
                           .backoff_cap_ms = 100,
                           .queue_max_bytes = queue_max};
    rc_stream *s = NULL;
    if (rc_api_new(&ac, &sc.api, NULL) < 0)
        return NULL;
    if (rc_stream_start(&sc, &s, NULL) < 0) {
        rc_api_free(sc.api);
        return NULL;
    }
    return s;
}

/* Next item within 3 s: its kind (0 on timeout), and the event's id into id (if any). */
static int next_kind(rc_stream *s, char *id, size_t idsz)
{
    rc_stream_item it = {0};
    int r = rc_stream_next(s, rc_http_now_mono_ms() + 3000, &it);
    int kind = r == 1 ? it.kind : r;
    if (id) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it.event, "id");
        snprintf(id, idsz, "%s", cJSON_IsString(v) ? v->valuestring : "");
    }
    rc_stream_item_clear(&it);
    return kind;
}

TEST(opened_then_events_in_order_and_reconnect_after_end)
{
    static const char *const chunks[] = {
        ": ping\n\n",
        "event: agent.message\ndata: {\"type\":\"agent.message\",\"id\":\"e1\"}\n\n",
        "data: {\"type\":\"agent.message\",\"id\":\"unnamed\"}\n\n", /* dropped: no event line */
        "event: ping\ndata: {}\n\n",
        "event: agent.tool_use\ndata:\n\n", /* empty data: skipped */
        "event: agent.tool_use\r\ndata: {\"type\":\"agent.tool_use\",",
        "\"id\":\"e2\"}\r\n\r\n",
        NULL};
    fixture_http *fx = fixture_http_start(NULL);
    rc_stream *s;
    char id[64];
    REQUIRE(fx);
    fixture_http_push(fx,
                      &(fixture_http_response){.status = 200, .headers = SSE_CT, .chunks = chunks});
    fixture_http_push(fx,
                      &(fixture_http_response){.status = 200, .headers = SSE_CT, .hold_ms = 5000});
    s = start(fx, 0, 0);
    REQUIRE(s);
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED);
    CHECK_INT(next_kind(s, id, sizeof id), RC_STREAM_EVENT);
    CHECK_STR(id, "e1");
    CHECK_INT(next_kind(s, id, sizeof id), RC_STREAM_EVENT);
    CHECK_STR(id, "e2");
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED); /* the server ended it: reconnected */
    CHECK_INT(rc_stream_connections(s), 2);
    const fixture_http_request *rq = fixture_http_get(fx, 0);
    REQUIRE(rq);
    CHECK_STR(rq->target, "/v1/sessions/sesn_1/events/stream");
    rc_stream_free(s);
    fixture_http_stop(fx);
}

TEST(error_event_and_bad_json_reconnect)
{
    static const char *const err_chunks[] = {
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
        "\"message\":\"busy\"}}\n\n",
        "event: agent.message\ndata: {\"type\":\"agent.message\",\"id\":\"lost\"}\n\n", NULL};
    static const char *const bad_chunks[] = {"event: agent.message\ndata: {not json\n\n", NULL};
    static const char *const ok_chunks[] = {
        "event: agent.message\ndata: {\"type\":\"agent.message\",\"id\":\"e3\"}\n\n", NULL};
    fixture_http *fx = fixture_http_start(NULL);
    rc_stream *s;
    char id[64];
    REQUIRE(fx);
    fixture_http_push(fx,
                      &(fixture_http_response){
                          .status = 200, .headers = SSE_CT, .chunks = err_chunks, .hold_ms = 5000});
    fixture_http_push(fx,
                      &(fixture_http_response){
                          .status = 200, .headers = SSE_CT, .chunks = bad_chunks, .hold_ms = 5000});
    fixture_http_push(fx,
                      &(fixture_http_response){
                          .status = 200, .headers = SSE_CT, .chunks = ok_chunks, .hold_ms = 5000});
    s = start(fx, 0, 0);
    REQUIRE(s);
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED);
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED); /* the error event ended the first */
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED); /* the bad event ended the second */
    CHECK_INT(next_kind(s, id, sizeof id), RC_STREAM_EVENT);
    CHECK_STR(id, "e3");
    rc_stream_free(s);
    fixture_http_stop(fx);
}

TEST(silence_is_a_dead_stream)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_stream *s;
    int64_t t0;
    REQUIRE(fx);
    fixture_http_push(fx,
                      &(fixture_http_response){.status = 200, .headers = SSE_CT, .hold_ms = 10000});
    fixture_http_push(fx,
                      &(fixture_http_response){.status = 200, .headers = SSE_CT, .hold_ms = 10000});
    s = start(fx, 300, 0);
    REQUIRE(s);
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED);
    t0 = rc_http_now_mono_ms();
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED);
    CHECK(rc_http_now_mono_ms() - t0 < 2000);
    rc_stream_free(s);
    fixture_http_stop(fx);
}

TEST(fatal_4xx_ends_the_reader)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_stream *s;
    REQUIRE(fx);
    fixture_http_push_simple(fx, 404, "Content-Type: application/json\r\n",
                             "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\","
                             "\"message\":\"no session\"}}");
    s = start(fx, 0, 0);
    REQUIRE(s);
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_FATAL);
    usleep(300000);
    CHECK_INT(fixture_http_count(fx), 1); /* no reconnect */
    rc_stream_free(s);
    fixture_http_stop(fx);
}

TEST(transient_open_failure_is_retried)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_stream *s;
    REQUIRE(fx);
    fixture_http_push_simple(fx, 503, "x-should-retry: false\r\n", "");
    fixture_http_push(fx,
                      &(fixture_http_response){.status = 200, .headers = SSE_CT, .hold_ms = 5000});
    s = start(fx, 0, 0);
    REQUIRE(s);
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED);
    CHECK_INT(fixture_http_count(fx), 2);
    rc_stream_free(s);
    fixture_http_stop(fx);
}

TEST(full_queue_drops_the_connection)
{
    static const char *const chunks[] = {
        "event: a\ndata: "
        "{\"type\":\"a\",\"id\":\"1\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n\n",
        "event: a\ndata: "
        "{\"type\":\"a\",\"id\":\"2\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n\n",
        "event: a\ndata: "
        "{\"type\":\"a\",\"id\":\"3\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n\n",
        NULL};
    fixture_http *fx = fixture_http_start(NULL);
    rc_stream *s;
    char id[64];
    REQUIRE(fx);
    fixture_http_push(fx, &(fixture_http_response){
                              .status = 200, .headers = SSE_CT, .chunks = chunks, .hold_ms = 5000});
    fixture_http_push(fx,
                      &(fixture_http_response){.status = 200, .headers = SSE_CT, .hold_ms = 5000});
    s = start(fx, 0, 250); /* room for two events (~120 bytes accounted each) */
    REQUIRE(s);
    REQUIRE(fixture_http_wait(fx, 2, 3000)); /* the reader reconnected without being drained */
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED);
    CHECK_INT(next_kind(s, id, sizeof id), RC_STREAM_EVENT);
    CHECK_STR(id, "1");
    CHECK_INT(next_kind(s, id, sizeof id), RC_STREAM_EVENT);
    CHECK_STR(id, "2");
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED); /* event 3 dropped with the connection */
    rc_stream_free(s);
    fixture_http_stop(fx);
}

TEST(next_honours_deadline_and_cancel)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_stream *s;
    rc_stream_item it = {0};
    int64_t t0;
    REQUIRE(fx);
    fixture_http_push(fx,
                      &(fixture_http_response){.status = 200, .headers = SSE_CT, .hold_ms = 10000});
    s = start(fx, 0, 0);
    REQUIRE(s);
    CHECK_INT(next_kind(s, NULL, 0), RC_STREAM_OPENED);
    t0 = rc_http_now_mono_ms();
    CHECK_INT(rc_stream_next(s, t0 + 200, &it), 0);
    CHECK(rc_http_now_mono_ms() - t0 >= 190);
    CHECK(rc_http_now_mono_ms() - t0 < 1500);
    rc_stream_cancel(s);
    CHECK_INT(rc_stream_next(s, 0, &it), -RC_ECANCELED);
    t0 = rc_http_now_mono_ms();
    rc_stream_free(s); /* the held connection is aborted, not waited out */
    CHECK(rc_http_now_mono_ms() - t0 < 2000);
    fixture_http_stop(fx);
}
