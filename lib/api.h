/* api.h - Managed Agents API client over rc_http (protocol.md §2.3-2.6, §5, §8, §9).
 *
 * Adds what every call needs on top of the transport: the anthropic-version and anthropic-beta
 * headers, the bearer credential (held in memory only, wiped on free, never logged and never in
 * an error message; x-api-key is never sent), a JSON content-type only when there is a body, the
 * response decoding of §2.5 and the error body of §2.6. A non-2xx answer is -RC_ESTATUS, or
 * -RC_EFATAL for a fatal 4xx (§2.7.2), with the error's type, message and details.error_code in
 * the result object.
 *
 * The generic entry point is rc_api_call(); thin typed wrappers cover the calls the worker makes
 * (poll, ack, heartbeat, stop, session retrieve, event list/send/stream). Like rc_http_client,
 * an rc_api object is used by one thread at a time: create one per thread. */
#ifndef RUNCELL_API_H
#define RUNCELL_API_H

#include "err.h"
#include "http.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_API_VERSION_DEFAULT "2023-06-01"
#define RC_API_BETA_DEFAULT    "managed-agents-2026-04-01"
#define RC_API_BETA_MEMORY     "agent-memory-2026-07-22"
#define RC_API_BETA_NONE       ""   /* rc_api_request.beta for skill calls */
#define RC_API_LIST_LIMIT      1000 /* §9.1: the runner always lists with limit=1000 */
#define RC_API_LIST_MAX_PAGES  10000

typedef struct rc_api_config {
    rc_http_config http;           /* transport (base URL or unix socket, timeouts, caps) */
    const char *credential;        /* bearer credential, copied; NULL = none (the broker adds it) */
    const char *anthropic_version; /* NULL = RC_API_VERSION_DEFAULT */
    const char *beta; /* default anthropic-beta; NULL = RC_API_BETA_DEFAULT, "" = none */
} rc_api_config;

typedef struct rc_api rc_api;

int rc_api_new(const rc_api_config *cfg, rc_api **ret_api, rc_error *err);
/* Wipes the credential. */
void rc_api_free(rc_api *api);
/* The transport, e.g. for rc_http_client_cancel(). */
rc_http_client *rc_api_http(rc_api *api);

enum rc_api_body {
    RC_API_BODY_NONE = 0, /* 204 (§2.5.1): null, body not read */
    RC_API_BODY_EMPTY,    /* JSON content-type with an empty body (§2.5.2) */
    RC_API_BODY_JSON,     /* parsed JSON (§2.5.3); the literal null is a cJSON null item */
    RC_API_BODY_TEXT,     /* non-JSON body, only when the request allows it (§2.5.4) */
};

/* Result of one call. The caller initialises it with RC_API_RESULT_INIT, passes it to any
 * number of calls (each one frees and resets it first) and frees it with rc_api_result_free().
 * It is filled whenever an HTTP response arrived, including on -RC_ESTATUS / -RC_EFATAL, so
 * the error fields can be inspected; after other failures only attempts is meaningful. */
typedef struct rc_api_result {
    long status;
    int attempts;
    enum rc_api_body kind;
    cJSON *json; /* RC_API_BODY_JSON */
    char *text;  /* RC_API_BODY_TEXT, NUL-terminated */
    size_t text_len;
    char request_id[128];
    /* non-2xx (§2.6); empty strings when the body did not carry them */
    char error_type[64];
    char error_message[512];
    char error_code[64]; /* error.details.error_code */
    cJSON *error_body;   /* the whole parsed error body (e.g. details.current_state), or NULL */
} rc_api_result;

#define RC_API_RESULT_INIT                                                                         \
    {                                                                                              \
        0                                                                                          \
    }

void rc_api_result_free(rc_api_result *r);
/* An "empty" answer in any of the forms of §5.2.6: 204, JSON with no bytes, JSON null. */
bool rc_api_result_is_empty(const rc_api_result *r);

