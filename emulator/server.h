/* server.h - what route handlers see of the HTTP layer (server.c): the per-request context, the
 * response they fill, the authenticated credential, and helpers for error bodies, JSON bodies,
 * query parameters, pagination, parking (long-poll) and credential scope checks.
 *
 * A handler runs with rc_em.lock held, fills c->resp (through the helpers) and returns 0; it never
 * blocks. To wait (long-poll), it parks the request; server.c calls it again when woken. */
#ifndef RUNCELL_EMULATOR_SERVER_H
#define RUNCELL_EMULATOR_SERVER_H

#include "em.h"

#include <microhttpd.h>

typedef struct rc_em_req {
    rc_em *em;
    struct MHD_Connection *conn;
    char *method;
    char *raw_path;  /* as sent, before '?' (request log) */
    char *raw_query; /* as sent, after '?'; NULL when absent */
    char *url;       /* decoded path from libmicrohttpd (routing) */
    rc_buf body;
    bool headers_seen;
    bool too_big;
    int64_t start_ms;
    bool latency_done;
    bool fault_done;
    int fault_status;         /* injected status, 0 = none */
    int64_t poll_deadline_ms; /* long-poll deadline; 0 = not started */
    /* parking (suspended connection waiting for a deadline or an event) */
    bool parked;
    int64_t wake_at_ms;
    const rc_em_env *wait_env;
    struct rc_em_req *pnext, *pprev;
} rc_em_req;

typedef struct rc_em_resp {
    int status;
    char *body; /* owned; NULL = no body */
    size_t len;
    const char *content_type;    /* NULL = none */
    int should_retry;            /* x-should-retry: -1 absent, 0 false, 1 true */
    int retry_after;             /* seconds; 0 = absent */
    bool parked;                 /* the handler parked the request; no response yet */
    struct MHD_Response *stream; /* an SSE response (sse.c) */
} rc_em_resp;

typedef struct rc_em_auth {
    int kind;         /* RC_EM_CRED_* */
    rc_em_cred *cred; /* NULL for NONE */
} rc_em_auth;

typedef struct rc_em_ctx {
    rc_em *em;
    rc_em_req *req;
    struct MHD_Connection *conn;
    const char *method;
    char *params[4]; /* path parameters ('*' segments), in order */
    size_t nparams;
    cJSON *body; /* parsed JSON object, NULL when the body was empty */
    rc_em_auth auth;
    rc_em_resp resp;
    char request_id[RC_EM_ID_MAX];
} rc_em_ctx;

typedef int (*rc_em_handler)(rc_em_ctx *c);

