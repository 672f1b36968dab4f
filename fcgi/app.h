/* app.h - the state runcell-fcgi's worker threads share, and each thread's own.
 *
 * One rc_fcgi_app per process: the configuration, the dedupe table, the metrics and the shutdown
 * flag (with an eventfd that becomes readable once it is set, so threads waiting for a
 * connection wake up). One rc_fcgi_worker per thread: its API client (rc_api objects are
 * single-threaded) is created on first use. */
#ifndef RUNCELL_FCGI_APP_H
#define RUNCELL_FCGI_APP_H

#include "api.h"
#include "dedupe.h"
#include "drain.h"
#include "err.h"
#include "fcgi_config.h"
#include "metrics.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct rc_fcgi_app {
    const rc_fcgi_config *cfg;
    rc_fcgi_dedupe *dedupe;
    rc_fcgi_metrics metrics;
    atomic_bool stopping;
    int wake_fd;   /* eventfd, readable once stopping is set */
    int listen_fd; /* the FastCGI listening socket (non-blocking) */
    /* Set when a drain ended with work possibly left queued (launcher full, cap, deadline,
     * failure), cleared when one found the queue empty; read by the re-drain thread. */
    atomic_bool redrain_wanted;
} rc_fcgi_app;

typedef struct rc_fcgi_worker {
    rc_fcgi_app *app;
    rc_api *api; /* NULL until first needed */
    int index;
} rc_fcgi_worker;

/* Monotonic milliseconds. */
int64_t rc_fcgi_now_ms(void);

/* The worker's API client (environment key), created on first use. */
int rc_fcgi_worker_api(rc_fcgi_worker *w, rc_api **ret, rc_error *err);
void rc_fcgi_worker_clear(rc_fcgi_worker *w);

/* claim.c: run one drain for a verified delivery with the production ops (API + launcher). */
void rc_fcgi_claim_drain(rc_fcgi_worker *w, const char *webhook_id, rc_fcgi_drain_summary *ret);

/* redrain.c: record how a drain ended (sets or clears app->redrain_wanted). */
void rc_fcgi_redrain_note(rc_fcgi_app *app, enum rc_fcgi_drain_end end);

/* redrain.c: the background re-drain thread's body (arg: the rc_fcgi_app); returns at shutdown.
 * Started by rc_fcgi_server_run when cfg->redrain_ms > 0. */
void *rc_fcgi_redrain_main(void *arg);

/* claim.c: ask the launcher for its status (for /metrics); 0 and *ret filled, or < 0. */
int rc_fcgi_launcher_status(const rc_fcgi_config *cfg, long timeout_ms, rc_handoff_answer *ret,
                            rc_error *err);

#endif
