/* api.c - the Managed Agents API client (see api.h for the contract).
 *
 * Every call funnels through api_send(): headers are assembled in one wiped buffer (it holds
 * the bearer line), the transport does the retries, and the response is decoded per §2.5 or,
 * for a non-2xx, per §2.6. A hostile or confused server may echo the credential back, so every
 * string that leaves this file from an error answer (rc_error message, result fields, the
 * parsed error body) is scrubbed of the credential at full length before it is truncated. */
#include "api.h"

#include "cleanup.h"
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HEADERS_MAX    16
#define HEADER_BUF_MAX 16384
#define PATH_MAX_LEN   4096
#define QUERY_MAX_LEN  8192
#define CURSOR_MAX_LEN 4096
#define REDACTED       "[REDACTED]"
#define ACCEPT_JSON    "accept: application/json"
#define ACCEPT_SSE     "accept: text/event-stream"

struct rc_api {
    rc_http_client *http;
    char *credential; /* NULL when the broker injects it */
    char *version;
    char *beta;
};

/* ---- credential hygiene ------------------------------------------------------------------- */

/* Replace every occurrence of secret in s, in place; the string never grows. */
static void scrub_secret(char *s, const char *secret)
{
    size_t slen, rl = strlen(REDACTED);
    char *p;

    if (!s || !secret || !*secret)
        return;
    slen = strlen(secret);
    while ((p = strstr(s, secret)) != NULL) {
        if (slen >= rl) {
            memcpy(p, REDACTED, rl);
            memmove(p + rl, p + slen, strlen(p + slen) + 1);
        } else {
            memset(p, '*', slen);
        }
    }
}

/* A value cut to fit a fixed field may end in the first part of the secret: mask such a tail
 * when it is long enough to matter (8 bytes or more). */
static void scrub_secret_tail(char *s, const char *secret)
{
    size_t len, slen;

    if (!s || !secret)
        return;
    len = strlen(s);
    slen = strlen(secret);
    for (size_t k = slen - 1 < len ? slen - 1 : len; k >= 8 && slen > 0; k--) {
        if (strncmp(s + len - k, secret, k) == 0) {
            memset(s + len - k, '*', k);
            return;
        }
    }
}

static void scrub_text(const rc_api *api, char *s)
{
    scrub_secret(s, api->credential);
    scrub_secret_tail(s, api->credential);
    rc_redact(s);
}

static void scrub_json(const rc_api *api, cJSON *j)
{
    for (; j; j = j->next) {
        if (cJSON_IsString(j) && j->valuestring)
            scrub_text(api, j->valuestring);
        if (j->string)
            scrub_text(api, j->string);
        if (j->child)
            scrub_json(api, j->child);
    }
}

static void scrub_error(const rc_api *api, rc_error *err)
{
    if (err)
        scrub_text(api, err->msg);
}

/* ---- client ------------------------------------------------------------------------------- */

static int check_header_value(const char *v, const char *what, rc_error *err)
{
    if (v && strpbrk(v, "\r\n"))
        return rc_error_set(err, RC_EINVAL, "%s contains a line break", what);
    return 0;
}

int rc_api_new(const rc_api_config *cfg, rc_api **ret_api, rc_error *err)
{
    rc_api *api;
    int r;

    if (cfg->credential && (!*cfg->credential || strpbrk(cfg->credential, "\r\n \t")))
        return rc_error_set(err, RC_EINVAL, "credential is empty or contains whitespace");
    if ((r = check_header_value(cfg->anthropic_version, "anthropic-version", err)) < 0 ||
        (r = check_header_value(cfg->beta, "anthropic-beta", err)) < 0)
        return r;
    api = calloc(1, sizeof *api);
    if (!api)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    api->version = strdup(cfg->anthropic_version ? cfg->anthropic_version : RC_API_VERSION_DEFAULT);
    api->beta = strdup(cfg->beta ? cfg->beta : RC_API_BETA_DEFAULT);
    api->credential = cfg->credential ? strdup(cfg->credential) : NULL;
    if (!api->version || !api->beta || (cfg->credential && !api->credential))
        r = rc_error_set(err, RC_ENOMEM, "out of memory");
    else
        r = rc_http_client_new(&cfg->http, &api->http, err);
    if (r < 0) {
        rc_api_free(api);
        return r;
    }
    *ret_api = api;
    return 0;
}

