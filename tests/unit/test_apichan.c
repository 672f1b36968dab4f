/* test_apichan.c - the broker's API channel (broker/apichan.c): the strict request-head parser
 * and its framing refusals, the path/query scoping table (every allowed path, and the refused
 * ones: other session, other work item, other environment, dot segments, encoded traversal,
 * '//', trailing '/', case tricks, query injection), the header filters, the credential choice,
 * and the server itself in-process in front of a real local upstream (fixture_http.c): token
 * injection and header stripping as the upstream sees them, SSE relayed without buffering,
 * keep-alive and pipelining, error pass-through, caps, SO_PEERCRED and capacity refusals, the
 * socket file's mode and owner, and audit lines. Clients here speak raw HTTP over the unix
 * socket so that every byte sent is exactly the one under test. */
#include "apichan.h"
#include "cleanup.h"
#include "fixture_http.h"
#include "harness.h"
#include "webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TOKEN "sk-ant-req-UNITTESTtoken0123456789abcdef"
#define ENV   "env_A1"
#define WORK  "work_W1"
#define SESS  "sesn_S1"

static const rc_apichan_scope scope = {
    .environment_id = ENV, .work_id = WORK, .session_id = SESS, .features = 0};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- request head parser ------------------------------------------------------------------- */

static int parse(const char *s, rc_apichan_head *h)
{
    return rc_apichan_head_parse(s, strlen(s), h, NULL);
}

TEST(head_parse_basic)
{
    const char *req = "POST /v1/sessions/sesn_S1/events?x=1 HTTP/1.1\r\n"
                      "Host: localhost\r\n"
                      "Content-Length: 12\r\n"
                      "anthropic-beta:   managed-agents-2026-04-01  \r\n"
                      "Connection: keep-alive, close\r\n"
                      "\r\n"
                      "{\"events\":1}";
    rc_apichan_head h = {0};
    int n = parse(req, &h);
    CHECK_INT(n, (long long)(strstr(req, "\r\n\r\n") - req) + 4);
    REQUIRE(n > 0);
    CHECK_STR(h.method, "POST");
    CHECK_STR(h.target, "/v1/sessions/sesn_S1/events?x=1");
    CHECK(h.http11);
    CHECK_INT(h.n_headers, 4);
    CHECK_STR(h.headers[2].name, "anthropic-beta");
    CHECK_STR(h.headers[2].value, "managed-agents-2026-04-01");
    CHECK_INT(h.content_length, 12);
    CHECK(h.connection_close);
    CHECK(!h.transfer_encoding && !h.expect_continue && !h.bad_framing);
    CHECK_INT(rc_apichan_head_refusal(&h, 100), 0);
    rc_apichan_head_clear(&h);
}

TEST(head_parse_incomplete)
{
    const char *parts[] = {"",
                           "G",
                           "GET / HTTP/1.1\r",
                           "GET / HTTP/1.1\r\nHost: x\r\n",
                           "GET / HTTP/1.1\r\nHost: x\r\n\r",
                           NULL};
    for (const char *const *p = parts; *p; p++) {
        rc_apichan_head h = {0};
        CHECK_INT(parse(*p, &h), 0);
    }
}

