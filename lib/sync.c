/* sync.c - monotonic-clock mutex + condition variable pairs (see sync.h). */
#include "sync.h"

#include <time.h>

int rc_sync_init_monotonic(pthread_mutex_t *lock, pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    int r = pthread_condattr_init(&ca);

    if (r != 0)
        return r;
    r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (r == 0)
        r = pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
    if (r == 0 && (r = pthread_mutex_init(lock, NULL)) != 0)
        pthread_cond_destroy(cond);
    return r;
}
