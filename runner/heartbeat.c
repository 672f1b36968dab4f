/* heartbeat.c - lease end reasons, the heartbeat state machine and its thread (see heartbeat.h).
 *
 * Mirrors the SDK's heartbeatLoop (lib/environments/worker.ts): the same order of updates on a
 * success (last success, echo value and TTL first, then the stop checks), the same
 * classification of failures, and the same cut-off of each beat after one interval. The thread
 * is the only user of its API client; rc_heartbeat_stop() reaches it through the client's cancel
 * token, which aborts a beat in flight and the sleep between beats alike. */
#include "heartbeat.h"

#include "cleanup.h"
#include "http.h"
#include "log.h"
#include "sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- lease end reasons --------------------------------------------------------------------- */

bool rc_lease_finish(rc_lease *l, int reason)
{
    int expected = RC_LEASE_HELD;
    if (reason == RC_LEASE_HELD)
        return false;
    return atomic_compare_exchange_strong(&l->reason, &expected, reason);
}

int rc_lease_reason(rc_lease *l)
{
    return atomic_load(&l->reason);
}

bool rc_lease_reason_is_lost(int reason)
{
    return reason == RC_LEASE_LOST || reason == RC_LEASE_ASSUMED_LOST;
}

const char *rc_lease_reason_name(int reason)
{
    switch (reason) {
    case RC_LEASE_HELD:
        return "held";
    case RC_LEASE_RUNNER_DONE:
        return "runner_done";
    case RC_LEASE_HEARTBEAT_STOP:
        return "heartbeat_stop";
    case RC_LEASE_REJECTED:
        return "heartbeat_rejected";
    case RC_LEASE_LOST:
        return "lease_lost";
    case RC_LEASE_ASSUMED_LOST:
        return "assumed_lost";
    default:
        return "unknown";
    }
}

/* ---- state machine ------------------------------------------------------------------------ */

void rc_hb_state_init(rc_hb_state *s, int64_t now_ms)
{
    *s = (rc_hb_state){.interval_ms = RC_HB_DEFAULT_INTERVAL_MS,
                       .ttl_ms = RC_HB_DEFAULT_TTL_MS,
                       .last_success_ms = now_ms};
    snprintf(s->expected, sizeof s->expected, "%s", RC_HB_NO_HEARTBEAT);
}

static int64_t interval_for_ttl(int64_t ttl_ms)
{
    int64_t half = ttl_ms / 2;
    if (half > RC_HB_DEFAULT_INTERVAL_MS)
        half = RC_HB_DEFAULT_INTERVAL_MS;
    return half < RC_HB_MIN_INTERVAL_MS ? RC_HB_MIN_INTERVAL_MS : half;
}

int rc_hb_state_on_success(rc_hb_state *s, int64_t now_ms, const cJSON *body, int64_t *ret_ttl_ms)
{
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(body, "last_heartbeat");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(body, "ttl_seconds");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(body, "state");
    const cJSON *extended = cJSON_GetObjectItemCaseSensitive(body, "lease_extended");
    int64_t ttl_ms = 0;

    if (!cJSON_IsObject(body) || !cJSON_IsString(last) || !last->valuestring ||
        strlen(last->valuestring) > RC_HB_EXPECTED_MAX)
        return -RC_EPARSE;
    s->last_success_ms = now_ms;
    snprintf(s->expected, sizeof s->expected, "%s", last->valuestring);
    if (cJSON_IsNumber(ttl) && ttl->valuedouble > 0) {
        double secs = ttl->valuedouble > (double)RC_HB_MAX_TTL_SECONDS
                          ? (double)RC_HB_MAX_TTL_SECONDS
                          : ttl->valuedouble;
        ttl_ms = (int64_t)(secs * 1000.0);
        if (ttl_ms < 1)
            ttl_ms = 1;
        s->ttl_ms = ttl_ms;
        s->interval_ms = interval_for_ttl(ttl_ms);
    }
    *ret_ttl_ms = ttl_ms;
    if (cJSON_IsString(state) &&
        (strcmp(state->valuestring, "stopping") == 0 || strcmp(state->valuestring, "stopped") == 0))
        return RC_LEASE_HEARTBEAT_STOP;
    /* The SDK tests `!resp.lease_extended`: false, null and absent all end the run. */
    if (!cJSON_IsTrue(extended))
        return RC_LEASE_HEARTBEAT_STOP;
    return RC_LEASE_HELD;
}