TEST(head_parse_malformed)
{
    static const struct {
        const char *req;
        int code;
    } cases[] = {
        {"GET / HTTP/1.1\nHost: x\r\n\r\n", -RC_EPARSE},                    /* bare LF */
        {"GET / HTTP/1.1\r\nHost: x\n\n", -RC_EPARSE},                      /* bare LF */
        {"GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", -RC_EPARSE},               /* bare CR */
        {"GET / HTTP/1.1\rX", -RC_EPARSE},                                  /* bare CR, partial */
        {"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", -RC_EPARSE},              /* leading empty line */
        {"get / HTTP/1.1\r\nHost: x\r\n\r\n", -RC_EPARSE},                  /* lowercase method */
        {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", -RC_EPARSE},                 /* double space */
        {"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", -RC_EPARSE},                 /* trailing space */
        {"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", -RC_EPARSE},               /* space in target */
        {"GET / HTTP/11\r\nHost: x\r\n\r\n", -RC_EPARSE},                   /* version shape */
        {"GET / FTP/1.1\r\nHost: x\r\n\r\n", -RC_EPARSE},                   /* protocol */
        {"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n", -RC_EPARSE},              /* non-ASCII target */
        {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", -RC_EPARSE},                 /* space before colon */
        {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", -RC_EPARSE},       /* obs-fold */
        {"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01\r\n\r\n", -RC_EPARSE},    /* control byte */
        {"GET / HTTP/1.1\r\nHost: x\r\nX-A: \xc3\xa9\r\n\r\n", -RC_EPARSE}, /* non-ASCII value */
        {"GET / HTTP/1.1\r\nNoColon\r\nHost: x\r\n\r\n", -RC_EPARSE},
        {"GET / HTTP/1.1\r\n: empty-name\r\nHost: x\r\n\r\n", -RC_EPARSE},
        {"GET / HTTP/1.1\r\n\r\n", -RC_EPARSE},                       /* no Host */
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -RC_EPARSE}, /* two Hosts */
        {"GET / HTTP/1.1\r\nX(: a\r\nHost: x\r\n\r\n", -RC_EPARSE},   /* non-token name */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc_apichan_head h = {0};
        int r = parse(cases[i].req, &h);
        if (r != cases[i].code)
            rc_test_fail(__FILE__, __LINE__, "case %zu: got %d, want %d", i, r, cases[i].code);
        if (r > 0)
            rc_apichan_head_clear(&h);
    }
    /* A NUL byte inside the head. */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n";
    rc_apichan_head h = {0};
    CHECK_INT(rc_apichan_head_parse(nul, sizeof nul - 1, &h, NULL), -RC_EPARSE);
}

TEST(head_parse_caps)
{
    rc_apichan_head h = {0};
    /* A line over RC_APICHAN_LINE_MAX: refused before the head completes. */
    size_t n = RC_APICHAN_LINE_MAX + 64;
    char *big = malloc(n + 1);
    REQUIRE(big);
    memset(big, 'a', n);
    memcpy(big, "GET /", 5);
    big[n] = '\0';
    CHECK_INT(parse(big, &h), -RC_ETOOBIG);
    /* A head over RC_APICHAN_HEAD_MAX made of legal lines. */
    free(big);
    size_t total = RC_APICHAN_HEAD_MAX + 1024, o = 0;
    big = malloc(total + 64);
    REQUIRE(big);
    o += (size_t)snprintf(big, total, "GET / HTTP/1.1\r\nHost: x\r\n");
    while (o + 40 < total)
        o += (size_t)snprintf(big + o, total + 64 - o, "X-Pad: %030d\r\n", 0);
    CHECK_INT(rc_apichan_head_parse(big, o, &h, NULL), -RC_ETOOBIG);
    free(big);
    /* More than RC_APICHAN_HEADERS_MAX fields. */
    char many[8192];
    o = (size_t)snprintf(many, sizeof many, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < RC_APICHAN_HEADERS_MAX; i++)
        o += (size_t)snprintf(many + o, sizeof many - o, "X-%d: v\r\n", i);
    o += (size_t)snprintf(many + o, sizeof many - o, "\r\n");
    CHECK_INT(rc_apichan_head_parse(many, o, &h, NULL), -RC_ETOOBIG);
}

TEST(head_refusals)
{
    static const struct {
        const char *headers;
        const char *line;
        int status;
    } cases[] = {
        {"", "GET / HTTP/1.1", 0},
        {"", "GET / HTTP/1.0", 505},
        {"", "GET / HTTP/2.0", 505},
        {"", "PUT / HTTP/1.1", 501},
        {"", "HEAD / HTTP/1.1", 501},
        {"", "PATCH / HTTP/1.1", 501},
        {"", "DELETE / HTTP/1.1", 0},
        {"Content-Length: 5\r\nContent-Length: 5\r\n", "POST / HTTP/1.1", 400},
        {"Content-Length: +5\r\n", "POST / HTTP/1.1", 400},
        {"Content-Length: 5, 5\r\n", "POST / HTTP/1.1", 400},
        {"Content-Length: -1\r\n", "POST / HTTP/1.1", 400},
        {"Content-Length: 0x10\r\n", "POST / HTTP/1.1", 400},
        {"Content-Length: 99999999999999999999\r\n", "POST / HTTP/1.1", 400},
        {"Content-Length:  7 \r\n", "POST / HTTP/1.1", 0},
        {"Transfer-Encoding: chunked\r\n", "POST / HTTP/1.1", 411},
        {"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "POST / HTTP/1.1", 400},
        {"Content-Length: 3\r\nTransfer-Encoding: identity\r\n", "POST / HTTP/1.1", 400},
        {"Expect: 100-continue\r\nContent-Length: 3\r\n", "POST / HTTP/1.1", 0},
        {"Expect: 100-CONTINUE\r\n", "POST / HTTP/1.1", 0},
        {"Expect: something\r\n", "POST / HTTP/1.1", 417},
        {"Content-Length: 101\r\n", "POST / HTTP/1.1", 413},
        {"Content-Length: 100\r\n", "POST / HTTP/1.1", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char req[512];
        snprintf(req, sizeof req, "%s\r\nHost: x\r\n%s\r\n", cases[i].line, cases[i].headers);
        rc_apichan_head h = {0};
        int n = parse(req, &h);
        if (n <= 0) {
            rc_test_fail(__FILE__, __LINE__, "case %zu did not parse (%d)", i, n);
            continue;
        }
        int st = rc_apichan_head_refusal(&h, 100);
        if (st != cases[i].status)
            rc_test_fail(__FILE__, __LINE__, "case %zu: status %d, want %d", i, st,
                         cases[i].status);
        rc_apichan_head_clear(&h);
    }
}

TEST(head_pipelined)
{
    const char *two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    rc_apichan_head h = {0};
    int n = parse(two, &h);
    CHECK_INT(n, 28);
    CHECK_STR(h.target, "/a");
    rc_apichan_head_clear(&h);
    n = parse(two + 28, &h);
    CHECK_INT(n, 28);
    CHECK_STR(h.target, "/b");
    rc_apichan_head_clear(&h);
}

/* ---- path and query scoping ------------------------------------------------------------- */

typedef struct route_case {
    const char *method;
    const char *target;
    int route; /* RC_APICHAN_ROUTE_NONE = refused */
} route_case;

static void run_route_table(const rc_apichan_scope *sc, const route_case *cases, size_t n, int line)
{
    for (size_t i = 0; i < n; i++) {
        int route = -1;
        rc_error err = {0};
        int r = rc_apichan_route_match(sc, cases[i].method, cases[i].target, &route, &err);
        int want = cases[i].route;
        if (want != RC_APICHAN_ROUTE_NONE && (r != 0 || route != want))
            rc_test_fail(__FILE__, line, "%s %s: refused (%s) or wrong route %d, want %d",
                         cases[i].method, cases[i].target, err.msg, route, want);
        if (want == RC_APICHAN_ROUTE_NONE && (r != -RC_EAUTH || route != -1))
            rc_test_fail(__FILE__, line, "%s %s: allowed (route %d, r %d)", cases[i].method,
                         cases[i].target, route, r);
        if (want == RC_APICHAN_ROUTE_NONE && err.msg[0] == '\0')
            rc_test_fail(__FILE__, line, "%s %s: no reason given", cases[i].method,
                         cases[i].target);
    }
}

#define S  "/v1/sessions/" SESS
#define W  "/v1/environments/" ENV "/work/" WORK
#define HB W "/heartbeat"

static const route_case allowed[] = {
    {"GET", S, RC_APICHAN_ROUTE_SESSION_GET},
    {"GET", S "?beta=true", RC_APICHAN_ROUTE_SESSION_GET},
    {"GET", S "?", RC_APICHAN_ROUTE_SESSION_GET},
    {"GET", S "/events", RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?limit=1000", RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?limit=1000&page=cGFnZV8y", RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?limit=1000&page=abc%3D%3D", RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?order=asc", RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?types[]=agent.tool_use&types[]=user.tool_result",
     RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?types%5B%5D=agent.tool_use", RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?created_at[gte]=2026-05-01T12%3A00%3A00%2B00%3A00",
     RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?created_at[gt]=a&created_at[lt]=b&created_at[lte]=c",
     RC_APICHAN_ROUTE_EVENTS_LIST},
    {"GET", S "/events?%62eta=true", RC_APICHAN_ROUTE_EVENTS_LIST}, /* unambiguous key */
    {"POST", S "/events", RC_APICHAN_ROUTE_EVENTS_SEND},
    {"POST", S "/events?beta=true", RC_APICHAN_ROUTE_EVENTS_SEND},
    {"GET", S "/events/stream", RC_APICHAN_ROUTE_EVENTS_STREAM},
    {"GET", S "/events/stream?event_deltas[]=agent.message", RC_APICHAN_ROUTE_EVENTS_STREAM},
    {"POST", HB, RC_APICHAN_ROUTE_WORK_HEARTBEAT},
    {"POST", HB "?expected_last_heartbeat=NO_HEARTBEAT", RC_APICHAN_ROUTE_WORK_HEARTBEAT},
    {"POST", HB "?expected_last_heartbeat=2026-05-01T12%3A00%3A31.123456Z&desired_ttl_seconds=60",
     RC_APICHAN_ROUTE_WORK_HEARTBEAT},
    {"POST", HB "?expected_last_heartbeat=", RC_APICHAN_ROUTE_WORK_HEARTBEAT},
    {"POST", W "/stop", RC_APICHAN_ROUTE_WORK_STOP},
    {"POST", W "/stop?beta=true", RC_APICHAN_ROUTE_WORK_STOP},
};

TEST(route_allowed)
{
    run_route_table(&scope, allowed, sizeof allowed / sizeof allowed[0], __LINE__);
    /* Only the stream is relayed without a cap; only POST routes take a body. */
    for (int route = 1; route < RC_APICHAN_ROUTE_MAX; route++)
        CHECK(rc_apichan_route_is_stream(route) == (route == RC_APICHAN_ROUTE_EVENTS_STREAM));
    CHECK(!rc_apichan_route_is_stream(RC_APICHAN_ROUTE_EVENTS_LIST));
    CHECK(rc_apichan_route_takes_body(RC_APICHAN_ROUTE_EVENTS_SEND));
    CHECK(rc_apichan_route_takes_body(RC_APICHAN_ROUTE_WORK_STOP));
    CHECK(!rc_apichan_route_takes_body(RC_APICHAN_ROUTE_SESSION_GET));
    CHECK_STR(rc_apichan_route_name(RC_APICHAN_ROUTE_WORK_HEARTBEAT), "work_heartbeat");
    CHECK_STR(rc_apichan_route_name(999), "none");
}

static const route_case refused[] = {
    /* other sessions, work items, environments */
    {"GET", "/v1/sessions/sesn_S2", 0},
    {"GET", "/v1/sessions/sesn_S1x", 0},
    {"GET", "/v1/sessions/sesn_S", 0},
    {"GET", "/v1/sessions/SESN_S1", 0},
    {"GET", "/v1/sessions/sesn_s1", 0},
    {"GET", "/v1/sessions/sesn_S2/events/stream", 0},
    {"POST", "/v1/sessions/sesn_S2/events", 0},
    {"POST", "/v1/environments/" ENV "/work/work_W2/heartbeat", 0},
    {"POST", "/v1/environments/" ENV "/work/work_W1x/heartbeat", 0},
    {"POST", "/v1/environments/env_A2/work/" WORK "/heartbeat", 0},
    {"POST", "/v1/environments/env_A2/work/work_W2/stop", 0},
    /* other calls of the API */
    {"GET", "/v1/environments/" ENV "/work/poll", 0},
    {"POST", W "/ack", 0},
    {"GET", W, 0},
    {"POST", W, 0},
    {"GET", "/v1/environments/" ENV "/work/stats", 0},
    {"GET", "/v1/environments/" ENV "/work", 0},
    {"GET", "/v1/environments/" ENV, 0},
    {"POST", "/v1/sessions", 0},
    {"GET", "/v1/sessions", 0},
    {"POST", S, 0},
    {"DELETE", S, 0},
    {"POST", S "/archive", 0},
    {"GET", "/v1/agents", 0},
    {"GET", "/v1/skills/skill_1/versions/latest", 0},
    {"GET", "/v1/memory_stores/memstore_1/memories", 0},
    {"GET", "/_emulator/v1/requests", 0},
    {"GET", "/", 0},
    {"GET", "/v1", 0},
    {"GET", "/v2/sessions/" SESS, 0},
    /* wrong methods on allowed paths */
    {"GET", HB, 0},
    {"DELETE", HB, 0},
    {"GET", W "/stop", 0},
    {"DELETE", S "/events", 0},
    {"POST", S "/events/stream", 0},
    {"PUT", S, 0},
    /* traversal, encodings, empty segments */
    {"GET", S "/../sesn_S2", 0},
    {"GET", S "/..", 0},
    {"GET", S "/./events", 0},
    {"GET", "/v1/sessions/sesn_S2/../" SESS, 0},
    {"GET", S "/%2e%2e/sesn_S2", 0},
    {"GET", S "/%2E%2E/sesn_S2", 0},
    {"GET", S "/%2e%2E", 0},
    {"GET", S "/.%2e/x", 0},
    {"GET", S "%2Fevents", 0},
    {"GET", S "%2fevents", 0},
    {"GET", "/v1/sessions/sesn_%53%31", 0},
    {"GET", "/v1/sessions/sesn_S1%00", 0},
    {"GET", "/v1/sessions/sesn_S1%", 0},
    {"GET", "/v1/sessions/sesn_S1%zz", 0},
    {"GET", S "%5C..%5Cx", 0},
    {"GET", S "\\..\\x", 0},
    {"GET", "//v1/sessions/" SESS, 0},
    {"GET", "/v1//sessions/" SESS, 0},
    {"GET", "/v1/sessions//" SESS, 0},
    {"GET", S "/", 0},
    {"GET", S "/events/", 0},
    {"GET", S "/events/stream/", 0},
    {"POST", HB "/", 0},
    {"GET", S "/events//stream", 0},
    {"GET", S "/events/stream/x", 0},
    {"GET", S ";x", 0},
    {"GET", S "/events;stream", 0},
    {"GET", S "/events%3Fx", 0},
    /* case tricks */
    {"GET", "/V1/sessions/" SESS, 0},
    {"GET", "/v1/Sessions/" SESS, 0},
    {"GET", "/v1/SESSIONS/" SESS, 0},
    {"GET", S "/Events", 0},
    {"GET", S "/events/Stream", 0},
    {"GET", S "/events/STREAM", 0},
    {"POST", W "/Heartbeat", 0},
    {"POST", "/v1/environments/" ENV "/Work/" WORK "/heartbeat", 0},
    {"POST", W "/STOP", 0},
    {"post", HB, 0},
    /* request-target forms other than origin-form, fragments */
    {"GET", "http://localhost" S, 0},
    {"GET", "localhost:80", 0},
    {"GET", "*", 0},
    {"GET", "", 0},
    {"GET", "v1/sessions/" SESS, 0},
    {"GET", S "#frag", 0},
    {"GET", S "?beta=true#frag", 0},
    /* query injection */
    {"POST", HB "?expected_last_heartbeat=a&expected_last_heartbeat=b", 0},
    {"POST", HB "?expected_last_heartbeat=a&expected%5Flast_heartbeat=b", 0},
    {"POST", HB "?foo=1", 0},
    {"POST", HB "?limit=1", 0},
    {"POST", HB "?desired_ttl_seconds=abc", 0},
    {"POST", HB "?desired_ttl_seconds=-1", 0},
    {"POST", HB "?desired_ttl_seconds=", 0},
    {"POST", HB "?desired_ttl_seconds=99999999999", 0},
    {"POST", HB "?expected_last_heartbeat=2026-05-01T12:00:31Z", 0}, /* raw ':' */
    {"POST", HB "?expected_last_heartbeat=a+b", 0},                  /* raw '+' */
    {"POST", HB "?expected_last_heartbeat=a;desired_ttl_seconds=1", 0},
    {"POST", HB "?expected_last_heartbeat=a%0d%0aX-Evil:%201", 0},
    {"POST", HB "?expected_last_heartbeat=%00", 0},
    {"POST", HB "?expected_last_heartbeat=%7f", 0},
    {"POST", HB "?expected_last_heartbeat=%zz", 0},
    {"POST", HB "?expected_last_heartbeat=%4", 0},
    {"POST", HB "?expected_last_heartbeat=%", 0},
    {"POST", HB "?expected_last_heartbeat=a=b", 0},
    {"POST", HB "?expected_last_heartbeat", 0},
    {"POST", HB "?=x", 0},
    {"POST", HB "?&beta=true", 0},
    {"POST", HB "?beta=true&", 0},
    {"POST", HB "?beta=true&&beta=true", 0},
    {"POST", HB "?beta=yes", 0},
    {"POST", HB "?beta=true&beta=true", 0},
    {"POST", HB "?expected_last_heartbeat=a/b", 0},
    {"POST", HB "?expected_last_heartbeat=a?b", 0},
    {"POST", HB "?%00=1", 0},
    {"POST", HB "?beta%00=true", 0},
    {"GET", S "/events?limit=abc", 0},
    {"GET", S "/events?limit=1000&limit=1", 0},
    {"GET", S "/events?order=up", 0},
    {"GET", S "/events?types=agent.tool_use", 0},
    {"GET", S "/events?types[0]=x", 0},
    {"GET", S "/events?page=a&page=b", 0},
    {"GET", S "/events/stream?types[]=x", 0},
    {"GET", S "/events/stream?limit=1", 0},
    {"POST", S "/events?limit=1", 0},
    {"GET", S "?limit=1", 0},
    {"POST", W "/stop?force=true", 0},
};

TEST(route_refused)
{
    run_route_table(&scope, refused, sizeof refused / sizeof refused[0], __LINE__);
}

TEST(route_long_inputs)
{
    char t[1024];
    /* An id longer than any valid one, a path with too many segments. */
    int n = snprintf(t, sizeof t, "/v1/sessions/");
    for (int i = 0; i < 200; i++)
        t[n++] = 'a';
    t[n] = '\0';
    int route = -1;
    CHECK_INT(rc_apichan_route_match(&scope, "GET", t, &route, NULL), -RC_EAUTH);
    CHECK_INT(rc_apichan_route_match(&scope, "GET", S "/events/stream/a/b/c/d/e", &route, NULL),
              -RC_EAUTH);
    /* A query value longer than the decoder's buffer. */
    n = snprintf(t, sizeof t, HB "?expected_last_heartbeat=");
    while (n < (int)sizeof t - 1)
        t[n++] = 'x';
    t[n] = '\0';
    CHECK_INT(rc_apichan_route_match(&scope, "POST", t, &route, NULL), 0);
    CHECK_INT(rc_apichan_route_match(NULL, "GET", S, &route, NULL), -RC_EINVAL);
}

TEST(route_skills_and_memory)
{
    static const char *const stores[] = {"memstore_1", "memstore_B", NULL};
    rc_apichan_scope sc = scope;
    sc.features = RC_APICHAN_ALLOW_SKILLS | RC_APICHAN_ALLOW_MEMORY;
    sc.memory_store_ids = stores;
    static const route_case cases[] = {
        {"GET", "/v1/skills/skill_01abc/versions", RC_APICHAN_ROUTE_SKILL_VERSIONS},
        {"GET", "/v1/skills/skill_01abc/versions/latest", RC_APICHAN_ROUTE_SKILL_VERSION},
        {"GET", "/v1/skills/skill_01abc/versions/1759178010641129", RC_APICHAN_ROUTE_SKILL_VERSION},
        {"GET", "/v1/skills/skill_01abc/versions/1759178010641129/content",
         RC_APICHAN_ROUTE_SKILL_CONTENT},
        {"GET", "/v1/skills/skill_01abc/versions/latest?beta=true", RC_APICHAN_ROUTE_SKILL_VERSION},
        {"POST", "/v1/skills/skill_01abc/versions", 0},
        {"DELETE", "/v1/skills/skill_01abc/versions/1", 0},
        {"GET", "/v1/skills", 0},
        {"GET", "/v1/skills/skill_01abc", 0},
        {"GET", "/v1/skills/skill_01abc/versions/1/content/x", 0},
        {"GET", "/v1/skills/skill_01abc/versions/1/Content", 0},
        {"GET", "/v1/skills/skill.x/versions", 0},
        {"GET", "/v1/skills/skill_1/versions/..", 0},
        {"GET", "/v1/memory_stores/memstore_1/memories", RC_APICHAN_ROUTE_MEMORY_LIST},
        {"GET", "/v1/memory_stores/memstore_1/memories?view=full&limit=20&page=p&depth=2",
         RC_APICHAN_ROUTE_MEMORY_LIST},
        {"GET", "/v1/memory_stores/memstore_B/memories?path_prefix=%2Fnotes%2F",
         RC_APICHAN_ROUTE_MEMORY_LIST},
        {"POST", "/v1/memory_stores/memstore_1/memories", RC_APICHAN_ROUTE_MEMORY_CREATE},
        {"GET", "/v1/memory_stores/memstore_1/memories/mem_1?view=full",
         RC_APICHAN_ROUTE_MEMORY_GET},
        {"POST", "/v1/memory_stores/memstore_1/memories/mem_1", RC_APICHAN_ROUTE_MEMORY_UPDATE},
        {"DELETE", "/v1/memory_stores/memstore_1/memories/mem_1?expected_content_sha256=ab12",
         RC_APICHAN_ROUTE_MEMORY_DELETE},
        {"GET", "/v1/memory_stores/memstore_2/memories", 0},
        {"GET", "/v1/memory_stores/memstore_b/memories", 0},
        {"GET", "/v1/memory_stores/memstore_1", 0},
        {"GET", "/v1/memory_stores", 0},
        {"DELETE", "/v1/memory_stores/memstore_1/memories", 0},
        {"GET", "/v1/memory_stores/memstore_1/memories?view=other", 0},
        {"GET", "/v1/memory_stores/memstore_1/memories/mem_1?limit=1", 0},
        {"GET", "/v1/memory_stores/memstore_1/memories/mem_1/x", 0},
        {"GET", "/v1/memory_stores/memstore_1/memories/%2e%2e", 0},
    };
    run_route_table(&sc, cases, sizeof cases / sizeof cases[0], __LINE__);
    /* Features off: the same paths are refused with a reason naming the feature. */
    rc_error err = {0};
    int route = -1;
    CHECK_INT(rc_apichan_route_match(&scope, "GET", "/v1/skills/skill_1/versions", &route, &err),
              -RC_EAUTH);
    CHECK(strstr(err.msg, "skills") != NULL);
    CHECK_INT(rc_apichan_route_match(&scope, "GET", "/v1/memory_stores/memstore_1/memories", &route,
                                     &err),
              -RC_EAUTH);
    CHECK(strstr(err.msg, "memory") != NULL);
    /* Memory on, but no stores listed: nothing matches. */
    sc.memory_store_ids = NULL;
    CHECK_INT(
        rc_apichan_route_match(&sc, "GET", "/v1/memory_stores/memstore_1/memories", &route, NULL),
        -RC_EAUTH);
}

TEST(route_reasons_never_echo_input)
{
    rc_error err = {0};
    int route;
    rc_apichan_route_match(&scope, "GET", "/v1/sessions/sesn_EVILmarker", &route, &err);
    CHECK(strstr(err.msg, "EVILmarker") == NULL);
    rc_apichan_route_match(&scope, "POST", HB "?expected_last_heartbeat=a&EVILkey=1", &route, &err);
    CHECK(strstr(err.msg, "EVILkey") == NULL);
}

/* ---- header filters ---------------------------------------------------------------------- */

TEST(request_header_filter)
{
    const char *req = "GET " S " HTTP/1.1\r\n"
                      "Host: localhost\r\n"
                      "Authorization: Bearer runcell-broker-placeholder\r\n"
                      "authorization: Bearer second\r\n"
                      "x-api-key: sk-ant-api03-leak\r\n"
                      "X-Api-Key: again\r\n"
                      "Proxy-Authorization: Basic eA==\r\n"
                      "Cookie: a=b\r\n"
                      "Connection: keep-alive, x-stainless-os\r\n"
                      "Keep-Alive: timeout=5\r\n"
                      "TE: trailers\r\n"
                      "Upgrade: h2c\r\n"
                      "Trailer: x\r\n"
                      "Proxy-Connection: keep-alive\r\n"
                      "X-Forwarded-For: 1.2.3.4\r\n"
                      "Forwarded: for=x\r\n"
                      "anthropic-workspace-id: wrkspc_1\r\n"
                      "anthropic-beta: managed-agents-2026-04-01\r\n"
                      "Anthropic-Version: 2023-06-01\r\n"
                      "accept: application/json\r\n"
                      "content-type: application/json\r\n"
                      "User-Agent: runcell-runner/0.1\r\n"
                      "x-stainless-retry-count: 0\r\n"
                      "x-stainless-os: Linux\r\n"
                      "x-stainless-: bad\r\n"
                      "Idempotency-Key: stainless-retry-1\r\n"
                      "\r\n";
    rc_apichan_head h = {0};
    REQUIRE(parse(req, &h) > 0);
    char **lines = NULL;
    int n = rc_apichan_upstream_headers(&h, &lines, NULL);
    static const char *const want[] = {"anthropic-beta: managed-agents-2026-04-01",
                                       "Anthropic-Version: 2023-06-01",
                                       "accept: application/json",
                                       "content-type: application/json",
                                       "User-Agent: runcell-runner/0.1",
                                       "x-stainless-retry-count: 0",
                                       "Idempotency-Key: stainless-retry-1",
                                       NULL};
    CHECK_INT(n, 7);
    for (int i = 0; lines && want[i]; i++)
        CHECK_STR(lines[i], want[i]);
    if (lines)
        CHECK(lines[n] == NULL);
    rc_apichan_lines_free(lines);
    rc_apichan_head_clear(&h);

    static const char *const dropped[] = {"authorization",
                                          "x-api-key",
                                          "proxy-authorization",
                                          "cookie",
                                          "connection",
                                          "keep-alive",
                                          "te",
                                          "upgrade",
                                          "transfer-encoding",
                                          "content-length",
                                          "host",
                                          "expect",
                                          "x-forwarded-for",
                                          "anthropic-workspace-id",
                                          NULL};
    for (const char *const *d = dropped; *d; d++)
        CHECK(!rc_apichan_request_header_allowed(*d));
}

TEST(response_header_filter)
{
    static const char *const kept[] = {"content-type",
                                       "request-id",
                                       "retry-after",
                                       "retry-after-ms",
                                       "x-should-retry",
                                       "cache-control",
                                       "date",
                                       "anthropic-organization-id",
                                       NULL};
    static const char *const dropped[] = {
        "Connection", "keep-alive",         "Transfer-Encoding", "content-length",
        "Set-Cookie", "set-cookie2",        "upgrade",           "trailer",
        "te",         "proxy-authenticate", "alt-svc",           "strict-transport-security",
        NULL};
    for (const char *const *k = kept; *k; k++)
        CHECK(rc_apichan_response_header_allowed(*k));
    for (const char *const *d = dropped; *d; d++)
        CHECK(!rc_apichan_response_header_allowed(*d));
}

/* ---- credential choice ------------------------------------------------------------------- */

/* base64url (unpadded) of {"sessions_token":"sk-ant-req-UNITTESTtoken0123456789abcdef"} */
static const char secret_ok[] =
    "eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtVU5JVFRFU1R0b2tlbjAxMjM0NTY3ODlhYmNkZWYifQ";

TEST(credential_choose)
{
    char *cred = NULL;
    int kind = 0;
    rc_error err = {0};
    CHECK_INT(rc_apichan_credential_choose(secret_ok, NULL, false, &cred, &kind, &err), 0);
    CHECK_STR(cred, TOKEN);
    CHECK_INT(kind, RC_APICHAN_CRED_SESSIONS_TOKEN);
    rc_worksecret_free(cred);
    cred = NULL;
    /* A good secret wins over an allowed environment key. */
    CHECK_INT(rc_apichan_credential_choose(secret_ok, "sk-ant-oat01-envkeyvalue", true, &cred,
                                           &kind, &err),
              0);
    CHECK_INT(kind, RC_APICHAN_CRED_SESSIONS_TOKEN);
    rc_worksecret_free(cred);
    cred = NULL;
    /* No secret: refused unless the operator allowed the environment key. */
    CHECK_INT(
        rc_apichan_credential_choose(NULL, "sk-ant-oat01-envkeyvalue", false, &cred, &kind, &err),
        -RC_EAUTH);
    CHECK(cred == NULL);
    CHECK(strstr(err.msg, "no secret") != NULL);
    CHECK(strstr(err.msg, "envkeyvalue") == NULL);
    CHECK_INT(
        rc_apichan_credential_choose("", "sk-ant-oat01-envkeyvalue", true, &cred, &kind, &err), 0);
    CHECK_STR(cred, "sk-ant-oat01-envkeyvalue");
    CHECK_INT(kind, RC_APICHAN_CRED_ENVIRONMENT_KEY);
    rc_worksecret_free(cred);
    cred = NULL;
    /* A corrupt secret is no token either. */
    CHECK_INT(rc_apichan_credential_choose("!!notbase64", NULL, false, &cred, &kind, &err),
              -RC_EAUTH);
    CHECK(strstr(err.msg, "yields no sessions token") != NULL);
    CHECK(strstr(err.msg, "notbase64") == NULL);
    /* Allowed but no usable key. */
    CHECK_INT(rc_apichan_credential_choose(NULL, "", true, &cred, &kind, &err), -RC_EAUTH);
    CHECK_INT(rc_apichan_credential_choose(NULL, NULL, true, &cred, &kind, &err), -RC_EAUTH);
    CHECK_INT(rc_apichan_credential_choose(NULL, "has space", true, &cred, &kind, &err), -RC_EAUTH);
    CHECK(cred == NULL);
    CHECK(rc_apichan_env_key_brokering_allowed("1"));
    CHECK(!rc_apichan_env_key_brokering_allowed("0"));
    CHECK(!rc_apichan_env_key_brokering_allowed("true"));
    CHECK(!rc_apichan_env_key_brokering_allowed("1 "));
    CHECK(!rc_apichan_env_key_brokering_allowed(""));
    CHECK(!rc_apichan_env_key_brokering_allowed(NULL));
}

/* ---- the server, in-process ---------------------------------------------------------------- */

typedef struct rig {
    char dir[64];
    char sock[128];
    char audit[128];
    int audit_fd;
    fixture_http *up;
    rc_apichan *ch;
} rig;

static bool rig_start(rig *g, rc_apichan_config *over)
{
    memset(g, 0, sizeof *g);
    g->audit_fd = -1;
    snprintf(g->dir, sizeof g->dir, "/tmp/rc-apichan-test.XXXXXX");
    if (!mkdtemp(g->dir))
        return false;
    snprintf(g->sock, sizeof g->sock, "%s/api.sock", g->dir);
    snprintf(g->audit, sizeof g->audit, "%s/audit", g->dir);
    g->audit_fd = open(g->audit, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    g->up = fixture_http_start(NULL);
    if (!g->up || g->audit_fd < 0)
        return false;
    rc_apichan_config cfg = {0};
    if (over)
        cfg = *over;
    cfg.socket_path = g->sock;
    if (!over)
        cfg.allowed_uid = geteuid();
    cfg.socket_gid = (gid_t)-1;
    cfg.base_url = fixture_http_url(g->up);
    if (!cfg.scope.session_id)
        cfg.scope = scope;
    cfg.credential = TOKEN;
    cfg.credential_kind = RC_APICHAN_CRED_SESSIONS_TOKEN;
    cfg.audit_fd = g->audit_fd;
    rc_error err = {0};
    if (rc_apichan_new(&cfg, &g->ch, &err) < 0 || rc_apichan_start(g->ch, &err) < 0) {
        printf("# rc_apichan: %s\n", err.msg);
        return false;
    }
    return true;
}

static void rig_stop(rig *g)
{
    rc_apichan_free(g->ch);
    g->ch = NULL;
    if (g->up)
        fixture_http_stop(g->up);
    if (g->audit_fd >= 0)
        close(g->audit_fd);
    unlink(g->audit);
    unlink(g->sock);
    rmdir(g->dir);
}

static char *rig_audit(const rig *g)
{
    static char buf[65536];
    int fd = open(g->audit, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* The audit line of a request is written after its answer: wait for it. */
static bool rig_audit_has(const rig *g, const char *needle)
{
    for (int i = 0; i < 200; i++) {
        if (strstr(rig_audit(g), needle))
            return true;
        usleep(10000);
    }
    return false;
}

static int client_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static bool client_send(int fd, const char *s)
{
    size_t n = strlen(s);
    return send(fd, s, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* A buffered reader over the client socket that can parse whole responses. */
typedef struct reader {
    int fd;
    char buf[1 << 20];
    size_t len;
    bool eof;
} reader;

static bool reader_fill(reader *r)
{
    if (r->eof || r->len >= sizeof r->buf - 1)
        return false;
    ssize_t n = recv(r->fd, r->buf + r->len, sizeof r->buf - 1 - r->len, 0);
    if (n <= 0) {
        r->eof = true;
        return false;
    }
    r->len += (size_t)n;
    r->buf[r->len] = '\0';
    return true;
}

static void reader_consume(reader *r, size_t n)
{
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
    r->buf[r->len] = '\0';
}

typedef struct resp {
    int status;
    char head[8192]; /* status line and headers, lowercased names kept as sent */
    char body[65536];
    size_t body_len;
    bool chunked;
} resp;

static const char *resp_header(const resp *rs, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(rs->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            snprintf(out, outsz, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return out;
        }
    }
    return NULL;
}

/* Read one whole response (head, then body by content-length, chunked or to EOF). */
static bool read_response(reader *r, resp *rs)
{
    memset(rs, 0, sizeof *rs);
    char *end;
    while (!(end = strstr(r->buf, "\r\n\r\n")))
        if (!reader_fill(r))
            return false;
    size_t hl = (size_t)(end - r->buf) + 4;
    snprintf(rs->head, sizeof rs->head, "%.*s", (int)hl - 2, r->buf);
    rs->status = (int)strtol(r->buf + 9, NULL, 10);
    reader_consume(r, hl);
    char v[64];
    if (resp_header(rs, "transfer-encoding", v, sizeof v)) {
        rs->chunked = true;
        for (;;) {
            char *crlf;
            while (!(crlf = strstr(r->buf, "\r\n")))
                if (!reader_fill(r))
                    return false;
            size_t size = strtoul(r->buf, NULL, 16);
            size_t need = (size_t)(crlf - r->buf) + 2 + size + 2;
            while (r->len < need)
                if (!reader_fill(r))
                    return false;
            if (rs->body_len + size < sizeof rs->body) {
                memcpy(rs->body + rs->body_len, crlf + 2, size);
                rs->body_len += size;
            }
            reader_consume(r, need);
            if (size == 0)
                return true;
        }
    }
    size_t cl = SIZE_MAX;
    if (resp_header(rs, "content-length", v, sizeof v))
        cl = strtoul(v, NULL, 10);
    else if (rs->status == 204 || rs->status == 304 || rs->status == 100)
        cl = 0;
    while (r->len < cl && reader_fill(r)) {
    }
    size_t take = r->len < cl ? r->len : cl;
    if (cl != SIZE_MAX && take < cl)
        return false;
    memcpy(rs->body, r->buf, take < sizeof rs->body ? take : sizeof rs->body - 1);
    rs->body_len = take;
    rs->body[take < sizeof rs->body ? take : sizeof rs->body - 1] = '\0';
    reader_consume(r, take);
    return true;
}

static reader *reader_new(int fd)
{
    reader *r = calloc(1, sizeof *r);
    if (r)
        r->fd = fd;
    return r;
}

/* One request on a fresh connection; returns the status (0 when no answer). */
static int one_request(const rig *g, const char *raw, resp *rs)
{
    int fd = client_connect(g->sock);
    if (fd < 0)
        return 0;
    reader *r = reader_new(fd);
    int st = 0;
    /* A refusal may come (and the channel close) before the request is even sent: read
     * whatever answer is there either way. */
    if (r && (client_send(fd, raw) || true) && read_response(r, rs))
        st = rs->status;
    free(r);
    close(fd);
    return st;
}

#define REQ(m, t, extra) m " " t " HTTP/1.1\r\nHost: localhost\r\n" extra "\r\n"

TEST(server_injects_token_and_strips_headers)
{
    rig g;
    if (!rig_start(&g, NULL)) {
        rig_stop(&g);
        SKIP("cannot start the channel (unix sockets or chown unavailable)");
    }
    fixture_http_push_simple(g.up, 200,
                             "Content-Type: application/json\r\nrequest-id: req_up1\r\n"
                             "Set-Cookie: a=b\r\nX-Echo: Bearer " TOKEN "\r\n",
                             "{\"type\":\"session\"}");
    static resp rs;
    int st = one_request(&g,
                         REQ("GET", S "?beta=true",
                             "Authorization: Bearer runcell-broker-placeholder\r\n"
                             "x-api-key: sk-ant-api03-fromcontainer\r\n"
                             "Cookie: c=d\r\nProxy-Authorization: Basic eA==\r\n"
                             "anthropic-beta: managed-agents-2026-04-01\r\n"
                             "anthropic-version: 2023-06-01\r\nX-Other: 1\r\n"),
                         &rs);
    CHECK_INT(st, 200);
    CHECK_STR(rs.body, "{\"type\":\"session\"}");
    char v[256];
    CHECK_STR(resp_header(&rs, "request-id", v, sizeof v), "req_up1");
    CHECK(resp_header(&rs, "set-cookie", v, sizeof v) == NULL);
    CHECK(resp_header(&rs, "x-echo", v, sizeof v) == NULL); /* would have shown the token */
    CHECK(strstr(rs.head, TOKEN) == NULL && strstr(rs.body, TOKEN) == NULL);
    REQUIRE(fixture_http_wait(g.up, 1, 2000));
    const fixture_http_request *up = fixture_http_get(g.up, 0);
    CHECK_STR(up->method, "GET");
    CHECK_STR(up->target, S "?beta=true");
    CHECK_STR(fixture_http_header(up, "authorization", v, sizeof v), "Bearer " TOKEN);
    CHECK_INT(fixture_http_header_count(up, "authorization"), 1);
    CHECK_INT(fixture_http_header_count(up, "x-api-key"), 0);
    CHECK_INT(fixture_http_header_count(up, "cookie"), 0);
    CHECK_INT(fixture_http_header_count(up, "proxy-authorization"), 0);
    CHECK_INT(fixture_http_header_count(up, "x-other"), 0);
    CHECK_INT(fixture_http_header_count(up, "content-type"), 0);
    CHECK_INT(fixture_http_header_count(up, "accept"), 0);
    CHECK_INT(fixture_http_header_count(up, "expect"), 0);
    CHECK_STR(fixture_http_header(up, "anthropic-beta", v, sizeof v), "managed-agents-2026-04-01");
    CHECK_STR(fixture_http_header(up, "anthropic-version", v, sizeof v), "2023-06-01");
    CHECK(rig_audit_has(&g, "\"route\":\"session_get\""));
    CHECK(strstr(rig_audit(&g), TOKEN) == NULL);
    rig_stop(&g);
}

TEST(server_post_body_keepalive_pipelining)
{
    rig g;
    if (!rig_start(&g, NULL)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    fixture_http_push_simple(g.up, 200, "Content-Type: application/json\r\n", "{\"data\":[]}");
    fixture_http_push_simple(g.up, 200, "Content-Type: application/json\r\n",
                             "{\"type\":\"work_heartbeat\"}");
    fixture_http_push_simple(g.up, 204, NULL, NULL);
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    reader *r = reader_new(fd);
    static resp rs;
    /* First request alone, then two pipelined in one write: all on one connection. */
    CHECK(client_send(
        fd, REQ("POST", S "/events",
                "Content-Type: application/json\r\nContent-Length: 13\r\n") "{\"events\":[]}"));
    CHECK(read_response(r, &rs));
    CHECK_INT(rs.status, 200);
    CHECK_STR(rs.body, "{\"data\":[]}");
    CHECK(client_send(
        fd, REQ("POST", HB "?expected_last_heartbeat=NO_HEARTBEAT", "Content-Length: 0\r\n")
                REQ("POST", W "/stop",
                    "Content-Length: 14\r\n"
                    "Content-Type: application/json\r\n") "{\"force\":true}"));
    CHECK(read_response(r, &rs));
    CHECK_INT(rs.status, 200);
    CHECK(read_response(r, &rs));
    CHECK_INT(rs.status, 204);
    free(r);
    close(fd);
    REQUIRE(fixture_http_wait(g.up, 3, 2000));
    const fixture_http_request *u0 = fixture_http_get(g.up, 0);
    const fixture_http_request *u1 = fixture_http_get(g.up, 1);
    const fixture_http_request *u2 = fixture_http_get(g.up, 2);
    CHECK_MEM(u0->body, u0->body_len, "{\"events\":[]}", 13);
    char v[128];
    CHECK_STR(fixture_http_header(u0, "content-type", v, sizeof v), "application/json");
    CHECK_STR(u1->target, HB "?expected_last_heartbeat=NO_HEARTBEAT");
    CHECK_INT(u1->body_len, 0);
    CHECK_INT(fixture_http_header_count(u1, "content-type"), 0); /* no form type added */
    CHECK_MEM(u2->body, u2->body_len, "{\"force\":true}", 14);
    rc_apichan_stats st;
    rc_apichan_get_stats(g.ch, &st);
    CHECK_INT(st.accepted, 1);
    CHECK_INT(st.requests, 3);
    rig_stop(&g);
}

static const char *const sse_chunks[] = {
    "event: agent.tool_use\ndata: {\"type\":\"agent.tool_use\",\"id\":\"sevt_1\"}\n\n",
    "event: ping\ndata: {}\n\n", NULL};

TEST(server_sse_unbuffered)
{
    rig g;
    if (!rig_start(&g, NULL)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    /* Event 1 leaves the upstream at ~600 ms, event 2 at ~1200 ms, the stream ends at ~3200 ms.
     * Causal checks, not tight timings: the head comes before event 1 was even sent, and each
     * event arrives long before the stream ends (a buffering relay would deliver all at the
     * end). */
    fixture_http_push(g.up, &(fixture_http_response){
                                .status = 200,
                                .headers = "Content-Type: text/event-stream\r\n"
                                           "Cache-Control: no-cache\r\n",
                                .chunks = sse_chunks,
                                .chunk_pause_ms = 600,
                                .hold_ms = 2000,
                            });
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    reader *r = reader_new(fd);
    int64_t t0 = mono_ms();
    CHECK(client_send(fd, REQ("GET", S "/events/stream", "Accept: text/event-stream\r\n")));
    while (!strstr(r->buf, "\r\n\r\n") && reader_fill(r)) {
    }
    int64_t t_head = mono_ms() - t0;
    CHECK(strstr(r->buf, "HTTP/1.1 200") == r->buf);
    CHECK(strstr(r->buf, "text/event-stream") != NULL);
    CHECK(strstr(r->buf, "transfer-encoding: chunked") != NULL);
    CHECK(t_head < 550);
    while (!strstr(r->buf, "sevt_1") && reader_fill(r)) {
    }
    int64_t t_ev1 = mono_ms() - t0;
    bool ping_with_ev1 = strstr(r->buf, "event: ping") != NULL;
    while (!strstr(r->buf, "event: ping") && reader_fill(r)) {
    }
    int64_t t_ev2 = mono_ms() - t0;
    printf("# head %lld ms, event 1 %lld ms, event 2 %lld ms\n", (long long)t_head,
           (long long)t_ev1, (long long)t_ev2);
    CHECK(!ping_with_ev1); /* event 1 was delivered on its own, not held for the next */
    CHECK(t_ev1 >= 500 && t_ev1 < 2500);
    CHECK(t_ev2 >= 1100 && t_ev2 < 3000);
    CHECK(!r->eof);
    free(r);
    close(fd);
    rig_stop(&g);
}

TEST(server_upstream_errors_pass_through)
{
    rig g;
    if (!rig_start(&g, NULL)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    const char *body412 = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                          "\"message\":\"Heartbeat precondition failed\",\"details\":"
                          "{\"error_code\":\"heartbeat_precondition_failed\"}}}";
    fixture_http_push_simple(g.up, 412, "Content-Type: application/json\r\n", body412);
    fixture_http_push_simple(g.up, 429, "Content-Type: application/json\r\nretry-after: 1\r\n",
                             "{\"type\":\"error\"}");
    fixture_http_push_simple(g.up, 409, "x-should-retry: false\r\n", "");
    static resp rs;
    char v[64];
    CHECK_INT(
        one_request(&g, REQ("POST", HB "?expected_last_heartbeat=x", "Content-Length: 0\r\n"), &rs),
        412);
    CHECK_STR(rs.body, body412);
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 429);
    CHECK_STR(resp_header(&rs, "retry-after", v, sizeof v), "1");
    CHECK_INT(one_request(&g, REQ("POST", W "/stop", "Content-Length: 0\r\n"), &rs), 409);
    CHECK_STR(resp_header(&rs, "x-should-retry", v, sizeof v), "false");
    rig_stop(&g);
}

TEST(server_forbidden_and_audit)
{
    rig g;
    if (!rig_start(&g, NULL)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    static resp rs;
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    reader *r = reader_new(fd);
    /* A refused request without a body leaves the connection usable. */
    CHECK(client_send(fd, REQ("GET", "/v1/sessions/sesn_OTHER", "")));
    CHECK(read_response(r, &rs));
    CHECK_INT(rs.status, 403);
    char v[64];
    CHECK_STR(resp_header(&rs, "content-type", v, sizeof v), "application/json");
    CHECK_STR(resp_header(&rs, "x-should-retry", v, sizeof v), "false");
    CHECK(strstr(rs.body, "\"type\":\"error\"") != NULL);
    CHECK(strstr(rs.body, "\"type\":\"permission_error\"") != NULL);
    CHECK(strstr(rs.body, "\"request_id\":\"req_broker_") != NULL);
    CHECK(strstr(rs.body, "sesn_OTHER") == NULL);
    fixture_http_push_simple(g.up, 200, "Content-Type: application/json\r\n", "{}");
    CHECK(client_send(fd, REQ("GET", S, "")));
    CHECK(read_response(r, &rs));
    CHECK_INT(rs.status, 200);
    /* Encoded traversal, and a refused request with a body: 403, then the connection closes. */
    CHECK(client_send(fd, REQ("POST", S "/%2e%2e/sesn_X/events", "Content-Length: 2\r\n") "{}"));
    CHECK(read_response(r, &rs));
    CHECK_INT(rs.status, 403);
    CHECK(resp_header(&rs, "connection", v, sizeof v) != NULL);
    CHECK(!reader_fill(r));
    free(r);
    close(fd);
    CHECK_INT(fixture_http_count(g.up), 1);
    CHECK(rig_audit_has(&g, "percent-encoding"));
    const char *audit = rig_audit(&g);
    CHECK(strstr(audit, "\"decision\":\"deny\",\"reason\":\"session id is not this channel's "
                        "session\"") != NULL);
    CHECK(strstr(audit, "\"reason\":\"percent-encoding is not allowed in the path\"") != NULL);
    CHECK(strstr(audit, "\"path\":\"/v1/sessions/sesn_OTHER\"") != NULL);
    CHECK(strstr(audit, "\"status\":403") != NULL);
    rc_apichan_stats st;
    rc_apichan_get_stats(g.ch, &st);
    CHECK_INT(st.forbidden, 2);
    rig_stop(&g);
}

TEST(server_framing_refusals)
{
    rig g;
    rc_apichan_config over = {.allowed_uid = geteuid(), .max_request_body = 64};
    if (!rig_start(&g, &over)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    static resp rs;
    CHECK_INT(one_request(
                  &g, REQ("POST", S "/events", "Transfer-Encoding: chunked\r\n") "0\r\n\r\n", &rs),
              411);
    CHECK_INT(one_request(&g, REQ("POST", S "/events", "Content-Length: 65\r\n"), &rs), 413);
    CHECK(strstr(rs.body, "request_too_large") != NULL);
    CHECK_INT(one_request(
                  &g, REQ("POST", S "/events", "Content-Length: 1\r\nContent-Length: 1\r\n"), &rs),
              400);
    CHECK_INT(one_request(&g, "GET " S " HTTP/1.1\nHost: x\n\n", &rs), 400);
    CHECK_INT(one_request(&g, "GET " S " HTTP/1.0\r\nHost: x\r\n\r\n", &rs), 505);
    CHECK_INT(one_request(&g, REQ("PUT", S, ""), &rs), 501);
    CHECK_INT(one_request(&g, REQ("GET", S, "Expect: bogus\r\n"), &rs), 417);
    CHECK_INT(one_request(&g, REQ("GET", S, "Content-Length: 2\r\n") "{}", &rs), 400);
    CHECK(strstr(rs.body, "takes no request body") != NULL);
    char big[RC_APICHAN_HEAD_MAX + 512];
    int n = snprintf(big, sizeof big, "GET " S " HTTP/1.1\r\nHost: x\r\n");
    while (n < (int)sizeof big - 64)
        n += snprintf(big + n, sizeof big - (size_t)n, "X-Pad: %040d\r\n", 7);
    CHECK_INT(one_request(&g, big, &rs), 431);
    CHECK_INT(fixture_http_count(g.up), 0);
    rig_stop(&g);
}

TEST(server_expect_continue)
{
    rig g;
    if (!rig_start(&g, NULL)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    fixture_http_push_simple(g.up, 200, "Content-Type: application/json\r\n", "{\"ok\":1}");
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    reader *r = reader_new(fd);
    static resp rs;
    CHECK(client_send(fd, REQ("POST", S "/events",
                              "Expect: 100-continue\r\nContent-Length: 13\r\n"
                              "Content-Type: application/json\r\n")));
    CHECK(read_response(r, &rs));
    CHECK_INT(rs.status, 100);
    CHECK(client_send(fd, "{\"events\":[]}"));
    CHECK(read_response(r, &rs));
    CHECK_INT(rs.status, 200);
    CHECK_STR(rs.body, "{\"ok\":1}");
    free(r);
    close(fd);
    /* A refused path never gets a 100: the 403 comes before any body is solicited. */
    CHECK_INT(one_request(&g,
                          REQ("POST", "/v1/sessions/sesn_X/events",
                              "Expect: 100-continue\r\nContent-Length: 13\r\n"),
                          &rs),
              403);
    rig_stop(&g);
}

TEST(server_response_cap_and_upstream_failures)
{
    rig g;
    rc_apichan_config over = {
        .allowed_uid = geteuid(), .max_response_body = 100, .upstream_timeout_ms = 500};
    if (!rig_start(&g, &over)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    char big[201];
    memset(big, 'x', 200);
    big[200] = '\0';
    static const char *const big_chunks[] = {
        "0123456789012345678901234567890123456789012345678901234567890123456789",
        "0123456789012345678901234567890123456789012345678901234567890123456789", NULL};
    static resp rs;
    /* Known length over the cap: refused before any byte goes out. */
    fixture_http_push_simple(g.up, 200, NULL, big);
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 502);
    CHECK(strstr(rs.body, "broker_upstream_too_large") != NULL);
    /* Chunked over the cap: the head is out, the connection is cut mid-body. */
    fixture_http_push(g.up, &(fixture_http_response){.status = 200, .chunks = big_chunks});
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    reader *r = reader_new(fd);
    CHECK(client_send(fd, REQ("GET", S, "")));
    CHECK(!read_response(r, &rs)); /* no terminating chunk */
    free(r);
    close(fd);
    /* Upstream closes without answering: 502; upstream too slow: 504. */
    fixture_http_push(g.up, &(fixture_http_response){.close_without_answer = true});
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 502);
    CHECK(strstr(rs.body, "broker_upstream_unreachable") != NULL);
    fixture_http_push(g.up, &(fixture_http_response){.status = 200, .delay_ms = 2000});
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 504);
    CHECK(strstr(rs.body, "timeout_error") != NULL);
    CHECK(resp_header(&rs, "x-should-retry", big, sizeof big) == NULL);
    rig_stop(&g);
}

TEST(server_upstream_unreachable)
{
    rig g;
    if (!rig_start(&g, NULL)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    fixture_http_stop(g.up); /* nothing listens on the base URL any more */
    g.up = NULL;
    static resp rs;
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 502);
    CHECK(strstr(rs.body, "\"type\":\"api_error\"") != NULL);
    rig_stop(&g);
}

TEST(server_peer_uid_refused)
{
    if (geteuid() != 0)
        SKIP("needs root to give the socket to another uid");
    rig g;
    rc_apichan_config over = {.allowed_uid = 65534};
    if (!rig_start(&g, &over)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    struct stat st;
    REQUIRE(stat(g.sock, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_INT(st.st_mode & 07777, 0600);
    CHECK_INT(st.st_uid, 65534);
    /* Root can open the file (DAC override), but SO_PEERCRED says uid 0: closed unanswered. */
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    client_send(fd, REQ("GET", S, ""));
    char b[64];
    CHECK(recv(fd, b, sizeof b, 0) <= 0);
    close(fd);
    CHECK_INT(fixture_http_count(g.up), 0);
    rc_apichan_stats s;
    rc_apichan_get_stats(g.ch, &s);
    CHECK_INT(s.refused_peer, 1);
    CHECK_INT(s.accepted, 0);
    CHECK(rig_audit_has(&g, "\"event\":\"peer_refused\""));
    CHECK(strstr(rig_audit(&g), "\"peer_uid\":0") != NULL);
    rig_stop(&g);
}

TEST(server_connection_cap)
{
    rig g;
    rc_apichan_config over = {.allowed_uid = geteuid(), .max_connections = 2};
    if (!rig_start(&g, &over)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    int a = client_connect(g.sock), b = client_connect(g.sock);
    REQUIRE(a >= 0 && b >= 0);
    /* Let the channel account for both before the third arrives. */
    for (int i = 0; i < 100; i++) {
        rc_apichan_stats s;
        rc_apichan_get_stats(g.ch, &s);
        if (s.active == 2)
            break;
        usleep(10000);
    }
    static resp rs;
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 503);
    CHECK(strstr(rs.body, "broker_capacity") != NULL);
    close(a);
    close(b);
    for (int i = 0; i < 100; i++) {
        rc_apichan_stats s;
        rc_apichan_get_stats(g.ch, &s);
        if (s.active == 0)
            break;
        usleep(10000);
    }
    fixture_http_push_simple(g.up, 200, NULL, "{}");
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 200);
    rig_stop(&g);
}

TEST(server_stop_ends_streams)
{
    rig g;
    if (!rig_start(&g, NULL)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    fixture_http_push(g.up,
                      &(fixture_http_response){.status = 200,
                                               .headers = "Content-Type: text/event-stream\r\n",
                                               .chunks = sse_chunks,
                                               .hold_ms = 20000});
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    reader *r = reader_new(fd);
    CHECK(client_send(fd, REQ("GET", S "/events/stream", "")));
    while (!strstr(r->buf, "event: ping") && reader_fill(r)) {
    }
    int64_t t0 = mono_ms();
    rc_apichan_stop(g.ch);
    int64_t took = mono_ms() - t0;
    CHECK(took < 2500);
    while (reader_fill(r)) {
    }
    CHECK(r->eof);
    free(r);
    close(fd);
    rig_stop(&g);
}

TEST(socket_file_rules)
{
    char dir[] = "/tmp/rc-apichan-sock.XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/api.sock", dir);
    rc_apichan_config cfg = {.socket_path = path,
                             .allowed_uid = geteuid(),
                             .socket_gid = (gid_t)-1,
                             .base_url = "http://127.0.0.1:9",
                             .scope = scope,
                             .credential = TOKEN,
                             .credential_kind = RC_APICHAN_CRED_SESSIONS_TOKEN,
                             .audit_fd = -1};
    rc_apichan *ch = NULL;
    rc_error err = {0};
    /* A regular file at the path is never replaced. */
    int f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(f >= 0);
    close(f);
    CHECK_INT(rc_apichan_new(&cfg, &ch, &err), -RC_EINVAL);
    unlink(path);
    /* A stale socket is replaced; the new one is 0600 and removed on free. */
    REQUIRE(rc_apichan_new(&cfg, &ch, &err) == 0);
    rc_apichan *ch2 = NULL;
    REQUIRE(rc_apichan_new(&cfg, &ch2, &err) == 0);
    struct stat st;
    REQUIRE(stat(path, &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    rc_apichan_free(ch); /* no longer owns the path: leaves ch2's socket alone */
    CHECK(stat(path, &st) == 0);
    rc_apichan_free(ch2);
    CHECK(stat(path, &st) < 0);
    /* No temporary names left behind: the directory is empty again. */
    CHECK(rmdir(dir) == 0);
    /* A directory writable by others is refused. */
    REQUIRE(mkdir(dir, 0700) == 0);
    chmod(dir, 0777);
    CHECK_INT(rc_apichan_new(&cfg, &ch, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "writable") != NULL);
    chmod(dir, 0711);
    rmdir(dir);
}

TEST(config_validation)
{
    rc_apichan_config base = {.socket_path = "/tmp/rc-apichan-cfg-never.sock",
                              .allowed_uid = geteuid(),
                              .socket_gid = (gid_t)-1,
                              .base_url = "https://api.anthropic.com",
                              .scope = scope,
                              .credential = TOKEN,
                              .credential_kind = RC_APICHAN_CRED_SESSIONS_TOKEN,
                              .audit_fd = -1};
    static const char *const bad_urls[] = {
        "ftp://x",           "http://api.example.com", "https://user@host",
        "https://host/?q=1", "https://host/#f",        "https://ho st",
        "https://",          "https:///path",          NULL};
    rc_apichan *ch = NULL;
    rc_error err = {0};
    for (const char *const *u = bad_urls; *u; u++) {
        rc_apichan_config c = base;
        c.base_url = *u;
        if (rc_apichan_new(&c, &ch, &err) != -RC_EINVAL)
            rc_test_fail(__FILE__, __LINE__, "base URL %s accepted", *u);
    }
    rc_apichan_config c = base;
    c.credential = "has space";
    CHECK_INT(rc_apichan_new(&c, &ch, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "has space") == NULL);
    c = base;
    c.credential = "";
    CHECK_INT(rc_apichan_new(&c, &ch, &err), -RC_EINVAL);
    c = base;
    c.credential_kind = 0;
    CHECK_INT(rc_apichan_new(&c, &ch, &err), -RC_EINVAL);
    c = base;
    c.scope.session_id = "sesn/../x";
    CHECK_INT(rc_apichan_new(&c, &ch, &err), -RC_EINVAL);
    c = base;
    c.scope.work_id = "";
    CHECK_INT(rc_apichan_new(&c, &ch, &err), -RC_EINVAL);
    c = base;
    c.socket_path = "relative.sock";
    CHECK_INT(rc_apichan_new(&c, &ch, &err), -RC_EINVAL);
    c = base;
    c.base_url = "http://api.example.com";
    c.allow_plain_http = true;
    c.socket_path = "/nonexistent-dir-rc/api.sock";
    CHECK_INT(rc_apichan_new(&c, &ch, &err), -RC_EIO); /* URL fine, directory missing */
    CHECK(ch == NULL);
}

/* ---- the heartbeat record (reconcile after a crash, launcher/reconcile.c) ----------------- */

TEST(hb_record_parse_format)
{
    rc_apichan_hb_record rec, back;
    rc_error err = {0};
    char buf[RC_APICHAN_HB_RECORD_MAX];
    const char *ans =
        "{\"type\":\"work_heartbeat\",\"last_heartbeat\":\"2026-05-01T12:00:31.123456Z\","
        "\"lease_extended\":true,\"state\":\"active\",\"ttl_seconds\":300}";
    REQUIRE(rc_apichan_hb_record_from_answer(ans, strlen(ans), 1790000000123LL, &rec, &err) == 0);
    CHECK_STR(rec.last_heartbeat, "2026-05-01T12:00:31.123456Z");
    CHECK_STR(rec.state, "active");
    CHECK_INT(rec.ttl_seconds, 300);
    CHECK(rec.at_ms == 1790000000123LL);
    int n = rc_apichan_hb_record_format(&rec, buf, sizeof buf, &err);
    REQUIRE(n > 0);
    CHECK(buf[n - 1] == '\n');
    REQUIRE(rc_apichan_hb_record_parse(buf, (size_t)n, &back, &err) == 0);
    CHECK_STR(back.last_heartbeat, rec.last_heartbeat);
    CHECK_STR(back.state, "active");
    CHECK_INT(back.ttl_seconds, 300);
    CHECK(back.at_ms == 1790000000123LL);
    /* Expiry: only with a known TTL, and only past ttl + margin. */
    CHECK(!rc_apichan_hb_record_expired(&rec, rec.at_ms + 300000 + 10000, 10000));
    CHECK(rc_apichan_hb_record_expired(&rec, rec.at_ms + 300000 + 10001, 10000));
    CHECK(!rc_apichan_hb_record_expired(&rec, rec.at_ms - 5000, 0)); /* clock went back */
    back.ttl_seconds = 0;
    CHECK(!rc_apichan_hb_record_expired(&back, back.at_ms + 86400000LL, 0));
    /* An answer without ttl or state, and an empty last_heartbeat (none recorded). */
    const char *bare = "{\"last_heartbeat\":\"\"}";
    REQUIRE(rc_apichan_hb_record_from_answer(bare, strlen(bare), 5, &rec, &err) == 0);
    CHECK_STR(rec.last_heartbeat, "");
    CHECK_STR(rec.state, "");
    CHECK_INT(rec.ttl_seconds, 0);
    /* Odd values are dropped, not kept. */
    const char *odd = "{\"last_heartbeat\":\"x\",\"state\":\"Ac tive\",\"ttl_seconds\":-3}";
    REQUIRE(rc_apichan_hb_record_from_answer(odd, strlen(odd), 5, &rec, &err) == 0);
    CHECK_STR(rec.state, "");
    CHECK_INT(rec.ttl_seconds, 0);
    /* Refused answers and records. */
    static const char *const bad[] = {
        "",
        "null",
        "[]",
        "{}",
        "{\"last_heartbeat\":null}",
        "{\"last_heartbeat\":7}",
        "{\"last_heartbeat\":\"a\\nb\"}",
        "{\"last_heartbeat\":\"caf\\u00e9\"}",
        "{\"type\":\"error\",\"last_heartbeat\":\"x\"}",
        "{\"last_heartbeat\":\"x\",\"last_heartbeat\":\"y\"}",
        "{\"last_heartbeat\":\"x\"",
        NULL,
    };
    for (const char *const *b = bad; *b; b++)
        if (rc_apichan_hb_record_from_answer(*b, strlen(*b), 1, &rec, &err) == 0)
            rc_test_fail(__FILE__, __LINE__, "answer accepted: %s", *b);
    char longv[RC_APICHAN_HB_VALUE_MAX + 64];
    int ln = snprintf(longv, sizeof longv, "{\"last_heartbeat\":\"");
    memset(longv + ln, 'a', RC_APICHAN_HB_VALUE_MAX + 1);
    snprintf(longv + ln + RC_APICHAN_HB_VALUE_MAX + 1,
             sizeof longv - (size_t)ln - RC_APICHAN_HB_VALUE_MAX - 1, "\"}");
    CHECK(rc_apichan_hb_record_from_answer(longv, strlen(longv), 1, &rec, &err) < 0);
    /* A record needs at_ms. */
    CHECK(rc_apichan_hb_record_parse(bare, strlen(bare), &rec, &err) == -RC_EPARSE);
    const char *neg = "{\"last_heartbeat\":\"x\",\"at_ms\":-1}";
    CHECK(rc_apichan_hb_record_parse(neg, strlen(neg), &rec, &err) == -RC_EPARSE);
    /* Write, read back, mode 0600; a missing file is -RC_ENOTFOUND. */
    char dir[] = "/tmp/rc-hbrec-test.XXXXXX", path[64];
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/heartbeat", dir);
    CHECK_INT(rc_apichan_hb_record_read(path, &back, &err), -RC_ENOTFOUND);
    rec = (rc_apichan_hb_record){
        .last_heartbeat = "v1", .state = "active", .ttl_seconds = 15, .at_ms = 42};
    CHECK_INT(rc_apichan_hb_record_write(path, &rec, &err), 0);
    CHECK_INT(rc_apichan_hb_record_read(path, &back, &err), 0);
    CHECK_STR(back.last_heartbeat, "v1");
    CHECK(back.at_ms == 42);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    unlink(path);
    rmdir(dir);
}

/* The record is written just after the answer reaches the runner: wait for want. */
static bool hb_record_wait(const char *path, const char *want, rc_apichan_hb_record *rec)
{
    for (int i = 0; i < 200; i++) {
        rc_error err = {0};
        if (rc_apichan_hb_record_read(path, rec, &err) == 0 &&
            strcmp(rec->last_heartbeat, want) == 0)
            return true;
        usleep(10000);
    }
    return false;
}

TEST(server_keeps_heartbeat_record)
{
    char dir[] = "/tmp/rc-hbrec-srv.XXXXXX", path[64];
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/heartbeat", dir);
    rc_apichan_config over = {.allowed_uid = geteuid(), .heartbeat_record_path = path};
    rig g;
    if (!rig_start(&g, &over)) {
        rig_stop(&g);
        rmdir(dir);
        SKIP("cannot start the channel");
    }
    const char *ok1 =
        "{\"type\":\"work_heartbeat\",\"last_heartbeat\":\"2026-11-24T00:00:01.000001Z\","
        "\"lease_extended\":true,\"state\":\"active\",\"ttl_seconds\":15}";
    const char *ok2 =
        "{\"type\":\"work_heartbeat\",\"last_heartbeat\":\"2026-11-24T00:00:09.000002Z\","
        "\"lease_extended\":true,\"state\":\"active\",\"ttl_seconds\":15}";
    fixture_http_push_simple(g.up, 200, "Content-Type: application/json\r\n", ok1);
    fixture_http_push_simple(g.up, 200, "Content-Type: application/json\r\n", ok2);
    fixture_http_push_simple(g.up, 412, "Content-Type: application/json\r\n",
                             "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                             "\"message\":\"Heartbeat precondition failed\"}}");
    fixture_http_push_simple(g.up, 200, "Content-Type: application/json\r\n",
                             "{\"id\":\"" SESS "\",\"last_heartbeat\":\"not-a-heartbeat\"}");
    static resp rs;
    rc_apichan_hb_record rec;
    rc_error err = {0};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t t0 = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    CHECK_INT(rc_apichan_hb_record_read(path, &rec, &err), -RC_ENOTFOUND);
    CHECK_INT(one_request(
                  &g,
                  REQ("POST", HB "?expected_last_heartbeat=NO_HEARTBEAT", "Content-Length: 0\r\n"),
                  &rs),
              200);
    CHECK(hb_record_wait(path, "2026-11-24T00:00:01.000001Z", &rec));
    CHECK_INT(rec.ttl_seconds, 15);
    CHECK(rec.at_ms >= t0 && rec.at_ms < t0 + 60000);
    CHECK_INT(one_request(&g,
                          REQ("POST", HB "?expected_last_heartbeat=2026-11-24T00%3A00%3A01.000001Z",
                              "Content-Length: 0\r\n"),
                          &rs),
              200);
    CHECK(hb_record_wait(path, "2026-11-24T00:00:09.000002Z", &rec));
    /* A 412 and a 200 on another route leave the record as it was. */
    CHECK_INT(
        one_request(&g, REQ("POST", HB "?expected_last_heartbeat=x", "Content-Length: 0\r\n"), &rs),
        412);
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 200);
    CHECK(rig_audit_has(&g, "\"route\":\"session_get\"")); /* its answer is done with */
    CHECK_INT(rc_apichan_hb_record_read(path, &rec, &err), 0);
    CHECK_STR(rec.last_heartbeat, "2026-11-24T00:00:09.000002Z");
    /* Root-only, and never the credential. */
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    char raw[RC_APICHAN_HB_RECORD_MAX + 1] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t rn = fd >= 0 ? read(fd, raw, sizeof raw - 1) : -1;
    if (fd >= 0)
        close(fd);
    CHECK(rn > 0 && strstr(raw, TOKEN) == NULL);
    rig_stop(&g);
    unlink(path);
    rmdir(dir);
}

/* ---- memory stores learnt from the session answer (issue 12) --------------------------------
 * A sessions-token channel learns the session's memory stores from the 200 answer to
 * GET /v1/sessions/{sid} it relays, and then forwards /v1/memory_stores/{store}/memories[/{mem}]
 * for exactly those stores; an explicit list or RC_APICHAN_NO_MEMORY_LEARNING overrides that,
 * and an environment-key channel learns nothing (docs/BROKER_API.md "Memory stores"). */

#define MEMT_MEM(store)   "/v1/memory_stores/" store "/memories"
#define MEMT_JSON         "Content-Type: application/json\r\n"
#define MEMT_BETA         "anthropic-beta: agent-memory-2026-07-22\r\n"
#define MEMT_NOT_ENABLED  "memory stores are not enabled on this channel"
#define MEMT_NOT_LISTED   "memory store is not one of this session's stores"
#define MEMT_SESSION_HEAD "{\"id\":\"" SESS "\",\"type\":\"session\",\"status\":\"idle\","
/* A session answer attaching memstore_A1 (and a file resource, which teaches nothing). */
#define MEMT_SESSION_A1                                                                            \
    MEMT_SESSION_HEAD "\"resources\":[{\"type\":\"file\",\"file_id\":\"file_1\","                  \
                      "\"mount_path\":\"/mnt/session/uploads/x\"},{\"type\":\"memory_store\","     \
                      "\"memory_store_id\":\"memstore_A1\",\"access\":\"read_write\","             \
                      "\"mount_path\":\"/mnt/memory/notes\"}]}"

/* Requests sent to the current rig so far: each one's audit line is awaited before the next is
 * sent, so "the audit line of request n" is well defined. */
static size_t memt_sent;

/* rig_start with the credential kind and the scope's memory settings chosen by the test. */
static bool memt_rig_start(rig *g, unsigned features, const char *const *stores, int kind)
{
    memset(g, 0, sizeof *g);
    memt_sent = 0;
    g->audit_fd = -1;
    snprintf(g->dir, sizeof g->dir, "/tmp/rc-apichan-mem.XXXXXX");
    if (!mkdtemp(g->dir))
        return false;
    snprintf(g->sock, sizeof g->sock, "%s/api.sock", g->dir);
    snprintf(g->audit, sizeof g->audit, "%s/audit", g->dir);
    g->audit_fd = open(g->audit, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    g->up = fixture_http_start(NULL);
    if (!g->up || g->audit_fd < 0)
        return false;
    rc_apichan_config cfg = {.socket_path = g->sock,
                             .allowed_uid = geteuid(),
                             .socket_gid = (gid_t)-1,
                             .base_url = fixture_http_url(g->up),
                             .scope = scope,
                             .credential = TOKEN,
                             .credential_kind = kind,
                             .audit_fd = g->audit_fd};
    cfg.scope.features = features;
    cfg.scope.memory_store_ids = stores;
    rc_error err = {0};
    if (rc_apichan_new(&cfg, &g->ch, &err) < 0 || rc_apichan_start(g->ch, &err) < 0) {
        printf("# rc_apichan: %s\n", err.msg);
        return false;
    }
    return true;
}

/* The whole audit file (rig_audit stops at 64 KiB). Caller frees. */
static char *memt_audit(const rig *g)
{
    int fd = open(g->audit, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return strdup("");
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && (n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 4096) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    close(fd);
    if (buf)
        buf[len] = '\0';
    return buf;
}

static size_t memt_count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

#define MEMT_REQ_EVENT "\"event\":\"request\""

/* Wait for the audit line of request number n (1-based) and copy it into out. */
static bool memt_audit_line(const rig *g, size_t n, char *out, size_t outsz)
{
    for (int i = 0; i < 300; i++) {
        _cleanup_free_ char *a = memt_audit(g);
        if (a && memt_count(a, MEMT_REQ_EVENT) >= n) {
            const char *p = a;
            for (size_t k = 0; k < n; k++)
                p = strstr(k ? p + 1 : p, MEMT_REQ_EVENT);
            const char *s = p, *e = strchr(p, '\n');
            while (s > a && s[-1] != '\n')
                s--;
            if (e) { /* else the line is still being written */
                snprintf(out, outsz, "%.*s", (int)(e - s), s);
                return true;
            }
        }
        usleep(10000);
    }
    return false;
}

/* k requests were sent directly (not through memt_request): wait for their audit lines. */
static void memt_note(const rig *g, size_t k)
{
    char line[16];
    memt_sent += k;
    if (!memt_audit_line(g, memt_sent, line, sizeof line))
        rc_test_fail(__FILE__, __LINE__, "no audit line for request %zu", memt_sent);
}

/* One request on a fresh connection. Returns its status; *ret_forwarded says whether the upstream
 * saw it, *ret_audit (when not NULL) receives its audit line. */
static int memt_request(const rig *g, const char *raw, bool *ret_forwarded, char *ret_audit,
                        size_t auditsz)
{
    static resp rs;
    size_t before = fixture_http_count(g->up);
    int st = one_request(g, raw, &rs);
    char line[4096];
    if (!memt_audit_line(g, ++memt_sent, line, sizeof line))
        line[0] = '\0';
    if (ret_audit)
        snprintf(ret_audit, auditsz, "%s", line);
    if (ret_forwarded)
        *ret_forwarded = fixture_http_count(g->up) > before;
    return st;
}

/* The request must be refused with 403 before reaching the upstream, for the given reason. */
static void memt_refused_at(const rig *g, const char *raw, const char *reason, int line)
{
    bool fwd = true;
    char audit[4096];
    int st = memt_request(g, raw, &fwd, audit, sizeof audit);
    char want[256];
    snprintf(want, sizeof want, "\"reason\":\"%s\"", reason ? reason : "");
    const char *l = strchr(raw, '\r');
    int rl = l ? (int)(l - raw) : (int)strlen(raw);
    if (st != 403 || fwd)
        rc_test_fail(__FILE__, line, "%.*s: status %d, forwarded %d (want 403, not forwarded)", rl,
                     raw, st, fwd);
    else if (reason && !strstr(audit, want))
        rc_test_fail(__FILE__, line, "%.*s: audit line %s lacks %s", rl, raw, audit, want);
    else if (!strstr(audit, "\"decision\":\"deny\""))
        rc_test_fail(__FILE__, line, "%.*s: audit line %s is no deny", rl, raw, audit);
}
#define MEMT_REFUSED(g, raw, reason) memt_refused_at((g), (raw), (reason), __LINE__)

/* The request must reach the upstream (which answers with the pushed answer), audited with its
 * route name. */
static void memt_allowed_at(const rig *g, const char *raw, int status, const char *route, int line)
{
    bool fwd = false;
    char audit[4096];
    fixture_http_push_simple(g->up, status, MEMT_JSON, status == 204 ? NULL : "{\"ok\":true}");
    int st = memt_request(g, raw, &fwd, audit, sizeof audit);
    char want[128];
    snprintf(want, sizeof want, "\"route\":\"%s\"", route);
    const char *l = strchr(raw, '\r');
    int rl = l ? (int)(l - raw) : (int)strlen(raw);
    if (st != status || !fwd)
        rc_test_fail(__FILE__, line, "%.*s: status %d, forwarded %d (want %d, forwarded)", rl, raw,
                     st, fwd, status);
    else if (!strstr(audit, want) || !strstr(audit, "\"decision\":\"allow\""))
        rc_test_fail(__FILE__, line, "%.*s: audit line %s lacks %s", rl, raw, audit, want);
}
#define MEMT_ALLOWED(g, raw, status, route) memt_allowed_at((g), (raw), (status), (route), __LINE__)

/* Relay a session answer (status 200 unless given) through GET /v1/sessions/{sid}; the runner
 * must get it byte for byte. */
static void memt_session_at(const rig *g, int status, const char *body, int line)
{
    static resp rs;
    fixture_http_push_simple(g->up, status, MEMT_JSON, body);
    int st = one_request(
        g, REQ("GET", S "?beta=true", "anthropic-beta: managed-agents-2026-04-01\r\n"), &rs);
    memt_note(g, 1);
    if (st != status)
        rc_test_fail(__FILE__, line, "session answer: status %d, want %d", st, status);
    else if (strlen(body) < sizeof rs.body &&
             (rs.body_len != strlen(body) || memcmp(rs.body, body, rs.body_len) != 0))
        rc_test_fail(__FILE__, line, "session answer not relayed intact (%zu bytes)", rs.body_len);
}
#define MEMT_SESSION(g, body)            memt_session_at((g), 200, (body), __LINE__)
#define MEMT_SESSION_STATUS(g, st, body) memt_session_at((g), (st), (body), __LINE__)

/* Shorthand: is GET .../memories of store forwarded (the upstream answers 200)? */
#define MEMT_LIST_OK(g, store)                                                                     \
    MEMT_ALLOWED((g), REQ("GET", MEMT_MEM(store), ""), 200, "memory_list")

TEST(memory_learnt_from_the_session_answer)
{
    rig g;
    if (!memt_rig_start(&g, 0, NULL, RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    /* Before any session answer: every memory path is refused, and nothing goes upstream. */
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), MEMT_BETA), MEMT_NOT_ENABLED);
    MEMT_REFUSED(&g, REQ("POST", MEMT_MEM("memstore_A1"), "Content-Length: 2\r\n") "{}",
                 MEMT_NOT_ENABLED);
    MEMT_REFUSED(&g, REQ("DELETE", MEMT_MEM("memstore_A1") "/mem_1", ""), MEMT_NOT_ENABLED);
    /* A non-200 session answer that names a store teaches nothing. */
    MEMT_SESSION_STATUS(&g, 404, MEMT_SESSION_A1);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_ENABLED);
    MEMT_SESSION_STATUS(&g, 500, MEMT_SESSION_A1);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_ENABLED);
    CHECK_INT(fixture_http_count(g.up), 2);

    /* The session answer: memstore_A1 is learnt before the runner holds the answer, so the next
     * request (another connection, at once) is allowed. */
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    size_t base = fixture_http_count(g.up);
    MEMT_ALLOWED(&g,
                 REQ("GET", MEMT_MEM("memstore_A1") "?view=full&limit=20&path_prefix=%2Fnotes%2F",
                     MEMT_BETA "anthropic-version: 2023-06-01\r\n"
                               "Authorization: Bearer runcell-broker-placeholder\r\n"),
                 200, "memory_list");
    MEMT_ALLOWED(&g, REQ("GET", MEMT_MEM("memstore_A1") "?view=basic&page=cGFnZTI", MEMT_BETA), 200,
                 "memory_list");
    MEMT_ALLOWED(&g,
                 REQ("POST", MEMT_MEM("memstore_A1"),
                     MEMT_BETA MEMT_JSON
                     "Content-Length: 40\r\n") "{\"path\":\"/a.md\",\"content\":\"hello there\"}",
                 200, "memory_create");
    MEMT_ALLOWED(&g, REQ("GET", MEMT_MEM("memstore_A1") "/mem_01x?view=full", MEMT_BETA), 200,
                 "memory_get");
    MEMT_ALLOWED(&g,
                 REQ("POST", MEMT_MEM("memstore_A1") "/mem_01x",
                     MEMT_BETA MEMT_JSON "Content-Length: 17\r\n") "{\"content\":\"bye\"}",
                 200, "memory_update");
    MEMT_ALLOWED(
        &g,
        REQ("DELETE", MEMT_MEM("memstore_A1") "/mem_01x?expected_content_sha256=ab12cd", MEMT_BETA),
        204, "memory_delete");
    /* What the upstream saw: the real token, the memory beta header, the body, the query. */
    REQUIRE(fixture_http_count(g.up) == base + 6);
    char v[256];
    const fixture_http_request *u = fixture_http_get(g.up, base);
    CHECK_STR(u->method, "GET");
    CHECK_STR(u->target, MEMT_MEM("memstore_A1") "?view=full&limit=20&path_prefix=%2Fnotes%2F");
    CHECK_STR(fixture_http_header(u, "authorization", v, sizeof v), "Bearer " TOKEN);
    CHECK_INT(fixture_http_header_count(u, "authorization"), 1);
    CHECK_STR(fixture_http_header(u, "anthropic-beta", v, sizeof v), "agent-memory-2026-07-22");
    CHECK_STR(fixture_http_header(u, "anthropic-version", v, sizeof v), "2023-06-01");
    u = fixture_http_get(g.up, base + 2);
    CHECK_STR(u->method, "POST");
    CHECK_MEM(u->body, u->body_len, "{\"path\":\"/a.md\",\"content\":\"hello there\"}", 40);
    CHECK_STR(fixture_http_header(u, "content-type", v, sizeof v), "application/json");
    CHECK_STR(fixture_http_header(u, "anthropic-beta", v, sizeof v), "agent-memory-2026-07-22");
    u = fixture_http_get(g.up, base + 4);
    CHECK_STR(u->target, MEMT_MEM("memstore_A1") "/mem_01x");
    CHECK_MEM(u->body, u->body_len, "{\"content\":\"bye\"}", 17);
    u = fixture_http_get(g.up, base + 5);
    CHECK_STR(u->method, "DELETE");
    CHECK_STR(u->target, MEMT_MEM("memstore_A1") "/mem_01x?expected_content_sha256=ab12cd");
    CHECK_INT(u->body_len, 0);

    /* Other stores, lookalikes and prefixes: refused, named as not this session's store. */
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_B2"), MEMT_BETA), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A"), ""), MEMT_NOT_LISTED);   /* prefix */
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_"), ""), MEMT_NOT_LISTED);    /* prefix */
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1x"), ""), MEMT_NOT_LISTED); /* longer */
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A10"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_a1"), ""), MEMT_NOT_LISTED); /* case */
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("MEMSTORE_A1"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("POST", MEMT_MEM("memstore_B2"), "Content-Length: 2\r\n") "{}",
                 MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("DELETE", MEMT_MEM("memstore_B2") "/mem_01x", ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM(SESS), ""), MEMT_NOT_LISTED); /* the session's own id */
    /* Encoded and traversal variants that would reach another store once decoded. */
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/memstore_A1%2F..%2Fmemstore_B2/memories", ""),
                 "percent-encoding is not allowed in the path");
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/memstore_A1%2fmemories", ""),
                 "percent-encoding is not allowed in the path");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1") "/%2e%2e%2f%2e%2e%2fmemstore_B2", ""),
                 "percent-encoding is not allowed in the path");
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/%6demstore_A1/memories", ""),
                 "percent-encoding is not allowed in the path");
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/memstore_A1/../memstore_B2/memories", ""),
                 "dot segment in the path");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1") "/../../memstore_B2/memories", ""),
                 "dot segment in the path");
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/memstore_B2/../memstore_A1/memories", ""),
                 "dot segment in the path");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1") "/./mem_1", ""), "dot segment in the path");
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores//memstore_A1/memories", ""),
                 "empty path segment ('//' or a trailing '/')");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1") "/", ""),
                 "empty path segment ('//' or a trailing '/')");
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/memstore_A1\\..\\memstore_B2/memories", ""),
                 "backslash in the path");
    /* Shapes the runner never needs, on the right store. */
    MEMT_REFUSED(&g, REQ("DELETE", MEMT_MEM("memstore_A1"), ""),
                 "method and path are not allowed through the API channel");
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/memstore_A1", ""),
                 "path is not allowed through the API channel");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1") "/mem_1/versions", ""),
                 "path is not allowed through the API channel");
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/memstore_A1/memory_versions", ""),
                 "path is not allowed through the API channel");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1") "?view=everything", ""),
                 "query parameter value is not allowed");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1") "?store=memstore_B2", ""),
                 "query parameter is not allowed on this path");
    /* PUT/PATCH never reach the matcher: 501 and not forwarded. */
    bool fwd = true;
    CHECK_INT(memt_request(&g, REQ("PATCH", MEMT_MEM("memstore_A1") "/mem_1", ""), &fwd, NULL, 0),
              501);
    CHECK(!fwd);
    /* The allowed store still works after all that. */
    MEMT_LIST_OK(&g, "memstore_A1");
    rc_apichan_stats st;
    rc_apichan_get_stats(g.ch, &st);
    CHECK(st.forbidden >= 30);
    _cleanup_free_ char *audit = memt_audit(&g);
    CHECK(audit && strstr(audit, TOKEN) == NULL);
    rig_stop(&g);
}

