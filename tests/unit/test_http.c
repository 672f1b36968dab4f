/* test_http.c - the HTTP transport (lib/http.c) and the API client (lib/api.c), the pure retry
 * policy against the §2.7 table and everything else against a real local server
 * (fixture_http.c): headers and query actually sent, §2.5 decoding, §2.6 error bodies, retries,
 * caps, unix sockets, proxy and redirect lock-down, SSE streaming, inactivity, cancel, and that
 * no error message ever carries the credential. */
#include "api.h"
#include "cleanup.h"
#include "fixture_http.h"
#include "harness.h"
#include "http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CRED       "sk-ant-oat01-TESTSECRET-0123456789abcdef"
#define CRED_PLAIN "opaque-credential-Zx81Qp77Lm"
#define FAST_RETRY "retry-after-ms: 1\r\n"
#define JSON_CT    "Content-Type: application/json\r\n"

/* ---- helpers ------------------------------------------------------------------------------ */

static double rand_zero(void *ctx)
{
    (void)ctx;
    return 0.0;
}

static double rand_fixed(void *ctx)
{
    return *(double *)ctx;
}

static rc_api *api_for(fixture_http *fx, const char *cred, rc_api_config *over)
{
    rc_api_config cfg = {0};
    rc_api *api = NULL;
    rc_error err = {0};
    if (over)
        cfg = *over;
    if (!cfg.http.base_url && !cfg.http.unix_socket)
        cfg.http.base_url = fixture_http_url(fx);
    if (!cfg.http.rand_fn)
        cfg.http.rand_fn = rand_zero;
    cfg.credential = cred;
    if (rc_api_new(&cfg, &api, &err) < 0) {
        printf("# rc_api_new: %s\n", err.msg);
        return NULL;
    }
    return api;
}

static rc_http_client *http_for(fixture_http *fx, rc_http_config *over)
{
    rc_http_config cfg = {0};
    rc_http_client *c = NULL;
    rc_error err = {0};
    if (over)
        cfg = *over;
    if (!cfg.base_url && !cfg.unix_socket)
        cfg.base_url = fixture_http_url(fx);
    if (!cfg.rand_fn)
        cfg.rand_fn = rand_zero;
    if (rc_http_client_new(&cfg, &c, &err) < 0) {
        printf("# rc_http_client_new: %s\n", err.msg);
        return NULL;
    }
    return c;
}

static const char *hdr(fixture_http *fx, size_t i, const char *name)
{
    static char buf[1024];
    return fixture_http_header(fixture_http_get(fx, i), name, buf, sizeof buf);
}

/* A port nobody listens on (bound, then closed). */
static int dead_port(void)
{
    fixture_http *fx = fixture_http_start(NULL);
    int port = fx ? fixture_http_port(fx) : 1;
    fixture_http_stop(fx);
    return port;
}

#define CHECK_NO_CRED(s)                                                                           \
    do {                                                                                           \
        const char *_s = (s);                                                                      \
        if (_s && (strstr(_s, CRED) || strstr(_s, CRED_PLAIN) || strstr(_s, "TESTSECRET")))        \
            rc_test_fail(__FILE__, __LINE__, "credential leaked: %s", _s);                         \
    } while (0)

/* ---- pure: encoding ----------------------------------------------------------------------- */

TEST(query_percent_encoding)
{
    _cleanup_(rc_buf_free) rc_buf q = RC_BUF_INIT(4096);
    REQUIRE(rc_http_query_add(&q, "expected_last_heartbeat", "2026-05-01T12:00:31.123456+00:00",
                              NULL) == 0);
    CHECK_STR(rc_buf_cstr(&q), "expected_last_heartbeat=2026-05-01T12%3A00%3A31.123456%2B00%3A00");
    rc_buf_reset(&q);
    REQUIRE(rc_http_query_add(&q, "a", "AZaz09-._~ /?&=#%\xc3\xa9", NULL) == 0);
    CHECK_STR(rc_buf_cstr(&q), "a=AZaz09-._~%20%2F%3F%26%3D%23%25%C3%A9");
    rc_buf_reset(&q);
    REQUIRE(rc_http_query_add(&q, "absent", NULL, NULL) == 0);
    CHECK_INT(q.len, 0);
    REQUIRE(rc_http_query_add_int(&q, "limit", 1000, NULL) == 0);
    REQUIRE(rc_http_query_add(&q, "created_at[gt]", "2026-01-01T00:00:00Z", NULL) == 0);
    CHECK_STR(rc_buf_cstr(&q), "limit=1000&created_at[gt]=2026-01-01T00%3A00%3A00Z");
    CHECK(rc_http_query_add(&q, "", "x", NULL) == -RC_EINVAL);
}

TEST(query_arrays_use_brackets)
{
    _cleanup_(rc_buf_free) rc_buf q = RC_BUF_INIT(4096);
    const char *types[] = {"agent.tool_use", "user.tool_result"};
    REQUIRE(rc_http_query_add_array(&q, "types", types, 2, NULL) == 0);
    CHECK_STR(rc_buf_cstr(&q), "types[]=agent.tool_use&types[]=user.tool_result");
    REQUIRE(rc_http_query_add_array(&q, "event_deltas", (const char *[]){"agent.message"}, 1,
                                    NULL) == 0);
    CHECK_STR(rc_buf_cstr(&q),
              "types[]=agent.tool_use&types[]=user.tool_result&event_deltas[]=agent.message");
}

TEST(path_segments_encoded_and_checked)
{
    _cleanup_(rc_buf_free) rc_buf p = RC_BUF_INIT(4096);
    REQUIRE(rc_http_path_add_segment(&p, "v1", NULL) == 0);
    REQUIRE(rc_http_path_add_segment(&p, "sesn_01/../x?y", NULL) == 0);
    CHECK_STR(rc_buf_cstr(&p), "/v1/sesn_01%2F..%2Fx%3Fy");
    CHECK(rc_http_path_add_segment(&p, "..", NULL) == -RC_EINVAL);
    CHECK(rc_http_path_add_segment(&p, ".", NULL) == -RC_EINVAL);
    CHECK(rc_http_path_add_segment(&p, "", NULL) == -RC_EINVAL);
    CHECK(rc_http_path_add_segment(&p, NULL, NULL) == -RC_EINVAL);
}

TEST(content_type_json_detection)
{
    CHECK(rc_http_content_type_is_json("application/json"));
    CHECK(rc_http_content_type_is_json("Application/JSON; charset=utf-8"));
    CHECK(rc_http_content_type_is_json("application/problem+json"));
    CHECK(rc_http_content_type_is_json(" application/vnd.api+json ;x=y"));
    CHECK(!rc_http_content_type_is_json("text/plain"));
    CHECK(!rc_http_content_type_is_json("text/event-stream"));
    CHECK(!rc_http_content_type_is_json(""));
    CHECK(!rc_http_content_type_is_json(NULL));
    /* "contains application/json" is the SDK's rule (§2.5.2), taken literally */
    CHECK(rc_http_content_type_is_json("application/json-seq"));
    CHECK(!rc_http_content_type_is_json("application/jso"));
}

/* ---- pure: retry policy (§2.7) ------------------------------------------------------------ */

TEST(retry_status_table)
{
    const long retried[] = {408, 409, 429, 500, 502, 503, 504, 529, 599};
    const long not_retried[] = {200, 201, 204, 301, 302, 400, 401, 403, 404, 405, 412, 422};
    for (size_t i = 0; i < sizeof retried / sizeof retried[0]; i++) {
        CHECK(rc_http_should_retry(retried[i], NULL, 0));
        CHECK(rc_http_should_retry(retried[i], "", 0));
    }
    for (size_t i = 0; i < sizeof not_retried / sizeof not_retried[0]; i++)
        CHECK(!rc_http_should_retry(not_retried[i], NULL, 0));
}

