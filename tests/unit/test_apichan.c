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