void rc_api_free(rc_api *api)
{
    if (!api)
        return;
    rc_http_client_free(api->http);
    if (api->credential) {
        explicit_bzero(api->credential, strlen(api->credential));
        free(api->credential);
    }
    free(api->version);
    free(api->beta);
    free(api);
}

rc_http_client *rc_api_http(rc_api *api)
{
    return api->http;
}

/* ---- results ------------------------------------------------------------------------------ */

void rc_api_result_free(rc_api_result *r)
{
    cJSON_Delete(r->json);
    cJSON_Delete(r->error_body);
    free(r->text);
    *r = (rc_api_result)RC_API_RESULT_INIT;
}

bool rc_api_result_is_empty(const rc_api_result *r)
{
    return r->kind == RC_API_BODY_NONE || r->kind == RC_API_BODY_EMPTY ||
           (r->kind == RC_API_BODY_JSON && cJSON_IsNull(r->json));
}

/* ---- headers ------------------------------------------------------------------------------ */

/* Header lines live NUL-separated in one buffer (wiped on free: it holds the bearer line);
 * offsets are turned into pointers once the buffer stops moving. */
struct headers {
    rc_buf buf;
    size_t off[HEADERS_MAX];
    size_t n;
    const char *lines[HEADERS_MAX + 1];
};

static void headers_free(struct headers *h)
{
    rc_buf_free(&h->buf);
}

__attribute__((format(printf, 3, 4))) static int headers_add(struct headers *h, rc_error *err,
                                                             const char *fmt, ...)
{
    va_list ap;
    int r;

    if (h->n == HEADERS_MAX)
        return rc_error_set(err, RC_ETOOBIG, "too many request headers");
    h->off[h->n] = h->buf.len;
    va_start(ap, fmt);
    r = rc_buf_vappendf(&h->buf, err, fmt, ap);
    va_end(ap);
    if (r < 0 || (r = rc_buf_putc(&h->buf, '\0', err)) < 0)
        return r;
    h->n++;
    return 0;
}

/* Name of a header line, blanks ignored, compared case-insensitively. */
static bool header_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    while (*line == ' ' || *line == '\t')
        line++;
    if (strncasecmp(line, name, n) != 0)
        return false;
    line += n;
    while (*line == ' ' || *line == '\t')
        line++;
    return *line == ':';
}

static bool is_credential_header(const char *line)
{
    return header_is(line, "authorization") || header_is(line, "x-api-key") ||
           header_is(line, "proxy-authorization");
}

/* True when the caller's extra headers name their own Accept (e.g. a binary download). */
static bool has_own_accept(const rc_api_request *req)
{
    for (const char *const *x = req->extra_headers; x && *x; x++)
        if (strncasecmp(*x, "accept:", 7) == 0)
            return true;
    return false;
}

static int headers_build(const rc_api *api, const rc_api_request *req, bool sse, bool has_body,
                         struct headers *h, rc_error *err)
{
    const char *beta = req->beta ? req->beta : api->beta;
    int r = 0;

