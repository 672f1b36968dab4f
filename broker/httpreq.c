/* httpreq.c - strict proxy request heads and request body framing (see httpreq.h).
 *
 * The head is copied once into a private buffer; the request line and every header line are
 * cut in place (NUL-terminated), so the parsed request is a set of pointers into that copy.
 * Each check is a small function that returns the status to answer, which keeps the refusal
 * table in one place: parse_* return 0 or a negative code after setting *status and err. */
#include "httpreq.h"

#include "cleanup.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int refuse(int *status, int code, rc_error *err, const char *why)
{
    *status = code;
    return rc_error_set(err, code == 431 ? RC_ETOOBIG : RC_EPARSE, "%s", why);
}

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_vchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/* ---- the request target ---- */

static int parse_port(const char *s, size_t n, unsigned *ret)
{
    unsigned v = 0;
    if (n == 0 || n > 5 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *ret = v;
    return 0;
}

/* "host", "host:port", "[v6]", "[v6]:port" into r->host / r->port. */
static int parse_authority(const char *a, size_t n, rc_httpreq *r, bool need_port, int *status,
                           rc_error *err)
{
    const char *host = a, *colon;
    size_t hlen;
    unsigned char tmp[16];

    if (n == 0)
        return refuse(status, 400, err, "request target has no host");
    if (memchr(a, '@', n))
        return refuse(status, 400, err, "request target holds userinfo");
    if (a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close)
            return refuse(status, 400, err, "request target has a bad IPv6 literal");
        host = a + 1;
        hlen = (size_t)(close - host);
        colon = close + 1 < a + n ? close + 1 : NULL;
        if (colon && *colon != ':')
            return refuse(status, 400, err, "request target has a bad IPv6 literal");
    } else {
        colon = memchr(a, ':', n);
        hlen = colon ? (size_t)(colon - a) : n;
    }
    if (hlen == 0 || hlen > RC_POLICY_HOST_MAX)
        return refuse(status, 400, err, "request target has a bad host");
    memcpy(r->host, host, hlen);
    r->host[hlen] = '\0';
    for (char *p = r->host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    r->host_is_ip = inet_pton(AF_INET, r->host, tmp) == 1 ||
                    (a[0] == '[' && inet_pton(AF_INET6, r->host, tmp) == 1);
    if (a[0] == '[' && !r->host_is_ip)
        return refuse(status, 400, err, "request target has a bad IPv6 literal");
    if (!r->host_is_ip && !rc_policy_hostname_valid(r->host))
        return refuse(status, 400, err, "request target has a bad host name");
    r->port_explicit = colon != NULL;
    if (colon) {
        if (parse_port(colon + 1, (size_t)(a + n - colon - 1), &r->port) < 0)
            return refuse(status, 400, err, "request target has a bad port");
    } else if (need_port) {
        return refuse(status, 400, err, "CONNECT needs host:port");
    } else {
        r->port = 80;
    }
    return 0;
}

static int parse_absolute(char *t, size_t n, rc_httpreq *r, int *status, rc_error *err)
{
    char *auth, *rest, *q;
    size_t alen;
    rc_error perr = {0};
    int rc;

    if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
        return refuse(status, 400, err, "https:// through the proxy needs CONNECT");
    if (n < 7 || strncasecmp(t, "http://", 7) != 0)
        return refuse(status, 400, err, "not a proxy request: the target must be http://host/...");
    if (memchr(t, '#', n))
        return refuse(status, 400, err, "request target holds a fragment");
    auth = t + 7;
    rest = auth + strcspn(auth, "/?");
    alen = (size_t)(rest - auth);
    rc = parse_authority(auth, alen, r, false, status, err);
    if (rc < 0)
        return rc;
    q = strchr(rest, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
        r->query_len = strlen(q + 1);
        for (size_t i = 0; i < r->query_len; i++)
            if (!is_vchar((unsigned char)r->query[i]))
                return refuse(status, 400, err, "query holds a bad byte");
    }
    /* The authority is already copied into r->host, so the path can point into the target. */
    r->path = *rest ? rest : "/";
    r->path_len = strlen(r->path);
    if (rc_policy_path_check(r->path, r->path_len, &perr) < 0)
        return refuse(status, 400, err, perr.msg);
    return 0;
}

/* Origin form inside an intercepted tunnel: "/path[?query]". */
static int parse_origin(char *t, size_t n, rc_httpreq *r, int *status, rc_error *err)
{
    rc_error perr = {0};
    char *q;

    if (t[0] != '/')
        return refuse(status, 400, err, "inside a tunnel the request target must be /path");
    if (memchr(t, '#', n))
        return refuse(status, 400, err, "request target holds a fragment");
    q = strchr(t, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
        r->query_len = strlen(q + 1);
    }
    r->path = t;
    r->path_len = strlen(t);
    if (rc_policy_path_check(r->path, r->path_len, &perr) < 0)
        return refuse(status, 400, err, perr.msg);
    return 0;
}

/* ---- the request line ---- */

static int parse_request_line(char *line, rc_httpreq *r, int *status, rc_error *err)
{
    char *sp1 = strchr(line, ' '), *sp2, *target;
    size_t mlen, tlen;

    if (!sp1)
        return refuse(status, 400, err, "malformed request line");
    sp2 = strchr(sp1 + 1, ' ');
    if (!sp2 || strchr(sp2 + 1, ' '))
        return refuse(status, 400, err, "malformed request line");
    mlen = (size_t)(sp1 - line);
    if (mlen == 0 || mlen > RC_HTTPREQ_METHOD_MAX)
        return refuse(status, 400, err, "malformed method");
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)line[i]))
            return refuse(status, 400, err, "malformed method");
    memcpy(r->method, line, mlen);
    r->method[mlen] = '\0';
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        r->version_minor = 1;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        r->version_minor = 0;
    else
        return refuse(status, 400, err, "unsupported HTTP version (1.0 and 1.1 only)");
    target = sp1 + 1;
    *sp2 = '\0';
    tlen = strlen(target);
    if (tlen == 0)
        return refuse(status, 400, err, "empty request target");
    for (size_t i = 0; i < tlen; i++)
        if (!is_vchar((unsigned char)target[i]))
            return refuse(status, 400, err, "request target holds a bad byte");
    if (strcasecmp(r->method, "TRACE") == 0 || strcasecmp(r->method, "TRACK") == 0)
        return refuse(status, 405, err, "TRACE is refused (it would reflect injected headers)");
    if (r->form == RC_HTTPREQ_ORIGIN) {
        if (strcmp(r->method, "CONNECT") == 0)
            return refuse(status, 405, err, "CONNECT inside an intercepted tunnel");
        return parse_origin(target, tlen, r, status, err);
    }
    if (strcmp(r->method, "CONNECT") == 0) {
        r->form = RC_HTTPREQ_CONNECT;
        return parse_authority(target, tlen, r, true, status, err);
    }
    r->form = RC_HTTPREQ_ABSOLUTE;
    return parse_absolute(target, tlen, r, status, err);
}