/* The stores are learnt before the answer's last byte (or chunked terminator) reaches the runner:
 * a memory request sent on another connection the moment the answer is read is never early. */
TEST(memory_learnt_before_the_answer_ends)
{
    rig g;
    if (!memt_rig_start(&g, 0, NULL, RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    static const char *const chunks[] = {MEMT_SESSION_A1, NULL};
    static resp rs;
    int early = 0;
    for (int i = 0; i < 20; i++) {
        if (i % 2)
            fixture_http_push(g.up, &(fixture_http_response){
                                        .status = 200, .headers = MEMT_JSON, .chunks = chunks});
        else
            fixture_http_push_simple(g.up, 200, MEMT_JSON, MEMT_SESSION_A1);
        fixture_http_push_simple(g.up, 200, MEMT_JSON, "{\"data\":[]}");
        int fd1 = client_connect(g.sock), fd2 = client_connect(g.sock);
        REQUIRE(fd1 >= 0 && fd2 >= 0);
        reader *r1 = reader_new(fd1), *r2 = reader_new(fd2);
        REQUIRE(r1 && r2);
        CHECK(client_send(fd1, REQ("GET", S, "")));
        CHECK(read_response(r1, &rs) && rs.status == 200);
        CHECK(client_send(fd2, REQ("GET", MEMT_MEM("memstore_A1"), MEMT_BETA)));
        if (!read_response(r2, &rs) || rs.status != 200)
            early++;
        free(r1);
        free(r2);
        close(fd1);
        close(fd2);
        memt_note(&g, 2);
        /* Forget the stores again for the next round (an answer without memory). */
        MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":[]}");
    }
    CHECK_INT(early, 0);
    rig_stop(&g);
}

TEST(memory_learning_follows_the_latest_session_answer)
{
    rig g;
    if (!memt_rig_start(&g, 0, NULL, RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    /* Two stores, from a chunked answer (learnt before its terminator reaches the runner). */
    static const char *const chunks[] = {
        MEMT_SESSION_HEAD "\"resources\":[{\"type\":\"memory_store\",\"memory_store_id\":",
        "\"memstore_A1\"},{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_B2\","
        "\"access\":\"read_only\"}]}",
        NULL};
    fixture_http_push(
        g.up, &(fixture_http_response){.status = 200, .headers = MEMT_JSON, .chunks = chunks});
    static resp rs;
    CHECK_INT(one_request(&g, REQ("GET", S, ""), &rs), 200);
    memt_note(&g, 1);
    CHECK(rs.chunked);
    MEMT_LIST_OK(&g, "memstore_A1");
    MEMT_LIST_OK(&g, "memstore_B2");
    /* On the same keep-alive connection: session, then memory at once. */
    fixture_http_push_simple(g.up, 200, MEMT_JSON, MEMT_SESSION_A1);
    fixture_http_push_simple(g.up, 200, MEMT_JSON, "{\"data\":[]}");
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    reader *r = reader_new(fd);
    REQUIRE(r);
    CHECK(client_send(fd, REQ("GET", S, "") REQ("GET", MEMT_MEM("memstore_A1"), MEMT_BETA)
                              REQ("GET", MEMT_MEM("memstore_B2"), MEMT_BETA)));
    CHECK(read_response(r, &rs) && rs.status == 200);
    CHECK(read_response(r, &rs) && rs.status == 200);
    CHECK_STR(rs.body, "{\"data\":[]}");
    /* The latest answer replaced the list: memstore_B2 is gone. */
    CHECK(read_response(r, &rs) && rs.status == 403);
    free(r);
    close(fd);
    memt_note(&g, 3);
    /* An answer for another session, or an unreadable one, changes nothing. */
    MEMT_SESSION(&g, "{\"id\":\"sesn_OTHER\",\"type\":\"session\",\"resources\":[{\"type\":"
                     "\"memory_store\",\"memory_store_id\":\"memstore_B2\"}]}");
    MEMT_SESSION(&g, "{\"type\":\"session\",\"resources\":[{\"type\":\"memory_store\","
                     "\"memory_store_id\":\"memstore_B2\"}]}");
    MEMT_SESSION(&g, "{\"id\":\"" SESS "\",\"resources\":[{\"type\":\"memory_store\","
                     "\"memory_store_id\":\"memstore_B2\"}");
    MEMT_SESSION(&g, "not json at all");
    MEMT_SESSION(&g, "");
    MEMT_LIST_OK(&g, "memstore_A1");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_B2"), ""), MEMT_NOT_LISTED);
    /* A session with no memory store left: nothing is allowed any more. */
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":[]}");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_LISTED);
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    MEMT_LIST_OK(&g, "memstore_A1");
    rig_stop(&g);
}

/* Every hostile entry is skipped; the one good entry of the same answer is learnt. */
#define MEMT_HOSTILE_ENTRIES                                                                       \
    "{\"type\":\"memory_store\",\"memory_store_id\":123},"                                         \
    "{\"type\":\"memory_store\",\"memory_store_id\":1.5e3},"                                       \
    "{\"type\":\"memory_store\",\"memory_store_id\":null},"                                        \
    "{\"type\":\"memory_store\",\"memory_store_id\":true},"                                        \
    "{\"type\":\"memory_store\",\"memory_store_id\":[\"memstore_C3\"]},"                           \
    "{\"type\":\"memory_store\",\"memory_store_id\":{\"id\":\"memstore_C3\"}},"                    \
    "{\"type\":\"memory_store\"},"                                                                 \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"\"},"                                        \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_C3/memories\"},"                    \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_C3/../memstore_D4\"},"              \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"..\"},"                                      \
    "{\"type\":\"memory_store\",\"memory_store_id\":\".\"},"                                       \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_C3%2Fx\"},"                         \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore C3\"},"                             \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_C3\\n\"},"                          \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_C3?view=full\"},"                   \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_\\u00e9\"},"                        \
    "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_C3.x\"},"                           \
    "{\"type\":\"Memory_Store\",\"memory_store_id\":\"memstore_E5\"},"                             \
    "{\"type\":\"memory_store \",\"memory_store_id\":\"memstore_E5\"},"                            \
    "{\"type\":7,\"memory_store_id\":\"memstore_E5\"},"                                            \
    "{\"memory_store_id\":\"memstore_E5\"},"                                                       \
    "{\"type\":\"file\",\"memory_store_id\":\"memstore_E5\"},"                                     \
    "{\"type\":[\"memory_store\"],\"memory_store_id\":\"memstore_E5\"},"                           \
    "\"memstore_E5\",17,null,true,[],[{\"type\":\"memory_store\",\"memory_store_id\":"             \
    "\"memstore_E5\"}],"                                                                           \
    "{\"resources\":[{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_E5\"}]},"

TEST(memory_learning_survives_hostile_session_answers)
{
    rig g;
    if (!memt_rig_start(&g, 0, NULL, RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    /* resources of the wrong type: a readable session answer without a resources array teaches
     * nothing (memory stays off). */
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":{\"type\":\"memory_store\","
                                       "\"memory_store_id\":\"memstore_A1\"}}");
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":\"memstore_A1\"}");
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":null}");
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":7}");
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"memory_store_id\":\"memstore_A1\"}");
    MEMT_SESSION(&g, "[" MEMT_SESSION_A1 "]");
    MEMT_SESSION(&g, "\"memstore_A1\"");
    MEMT_SESSION(&g, "{\"id\":7,\"resources\":[{\"type\":\"memory_store\","
                     "\"memory_store_id\":\"memstore_A1\"}]}");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_ENABLED);

    /* Hostile entries next to one good one: only the good one is learnt. */
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":[" MEMT_HOSTILE_ENTRIES
                                       "{\"type\":\"memory_store\","
                                       "\"memory_store_id\":\"memstore_OK9\"}]}");
    MEMT_LIST_OK(&g, "memstore_OK9");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_C3"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_D4"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_E5"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("123"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("1500"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("null"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("true"), ""), MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", "/v1/memory_stores/memstore_C3/memories/memories", ""),
                 MEMT_NOT_LISTED);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_C3.x"), ""), MEMT_NOT_LISTED); /* not an id */
    /* An id at the cap is learnt; one past it is not. */
    char okid[RC_APICHAN_ID_MAX + 1], longid[RC_APICHAN_ID_MAX + 2];
    memset(okid, 'k', sizeof okid - 1);
    okid[sizeof okid - 1] = '\0';
    memset(longid, 'l', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    char body[1024], req[1024];
    snprintf(body, sizeof body,
             MEMT_SESSION_HEAD "\"resources\":[{\"type\":\"memory_store\",\"memory_store_id\":"
                               "\"%s\"},{\"type\":\"memory_store\",\"memory_store_id\":\"%s\"}]}",
             okid, longid);
    MEMT_SESSION(&g, body);
    snprintf(req, sizeof req, REQ("GET", "/v1/memory_stores/%s/memories", ""), okid);
    MEMT_ALLOWED(&g, req, 200, "memory_list");
    snprintf(req, sizeof req, REQ("GET", "/v1/memory_stores/%s/memories", ""), longid);
    MEMT_REFUSED(&g, req, NULL); /* refused (too long to be any id): the reason is the matcher's */
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_OK9"), ""), MEMT_NOT_LISTED); /* replaced */

    /* Unreadable answers change nothing: "\u0000" in an id, duplicate keys, nesting past the
     * parser's depth, trailing garbage. */
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":[{\"type\":\"memory_store\","
                                       "\"memory_store_id\":\"memstore_B2\\u0000x\"}]}");
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":[{\"type\":\"memory_store\","
                                       "\"memory_store_id\":\"memstore_A1\","
                                       "\"memory_store_id\":\"memstore_B2\"}]}");
    MEMT_SESSION(&g, "{\"id\":\"" SESS "\",\"id\":\"" SESS "\",\"resources\":[]}");
    char deep[4096];
    int n = snprintf(deep, sizeof deep, MEMT_SESSION_HEAD "\"resources\":[");
    for (int i = 0; i < 200; i++)
        deep[n++] = '[';
    for (int i = 0; i < 200; i++)
        deep[n++] = ']';
    snprintf(deep + n, sizeof deep - (size_t)n, "]}");
    MEMT_SESSION(&g, deep);
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":[]} {\"resources\":[]}");
    MEMT_LIST_OK(&g, "memstore_A1");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_B2"), ""), MEMT_NOT_LISTED);
    rig_stop(&g);
}

