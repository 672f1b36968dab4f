/* apichan.h - the broker's API channel: credential brokering for the runner (issue 6).
 *
 * The runner inside a container never holds a credential. It speaks plain HTTP/1.1 to this
 * channel, a unix socket that only the runner's host uid can open (file mode 0600, owned by that
 * uid, and SO_PEERCRED checked on every connection). For each request the channel
 *   1. parses the request head strictly (caps on the line, header count and size, body size;
 *      CRLF only, no obs-fold, one Content-Length, Transfer-Encoding refused with 411/400),
 *   2. matches the method and path against the session's scope (rc_apichan_route_match): only
 *      the session's own /v1/sessions/{sid}[/events[/stream]] and the work item's
 *      heartbeat/stop, plus skills and memory-store paths when enabled; anything else is 403 with
 *      the API's error body (protocol.md 2.6) and an audit line,
 *   3. forwards it over libcurl to the configured base URL with only allowlisted request headers
 *      (never Authorization, x-api-key, Proxy-Authorization, Cookie or hop-by-hop headers) plus
 *      the injected `Authorization: Bearer <credential>`,
 *   4. relays the answer as it arrives: status, headers (hop-by-hop and Set-Cookie removed) and
 *      body, without buffering (each chunk is written to the runner as soon as curl hands it
 *      over, so SSE headers and events reach the runner at once); upstream errors pass through
 *      with their status and body,
 *   5. after a 200 answer to the work item's heartbeat, records last_heartbeat, the TTL and the
 *      time in a small root-only file (heartbeat_record_path), so that a launcher restarting after
 *      a crash can tell whether the lease is still this host's (rc_apichan_hb_record).
 * Connections are kept alive (the runner's libcurl reuses them) and served by one thread each,
 * up to a cap; the upstream connection of each client connection is reused too.
 *
 * The credential is held in one mlock'd, non-dumpable page, wiped on free, registered with the
 * log redactor and never logged; the work secret's api_base_url is ignored (protocol.md 2.1.2).
 *
 * The parser, the path matcher and the header filters are exposed as pure functions so that the
 * unit tests and the fuzzer exercise exactly the code the server runs. */
#ifndef RUNCELL_BROKER_APICHAN_H
#define RUNCELL_BROKER_APICHAN_H

#include "audit.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RC_APICHAN_HEAD_MAX             16384       /* request line + headers + CRLFs */
#define RC_APICHAN_LINE_MAX             8192        /* one line of the head */
#define RC_APICHAN_HEADERS_MAX          64          /* header fields per request */
#define RC_APICHAN_ID_MAX               128         /* characters of an id in a path */
#define RC_APICHAN_BODY_MAX_DEFAULT     (4u << 20)  /* request body (emulator's cap too) */
#define RC_APICHAN_RESPONSE_MAX_DEFAULT (64u << 20) /* non-stream response body */
#define RC_APICHAN_CONNECTIONS_DEFAULT  16
#define RC_APICHAN_IDLE_MS_DEFAULT      120000L /* keep-alive connection without a request */
#define RC_APICHAN_READ_MS_DEFAULT      30000L  /* to finish a started request (head + body) */
#define RC_APICHAN_UPSTREAM_MS_DEFAULT  600000L /* a non-stream exchange (protocol.md 2.7.1) */
#define RC_APICHAN_CONNECT_MS_DEFAULT   10000L

/* Environment variable an operator sets to "1" to let the environment key be brokered for a
 * work item that carries no usable secret (see docs/BROKER_API.md for why that is weaker). */
#define RC_APICHAN_ENV_KEY_BROKERING_VAR "RUNCELL_ALLOW_ENVIRONMENT_KEY_BROKERING"

/* ---- scope and routes ---------------------------------------------------------------------- */

enum rc_apichan_feature {
    RC_APICHAN_ALLOW_SKILLS = 1u << 0, /* GET /v1/skills/{id}/versions[/{v}[/content]] */
    RC_APICHAN_ALLOW_MEMORY = 1u << 1, /* /v1/memory_stores/{store}/memories... (listed stores) */
    /* Do not learn the memory stores from the session (see rc_apichan_config). */
    RC_APICHAN_NO_MEMORY_LEARNING = 1u << 2,
};