/* Fill an error response (protocol.md 2.6.1); code (details.error_code) may be NULL. Returns 0. */
int rc_emsrv_error(rc_em_ctx *c, int status, const char *type, const char *code, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
#define rc_emsrv_bad(c, ...)      rc_emsrv_error((c), 400, "invalid_request_error", NULL, __VA_ARGS__)
#define rc_emsrv_notfound(c, ...) rc_emsrv_error((c), 404, "not_found_error", NULL, __VA_ARGS__)
/* A request object may hold only the members in keys (NULL-terminated): 0, or -1 having answered
 * 400 "<member>: Extra inputs are not permitted" (the real API's wording). obj NULL: 0. */
int rc_emsrv_check_keys(rc_em_ctx *c, const cJSON *obj, const char *const *keys);
/* "api_key", "environment_key", "session_token" or "none" (request log, error messages). */
const char *rc_emsrv_cred_name(int kind);

#define rc_emsrv_forbidden(c, ...) rc_emsrv_error((c), 403, "permission_error", NULL, __VA_ARGS__)
/* A JSON response; body is consumed. Returns 0 (500 on ENOMEM). */
int rc_emsrv_json(rc_em_ctx *c, int status, cJSON *body);
int rc_emsrv_empty(rc_em_ctx *c, int status);
/* Out of memory or another internal failure: 500 api_error. */
int rc_emsrv_internal(rc_em_ctx *c, const rc_error *err);

const char *rc_emsrv_query(rc_em_ctx *c, const char *key);
const char *rc_emsrv_header(rc_em_ctx *c, const char *name);
/* An optional integer query parameter in [lo, hi]: 1 and *ret when given, 0 when absent, -1
 * after filling a 400 response when malformed or out of range. */
int rc_emsrv_query_long(rc_em_ctx *c, const char *key, long lo, long hi, long *ret);

/* Pagination (9.1.1): limit (default RC_EM_PAGE_DEFAULT, 1..RC_EM_PAGE_MAX) and page cursor.
 * Returns 0 with the slice [*ret_start, *ret_start + *ret_count) of total and the next cursor
 * (malloc'd, or NULL on the last page), -1 after filling a 400 response. */
int rc_emsrv_page(rc_em_ctx *c, size_t total, size_t *ret_start, size_t *ret_count,
                  char **ret_next);
/* {"data": items, "next_page": next} (both consumed). */
int rc_emsrv_page_json(rc_em_ctx *c, cJSON *items, char *next);

/* Park the request until wake_at_ms or until env gets new work (env may be NULL). */
void rc_emsrv_park(rc_em_ctx *c, int64_t wake_at_ms, const rc_em_env *env);

/* Scope checks (3.2). Each returns 0 when the credential may act on the object, or fills a 403
 * and returns -1. API keys pass every check. */
int rc_emsrv_scope_env(rc_em_ctx *c, const rc_em_env *env);
int rc_emsrv_scope_session(rc_em_ctx *c, const rc_em_session *s);
int rc_emsrv_scope_work(rc_em_ctx *c, const rc_em_work *w);

/* Route handlers (routes_*.c, admin.c). */
int rc_emroute_env_create(rc_em_ctx *c);
int rc_emroute_env_list(rc_em_ctx *c);
int rc_emroute_env_get(rc_em_ctx *c);
int rc_emroute_env_update(rc_em_ctx *c);
int rc_emroute_env_delete(rc_em_ctx *c);
int rc_emroute_env_archive(rc_em_ctx *c);
int rc_emroute_work_poll(rc_em_ctx *c);
int rc_emroute_work_stats(rc_em_ctx *c);
int rc_emroute_work_list(rc_em_ctx *c);
int rc_emroute_work_get(rc_em_ctx *c);
int rc_emroute_work_update(rc_em_ctx *c);
int rc_emroute_work_ack(rc_em_ctx *c);
int rc_emroute_work_heartbeat(rc_em_ctx *c);
int rc_emroute_work_stop(rc_em_ctx *c);
int rc_emroute_agent_create(rc_em_ctx *c);
int rc_emroute_agent_list(rc_em_ctx *c);
int rc_emroute_agent_get(rc_em_ctx *c);
int rc_emroute_agent_update(rc_em_ctx *c);
int rc_emroute_agent_archive(rc_em_ctx *c);
int rc_emroute_session_create(rc_em_ctx *c);
int rc_emroute_session_list(rc_em_ctx *c);
int rc_emroute_session_get(rc_em_ctx *c);
int rc_emroute_session_update(rc_em_ctx *c);
int rc_emroute_session_archive(rc_em_ctx *c);
int rc_emroute_session_delete(rc_em_ctx *c);
int rc_emroute_events_list(rc_em_ctx *c);
int rc_emroute_events_send(rc_em_ctx *c);
int rc_emroute_events_stream(rc_em_ctx *c);
int rc_emroute_not_supported(rc_em_ctx *c);
int rc_emroute_skill_versions_list(rc_em_ctx *c);
int rc_emroute_skill_version_get(rc_em_ctx *c);
int rc_emroute_skill_content(rc_em_ctx *c);
int rc_emadmin_skill_create(rc_em_ctx *c);
int rc_emroute_memstore_create(rc_em_ctx *c);
int rc_emroute_memstore_list(rc_em_ctx *c);
int rc_emroute_memstore_get(rc_em_ctx *c);
int rc_emroute_memstore_update(rc_em_ctx *c);
int rc_emroute_memstore_delete(rc_em_ctx *c);
int rc_emroute_memstore_archive(rc_em_ctx *c);
int rc_emroute_memory_list(rc_em_ctx *c);
int rc_emroute_memory_create(rc_em_ctx *c);
int rc_emroute_memory_get(rc_em_ctx *c);
int rc_emroute_memory_update(rc_em_ctx *c);
int rc_emroute_memory_delete(rc_em_ctx *c);
int rc_emadmin_scenario_put(rc_em_ctx *c);
int rc_emadmin_key_mint(rc_em_ctx *c);
int rc_emadmin_key_revoke(rc_em_ctx *c);
int rc_emadmin_verdict(rc_em_ctx *c);
int rc_emadmin_requests(rc_em_ctx *c);
int rc_emadmin_faults(rc_em_ctx *c);
int rc_emadmin_stats(rc_em_ctx *c);
int rc_emadmin_healthcheck(rc_em_ctx *c);
int rc_emadmin_expire_lease(rc_em_ctx *c);

/* Validate an agent's tools (19.2.3, 17.13.2) and resolve every toolset config; on failure msg
 * says what is wrong (-RC_EINVAL). *ret is a new array. */
int rc_emroute_tools_resolve(const cJSON *tools, cJSON **ret, char *msg, size_t msgsz);

/* Session lookup shared by session and event routes: params[0] is the session id. Fills 404 or
 * 403 and returns NULL when the session is unknown or out of the credential's scope. */
rc_em_session *rc_emroute_session_lookup(rc_em_ctx *c);

/* Check the events of a send (or a session's initial_events, with s NULL and initial): fills a
 * 400/403 and returns -1 on the first bad one; calls[i] gets the tool call event i refers to. */
int rc_emroute_events_check(rc_em_ctx *c, rc_em_session *s, const cJSON *events, bool initial,
                            rc_em_call **calls);
/* Apply checked events in order, appending the echo of each to echoes. */
int rc_emroute_events_apply(rc_em_ctx *c, rc_em_session *s, const cJSON *events, rc_em_call **calls,
                            cJSON *echoes, rc_error *err);

/* memory.c: resolve a session create's `resources` (memory stores only, 19.3) into the 8.1
 * shape (name, description, access, mount_path filled). *ret NULL when absent; -1 after filling
 * a 400/404. */
int rc_emmem_session_resources(rc_em_ctx *c, const cJSON *in, cJSON **ret);

/* sse.c: open a stream on s into c->resp.stream (registering the subscriber first, 9.2.8). */
int rc_emsse_open(rc_em_ctx *c, rc_em_session *s);

/* server.c lifecycle (lock NOT held). */
int rc_emsrv_start(rc_em *em, rc_error *err);
void rc_emsrv_stop(rc_em *em);

#endif
