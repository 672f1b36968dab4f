/* server.c - the HTTP layer of runcell-emulator on libmicrohttpd: listening socket, request
 * bodies (capped), routing (literal segments beat parameters, 19.9), credential resolution by
 * lookup (never by prefix, 3.1.2), the beta/version header rules (2.3), error shapes (2.6), the
 * request log, injected faults (latency, HTTP errors), and parking.
 *
 * Event-driven: libmicrohttpd's internal epoll threads run every handler with the state lock
 * held for a short, non-blocking section. A request that must wait (a long-poll, injected
 * latency) is parked: its connection is suspended and resumed by an event (new work) or by the
 * ticker thread when its deadline passes; libmicrohttpd then calls the handler again. Streams
 * suspend inside their content reader (sse.c). One session therefore never blocks another. */
#include "server.h"

#include "cleanup.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define BETA_HEADER        "managed-agents-2026-04-01"
#define BETA_HEADER_LEGACY "environments-2026-03-01"
#define BETA_HEADER_MEMORY "agent-memory-2026-07-22"
#define LOG_BODY_MAX       4096

enum route_flags {
    ROUTE_BETA = 1,        /* requires anthropic-beta: managed-agents-2026-04-01 */
    ROUTE_ADMIN = 2,       /* /_emulator/v1: API key, no beta, not logged, no faults */
    ROUTE_BETA_MEMORY = 4, /* requires agent-memory-2026-07-22 (or managed-agents-2026-04-01) */
};

#define ANY_CRED (RC_EM_CRED_API_KEY | RC_EM_CRED_ENV_KEY | RC_EM_CRED_TOKEN)
#define API      RC_EM_CRED_API_KEY
#define API_ENV  (RC_EM_CRED_API_KEY | RC_EM_CRED_ENV_KEY)
#define API_TOK  (RC_EM_CRED_API_KEY | RC_EM_CRED_TOKEN)
#define MEMBETA  ROUTE_BETA_MEMORY

typedef struct route {
    const char *method;
    const char *pattern; /* '*' = one parameter segment; trailing "**" = any rest */
    int creds;
    int flags;
    rc_em_handler fn;
} route;