TEST(retry_x_should_retry_overrides)
{
    CHECK(rc_http_should_retry(400, "true", 0));
    CHECK(rc_http_should_retry(404, "TRUE", 0));
    CHECK(!rc_http_should_retry(503, "false", 0));
    CHECK(!rc_http_should_retry(409, "false", 0));
    CHECK(!rc_http_should_retry(429, "False", 0));
    CHECK(rc_http_should_retry(503, "maybe", 0));
    CHECK(!rc_http_should_retry(400, "maybe", 0));
    CHECK(!rc_http_should_retry(200, "true", 0)); /* success is never retried */
}

TEST(retry_transport_errors)
{
    CHECK(rc_http_should_retry(0, NULL, -RC_EHTTP));
    CHECK(rc_http_should_retry(0, NULL, -RC_ETIMEOUT));
    CHECK(rc_http_should_retry(0, "false", -RC_EHTTP));
    CHECK(!rc_http_should_retry(0, NULL, -RC_ECANCELED));
    CHECK(!rc_http_should_retry(0, NULL, -RC_ETOOBIG));
    CHECK(!rc_http_should_retry(0, NULL, -RC_EINVAL));
}

TEST(fatal_4xx_table)
{
    for (long s = 400; s <= 499; s++)
        CHECK(rc_http_is_fatal_4xx(s) == (s != 408 && s != 409 && s != 429));
    CHECK(!rc_http_is_fatal_4xx(399));
    CHECK(!rc_http_is_fatal_4xx(500));
    CHECK(!rc_http_is_fatal_4xx(200));
}

#define NOW           1700000000 /* Tue, 14 Nov 2023 22:13:20 GMT */
#define DELAY(ms, ra) rc_http_retry_delay_ms(0, ms, ra, NOW, rand_zero, NULL)

TEST(retry_delay_headers)
{
    CHECK_INT(DELAY("1500", NULL), 1500);
    CHECK_INT(DELAY("0.5", NULL), 1);
    CHECK_INT(DELAY("12.2", "9"), 13); /* retry-after-ms wins */
    CHECK_INT(DELAY(NULL, "3"), 3000);
    CHECK_INT(DELAY(NULL, "1.5"), 1500);
    CHECK_INT(DELAY("", " 2 "), 2000);
    CHECK_INT(DELAY("soon", "2"), 2000); /* unparsable -ms falls through to retry-after */
    CHECK_INT(DELAY(NULL, "Tue, 14 Nov 2023 22:13:30 GMT"), 10000);
    CHECK_INT(DELAY("2147483647", NULL), 2147483647LL);
}

TEST(retry_delay_rejects_bad_values)
{
    /* each falls back to the computed back-off: 500 ms for n = 0 with U = 0 */
    const char *bad_ms[] = {"garbage", "-5",  "0",    "2147483648", "1e3",
                            "inf",     "nan", "0x10", "5ms",        "99999999999999999999"};
    const char *bad_s[] = {"garbage",
                           "-1",
                           "0",
                           "2147484",
                           "Tue, 14 Nov 2023 22:13:10 GMT",
                           "Fri, 01 Jan 2100 00:00:00 GMT",
                           "1,5",
                           "+",
                           "."};
    for (size_t i = 0; i < sizeof bad_ms / sizeof bad_ms[0]; i++) {
        CHECK_INT(DELAY(bad_ms[i], NULL), 500);
    }
    for (size_t i = 0; i < sizeof bad_s / sizeof bad_s[0]; i++) {
        if (DELAY(NULL, bad_s[i]) != 500)
            rc_test_fail(__FILE__, __LINE__, "retry-after \"%s\" -> %lld", bad_s[i],
                         (long long)DELAY(NULL, bad_s[i]));
    }
    /* a negative -ms value is a number, so retry-after is not consulted */
    CHECK_INT(DELAY("-5", "3"), 500);
}

TEST(retry_backoff_bounds)
{
    const int64_t base[] = {500, 1000, 2000, 4000, 8000, 8000, 8000};
    double hi = 0.999999;
    for (int n = 0; n <= 6; n++) {
        CHECK_INT(rc_http_retry_delay_ms(n, NULL, NULL, NOW, rand_zero, NULL), base[n]);
        int64_t lo = rc_http_retry_delay_ms(n, NULL, NULL, NOW, rand_fixed, &hi);
        CHECK(lo >= base[n] * 3 / 4 && lo <= base[n] * 3 / 4 + 1);
        for (int k = 0; k < 50; k++) {
            int64_t d = rc_http_retry_delay_ms(n, NULL, NULL, NOW, NULL, NULL);
            if (!(d >= base[n] * 3 / 4 && d <= base[n]))
                rc_test_fail(__FILE__, __LINE__, "n=%d delay %lld out of bounds", n, (long long)d);
        }
    }
    CHECK_INT(rc_http_retry_delay_ms(100, NULL, NULL, NOW, rand_zero, NULL), 8000);
    CHECK_INT(rc_http_retry_delay_ms(-3, NULL, NULL, NOW, rand_zero, NULL), 500);
}

/* ---- headers and query on the wire -------------------------------------------------------- */

TEST(api_headers_get_without_body)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"type\":\"session\",\"id\":\"sesn_1\"}");
    CHECK_INT(rc_api_session_get(api, "sesn_1", &res, NULL), 0);
    REQUIRE(fixture_http_count(fx) == 1);
    CHECK_STR(fixture_http_get(fx, 0)->method, "GET");
    CHECK_STR(fixture_http_get(fx, 0)->target, "/v1/sessions/sesn_1");
    CHECK_STR(hdr(fx, 0, "anthropic-version"), "2023-06-01");
    CHECK_STR(hdr(fx, 0, "anthropic-beta"), "managed-agents-2026-04-01");
    CHECK_STR(hdr(fx, 0, "authorization"), "Bearer " CRED);
    CHECK_STR(hdr(fx, 0, "accept"), "application/json");
    CHECK(hdr(fx, 0, "x-api-key") == NULL);
    CHECK(hdr(fx, 0, "content-type") == NULL);
    CHECK(hdr(fx, 0, "expect") == NULL);
    CHECK(hdr(fx, 0, "content-length") == NULL);
    CHECK(strstr(fixture_http_get(fx, 0)->target, "beta") == NULL);
    CHECK_INT(fixture_http_header_count(fixture_http_get(fx, 0), "authorization"), 1);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