    if ((r = check_header_value(req->beta, "anthropic-beta", err)) < 0 ||
        (r = headers_add(h, err, "anthropic-version: %s", api->version)) < 0 ||
        (*beta && (r = headers_add(h, err, "anthropic-beta: %s", beta)) < 0) ||
        (!has_own_accept(req) &&
         (r = headers_add(h, err, "%s", sse ? ACCEPT_SSE : ACCEPT_JSON)) < 0) ||
        (has_body && (r = headers_add(h, err, "content-type: application/json")) < 0) ||
        (api->credential &&
         (r = headers_add(h, err, "Authorization: Bearer %s", api->credential)) < 0))
        return r;
    for (const char *const *x = req->extra_headers; x && *x; x++) {
        if (is_credential_header(*x))
            return rc_error_set(err, RC_EINVAL, "credential headers are set by the client only");
        if ((r = headers_add(h, err, "%s", *x)) < 0)
            return r;
    }
    for (size_t i = 0; i < h->n; i++)
        h->lines[i] = h->buf.data + h->off[i];
    h->lines[h->n] = NULL;
    return 0;
}

/* ---- decoding ----------------------------------------------------------------------------- */

/* Whole-buffer JSON parse: no embedded NUL, no trailing bytes (require-null-terminated over
 * len + 1, the rc_buf terminator included). */
static int parse_json(const rc_buf *b, cJSON **ret_json)
{
    const char *end = NULL;
    cJSON *j;

    if (b->len == 0 || strlen(rc_buf_cstr(b)) != b->len)
        return -RC_EPARSE;
    j = cJSON_ParseWithLengthOpts(b->data, b->len + 1, &end, 1);
    if (!j)
        return -RC_EPARSE;
    *ret_json = j;
    return 0;
}

static int decode_success(const rc_api_request *req, rc_http_response *h, rc_api_result *res,
                          rc_error *err)
{
    if (h->status == 204) {
        res->kind = RC_API_BODY_NONE;
        return 0;
    }
    if (rc_http_content_type_is_json(h->content_type)) {
        if (h->body.len == 0) {
            res->kind = RC_API_BODY_EMPTY;
            return 0;
        }
        if (parse_json(&h->body, &res->json) < 0)
            return rc_error_set(err, RC_EPARSE, "%s %s: HTTP %ld body is not valid JSON",
                                req->method, req->path, h->status);
        res->kind = RC_API_BODY_JSON;
        return 0;
    }
    if (req->accept_any_body) {
        res->kind = RC_API_BODY_TEXT;
        return rc_buf_steal(&h->body, &res->text, &res->text_len, err);
    }
    return rc_error_set(err, RC_EPARSE, "%s %s: HTTP %ld answer has no JSON content-type",
                        req->method, req->path, h->status);
}

static void copy_json_string(const rc_api *api, char *dst, size_t dstsz, const cJSON *obj,
                             const char *name)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, name);
    dst[0] = '\0';
    if (cJSON_IsString(s) && s->valuestring) {
        snprintf(dst, dstsz, "%s", s->valuestring); /* already scrubbed at full length */
        scrub_text(api, dst);
    }
}

static void decode_error_body(const rc_api *api, rc_http_response *h, rc_api_result *res)
{
    const cJSON *e;
    cJSON *j = NULL;

    if (parse_json(&h->body, &j) < 0)
        return;
    scrub_json(api, j);
    res->error_body = j;
    e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (!cJSON_IsObject(e))
        return;
    copy_json_string(api, res->error_type, sizeof res->error_type, e, "type");
    copy_json_string(api, res->error_message, sizeof res->error_message, e, "message");
    copy_json_string(api, res->error_code, sizeof res->error_code,
                     cJSON_GetObjectItemCaseSensitive(e, "details"), "error_code");
}

/* The server's message goes last, so truncation only ever shortens the server's text. */
static int decode_error(const rc_api *api, const rc_api_request *req, rc_http_response *h,
                        rc_api_result *res, rc_error *err)
{
    int code = rc_http_is_fatal_4xx(h->status) ? RC_EFATAL : RC_ESTATUS;

    decode_error_body(api, h, res);
    return rc_error_set(err, code, "%s %s: HTTP %ld %s%s%s%s%s%s", req->method, req->path,
                        h->status, res->error_type[0] ? res->error_type : "(no error type)",
                        res->error_code[0] ? " [" : "", res->error_code,
                        res->error_code[0] ? "]" : "", res->error_message[0] ? ": " : "",
                        res->error_message);
}