/* ---- header lines ---- */

static int parse_header_line(char *line, rc_httpreq *r, int *status, rc_error *err)
{
    char *colon = strchr(line, ':'), *v, *end;

    if (line[0] == ' ' || line[0] == '\t')
        return refuse(status, 400, err, "folded header line");
    if (!colon || colon == line)
        return refuse(status, 400, err, "malformed header line");
    for (char *p = line; p < colon; p++)
        if (!is_tchar((unsigned char)*p))
            return refuse(status, 400, err, "malformed header name");
    if (r->n_headers == RC_HTTPREQ_HEADERS_MAX)
        return refuse(status, 431, err, "too many header fields");
    v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    end = v + strlen(v);
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *end = '\0';
    for (char *p = v; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c != '\t' && (c < 0x20 || c == 0x7f))
            return refuse(status, 400, err, "control byte in a header value");
    }
    *colon = '\0';
    r->headers[r->n_headers++] = (rc_policy_kv){
        .key = line, .key_len = (size_t)(colon - line), .value = v, .value_len = (size_t)(end - v)};
    return 0;
}

const rc_policy_kv *rc_httpreq_header(const rc_httpreq *r, const char *lname)
{
    size_t n = strlen(lname);
    for (size_t i = 0; i < r->n_headers; i++)
        if (r->headers[i].key_len == n && strncasecmp(r->headers[i].key, lname, n) == 0)
            return &r->headers[i];
    return NULL;
}