/* A caller's own Accept (a skill archive download) replaces the default, never doubles it. */
TEST(api_own_accept_replaces_the_default)
{
    static const char *const binary[] = {"Accept: application/binary", NULL};
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_api_request req = {
        .method = "GET", .path = "/v1/x", .extra_headers = binary, .accept_any_body = true};
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 200, "Content-Type: application/octet-stream\r\n", "PK");
    CHECK_INT(rc_api_request_do(api, &req, &res, NULL), 0);
    REQUIRE(fixture_http_count(fx) == 1);
    CHECK_INT(fixture_http_header_count(fixture_http_get(fx, 0), "accept"), 1);
    CHECK_STR(hdr(fx, 0, "accept"), "application/binary");
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(api_headers_post_with_and_without_body)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    cJSON *ev = cJSON_Parse("{\"type\":\"user.tool_result\",\"tool_use_id\":\"sevt_1\"}");
    REQUIRE(fx && api && ev);
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"data\":[]}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"type\":\"work\"}");
    CHECK_INT(rc_api_events_send(api, "sesn_1", ev, &res, NULL), 0);
    CHECK_INT(rc_api_work_ack(api, "env_1", "work_1", &res, NULL), 0);
    REQUIRE(fixture_http_count(fx) == 2);
    /* with a body: exactly one JSON content-type, the exact body */
    CHECK_STR(fixture_http_get(fx, 0)->method, "POST");
    CHECK_STR(fixture_http_get(fx, 0)->target, "/v1/sessions/sesn_1/events");
    CHECK_STR(hdr(fx, 0, "content-type"), "application/json");
    CHECK_INT(fixture_http_header_count(fixture_http_get(fx, 0), "content-type"), 1);
    CHECK_STR(fixture_http_get(fx, 0)->body,
              "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"sevt_1\"}]}");
    CHECK(hdr(fx, 0, "x-api-key") == NULL);
    /* ack: no body, Content-Length: 0, no content-type */
    CHECK_STR(fixture_http_get(fx, 1)->target, "/v1/environments/env_1/work/work_1/ack");
    CHECK_STR(hdr(fx, 1, "content-length"), "0");
    CHECK(hdr(fx, 1, "content-type") == NULL);
    CHECK_STR(hdr(fx, 1, "authorization"), "Bearer " CRED);
    CHECK(hdr(fx, 1, "x-api-key") == NULL);
    cJSON_Delete(ev);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(api_beta_and_version_configurable)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api_config cfg = {.anthropic_version = "2026-10-21"};
    rc_api *api = api_for(fx, NULL, &cfg);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_api_request mem = {.method = "GET", .path = "/v1/memory_stores", .beta = RC_API_BETA_MEMORY};
    rc_api_request skill = {.method = "GET", .path = "/v1/skills/s", .beta = RC_API_BETA_NONE};
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(rc_api_request_do(api, &mem, &res, NULL), 0);
    CHECK_INT(rc_api_request_do(api, &skill, &res, NULL), 0);
    REQUIRE(fixture_http_count(fx) == 2);
    CHECK_STR(hdr(fx, 0, "anthropic-beta"), "agent-memory-2026-07-22");
    CHECK_STR(hdr(fx, 0, "anthropic-version"), "2026-10-21");
    CHECK(hdr(fx, 1, "anthropic-beta") == NULL);
    /* no credential configured (behind the broker): no credential header at all */
    CHECK(hdr(fx, 0, "authorization") == NULL);
    CHECK(hdr(fx, 0, "x-api-key") == NULL);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(api_refuses_credential_headers_and_injection)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    const char *key[] = {"x-api-key: sk-ant-api-other", NULL};
    const char *auth[] = {"Authorization: Bearer other", NULL};
    const char *crlf[] = {"X-Foo: a\r\nX-Injected: b", NULL};
    rc_api_request req = {.method = "GET", .path = "/v1/x"};
    rc_api *bad = NULL;
    rc_api_config bc = {.http = {.base_url = "http://127.0.0.1:1"}, .credential = "a\r\nb"};
    REQUIRE(fx && api);
    req.extra_headers = key;
    CHECK_INT(rc_api_request_do(api, &req, &res, &err), -RC_EINVAL);
    CHECK_NO_CRED(err.msg);
    req.extra_headers = auth;
    CHECK_INT(rc_api_request_do(api, &req, &res, &err), -RC_EINVAL);
    req.extra_headers = (const char *[]){" X-Api-Key : k", NULL};
    CHECK_INT(rc_api_request_do(api, &req, &res, &err), -RC_EINVAL);
    req.extra_headers = crlf;
    CHECK_INT(rc_api_request_do(api, &req, &res, &err), -RC_EINVAL);
    CHECK_INT(fixture_http_count(fx), 0);
    CHECK_INT(rc_api_new(&bc, &bad, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "a\r\nb") == NULL);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(api_heartbeat_query_encoding)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 200, JSON_CT,
                             "{\"type\":\"work_heartbeat\",\"last_heartbeat\":\"x\","
                             "\"lease_extended\":true,\"state\":\"active\",\"ttl_seconds\":300}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(rc_api_work_heartbeat(api, "env_1", "work_1", "2026-05-01T12:00:31.123456+00:00", 0,
                                    0, &res, NULL),
              0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(res.json, "lease_extended")));
    CHECK_INT(rc_api_work_heartbeat(api, "env_1", "work_1", "NO_HEARTBEAT", 120, 0, &res, NULL), 0);
    REQUIRE(fixture_http_count(fx) == 2);
    CHECK_STR(fixture_http_get(fx, 0)->target,
              "/v1/environments/env_1/work/work_1/heartbeat?expected_last_heartbeat="
              "2026-05-01T12%3A00%3A31.123456%2B00%3A00");
    CHECK_STR(fixture_http_get(fx, 1)->target,
              "/v1/environments/env_1/work/work_1/heartbeat?expected_last_heartbeat="
              "NO_HEARTBEAT&desired_ttl_seconds=120");
    CHECK_STR(hdr(fx, 0, "content-length"), "0");
    CHECK(hdr(fx, 0, "content-type") == NULL);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(api_array_query_on_the_wire)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    _cleanup_(rc_buf_free) rc_buf q = RC_BUF_INIT(1024);
    const char *types[] = {"agent.tool_use", "user.tool_result"};
    REQUIRE(fx && api);
    REQUIRE(rc_http_query_add_array(&q, "types", types, 2, NULL) == 0);
    REQUIRE(rc_http_query_add(&q, "created_at[gte]", "2026-05-01T12:00:00+02:00", NULL) == 0);
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"data\":[],\"next_page\":null}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/sessions/s/events", rc_buf_cstr(&q), NULL, &res, NULL),
              0);
    REQUIRE(fixture_http_count(fx) == 1);
    CHECK_STR(fixture_http_get(fx, 0)->target,
              "/v1/sessions/s/events?types[]=agent.tool_use&types[]=user.tool_result"
              "&created_at[gte]=2026-05-01T12%3A00%3A00%2B02%3A00");
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(api_poll_query_and_worker_id)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_api_poll_opts o = {.reclaim_older_than_ms = 2000, .worker_id = "host-1234"};
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 204, NULL, NULL);
    CHECK_INT(rc_api_work_poll(api, "env_1", &o, &res, NULL), 0);
    REQUIRE(fixture_http_count(fx) == 1);
    CHECK_STR(fixture_http_get(fx, 0)->target,
              "/v1/environments/env_1/work/poll?reclaim_older_than_ms=2000");
    CHECK_STR(hdr(fx, 0, "anthropic-worker-id"), "host-1234");
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

/* ---- §2.5 decoding ------------------------------------------------------------------------ */

