/* test_egress_request.c - the egress proxy's request-side parsers (broker/httpreq.c: request
 * heads, body framing, hop-by-hop headers) and its audit line format (broker/audit.c). */
#include "harness.h"

#include "audit.h"
#include "cleanup.h"
#include "httpreq.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Parse a whole head; returns 1/0/negative as rc_httpreq_parse and the status in *status. */
static int parse(const char *head, rc_httpreq *r, int *status, rc_error *err)
{
    *status = 0;
    return rc_httpreq_parse(head, strlen(head), r, status, err);
}

TEST(connect_head)
{
    rc_httpreq r;
    int st;
    REQUIRE(parse("CONNECT API.Example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n"
                  "User-Agent: t\r\n\r\nTLSDATA",
                  &r, &st, NULL) == 1);
    CHECK_INT(r.form, RC_HTTPREQ_CONNECT);
    CHECK_STR(r.method, "CONNECT");
    CHECK_STR(r.host, "api.example.com");
    CHECK_INT(r.port, 443);
    CHECK(!r.host_is_ip);
    CHECK_INT(r.n_headers, 2);
    CHECK_INT(r.head_len, strlen("CONNECT API.Example.com:443 HTTP/1.1\r\nHost: "
                                 "api.example.com:443\r\nUser-Agent: t\r\n\r\n"));
    rc_httpreq_free(&r);

    REQUIRE(parse("CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n", &r, &st, NULL) == 1);
    CHECK_STR(r.host, "2001:db8::1");
    CHECK(r.host_is_ip);
    CHECK_INT(r.port, 8443);
    rc_httpreq_free(&r);
}

TEST(absolute_head)
{
    rc_httpreq r;
    const rc_policy_kv *h;
    int st;
    REQUIRE(parse("POST http://api.test/v1/x?a=1&b=2 HTTP/1.1\r\nHost: API.test:80\r\n"
                  "Content-Length: 5\r\nX-A:  spaced value \t\r\n\r\n",
                  &r, &st, NULL) == 1);
    CHECK_INT(r.form, RC_HTTPREQ_ABSOLUTE);
    CHECK_STR(r.host, "api.test");
    CHECK_INT(r.port, 80);
    CHECK(!r.port_explicit);
    CHECK_MEM(r.path, r.path_len, "/v1/x", 5);
    CHECK_MEM(r.query, r.query_len, "a=1&b=2", 7);
    CHECK_INT(r.body, RC_HTTPREQ_BODY_LENGTH);
    CHECK_INT(r.content_length, 5);
    h = rc_httpreq_header(&r, "x-a");
    REQUIRE(h);
    CHECK_MEM(h->value, h->value_len, "spaced value", 12);
    rc_httpreq_free(&r);

    REQUIRE(parse("GET http://api.test:8080 HTTP/1.0\r\n\r\n", &r, &st, NULL) == 1);
    CHECK_MEM(r.path, r.path_len, "/", 1);
    CHECK(r.query == NULL);
    CHECK_INT(r.port, 8080);
    CHECK(r.port_explicit);
    CHECK_INT(r.version_minor, 0);
    CHECK_INT(r.body, RC_HTTPREQ_BODY_NONE);
    rc_httpreq_free(&r);

    REQUIRE(parse("GET http://api.test?x HTTP/1.1\r\nHost: api.test\r\n\r\n", &r, &st, NULL) == 1);
    CHECK_MEM(r.path, r.path_len, "/", 1);
    CHECK_MEM(r.query, r.query_len, "x", 1);
    rc_httpreq_free(&r);

    REQUIRE(
        parse(
            "PUT http://api.test/ HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: Chunked\r\n\r\n",
            &r, &st, NULL) == 1);
    CHECK_INT(r.body, RC_HTTPREQ_BODY_CHUNKED);
    rc_httpreq_free(&r);
}