static const route routes[] = {
    {"POST", "/v1/environments", API, ROUTE_BETA, rc_emroute_env_create},
    {"GET", "/v1/environments", API, ROUTE_BETA, rc_emroute_env_list},
    {"GET", "/v1/environments/*", API, ROUTE_BETA, rc_emroute_env_get},
    {"POST", "/v1/environments/*", API, ROUTE_BETA, rc_emroute_env_update},
    {"DELETE", "/v1/environments/*", API, ROUTE_BETA, rc_emroute_env_delete},
    {"POST", "/v1/environments/*/archive", API, ROUTE_BETA, rc_emroute_env_archive},
    /* 3.2: poll takes the environment key; the API key is tolerated (it authorises everything);
     * a sessions token is out of scope (403). */
    {"GET", "/v1/environments/*/work/poll", API_ENV, ROUTE_BETA, rc_emroute_work_poll},
    {"GET", "/v1/environments/*/work/stats", API_ENV, ROUTE_BETA, rc_emroute_work_stats},
    {"GET", "/v1/environments/*/work", API_ENV, ROUTE_BETA, rc_emroute_work_list},
    {"GET", "/v1/environments/*/work/*", API, ROUTE_BETA, rc_emroute_work_get},
    {"POST", "/v1/environments/*/work/*", API, ROUTE_BETA, rc_emroute_work_update},
    {"POST", "/v1/environments/*/work/*/ack", ANY_CRED, ROUTE_BETA, rc_emroute_work_ack},
    {"POST", "/v1/environments/*/work/*/heartbeat", ANY_CRED, ROUTE_BETA,
     rc_emroute_work_heartbeat},
    {"POST", "/v1/environments/*/work/*/stop", ANY_CRED, ROUTE_BETA, rc_emroute_work_stop},
    {"POST", "/v1/agents", API, ROUTE_BETA, rc_emroute_agent_create},
    {"GET", "/v1/agents", API, ROUTE_BETA, rc_emroute_agent_list},
    {"GET", "/v1/agents/*", API, ROUTE_BETA, rc_emroute_agent_get},
    {"POST", "/v1/agents/*", API, ROUTE_BETA, rc_emroute_agent_update},
    {"POST", "/v1/agents/*/archive", API, ROUTE_BETA, rc_emroute_agent_archive},
    {"POST", "/v1/sessions", API, ROUTE_BETA, rc_emroute_session_create},
    {"GET", "/v1/sessions", API, ROUTE_BETA, rc_emroute_session_list},
    {"GET", "/v1/sessions/*", ANY_CRED, ROUTE_BETA, rc_emroute_session_get},
    {"POST", "/v1/sessions/*", API, ROUTE_BETA, rc_emroute_session_update},
    {"DELETE", "/v1/sessions/*", API, ROUTE_BETA, rc_emroute_session_delete},
    {"POST", "/v1/sessions/*/archive", API, ROUTE_BETA, rc_emroute_session_archive},
    {"GET", "/v1/sessions/*/events", ANY_CRED, ROUTE_BETA, rc_emroute_events_list},
    {"POST", "/v1/sessions/*/events", ANY_CRED, ROUTE_BETA, rc_emroute_events_send},
    {"GET", "/v1/sessions/*/events/stream", ANY_CRED, ROUTE_BETA, rc_emroute_events_stream},
    /* Skills (skills.c): any credential, no beta header (15.2, 22.4). */
    {"GET", "/v1/skills/*/versions", ANY_CRED, 0, rc_emroute_skill_versions_list},
    {"GET", "/v1/skills/*/versions/*", ANY_CRED, 0, rc_emroute_skill_version_get},
    {"GET", "/v1/skills/*/versions/*/content", ANY_CRED, 0, rc_emroute_skill_content},
    {"GET", "/v1/skills/**", ANY_CRED, 0, rc_emroute_not_supported},
    /* Memory stores (memory.c, 16): the API key, or a sessions token for stores attached to its
     * session; the environment key is refused here (403, 3.2). */
    {"POST", "/v1/memory_stores", API, MEMBETA, rc_emroute_memstore_create},
    {"GET", "/v1/memory_stores", API, MEMBETA, rc_emroute_memstore_list},
    {"GET", "/v1/memory_stores/*", API_TOK, MEMBETA, rc_emroute_memstore_get},
    {"POST", "/v1/memory_stores/*", API, MEMBETA, rc_emroute_memstore_update},
    {"DELETE", "/v1/memory_stores/*", API, MEMBETA, rc_emroute_memstore_delete},
    {"POST", "/v1/memory_stores/*/archive", API, MEMBETA, rc_emroute_memstore_archive},
    {"GET", "/v1/memory_stores/*/memories", API_TOK, MEMBETA, rc_emroute_memory_list},
    {"POST", "/v1/memory_stores/*/memories", API_TOK, MEMBETA, rc_emroute_memory_create},
    {"GET", "/v1/memory_stores/*/memories/*", API_TOK, MEMBETA, rc_emroute_memory_get},
    {"POST", "/v1/memory_stores/*/memories/*", API_TOK, MEMBETA, rc_emroute_memory_update},
    {"DELETE", "/v1/memory_stores/*/memories/*", API_TOK, MEMBETA, rc_emroute_memory_delete},
    {"GET", "/v1/memory_stores/**", API_TOK, MEMBETA, rc_emroute_not_supported},
    {"POST", "/v1/memory_stores/**", API_TOK, MEMBETA, rc_emroute_not_supported},
    {"DELETE", "/v1/memory_stores/**", API_TOK, MEMBETA, rc_emroute_not_supported},
    {"POST", "/_emulator/v1/scenarios", API, ROUTE_ADMIN, rc_emadmin_scenario_put},
    {"POST", "/_emulator/v1/skills", API, ROUTE_ADMIN, rc_emadmin_skill_create},
    {"POST", "/_emulator/v1/environments/*/keys", API, ROUTE_ADMIN, rc_emadmin_key_mint},
    {"POST", "/_emulator/v1/keys/revoke", API, ROUTE_ADMIN, rc_emadmin_key_revoke},
    {"GET", "/_emulator/v1/sessions/*/verdict", API, ROUTE_ADMIN, rc_emadmin_verdict},
    {"GET", "/_emulator/v1/requests", API, ROUTE_ADMIN, rc_emadmin_requests},
    {"POST", "/_emulator/v1/faults", API, ROUTE_ADMIN, rc_emadmin_faults},
    {"GET", "/_emulator/v1/stats", API, ROUTE_ADMIN, rc_emadmin_stats},
    {"POST", "/_emulator/v1/environments/*/healthcheck", API, ROUTE_ADMIN, rc_emadmin_healthcheck},
    {"POST", "/_emulator/v1/environments/*/work/*/expire_lease", API, ROUTE_ADMIN,
     rc_emadmin_expire_lease},
};

/* ---- response helpers ---- */

static void resp_reset(rc_em_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->content_type = NULL;
    r->should_retry = -1;
    r->retry_after = 0;
}

int rc_emsrv_json(rc_em_ctx *c, int status, cJSON *body)
{
    char *s = rc_emutil_print(body);
    cJSON_Delete(body);
    resp_reset(&c->resp);
    if (!s)
        return rc_emsrv_error(c, 500, "api_error", NULL, "out of memory");
    c->resp.status = status;
    c->resp.body = s;
    c->resp.len = strlen(s);
    c->resp.content_type = "application/json";
    return 0;
}