TEST(decode_204_is_null)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 204, JSON_CT, NULL);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), 0);
    CHECK_INT(res.status, 204);
    CHECK_INT(res.kind, RC_API_BODY_NONE);
    CHECK(res.json == NULL);
    CHECK(rc_api_result_is_empty(&res));
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(decode_json_empty_body)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 200, "Content-Type: application/json; charset=utf-8\r\n", NULL);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), 0);
    CHECK_INT(res.kind, RC_API_BODY_EMPTY);
    CHECK(res.json == NULL);
    CHECK(rc_api_result_is_empty(&res));
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(decode_json_null_and_object)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 200, JSON_CT, "null");
    fixture_http_push_simple(fx, 200, "content-type: application/vnd.x+json\r\n",
                             " {\"id\":\"work_1\",\"n\":[1,2]} \n");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), 0);
    CHECK_INT(res.kind, RC_API_BODY_JSON);
    CHECK(cJSON_IsNull(res.json));
    CHECK(rc_api_result_is_empty(&res));
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), 0);
    CHECK_INT(res.kind, RC_API_BODY_JSON);
    CHECK(!rc_api_result_is_empty(&res));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(res.json, "id")), "work_1");
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(decode_non_json_and_bad_json)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    rc_api_request any = {.method = "POST", .path = "/v1/x", .accept_any_body = true};
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 200, "Content-Type: text/plain\r\n", "hello");
    fixture_http_push_simple(fx, 200, NULL, ""); /* the 2.5.4 trap: empty, no JSON type */
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"a\":");
    fixture_http_push_simple(fx, 200, JSON_CT, "{} trailing");
    fixture_http_push(fx, &(fixture_http_response){
                              .status = 200, .headers = JSON_CT, .body = "{}\0{}", .body_len = 5});
    fixture_http_push_simple(fx, 200, "Content-Type: text/plain\r\n", "hello");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EPARSE);
    CHECK(strstr(err.msg, "GET /v1/x") != NULL);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EPARSE);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EPARSE);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EPARSE);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EPARSE);
    CHECK_INT(rc_api_request_do(api, &any, &res, &err), 0);
    CHECK_INT(res.kind, RC_API_BODY_TEXT);
    CHECK_STR(res.text, "hello");
    CHECK_INT(res.text_len, 5);
    CHECK_INT(fixture_http_count(fx), 6); /* decode errors are not retried */
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(poll_accepts_all_empty_forms)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 204, NULL, NULL);
    fixture_http_push_simple(fx, 200, JSON_CT, "null");
    fixture_http_push_simple(fx, 200, JSON_CT, NULL);
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"type\":\"work\",\"id\":\"work_1\"}");
    fixture_http_push_simple(fx, 200, NULL, "");
    fixture_http_push_simple(fx, 200, JSON_CT, "[1]");
    CHECK_INT(rc_api_work_poll(api, "env_1", NULL, &res, NULL), 0);
    CHECK_INT(rc_api_work_poll(api, "env_1", NULL, &res, NULL), 0);
    CHECK_INT(rc_api_work_poll(api, "env_1", NULL, &res, NULL), 0);
    CHECK_INT(rc_api_work_poll(api, "env_1", NULL, &res, NULL), 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(res.json, "id")), "work_1");
    CHECK_INT(rc_api_work_poll(api, "env_1", NULL, &res, &err), -RC_EPARSE);
    CHECK_INT(rc_api_work_poll(api, "env_1", NULL, &res, &err), -RC_EPARSE);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(stop_accepts_any_2xx)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 204, NULL, NULL);
    fixture_http_push_simple(fx, 200, NULL, "");
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"type\":\"work\"}");
    fixture_http_push_simple(fx, 409, JSON_CT "x-should-retry: false\r\n",
                             "{\"type\":\"error\",\"error\":{\"type\":\"conflict_error\","
                             "\"message\":\"already stopped\"}}");
    CHECK_INT(rc_api_work_stop(api, "env_1", "work_1", true, &res, NULL), 0);
    CHECK_INT(rc_api_work_stop(api, "env_1", "work_1", false, &res, NULL), 0);
    CHECK_INT(rc_api_work_stop(api, "env_1", "work_1", true, &res, NULL), 0);
    CHECK_INT(res.kind, RC_API_BODY_JSON);
    CHECK_INT(rc_api_work_stop(api, "env_1", "work_1", true, &res, &err), -RC_ESTATUS);
    CHECK_INT(res.status, 409);
    CHECK_STR(res.error_type, "conflict_error");
    REQUIRE(fixture_http_count(fx) == 4); /* the final 409 was not retried */
    CHECK_STR(fixture_http_get(fx, 0)->body, "{\"force\":true}");
    CHECK_STR(fixture_http_get(fx, 1)->body, "{}");
    CHECK_STR(fixture_http_get(fx, 0)->target, "/v1/environments/env_1/work/work_1/stop");
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

/* ---- §2.6 errors -------------------------------------------------------------------------- */

TEST(error_body_decoded)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    const cJSON *cs;
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 404, JSON_CT "request-id: req_abc\r\n",
                             "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\","
                             "\"message\":\"work item not found\",\"details\":{\"error_code\":"
                             "\"work_not_found\"}},\"request_id\":\"req_abc\"}");
    fixture_http_push_simple(
        fx, 412, JSON_CT,
        "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
        "\"Heartbeat precondition failed\",\"details\":{\"error_code\":"
        "\"heartbeat_precondition_failed\",\"current_state\":{\"state\":\"queued\"}}}}");
    fixture_http_push_simple(fx, 500, "Content-Type: text/html\r\nx-should-retry: false\r\n",
                             "<html>oops</html>");
    CHECK_INT(rc_api_work_ack(api, "env_1", "work_9", &res, &err), -RC_EFATAL);
    CHECK_INT(res.status, 404);
    CHECK_INT(res.attempts, 1);
    CHECK_STR(res.error_type, "not_found_error");
    CHECK_STR(res.error_message, "work item not found");
    CHECK_STR(res.error_code, "work_not_found");
    CHECK_STR(res.request_id, "req_abc");
    CHECK_INT(err.code, RC_EFATAL);
    CHECK(strstr(err.msg, "POST /v1/environments/env_1/work/work_9/ack") != NULL);
    CHECK(strstr(err.msg, "404") != NULL);
    CHECK(strstr(err.msg, "not_found_error") != NULL);
    CHECK(strstr(err.msg, "work_not_found") != NULL);
    printf("# %s\n", err.msg);

    CHECK_INT(rc_api_work_heartbeat(api, "env_1", "work_1", "x", 0, 0, &res, &err), -RC_EFATAL);
    CHECK_INT(res.status, 412);
    CHECK_STR(res.error_code, "heartbeat_precondition_failed");
    cs = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(res.error_body, "error"), "details"),
        "current_state");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cs, "state")), "queued");

    CHECK_INT(rc_api_call(api, "GET", "/v1/y", NULL, NULL, &res, &err), -RC_ESTATUS);
    CHECK_INT(res.status, 500);
    CHECK_STR(res.error_type, "");
    CHECK(strstr(err.msg, "GET /v1/y: HTTP 500") != NULL);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

/* ---- retries against the server ----------------------------------------------------------- */

TEST(retry_503_503_200_succeeds)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 503, JSON_CT FAST_RETRY, "{}");
    fixture_http_push_simple(fx, 503, JSON_CT FAST_RETRY, "{}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"ok\":true}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), 0);
    CHECK_INT(res.attempts, 3);
    CHECK_INT(fixture_http_count(fx), 3);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(res.json, "ok")));
    /* every attempt carries the same headers */
    for (size_t i = 0; i < 3; i++)
        CHECK_STR(hdr(fx, i, "authorization"), "Bearer " CRED);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(retry_503_three_times_fails)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    REQUIRE(fx && api);
    for (int i = 0; i < 4; i++)
        fixture_http_push_simple(
            fx, 503, JSON_CT FAST_RETRY,
            "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_ESTATUS);
    CHECK_INT(res.attempts, 3);
    CHECK_INT(res.status, 503);
    CHECK_STR(res.error_type, "overloaded_error");
    CHECK_INT(fixture_http_count(fx), 3);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(retry_not_for_fatal_4xx)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    const int fatal[] = {400, 401, 403, 404, 412};
    REQUIRE(fx && api);
    for (size_t i = 0; i < 5; i++) {
        fixture_http_reset(fx);
        fixture_http_push_simple(fx, fatal[i], JSON_CT FAST_RETRY, "{}");
        fixture_http_push_simple(fx, 200, JSON_CT, "{}");
        CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), -RC_EFATAL);
        CHECK_INT(fixture_http_count(fx), 1);
    }
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(retry_transient_statuses_and_overrides)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    const int transient[] = {408, 409, 429, 500, 529};
    REQUIRE(fx && api);
    for (size_t i = 0; i < 5; i++) {
        fixture_http_reset(fx);
        fixture_http_push_simple(fx, transient[i], JSON_CT FAST_RETRY, "{}");
        fixture_http_push_simple(fx, 200, JSON_CT, "{}");
        CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), 0);
        CHECK_INT(fixture_http_count(fx), 2);
    }
    fixture_http_reset(fx);
    fixture_http_push_simple(fx, 400, JSON_CT FAST_RETRY "x-should-retry: true\r\n", "{}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), 0);
    CHECK_INT(fixture_http_count(fx), 2);
    fixture_http_reset(fx);
    fixture_http_push_simple(fx, 429, JSON_CT FAST_RETRY "X-Should-Retry: false\r\n", "{}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), -RC_ESTATUS);
    CHECK_INT(fixture_http_count(fx), 1);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(retry_after_closed_connection)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(fx && api);
    fixture_http_push(fx, &(fixture_http_response){.close_without_answer = true});
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, NULL), 0);
    CHECK_INT(res.attempts, 2);
    CHECK_INT(fixture_http_count(fx), 2);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(retry_connection_refused)
{
    char url[64];
    rc_http_config hc = {.base_url = url, .max_attempts = 3};
    rc_http_client *c;
    rc_http_response resp = {0};
    rc_error err = {0};
    int64_t t0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", dead_port());
    c = http_for(NULL, &hc);
    REQUIRE(c);
    t0 = rc_http_now_mono_ms();
    CHECK_INT(rc_http_send(c, &(rc_http_request){.method = "GET", .path = "/v1/x"}, &resp, &err),
              -RC_EHTTP);
    CHECK_INT(resp.attempts, 3);
    /* U = 0: 500 ms then 1000 ms of back-off */
    CHECK(rc_http_now_mono_ms() - t0 >= 1400);
    CHECK(strstr(err.msg, "GET /v1/x") != NULL);
    printf("# %s\n", err.msg);
    rc_http_response_free(&resp);
    rc_http_client_free(c);
}

