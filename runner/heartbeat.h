/* heartbeat.h - the work item's lease: its end reason and the heartbeat loop (protocol 7).
 *
 * The heartbeat runs on its own thread with its own API client, so nothing the session does (a
 * 60 s bash command, a slow result post, a reconnecting stream) can delay a beat (7.13). The
 * first beat claims the lease with NO_HEARTBEAT; every later beat echoes the previous answer's
 * last_heartbeat byte for byte; a failure never falls back to NO_HEARTBEAT (7.9). Each beat is cut
 * off after the current interval (7.4), and the interval follows the server's TTL:
 * max(1 s, min(ttl/2, 30 s)) (7.5).
 *
 * The decisions live in a pure state machine (rc_hb_state, clock passed in) so they are
 * unit-tested without a network; the thread only does I/O and sleeps.
 *
 * Lease end reasons (7.10): the first one recorded wins; "lost" (412, or no successful beat for
 * longer than the TTL) means the item belongs to someone else and must not be stopped. A local
 * shutdown (SIGTERM) is not a lease end: the heartbeat keeps the lease through the teardown, and
 * a 412 that arrives meanwhile still marks it lost. */
#ifndef RUNCELL_RUNNER_HEARTBEAT_H
#define RUNCELL_RUNNER_HEARTBEAT_H

#include "api.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RC_HB_NO_HEARTBEAT        "NO_HEARTBEAT"
#define RC_HB_DEFAULT_INTERVAL_MS 30000 /* 7.2 */
#define RC_HB_DEFAULT_TTL_MS      90000 /* 7.2: assumed until the server says */
#define RC_HB_MIN_INTERVAL_MS     1000
#define RC_HB_MAX_TTL_SECONDS     86400LL /* larger answers are clamped */
#define RC_HB_EXPECTED_MAX        256     /* bytes of last_heartbeat we echo */

/* ---- lease end reasons --------------------------------------------------------------------- */

enum rc_lease_end {
    RC_LEASE_HELD = 0,       /* still running */
    RC_LEASE_RUNNER_DONE,    /* teardown began (whatever ended the run: idle, signal, ...) */
    RC_LEASE_HEARTBEAT_STOP, /* heartbeat said stopping/stopped or lease_extended:false */
    RC_LEASE_REJECTED,       /* heartbeat got a fatal 4xx other than 412 */
    RC_LEASE_LOST,           /* heartbeat got 412 */
    RC_LEASE_ASSUMED_LOST,   /* no successful heartbeat for longer than the TTL */
};

typedef struct rc_lease {
    _Atomic int reason; /* enum rc_lease_end */
} rc_lease;

/* Record reason if none was recorded yet; true when this call recorded it. Thread-safe. */
bool rc_lease_finish(rc_lease *l, int reason);
int rc_lease_reason(rc_lease *l);
/* lease_lost or assumed_lost: do not stop the item. */
bool rc_lease_reason_is_lost(int reason);
const char *rc_lease_reason_name(int reason);

/* ---- the state machine (pure) ------------------------------------------------------------- */

typedef struct rc_hb_state {
    int64_t interval_ms;
    int64_t ttl_ms;
    int64_t last_success_ms;
    char expected[RC_HB_EXPECTED_MAX + 1]; /* NO_HEARTBEAT, then the last last_heartbeat */
} rc_hb_state;

/* 7.2: interval 30 s, TTL 90 s, last success = now, expected NO_HEARTBEAT. */
void rc_hb_state_init(rc_hb_state *s, int64_t now_ms);

/* A 2xx answer with body. Returns the lease end it implies (RC_LEASE_HEARTBEAT_STOP) or
 * RC_LEASE_HELD to keep beating, and sets *ret_ttl_ms (0 when the answer carried no TTL) for the
 * send-retry window. A body that is not a heartbeat object (no string last_heartbeat) returns
 * -RC_EPARSE and changes nothing: the caller treats it as a transient failure. */
int rc_hb_state_on_success(rc_hb_state *s, int64_t now_ms, const cJSON *body, int64_t *ret_ttl_ms);

/* A beat that failed: status is the HTTP status when an answer arrived, 0 for a transport
 * failure or the cut-off. Returns RC_LEASE_LOST (412), RC_LEASE_REJECTED (another fatal 4xx),
 * RC_LEASE_ASSUMED_LOST (transient, but the last success is older than the TTL) or
 * RC_LEASE_HELD (transient, keep beating with the same expected value). */
int rc_hb_state_on_failure(rc_hb_state *s, int64_t now_ms, long status);
/* The wait before the next beat after `failures` transient failures in a row (0: the interval).
 * Beyond the SDK (7.3 waits a whole interval): 1 s, 2 s, 4 s, ... capped at the interval, so a
 * short outage, or a first beat that failed before the server's TTL is known (the 30 s default
 * interval against a shorter lease), does not let the lease lapse. */
int64_t rc_hb_next_delay_ms(int64_t interval_ms, unsigned failures);

/* ---- the thread --------------------------------------------------------------------------- */

typedef struct rc_heartbeat rc_heartbeat;

typedef struct rc_heartbeat_config {
    rc_api *api; /* taken over on success (freed by rc_heartbeat_stop); this thread only */
    const char *environment_id;
    const char *work_id;
    /* Called from the heartbeat thread after each success that carried a TTL. */
    void (*on_ttl)(void *userdata, int64_t ttl_ms);
    /* Called once from the heartbeat thread when a beat ends the lease (reason != HELD); the
     * thread then stops beating. Not called when the loop is stopped by rc_heartbeat_stop. */
    void (*on_end)(void *userdata, int reason);
    void *userdata;
    const char *session_id; /* log context only; may be NULL */
} rc_heartbeat_config;

/* Start the thread; the first beat goes out at once. */
int rc_heartbeat_start(const rc_heartbeat_config *cfg, rc_heartbeat **ret, rc_error *err);

/* Stop beating (an in-flight beat is aborted), join the thread and free everything. NULL is a
 * no-op. */
void rc_heartbeat_stop(rc_heartbeat *hb);

/* Successful beats so far (tests, logs). */
long rc_heartbeat_beats(rc_heartbeat *hb);

/* Wait until the first beat has an outcome (success or failure), at most timeout_ms: the
 * session fetch goes out after the first heartbeat (14.3). True when it has one. */
bool rc_heartbeat_wait_first(rc_heartbeat *hb, int64_t timeout_ms);

#endif