static size_t header_count(const rc_httpreq *r, const char *lname)
{
    size_t n = strlen(lname), count = 0;
    for (size_t i = 0; i < r->n_headers; i++)
        if (r->headers[i].key_len == n && strncasecmp(r->headers[i].key, lname, n) == 0)
            count++;
    return count;
}

/* True when the comma-separated list value holds token (case-insensitive). */
static bool list_has(const char *value, size_t vlen, const char *token, size_t tlen)
{
    size_t i = 0;
    while (i < vlen) {
        size_t start, end;
        while (i < vlen && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        start = i;
        while (i < vlen && value[i] != ',')
            i++;
        end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(value + start, token, tlen) == 0)
            return true;
    }
    return false;
}

bool rc_httpreq_is_hop_header(const rc_httpreq *r, const char *name, size_t n)
{
    static const char *const hop[] = {"connection", "keep-alive",       "te", "trailer",
                                      "upgrade",    "proxy-connection", NULL};
    if (n >= 6 && strncasecmp(name, "proxy-", 6) == 0)
        return true;
    for (size_t i = 0; hop[i]; i++)
        if (strlen(hop[i]) == n && strncasecmp(name, hop[i], n) == 0)
            return true;
    for (size_t i = 0; i < r->n_headers; i++) {
        const rc_policy_kv *h = &r->headers[i];
        if (h->key_len == 10 && strncasecmp(h->key, "connection", 10) == 0 &&
            list_has(h->value, h->value_len, name, n))
            return true;
    }
    return false;
}

static int parse_content_length(const rc_policy_kv *h, uint64_t *ret)
{
    uint64_t v = 0;
    if (h->value_len == 0 || h->value_len > 18)
        return -1;
    for (size_t i = 0; i < h->value_len; i++) {
        if (!isdigit((unsigned char)h->value[i]))
            return -1;
        v = v * 10 + (uint64_t)(h->value[i] - '0');
    }
    *ret = v;
    return 0;
}

static int check_framing(rc_httpreq *r, int *status, rc_error *err)
{
    const rc_policy_kv *te = rc_httpreq_header(r, "transfer-encoding");
    const rc_policy_kv *cl = rc_httpreq_header(r, "content-length");

    if (header_count(r, "transfer-encoding") > 1 || header_count(r, "content-length") > 1)
        return refuse(status, 400, err, "repeated Transfer-Encoding or Content-Length");
    if (te && cl)
        return refuse(status, 400, err, "both Transfer-Encoding and Content-Length");
    if (te) {
        if (r->version_minor == 0)
            return refuse(status, 400, err, "Transfer-Encoding in an HTTP/1.0 request");
        if (te->value_len != 7 || strncasecmp(te->value, "chunked", 7) != 0)
            return refuse(status, 501, err, "only Transfer-Encoding: chunked is supported");
        r->body = RC_HTTPREQ_BODY_CHUNKED;
    } else if (cl) {
        if (parse_content_length(cl, &r->content_length) < 0)
            return refuse(status, 400, err, "malformed Content-Length");
        r->body = r->content_length ? RC_HTTPREQ_BODY_LENGTH : RC_HTTPREQ_BODY_NONE;
    }
    if (r->form == RC_HTTPREQ_CONNECT && r->body != RC_HTTPREQ_BODY_NONE)
        return refuse(status, 400, err, "CONNECT with a body");
    return 0;
}

/* The Host header must name the target's host and port (reference-app 9.3.2). An HTTP/1.1
 * request must have one (RFC 9112 3.2: a server answers 400 without it); HTTP/1.0 and CONNECT
 * (whose target is the authority) may go without. */
static int check_host_header(const rc_httpreq *r, int *status, rc_error *err)
{
    const rc_policy_kv *h = rc_httpreq_header(r, "host");
    rc_httpreq tmp = {0};
    int st = 0;

    if (header_count(r, "host") > 1)
        return refuse(status, 400, err, "repeated Host header");
    if (!h && r->form == RC_HTTPREQ_ORIGIN)
        return refuse(status, 400, err, "a request inside a tunnel needs a Host header");
    if (!h && r->form != RC_HTTPREQ_CONNECT && r->version_minor == 1)
        return refuse(status, 400, err, "an HTTP/1.1 request needs a Host header");
    if (!h || r->form == RC_HTTPREQ_CONNECT)
        return 0;
    if (parse_authority(h->value, h->value_len, &tmp, false, &st, NULL) < 0)
        return refuse(status, 400, err, "Host header does not match the request target");
    if (r->form == RC_HTTPREQ_ORIGIN && !tmp.port_explicit)
        tmp.port = 443; /* inside a TLS tunnel the default port is https's */
    if (strcmp(tmp.host, r->host) != 0 || tmp.port != r->port)
        return refuse(status, 400, err, "Host header does not match the request target");
    return 0;
}