TEST(retry_default_backoff_timing)
{
    fixture_http *fx = fixture_http_start(NULL);
    double u = 0.999999;
    rc_http_config hc = {.rand_fn = rand_fixed, .rand_ctx = &u};
    rc_http_client *c = http_for(fx, &hc);
    rc_http_response resp = {0};
    const fixture_http_request *a, *b;
    int64_t gap;
    REQUIRE(fx && c);
    fixture_http_push_simple(fx, 503, NULL, "x");
    fixture_http_push_simple(fx, 200, NULL, "y");
    CHECK_INT(rc_http_send(c, &(rc_http_request){.method = "GET", .path = "/v1/x"}, &resp, NULL),
              0);
    CHECK_INT(resp.status, 200);
    CHECK_STR(rc_buf_cstr(&resp.body), "y");
    a = fixture_http_get(fx, 0);
    b = fixture_http_get(fx, 1);
    REQUIRE(a && b);
    gap = b->received_ms - a->received_ms;
    CHECK(gap >= 370 && gap < 1200); /* 500 ms * (1 - 0.25 * U) = 375 ms */
    rc_http_response_free(&resp);
    rc_http_client_free(c);
    fixture_http_stop(fx);
}

TEST(retry_after_header_honoured)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_http_client *c = http_for(fx, NULL);
    rc_http_response resp = {0};
    int64_t gap;
    REQUIRE(fx && c);
    fixture_http_push_simple(fx, 429, "retry-after: 1\r\n", NULL);
    fixture_http_push_simple(fx, 200, NULL, NULL);
    CHECK_INT(rc_http_send(c, &(rc_http_request){.method = "GET", .path = "/v1/x"}, &resp, NULL),
              0);
    REQUIRE(fixture_http_count(fx) == 2);
    gap = fixture_http_get(fx, 1)->received_ms - fixture_http_get(fx, 0)->received_ms;
    CHECK(gap >= 990 && gap < 2000);
    rc_http_response_free(&resp);
    rc_http_client_free(c);
    fixture_http_stop(fx);
}

/* ---- caps, timeouts, deadline ------------------------------------------------------------- */

TEST(body_size_cap)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api_config cfg = {.http = {.max_body = 1024}};
    rc_api *api = api_for(fx, CRED, &cfg);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    char big[2049];
    const char *chunks[] = {big, big, NULL};
    REQUIRE(fx && api);
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fixture_http_push_simple(fx, 200, JSON_CT, big);
    fixture_http_push(fx, &(fixture_http_response){.status = 200, .chunks = chunks});
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_ETOOBIG);
    CHECK(strstr(err.msg, "1024") != NULL);
    CHECK_INT(fixture_http_count(fx), 1); /* not retried */
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_ETOOBIG);
    CHECK_INT(fixture_http_count(fx), 2);
    /* the client is still usable afterwards */
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), 0);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(request_timeout)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_http_config hc = {.timeout_ms = 300, .max_attempts = 1};
    rc_http_client *c = http_for(fx, &hc);
    rc_http_response resp = {0};
    rc_error err = {0};
    int64_t t0 = rc_http_now_mono_ms();
    REQUIRE(fx && c);
    fixture_http_push(fx, &(fixture_http_response){.status = 200, .delay_ms = 3000});
    CHECK_INT(rc_http_send(c, &(rc_http_request){.method = "GET", .path = "/v1/x"}, &resp, &err),
              -RC_ETIMEOUT);
    CHECK(rc_http_now_mono_ms() - t0 < 2000);
    rc_http_response_free(&resp);
    rc_http_client_free(c);
    fixture_http_stop(fx);
}

TEST(heartbeat_deadline_cuts_whole_call)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    int64_t t0 = rc_http_now_mono_ms();
    REQUIRE(fx && api);
    fixture_http_push(fx, &(fixture_http_response){.status = 200, .delay_ms = 3000});
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(
        rc_api_work_heartbeat(api, "env_1", "work_1", "NO_HEARTBEAT", 0, t0 + 300, &res, &err),
        -RC_ETIMEOUT);
    CHECK(rc_http_now_mono_ms() - t0 < 1500);
    CHECK_INT(res.attempts, 1);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

/* ---- transport lock-down ------------------------------------------------------------------ */

TEST(unix_socket_mode)
{
    char dir[] = "/tmp/h3-http-XXXXXX", path[128];
    fixture_http *fx;
    rc_api_config cfg = {.http = {.unix_socket = path}};
    rc_api *api;
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/api.sock", dir);
    fx = fixture_http_start(path);
    REQUIRE(fx);
    api = api_for(fx, NULL, &cfg);
    REQUIRE(api);
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"via\":\"unix\"}");
    CHECK_INT(rc_api_session_get(api, "sesn_1", &res, NULL), 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(res.json, "via")), "unix");
    REQUIRE(fixture_http_count(fx) == 1);
    CHECK_STR(fixture_http_get(fx, 0)->target, "/v1/sessions/sesn_1");
    CHECK_STR(hdr(fx, 0, "host"), "localhost");
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
    rmdir(dir);
}

TEST(proxy_environment_ignored)
{
    static const char *vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                 "HTTPS_PROXY", "ALL_PROXY",  "all_proxy"};
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api;
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    char dead[64];
    REQUIRE(fx);
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", dead_port());
    for (size_t i = 0; i < 6; i++)
        setenv(vars[i], dead, 1);
    unsetenv("NO_PROXY");
    unsetenv("no_proxy");
    api = api_for(fx, CRED, NULL);
    REQUIRE(api);
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), 0);
    REQUIRE(fixture_http_count(fx) == 1);
    CHECK_STR(fixture_http_get(fx, 0)->target, "/v1/x"); /* origin-form: no proxy involved */
    for (size_t i = 0; i < 6; i++)
        unsetenv(vars[i]);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(explicit_proxy_used)
{
    fixture_http *proxy = fixture_http_start(NULL);
    rc_http_config hc = {.base_url = "http://upstream.invalid:8080"};
    rc_http_client *c;
    rc_http_response resp = {0};
    REQUIRE(proxy);
    hc.proxy = fixture_http_url(proxy);
    c = http_for(NULL, &hc);
    REQUIRE(c);
    fixture_http_push_simple(proxy, 200, NULL, "via proxy");
    CHECK_INT(rc_http_send(c, &(rc_http_request){.method = "GET", .path = "/v1/x"}, &resp, NULL),
              0);
    REQUIRE(fixture_http_count(proxy) == 1);
    CHECK_STR(fixture_http_get(proxy, 0)->target, "http://upstream.invalid:8080/v1/x");
    rc_http_response_free(&resp);
    rc_http_client_free(c);
    fixture_http_stop(proxy);
}

