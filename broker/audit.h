/* audit.h - the egress audit log: one JSON line per proxied request or tunnel.
 *
 *   {"ts":"2026-11-23T17:42:12.123Z","session_id":"sesn_..","kind":"http","decision":"allow",
 *    "reason":"domain listed","rule":"api.example.com#0","action":"transform",
 *    "injected":["authorization"],"host":"api.example.com","port":80,"addr":"203.0.113.2",
 *    "method":"GET","path":"/v1/x","status":200,"bytes_up":312,"bytes_down":1045,
 *    "end":"complete","duration_ms":3.2}
 *
 * Absent fields are left out. The path is logged without its query string (queries often carry
 * tokens), injected headers are listed by NAME only, and the finished line also goes through
 * rc_redact (registered secrets, sk-ant-, Bearer) before it is written with a single write(2),
 * so concurrent writers never interleave. */
#ifndef RUNCELL_BROKER_AUDIT_H
#define RUNCELL_BROKER_AUDIT_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_AUDIT_LINE_MAX 16384u

typedef struct rc_audit rc_audit;

typedef struct rc_audit_record {
    const char *kind;     /* "connect" or "http" */
    const char *decision; /* "allow", "deny", "response" (answered by a policy rule), "error" */
    const char *reason;   /* why the decision was taken; never holds request data */
    const char *end;      /* how an allowed connection ended ("complete", "idle timeout"...) */
    const char *rule;     /* "domain" or "domain#index"; NULL when no entry matched */
    const char *action;   /* "tunnel", "forward", "transform", "response"; NULL for refusals */
    const char *const *injected; /* names of the headers a transform set */
    size_t n_injected;
    const char *host;
    unsigned port;      /* 0: absent */
    const char *addr;   /* the upstream address actually connected to */
    const char *method; /* plain HTTP only */
    const char *path;   /* plain HTTP only, without the query */
    int status;         /* HTTP status sent to the client (0: none, e.g. a tunnel) */
    uint64_t bytes_up;  /* client -> upstream */
    uint64_t bytes_down;
    uint64_t duration_us;
    /* The tool calls the runner reported running when the request was made (rc_audit_calls):
     * written as "tool_calls":[...] (possibly empty) when has_tool_calls is set. */
    bool has_tool_calls;
    const char *const *tool_calls;
    size_t n_tool_calls;
} rc_audit_record;

/* Append to path (created 0600 if missing, O_APPEND); "-" writes to stderr. The session id is
 * copied and put on every line. */
int rc_audit_open(const char *path, const char *session_id, rc_audit **ret, rc_error *err);
void rc_audit_close(rc_audit *a);

static inline void rc_audit_closep(rc_audit **a)
{
    if (*a)
        rc_audit_close(*a);
}

int rc_audit_write(rc_audit *a, const rc_audit_record *rec, rc_error *err);

/* Format one line (with its newline) into out; used by rc_audit_write and by tests. */
int rc_audit_format(const char *session_id, const rc_audit_record *rec, rc_buf *out, rc_error *err);

/* ---- the running tool calls (issue 11) -------------------------------------------------------
 * The set of tool-call ids the runner says are executing right now. The API channel replaces it
 * (PUT /_runcell/v1/running-tool-calls, from the runner's uid only) and the egress proxy copies
 * it when it decides to inject a credential, so that the audit line of the injection names the
 * calls that may have made the request. Ids only, never values. Thread-safe (one mutex). */
#define RC_AUDIT_CALLS_MAX   32  /* ids in the set */
#define RC_AUDIT_CALL_ID_MAX 128 /* characters of one id: [A-Za-z0-9_-] */

typedef struct rc_audit_call_ids {
    size_t n;
    char ids[RC_AUDIT_CALLS_MAX][RC_AUDIT_CALL_ID_MAX + 1];
} rc_audit_call_ids;

typedef struct rc_audit_calls rc_audit_calls;

/* The tool-use id shape: 1..RC_AUDIT_CALL_ID_MAX characters of [A-Za-z0-9_-]. */
bool rc_audit_call_id_ok(const char *id, size_t len);

int rc_audit_calls_new(rc_audit_calls **ret, rc_error *err);
void rc_audit_calls_free(rc_audit_calls *s);
/* Replace the set with ids (already validated). */
void rc_audit_calls_set(rc_audit_calls *s, const rc_audit_call_ids *ids);
/* Copy the current set into *ret. */
void rc_audit_calls_get(rc_audit_calls *s, rc_audit_call_ids *ret);

static inline void rc_audit_calls_freep(rc_audit_calls **s)
{
    if (*s)
        rc_audit_calls_free(*s);
}

#endif