/* Send raw on a fresh connection and read the answer without keeping it: status and body size. */
static int memt_drain(const rig *g, const char *raw, size_t *ret_body)
{
    int fd = client_connect(g->sock);
    if (fd < 0)
        return 0;
    client_send(fd, raw);
    static char buf[1 << 16];
    size_t have = 0, body = 0, head = 0, cl = SIZE_MAX;
    int status = 0;
    ssize_t k;
    while ((k = recv(fd, buf + have, sizeof buf - 1 - have, 0)) > 0) {
        if (head == 0) {
            have += (size_t)k;
            buf[have] = '\0';
            char *e = strstr(buf, "\r\n\r\n");
            if (!e) {
                if (have >= sizeof buf - 1)
                    break;
                continue;
            }
            head = (size_t)(e - buf) + 4;
            status = (int)strtol(buf + 9, NULL, 10);
            char *clh = strcasestr(buf, "\r\ncontent-length:");
            if (clh && clh < e)
                cl = strtoull(clh + 17, NULL, 10);
            body = have - head;
            have = 0;
        } else {
            body += (size_t)k;
        }
        if (cl != SIZE_MAX && body >= cl)
            break;
    }
    close(fd);
    memt_note(g, 1);
    *ret_body = body;
    return status;
}

TEST(memory_learning_huge_session_answers)
{
    rig g;
    if (!memt_rig_start(&g, 0, NULL, RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    /* Over the 4 MiB the channel reads: relayed whole, learnt nothing (the list stays). */
    const char *entry = "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_B2\"},";
    size_t el = strlen(entry), count = (5u << 20) / el;
    size_t cap = count * el + 256;
    _cleanup_free_ char *big = malloc(cap);
    REQUIRE(big);
    size_t n = (size_t)snprintf(big, cap, MEMT_SESSION_HEAD "\"resources\":[");
    for (size_t i = 0; i < count; i++, n += el)
        memcpy(big + n, entry, el);
    n--; /* the last ',' */
    n += (size_t)snprintf(big + n, cap - n, "]}");
    fixture_http_push(g.up, &(fixture_http_response){
                                .status = 200, .headers = MEMT_JSON, .body = big, .body_len = n});
    size_t got = 0;
    CHECK_INT(memt_drain(&g, REQ("GET", S, ""), &got), 200);
    CHECK_INT(got, n);
    MEMT_LIST_OK(&g, "memstore_A1");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_B2"), ""), MEMT_NOT_LISTED);
    /* The same, chunked (no length known up front). */
    static const char *chunked[3];
    big[n] = '\0';
    size_t half = n / 2;
    char saved = big[half];
    _cleanup_free_ char *second = strdup(big + half);
    REQUIRE(second);
    big[half] = '\0';
    chunked[0] = big;
    chunked[1] = second;
    chunked[2] = NULL;
    fixture_http_push(
        g.up, &(fixture_http_response){.status = 200, .headers = MEMT_JSON, .chunks = chunked});
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    client_send(fd, REQ("GET", S, ""));
    /* Read to the terminating chunk. */
    static char tail[1 << 16];
    size_t tl = 0;
    ssize_t k;
    bool done = false;
    while (!done && (k = recv(fd, tail + tl, sizeof tail - 1 - tl, 0)) > 0) {
        tl += (size_t)k;
        tail[tl] = '\0';
        done = tl >= 7 && strstr(tail + (tl > 64 ? tl - 64 : 0), "\r\n0\r\n\r\n") != NULL;
        if (tl > sizeof tail / 2) {
            memmove(tail, tail + tl - 64, 64);
            tl = 64;
        }
    }
    close(fd);
    memt_note(&g, 1);
    CHECK(done);
    big[half] = saved;
    MEMT_LIST_OK(&g, "memstore_A1");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_B2"), ""), MEMT_NOT_LISTED);
    /* A big array of junk under the cap (hundreds of thousands of elements): readable, learns
     * nothing, the channel stays up. */
    size_t junk = 600000;
    n = (size_t)snprintf(big, cap, MEMT_SESSION_HEAD "\"resources\":[");
    for (size_t i = 0; i < junk; i++) {
        big[n++] = '0';
        big[n++] = ',';
    }
    n += (size_t)snprintf(big + n, cap - n,
                          "{\"type\":\"memory_store\",\"memory_store_id\":\"memstore_C3\"}]}");
    fixture_http_push(g.up, &(fixture_http_response){
                                .status = 200, .headers = MEMT_JSON, .body = big, .body_len = n});
    int64_t t0 = mono_ms();
    CHECK_INT(memt_drain(&g, REQ("GET", S, ""), &got), 200);
    CHECK_INT(got, n);
    printf("# %zu-element resources relayed and read in %lld ms\n", junk + 1,
           (long long)(mono_ms() - t0));
    MEMT_LIST_OK(&g, "memstore_C3");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_LISTED);
    rig_stop(&g);
}

TEST(memory_explicit_list_and_no_learning_flag)
{
    static const char *const stores[] = {"memstore_X7", NULL};
    rig g;
    /* An explicit list: those stores from the start, and the session answer changes nothing. */
    if (!memt_rig_start(&g, RC_APICHAN_ALLOW_MEMORY, stores, RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    MEMT_LIST_OK(&g, "memstore_X7");
    MEMT_ALLOWED(&g, REQ("DELETE", MEMT_MEM("memstore_X7") "/mem_1", MEMT_BETA), 204,
                 "memory_delete");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_LISTED);
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_LISTED);
    MEMT_LIST_OK(&g, "memstore_X7");
    MEMT_SESSION(&g, MEMT_SESSION_HEAD "\"resources\":[]}");
    MEMT_LIST_OK(&g, "memstore_X7");
    rig_stop(&g);

    /* Memory enabled with an empty list: nothing, before or after the session answer. */
    if (!memt_rig_start(&g, RC_APICHAN_ALLOW_MEMORY, NULL, RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_LISTED);
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_LISTED);
    rig_stop(&g);

    /* No learning: memory stays off. */
    if (!memt_rig_start(&g, RC_APICHAN_NO_MEMORY_LEARNING, NULL, RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), MEMT_BETA), MEMT_NOT_ENABLED);
    MEMT_REFUSED(&g, REQ("POST", MEMT_MEM("memstore_A1"), "Content-Length: 2\r\n") "{}",
                 MEMT_NOT_ENABLED);
    rig_stop(&g);

    /* Both flags: the explicit list wins, still no learning. */
    if (!memt_rig_start(&g, RC_APICHAN_ALLOW_MEMORY | RC_APICHAN_NO_MEMORY_LEARNING, stores,
                        RC_APICHAN_CRED_SESSIONS_TOKEN)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    MEMT_LIST_OK(&g, "memstore_X7");
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_LISTED);
    rig_stop(&g);

    /* An explicit store id that is no id is refused at construction. */
    static const char *const bad[] = {"memstore_X7", "memstore_../x", NULL};
    rc_apichan_config c = {.socket_path = "/tmp/rc-apichan-cfg-never.sock",
                           .allowed_uid = geteuid(),
                           .socket_gid = (gid_t)-1,
                           .base_url = "https://api.anthropic.com",
                           .scope = scope,
                           .credential = TOKEN,
                           .credential_kind = RC_APICHAN_CRED_SESSIONS_TOKEN,
                           .audit_fd = -1};
    c.scope.features = RC_APICHAN_ALLOW_MEMORY;
    c.scope.memory_store_ids = bad;
    rc_apichan *ch = NULL;
    rc_error err = {0};
    CHECK_INT(rc_apichan_new(&c, &ch, &err), -RC_EINVAL);
    CHECK(strstr(err.msg, "memory store") != NULL);
    CHECK(ch == NULL);
}