/* ---- the call ----------------------------------------------------------------------------- */

struct api_stream {
    rc_http_headers_fn on_headers;
    rc_http_data_fn on_data;
    void *userdata;
    long inactivity_ms;
};

static int api_send(rc_api *api, const rc_api_request *req, const struct api_stream *st,
                    rc_api_result *res, rc_error *err)
{
    _cleanup_(headers_free) struct headers h = {.buf = RC_BUF_INIT(HEADER_BUF_MAX)};
    _cleanup_(rc_http_response_free) rc_http_response hresp = {0};
    _cleanup_free_ char *body = NULL;
    rc_http_request hr;
    int r;

    rc_api_result_free(res);
    if (req->json_body && !(body = cJSON_PrintUnformatted(req->json_body)))
        return rc_error_set(err, RC_ENOMEM, "out of memory serialising the request body");
    if ((r = headers_build(api, req, st != NULL, body != NULL, &h, err)) < 0)
        return r;
    hr = (rc_http_request){
        .method = req->method,
        .path = req->path,
        .query = req->query,
        .headers = h.lines,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = st ? RC_HTTP_NO_TIMEOUT : req->timeout_ms,
        .inactivity_ms = st ? st->inactivity_ms : 0,
        .deadline_mono_ms = req->deadline_mono_ms,
        .max_attempts = req->max_attempts,
        .on_headers = st ? st->on_headers : NULL,
        .on_data = st ? st->on_data : NULL,
        .userdata = st ? st->userdata : NULL,
    };
    r = rc_http_send(api->http, &hr, &hresp, err);
    res->attempts = hresp.attempts;
    if (r == 0) {
        res->status = hresp.status;
        snprintf(res->request_id, sizeof res->request_id, "%s", hresp.request_id);
        scrub_text(api, res->request_id); /* a header value, possibly cut mid-credential */
        if (hresp.status < 200 || hresp.status > 299)
            r = decode_error(api, req, &hresp, res, err);
        else if (!st)
            r = decode_success(req, &hresp, res, err);
    }
    if (r < 0)
        scrub_error(api, err);
    return r;
}

int rc_api_request_do(rc_api *api, const rc_api_request *req, rc_api_result *res, rc_error *err)
{
    return api_send(api, req, NULL, res, err);
}

int rc_api_call(rc_api *api, const char *method, const char *path, const char *query,
                const cJSON *json_body, rc_api_result *res, rc_error *err)
{
    rc_api_request req = {.method = method, .path = path, .query = query, .json_body = json_body};
    return api_send(api, &req, NULL, res, err);
}

/* ---- typed wrappers ----------------------------------------------------------------------- */

/* "/seg1/seg2/..." from a NULL-terminated list; every segment is percent-encoded and checked. */
static int build_path(rc_buf *p, rc_error *err, ...)
{
    va_list ap;
    const char *seg;
    int r = 0;

    va_start(ap, err);
    while ((seg = va_arg(ap, const char *)) != NULL)
        if ((r = rc_http_path_add_segment(p, seg, err)) < 0)
            break;
    va_end(ap);
    return r;
}

#define BUILD_PATH(p, err, ...) build_path(p, err, __VA_ARGS__, (const char *)NULL)