/* What this channel may forward: one session, its work item, and the optional features. */
typedef struct rc_apichan_scope {
    const char *environment_id;
    const char *work_id;
    const char *session_id;
    unsigned features;                   /* enum rc_apichan_feature */
    const char *const *memory_store_ids; /* NULL-terminated; the stores of this session */
} rc_apichan_scope;

enum rc_apichan_route {
    RC_APICHAN_ROUTE_NONE = 0,
    RC_APICHAN_ROUTE_SESSION_GET,    /* GET  /v1/sessions/{sid} */
    RC_APICHAN_ROUTE_EVENTS_LIST,    /* GET  /v1/sessions/{sid}/events */
    RC_APICHAN_ROUTE_EVENTS_SEND,    /* POST /v1/sessions/{sid}/events */
    RC_APICHAN_ROUTE_EVENTS_STREAM,  /* GET  /v1/sessions/{sid}/events/stream */
    RC_APICHAN_ROUTE_WORK_HEARTBEAT, /* POST /v1/environments/{env}/work/{wid}/heartbeat */
    RC_APICHAN_ROUTE_WORK_STOP,      /* POST /v1/environments/{env}/work/{wid}/stop */
    RC_APICHAN_ROUTE_SKILL_VERSIONS, /* GET  /v1/skills/{skill}/versions */
    RC_APICHAN_ROUTE_SKILL_VERSION,  /* GET  /v1/skills/{skill}/versions/{version} */
    RC_APICHAN_ROUTE_SKILL_CONTENT,  /* GET  /v1/skills/{skill}/versions/{version}/content */
    RC_APICHAN_ROUTE_MEMORY_LIST,    /* GET  /v1/memory_stores/{store}/memories */
    RC_APICHAN_ROUTE_MEMORY_CREATE,  /* POST /v1/memory_stores/{store}/memories */
    RC_APICHAN_ROUTE_MEMORY_GET,     /* GET  /v1/memory_stores/{store}/memories/{mem} */
    RC_APICHAN_ROUTE_MEMORY_UPDATE,  /* POST /v1/memory_stores/{store}/memories/{mem} */
    RC_APICHAN_ROUTE_MEMORY_DELETE,  /* DELETE /v1/memory_stores/{store}/memories/{mem} */
    RC_APICHAN_ROUTE_MAX
};

/* Match a request (method and raw request-target as received) against scope. 0 with
 * *ret_route set when the request may be forwarded; -RC_EAUTH when it may not (err says which
 * rule refused it, in fixed words: the input is never echoed). The target must be origin-form
 * ("/v1/..."), its path made only of [A-Za-z0-9._~-] segments separated by single '/': no
 * empty segment ("//", trailing '/'), no "." or "..", no percent-encoding at all, no backslash,
 * no control or non-ASCII byte, no fragment. Literal segments match case-sensitively and ids
 * must equal the scope's exactly. The query, if any, must use only the keys the protocol gives
 * that route (for example expected_last_heartbeat and desired_ttl_seconds on the heartbeat;
 * limit, page, order, types[], created_at[..] on the events list; "beta" everywhere), each
 * key at most once except array keys ("types[]"), values percent-encoded (RFC 3986 unreserved
 * characters and %XX only: a raw '+' or ';' is ambiguous and refused) and free of control bytes
 * once decoded, numeric keys digits only. */
int rc_apichan_route_match(const rc_apichan_scope *scope, const char *method, const char *target,
                           int *ret_route, rc_error *err);

/* Static name of a route ("events_stream", ...) for audit lines. */
const char *rc_apichan_route_name(int route);
/* The events stream: relayed without a body cap and without an upstream timeout. */
bool rc_apichan_route_is_stream(int route);
/* Routes whose request may carry a body (POST routes); others must send none. */
bool rc_apichan_route_takes_body(int route);

/* ---- the local route: running tool calls (issue 11) -----------------------------------------
 * PUT /_runcell/v1/running-tool-calls with {"ids":["toolu_...", ...]} replaces the set of tool
 * calls the runner is executing (rc_audit_calls), which the egress proxy puts on the audit line
 * of every credential injection. Answered by the channel itself, never forwarded upstream, and
 * like every route only reachable from the runner's uid. The body must be exactly one object
 * with exactly the key "ids": an array of at most RC_AUDIT_CALLS_MAX distinct strings of the
 * tool-use id shape ([A-Za-z0-9_-]{1,128}); anything else is 400. Another method is 405. */