TEST(incomplete_head)
{
    rc_httpreq r;
    int st;
    CHECK_INT(parse("GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n", &r, &st, NULL), 0);
    CHECK_INT(parse("", &r, &st, NULL), 0);
    CHECK_INT(parse("GET http://api.test/ HTTP/1.1\r", &r, &st, NULL), 0);
}

TEST(refused_heads)
{
    static const struct {
        const char *head;
        int status;
    } cases[] = {
        {"GET /relative HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\n\r\n", 400}, /* HTTP/1.1 without Host */
        {"GET https://api.test/ HTTP/1.1\r\n\r\n", 400},
        {"GET ftp://api.test/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/2.0\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1 \r\n\r\n", 400},
        {"GET  http://api.test/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/\r\n\r\n", 400},
        {"G(T http://api.test/ HTTP/1.1\r\n\r\n", 400},
        {"GETGETGETGETGETGETGETGETGETGETGETG http://api.test/ HTTP/1.1\r\n\r\n", 400},
        {"\r\nGET http://api.test/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\nHost: a\n\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\nHost: api.test\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\nBad Name: a\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\n: a\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\nHost: api.test:81\r\n\r\n", 400},
        {"GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\nHost: api.test\r\n\r\n", 400},
        {"GET http://user:pw@api.test/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/#frag HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test:0/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test:65536/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test:080/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test:/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api_x.test/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://127.1/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://0x7f000001/ HTTP/1.1\r\n\r\n", 400},
        {"GET http:/// HTTP/1.1\r\n\r\n", 400},
        {"GET http://[::1/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://[api.test]/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/a/../b HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/a/%2e%2e/b HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/a%2Fb HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test//a HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/a\\b HTTP/1.1\r\n\r\n", 400},
        {"GET http://api.test/?a=\x7f HTTP/1.1\r\n\r\n", 400},
        {"CONNECT api.test HTTP/1.1\r\n\r\n", 400},
        {"CONNECT api.test:443 HTTP/1.1\r\nContent-Length: 2\r\n\r\n", 400},
        {"CONNECT http://api.test/ HTTP/1.1\r\n\r\n", 400},
        {"TRACE http://api.test/ HTTP/1.1\r\n\r\n", 405},
        {"TRaCE http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n", 405}, /* any case */
        {"track http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n", 405},
        {"TRACK http://api.test/ HTTP/1.1\r\n\r\n", 405},
        {"POST http://api.test/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400},
        {"POST http://api.test/ HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 400},
        {"POST http://api.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST http://api.test/ HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400},
        {"POST http://api.test/ HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n", 400},
        {"POST http://api.test/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: "
         "chunked\r\n\r\n",
         400},
        {"POST http://api.test/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST http://api.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         400},
        {"POST http://api.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc_httpreq r;
        rc_error err = {0};
        int st = 0, rc = parse(cases[i].head, &r, &st, &err);
        if (rc >= 0) {
            rc_test_fail(__FILE__, __LINE__, "case %zu accepted (%d)", i, rc);
            if (rc == 1)
                rc_httpreq_free(&r);
        } else if (st != cases[i].status) {
            rc_test_fail(__FILE__, __LINE__, "case %zu: status %d, want %d (%s)", i, st,
                         cases[i].status, err.msg);
        } else if (!err.msg[0]) {
            rc_test_fail(__FILE__, __LINE__, "case %zu: no reason", i);
        }
    }
}

TEST(head_caps)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(1 << 20);
    rc_httpreq r;
    int st;

    /* no end of head within 16 KiB */
    REQUIRE(rc_buf_append_str(&b, "GET http://api.test/ HTTP/1.1\r\nX: ", NULL) == 0);
    while (b.len < RC_HTTPREQ_HEAD_MAX + 10)
        REQUIRE(rc_buf_putc(&b, 'a', NULL) == 0);
    st = 0;
    CHECK(rc_httpreq_parse(b.data, b.len, &r, &st, NULL) < 0);
    CHECK_INT(st, 431);

    /* too many header fields */
    rc_buf_reset(&b);
    REQUIRE(rc_buf_append_str(&b, "GET http://api.test/ HTTP/1.1\r\n", NULL) == 0);
    for (unsigned i = 0; i <= RC_HTTPREQ_HEADERS_MAX; i++)
        REQUIRE(rc_buf_appendf(&b, NULL, "X-%u: v\r\n", i) == 0);
    REQUIRE(rc_buf_append_str(&b, "\r\n", NULL) == 0);
    st = 0;
    CHECK(rc_httpreq_parse(b.data, b.len, &r, &st, NULL) < 0);
    CHECK_INT(st, 431);

    /* a NUL byte anywhere in the head */
    st = 0;
    CHECK(rc_httpreq_parse("GET http://a.test/ HTTP/1.1\r\nX: a\0b\r\n\r\n", 39, &r, &st, NULL) <
          0);
    CHECK_INT(st, 400);
}

TEST(hop_by_hop_headers)
{
    rc_httpreq r;
    int st;
    REQUIRE(parse("GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\nConnection: keep-alive, "
                  "X-Secret-Hop\r\n"
                  "X-Secret-Hop: 1\r\nProxy-Authorization: Basic x\r\nUpgrade: h2c\r\n"
                  "TE: trailers\r\nX-Keep: 1\r\n\r\n",
                  &r, &st, NULL) == 1);
    CHECK(rc_httpreq_is_hop_header(&r, "Connection", 10));
    CHECK(rc_httpreq_is_hop_header(&r, "x-secret-hop", 12));
    CHECK(rc_httpreq_is_hop_header(&r, "Proxy-Authorization", 19));
    CHECK(rc_httpreq_is_hop_header(&r, "upgrade", 7));
    CHECK(rc_httpreq_is_hop_header(&r, "TE", 2));
    CHECK(rc_httpreq_is_hop_header(&r, "Keep-Alive", 10));
    CHECK(!rc_httpreq_is_hop_header(&r, "X-Keep", 6));
    CHECK(!rc_httpreq_is_hop_header(&r, "Transfer-Encoding", 17));
    CHECK(!rc_httpreq_is_hop_header(&r, "Authorization", 13));
    rc_httpreq_free(&r);
}

/* Feed text to a fresh body of the given request head one byte at a time (or all at once);
 * returns how many bytes were taken, or -1 on error. */
static long feed(const char *head, const char *body, size_t len, bool bytewise, bool *done)
{
    rc_httpreq r;
    rc_httpbody b;
    long total = 0;
    int st;
    if (parse(head, &r, &st, NULL) != 1)
        return -2;
    rc_httpbody_init(&b, &r);
    rc_httpreq_free(&r);
    for (size_t i = 0; i < len;) {
        size_t n = bytewise ? 1 : len - i;
        ssize_t k = rc_httpbody_feed(&b, body + i, n, NULL);
        if (k < 0)
            return -1;
        total += k;
        if ((size_t)k < n || b.done)
            break;
        i += n;
    }
    *done = b.done;
    return total;
}

TEST(body_framing)
{
    const char *cl = "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n";
    const char *ch =
        "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *none = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
    const char *chunked = "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n"
                          "Trailer: x\r\n\r\nGET http://next/";
    size_t framed = strlen(chunked) - strlen("GET http://next/");
    bool done = false;

    CHECK_INT(feed(cl, "helloEXTRA", 10, false, &done), 5);
    CHECK(done);
    CHECK_INT(feed(cl, "helloEXTRA", 10, true, &done), 5);
    CHECK(done);
    CHECK_INT(feed(cl, "hel", 3, false, &done), 3);
    CHECK(!done);
    CHECK_INT(feed(none, "GET x", 5, false, &done), 0);
    CHECK(done);
    CHECK_INT(feed(ch, chunked, strlen(chunked), false, &done), (long)framed);
    CHECK(done);
    CHECK_INT(feed(ch, chunked, strlen(chunked), true, &done), (long)framed);
    CHECK(done);
    CHECK_INT(feed(ch, "0\r\n\r\n", 5, true, &done), 5);
    CHECK(done);
    CHECK_INT(feed(ch, "3\r\nabc\r\n", 8, false, &done), 8);
    CHECK(!done);
    CHECK_INT(feed(ch, "x\r\n", 3, false, &done), -1);
    CHECK_INT(feed(ch, "\r\n", 2, false, &done), -1);
    CHECK_INT(feed(ch, "3\nabc\r\n", 7, false, &done), -1);
    CHECK_INT(feed(ch, "3\r\nabcX\r\n", 9, false, &done), -1);
    CHECK_INT(feed(ch, "1000000000000000\r\n", 18, false, &done), -1);
    CHECK_INT(feed(ch, "0\r\nBad\nTrailer\r\n\r\n", 19, false, &done), -1);
}

TEST(audit_line)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(RC_AUDIT_LINE_MAX);
    const char *names[] = {"authorization", "x-api-key"};
    rc_audit_record rec = {.kind = "http",
                           .decision = "allow",
                           .reason = "domain listed",
                           .rule = "api.test#0",
                           .action = "transform",
                           .injected = names,
                           .n_injected = 2,
                           .host = "api.test",
                           .port = 443,
                           .addr = "203.0.113.2",
                           .method = "GET",
                           .path = "/v1/x-sk-ant-leaked-token",
                           .status = 200,
                           .bytes_up = 12,
                           .bytes_down = 3456,
                           .end = "complete",
                           .duration_us = 1234};
    REQUIRE(rc_audit_format("sesn_1", &rec, &out, NULL) == 0);
    CHECK(out.len > 0 && out.data[out.len - 1] == '\n');
    CHECK(strstr(out.data, "\"session_id\":\"sesn_1\"") != NULL);
    CHECK(strstr(out.data, "\"kind\":\"http\",\"decision\":\"allow\"") != NULL);
    CHECK(strstr(out.data, "\"injected\":[\"authorization\",\"x-api-key\"]") != NULL);
    CHECK(strstr(out.data, "\"port\":443") != NULL);
    CHECK(strstr(out.data, "\"status\":200,\"bytes_up\":12,\"bytes_down\":3456") != NULL);
    CHECK(strstr(out.data, "\"end\":\"complete\"") != NULL);
    CHECK(strstr(out.data, "\"duration_ms\":1.2") != NULL);
    CHECK(strstr(out.data, "leaked-token") == NULL); /* redacted like every log line */
    CHECK(strchr(out.data, '\n') == out.data + out.len - 1);

    /* absent fields are left out */
    rc_buf_reset(&out);
    rec = (rc_audit_record){.kind = "connect",
                            .decision = "deny",
                            .reason = "domain not in policy",
                            .host = "x.test",
                            .port = 443};
    REQUIRE(rc_audit_format("", &rec, &out, NULL) == 0);
    CHECK(strstr(out.data, "\"rule\"") == NULL);
    CHECK(strstr(out.data, "\"method\"") == NULL);
    CHECK(strstr(out.data, "\"status\"") == NULL);
    CHECK(strstr(out.data, "\"injected\"") == NULL);
}

TEST(audit_redacts_registered_secrets)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(RC_AUDIT_LINE_MAX);
    rc_audit_record rec = {.kind = "http", .decision = "allow", .path = "/a/zzsecretzz/b"};
    REQUIRE(rc_log_register_secret("zzsecretzz", NULL) == 0);
    REQUIRE(rc_audit_format("s", &rec, &out, NULL) == 0);
    rc_log_unregister_secret("zzsecretzz");
    CHECK(strstr(out.data, "zzsecretzz") == NULL);
}