TEST(redirect_not_followed)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_http_client *c = http_for(fx, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_http_response resp = {0};
    rc_error err = {0};
    char loc[160];
    REQUIRE(fx && api && c);
    snprintf(loc, sizeof loc, "Location: %s/v1/elsewhere\r\n", fixture_http_url(fx));
    fixture_http_push_simple(fx, 302, loc, "moved");
    fixture_http_push_simple(fx, 307, loc, "moved");
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"followed\":true}");
    CHECK_INT(rc_http_send(c, &(rc_http_request){.method = "GET", .path = "/v1/x"}, &resp, NULL),
              0);
    CHECK_INT(resp.status, 302);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_ESTATUS);
    CHECK_INT(res.status, 307);
    CHECK_INT(fixture_http_count(fx), 2);
    rc_http_response_free(&resp);
    rc_http_client_free(c);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(base_url_validation)
{
    const char *bad[] = {
        "ftp://example.com", "http://user:pw@example.com", "http://h/?q=1", "http://h/#frag",
        "not a url",         "file:///etc/passwd",         "gopher://h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc_http_config hc = {.base_url = bad[i]};
        rc_http_client *c = NULL;
        rc_error err = {0};
        CHECK_INT(rc_http_client_new(&hc, &c, &err), -RC_EINVAL);
        CHECK(strstr(err.msg, "pw") == NULL);
        CHECK(c == NULL);
    }
    {
        rc_http_config none = {0};
        rc_http_client *c = NULL;
        CHECK_INT(rc_http_client_new(&none, &c, NULL), -RC_EINVAL);
    }
}

TEST(bad_path_segments_never_sent)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    CHECK_INT(rc_api_session_get(api, "..", &res, NULL), -RC_EINVAL);
    CHECK_INT(rc_api_session_get(api, "", &res, NULL), -RC_EINVAL);
    CHECK_INT(rc_api_work_ack(api, "env", ".", &res, NULL), -RC_EINVAL);
    CHECK_INT(fixture_http_count(fx), 0);
    CHECK_INT(rc_api_session_get(api, "a/../../b", &res, NULL), 0);
    REQUIRE(fixture_http_count(fx) == 1);
    CHECK_STR(fixture_http_get(fx, 0)->target, "/v1/sessions/a%2F..%2F..%2Fb");
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(methods_on_the_wire)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_http_client *c = http_for(fx, NULL);
    rc_http_response resp = {0};
    const char *json[] = {"Content-Type: application/json", NULL};
    REQUIRE(fx && c);
    fixture_http_push_simple(fx, 200, NULL, NULL);
    fixture_http_push_simple(fx, 200, NULL, NULL);
    fixture_http_push_simple(fx, 200, NULL, NULL);
    CHECK_INT(rc_http_send(c, &(rc_http_request){.method = "DELETE", .path = "/v1/a"}, &resp, NULL),
              0);
    CHECK_INT(rc_http_send(c,
                           &(rc_http_request){.method = "PUT",
                                              .path = "/v1/b",
                                              .query = "x=1",
                                              .headers = json,
                                              .body = "{\"k\":1}",
                                              .body_len = 7},
                           &resp, NULL),
              0);
    CHECK_INT(rc_http_send(c, &(rc_http_request){.method = "GET", .path = "/v1/c"}, &resp, NULL),
              0);
    REQUIRE(fixture_http_count(fx) == 3);
    CHECK_STR(fixture_http_get(fx, 0)->method, "DELETE");
    CHECK(hdr(fx, 0, "content-length") == NULL);
    CHECK(hdr(fx, 0, "content-type") == NULL);
    CHECK_STR(fixture_http_get(fx, 1)->method, "PUT");
    CHECK_STR(fixture_http_get(fx, 1)->target, "/v1/b?x=1");
    CHECK_STR(fixture_http_get(fx, 1)->body, "{\"k\":1}");
    CHECK_STR(hdr(fx, 1, "content-type"), "application/json");
    CHECK_STR(hdr(fx, 1, "user-agent"), "runcell");
    CHECK_STR(fixture_http_get(fx, 2)->method, "GET");
    CHECK(hdr(fx, 2, "content-length") == NULL); /* nothing left over from the PUT */
    CHECK(hdr(fx, 2, "content-type") == NULL);
    CHECK(hdr(fx, 2, "accept-encoding") == NULL); /* no decompression: the cap is on raw bytes */
    rc_http_response_free(&resp);
    rc_http_client_free(c);
    fixture_http_stop(fx);
}

/* ---- TLS: verification always on ---------------------------------------------------------- */

extern char **environ;

/* Run argv quietly; returns the child's pid (or -1). */
static pid_t spawn_quiet(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int r;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return r == 0 ? pid : -1;
}

static int run_quiet(char *const argv[])
{
    int status;
    pid_t pid = spawn_quiet(argv);
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool wait_listening(int port, int timeout_ms)
{
    int64_t end = rc_http_now_mono_ms() + timeout_ms;
    while (rc_http_now_mono_ms() < end) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return true;
        usleep(20000);
    }
    return false;
}

static int tls_get(const char *url, const char *ca, rc_error *err)
{
    rc_http_config hc = {.base_url = url, .ca_file = ca, .max_attempts = 1, .timeout_ms = 5000};
    rc_http_client *c = http_for(NULL, &hc);
    rc_http_response resp = {0};
    int r;
    if (!c)
        return -RC_EINVAL;
    r = rc_http_send(c, &(rc_http_request){.method = "GET", .path = "/"}, &resp, err);
    if (r == 0 && resp.status != 200)
        r = -RC_ESTATUS;
    rc_http_response_free(&resp);
    rc_http_client_free(c);
    return r;
}