#define RC_APICHAN_RUNNING_CALLS_PATH     "/_runcell/v1/running-tool-calls"
#define RC_APICHAN_RUNNING_CALLS_BODY_MAX 8192

/* True when target is the local route's path (exactly; a query is not part of it). */
bool rc_apichan_is_running_calls_target(const char *target);
/* Parse the route's body strictly; 0 and *ret filled, or -RC_EPARSE / -RC_ETOOBIG (err in fixed
 * words: the input is never echoed). */
int rc_apichan_running_calls_parse(const char *body, size_t len, rc_audit_call_ids *ret,
                                   rc_error *err);

/* ---- request head parsing ---------------------------------------------------------------- */

typedef struct rc_apichan_header {
    const char *name;  /* as received (case preserved) */
    const char *value; /* leading and trailing whitespace removed */
} rc_apichan_header;

typedef struct rc_apichan_head {
    char *storage; /* owned copy of the head that the pointers below point into */
    const char *method;
    const char *target;
    bool http11; /* "HTTP/1.1"; another HTTP/x.y parses but is refused with 505 */
    rc_apichan_header headers[RC_APICHAN_HEADERS_MAX];
    size_t n_headers;
    long long content_length; /* -1 when absent */
    bool transfer_encoding;   /* a Transfer-Encoding field was present (refused) */
    bool expect_continue;     /* Expect: 100-continue */
    bool expect_other;        /* an Expect value other than 100-continue (417) */
    bool connection_close;    /* Connection: close */
    bool bad_framing;         /* two Content-Length fields, or one that is not all digits */
} rc_apichan_head;

/* Parse one request head at the start of buf[0, len). Returns the head's length in bytes (> 0,
 * including the final CRLF CRLF) and fills *ret (free with rc_apichan_head_clear); 0 when buf
 * holds no complete head yet and is still under the caps; -RC_ETOOBIG when a cap is exceeded
 * (answer 431); -RC_EPARSE for a malformed head (answer 400). Strict grammar: request line
 * "METHOD SP target SP HTTP/d.d" (method uppercase letters, target visible ASCII), every line ends
 * in CRLF (a bare LF or CR is refused), header names are RFC 9110 tokens immediately followed by
 * ':', values hold only visible ASCII, space and tab, no obs-fold, at most one Host. */
int rc_apichan_head_parse(const char *buf, size_t len, rc_apichan_head *ret, rc_error *err);
void rc_apichan_head_clear(rc_apichan_head *h);

/* The HTTP status a parsed head must be refused with before any route check, or 0: 505 for a
 * version other than HTTP/1.1, 400 for bad
 * framing (duplicate or malformed Content-Length, Transfer-Encoding together with
 * Content-Length), 411 for a Transfer-Encoding (chunked request bodies are not accepted),
 * 413 for a Content-Length above max_body, 417 for an unknown Expect, 501 for a method other
 * than GET, POST and DELETE. */
int rc_apichan_head_refusal(const rc_apichan_head *h, size_t max_body);

/* ---- header filters ------------------------------------------------------------------------ */

/* Request headers that may go upstream: accept, anthropic-beta, anthropic-version,
 * content-type, idempotency-key, user-agent and x-stainless-*. Everything else (Authorization,
 * x-api-key, Proxy-Authorization, Cookie, Host, Content-Length, hop-by-hop fields...) is
 * dropped. */
bool rc_apichan_request_header_allowed(const char *name);
/* Response headers relayed to the runner: all but hop-by-hop fields (Connection, Keep-Alive,
 * Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade), Content-Length (the channel frames the
 * body itself), Set-Cookie/Set-Cookie2, Alt-Svc and Strict-Transport-Security. */
bool rc_apichan_response_header_allowed(const char *name);

/* The "Name: value" lines to send upstream for h: the allowed headers, minus any that the
 * request's Connection header names. The credential is not among them (the server appends it).
 * On success *ret_lines is a NULL-terminated array the caller frees with
 * rc_apichan_lines_free, and the count is returned. */
