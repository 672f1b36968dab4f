/* redrain.c - the background re-drain: claims queued work when no webhook will come for it.
 *
 * A webhook drain that ends with work possibly still queued (the launcher was full, the
 * per-delivery cap or deadline was hit, the launcher or the poll failed) sets
 * app->redrain_wanted; a drain that finds the queue empty clears it. While it is set, one thread
 * runs the same drain every RUNCELL_REDRAIN_INTERVAL_MS (doubling up to 30 s after failures).
 * Each round starts with a launcher reservation over the local socket, so while the launcher is
 * full a round costs one local round trip and no API call; once a session ends and its slot
 * frees, the next round claims the next queued item. Each interval the thread also asks the
 * launcher for its status (local socket, no API call): when its count of active sessions went
 * down, a session ended, and the round runs even without the flag, because an ended session is
 * also how work gets re-queued without any webhook (a runner that lost its lease, 412). The
 * flag starts set, so a restarted runcell-fcgi claims what was queued while it was down.
 * Without the flag a round still runs every RUNCELL_REDRAIN_IDLE_MS (30 s): an item whose lease
 * expired (its host died, or its stop failed during an API outage) is queued again by the API
 * with no webhook and no session ending here, and only a poll finds it. While the launcher is
 * full such a round costs no API call.
 * runcell-fcgi holds the environment key, so this lives here and not in the launcher (which
 * holds no key). */
#include "app.h"

#include "handoff.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#define REDRAIN_BACKOFF_MAX_MS 30000 /* or the interval, when that is longer */

void rc_fcgi_redrain_note(rc_fcgi_app *app, enum rc_fcgi_drain_end end)
{
    switch (end) {
    case RC_FCGI_DRAIN_EMPTY:
    case RC_FCGI_DRAIN_REPEAT:     /* only skipped items left: nothing we can take */
    case RC_FCGI_DRAIN_POLL_FATAL: /* configuration: retrying would only repeat it */
        atomic_store(&app->redrain_wanted, false);
        break;
    case RC_FCGI_DRAIN_SHUTDOWN:
        break;
    default:
        atomic_store(&app->redrain_wanted, true);
        break;
    }
}

/* Sleep up to ms, waking at shutdown; false once shutting down. */
static bool nap(rc_fcgi_app *app, long ms)
{
    struct pollfd p = {.fd = app->wake_fd, .events = POLLIN};

    if (atomic_load(&app->stopping))
        return false;
    if (poll(&p, 1, (int)ms) < 0 && errno != EINTR)
        rc_log_warn("re-drain: poll: %s", strerror(errno));
    return !atomic_load(&app->stopping);
}

static bool failed(enum rc_fcgi_drain_end end)
{
    return end == RC_FCGI_DRAIN_LAUNCHER_DOWN || end == RC_FCGI_DRAIN_POLL_ERROR ||
           end == RC_FCGI_DRAIN_POLL_FATAL;
}

/* One round; returns how it ended. Logged when it claimed something or failed. */
static enum rc_fcgi_drain_end redrain_once(rc_fcgi_worker *w)
{
    rc_fcgi_drain_summary s = {0};

    rc_fcgi_claim_drain(w, "(re-drain)", &s);
    rc_fcgi_metrics_drain(&w->app->metrics, &s);
    if (s.polls > 0 || failed(s.end))
        atomic_fetch_add_explicit(&w->app->metrics.redrains, 1, memory_order_relaxed);
    if (s.claimed > 0 || failed(s.end))
        rc_log_info("re-drain: %s, claimed %d, handed off %d, stopped %d, polls %d",
                    rc_fcgi_drain_end_name(s.end), s.claimed, s.handed_off, s.stopped, s.polls);
    return s.end;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A round is due: work may be queued (the flag), or none ran for the idle period. */
static bool round_due(rc_fcgi_app *app, long long last_round)
{
    long idle = app->cfg->redrain_idle_ms;
    return atomic_load(&app->redrain_wanted) || (idle > 0 && mono_ms() - last_round >= idle);
}

/* True when the launcher's active count went down since the last look (a session ended). */
static bool session_ended(rc_fcgi_app *app, long *last_active)
{
    rc_handoff_answer st;
    bool ended;

    if (rc_fcgi_launcher_status(app->cfg, app->cfg->launcher_timeout_ms, &st, NULL) < 0 ||
        st.active < 0)
        return false;
    ended = *last_active >= 0 && st.active < *last_active;
    *last_active = st.active;
    return ended;
}

void *rc_fcgi_redrain_main(void *arg)
{
    rc_fcgi_app *app = arg;
    rc_fcgi_worker w = {.app = app, .index = -1};
    long base = app->cfg->redrain_ms, delay = base, last_active = -1;
    long most = base > REDRAIN_BACKOFF_MAX_MS ? base : REDRAIN_BACKOFF_MAX_MS;
    long long last_round = mono_ms();
    enum rc_fcgi_drain_end end;

    while (nap(app, delay)) {
        if (session_ended(app, &last_active))
            atomic_store(&app->redrain_wanted, true);
        if (!round_due(app, last_round)) {
            delay = base;
            continue;
        }
        last_round = mono_ms();
        end = redrain_once(&w);
        if (failed(end))
            delay = delay * 2 > most ? most : delay * 2;
        else if (end == RC_FCGI_DRAIN_LIMIT || end == RC_FCGI_DRAIN_DEADLINE)
            delay = 1; /* more queued, and a slot was free: go on at once */
        else
            delay = base;
    }
    rc_fcgi_worker_clear(&w);
    return NULL;
}