int rc_emsrv_empty(rc_em_ctx *c, int status)
{
    resp_reset(&c->resp);
    c->resp.status = status;
    return 0;
}

int rc_emsrv_error(rc_em_ctx *c, int status, const char *type, const char *code, const char *fmt,
                   ...)
{
    char msg[512];
    va_list ap;
    cJSON *o, *e;
    char *s;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "message", msg);
    if (code) {
        cJSON *d = cJSON_AddObjectToObject(e, "details");
        cJSON_AddStringToObject(d, "error_code", code);
    }
    cJSON_AddStringToObject(o, "request_id", c->request_id);
    s = rc_emutil_print(o);
    cJSON_Delete(o);
    resp_reset(&c->resp);
    c->resp.status = status;
    if (s) {
        c->resp.body = s;
        c->resp.len = strlen(s);
        c->resp.content_type = "application/json";
    }
    /* 2.7.4: final conflicts must not be retried by the SDK's core layer. */
    if (status == 409)
        c->resp.should_retry = 0;
    return 0;
}

int rc_emsrv_internal(rc_em_ctx *c, const rc_error *err)
{
    rc_log_error("internal error: %s", err && err->msg[0] ? err->msg : "unknown");
    return rc_emsrv_error(c, 500, "api_error", NULL, "internal error");
}

const char *rc_emsrv_query(rc_em_ctx *c, const char *key)
{
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *rc_emsrv_header(rc_em_ctx *c, const char *name)
{
    return MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, name);
}

int rc_emsrv_query_long(rc_em_ctx *c, const char *key, long lo, long hi, long *ret)
{
    const char *v = rc_emsrv_query(c, key);
    long n;
    if (!v)
        return 0;
    if (rc_emutil_parse_long(v, &n) < 0 || n < lo || n > hi) {
        rc_emsrv_bad(c, "%s: must be an integer between %ld and %ld", key, lo, hi);
        return -1;
    }
    *ret = n;
    return 1;
}

int rc_emsrv_page(rc_em_ctx *c, size_t total, size_t *ret_start, size_t *ret_count, char **ret_next)
{
    long limit = RC_EM_PAGE_DEFAULT, start = 0;
    const char *page = rc_emsrv_query(c, "page");
    size_t count;

    if (rc_emsrv_query_long(c, "limit", 1, RC_EM_PAGE_MAX, &limit) < 0)
        return -1;
    if (page && *page) {
        if (strncmp(page, "page_", 5) != 0 || rc_emutil_parse_long(page + 5, &start) < 0 ||
            start < 0) {
            rc_emsrv_bad(c, "page: invalid cursor");
            return -1;
        }
    }
    if ((size_t)start > total)
        start = (long)total;
    count = total - (size_t)start;
    if (count > (size_t)limit)
        count = (size_t)limit;
    *ret_next = NULL;
    /* 9.1.1: a cursor only when more items follow; never an empty page with a cursor. */
    if ((size_t)start + count < total) {
        char buf[32];
        snprintf(buf, sizeof(buf), "page_%zu", (size_t)start + count);
        *ret_next = strdup(buf);
    }
    *ret_start = (size_t)start;
    *ret_count = count;
    return 0;
}

int rc_emsrv_page_json(rc_em_ctx *c, cJSON *items, char *next)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "data", items);
    if (next)
        cJSON_AddStringToObject(o, "next_page", next);
    else
        cJSON_AddNullToObject(o, "next_page");
    free(next);
    return rc_emsrv_json(c, 200, o);
}

/* ---- scope checks ---- */

const char *rc_emsrv_cred_name(int kind)
{
    switch (kind) {
    case RC_EM_CRED_API_KEY:
        return "api_key";
    case RC_EM_CRED_ENV_KEY:
        return "environment_key";
    case RC_EM_CRED_TOKEN:
        return "session_token";
    }
    return "none";
}

int rc_emsrv_scope_env(rc_em_ctx *c, const rc_em_env *env)
{
    const rc_em_cred *cr = c->auth.cred;
    if (c->auth.kind == RC_EM_CRED_API_KEY)
        return 0;
    if (c->auth.kind == RC_EM_CRED_ENV_KEY && cr->env == env)
        return 0;
    if (c->auth.kind == RC_EM_CRED_TOKEN && cr->work->env == env)
        return 0;
    rc_emsrv_forbidden(c, "this %s is not valid for environment %s",
                       rc_emsrv_cred_name(c->auth.kind), env->id);
    return -1;
}

int rc_emsrv_scope_session(rc_em_ctx *c, const rc_em_session *s)
{
    const rc_em_cred *cr = c->auth.cred;
    if (c->auth.kind == RC_EM_CRED_API_KEY)
        return 0;
    if (c->auth.kind == RC_EM_CRED_ENV_KEY && cr->env == s->env)
        return 0;
    if (c->auth.kind == RC_EM_CRED_TOKEN && cr->work->session == s)
        return 0;
    rc_emsrv_forbidden(c, "this %s is not valid for session %s", rc_emsrv_cred_name(c->auth.kind),
                       s->id);
    return -1;
}

