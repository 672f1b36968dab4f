/* webhook_handler.c - the webhook route (see webhook_handler.h).
 *
 * Order of checks, each answering at once when it fails, so nothing is done for a delivery that
 * is not authentic: method (405), CONTENT_LENGTH (400/413, body not read), body read in full
 * (400), duplicate webhook-* headers (401), signature (401), envelope (400), event type
 * (200 ignored), webhook id in the dedupe table (503 in flight / 200 done), then the drain.
 * The signing key is only ever passed to rc_webhook_verify; log lines say which check failed. */
#include "webhook_handler.h"

#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "webhook.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define RUN_STARTED "session.status_run_started"
#define DISCARD_MAX (16u * 1024 * 1024) /* body bytes read and dropped before a 413 */
#define P_ID        "HTTP_WEBHOOK_ID"
#define P_TIMESTAMP "HTTP_WEBHOOK_TIMESTAMP"
#define P_SIGNATURE "HTTP_WEBHOOK_SIGNATURE"
#define ANSWER_MAX  4096

/* ---- parameters ---------------------------------------------------------------------------- */

const char *rc_fcgi_param(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

size_t rc_fcgi_param_count(char *const *envp, const char *name)
{
    size_t n = strlen(name), count = 0;
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            count++;
    return count;
}

const char *rc_fcgi_request_path(char *const *envp, char *buf, size_t n)
{
    const char *v = rc_fcgi_param(envp, "DOCUMENT_URI");
    size_t len;

    if (!v || !*v) {
        v = rc_fcgi_param(envp, "REQUEST_URI");
        if (!v || !*v)
            v = rc_fcgi_param(envp, "SCRIPT_NAME");
    }
    if (!v)
        v = "";
    len = strcspn(v, "?");
    if (len >= n)
        len = n - 1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return buf;
}

int rc_fcgi_content_length(const char *v, size_t max, size_t *ret, rc_error *err)
{
    size_t x = 0;

    if (!v || !*v) {
        *ret = 0;
        return 0;
    }
    if (v[0] == '0' && v[1] != '\0')
        return rc_error_set(err, RC_EINVAL, "CONTENT_LENGTH has a leading zero");
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return rc_error_set(err, RC_EINVAL, "CONTENT_LENGTH is not a decimal number");
        if (x > (max - (size_t)(*p - '0')) / 10)
            return rc_error_set(err, RC_ETOOBIG, "body larger than %zu bytes", max);
        x = x * 10 + (size_t)(*p - '0');
    }
    *ret = x;
    return 0;
}

bool rc_fcgi_signature_joined(const char *v)
{
    int commas = 0;
    char prev = ' ';

    for (const char *p = v; *p; prev = *p++) {
        if (*p == ' ') {
            if (prev == ',')
                return true;
            commas = 0;
        } else if (*p == ',' && ++commas > 1) {
            return true;
        }
    }
    return prev == ',';
}

/* ---- the pure part ------------------------------------------------------------------------- */

static void verdict_set(rc_fcgi_wh_verdict *v, enum rc_fcgi_wh_kind kind, int status,
                        const char *reason)
{
    v->kind = kind;
    v->http_status = status;
    v->reason = reason;
}

/* Copy s into dst (size n), cut at n - 1 bytes, non-printable bytes as '?'. */
static void copy_for_log(char *dst, size_t n, const char *s)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < n; i++)
        dst[i] = (s[i] > 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') ? s[i] : '?';
    dst[i] = '\0';
}

static bool duplicate_headers(char *const *envp, const char **reason)
{
    const char *sig = rc_fcgi_param(envp, P_SIGNATURE);

    if (rc_fcgi_param_count(envp, P_SIGNATURE) > 1 || (sig && rc_fcgi_signature_joined(sig))) {
        *reason = "duplicate webhook-signature header";
        return true;
    }
    if (rc_fcgi_param_count(envp, P_ID) > 1) {
        *reason = "duplicate webhook-id header";
        return true;
    }
    if (rc_fcgi_param_count(envp, P_TIMESTAMP) > 1) {
        *reason = "duplicate webhook-timestamp header";
        return true;
    }
    return false;
}

static bool verified(char *const *envp, const void *body, size_t len, const char *key, int64_t now,
                     rc_fcgi_wh_verdict *v)
{
    rc_webhook_headers h = {.id = rc_fcgi_param(envp, P_ID),
                            .timestamp = rc_fcgi_param(envp, P_TIMESTAMP),
                            .signature = rc_fcgi_param(envp, P_SIGNATURE)};

    v->verify_code = rc_webhook_verify(&h, body, len, key, now, NULL);
    if (v->verify_code == 0)
        return true;
    if (v->verify_code == -RC_WEBHOOK_E_BAD_KEY || !rc_webhook_is_rejection(v->verify_code))
        verdict_set(v, RC_FCGI_WH_ERROR, 500, "webhook verification could not run");
    else
        verdict_set(v, RC_FCGI_WH_BAD_SIGNATURE, 401, rc_webhook_strerror(v->verify_code));
    return false;
}

