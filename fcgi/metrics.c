/* metrics.c - counters and Prometheus text rendering (see metrics.h).
 *
 * The latency histogram keeps per-bucket (non-cumulative) counts and sums them while rendering,
 * so recording is one atomic increment per bucket lookup. */
#include "metrics.h"

static const double latency_bounds[RC_FCGI_LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5,   1,    2.5,   5,    10,  30};

static const char *const outcome_names[RC_FCGI_OUT_COUNT] = {
    [RC_FCGI_OUT_DRAINED] = "drained",
    [RC_FCGI_OUT_AT_CAPACITY] = "at_capacity",
    [RC_FCGI_OUT_IGNORED] = "ignored",
    [RC_FCGI_OUT_DUPLICATE] = "duplicate",
    [RC_FCGI_OUT_IN_FLIGHT] = "in_flight",
    [RC_FCGI_OUT_BAD_SIGNATURE] = "bad_signature",
    [RC_FCGI_OUT_BAD_REQUEST] = "bad_request",
    [RC_FCGI_OUT_TOO_LARGE] = "too_large",
    [RC_FCGI_OUT_METHOD] = "method_not_allowed",
    [RC_FCGI_OUT_UNAVAILABLE] = "unavailable",
    [RC_FCGI_OUT_ERROR] = "error",
};

const char *rc_fcgi_outcome_name(enum rc_fcgi_outcome o)
{
    return (unsigned)o < RC_FCGI_OUT_COUNT ? outcome_names[o] : "unknown";
}

static void add(atomic_uint_fast64_t *c, int n)
{
    if (n > 0)
        atomic_fetch_add_explicit(c, (uint_fast64_t)n, memory_order_relaxed);
}

static uint64_t get(atomic_uint_fast64_t *c)
{
    return (uint64_t)atomic_load_explicit(c, memory_order_relaxed);
}

void rc_fcgi_metrics_webhook(rc_fcgi_metrics *m, enum rc_fcgi_outcome o, double seconds)
{
    int i = 0;

    if ((unsigned)o < RC_FCGI_OUT_COUNT)
        add(&m->webhooks[o], 1);
    if (seconds < 0)
        seconds = 0;
    while (i < RC_FCGI_LATENCY_BUCKETS && seconds > latency_bounds[i])
        i++;
    if (i < RC_FCGI_LATENCY_BUCKETS)
        add(&m->latency_bucket[i], 1);
    add(&m->latency_count, 1);
    atomic_fetch_add_explicit(&m->latency_sum_us, (uint_fast64_t)(seconds * 1e6),
                              memory_order_relaxed);
}

void rc_fcgi_metrics_drain(rc_fcgi_metrics *m, const rc_fcgi_drain_summary *s)
{
    add(&m->polls, s->polls);
    add(&m->stale_404, s->stale_404);
    add(&m->claims, s->claimed);
    add(&m->ack_failures, s->ack_failed);
    add(&m->handoff_accepted, s->handed_off);
    add(&m->handoff_refused, s->refused);
    add(&m->handoff_failed, s->handoff_failed);
    add(&m->stop_ok, s->stopped);
    add(&m->stop_failed, s->stop_failed);
    add(&m->not_session, s->not_session);
    add(&m->malformed, s->malformed);
    add(&m->unusable, s->unusable);
}

static int counter(rc_buf *out, rc_error *err, const char *name, const char *help, uint64_t v)
{
    return rc_buf_appendf(out, err, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name,
                          name, (unsigned long long)v);
}

static int labelled(rc_buf *out, rc_error *err, const char *name, const char *label,
                    const char *value, uint64_t v)
{
    return rc_buf_appendf(out, err, "%s{%s=\"%s\"} %llu\n", name, label, value,
                          (unsigned long long)v);
}

static int render_webhooks(rc_fcgi_metrics *m, rc_buf *out, rc_error *err)
{
    const char *n = "runcell_fcgi_webhooks_total";
    int r = rc_buf_appendf(out, err, "# HELP %s Webhook requests by outcome.\n# TYPE %s counter\n",
                           n, n);
    for (int i = 0; r >= 0 && i < RC_FCGI_OUT_COUNT; i++)
        r = labelled(out, err, n, "outcome", outcome_names[i], get(&m->webhooks[i]));
    return r;
}

static int render_latency(rc_fcgi_metrics *m, rc_buf *out, rc_error *err)
{
    const char *n = "runcell_fcgi_webhook_duration_seconds";
    uint64_t cum = 0;
    int r = rc_buf_appendf(
        out, err, "# HELP %s Time to answer a webhook request.\n# TYPE %s histogram\n", n, n);
    for (int i = 0; r >= 0 && i < RC_FCGI_LATENCY_BUCKETS; i++) {
        cum += get(&m->latency_bucket[i]);
        r = rc_buf_appendf(out, err, "%s_bucket{le=\"%g\"} %llu\n", n, latency_bounds[i],
                           (unsigned long long)cum);
    }
    if (r < 0)
        return r;
    return rc_buf_appendf(out, err, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", n,
                          (unsigned long long)get(&m->latency_count), n,
                          (double)get(&m->latency_sum_us) / 1e6, n,
                          (unsigned long long)get(&m->latency_count));
}