int rc_emsrv_scope_work(rc_em_ctx *c, const rc_em_work *w)
{
    const rc_em_cred *cr = c->auth.cred;
    if (c->auth.kind == RC_EM_CRED_API_KEY)
        return 0;
    if (c->auth.kind == RC_EM_CRED_ENV_KEY && cr->env == w->env)
        return 0;
    if (c->auth.kind == RC_EM_CRED_TOKEN && cr->work == w)
        return 0;
    rc_emsrv_forbidden(c, "this %s is not valid for work item %s", rc_emsrv_cred_name(c->auth.kind),
                       w->id);
    return -1;
}

/* ---- parking ---- */

void rc_emsrv_park(rc_em_ctx *c, int64_t wake_at_ms, const rc_em_env *env)
{
    rc_em_req *req = c->req;
    rc_em *em = c->em;
    req->parked = true;
    req->wake_at_ms = wake_at_ms;
    req->wait_env = env;
    req->pprev = NULL;
    req->pnext = em->parked;
    if (em->parked)
        em->parked->pprev = req;
    em->parked = req;
    c->resp.parked = true;
    MHD_suspend_connection(req->conn);
}

static void unpark(rc_em *em, rc_em_req *req)
{
    if (req->pprev)
        req->pprev->pnext = req->pnext;
    else
        em->parked = req->pnext;
    if (req->pnext)
        req->pnext->pprev = req->pprev;
    req->pnext = req->pprev = NULL;
    req->parked = false;
}

static void wake(rc_em *em, rc_em_req *req)
{
    unpark(em, req);
    MHD_resume_connection(req->conn);
}

void rc_emsrv_wake_pollers(rc_em *em, const rc_em_env *env)
{
    rc_em_req *req = em->parked, *next;
    for (; req; req = next) {
        next = req->pnext;
        if (req->wait_env == env)
            wake(em, req);
    }
}

void rc_emsrv_park_tick(rc_em *em, int64_t now_ms)
{
    rc_em_req *req = em->parked, *next;
    for (; req; req = next) {
        next = req->pnext;
        if (em->stopping || now_ms >= req->wake_at_ms)
            wake(em, req);
    }
}

/* ---- routing ---- */

/* Match path against pattern; fills params. Returns the number of literal segments matched
 * (higher wins, 19.9), or -1 when it does not match. */
static int route_match(const char *pattern, const char *path, char **params, size_t *nparams)
{
    const char *p = pattern, *u = path;
    int literals = 0;
    size_t n = 0;

    while (*p && *u) {
        const char *pe, *ue;
        if (*p != '/' || *u != '/')
            return -1;
        p++;
        u++;
        if (strcmp(p, "**") == 0)
            return *u ? literals : -1;
        pe = strchrnul(p, '/');
        ue = strchrnul(u, '/');
        if (ue == u)
            return -1; /* empty segment */
        if (pe - p == 1 && *p == '*') {
            if (n < 4)
                params[n++] = strndup(u, (size_t)(ue - u));
        } else if (pe - p != ue - u || strncmp(p, u, (size_t)(pe - p)) != 0) {
            goto fail;
        } else {
            literals++;
        }
        p = pe;
        u = ue;
    }
    if (*p || *u)
        goto fail;
    *nparams = n;
    return literals;
fail:
    for (size_t i = 0; i < n; i++) {
        free(params[i]);
        params[i] = NULL;
    }
    return -1;
}

/* Find the best route for method + path; *ret_method_mismatch when only the method differs. */
static const route *route_find(rc_em_ctx *c, const char *path, bool *ret_method_mismatch)
{
    const route *best = NULL;
    int best_score = -1;
    *ret_method_mismatch = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        char *params[4] = {0};
        size_t n = 0;
        int score = route_match(routes[i].pattern, path, params, &n);
        if (score < 0)
            continue;
        if (strcmp(routes[i].method, c->method) != 0) {
            *ret_method_mismatch = true;
            for (size_t k = 0; k < n; k++)
                free(params[k]);
            continue;
        }
        if (score > best_score) {
            for (size_t k = 0; k < c->nparams; k++)
                free(c->params[k]);
            memcpy(c->params, params, sizeof(params));
            c->nparams = n;
            best = &routes[i];
            best_score = score;
        } else {
            for (size_t k = 0; k < n; k++)
                free(params[k]);
        }
    }
    return best;
}

/* ---- credentials and headers ---- */

/* Resolve the request's credential. Returns 0 (c->auth filled, kind NONE when absent) or -1 after
 * filling a 400/401 response. */
