/* lifecycle.h - one work item from claim to force-stop (protocol 14.3-14.5), for runcell-runner.
 *
 * rc_runner_run() does, in order: load the custom tools manifest and build the toolbox (local,
 * fast: a broken manifest is reported before anything is claimed), start the heartbeat and wait
 * for its first outcome, fetch the session (a terminated one runs no tools), serve it (the
 * stream thread plus the session algorithm), then tear down: stop the stream, stop the
 * heartbeat, force-stop the item unless the lease was lost (409 counts as success), kill the
 * tools. SIGTERM/SIGINT/SIGHUP cancel the running tool; its error result is still posted while
 * the lease is held (14.5.3), and the whole shutdown finishes within 30 s.
 *
 * The caller must have blocked SIGTERM, SIGINT, SIGHUP and SIGUSR1 in every thread before
 * calling (main() does it first thing): a dedicated thread takes them with sigwait. */
#ifndef RUNCELL_RUNNER_LIFECYCLE_H
#define RUNCELL_RUNNER_LIFECYCLE_H

#include "config.h"

#include <signal.h>

enum rc_runner_exit {
    RC_RUNNER_EXIT_OK = 0,         /* ended normally; the item was released */
    RC_RUNNER_EXIT_FAILED = 1,     /* session fetch, fatal stream or heartbeat error */
    RC_RUNNER_EXIT_CONFIG = 2,     /* bad configuration or manifest; nothing was claimed */
    RC_RUNNER_EXIT_LEASE_LOST = 3, /* the lease was lost: the item was not stopped */
};

#define RC_RUNNER_SHUTDOWN_BUDGET_MS   30000 /* SIGTERM to exit */
#define RC_RUNNER_FINAL_POST_BUDGET_MS 20000 /* SIGTERM to the last result post's deadline */
#define RC_RUNNER_STOP_BUDGET_MS       28000 /* SIGTERM to the force-stop's deadline */
#define RC_RUNNER_FIRST_BEAT_WAIT_MS   5000  /* longest wait for the first heartbeat */
#define RC_RUNNER_MEMORY_BUDGET_MS     24000 /* SIGTERM to the end of the memory flush */

/* The signals rc_runner_run expects blocked (and takes with sigwait). */
void rc_runner_signal_set(sigset_t *set);

/* Serve the configured work item; returns an enum rc_runner_exit. */
int rc_runner_run(const rc_runner_config *cfg);

#endif
