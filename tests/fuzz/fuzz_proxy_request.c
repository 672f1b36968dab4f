/* fuzz_proxy_request.c - libFuzzer target for the egress proxy's request parser and body framing
 * (broker/httpreq.c): what a container sends to 127.0.0.1:3128.
 *
 * Input: byte 0 picks the chunking of the body feed; the rest is the stream (head, then body).
 * Checks (abort on violation):
 *   - parse returns 1, 0 or a negative code with a status in {400, 405, 431, 501};
 *   - an accepted head: head_len within the input and ending in CRLF CRLF, the same result when
 *     parsed again from exactly head_len bytes, and 0 (incomplete) from any shorter prefix that
 *     ends before the blank line; a non-empty lowercase host, a port in 1..65535, CONNECT with an
 *     explicit port, an absolute-form path starting with '/', every header pointer inside the
 *     parser's own copy, at most RC_HTTPREQ_HEADERS_MAX headers; never TRACE or TRACK;
 *   - body framing: the bytes consumed never exceed those fed, and feeding the body in chunks
 *     consumes exactly as much, with the same verdict, as feeding it at once. */
#include "httpreq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static bool inside(const rc_httpreq *r, const char *p, size_t n)
{
    return p >= r->store && p + n <= r->store + r->head_len + 1;
}

static void check_head(const rc_httpreq *r, const char *data, size_t len)
{
    CHECK(r->head_len >= 4 && r->head_len <= len && r->head_len <= RC_HTTPREQ_HEAD_MAX);
    CHECK(memcmp(data + r->head_len - 4, "\r\n\r\n", 4) == 0);
    CHECK(r->host[0] != '\0');
    for (const char *h = r->host; *h; h++)
        CHECK(!(*h >= 'A' && *h <= 'Z'));
    CHECK(r->port >= 1 && r->port <= 65535);
    CHECK(r->version_minor == 0 || r->version_minor == 1);
    CHECK(strcasecmp(r->method, "TRACE") != 0 && strcasecmp(r->method, "TRACK") != 0);
    CHECK(r->n_headers <= RC_HTTPREQ_HEADERS_MAX);
    if (r->form == RC_HTTPREQ_CONNECT) {
        CHECK(r->port_explicit);
    } else {
        CHECK(r->form == RC_HTTPREQ_ABSOLUTE);
        CHECK(r->path && r->path_len > 0 && r->path[0] == '/');
        CHECK(inside(r, r->path, r->path_len) || r->path_len == 1); /* or the parser's own "/" */
        CHECK(!r->query || inside(r, r->query, r->query_len));
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        const rc_policy_kv *kv = &r->headers[i];
        CHECK(inside(r, kv->key, kv->key_len) && inside(r, kv->value, kv->value_len));
        (void)rc_httpreq_is_hop_header(r, kv->key, kv->key_len);
    }
    (void)rc_httpreq_header(r, "host");
    (void)rc_httpreq_header(r, "content-length");
}

/* The same head again from exactly its bytes, and "incomplete" just before its blank line. */
static void check_reparse(const rc_httpreq *r, const char *data)
{
    rc_httpreq again, part;
    int st = 0;
    CHECK(rc_httpreq_parse(data, r->head_len, &again, &st, NULL) == 1);
    CHECK(again.head_len == r->head_len && again.port == r->port && again.form == r->form &&
          again.body == r->body && strcmp(again.host, r->host) == 0);
    rc_httpreq_free(&again);
    CHECK(rc_httpreq_parse(data, r->head_len - 1, &part, &st, NULL) == 0);
}

/* Feed the body at once and in chunks of 1..step bytes: same consumption and verdict. */
static void check_body(const rc_httpreq *r, const char *body, size_t n, unsigned step)
{
    rc_httpbody whole, parts;
    ssize_t w, got = 0, k = 0;
    size_t off = 0;

    rc_httpbody_init(&whole, r);
    rc_httpbody_init(&parts, r);
    w = rc_httpbody_feed(&whole, body, n, NULL);
    CHECK(w < 0 || (size_t)w <= n);
    while (off < n && !parts.done) {
        size_t chunk = 1 + (off * 7 + step) % (step ? step : 1);
        if (chunk > n - off)
            chunk = n - off;
        k = rc_httpbody_feed(&parts, body + off, chunk, NULL);
        if (k < 0)
            break;
        CHECK((size_t)k <= chunk);
        got += k;
        if ((size_t)k < chunk)
            break;
        off += chunk;
    }
    if (w < 0) {
        CHECK(k < 0); /* the same bytes, so the same framing error */
        return;
    }
    CHECK(k >= 0 && got == w && whole.done == parts.done);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rc_httpreq r;
    int st = 0, rc;
    const char *s;
    size_t n;

    if (size < 1)
        return 0;
    s = (const char *)data + 1;
    n = size - 1;
    rc = rc_httpreq_parse(s, n, &r, &st, NULL);
    if (rc < 0) {
        CHECK(st == 400 || st == 405 || st == 431 || st == 501);
        return 0;
    }
    if (rc == 0)
        return 0;
    CHECK(rc == 1);
    check_head(&r, s, n);
    check_reparse(&r, s);
    check_body(&r, s + r.head_len, n - r.head_len, data[0] % 17);
    rc_httpreq_free(&r);
    return 0;
}