TEST(tls_verification_always_on)
{
    char dir[] = "/tmp/h3-tls-XXXXXX", cert[96], key[96], acc[32], url[64];
    int port = dead_port();
    pid_t srv;
    rc_error err = {0};
    REQUIRE(mkdtemp(dir));
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(acc, sizeof acc, "127.0.0.1:%d", port);
    {
        char *gen[] = {"openssl",
                       "req",
                       "-x509",
                       "-newkey",
                       "ec",
                       "-pkeyopt",
                       "ec_paramgen_curve:prime256v1",
                       "-nodes",
                       "-keyout",
                       key,
                       "-out",
                       cert,
                       "-days",
                       "1",
                       "-subj",
                       "/CN=localhost",
                       "-addext",
                       "subjectAltName=DNS:localhost",
                       NULL};
        if (run_quiet(gen) != 0) {
            rmdir(dir);
            SKIP("openssl CLI not available to make a test certificate");
        }
    }
    {
        char *serve[] = {"openssl", "s_server", "-accept", acc,      "-cert", cert,
                         "-key",    key,        "-www",    "-quiet", NULL};
        srv = spawn_quiet(serve);
    }
    REQUIRE(srv > 0);
    if (wait_listening(port, 5000)) {
        /* trusted CA and matching name: works */
        snprintf(url, sizeof url, "https://localhost:%d", port);
        CHECK_INT(tls_get(url, cert, &err), 0);
        /* no CA: the self-signed certificate is refused */
        CHECK_INT(tls_get(url, NULL, &err), -RC_EHTTP);
        printf("# %s\n", err.msg);
        /* trusted CA but the name does not match (cert is for localhost, not 127.0.0.1) */
        snprintf(url, sizeof url, "https://127.0.0.1:%d", port);
        CHECK_INT(tls_get(url, cert, &err), -RC_EHTTP);
        printf("# %s\n", err.msg);
    } else {
        rc_test_fail(__FILE__, __LINE__, "openssl s_server did not start");
    }
    kill(srv, SIGTERM);
    waitpid(srv, NULL, 0);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

/* ---- SSE streaming ------------------------------------------------------------------------ */

struct stream_rec {
    int64_t headers_at, first_data_at;
    size_t bytes_at_headers;
    int headers_calls;
    long status;
    char content_type[64];
    rc_buf data;
    size_t abort_after; /* abort once this many bytes arrived (0 = never) */
    rc_http_cancel *cancel_on_data;
};

static int rec_headers(const rc_http_response *resp, void *ud)
{
    struct stream_rec *s = ud;
    s->headers_calls++;
    s->headers_at = rc_http_now_mono_ms();
    s->bytes_at_headers = s->data.len;
    s->status = resp->status;
    snprintf(s->content_type, sizeof s->content_type, "%s", resp->content_type);
    return 0;
}

static int rec_data(const char *data, size_t len, void *ud)
{
    struct stream_rec *s = ud;
    if (!s->first_data_at)
        s->first_data_at = rc_http_now_mono_ms();
    if (rc_buf_append(&s->data, data, len, NULL) < 0)
        return 1;
    if (s->cancel_on_data)
        rc_http_cancel_trigger(s->cancel_on_data);
    return s->abort_after && s->data.len >= s->abort_after;
}

static const char *const sse_chunks[] = {
    ": ping\n\n",
    "event: agent.tool_use\ndata: {\"type\":\"agent.tool_use\",\"id\":\"sevt_1\"}\n\n",
    "event: session.status_idle\n", "data: {\"type\":\"session.status_idle\"}\n\n", NULL};

TEST(sse_stream_headers_before_body)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    struct stream_rec s = {.data = RC_BUF_INIT(65536)};
    rc_error err = {0};
    REQUIRE(fx && api);
    fixture_http_push(
        fx, &(fixture_http_response){.status = 200,
                                     .headers = "Content-Type: text/event-stream\r\nCache-Control: "
                                                "no-cache\r\n",
                                     .chunks = sse_chunks,
                                     .chunk_pause_ms = 300});
    CHECK_INT(rc_api_events_stream(api, "sesn_1", rec_headers, rec_data, &s, 5000, &res, &err), 0);
    CHECK_INT(s.headers_calls, 1);
    CHECK_INT(s.bytes_at_headers, 0);
    CHECK_INT(s.status, 200);
    CHECK_STR(s.content_type, "text/event-stream");
    /* headers were handed over while the server was still pausing before its first chunk */
    CHECK(s.first_data_at - s.headers_at >= 200);
    {
        _cleanup_(rc_buf_free) rc_buf want = RC_BUF_INIT(65536);
        for (const char *const *c = sse_chunks; *c; c++)
            rc_buf_append_str(&want, *c, NULL);
        CHECK_STR(rc_buf_cstr(&s.data), rc_buf_cstr(&want));
    }
    REQUIRE(fixture_http_count(fx) == 1);
    CHECK_STR(fixture_http_get(fx, 0)->target, "/v1/sessions/sesn_1/events/stream");
    CHECK_STR(hdr(fx, 0, "accept"), "text/event-stream");
    CHECK_STR(hdr(fx, 0, "authorization"), "Bearer " CRED);
    rc_buf_free(&s.data);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(sse_stream_error_answer_not_streamed)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    struct stream_rec s = {.data = RC_BUF_INIT(65536)};
    rc_error err = {0};
    REQUIRE(fx && api);
    fixture_http_push_simple(fx, 404, JSON_CT,
                             "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\","
                             "\"message\":\"no such session\"}}");
    CHECK_INT(rc_api_events_stream(api, "sesn_x", rec_headers, rec_data, &s, 0, &res, &err),
              -RC_EFATAL);
    CHECK_INT(s.headers_calls, 0);
    CHECK_INT(s.data.len, 0);
    CHECK_STR(res.error_type, "not_found_error");
    rc_buf_free(&s.data);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(sse_stream_abort_from_callback)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    struct stream_rec s = {.data = RC_BUF_INIT(65536), .abort_after = 1};
    rc_error err = {0};
    int64_t t0 = rc_http_now_mono_ms();
    REQUIRE(fx && api);
    fixture_http_push(
        fx, &(fixture_http_response){.status = 200, .chunks = sse_chunks, .hold_ms = 10000});
    CHECK_INT(rc_api_events_stream(api, "sesn_1", rec_headers, rec_data, &s, 0, &res, &err),
              -RC_ECANCELED);
    CHECK(rc_http_now_mono_ms() - t0 < 3000);
    CHECK_INT(fixture_http_count(fx), 1);
    rc_buf_free(&s.data);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(sse_inactivity_limit)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    struct stream_rec s = {.data = RC_BUF_INIT(65536)};
    rc_error err = {0};
    const char *one[] = {"event: ping\ndata: {}\n\n", NULL};
    int64_t t0 = rc_http_now_mono_ms(), took;
    REQUIRE(fx && api);
    fixture_http_push(fx, &(fixture_http_response){.status = 200, .chunks = one, .hold_ms = 10000});
    CHECK_INT(rc_api_events_stream(api, "sesn_1", rec_headers, rec_data, &s, 400, &res, &err),
              -RC_ETIMEOUT);
    took = rc_http_now_mono_ms() - t0;
    CHECK(took >= 380 && took < 2500);
    CHECK_INT(s.headers_calls, 1);
    CHECK_STR(rc_buf_cstr(&s.data), one[0]);
    CHECK_INT(fixture_http_count(fx), 1); /* a stream that opened is never retried */
    CHECK(strstr(err.msg, "no data") != NULL);
    rc_buf_free(&s.data);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

/* ---- cancel ------------------------------------------------------------------------------- */

struct canceller {
    rc_http_cancel *cancel;
    int after_ms;
};

static void *cancel_later(void *arg)
{
    struct canceller *k = arg;
    usleep((useconds_t)k->after_ms * 1000);
    rc_http_cancel_trigger(k->cancel);
    return NULL;
}

TEST(cancel_aborts_backoff_promptly)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    struct canceller k;
    pthread_t t;
    int64_t t0, took;
    REQUIRE(fx && api);
    k = (struct canceller){rc_http_client_cancel(rc_api_http(api)), 200};
    fixture_http_push_simple(fx, 503, "retry-after-ms: 20000\r\n", NULL);
    fixture_http_push_simple(fx, 200, JSON_CT, "{}");
    t0 = rc_http_now_mono_ms();
    REQUIRE(pthread_create(&t, NULL, cancel_later, &k) == 0);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_ECANCELED);
    took = rc_http_now_mono_ms() - t0;
    pthread_join(t, NULL);
    CHECK(took >= 150 && took < 1000);
    CHECK_INT(fixture_http_count(fx), 1);
    /* sticky until reset; after a reset the client works again */
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_ECANCELED);
    rc_http_cancel_reset(k.cancel);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), 0);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

TEST(cancel_aborts_transfer_and_stream_shared_token)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_http_cancel *tok = NULL;
    rc_api_config cfg = {0};
    rc_api *api;
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    struct stream_rec s = {.data = RC_BUF_INIT(65536)};
    struct canceller k;
    pthread_t t;
    int64_t t0, took;
    REQUIRE(fx && rc_http_cancel_new(&tok, NULL) == 0);
    cfg.http.cancel = tok;
    api = api_for(fx, CRED, &cfg);
    REQUIRE(api);
    CHECK(rc_http_client_cancel(rc_api_http(api)) == tok);
    /* a request the server sits on */
    fixture_http_push(fx, &(fixture_http_response){.status = 200, .delay_ms = 20000});
    k = (struct canceller){tok, 200};
    t0 = rc_http_now_mono_ms();
    REQUIRE(pthread_create(&t, NULL, cancel_later, &k) == 0);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_ECANCELED);
    took = rc_http_now_mono_ms() - t0;
    pthread_join(t, NULL);
    CHECK(took >= 150 && took < 1000);
    rc_http_cancel_reset(tok);
    /* an open stream */
    fixture_http_push(
        fx, &(fixture_http_response){.status = 200, .chunks = sse_chunks, .hold_ms = 20000});
    k = (struct canceller){tok, 300};
    t0 = rc_http_now_mono_ms();
    REQUIRE(pthread_create(&t, NULL, cancel_later, &k) == 0);
    CHECK_INT(rc_api_events_stream(api, "sesn_1", rec_headers, rec_data, &s, 0, &res, &err),
              -RC_ECANCELED);
    took = rc_http_now_mono_ms() - t0;
    pthread_join(t, NULL);
    CHECK(took >= 250 && took < 1200);
    CHECK_INT(s.headers_calls, 1);
    CHECK(rc_http_cancel_sleep(tok, 5000, NULL) == -RC_ECANCELED);
    rc_http_cancel_reset(tok);
    CHECK(rc_http_cancel_sleep(tok, 10, NULL) == 0);
    rc_buf_free(&s.data);
    rc_api_result_free(&res);
    rc_api_free(api);
    rc_http_cancel_free(tok);
    fixture_http_stop(fx);
}