static int resolve_auth(rc_em_ctx *c)
{
    const char *x = rc_emsrv_header(c, "x-api-key");
    const char *a = rc_emsrv_header(c, "authorization");
    rc_em_cred *cr;

    c->auth.kind = RC_EM_CRED_NONE;
    c->auth.cred = NULL;
    if (x && a) {
        rc_emsrv_bad(c, "send the credential either as x-api-key or as Authorization, not both");
        return -1;
    }
    if (!x && !a)
        return 0;
    if (a) {
        if (strncasecmp(a, "Bearer ", 7) != 0 || !a[7]) {
            rc_emsrv_error(c, 401, "authentication_error", NULL,
                           "Authorization header must use the Bearer scheme");
            return -1;
        }
        a += 7;
        while (*a == ' ')
            a++;
    }
    cr = rc_emstore_cred_lookup(c->em, x ? x : a);
    if (!cr || (x && cr->kind != RC_EM_CRED_API_KEY)) {
        rc_emsrv_error(c, 401, "authentication_error", NULL, "invalid %s",
                       x ? "x-api-key" : "bearer credential");
        return -1;
    }
    if (cr->revoked) {
        rc_emsrv_error(c, 401, "authentication_error", NULL, "credential has been revoked");
        return -1;
    }
    /* 4.4.2: a token lives until its work item is stopped. */
    if (cr->kind == RC_EM_CRED_TOKEN && cr->work->state == RC_EM_WORK_STOPPED) {
        rc_emsrv_error(c, 401, "authentication_error", NULL,
                       "sessions token is no longer valid: its work item is stopped");
        return -1;
    }
    c->auth.kind = cr->kind;
    c->auth.cred = cr;
    return 0;
}

/* Whether anthropic-beta lists the route's beta: managed-agents-2026-04-01 (also the legacy
 * value with --lenient-beta); memory routes take agent-memory-2026-07-22 or, as the SDK
 * documents, managed-agents-2026-04-01. */
static bool beta_ok(rc_em_ctx *c, bool memory)
{
    const char *h = rc_emsrv_header(c, "anthropic-beta");
    const char *p = h;
    if (!h)
        return false;
    while (*p) {
        const char *e;
        size_t n;
        while (*p == ' ' || *p == ',')
            p++;
        e = p;
        while (*e && *e != ',')
            e++;
        n = (size_t)(e - p);
        while (n && p[n - 1] == ' ')
            n--;
        if ((n == strlen(BETA_HEADER) && strncmp(p, BETA_HEADER, n) == 0) ||
            (memory && n == strlen(BETA_HEADER_MEMORY) && strncmp(p, BETA_HEADER_MEMORY, n) == 0) ||
            (c->em->cfg.lenient_beta && n == strlen(BETA_HEADER_LEGACY) &&
             strncmp(p, BETA_HEADER_LEGACY, n) == 0))
            return true;
        p = e;
    }
    return false;
}

static int check_headers(rc_em_ctx *c, const route *rt)
{
    const char *v = rc_emsrv_header(c, "anthropic-version");
    if (v && strcmp(v, "2023-06-01") != 0 && strcmp(v, "2026-10-21") != 0) {
        rc_emsrv_bad(c, "anthropic-version: unsupported value");
        return -1;
    }
    if (!v && !(rt->flags & ROUTE_ADMIN) && !c->em->warned_no_version) {
        /* 2.3: accepted, with a warning (once, not per request). */
        c->em->warned_no_version = true;
        rc_log_warn("requests without anthropic-version are accepted (first: %s %s)", c->method,
                    c->req->url);
    }
    if ((rt->flags & ROUTE_BETA) && !beta_ok(c, false)) {
        rc_emsrv_bad(c, "anthropic-beta: this endpoint requires the beta header \"%s\"",
                     BETA_HEADER);
        return -1;
    }
    if ((rt->flags & ROUTE_BETA_MEMORY) && !beta_ok(c, true)) {
        rc_emsrv_bad(c, "anthropic-beta: this endpoint requires the beta header \"%s\"",
                     BETA_HEADER_MEMORY);
        return -1;
    }
    return 0;
}

/* ---- faults ---- */

static bool fault_path_matches(const rc_em *em, const char *path)
{
    if (!em->faults.n_http_error_paths)
        return true;
    for (size_t i = 0; i < em->faults.n_http_error_paths; i++)
        if (strstr(path, em->faults.http_error_paths[i]))
            return true;
    return false;
}