static int render_handoffs(rc_fcgi_metrics *m, rc_buf *out, rc_error *err)
{
    const char *n = "runcell_fcgi_handoffs_total";
    int r = rc_buf_appendf(out, err,
                           "# HELP %s Claimed session items handed to the launcher, by result.\n"
                           "# TYPE %s counter\n",
                           n, n);
    if (r >= 0)
        r = labelled(out, err, n, "result", "accepted", get(&m->handoff_accepted));
    if (r >= 0)
        r = labelled(out, err, n, "result", "refused", get(&m->handoff_refused));
    if (r >= 0)
        r = labelled(out, err, n, "result", "failed", get(&m->handoff_failed));
    return r;
}

static int render_items(rc_fcgi_metrics *m, rc_buf *out, rc_error *err)
{
    const char *n = "runcell_fcgi_items_total";
    int r = rc_buf_appendf(out, err,
                           "# HELP %s Polled items that were not session work, by kind.\n"
                           "# TYPE %s counter\n",
                           n, n);
    if (r >= 0)
        r = labelled(out, err, n, "kind", "not_session", get(&m->not_session));
    if (r >= 0)
        r = labelled(out, err, n, "kind", "malformed", get(&m->malformed));
    if (r >= 0)
        r = labelled(out, err, n, "kind", "skipped", get(&m->unusable));
    return r;
}

static int render_stops(rc_fcgi_metrics *m, rc_buf *out, rc_error *err)
{
    const char *n = "runcell_fcgi_force_stops_total";
    int r = rc_buf_appendf(out, err,
                           "# HELP %s Force-stops of claimed items that could not be served.\n"
                           "# TYPE %s counter\n",
                           n, n);
    if (r >= 0)
        r = labelled(out, err, n, "result", "ok", get(&m->stop_ok));
    if (r >= 0)
        r = labelled(out, err, n, "result", "failed", get(&m->stop_failed));
    return r;
}

static int render_launcher(const rc_handoff_answer *l, rc_buf *out, rc_error *err)
{
    int r = rc_buf_appendf(out, err,
                           "# HELP runcell_launcher_up Whether the launcher answered a status "
                           "request.\n# TYPE runcell_launcher_up gauge\nruncell_launcher_up %d\n",
                           l ? 1 : 0);
    if (r < 0 || !l)
        return r;
    if (l->active >= 0 &&
        (r = rc_buf_appendf(out, err,
                            "# HELP runcell_active_sessions Sessions the launcher runs now.\n"
                            "# TYPE runcell_active_sessions gauge\nruncell_active_sessions %ld\n",
                            l->active)) < 0)
        return r;
    if (l->capacity >= 0 &&
        (r = rc_buf_appendf(out, err,
                            "# HELP runcell_launcher_capacity Maximum concurrent sessions.\n"
                            "# TYPE runcell_launcher_capacity gauge\n"
                            "runcell_launcher_capacity %ld\n",
                            l->capacity)) < 0)
        return r;
    if (l->reserved >= 0)
        r = rc_buf_appendf(
            out, err,
            "# HELP runcell_launcher_reserved Slots reserved by drains in progress.\n"
            "# TYPE runcell_launcher_reserved gauge\nruncell_launcher_reserved %ld\n",
            l->reserved);
    return r;
}

int rc_fcgi_metrics_render(rc_fcgi_metrics *m, const rc_handoff_answer *launcher, rc_buf *out,
                           rc_error *err)
{
    int r;

    if ((r = render_webhooks(m, out, err)) < 0 || (r = render_latency(m, out, err)) < 0 ||
        (r = counter(out, err, "runcell_fcgi_polls_total", "Work poll requests.", get(&m->polls))) <
            0 ||
        (r = counter(out, err, "runcell_fcgi_poll_stale_404_total",
                     "Poll answers 404 for a stale queue entry (5.2.7).", get(&m->stale_404))) <
            0 ||
        (r = counter(out, err, "runcell_fcgi_claims_total", "Work items acked.", get(&m->claims))) <
            0 ||
        (r = counter(out, err, "runcell_fcgi_ack_failures_total", "Acks that failed.",
                     get(&m->ack_failures))) < 0 ||
        (r = render_handoffs(m, out, err)) < 0 || (r = render_items(m, out, err)) < 0 ||
        (r = render_stops(m, out, err)) < 0 ||
        (r = counter(out, err, "runcell_fcgi_requests_total", "FastCGI requests, any route.",
                     get(&m->requests))) < 0 ||
        (r = counter(out, err, "runcell_fcgi_redrains_total",
                     "Background re-drains (no webhook) that reached the launcher.",
                     get(&m->redrains))) < 0)
        return r;
    if ((r = rc_buf_appendf(out, err,
                            "# HELP runcell_fcgi_webhooks_in_flight Webhook requests being "
                            "handled.\n# TYPE runcell_fcgi_webhooks_in_flight gauge\n"
                            "runcell_fcgi_webhooks_in_flight %d\n",
                            atomic_load(&m->in_flight))) < 0)
        return r;
    return render_launcher(launcher, out, err);
}
