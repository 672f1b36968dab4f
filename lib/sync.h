/* sync.h - a mutex and a condition variable whose timed waits use CLOCK_MONOTONIC.
 *
 * Every deadline in runcell is computed on the monotonic clock (a wall-clock step must not cut a
 * heartbeat short or stretch a tool timeout), so every condition variable that is waited on with
 * pthread_cond_timedwait is initialised here. */
#ifndef RUNCELL_SYNC_H
#define RUNCELL_SYNC_H

#include <pthread.h>

/* Initialise both; returns 0 or the pthread error code, with neither left initialised. */
int rc_sync_init_monotonic(pthread_mutex_t *lock, pthread_cond_t *cond);

#endif