int rc_apichan_upstream_headers(const rc_apichan_head *h, char ***ret_lines, rc_error *err);
void rc_apichan_lines_free(char **lines);

/* ---- the credential ---------------------------------------------------------------------- */

enum rc_apichan_credential_kind {
    RC_APICHAN_CRED_SESSIONS_TOKEN = 1, /* decoded from the work secret (protocol.md 4.2) */
    RC_APICHAN_CRED_ENVIRONMENT_KEY, /* operator opted in: RUNCELL_ALLOW_ENVIRONMENT_KEY_BROKERING=1
                                      */
};

/* True only for the exact value "1". */
bool rc_apichan_env_key_brokering_allowed(const char *value);

/* Choose the credential to inject for a work item: the sessions token of work_secret when it
 * decodes (4.2, with the legacy fallback of 4.2.3); otherwise environment_key when
 * allow_environment_key is set and the key is non-empty; otherwise -RC_EAUTH (the item must be
 * refused, 4.2.1). 0 with *ret_credential (free with rc_worksecret_free) and *ret_kind. The
 * messages never contain either value. */
int rc_apichan_credential_choose(const char *work_secret, const char *environment_key,
                                 bool allow_environment_key, char **ret_credential, int *ret_kind,
                                 rc_error *err);

/* ---- the heartbeat record ------------------------------------------------------------------- */

/* What the last successful heartbeat answer said, kept on disk so that a process that finds the
 * session's shim dead (the launcher's reconcile, after a crash) can tell whether the lease may
 * still be ours: it echoes last_heartbeat in a heartbeat of its own (protocol.md 5.4), and a 412
 * means the item went back to the queue or to another worker. Never holds the credential.
 * On disk: one JSON object, {"last_heartbeat":"...","state":"active","ttl_seconds":300,
 * "at_ms":<CLOCK_REALTIME ms>}. */
#define RC_APICHAN_HB_VALUE_MAX  256  /* bytes of last_heartbeat (printable ASCII only) */
#define RC_APICHAN_HB_RECORD_MAX 1024 /* the file, and the heartbeat answer read for it */

typedef struct rc_apichan_hb_record {
    char last_heartbeat[RC_APICHAN_HB_VALUE_MAX + 1]; /* as the API returned it; may be "" */
    char state[24];                                   /* "active", "stopping", ... or "" */
    long ttl_seconds; /* effective lease TTL from the answer; 0 when it had none */
    int64_t at_ms;    /* wall clock (ms since the epoch) when the answer was relayed */
} rc_apichan_hb_record;

/* The record for a 200 heartbeat answer body (5.4.2) received at at_ms. -RC_EPARSE when the body
 * is not a heartbeat object or last_heartbeat is missing, not a string, too long or not
 * printable ASCII; a state that is not [a-z_] or a ttl_seconds out of 0..10^7 is dropped. */
int rc_apichan_hb_record_from_answer(const char *body, size_t len, int64_t at_ms,
                                     rc_apichan_hb_record *ret, rc_error *err);
/* Serialise rec (one line, '\n'-terminated) into buf; returns the length. */
int rc_apichan_hb_record_format(const rc_apichan_hb_record *rec, char *buf, size_t bufsz,
                                rc_error *err);
/* Parse what rc_apichan_hb_record_format wrote (same checks as from_answer; at_ms required). */
int rc_apichan_hb_record_parse(const char *text, size_t len, rc_apichan_hb_record *ret,
                               rc_error *err);
/* Write rec to path atomically (path.tmp, mode 0600, rename; no fsync: a record lost to a power
 * cut only makes the reader's heartbeat fail its precondition, the safe side). */
int rc_apichan_hb_record_write(const char *path, const rc_apichan_hb_record *rec, rc_error *err);
/* Read and parse path; -RC_ENOTFOUND when there is none. */
int rc_apichan_hb_record_read(const char *path, rc_apichan_hb_record *ret, rc_error *err);
/* True when the lease the record describes has certainly run out by now_ms: a known TTL and
 * now_ms > at_ms + ttl + margin_ms. */
bool rc_apichan_hb_record_expired(const rc_apichan_hb_record *rec, int64_t now_ms,
                                  int64_t margin_ms);

/* ---- the server ---------------------------------------------------------------------------- */