static int inject_fault(rc_em_ctx *c)
{
    rc_em *em = c->em;
    rc_em_req *req = c->req;
    int st;

    if (!req->fault_done) {
        req->fault_done = true;
        if (em->faults.http_error_rate > 0 && fault_path_matches(em, req->url) &&
            rc_emutil_rng_unit(&em->rng) < em->faults.http_error_rate) {
            size_t n = em->faults.n_http_error_statuses;
            req->fault_status =
                n ? em->faults.http_error_statuses[rc_emutil_rng_next(&em->rng) % n] : 500;
        }
    }
    st = req->fault_status;
    if (!st)
        return 0;
    switch (st) {
    case 429:
        rc_emsrv_error(c, st, "rate_limit_error", NULL, "injected fault: rate limited");
        c->resp.retry_after = 1;
        break;
    case 529:
        rc_emsrv_error(c, st, "overloaded_error", NULL, "injected fault: overloaded");
        break;
    case 408:
        rc_emsrv_error(c, st, "timeout_error", NULL, "injected fault: timeout");
        break;
    case 409:
        rc_emsrv_error(c, st, "conflict_error", NULL, "injected fault: conflict");
        c->resp.should_retry = -1;
        break;
    default:
        rc_emsrv_error(c, st, st >= 500 ? "api_error" : "invalid_request_error", NULL,
                       "injected fault: HTTP %d", st);
    }
    return 1;
}

/* ---- request log ---- */