/* ---- pagination --------------------------------------------------------------------------- */

struct pages {
    int calls;
    int ids;
};

static int count_page(const cJSON *data, void *ud, rc_error *err)
{
    struct pages *p = ud;
    (void)err;
    p->calls++;
    p->ids += cJSON_GetArraySize(data);
    return 0;
}

TEST(events_list_pagination)
{
    fixture_http *fx = fixture_http_start(NULL);
    rc_api *api = api_for(fx, CRED, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    struct pages p = {0};
    rc_error err = {0};
    REQUIRE(fx && api);
    fixture_http_push_simple(
        fx, 200, JSON_CT, "{\"data\":[{\"id\":\"e1\"},{\"id\":\"e2\"}],\"next_page\":\"c+1:x\"}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"data\":[{\"id\":\"e3\"}],\"next_page\":\"\"}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"data\":[],\"next_page\":null}");
    fixture_http_push_simple(fx, 200, JSON_CT, "{\"next_page\":null}");
    CHECK_INT(rc_api_events_list(api, "sesn_1", count_page, &p, &res, &err), 0);
    CHECK_INT(p.calls, 2);
    CHECK_INT(p.ids, 3);
    REQUIRE(fixture_http_count(fx) == 2);
    CHECK_STR(fixture_http_get(fx, 0)->target, "/v1/sessions/sesn_1/events?limit=1000");
    CHECK_STR(fixture_http_get(fx, 1)->target,
              "/v1/sessions/sesn_1/events?limit=1000&page=c%2B1%3Ax");
    CHECK_INT(rc_api_events_list(api, "sesn_1", count_page, &p, &res, &err), 0);
    CHECK_INT(p.calls, 3);
    CHECK_INT(rc_api_events_list(api, "sesn_1", count_page, &p, &res, &err), -RC_EPARSE);
    rc_api_result_free(&res);
    rc_api_free(api);
    fixture_http_stop(fx);
}

/* ---- the credential never reaches an error message ---------------------------------------- */

static void provoke_all(fixture_http *fx, const char *cred)
{
    rc_api *api = api_for(fx, cred, NULL);
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    char *printed;
    _cleanup_(rc_buf_free) rc_buf echo = RC_BUF_INIT(8192);
    const char *auth[] = {"authorization: Bearer x", NULL};
    rc_api_request bad = {.method = "GET", .path = "/v1/x", .extra_headers = auth};
    rc_api_request slow = {.method = "GET", .path = "/v1/x", .timeout_ms = 200, .max_attempts = 1};
    char url[64];
    rc_api_config dead = {.http = {.base_url = url, .max_attempts = 1}};
    rc_api *dapi;

    if (!api)
        return;
    /* a server that echoes the credential everywhere it can */
    rc_buf_appendf(&echo, NULL,
                   "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error %s\","
                   "\"message\":\"invalid credential Bearer %s (%s)\",\"details\":{"
                   "\"error_code\":\"%s\",\"echo\":\"%s\"}},\"request_id\":\"%s\"}",
                   cred, cred, cred, cred, cred, cred);
    fixture_http_push_simple(fx, 401, JSON_CT, rc_buf_cstr(&echo));
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EFATAL);
    CHECK_NO_CRED(err.msg);
    CHECK(strstr(err.msg, "401") != NULL);
    CHECK_NO_CRED(res.error_type);
    CHECK_NO_CRED(res.error_message);
    CHECK_NO_CRED(res.error_code);
    printed = cJSON_PrintUnformatted(res.error_body);
    CHECK_NO_CRED(printed);
    free(printed);
    printf("# %s\n", err.msg);

    /* the echo as a long message that would be truncated mid-credential */
    rc_buf_reset(&echo);
    rc_buf_appendf(&echo, NULL, "{\"error\":{\"type\":\"x\",\"message\":\"");
    for (int i = 0; i < 40; i++)
        rc_buf_appendf(&echo, NULL, "%.*s%s", i % 7, "aaaaaaa", cred);
    rc_buf_appendf(&echo, NULL, "\"}}");
    fixture_http_push_simple(fx, 400, JSON_CT, rc_buf_cstr(&echo));
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EFATAL);
    CHECK_NO_CRED(err.msg);
    CHECK_NO_CRED(res.error_message);
    for (size_t cut = 4; cut < strlen(cred); cut++) {
        /* no tail of the message may be a long prefix of the credential either */
        size_t ml = strlen(err.msg);
        if (cut >= 12 && ml >= cut && strncmp(err.msg + ml - cut, cred, cut) == 0)
            rc_test_fail(__FILE__, __LINE__, "credential prefix at end of message");
    }

    /* request-id header echoing it, whole and cut off by the 128-byte field */
    rc_buf_reset(&echo);
    rc_buf_appendf(&echo, NULL, "request-id: %s\r\n" JSON_CT, cred);
    fixture_http_push_simple(fx, 404, rc_buf_cstr(&echo), "{}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EFATAL);
    CHECK_NO_CRED(res.request_id);
    rc_buf_reset(&echo);
    rc_buf_appendf(&echo, NULL, "request-id: req_%.*s%s\r\n" JSON_CT, 110,
                   "0123456789012345678901234567890123456789012345678901234567890123456789012345"
                   "6789012345678901234567890123456789",
                   cred);
    fixture_http_push_simple(fx, 200, rc_buf_cstr(&echo), "{}");
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), 0);
    CHECK(strncmp(res.request_id, "req_0123", 8) == 0);
    CHECK(strstr(res.request_id, "TESTSECRET") == NULL && strstr(res.request_id, "Zx81") == NULL);
    CHECK(strstr(res.request_id, "sk-ant-oat") == NULL &&
          strstr(res.request_id, "opaque-cr") == NULL);

    fixture_http_push_simple(fx, 200, "Content-Type: text/plain\r\n", cred);
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EPARSE);
    CHECK_NO_CRED(err.msg);
    CHECK_INT(rc_api_request_do(api, &bad, &res, &err), -RC_EINVAL);
    CHECK_NO_CRED(err.msg);
    fixture_http_push(fx, &(fixture_http_response){.status = 200, .delay_ms = 2000});
    CHECK_INT(rc_api_request_do(api, &slow, &res, &err), -RC_ETIMEOUT);
    CHECK_NO_CRED(err.msg);
    CHECK_INT(rc_api_session_get(api, "..", &res, &err), -RC_EINVAL);
    CHECK_NO_CRED(err.msg);
    rc_http_cancel_trigger(rc_http_client_cancel(rc_api_http(api)));
    CHECK_INT(rc_api_call(api, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_ECANCELED);
    CHECK_NO_CRED(err.msg);
    rc_api_result_free(&res);
    rc_api_free(api);

    snprintf(url, sizeof url, "http://127.0.0.1:%d", dead_port());
    dapi = api_for(NULL, cred, &dead);
    REQUIRE(dapi);
    CHECK_INT(rc_api_call(dapi, "GET", "/v1/x", NULL, NULL, &res, &err), -RC_EHTTP);
    CHECK_NO_CRED(err.msg);
    rc_api_result_free(&res);
    rc_api_free(dapi);
}

TEST(credential_never_in_errors)
{
    fixture_http *fx = fixture_http_start(NULL);
    REQUIRE(fx);
    provoke_all(fx, CRED);
    fixture_http_reset(fx);
    provoke_all(fx, CRED_PLAIN); /* no recognisable prefix: only the client's own scrub helps */
    fixture_http_stop(fx);
}
