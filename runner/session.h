/* session.h - the session tool runner algorithm (protocol 11, 12, 13), exactly as the SDK's
 * SessionToolRunner does it.
 *
 * State per run: `seen` (call ids routed or being routed), `answered` (call ids with a result:
 * posted by us, echoed by anyone, or resolved by a denial), `verdicts` (call id -> allow/deny),
 * `held` (calls waiting for a user.tool_confirmation, in arrival order), terminated session
 * threads, and the idle clock with its deferral. What to run is decided from `answered`, never
 * from `seen`: a call whose result never landed is re-executed by the next reconcile.
 *
 * The algorithm does no I/O of its own: listing the history, sending one result, running one
 * tool, sleeping and the clock go through rc_session_io, which the lifecycle wires to the API
 * and the tools and the unit tests wire to fakes. Calls run one at a time, inline, in the order
 * they are routed; one result per send.
 *
 * Threading: everything runs on the session thread except rc_session_set_send_window (any
 * thread; the heartbeat calls it with each TTL). */
#ifndef RUNCELL_RUNNER_SESSION_H
#define RUNCELL_RUNNER_SESSION_H

#include "api.h"
#include "err.h"
#include "stream.h"
#include "tools.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define RC_SESSION_SEND_WINDOW_MS      300000 /* 13.9: until the first heartbeat reports a TTL */
#define RC_SESSION_SEND_BACKOFF_MS     1000
#define RC_SESSION_SEND_BACKOFF_CAP_MS 30000
#define RC_SESSION_MAX_IDS             (1u << 20) /* entries per id set; beyond: the run fails */
#define RC_SESSION_ID_MAX              256        /* bytes of an event or thread id we accept */
#define RC_SESSION_CANCELLED_TEXT      "tool call cancelled: worker shutting down"

/* What happened to one routed call, for the per-call log line. */
enum rc_session_outcome {
    RC_CALL_POSTED = 0, /* executed, result posted */
    RC_CALL_NOT_POSTED, /* executed, result never landed (fatal 4xx, window over, cancelled) */
    RC_CALL_NOT_OWNED,  /* name not ours: nothing posted, left for its owner (13.7.2) */
    RC_CALL_DENIED,     /* denied (server or user): nothing ran, nothing posted (11.3) */
};

typedef struct rc_session_call_report {
    const char *id;   /* the call event id */
    const char *name; /* "" when the event had none */
    bool custom;      /* agent.custom_tool_use */
    int outcome;      /* enum rc_session_outcome */
    bool is_error;
    bool confirmed;      /* released by a user.tool_confirmation allow */
    int64_t duration_ms; /* tool run time */
    size_t output_bytes; /* text bytes + image data bytes of the result content */
    int attempts;        /* send attempts */
} rc_session_call_report;

typedef struct rc_session_io {
    /* List the whole history, calling fn with each page's data array (rc_api_events_list). */
    int (*list)(void *ud, rc_api_page_fn fn, void *fn_ud, rc_error *err);
    /* Send one result event once (the transport's own retries included), giving up at
     * deadline_mono_ms (0 = none): 0 on success, -RC_EFATAL for a fatal 4xx, -RC_ECANCELED when
     * cancelled, any other negative code for a transient failure. */
    int (*send)(void *ud, const cJSON *event, int64_t deadline_mono_ms, rc_error *err);
    /* Run the call's tool (call is the agent.tool_use / agent.custom_tool_use event): 0 with
     * *ret for every outcome the model should see, -RC_ENOTFOUND when the name is not ours,
     * another negative code for an internal failure (posted as "Error: <message>"). */
    int (*run_tool)(void *ud, const cJSON *call, rc_tool_result *ret, rc_error *err);
    /* Sleep ms: 0, or -RC_ECANCELED when the run is cancelled meanwhile. */
    int (*sleep)(void *ud, int64_t ms);
    int64_t (*now_ms)(void *ud);
    /* True once the run is cancelled (shutdown or lost lease). */
    bool (*cancelled)(void *ud);
    /* The run was cancelled with a call's result not posted: return true (and the deadline) to
     * post it once more anyway (a local shutdown while the lease is held, 14.5.3). NULL = never. */
    bool (*final_post)(void *ud, int64_t *ret_deadline_mono_ms);
    /* After every routed call that ran, was denied or was not ours. NULL = none. */
    void (*on_call)(void *ud, const rc_session_call_report *rep);
    /* Uniform [0, 1) for the send back-off jitter; NULL = getrandom. */
    double (*rand)(void *ud);
    void *ud;
} rc_session_io;

typedef struct rc_session_config {
    long long max_idle_ms;  /* <= 0 disables the idle exit (12.2) */
    int64_t send_window_ms; /* 0 = RC_SESSION_SEND_WINDOW_MS */
} rc_session_config;

typedef struct rc_session rc_session;

int rc_session_new(const rc_session_config *cfg, const rc_session_io *io, rc_session **ret,
                   rc_error *err);
void rc_session_free(rc_session *s);

/* 13.3: the history pass after a stream opened. 0 (a failed list is not an error: it is
 * logged and the live stream goes on), -RC_ECANCELED, or a fatal internal error. */
int rc_session_reconcile(rc_session *s, rc_error *err);

/* 13.5: one live stream event. 1 when the runner must end (a live session.status_terminated or
 * session.deleted), 0 to go on, -RC_ECANCELED, or a fatal internal error. */
int rc_session_on_event(rc_session *s, const cJSON *ev, rc_error *err);

/* The idle clock (12.2): true with the expiry time (io->now_ms clock) when armed. */
bool rc_session_idle_deadline(rc_session *s, int64_t *ret_deadline_ms);
/* After a failed history read (13.3 step 3) the runner lists again on the reconnect back-off
 * (0.5 s doubling to 10 s) even while the stream stays open and quiet: a call that only history
 * shows would otherwise wait for ever. relist_due gives the time the next list is due (false when
 * none is); tick runs it once due (0 when nothing was due or the pass succeeded or failed again;
 * negative as rc_session_reconcile). */
bool rc_session_relist_due(rc_session *s, int64_t *ret_at_ms);
int rc_session_tick(rc_session *s, rc_error *err);

/* 7.5: the send-retry window follows the lease TTL. Any thread. */
void rc_session_set_send_window(rc_session *s, int64_t ms);

enum rc_session_end {
    RC_SESSION_END_IDLE = 1,     /* max idle passed after a turn ended */
    RC_SESSION_END_TERMINATED,   /* live session.status_terminated / session.deleted */
    RC_SESSION_END_STREAM_FATAL, /* fatal 4xx on the stream request */
    RC_SESSION_END_CANCELLED,    /* io->cancelled(): shutdown or lease end */
};

/* 13.2: the main loop over a stream (OPENED -> reconcile, EVENT -> live handling, FATAL ->
 * end), waking for the idle deadline. Returns an enum rc_session_end, or a negative code when
 * the run failed internally. */
int rc_session_serve(rc_session *s, rc_stream *stream, rc_error *err);

const char *rc_session_end_name(int end);

/* Introspection for tests and logs. */
bool rc_session_is_answered(rc_session *s, const char *call_id);
bool rc_session_is_seen(rc_session *s, const char *call_id);
bool rc_session_is_held(rc_session *s, const char *call_id);
size_t rc_session_held_count(rc_session *s);

#endif