typedef struct hdr_collect {
    cJSON *names, *safe;
} hdr_collect;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    static const char *const safe[] = {
        "anthropic-beta",      "anthropic-version", "content-type",       "accept",
        "anthropic-worker-id", "user-agent",        "x-stainless-helper", "x-stainless-retry-count",
        "content-length"};
    hdr_collect *h = cls;
    char name[128];
    size_t i;
    (void)kind;
    for (i = 0; key[i] && i < sizeof(name) - 1; i++)
        name[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
    name[i] = '\0';
    cJSON_AddItemToArray(h->names, cJSON_CreateString(name));
    for (i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (strcmp(name, safe[i]) == 0 && value)
            cJSON_AddStringToObject(h->safe, name, value);
    return MHD_YES;
}

static char *log_body(const rc_buf *b, bool *ret_truncated)
{
    size_t n = b->len;
    char *s;
    *ret_truncated = false;
    if (n == 0)
        return NULL;
    if (n > LOG_BODY_MAX) {
        n = LOG_BODY_MAX;
        while (n > 0 && ((unsigned char)b->data[n] & 0xC0) == 0x80)
            n--;
        *ret_truncated = true;
    }
    s = strndup(b->data, n);
    if (s && !rc_emutil_utf8_valid(s, strlen(s)))
        for (char *p = s; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
    return s;
}

static void reqlog_add(rc_em_ctx *c, int status)
{
    rc_em *em = c->em;
    rc_em_req *req = c->req;
    rc_em_reqlog *l = &em->reqlog[em->reqlog_seq % RC_EM_REQLOG_MAX];
    hdr_collect h = {cJSON_CreateArray(), cJSON_CreateObject()};

    free(l->method);
    free(l->path);
    free(l->query);
    free(l->headers);
    free(l->safe);
    free(l->body);
    memset(l, 0, sizeof(*l));
    MHD_get_connection_values(c->conn, MHD_HEADER_KIND, collect_header, &h);
    l->seq = ++em->reqlog_seq;
    l->ts_us = rc_emutil_now_us();
    l->method = strdup(req->method);
    l->path = strdup(req->raw_path ? req->raw_path : req->url);
    l->query = req->raw_query ? strdup(req->raw_query) : NULL;
    l->status = status;
    l->cred_kind = c->auth.kind;
    l->headers = rc_emutil_print(h.names);
    l->safe = rc_emutil_print(h.safe);
    l->body = log_body(&req->body, &l->body_truncated);
    l->duration_ms = (long)(rc_emutil_mono_ms() - req->start_ms);
    cJSON_Delete(h.names);
    cJSON_Delete(h.safe);
}

/* ---- dispatch ---- */

static int parse_body(rc_em_ctx *c)
{
    rc_error err = {0};
    cJSON *j = NULL;
    rc_buf *b = &c->req->body;
    size_t i = 0;

    while (i < b->len &&
           (b->data[i] == ' ' || b->data[i] == '\n' || b->data[i] == '\r' || b->data[i] == '\t'))
        i++;
    if (i == b->len)
        return 0;
    if (rc_emutil_parse_json(b->data, b->len, &j, &err) < 0) {
        rc_emsrv_bad(c, "%s", err.msg);
        return -1;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        rc_emsrv_bad(c, "request body must be a JSON object");
        return -1;
    }
    c->body = j;
    return 0;
}

static bool is_admin_path(const char *url)
{
    return strncmp(url, "/_emulator/", 11) == 0;
}

/* Decide the response for a request whose body is complete. Lock held. */
static void handle(rc_em_ctx *c)
{
    rc_em *em = c->em;
    rc_em_req *req = c->req;
    bool method_mismatch;
    const route *rt;

    if (em->stopping) {
        rc_emsrv_error(c, 503, "overloaded_error", NULL, "emulator is shutting down");
        return;
    }
    if (req->too_big) {
        rc_emsrv_error(c, 413, "request_too_large", NULL,
                       "Request exceeds the maximum allowed number of bytes.");
        return;
    }
    if (!is_admin_path(req->url) && em->faults.latency_ms > 0 && !req->latency_done) {
        req->latency_done = true;
        rc_emsrv_park(c, rc_emutil_mono_ms() + em->faults.latency_ms, NULL);
        return;
    }
    rt = route_find(c, req->url, &method_mismatch);
    if (!rt) {
        if (method_mismatch)
            rc_emsrv_error(c, 405, "invalid_request_error", NULL, "method %s not allowed",
                           c->method);
        else
            rc_emsrv_notfound(c, "Not found");
        return;
    }
    if (!(rt->flags & ROUTE_ADMIN) && inject_fault(c))
        return;
    if (resolve_auth(c) < 0 || check_headers(c, rt) < 0)
        return;
    if (c->auth.kind == RC_EM_CRED_NONE) {
        rc_emsrv_error(c, 401, "authentication_error", NULL,
                       "missing credential: send x-api-key or Authorization: Bearer");
        return;
    }
    if (!(rt->creds & c->auth.kind)) {
        rc_emsrv_forbidden(c, "a %s may not call %s %s", rc_emsrv_cred_name(c->auth.kind),
                           c->method, rt->pattern);
        return;
    }
    if (parse_body(c) < 0)
        return;
    rt->fn(c);
}

static void add_common_headers(struct MHD_Response *r, const rc_em_ctx *c)
{
    char buf[16];
    MHD_add_response_header(r, "request-id", c->request_id);
    if (c->resp.content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, c->resp.content_type);
    if (c->resp.should_retry >= 0)
        MHD_add_response_header(r, "x-should-retry", c->resp.should_retry ? "true" : "false");
    if (c->resp.retry_after > 0) {
        snprintf(buf, sizeof(buf), "%d", c->resp.retry_after);
        MHD_add_response_header(r, "retry-after", buf);
    }
}

static enum MHD_Result send_resp(rc_em_ctx *c)
{
    struct MHD_Response *r = c->resp.stream;
    enum MHD_Result ok;

    if (!r) {
        if (c->resp.body) {
            r = MHD_create_response_from_buffer(c->resp.len, c->resp.body, MHD_RESPMEM_MUST_FREE);
            if (r)
                c->resp.body = NULL;
        } else {
            r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        }
        if (!r)
            return MHD_NO;
    }
    add_common_headers(r, c);
    ok = MHD_queue_response(c->conn, (unsigned)c->resp.status, r);
    MHD_destroy_response(r);
    return ok;
}

static void ctx_clear(rc_em_ctx *c)
{
    for (size_t i = 0; i < c->nparams; i++)
        free(c->params[i]);
    cJSON_Delete(c->body);
    free(c->resp.body);
}

static enum MHD_Result dispatch(rc_em *em, rc_em_req *req)
{
    rc_em_ctx c = {.em = em, .req = req, .conn = req->conn, .method = req->method};
    enum MHD_Result ok;
    rc_error err = {0};

    c.resp.should_retry = -1;
    if (rc_emutil_random_id("req_", c.request_id, sizeof(c.request_id), &err) < 0)
        snprintf(c.request_id, sizeof(c.request_id), "req_unknown");
    pthread_mutex_lock(&em->lock);
    handle(&c);
    if (!c.resp.parked && !is_admin_path(req->url))
        reqlog_add(&c, c.resp.status);
    pthread_mutex_unlock(&em->lock);
    if (c.resp.parked) {
        ctx_clear(&c);
        return MHD_YES;
    }
    rc_log_debug("%s %s -> %d (%s)", req->method, req->url, c.resp.status,
                 rc_emsrv_cred_name(c.auth.kind));
    ok = send_resp(&c);
    ctx_clear(&c);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    rc_em *em = cls;
    rc_em_req *req = *con_cls;
    (void)version;

    if (!req)
        return MHD_NO;
    if (!req->headers_seen) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "content-length");
        long n;
        req->headers_seen = true;
        req->conn = conn;
        req->url = strdup(url);
        req->method = strdup(method);
        if (!req->url || !req->method)
            return MHD_NO;
        if (cl && rc_emutil_parse_long(cl, &n) == 0 && (unsigned long)n > RC_EM_BODY_MAX)
            req->too_big = true;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!req->too_big && rc_buf_append(&req->body, upload_data, *upload_size, NULL) < 0)
            req->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(em, req);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    rc_em_req *req = calloc(1, sizeof(*req));
    const char *q;
    (void)conn;
    if (!req)
        return NULL;
    req->em = cls;
    req->body = RC_BUF_INIT(RC_EM_BODY_MAX);
    req->start_ms = rc_emutil_mono_ms();
    q = strchr(uri, '?');
    req->raw_path = q ? strndup(uri, (size_t)(q - uri)) : strdup(uri);
    req->raw_query = q ? strdup(q + 1) : NULL;
    return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    rc_em *em = cls;
    rc_em_req *req = *con_cls;
    (void)conn;
    (void)toe;
    if (!req)
        return;
    pthread_mutex_lock(&em->lock);
    if (req->parked)
        unpark(em, req);
    pthread_mutex_unlock(&em->lock);
    rc_buf_free(&req->body);
    free(req->method);
    free(req->url);
    free(req->raw_path);
    free(req->raw_query);
    free(req);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    /* A client closing its stream or connection is routine, not a warning. */
    if (strstr(msg, "no longer available") || strstr(msg, "closed by remote") ||
        strstr(msg, "reset by remote"))
        rc_log_debug("libmicrohttpd: %s", msg);
    else
        rc_log_warn("libmicrohttpd: %s", msg);
}