TEST(memory_environment_key_channel_learns_nothing)
{
    rig g;
    if (!memt_rig_start(&g, 0, NULL, RC_APICHAN_CRED_ENVIRONMENT_KEY)) {
        rig_stop(&g);
        SKIP("cannot start the channel");
    }
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), ""), MEMT_NOT_ENABLED);
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    MEMT_SESSION(&g, MEMT_SESSION_A1);
    MEMT_REFUSED(&g, REQ("GET", MEMT_MEM("memstore_A1"), MEMT_BETA), MEMT_NOT_ENABLED);
    MEMT_REFUSED(&g, REQ("POST", MEMT_MEM("memstore_A1"), "Content-Length: 2\r\n") "{}",
                 MEMT_NOT_ENABLED);
    MEMT_REFUSED(&g, REQ("DELETE", MEMT_MEM("memstore_A1") "/mem_1", ""), MEMT_NOT_ENABLED);
    /* The rest of the channel works as before. */
    fixture_http_push_simple(g.up, 200, MEMT_JSON, "{\"data\":[]}");
    static resp rs;
    CHECK_INT(one_request(&g, REQ("GET", S "/events", ""), &rs), 200);
    memt_note(&g, 1);
    CHECK_INT(fixture_http_count(g.up), 3);
    rig_stop(&g);
}

