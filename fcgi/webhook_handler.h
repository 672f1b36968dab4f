/* webhook_handler.h - POST <webhook path>: from FastCGI request to answer (protocol 18.8).
 *
 * Split in two. rc_fcgi_webhook_inspect() is pure (parameters + body + clock in, verdict out):
 * method, duplicate webhook headers, Standard Webhooks verification, envelope parsing and event
 * type; the fuzz target and the unit tests drive it directly. rc_fcgi_webhook_serve() does the
 * I/O around it: strict CONTENT_LENGTH, the body cap, reading the body, dedupe, the drain, the
 * answer, metrics and the one log line per delivery.
 *
 * Parameters are the FastCGI environment (FCGX_Request.envp): nginx passes every request header
 * as HTTP_<NAME>, and nginx 1.22 passes a repeated header as repeated parameters (newer nginx
 * joins them with ", "); both forms of a duplicated signature header are refused. */
#ifndef RUNCELL_FCGI_WEBHOOK_HANDLER_H
#define RUNCELL_FCGI_WEBHOOK_HANDLER_H

#include "app.h"
#include "dedupe.h"
#include "err.h"

#include <fcgiapp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- FastCGI parameters -------------------------------------------------------------------- */

/* First value of name in envp ("NAME=value" strings), NULL when absent. */
const char *rc_fcgi_param(char *const *envp, const char *name);
/* How many times name occurs in envp. */
size_t rc_fcgi_param_count(char *const *envp, const char *name);
/* The request path: DOCUMENT_URI, else REQUEST_URI up to '?', else SCRIPT_NAME; copied into buf
 * (cut to n - 1 bytes). Returns buf ("" when none is set). */
const char *rc_fcgi_request_path(char *const *envp, char *buf, size_t n);
/* CONTENT_LENGTH, strictly: absent or empty = 0, else only ASCII digits (no sign, no spaces), no
 * leading zero unless the value is "0". -RC_EINVAL when malformed, -RC_ETOOBIG above max. */
int rc_fcgi_content_length(const char *v, size_t max, size_t *ret, rc_error *err);
/* True when a webhook-signature value looks like several headers joined into one: an entry
 * (space-separated) holding more than one ',' or ending in ','. A genuine value is one or more
 * "v1,<base64>" entries separated by single spaces. */
bool rc_fcgi_signature_joined(const char *v);

/* ---- the pure part ------------------------------------------------------------------------- */

enum rc_fcgi_wh_kind {
    RC_FCGI_WH_PROCEED = 0,      /* verified session.status_run_started: dedupe and drain */
    RC_FCGI_WH_IGNORED,          /* verified, another event type: 200 {"status":"ignored"} */
    RC_FCGI_WH_METHOD,           /* 405 */
    RC_FCGI_WH_DUPLICATE_HEADER, /* 401: a webhook-* header given more than once */
    RC_FCGI_WH_BAD_SIGNATURE,    /* 401: verification refused the delivery */
    RC_FCGI_WH_BAD_ENVELOPE,     /* 400: verified, but not an envelope we can read */
    RC_FCGI_WH_ERROR,            /* 500: our side failed (unusable key, out of memory) */
};

#define RC_FCGI_EVENT_TYPE_MAX 64

typedef struct rc_fcgi_wh_verdict {
    enum rc_fcgi_wh_kind kind;
    int http_status;
    const char *reason;                         /* static text for the log line, never a secret */
    int verify_code;                            /* rc_webhook_verify's result when it ran */
    bool envelope_id_differs;                   /* the body's id is not the webhook-id (logged) */
    char webhook_id[RC_FCGI_DEDUPE_ID_MAX + 1]; /* "" until known; cut for logs when longer */
    char event_type[RC_FCGI_EVENT_TYPE_MAX];    /* data.type ("" when unknown; cut) */
    char session_id[RC_FCGI_ID_MAX + 1];        /* data.id when it is a well-formed sesn_ id */
} rc_fcgi_wh_verdict;

/* Judge one delivery: envp holds the request parameters, body/len the raw body (already capped),
 * key the whsec_ signing key, now the Unix time. Always fills *ret. */
void rc_fcgi_webhook_inspect(char *const *envp, const void *body, size_t len, const char *key,
                             int64_t now, rc_fcgi_wh_verdict *ret);

/* ---- the I/O part -------------------------------------------------------------------------- */

/* Serve one webhook request on req (already accepted) and write the answer. */
void rc_fcgi_webhook_serve(rc_fcgi_worker *w, FCGX_Request *req);

/* Write a complete FastCGI response: status line, content type, no-store, body. extra_header
 * (NULL = none) is one "Name: value" line without CRLF. */
void rc_fcgi_respond(FCGX_Request *req, int status, const char *content_type,
                     const char *extra_header, const char *body, size_t body_len);

#endif
