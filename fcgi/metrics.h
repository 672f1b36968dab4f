/* metrics.h - runcell-fcgi's counters and their Prometheus text rendering (GET /metrics).
 *
 * Lock-free: every counter is a C11 atomic, so worker threads update them without contention and
 * a scrape reads a consistent-enough snapshot. Names and labels are listed in docs/FCGI.md. */
#ifndef RUNCELL_FCGI_METRICS_H
#define RUNCELL_FCGI_METRICS_H

#include "buf.h"
#include "drain.h"
#include "err.h"
#include "handoff.h"

#include <stdatomic.h>
#include <stdint.h>

/* How a webhook request ended (runcell_fcgi_webhooks_total{outcome=...}). */
enum rc_fcgi_outcome {
    RC_FCGI_OUT_DRAINED = 0,   /* drain ran and ended normally (any 200 drain end) */
    RC_FCGI_OUT_AT_CAPACITY,   /* drain stopped because the launcher is full */
    RC_FCGI_OUT_IGNORED,       /* verified, other event type */
    RC_FCGI_OUT_DUPLICATE,     /* id already handled: 200, nothing done */
    RC_FCGI_OUT_IN_FLIGHT,     /* id being handled by another request: 503 */
    RC_FCGI_OUT_BAD_SIGNATURE, /* 401 */
    RC_FCGI_OUT_BAD_REQUEST,   /* 400 (content length, body, envelope) */
    RC_FCGI_OUT_TOO_LARGE,     /* 413 */
    RC_FCGI_OUT_METHOD,        /* 405 */
    RC_FCGI_OUT_UNAVAILABLE,   /* 503: launcher down, transient poll failure, shutdown */
    RC_FCGI_OUT_ERROR,         /* 500 */
    RC_FCGI_OUT_COUNT
};

#define RC_FCGI_LATENCY_BUCKETS 12

typedef struct rc_fcgi_metrics {
    atomic_uint_fast64_t webhooks[RC_FCGI_OUT_COUNT];
    atomic_uint_fast64_t latency_bucket[RC_FCGI_LATENCY_BUCKETS]; /* cumulative at render time */
    atomic_uint_fast64_t latency_count;
    atomic_uint_fast64_t latency_sum_us;
    atomic_uint_fast64_t polls, stale_404, claims, ack_failures;
    atomic_uint_fast64_t handoff_accepted, handoff_refused, handoff_failed;
    atomic_uint_fast64_t stop_ok, stop_failed;
    atomic_uint_fast64_t not_session, malformed, unusable;
    atomic_uint_fast64_t requests; /* every FastCGI request, any route */
    atomic_uint_fast64_t redrains; /* background re-drains run (redrain.c) */
    atomic_int in_flight;          /* webhook requests being handled now */
} rc_fcgi_metrics;

const char *rc_fcgi_outcome_name(enum rc_fcgi_outcome o);

/* One finished webhook request and its duration in seconds. */
void rc_fcgi_metrics_webhook(rc_fcgi_metrics *m, enum rc_fcgi_outcome o, double seconds);
/* Add one drain's counts. */
void rc_fcgi_metrics_drain(rc_fcgi_metrics *m, const rc_fcgi_drain_summary *s);

/* Append the Prometheus text exposition. launcher: the launcher's status answer, or NULL when it
 * could not be asked (runcell_launcher_up 0, no session gauges). */
int rc_fcgi_metrics_render(rc_fcgi_metrics *m, const rc_handoff_answer *launcher, rc_buf *out,
                           rc_error *err);

#endif