/* ---- listening socket ---- */

static int split_listen(const char *listen, char *host, size_t hostsz, char *port, size_t portsz,
                        rc_error *err)
{
    const char *colon;
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (!end || end[1] != ':')
            return rc_error_set(err, RC_EINVAL, "--listen: expected [ADDRESS]:PORT");
        snprintf(host, hostsz, "%.*s", (int)(end - listen - 1), listen + 1);
        snprintf(port, portsz, "%s", end + 2);
        return 0;
    }
    colon = strrchr(listen, ':');
    if (!colon)
        return rc_error_set(err, RC_EINVAL, "--listen: expected HOST:PORT");
    snprintf(host, hostsz, "%.*s", (int)(colon - listen), listen);
    snprintf(port, portsz, "%s", colon + 1);
    return 0;
}

static int open_listener(rc_em *em, rc_error *err)
{
    char host[256], port[16], shown[300];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    _cleanup_close_ int fd = -1;
    int one = 1, r;

    if ((r = split_listen(em->cfg.listen, host, sizeof(host), port, sizeof(port), err)) < 0)
        return r;
    if ((r = getaddrinfo(host, port, &hints, &ai)) != 0)
        return rc_error_set(err, RC_EINVAL, "--listen %s: %s", em->cfg.listen, gai_strerror(r));
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return rc_error_sys(err, RC_EIO, "socket");
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        freeaddrinfo(ai);
        return rc_error_sys(err, RC_EIO, "bind/listen on %s", em->cfg.listen);
    }
    freeaddrinfo(ai);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return rc_error_sys(err, RC_EIO, "getsockname");
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        char txt[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &a6->sin6_addr, txt, sizeof(txt));
        if (IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr))
            snprintf(txt, sizeof(txt), "::1");
        snprintf(shown, sizeof(shown), "[%s]:%u", txt, ntohs(a6->sin6_port));
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        char txt[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a4->sin_addr, txt, sizeof(txt));
        if (a4->sin_addr.s_addr == htonl(INADDR_ANY))
            snprintf(txt, sizeof(txt), "127.0.0.1");
        snprintf(shown, sizeof(shown), "%s:%u", txt, ntohs(a4->sin_port));
    }
    snprintf(em->base_url, sizeof(em->base_url), "http://%s", shown);
    em->listen_fd = take_fd(fd);
    return 0;
}

int rc_emsrv_start(rc_em *em, rc_error *err)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    int r = open_listener(em, err);
    if (r < 0)
        return r;
    em->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, em, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, em,
        MHD_OPTION_LISTEN_SOCKET, em->listen_fd, MHD_OPTION_URI_LOG_CALLBACK, on_uri, em,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, em, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)8192, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(128 * 1024), MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(em->cfg.threads > 0 ? em->cfg.threads : 1), MHD_OPTION_END);
    if (!em->mhd) {
        close(em->listen_fd);
        em->listen_fd = -1;
        return rc_error_set(err, RC_EIO, "cannot start the HTTP server on %s", em->cfg.listen);
    }
    return 0;
}

void rc_emsrv_stop(rc_em *em)
{
    if (!em->mhd)
        return;
    MHD_quiesce_daemon(em->mhd);
    pthread_mutex_lock(&em->lock);
    em->stopping = 1;
    rc_emsrv_park_tick(em, INT64_MAX);
    rc_emsse_resume_all(em);
    pthread_mutex_unlock(&em->lock);
    /* Let the polling threads process the resumed connections before stopping. */
    usleep(200 * 1000);
    MHD_stop_daemon(em->mhd);
    em->mhd = NULL;
    if (em->listen_fd >= 0)
        close(em->listen_fd);
    em->listen_fd = -1;
}

int rc_emsrv_check_keys(rc_em_ctx *c, const cJSON *obj, const char *const *keys)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        bool ok = false;
        for (size_t i = 0; keys[i] && !ok; i++)
            ok = strcmp(it->string, keys[i]) == 0;
        if (!ok)
            return rc_emsrv_bad(c, "%s: Extra inputs are not permitted", it->string), -1;
    }
    return 0;
}