typedef struct rc_apichan_config {
    /* Where to create the socket. Its directory must exist and not be writable by group or
     * others; an existing socket there is replaced, anything else is refused. */
    const char *socket_path;
    uid_t allowed_uid; /* the runner's uid as the host sees it (through the userns mapping) */
    gid_t socket_gid;  /* group owner of the socket file; (gid_t)-1 keeps ours */
    /* Upstream: "https://host[:port][/prefix]"; "http://" only for a loopback host or with
     * allow_plain_http (the emulator). No userinfo, query or fragment. */
    const char *base_url;
    bool allow_plain_http;
    const char *ca_file; /* extra CA bundle; verification is on either way */
    /* Memory stores: with RC_APICHAN_ALLOW_MEMORY the scope's memory_store_ids are the only
     * stores. Otherwise a channel holding a sessions token learns them from the session itself:
     * every 200 answer to GET /v1/sessions/{sid} it relays is read for the memory_store_id of
     * each resources[] entry of type memory_store, and /v1/memory_stores/{store}/memories[/{mem}]
     * is then allowed for exactly those stores (protocol 16, 14.3.9; the runner fetches the
     * session before it touches memory). Until a session answer has been seen, and for a
     * channel brokering the environment key (which the memory endpoints reject) or with
     * RC_APICHAN_NO_MEMORY_LEARNING, memory paths are refused. */
    rc_apichan_scope scope;
    const char *credential;  /* bearer value: copied into locked memory; the caller wipes its own */
    int credential_kind;     /* enum rc_apichan_credential_kind (audited, never the value) */
    size_t max_connections;  /* 0 = RC_APICHAN_CONNECTIONS_DEFAULT */
    size_t max_request_body; /* 0 = RC_APICHAN_BODY_MAX_DEFAULT */
    size_t max_response_body; /* non-stream responses; 0 = RC_APICHAN_RESPONSE_MAX_DEFAULT */
    long idle_timeout_ms;     /* 0 = RC_APICHAN_IDLE_MS_DEFAULT */
    long read_timeout_ms;     /* 0 = RC_APICHAN_READ_MS_DEFAULT */
    long upstream_timeout_ms; /* non-stream exchanges; 0 = RC_APICHAN_UPSTREAM_MS_DEFAULT */
    long connect_timeout_ms;  /* 0 = RC_APICHAN_CONNECT_MS_DEFAULT */
    int audit_fd;             /* JSON audit lines go here; -1 = through rc_log */
    /* Where to keep the heartbeat record (see "the heartbeat record" above), or NULL for none.
     * Its directory must exist and be root-only; the file is replaced (tmp + rename, mode 0600)
     * after every 200 answer to the work item's heartbeat that the channel relays. */
    const char *heartbeat_record_path;
    /* The running tool calls the local route replaces (borrowed; must outlive the channel).
     * NULL: the route is still answered (and its body checked) but the set goes nowhere. */
    rc_audit_calls *running_calls;
} rc_apichan_config;

typedef struct rc_apichan rc_apichan;

/* Validate cfg, copy it, lock the credential in memory and create the listening socket (mode
 * 0600, owned by allowed_uid:socket_gid, put in place with an atomic rename). Nothing is
 * served until rc_apichan_start. */
int rc_apichan_new(const rc_apichan_config *cfg, rc_apichan **ret_chan, rc_error *err);
/* Start the accept thread; connections are served on their own threads. */
int rc_apichan_start(rc_apichan *ch, rc_error *err);
/* Stop accepting, abort every open connection and upstream transfer, and wait for their threads
 * to end. Idempotent; safe to call from any thread except a connection thread. */
void rc_apichan_stop(rc_apichan *ch);
/* Stop, remove the socket file (if it is still ours), wipe and unlock the credential. NULL ok. */
void rc_apichan_free(rc_apichan *ch);

/* Connections served so far and refused (peer uid, capacity), for tests and stats. */
typedef struct rc_apichan_stats {
    unsigned long long accepted;
    unsigned long long refused_peer;
    unsigned long long refused_capacity;
    unsigned long long requests;
    unsigned long long forbidden;
    unsigned active;
} rc_apichan_stats;

void rc_apichan_get_stats(rc_apichan *ch, rc_apichan_stats *ret);

#endif