typedef struct rc_api_request {
    const char *method;
    const char *path;       /* absolute, already encoded (rc_http_path_add_segment) */
    const char *query;      /* built with rc_http_query_add, no '?'; NULL = none */
    const cJSON *json_body; /* serialised compactly; NULL = no body (no content-type) */
    const char *beta;       /* NULL = the client's default; RC_API_BETA_NONE = no header */
    const char *const *extra_headers; /* NULL-terminated "Name: value"; never credentials */
    bool accept_any_body;     /* a 2xx non-JSON body becomes RC_API_BODY_TEXT, not an error */
    long timeout_ms;          /* per attempt; 0 = the client's */
    int64_t deadline_mono_ms; /* whole call, retries included; 0 = none (see rc_http_request) */
    int max_attempts;         /* 0 = the client's */
} rc_api_request;

int rc_api_request_do(rc_api *api, const rc_api_request *req, rc_api_result *res, rc_error *err);

/* Generic call with the client's defaults: 0 on 2xx (see res->kind), -RC_ESTATUS / -RC_EFATAL
 * on another status, -RC_EPARSE on an undecodable 2xx body, transport codes from rc_http_send. */
int rc_api_call(rc_api *api, const char *method, const char *path, const char *query,
                const cJSON *json_body, rc_api_result *res, rc_error *err);

/* ---- typed wrappers ---------------------------------------------------------------------- */

typedef struct rc_api_poll_opts {
    int block_ms;               /* 0 = omitted (non-blocking) */
    long reclaim_older_than_ms; /* 0 = omitted */
    const char *worker_id;      /* Anthropic-Worker-ID; NULL = omitted */
} rc_api_poll_opts;

/* §5.2: 1 with res->json = the work object, 0 when the queue is empty (any form of 5.2.6). */
int rc_api_work_poll(rc_api *api, const char *env_id, const rc_api_poll_opts *opts,
                     rc_api_result *res, rc_error *err);
/* §5.3, no body. */
int rc_api_work_ack(rc_api *api, const char *env_id, const char *work_id, rc_api_result *res,
                    rc_error *err);
/* §5.4: expected = last_heartbeat echoed (or "NO_HEARTBEAT"; NULL omits it); desired_ttl 0
 * omits it; deadline_mono_ms cuts the whole call off (§7.4), 0 = none. */
int rc_api_work_heartbeat(rc_api *api, const char *env_id, const char *work_id,
                          const char *expected, long desired_ttl_seconds, int64_t deadline_mono_ms,
                          rc_api_result *res, rc_error *err);
/* §5.5: body {"force":true} or {}; any 2xx is success (200 with any body, or 204). */
int rc_api_work_stop(rc_api *api, const char *env_id, const char *work_id, bool force,
                     rc_api_result *res, rc_error *err);
/* §8.1 */
int rc_api_session_get(rc_api *api, const char *session_id, rc_api_result *res, rc_error *err);

/* Called with each page's "data" array. Return 0 for the next page, > 0 to stop early
 * (rc_api_events_list then returns 0), < 0 to fail with that code. */
typedef int (*rc_api_page_fn)(const cJSON *data, void *userdata, rc_error *err);

/* §9.1: every page with limit=1000, following next_page until it is null or empty. res holds
 * the last response (or the failing one). */
int rc_api_events_list(rc_api *api, const char *session_id, rc_api_page_fn fn, void *userdata,
                       rc_api_result *res, rc_error *err);
/* §9.3: POST {"events":[event]} (one event per request). */
int rc_api_events_send(rc_api *api, const char *session_id, const cJSON *event, rc_api_result *res,
                       rc_error *err);

/* §9.2: open the SSE stream. on_headers fires once the 2xx headers are in (list history then,
 * §9.2.9), then on_data gets the raw bytes for the caller's SSE parser. Returns 0 when the
 * server ended the stream, -RC_ETIMEOUT after inactivity_ms without a byte (0 = no limit),
 * -RC_ECANCELED when a callback or the client's cancel token stopped it, -RC_ESTATUS /
 * -RC_EFATAL for an error answer (decoded into res). */
int rc_api_events_stream(rc_api *api, const char *session_id, rc_http_headers_fn on_headers,
                         rc_http_data_fn on_data, void *userdata, long inactivity_ms,
                         rc_api_result *res, rc_error *err);

#endif
