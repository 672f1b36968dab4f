/* httpreq.h - strict parsing of the proxy requests a container sends: the request head
 * (`CONNECT host:port` or an absolute-form `http://` request) and the framing of a request body.
 *
 * Everything here is hostile input, so the parser is deliberately narrower than RFC 9112: CRLF
 * line ends only, no obs-fold, no leading blank lines, HTTP/1.0 or 1.1 only, one Host, one
 * Content-Length, Transfer-Encoding only as exactly "chunked" and never together with
 * Content-Length, no userinfo or fragment in the target, no `https://` absolute form (use
 * CONNECT), TRACE/TRACK refused (they would reflect injected credentials), the Host header must
 * name the same host and port as the target, and the path must pass rc_policy_path_check. Each
 * refusal comes with the HTTP status to answer (400, 405, 431, 501) and a reason that never
 * quotes the request. */
#ifndef RUNCELL_BROKER_HTTPREQ_H
#define RUNCELL_BROKER_HTTPREQ_H

#include "err.h"
#include "policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RC_HTTPREQ_HEAD_MAX    16384u /* request line + headers + the blank line */
#define RC_HTTPREQ_HEADERS_MAX 100u
#define RC_HTTPREQ_METHOD_MAX  32u

/* ORIGIN: a request read inside an intercepted CONNECT tunnel (rc_httpreq_parse_origin). */
enum rc_httpreq_form { RC_HTTPREQ_CONNECT, RC_HTTPREQ_ABSOLUTE, RC_HTTPREQ_ORIGIN };
enum rc_httpreq_body { RC_HTTPREQ_BODY_NONE, RC_HTTPREQ_BODY_LENGTH, RC_HTTPREQ_BODY_CHUNKED };

typedef struct rc_httpreq {
    int form; /* enum rc_httpreq_form */
    char method[RC_HTTPREQ_METHOD_MAX + 1];
    char host[RC_POLICY_HOST_MAX + 1]; /* lowercased; an IPv6 literal without brackets */
    bool host_is_ip;
    unsigned port;      /* CONNECT: as given; absolute form: as given or 80 */
    bool port_explicit; /* the target named a port */
    int version_minor;  /* HTTP/1.<minor>: 0 or 1 */
    const char *path;   /* absolute and origin form: path without the query ("/" when empty) */
    size_t path_len;
    const char *query; /* absolute form: after '?', NULL when there is none */
    size_t query_len;
    rc_policy_kv headers[RC_HTTPREQ_HEADERS_MAX]; /* as received, OWS trimmed */
    size_t n_headers;
    int body;                /* enum rc_httpreq_body */
    uint64_t content_length; /* RC_HTTPREQ_BODY_LENGTH */
    size_t head_len;         /* bytes of input the head took, blank line included */
    char *store;             /* private copy of the head the pointers above point into */
} rc_httpreq;

/* Parse the head at the start of data[0..len). Returns 1 with *ret filled (free it with
 * rc_httpreq_free), 0 when the head is not complete yet and may still fit, or a negative code
 * with *ret_status set to the HTTP status to answer (400, 405, 431, 501) and err holding the
 * reason. *ret is untouched unless 1 is returned. */
int rc_httpreq_parse(const char *data, size_t len, rc_httpreq *ret, int *ret_status, rc_error *err);
/* The same for a request read inside an intercepted `CONNECT host:port` tunnel: the target must
 * be origin form (`/path[?query]`), CONNECT is refused, and a Host header is required and must
 * name host and port (an omitted port means 443). ret->host / ret->port are the tunnel's. */
int rc_httpreq_parse_origin(const char *data, size_t len, const char *host, unsigned port,
                            rc_httpreq *ret, int *ret_status, rc_error *err);
void rc_httpreq_free(rc_httpreq *r);

/* The first header named lname (lowercase), or NULL. */
const rc_policy_kv *rc_httpreq_header(const rc_httpreq *r, const char *lname);

/* True for headers a proxy never forwards: hop-by-hop (Connection and every name it lists,
 * Keep-Alive, TE, Trailer, Upgrade, Transfer-Encoding is NOT one: it describes the body we relay)
 * and Proxy-* (credentials for this proxy). */
bool rc_httpreq_is_hop_header(const rc_httpreq *r, const char *name, size_t name_len);

/* Body framing, fed with the client bytes that follow the head. */
typedef struct rc_httpbody {
    int mode; /* enum rc_httpreq_body */
    uint64_t left;
    int state;
    size_t line;
    bool done;
} rc_httpbody;

void rc_httpbody_init(rc_httpbody *b, const rc_httpreq *r);
/* How many bytes at the start of data[0..len) belong to the body (once b->done, every later byte
 * is not part of this request). -RC_EPARSE for bad chunked framing, -RC_ETOOBIG for an oversized
 * chunk-size, extension or trailer line. */
ssize_t rc_httpbody_feed(rc_httpbody *b, const char *data, size_t len, rc_error *err);

#endif