/* ---- the local route: running tool calls (issue 11) ------------------------------------------ */

static int calls_parse(const char *body, rc_audit_call_ids *ids)
{
    rc_error err = {0};
    int r = rc_apichan_running_calls_parse(body, strlen(body), ids, &err);
    if (r < 0)
        CHECK(strstr(err.msg, "toolu_secret") == NULL); /* the input is never echoed */
    return r;
}

TEST(running_calls_parse)
{
    static rc_audit_call_ids ids;
    static char body[16384], id128[129];

    CHECK_INT(calls_parse("{\"ids\":[]}", &ids), 0);
    CHECK_INT((int)ids.n, 0);
    CHECK_INT(calls_parse("{\"ids\":[\"toolu_01AbC-x\"]}", &ids), 0);
    REQUIRE(ids.n == 1);
    CHECK_STR(ids.ids[0], "toolu_01AbC-x");
    CHECK_INT(calls_parse(" {\"ids\" : [\"a\", \"sevt_2\"]} ", &ids), 0);
    CHECK_INT((int)ids.n, 2);
    CHECK_STR(ids.ids[1], "sevt_2");
    memset(id128, 'a', 128);
    snprintf(body, sizeof body, "{\"ids\":[\"%s\"]}", id128);
    CHECK_INT(calls_parse(body, &ids), 0);
    CHECK_INT((int)strlen(ids.ids[0]), 128);
    /* 32 ids are fine, 33 are not. */
    size_t o = (size_t)snprintf(body, sizeof body, "{\"ids\":[");
    for (int i = 0; i < 32; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s\"toolu_%d\"", i ? "," : "", i);
    snprintf(body + o, sizeof body - o, "]}");
    CHECK_INT(calls_parse(body, &ids), 0);
    CHECK_INT((int)ids.n, 32);
    snprintf(body + o, sizeof body - o, ",\"toolu_32\"]}");
    CHECK_INT(calls_parse(body, &ids), -RC_EPARSE);

    static const char *const bad_bodies[] = {
        "",
        "null",
        "[]",
        "{}",
        "\"ids\"",
        "{\"ids\":null}",
        "{\"ids\":{}}",
        "{\"ids\":\"toolu_1\"}",
        "{\"ids\":[1]}",
        "{\"ids\":[null]}",
        "{\"ids\":[[\"toolu_1\"]]}",
        "{\"ids\":[\"\"]}",
        "{\"ids\":[\"toolu_secret 1\"]}",
        "{\"ids\":[\"toolu_secret/..\"]}",
        "{\"ids\":[\"toolu_secret\\u0000\"]}",
        "{\"ids\":[\"toolu_secret\\n\"]}",
        "{\"ids\":[\"toolu_secr\xc3\xa9t\"]}",
        "{\"ids\":[\"toolu_secret\",\"toolu_secret\"]}",
        "{\"ids\":[],\"ids\":[]}",
        "{\"ids\":[],\"more\":1}",
        "{\"IDS\":[]}",
        "{\"ids\":[]} x",
        "{\"ids\":[],}",
        "{'ids':[]}",
    };
    for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++) {
        ids.n = 7;
        int r = calls_parse(bad_bodies[i], &ids);
        if (r != -RC_EPARSE)
            printf("# bad_bodies[%zu] gave %d\n", i, r);
        CHECK_INT(r, -RC_EPARSE);
        CHECK_INT((int)ids.n, 7); /* not written on failure */
    }
    snprintf(body, sizeof body, "{\"ids\":[\"%sa\"]}", id128); /* 129 characters */
    CHECK_INT(calls_parse(body, &ids), -RC_EPARSE);
    memset(body, ' ', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    CHECK_INT(calls_parse(body, &ids), -RC_ETOOBIG);
    CHECK(rc_apichan_is_running_calls_target("/_runcell/v1/running-tool-calls"));
    CHECK(!rc_apichan_is_running_calls_target("/_runcell/v1/running-tool-calls?x=1"));
    CHECK(!rc_apichan_is_running_calls_target("/_runcell/v1/running-tool-calls/"));
    CHECK(!rc_apichan_is_running_calls_target(NULL));
}