/* ---- the whole head ---- */

/* Offset just past the blank line ending the head, or 0 when it is not there yet. A bare LF
 * (without CR) anywhere in the head is reported through *bare_lf. */
static size_t find_head_end(const char *data, size_t len, bool *bare_lf)
{
    *bare_lf = false;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n')
            continue;
        if (i == 0 || data[i - 1] != '\r') {
            *bare_lf = true;
            return i + 1;
        }
        if (i >= 3 && data[i - 2] == '\n' && data[i - 3] == '\r')
            return i + 1;
    }
    return 0;
}

static int parse_lines(char *store, size_t head_len, rc_httpreq *r, int *status, rc_error *err)
{
    char *line = store, *end = store + head_len - 2; /* the final CRLF ends the last line */
    bool first = true;
    int rc;

    while (line < end) {
        char *cr = strstr(line, "\r\n");
        *cr = '\0';
        if (first && line == cr)
            return refuse(status, 400, err, "blank line before the request line");
        rc = first ? parse_request_line(line, r, status, err)
                   : parse_header_line(line, r, status, err);
        if (rc < 0)
            return rc;
        first = false;
        line = cr + 2;
    }
    return 0;
}

static int parse_head(const char *data, size_t len, rc_httpreq *preset, rc_httpreq *ret,
                      int *ret_status, rc_error *err)
{
    _cleanup_(rc_httpreq_free) rc_httpreq r = *preset;
    size_t head_len;
    bool bare_lf;
    int rc;

    head_len = find_head_end(data, len < RC_HTTPREQ_HEAD_MAX ? len : RC_HTTPREQ_HEAD_MAX, &bare_lf);
    if (bare_lf)
        return refuse(ret_status, 400, err, "bare LF in the request head (CRLF required)");
    if (head_len == 0)
        return len >= RC_HTTPREQ_HEAD_MAX
                   ? refuse(ret_status, 431, err, "request head larger than 16 KiB")
                   : 0;
    if (memchr(data, '\0', head_len))
        return refuse(ret_status, 400, err, "NUL byte in the request head");
    r.store = malloc(head_len + 1);
    if (!r.store) {
        *ret_status = 500;
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    memcpy(r.store, data, head_len);
    r.store[head_len] = '\0';
    r.head_len = head_len;
    rc = parse_lines(r.store, head_len, &r, ret_status, err);
    if (rc < 0)
        return rc;
    rc = check_framing(&r, ret_status, err);
    if (rc < 0)
        return rc;
    rc = check_host_header(&r, ret_status, err);
    if (rc < 0)
        return rc;
    *ret = r;
    r.store = NULL;
    return 1;
}

int rc_httpreq_parse(const char *data, size_t len, rc_httpreq *ret, int *ret_status, rc_error *err)
{
    rc_httpreq preset = {0};
    return parse_head(data, len, &preset, ret, ret_status, err);
}

int rc_httpreq_parse_origin(const char *data, size_t len, const char *host, unsigned port,
                            rc_httpreq *ret, int *ret_status, rc_error *err)
{
    rc_httpreq preset = {.form = RC_HTTPREQ_ORIGIN, .port = port, .port_explicit = true};
    unsigned char tmp[16];

    if (strlen(host) > RC_POLICY_HOST_MAX) {
        *ret_status = 400;
        return rc_error_set(err, RC_EINVAL, "tunnel host too long");
    }
    snprintf(preset.host, sizeof preset.host, "%s", host);
    preset.host_is_ip = inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
    return parse_head(data, len, &preset, ret, ret_status, err);
}

void rc_httpreq_free(rc_httpreq *r)
{
    free(r->store);
    r->store = NULL;
}

/* ---- body framing ---- */

enum chunk_state {
    CH_SIZE,
    CH_EXT,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START,
    CH_TRAILER_LINE,
    CH_TRAILER_LF,
    CH_FINAL_LF
};

#define CHUNK_LINE_MAX 1024u
#define CHUNK_SIZE_HEX 15u
#define TRAILER_MAX    8192u

void rc_httpbody_init(rc_httpbody *b, const rc_httpreq *r)
{
    *b = (rc_httpbody){.mode = r->body, .left = r->content_length, .state = CH_SIZE};
    b->done = r->body == RC_HTTPREQ_BODY_NONE;
}

static int hexval(unsigned char c)
{
    if (isdigit(c))
        return c - '0';
    c = (unsigned char)tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One byte of chunked framing (not chunk data). */
static int chunk_byte(rc_httpbody *b, unsigned char c, rc_error *err)
{
    switch (b->state) {
    case CH_SIZE:
        if (hexval(c) >= 0) {
            if (++b->line > CHUNK_SIZE_HEX)
                return rc_error_set(err, RC_ETOOBIG, "chunk size too large");
            b->left = b->left * 16 + (uint64_t)hexval(c);
            return 0;
        }
        if (b->line == 0)
            return rc_error_set(err, RC_EPARSE, "bad chunk size");
        if (c == ';') {
            b->state = CH_EXT;
            return 0;
        }
        if (c == '\r') {
            b->state = CH_SIZE_LF;
            return 0;
        }
        return rc_error_set(err, RC_EPARSE, "bad chunk size line");
    case CH_EXT:
        if (c == '\r') {
            b->state = CH_SIZE_LF;
            return 0;
        }
        if (++b->line > CHUNK_LINE_MAX || c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f)
            return rc_error_set(err, RC_EPARSE, "bad chunk extension");
        return 0;
    case CH_SIZE_LF:
        if (c != '\n')
            return rc_error_set(err, RC_EPARSE, "chunk size line without CRLF");
        b->line = 0;
        b->state = b->left ? CH_DATA : CH_TRAILER_START;
        return 0;
    case CH_DATA_CR:
        if (c != '\r')
            return rc_error_set(err, RC_EPARSE, "chunk data without CRLF");
        b->state = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        if (c != '\n')
            return rc_error_set(err, RC_EPARSE, "chunk data without CRLF");
        b->state = CH_SIZE;
        b->line = 0;
        b->left = 0;
        return 0;
    case CH_TRAILER_START:
        if (c == '\r') {
            b->state = CH_FINAL_LF;
            return 0;
        }
        b->state = CH_TRAILER_LINE;
        /* fall through */
    case CH_TRAILER_LINE:
        if (c == '\r') {
            b->state = CH_TRAILER_LF;
            return 0;
        }
        if (++b->line > TRAILER_MAX || c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f)
            return rc_error_set(err, RC_EPARSE, "bad trailer");
        return 0;
    case CH_TRAILER_LF:
        if (c != '\n')
            return rc_error_set(err, RC_EPARSE, "trailer without CRLF");
        b->state = CH_TRAILER_START;
        return 0;
    case CH_FINAL_LF:
        if (c != '\n')
            return rc_error_set(err, RC_EPARSE, "chunked body without final CRLF");
        b->done = true;
        return 0;
    default:
        return rc_error_set(err, RC_EPARSE, "bad chunked state");
    }
}

static ssize_t chunked_feed(rc_httpbody *b, const char *data, size_t len, rc_error *err)
{
    size_t i = 0;
    while (i < len && !b->done) {
        if (b->state == CH_DATA) {
            size_t take = len - i < b->left ? len - i : (size_t)b->left;
            i += take;
            b->left -= take;
            if (b->left == 0)
                b->state = CH_DATA_CR;
            continue;
        }
        int rc = chunk_byte(b, (unsigned char)data[i++], err);
        if (rc < 0)
            return rc;
    }
    return (ssize_t)i;
}

ssize_t rc_httpbody_feed(rc_httpbody *b, const char *data, size_t len, rc_error *err)
{
    size_t take;
    if (b->done)
        return 0;
    if (b->mode == RC_HTTPREQ_BODY_CHUNKED)
        return chunked_feed(b, data, len, err);
    take = len < b->left ? len : (size_t)b->left;
    b->left -= take;
    b->done = b->left == 0;
    return (ssize_t)take;
}