int rc_hb_state_on_failure(rc_hb_state *s, int64_t now_ms, long status)
{
    if (status == 412)
        return RC_LEASE_LOST;
    if (rc_http_is_fatal_4xx(status))
        return RC_LEASE_REJECTED;
    if (now_ms - s->last_success_ms > s->ttl_ms)
        return RC_LEASE_ASSUMED_LOST;
    return RC_LEASE_HELD;
}

/* ---- the thread --------------------------------------------------------------------------- */

struct rc_heartbeat {
    rc_api *api;
    char *environment_id;
    char *work_id;
    char *session_id;
    void (*on_ttl)(void *, int64_t);
    void (*on_end)(void *, int);
    void *userdata;
    atomic_bool stopping;
    atomic_long beats;
    pthread_t thread;
    rc_hb_state st;
    pthread_mutex_t first_lock;
    pthread_cond_t first_cond; /* CLOCK_MONOTONIC */
    bool first_done;
};

static void mark_first_done(rc_heartbeat *hb)
{
    pthread_mutex_lock(&hb->first_lock);
    hb->first_done = true;
    pthread_cond_broadcast(&hb->first_cond);
    pthread_mutex_unlock(&hb->first_lock);
}

/* The server's view after a 412 (error.details.current_state), for the log only. */
static void log_lease_lost(const rc_api_result *res)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(res->error_body, "error");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "details");
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(d, "current_state");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(cs, "state");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(cs, "ttl_seconds");

    rc_log_error("lease lost: heartbeat precondition failed (server state %s, ttl %g s); "
                 "not serving and not stopping the item",
                 cJSON_IsString(state) ? state->valuestring : "unknown",
                 cJSON_IsNumber(ttl) ? ttl->valuedouble : -1.0);
}

static void log_outcome(rc_heartbeat *hb, int reason, const rc_api_result *res, const rc_error *e)
{
    switch (reason) {
    case RC_LEASE_HELD:
        if (e->code)
            rc_log_warn("transient heartbeat failure, keep beating: %s", e->msg);
        break;
    case RC_LEASE_HEARTBEAT_STOP:
        rc_log_info("heartbeat signals shutdown (state or lease_extended)");
        break;
    case RC_LEASE_LOST:
        log_lease_lost(res);
        break;
    case RC_LEASE_REJECTED:
        rc_log_error("permanent heartbeat failure: %s", e->msg);
        break;
    case RC_LEASE_ASSUMED_LOST:
        rc_log_error("lease assumed lost: no successful heartbeat within the %lld ms TTL: %s",
                     (long long)hb->st.ttl_ms, e->msg);
        break;
    }
}

/* One beat. Returns the lease end it implies, or -RC_ECANCELED when stopped. */
static int beat(rc_heartbeat *hb)
{
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    rc_error e = {0};
    int64_t ttl_ms = 0;
    int reason = RC_LEASE_HELD, r;

    r = rc_api_work_heartbeat(hb->api, hb->environment_id, hb->work_id, hb->st.expected, 0,
                              rc_http_now_mono_ms() + hb->st.interval_ms, &res, &e);
    if (atomic_load(&hb->stopping))
        return -RC_ECANCELED;
    if (r == 0) {
        reason = rc_hb_state_on_success(&hb->st, rc_http_now_mono_ms(), res.json, &ttl_ms);
        if (reason >= 0) {
            atomic_fetch_add(&hb->beats, 1);
            if (ttl_ms > 0 && hb->on_ttl)
                hb->on_ttl(hb->userdata, ttl_ms);
            rc_log_debug("heartbeat ok (interval %lld ms)", (long long)hb->st.interval_ms);
        } else {
            rc_error_set(&e, RC_EPARSE, "heartbeat answer is not a heartbeat object");
        }
    }
    if (r < 0 || e.code) {
        long status = (r == -RC_ESTATUS || r == -RC_EFATAL) ? res.status : 0;
        reason = rc_hb_state_on_failure(&hb->st, rc_http_now_mono_ms(), status);
    }
    log_outcome(hb, reason, &res, &e);
    return reason;
}

