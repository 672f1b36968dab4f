/* dedupe.c - the webhook id table (see dedupe.h).
 *
 * A flat array scanned linearly under one mutex. With the default 4096 slots a scan is a few
 * microseconds, far below the cost of the request around it, and the shape makes the memory
 * bound obvious: nothing is allocated after rc_fcgi_dedupe_new(). A slot is empty, in flight, or
 * done with an expiry time; an expired done slot counts as empty. */
#include "dedupe.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum slot_state { SLOT_EMPTY = 0, SLOT_IN_FLIGHT, SLOT_DONE };

struct slot {
    enum slot_state state;
    int64_t expires_ms; /* SLOT_DONE only */
    char id[RC_FCGI_DEDUPE_ID_MAX + 1];
};

struct rc_fcgi_dedupe {
    pthread_mutex_t lock;
    size_t capacity;
    int64_t ttl_ms;
    struct slot *slots;
};

int rc_fcgi_dedupe_new(size_t capacity, int64_t done_ttl_ms, rc_fcgi_dedupe **ret, rc_error *err)
{
    rc_fcgi_dedupe *d;

    if (capacity == 0 || done_ttl_ms < 0)
        return rc_error_set(err, RC_EINVAL, "dedupe table: bad capacity or TTL");
    d = calloc(1, sizeof *d);
    if (!d)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    d->slots = calloc(capacity, sizeof *d->slots);
    if (!d->slots) {
        free(d);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&d->lock, NULL);
    d->capacity = capacity;
    d->ttl_ms = done_ttl_ms;
    *ret = d;
    return 0;
}

void rc_fcgi_dedupe_free(rc_fcgi_dedupe *d)
{
    if (!d)
        return;
    pthread_mutex_destroy(&d->lock);
    free(d->slots);
    free(d);
}

static bool slot_live(const struct slot *s, int64_t now_ms)
{
    return s->state == SLOT_IN_FLIGHT || (s->state == SLOT_DONE && s->expires_ms > now_ms);
}

static struct slot *find_live(rc_fcgi_dedupe *d, const char *id, int64_t now_ms)
{
    for (size_t i = 0; i < d->capacity; i++) {
        struct slot *s = &d->slots[i];
        if (slot_live(s, now_ms) && strcmp(s->id, id) == 0)
            return s;
    }
    return NULL;
}

/* A free slot: empty or expired, else the done slot closest to expiry; NULL when every slot is
 * in flight. */
static struct slot *find_free(rc_fcgi_dedupe *d, int64_t now_ms)
{
    struct slot *oldest_done = NULL;

    for (size_t i = 0; i < d->capacity; i++) {
        struct slot *s = &d->slots[i];
        if (!slot_live(s, now_ms))
            return s;
        if (s->state == SLOT_DONE && (!oldest_done || s->expires_ms < oldest_done->expires_ms))
            oldest_done = s;
    }
    return oldest_done;
}

int rc_fcgi_dedupe_begin(rc_fcgi_dedupe *d, const char *id, int64_t now_ms, rc_error *err)
{
    struct slot *s;
    size_t n;
    int r;

    if (!id || !*id || (n = strnlen(id, RC_FCGI_DEDUPE_ID_MAX + 1)) > RC_FCGI_DEDUPE_ID_MAX)
        return rc_error_set(err, RC_EINVAL, "webhook id is empty or longer than %d bytes",
                            RC_FCGI_DEDUPE_ID_MAX);
    pthread_mutex_lock(&d->lock);
    if ((s = find_live(d, id, now_ms))) {
        r = s->state == SLOT_IN_FLIGHT ? RC_FCGI_DEDUPE_IN_FLIGHT : RC_FCGI_DEDUPE_DONE;
    } else if ((s = find_free(d, now_ms))) {
        s->state = SLOT_IN_FLIGHT;
        s->expires_ms = 0;
        memcpy(s->id, id, n + 1);
        r = RC_FCGI_DEDUPE_NEW;
    } else {
        r = -RC_ETOOBIG;
    }
    pthread_mutex_unlock(&d->lock);
    if (r == -RC_ETOOBIG)
        return rc_error_set(err, RC_ETOOBIG, "dedupe table full of in-flight deliveries");
    return r;
}

void rc_fcgi_dedupe_finish(rc_fcgi_dedupe *d, const char *id, bool done, int64_t now_ms)
{
    if (!id)
        return;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->capacity; i++) {
        struct slot *s = &d->slots[i];
        if (s->state != SLOT_IN_FLIGHT || strcmp(s->id, id) != 0)
            continue;
        if (done) {
            s->state = SLOT_DONE;
            s->expires_ms = now_ms + d->ttl_ms;
        } else {
            *s = (struct slot){0};
        }
        break;
    }
    pthread_mutex_unlock(&d->lock);
}

size_t rc_fcgi_dedupe_count(rc_fcgi_dedupe *d, int64_t now_ms, size_t *ret_in_flight)
{
    size_t live = 0, in_flight = 0;

    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->capacity; i++) {
        if (!slot_live(&d->slots[i], now_ms))
            continue;
        live++;
        if (d->slots[i].state == SLOT_IN_FLIGHT)
            in_flight++;
    }
    pthread_mutex_unlock(&d->lock);
    if (ret_in_flight)
        *ret_in_flight = in_flight;
    return live;
}