#define RC_PATH "/_runcell/v1/running-tool-calls"
#define PUT_CALLS(body)                                                                            \
    "PUT " RC_PATH " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"            \
    "Content-Length: " body

static void calls_now(rc_audit_calls *set, rc_audit_call_ids *ids)
{
    rc_audit_calls_get(set, ids);
}

TEST(server_running_calls_route)
{
    rc_audit_calls *set = NULL;
    static rc_audit_call_ids ids;
    static resp rs;
    rig g;

    REQUIRE(rc_audit_calls_new(&set, NULL) == 0);
    rc_apichan_config over = {.allowed_uid = geteuid(), .running_calls = set};
    if (!rig_start(&g, &over)) {
        rig_stop(&g);
        rc_audit_calls_free(set);
        SKIP("cannot start the channel");
    }
    CHECK_INT(one_request(&g, PUT_CALLS("31\r\n\r\n{\"ids\":[\"toolu_a\",\"toolu_b-2\"]}"), &rs),
              204);
    calls_now(set, &ids);
    REQUIRE(ids.n == 2);
    CHECK_STR(ids.ids[0], "toolu_a");
    CHECK_STR(ids.ids[1], "toolu_b-2");
    /* Refused bodies leave the set as it was. */
    CHECK_INT(one_request(&g, PUT_CALLS("20\r\n\r\n{\"ids\":[\"bad id!!\"]}"), &rs), 400);
    CHECK_INT(one_request(&g, PUT_CALLS("2\r\n\r\n{}"), &rs), 400);
    CHECK_INT(one_request(&g, PUT_CALLS("0\r\n\r\n"), &rs), 400);
    CHECK_INT(one_request(&g, PUT_CALLS("9000\r\n\r\n"), &rs), 413);
    calls_now(set, &ids);
    CHECK_INT((int)ids.n, 2);
    /* Another method, chunked framing, a query: refused; nothing goes upstream. */
    CHECK_INT(one_request(&g, REQ("GET", RC_PATH, ""), &rs), 405);
    CHECK_INT(one_request(&g, REQ("POST", RC_PATH, "Content-Length: 10\r\n"), &rs), 405);
    CHECK_INT(one_request(&g,
                          "PUT " RC_PATH " HTTP/1.1\r\nHost: localhost\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                          &rs),
              411);
    CHECK_INT(one_request(&g, REQ("GET", RC_PATH "?x=1", ""), &rs), 403);
    CHECK_INT(one_request(&g, REQ("PUT", S, "Content-Length: 0\r\n"), &rs), 501);
    /* Emptied again, and a keep-alive connection serves a normal request after it. */
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    reader *r = reader_new(fd);
    REQUIRE(r != NULL);
    fixture_http_push_simple(g.up, 200, "Content-Type: application/json\r\n", "{}");
    CHECK(client_send(fd, PUT_CALLS("10\r\n\r\n{\"ids\":[]}") REQ("GET", S, "")));
    CHECK(read_response(r, &rs) && rs.status == 204);
    CHECK(read_response(r, &rs) && rs.status == 200);
    free(r);
    close(fd);
    calls_now(set, &ids);
    CHECK_INT((int)ids.n, 0);
    CHECK_INT(fixture_http_count(g.up), 1); /* only the GET of the session */
    CHECK(rig_audit_has(&g, "\"route\":\"running_tool_calls\""));
    CHECK(strstr(rig_audit(&g), "bad id") == NULL);
    rig_stop(&g);
    rc_audit_calls_free(set);
}

TEST(server_running_calls_other_uid_refused)
{
    if (geteuid() != 0)
        SKIP("needs root to give the socket to another uid");
    rc_audit_calls *set = NULL;
    static rc_audit_call_ids ids;
    rig g;
    REQUIRE(rc_audit_calls_new(&set, NULL) == 0);
    rc_apichan_config over = {.allowed_uid = 65534, .running_calls = set};
    if (!rig_start(&g, &over)) {
        rig_stop(&g);
        rc_audit_calls_free(set);
        SKIP("cannot start the channel");
    }
    int fd = client_connect(g.sock);
    REQUIRE(fd >= 0);
    client_send(fd, PUT_CALLS("22\r\n\r\n{\"ids\":[\"toolu_evil\"]}"));
    char b[64];
    CHECK(recv(fd, b, sizeof b, 0) <= 0);
    close(fd);
    calls_now(set, &ids);
    CHECK_INT((int)ids.n, 0);
    CHECK(rig_audit_has(&g, "\"event\":\"peer_refused\""));
    rig_stop(&g);
    rc_audit_calls_free(set);
}
