/* dedupe.h - bounded table of webhook ids: in flight vs done (protocol 18.7.1, 18.8 step 4).
 *
 * Deliveries are at-least-once, so the same webhook-id can arrive again, even while its first
 * delivery is still being handled. The table tells the handler which case it is in. Memory is
 * bounded: a fixed number of slots allocated up front; a done id is kept for a TTL and may be
 * evicted early (oldest first) when the table is full; an in-flight id is never evicted. All
 * functions are thread-safe (one mutex, held only for the table scan). Times are monotonic
 * milliseconds passed in by the caller, so tests control the clock. */
#ifndef RUNCELL_FCGI_DEDUPE_H
#define RUNCELL_FCGI_DEDUPE_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_FCGI_DEDUPE_ID_MAX 128 /* bytes of a webhook id */

enum rc_fcgi_dedupe_state {
    RC_FCGI_DEDUPE_NEW = 0,       /* not seen: now in flight, the caller must call _finish */
    RC_FCGI_DEDUPE_IN_FLIGHT = 1, /* another request is handling it: answer 503 */
    RC_FCGI_DEDUPE_DONE = 2,      /* handled already: answer 200 without doing anything */
};

typedef struct rc_fcgi_dedupe rc_fcgi_dedupe;

/* capacity slots (>= 1); a done id expires done_ttl_ms after it was finished. */
int rc_fcgi_dedupe_new(size_t capacity, int64_t done_ttl_ms, rc_fcgi_dedupe **ret, rc_error *err);
void rc_fcgi_dedupe_free(rc_fcgi_dedupe *d);

/* Look id up at now_ms and, when it is new, record it as in flight. Returns an
 * rc_fcgi_dedupe_state, -RC_EINVAL for an empty id or one longer than RC_FCGI_DEDUPE_ID_MAX,
 * -RC_ETOOBIG when every slot holds an in-flight id. */
int rc_fcgi_dedupe_begin(rc_fcgi_dedupe *d, const char *id, int64_t now_ms, rc_error *err);

/* End the in-flight phase of id: done=true keeps it as done until now_ms + TTL, done=false
 * forgets it (so a retry of the delivery is handled afresh). Unknown ids are ignored. */
void rc_fcgi_dedupe_finish(rc_fcgi_dedupe *d, const char *id, bool done, int64_t now_ms);

/* Live entries at now_ms (expired ones not counted); *ret_in_flight (optional) gets the number
 * in flight. */
size_t rc_fcgi_dedupe_count(rc_fcgi_dedupe *d, int64_t now_ms, size_t *ret_in_flight);

#endif