int64_t rc_hb_next_delay_ms(int64_t interval_ms, unsigned failures)
{
    int64_t d = RC_HB_MIN_INTERVAL_MS;
    if (failures == 0)
        return interval_ms;
    for (unsigned i = 1; i < failures && d < interval_ms; i++)
        d *= 2;
    return d < interval_ms ? d : interval_ms;
}

static void *heartbeat_main(void *arg)
{
    rc_heartbeat *hb = arg;
    rc_http_cancel *cancel = rc_http_client_cancel(rc_api_http(hb->api));
    unsigned failures = 0;
    int reason;

    rc_log_set_context(hb->session_id, hb->work_id);
    for (;;) {
        long before = atomic_load(&hb->beats);
        reason = beat(hb);
        failures = atomic_load(&hb->beats) != before ? 0 : failures + 1;
        mark_first_done(hb);
        if (reason < 0)
            break;
        if (reason != RC_LEASE_HELD) {
            if (hb->on_end)
                hb->on_end(hb->userdata, reason);
            break;
        }
        if (rc_http_cancel_sleep(cancel, rc_hb_next_delay_ms(hb->st.interval_ms, failures), NULL) <
            0)
            break;
    }
    mark_first_done(hb);
    return NULL;
}

static void heartbeat_free(rc_heartbeat *hb)
{
    if (!hb)
        return;
    pthread_cond_destroy(&hb->first_cond);
    pthread_mutex_destroy(&hb->first_lock);
    rc_api_free(hb->api);
    free(hb->environment_id);
    free(hb->work_id);
    free(hb->session_id);
    free(hb);
}

static int init_first_sync(rc_heartbeat *hb)
{
    return rc_sync_init_monotonic(&hb->first_lock, &hb->first_cond);
}

int rc_heartbeat_start(const rc_heartbeat_config *cfg, rc_heartbeat **ret, rc_error *err)
{
    rc_heartbeat *hb;
    int r;

    if (!cfg->api || !cfg->environment_id || !cfg->work_id)
        return rc_error_set(err, RC_EINVAL, "heartbeat needs an API client, environment and work");
    hb = calloc(1, sizeof *hb);
    if (!hb)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((r = init_first_sync(hb)) != 0) {
        free(hb);
        errno = r;
        return rc_error_sys(err, RC_EIO, "heartbeat synchronisation");
    }
    hb->environment_id = strdup(cfg->environment_id);
    hb->work_id = strdup(cfg->work_id);
    hb->session_id = cfg->session_id ? strdup(cfg->session_id) : NULL;
    if (!hb->environment_id || !hb->work_id || (cfg->session_id && !hb->session_id)) {
        heartbeat_free(hb);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    hb->on_ttl = cfg->on_ttl;
    hb->on_end = cfg->on_end;
    hb->userdata = cfg->userdata;
    rc_hb_state_init(&hb->st, rc_http_now_mono_ms());
    hb->api = cfg->api;
    if ((r = pthread_create(&hb->thread, NULL, heartbeat_main, hb)) != 0) {
        hb->api = NULL; /* not taken over */
        heartbeat_free(hb);
        errno = r;
        return rc_error_sys(err, RC_EIO, "cannot start the heartbeat thread");
    }
    *ret = hb;
    return 0;
}

void rc_heartbeat_stop(rc_heartbeat *hb)
{
    if (!hb)
        return;
    atomic_store(&hb->stopping, true);
    rc_http_cancel_trigger(rc_http_client_cancel(rc_api_http(hb->api)));
    pthread_join(hb->thread, NULL);
    heartbeat_free(hb);
}

long rc_heartbeat_beats(rc_heartbeat *hb)
{
    return atomic_load(&hb->beats);
}

bool rc_heartbeat_wait_first(rc_heartbeat *hb, int64_t timeout_ms)
{
    int64_t end = rc_http_now_mono_ms() + timeout_ms;
    struct timespec ts = {.tv_sec = end / 1000, .tv_nsec = (long)(end % 1000) * 1000000L};
    bool done;

    pthread_mutex_lock(&hb->first_lock);
    while (!hb->first_done && pthread_cond_timedwait(&hb->first_cond, &hb->first_lock, &ts) == 0)
        ;
    done = hb->first_done;
    pthread_mutex_unlock(&hb->first_lock);
    return done;
}