/* Envelope (18.5) of a verified body: data.type decides; the id must fit the dedupe table. */
static void read_envelope(char *const *envp, const void *body, size_t len, rc_fcgi_wh_verdict *v)
{
    const rc_json_limits lim = {.max_size = len ? len : 1, .max_depth = 32};
    _cleanup_json_ cJSON *root = NULL;
    const cJSON *data, *type, *sid, *id;
    const char *wid = rc_fcgi_param(envp, P_ID);

    if (!wid)
        wid = "";
    if (rc_json_parse(body, len, &lim, &root, NULL) < 0 || !cJSON_IsObject(root)) {
        verdict_set(v, RC_FCGI_WH_BAD_ENVELOPE, 400, "body is not a JSON object");
        return;
    }
    data = cJSON_GetObjectItemCaseSensitive(root, "data");
    type = cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "type") : NULL;
    if (!cJSON_IsString(type)) {
        verdict_set(v, RC_FCGI_WH_BAD_ENVELOPE, 400, "envelope has no data.type");
        return;
    }
    copy_for_log(v->event_type, sizeof v->event_type, type->valuestring);
    if (strcmp(type->valuestring, RUN_STARTED) != 0) {
        verdict_set(v, RC_FCGI_WH_IGNORED, 200, "event type not handled");
        return;
    }
    if (strlen(wid) > RC_FCGI_DEDUPE_ID_MAX) {
        verdict_set(v, RC_FCGI_WH_BAD_ENVELOPE, 400, "webhook-id too long");
        return;
    }
    sid = cJSON_GetObjectItemCaseSensitive(data, "id");
    if (cJSON_IsString(sid) && rc_id_valid(sid->valuestring, "sesn_"))
        snprintf(v->session_id, sizeof v->session_id, "%s", sid->valuestring);
    id = cJSON_GetObjectItemCaseSensitive(root, "id");
    v->envelope_id_differs = !cJSON_IsString(id) || strcmp(id->valuestring, wid) != 0;
    verdict_set(v, RC_FCGI_WH_PROCEED, 200, NULL);
}

void rc_fcgi_webhook_inspect(char *const *envp, const void *body, size_t len, const char *key,
                             int64_t now, rc_fcgi_wh_verdict *ret)
{
    const char *method = rc_fcgi_param(envp, "REQUEST_METHOD");
    const char *reason = NULL;

    memset(ret, 0, sizeof *ret);
    copy_for_log(ret->webhook_id, sizeof ret->webhook_id, rc_fcgi_param(envp, P_ID));
    if (!method || strcmp(method, "POST") != 0) {
        verdict_set(ret, RC_FCGI_WH_METHOD, 405, "method not allowed");
        return;
    }
    if (duplicate_headers(envp, &reason)) {
        verdict_set(ret, RC_FCGI_WH_DUPLICATE_HEADER, 401, reason);
        return;
    }
    if (!verified(envp, body, len, key, now, ret))
        return;
    read_envelope(envp, body, len, ret);
}

/* ---- responses ----------------------------------------------------------------------------- */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