int rc_api_work_poll(rc_api *api, const char *env_id, const rc_api_poll_opts *opts,
                     rc_api_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(PATH_MAX_LEN);
    _cleanup_(rc_buf_free) rc_buf query = RC_BUF_INIT(QUERY_MAX_LEN);
    _cleanup_(rc_buf_free) rc_buf wid = RC_BUF_INIT(512);
    const char *extra[2] = {NULL, NULL};
    rc_api_request req = {.method = "GET"};
    int r;

    if ((r = BUILD_PATH(&path, err, "v1", "environments", env_id, "work", "poll")) < 0)
        return r;
    if (opts && opts->block_ms > 0 &&
        (r = rc_http_query_add_int(&query, "block_ms", opts->block_ms, err)) < 0)
        return r;
    if (opts && opts->reclaim_older_than_ms > 0 &&
        (r = rc_http_query_add_int(&query, "reclaim_older_than_ms", opts->reclaim_older_than_ms,
                                   err)) < 0)
        return r;
    if (opts && opts->worker_id) {
        if ((r = rc_buf_appendf(&wid, err, "Anthropic-Worker-ID: %s", opts->worker_id)) < 0)
            return r;
        extra[0] = rc_buf_cstr(&wid);
    }
    req.path = rc_buf_cstr(&path);
    req.query = rc_buf_cstr(&query);
    req.extra_headers = extra;
    if ((r = api_send(api, &req, NULL, res, err)) < 0)
        return r;
    if (rc_api_result_is_empty(res))
        return 0;
    if (!cJSON_IsObject(res->json))
        return rc_error_set(err, RC_EPARSE, "GET %s: poll answer is not a work object", req.path);
    return 1;
}

/* POST .../work/{wid}/{verb}; only stop accepts any 2xx body (§5.5.3). */
static int work_post(rc_api *api, const char *env_id, const char *work_id, const char *verb,
                     const char *query, const cJSON *body, int64_t deadline, bool any_body,
                     rc_api_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(PATH_MAX_LEN);
    rc_api_request req = {.method = "POST",
                          .query = query,
                          .json_body = body,
                          .deadline_mono_ms = deadline,
                          .accept_any_body = any_body};
    int r = BUILD_PATH(&path, err, "v1", "environments", env_id, "work", work_id, verb);
    if (r < 0)
        return r;
    req.path = rc_buf_cstr(&path);
    return api_send(api, &req, NULL, res, err);
}

int rc_api_work_ack(rc_api *api, const char *env_id, const char *work_id, rc_api_result *res,
                    rc_error *err)
{
    return work_post(api, env_id, work_id, "ack", NULL, NULL, 0, false, res, err);
}

int rc_api_work_heartbeat(rc_api *api, const char *env_id, const char *work_id,
                          const char *expected, long desired_ttl_seconds, int64_t deadline_mono_ms,
                          rc_api_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf query = RC_BUF_INIT(QUERY_MAX_LEN);
    int r;

    if ((r = rc_http_query_add(&query, "expected_last_heartbeat", expected, err)) < 0 ||
        (desired_ttl_seconds > 0 &&
         (r = rc_http_query_add_int(&query, "desired_ttl_seconds", desired_ttl_seconds, err)) < 0))
        return r;
    return work_post(api, env_id, work_id, "heartbeat", rc_buf_cstr(&query), NULL, deadline_mono_ms,
                     false, res, err);
}

int rc_api_work_stop(rc_api *api, const char *env_id, const char *work_id, bool force,
                     rc_api_result *res, rc_error *err)
{
    cJSON *body = cJSON_CreateObject();
    int r;

    if (!body || (force && !cJSON_AddTrueToObject(body, "force"))) {
        cJSON_Delete(body);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    r = work_post(api, env_id, work_id, "stop", NULL, body, 0, true, res, err);
    cJSON_Delete(body);
    return r;
}

int rc_api_session_get(rc_api *api, const char *session_id, rc_api_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(PATH_MAX_LEN);
    int r = BUILD_PATH(&path, err, "v1", "sessions", session_id);
    if (r < 0)
        return r;
    return rc_api_call(api, "GET", rc_buf_cstr(&path), NULL, NULL, res, err);
}

/* One page of the event list; *cursor becomes the next_page value ("" on the last page). */
static int events_page(rc_api *api, const char *path, rc_buf *cursor, rc_api_page_fn fn,
                       void *userdata, rc_api_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf query = RC_BUF_INIT(QUERY_MAX_LEN);
    const cJSON *data, *next;
    int r;

    if ((r = rc_http_query_add_int(&query, "limit", RC_API_LIST_LIMIT, err)) < 0 ||
        (cursor->len > 0 && (r = rc_http_query_add(&query, "page", rc_buf_cstr(cursor), err)) < 0))
        return r;
    if ((r = rc_api_call(api, "GET", path, rc_buf_cstr(&query), NULL, res, err)) < 0)
        return r;
    data = cJSON_GetObjectItemCaseSensitive(res->json, "data");
    if (!cJSON_IsArray(data))
        return rc_error_set(err, RC_EPARSE, "GET %s: event list has no data array", path);
    rc_buf_reset(cursor);
    next = cJSON_GetObjectItemCaseSensitive(res->json, "next_page");
    if (next && !cJSON_IsNull(next) && !cJSON_IsString(next))
        return rc_error_set(err, RC_EPARSE, "GET %s: next_page is not a string", path);
    if (cJSON_IsString(next) && (r = rc_buf_append_str(cursor, next->valuestring, err)) < 0)
        return r;
    r = fn(data, userdata, err);
    if (r > 0)
        rc_buf_reset(cursor); /* the caller asked to stop */
    return r < 0 ? r : 0;
}

int rc_api_events_list(rc_api *api, const char *session_id, rc_api_page_fn fn, void *userdata,
                       rc_api_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(PATH_MAX_LEN);
    _cleanup_(rc_buf_free) rc_buf cursor = RC_BUF_INIT(CURSOR_MAX_LEN);
    int r;

    if ((r = BUILD_PATH(&path, err, "v1", "sessions", session_id, "events")) < 0)
        return r;
    for (int page = 0; page < RC_API_LIST_MAX_PAGES; page++) {
        if ((r = events_page(api, rc_buf_cstr(&path), &cursor, fn, userdata, res, err)) < 0)
            return r;
        if (cursor.len == 0)
            return 0;
    }
    return rc_error_set(err, RC_ETOOBIG, "GET %s: more than %d pages", rc_buf_cstr(&path),
                        RC_API_LIST_MAX_PAGES);
}

int rc_api_events_send(rc_api *api, const char *session_id, const cJSON *event, rc_api_result *res,
                       rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(PATH_MAX_LEN);
    cJSON *body = cJSON_CreateObject(), *arr;
    rc_api_request req = {.method = "POST", .accept_any_body = true};
    int r;

    if ((r = BUILD_PATH(&path, err, "v1", "sessions", session_id, "events")) < 0) {
        cJSON_Delete(body);
        return r;
    }
    /* A reference: the caller's event is serialised in place, neither copied nor freed. */
    if (!body || !(arr = cJSON_AddArrayToObject(body, "events")) ||
        !cJSON_AddItemReferenceToArray(arr, (cJSON *)event)) {
        cJSON_Delete(body);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    req.path = rc_buf_cstr(&path);
    req.json_body = body;
    r = api_send(api, &req, NULL, res, err);
    cJSON_Delete(body);
    return r;
}

int rc_api_events_stream(rc_api *api, const char *session_id, rc_http_headers_fn on_headers,
                         rc_http_data_fn on_data, void *userdata, long inactivity_ms,
                         rc_api_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(PATH_MAX_LEN);
    struct api_stream st = {on_headers, on_data, userdata, inactivity_ms};
    rc_api_request req = {.method = "GET"};
    int r;

    if (!on_data)
        return rc_error_set(err, RC_EINVAL, "event stream needs a data callback");
    if ((r = BUILD_PATH(&path, err, "v1", "sessions", session_id, "events", "stream")) < 0)
        return r;
    req.path = rc_buf_cstr(&path);
    return api_send(api, &req, &st, res, err);
}