void rc_fcgi_respond(FCGX_Request *req, int status, const char *content_type,
                     const char *extra_header, const char *body, size_t body_len)
{
    char head[512];
    int n;

    /* Formatted here: libfcgi's own printf knows no %zu. */
    n = snprintf(head, sizeof head,
                 "Status: %d %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n"
                 "Content-Length: %zu\r\n%s%s\r\n",
                 status, status_text(status), content_type, body_len,
                 extra_header ? extra_header : "", extra_header ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return;
    FCGX_PutStr(head, n, req->out);
    if (body_len)
        FCGX_PutStr(body, (int)body_len, req->out);
}

static void respond_json(FCGX_Request *req, int status, const char *extra_header, const char *json)
{
    rc_fcgi_respond(req, status, "application/json", extra_header, json, strlen(json));
}

/* ---- the I/O part -------------------------------------------------------------------------- */

struct delivery {
    rc_fcgi_worker *w;
    FCGX_Request *req;
    int64_t start_ms;
    enum rc_fcgi_outcome outcome;
    int status;
    const char *reason;
    rc_fcgi_wh_verdict v;
    rc_fcgi_drain_summary drain;
    bool drained;
};

static void finish(struct delivery *d, enum rc_fcgi_outcome o, int status, const char *reason,
                   const char *extra_header, const char *json)
{
    d->outcome = o;
    d->status = status;
    d->reason = reason;
    respond_json(d->req, status, extra_header, json);
}

/* Read and drop what is left of an oversized body (bounded), so the web server is not left
 * writing into a connection nobody reads. */
static void discard_body(FCGX_Stream *in)
{
    char junk[16384];
    size_t total = 0;
    int n;

    while (total < DISCARD_MAX && (n = FCGX_GetStr(junk, sizeof junk, in)) > 0)
        total += (size_t)n;
}

/* CONTENT_LENGTH checked and the body read in full into body; false when answered already. */
static bool read_body(struct delivery *d, rc_buf *body)
{
    const rc_fcgi_config *cfg = d->w->app->cfg;
    rc_error err = {0};
    size_t len = 0;
    int r, n;

    r = rc_fcgi_content_length(rc_fcgi_param(d->req->envp, "CONTENT_LENGTH"), cfg->max_body, &len,
                               &err);
    if (r == -RC_ETOOBIG) {
        discard_body(d->req->in);
        finish(d, RC_FCGI_OUT_TOO_LARGE, 413, "body too large", NULL,
               "{\"error\":\"request body too large\"}");
        return false;
    }
    if (r < 0) {
        finish(d, RC_FCGI_OUT_BAD_REQUEST, 400, "malformed CONTENT_LENGTH", NULL,
               "{\"error\":\"bad content length\"}");
        return false;
    }
    if (len > 0 && rc_buf_reserve(body, len, &err) < 0) {
        finish(d, RC_FCGI_OUT_ERROR, 500, "out of memory", NULL, "{\"error\":\"internal\"}");
        return false;
    }
    n = len ? FCGX_GetStr(body->data, (int)len, d->req->in) : 0;
    if (n < 0 || (size_t)n != len) {
        finish(d, RC_FCGI_OUT_BAD_REQUEST, 400, "body shorter than CONTENT_LENGTH", NULL,
               "{\"error\":\"incomplete body\"}");
        return false;
    }
    body->len = len;
    if (body->data)
        body->data[len] = '\0';
    return true;
}

/* The webhook-id exactly as received (verified, at most RC_FCGI_DEDUPE_ID_MAX bytes): the dedupe
 * key. v.webhook_id is a copy made safe for logs, where distinct ids could look alike. */
static const char *raw_id(const struct delivery *d)
{
    const char *id = rc_fcgi_param(d->req->envp, P_ID);
    return id ? id : "";
}

static void run_drain(struct delivery *d)
{
    rc_fcgi_app *app = d->w->app;
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(ANSWER_MAX);
    int status;
    enum rc_fcgi_outcome o;

    rc_fcgi_claim_drain(d->w, d->v.webhook_id, &d->drain);
    d->drained = true;
    rc_fcgi_metrics_drain(&app->metrics, &d->drain);
    status = rc_fcgi_drain_http_status(&d->drain);
    rc_fcgi_dedupe_finish(app->dedupe, raw_id(d), status == 200, rc_fcgi_now_ms());
    if (status == 200)
        o = d->drain.end == RC_FCGI_DRAIN_AT_CAPACITY ? RC_FCGI_OUT_AT_CAPACITY
                                                      : RC_FCGI_OUT_DRAINED;
    else
        o = status == 503 ? RC_FCGI_OUT_UNAVAILABLE : RC_FCGI_OUT_ERROR;
    if (rc_fcgi_drain_summary_json(&d->drain, &out, NULL) < 0) {
        finish(d, RC_FCGI_OUT_ERROR, 500, "answer too long", NULL, "{\"error\":\"internal\"}");
        return;
    }
    finish(d, o, status, rc_fcgi_drain_end_name(d->drain.end),
           status == 503 ? "Retry-After: 30" : NULL, rc_buf_cstr(&out));
}

/* Verified session.status_run_started: dedupe, then drain. */
static void proceed(struct delivery *d)
{
    rc_fcgi_app *app = d->w->app;
    int st = rc_fcgi_dedupe_begin(app->dedupe, raw_id(d), rc_fcgi_now_ms(), NULL);

    switch (st) {
    case RC_FCGI_DEDUPE_NEW: {
        run_drain(d);
        return;
    }
    case RC_FCGI_DEDUPE_DONE: {
        finish(d, RC_FCGI_OUT_DUPLICATE, 200, "already handled", NULL,
               "{\"status\":\"duplicate\"}");
        return;
    }
    case RC_FCGI_DEDUPE_IN_FLIGHT: {
        finish(d, RC_FCGI_OUT_IN_FLIGHT, 503, "same id in flight", "Retry-After: 5",
               "{\"status\":\"in_flight\"}");
        return;
    }
    default: {
        finish(d, RC_FCGI_OUT_UNAVAILABLE, 503, "dedupe table full", "Retry-After: 5",
               "{\"status\":\"busy\"}");
        return;
    }
    }
}

static void judge(struct delivery *d, const rc_buf *body)
{
    const rc_fcgi_config *cfg = d->w->app->cfg;
    rc_fcgi_wh_verdict *v = &d->v;

    rc_fcgi_webhook_inspect(d->req->envp, body->data ? body->data : "", body->len, cfg->webhook_key,
                            (int64_t)time(NULL), v);
    switch (v->kind) {
    case RC_FCGI_WH_PROCEED: {
        proceed(d);
        return;
    }
    case RC_FCGI_WH_IGNORED: {
        finish(d, RC_FCGI_OUT_IGNORED, 200, v->reason, NULL, "{\"status\":\"ignored\"}");
        return;
    }
    case RC_FCGI_WH_METHOD: {
        finish(d, RC_FCGI_OUT_METHOD, 405, v->reason, "Allow: POST",
               "{\"error\":\"method not allowed\"}");
        return;
    }
    case RC_FCGI_WH_DUPLICATE_HEADER:
    case RC_FCGI_WH_BAD_SIGNATURE: {
        finish(d, RC_FCGI_OUT_BAD_SIGNATURE, 401, v->reason, NULL,
               "{\"error\":\"invalid signature\"}");
        return;
    }
    case RC_FCGI_WH_BAD_ENVELOPE: {
        finish(d, RC_FCGI_OUT_BAD_REQUEST, 400, v->reason, NULL,
               "{\"error\":\"malformed envelope\"}");
        return;
    }
    case RC_FCGI_WH_ERROR: {
        finish(d, RC_FCGI_OUT_ERROR, 500, v->reason, NULL, "{\"error\":\"internal\"}");
        return;
    }
    }
}

static void log_delivery(const struct delivery *d, int64_t ms)
{
    const rc_fcgi_drain_summary *s = &d->drain;
    int level = d->status == 500 ? RC_LOG_ERROR : d->status >= 400 ? RC_LOG_WARN : RC_LOG_INFO;

    rc_log_set_context(d->v.session_id[0] ? d->v.session_id : NULL, NULL);
    if (d->drained)
        rc_log(level,
               "webhook %s: %d %s (%s) in %lld ms: claimed %d, handed off %d, refused %d, "
               "hand-off failed %d, non-session %d, malformed %d, skipped %d, ack failed %d, "
               "stopped %d, stop failed %d, polls %d",
               d->v.webhook_id, d->status, rc_fcgi_outcome_name(d->outcome), d->reason,
               (long long)ms, s->claimed, s->handed_off, s->refused, s->handoff_failed,
               s->not_session, s->malformed, s->unusable, s->ack_failed, s->stopped, s->stop_failed,
               s->polls);
    else
        rc_log(level, "webhook %s: %d %s (%s)%s%s in %lld ms",
               d->v.webhook_id[0] ? d->v.webhook_id : "-", d->status,
               rc_fcgi_outcome_name(d->outcome), d->reason ? d->reason : "-",
               d->v.event_type[0] ? ", type " : "", d->v.event_type, (long long)ms);
    if (d->v.envelope_id_differs)
        rc_log_warn("webhook %s: the envelope id differs from webhook-id (deduped on webhook-id)",
                    d->v.webhook_id);
    rc_log_set_context(NULL, NULL);
}

void rc_fcgi_webhook_serve(rc_fcgi_worker *w, FCGX_Request *req)
{
    rc_fcgi_app *app = w->app;
    _cleanup_(rc_buf_free) rc_buf body = RC_BUF_INIT(app->cfg->max_body);
    struct delivery d = {.w = w, .req = req, .start_ms = rc_fcgi_now_ms()};
    const char *method = rc_fcgi_param(req->envp, "REQUEST_METHOD");
    int64_t ms;

    atomic_fetch_add(&app->metrics.in_flight, 1);
    copy_for_log(d.v.webhook_id, sizeof d.v.webhook_id, rc_fcgi_param(req->envp, P_ID));
    if (!method || strcmp(method, "POST") != 0) {
        finish(&d, RC_FCGI_OUT_METHOD, 405, "method not allowed", "Allow: POST",
               "{\"error\":\"method not allowed\"}");
    } else if (read_body(&d, &body)) {
        judge(&d, &body);
    }
    ms = rc_fcgi_now_ms() - d.start_ms;
    rc_fcgi_metrics_webhook(&app->metrics, d.outcome, (double)ms / 1000.0);
    atomic_fetch_sub(&app->metrics.in_flight, 1);
    log_delivery(&d, ms);
}
