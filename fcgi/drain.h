/* drain.h - the webhook-triggered queue drain (protocol 14.2), as pure decisions over an ops table.
 *
 * rc_fcgi_drain_run() is the whole algorithm of one delivery: reserve a launcher slot BEFORE
 * claiming (a full launcher leaves items queued for another host), poll without block_ms, handle
 * the answer (empty, stale 404 retried at most 3 times, errors), sort the item (session,
 * healthcheck or other non-session, malformed, unusable), ack, hand the item to the launcher and
 * force-stop it when the hand-off fails, so a failed hand-off never leaves an item claimed; up to
 * a per-delivery cap and deadline. Every effect goes through rc_fcgi_drain_ops, so the unit tests
 * drive it with fakes and runcell-fcgi binds it to the API client and the launcher socket
 * (claim.c). The item sorting and the poll-answer mapping are exposed for tests. */
#ifndef RUNCELL_FCGI_DRAIN_H
#define RUNCELL_FCGI_DRAIN_H

#include "api.h"
#include "buf.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define RC_FCGI_DRAIN_404_RETRIES 3 /* protocol 5.2.7: consecutive stale 404s before giving up */

/* ---- work items ---------------------------------------------------------------------------- */

enum rc_fcgi_item_kind {
    RC_FCGI_ITEM_SESSION = 0, /* serve it: ack and hand off */
    RC_FCGI_ITEM_NOT_SESSION, /* data.type other than "session" (healthcheck): ack + force-stop */
    RC_FCGI_ITEM_MALFORMED,   /* good work id, bad rest (session id, secret): ack + force-stop */
    RC_FCGI_ITEM_UNUSABLE,    /* work id malformed or another environment's: leave untouched */
};

/* The fields of a polled work object the drain uses (protocol 5.1.5); borrowed from the tree. */
typedef struct rc_fcgi_work_item {
    const char *work_id;
    const char *environment_id;
    const char *data_type; /* NULL when missing */
    const char *session_id;
    const char *secret; /* raw, NULL when absent or null */
} rc_fcgi_work_item;

/* Sort a polled work object. *ret is filled as far as the object allows (always, for the
 * caller's logs); *ret_reason gets a static description of why it is not a session item. */
enum rc_fcgi_item_kind rc_fcgi_item_classify(const cJSON *work, const char *env_id,
                                             rc_fcgi_work_item *ret, const char **ret_reason);

/* ---- poll answers -------------------------------------------------------------------------- */

enum rc_fcgi_poll_outcome {
    RC_FCGI_POLL_ITEM = 0,  /* a work object */
    RC_FCGI_POLL_EMPTY,     /* any of the empty forms of 5.2.6 */
    RC_FCGI_POLL_STALE_404, /* 404 other than environment_not_found: poll again (5.2.7) */
    RC_FCGI_POLL_FATAL,     /* 401/403/environment_not_found/other fatal 4xx: configuration */
    RC_FCGI_POLL_ERROR,     /* transient (transport, 408/409/429/5xx, garbled answer) */
};

/* Map rc_api_work_poll's return value and result to an outcome. */
enum rc_fcgi_poll_outcome rc_fcgi_poll_classify(int r, const rc_api_result *res);

/* ---- the drain ----------------------------------------------------------------------------- */

enum rc_fcgi_reserve_answer {
    RC_FCGI_RESERVED = 0,
    RC_FCGI_RESERVE_AT_CAPACITY,
    RC_FCGI_RESERVE_FAILED, /* launcher unreachable or answering nonsense */
};

enum rc_fcgi_launch_answer {
    RC_FCGI_LAUNCH_ACCEPTED = 0,
    RC_FCGI_LAUNCH_AT_CAPACITY,
    RC_FCGI_LAUNCH_REFUSED,
    RC_FCGI_LAUNCH_FAILED, /* unreachable, timed out, garbled */
};

typedef struct rc_fcgi_drain_ops {
    enum rc_fcgi_reserve_answer (*reserve)(void *ctx);
    void (*release)(void *ctx);
    enum rc_fcgi_launch_answer (*launch)(void *ctx, const rc_fcgi_work_item *item);
    /* Poll once; on RC_FCGI_POLL_ITEM *ret_work is a tree the drain frees. */
    enum rc_fcgi_poll_outcome (*poll)(void *ctx, cJSON **ret_work);
    int (*ack)(void *ctx, const char *work_id);  /* 0 = acked */
    int (*stop)(void *ctx, const char *work_id); /* force-stop; 0 = stopped (409 included) */
    int64_t (*now_ms)(void *ctx);                /* monotonic clock */
    bool (*cancelled)(void *ctx);                /* shutting down: claim nothing more */
    /* Optional: notified of each decision, for logs (event is a static string). */
    void (*note)(void *ctx, const char *event, const rc_fcgi_work_item *item, const char *detail);
} rc_fcgi_drain_ops;

typedef struct rc_fcgi_drain_params {
    const char *environment_id; /* ours: items of another environment are left alone */
    int max_items;              /* polled items handled per delivery (14.2 step 9) */
    int64_t deadline_ms;        /* stop claiming this long after the start; 0 = none */
} rc_fcgi_drain_params;

enum rc_fcgi_drain_end {
    RC_FCGI_DRAIN_EMPTY = 0,     /* the queue is empty */
    RC_FCGI_DRAIN_LIMIT,         /* the per-delivery cap was reached */
    RC_FCGI_DRAIN_DEADLINE,      /* the deadline passed */
    RC_FCGI_DRAIN_AT_CAPACITY,   /* the launcher is full: nothing more claimed */
    RC_FCGI_DRAIN_REPEAT,        /* the poll handed out an item this drain already saw */
    RC_FCGI_DRAIN_LAUNCHER_DOWN, /* the launcher could not be asked for a slot */
    RC_FCGI_DRAIN_POLL_ERROR,    /* transient poll failure */
    RC_FCGI_DRAIN_POLL_FATAL,    /* fatal poll failure (credentials, environment) */
    RC_FCGI_DRAIN_SHUTDOWN,      /* runcell-fcgi is shutting down */
};

typedef struct rc_fcgi_drain_summary {
    enum rc_fcgi_drain_end end;
    int polls;          /* poll requests made */
    int stale_404;      /* stale-entry 404s seen */
    int items;          /* work objects received */
    int claimed;        /* acked items */
    int handed_off;     /* accepted by the launcher */
    int refused;        /* refused by the launcher (then force-stopped) */
    int handoff_failed; /* launcher unreachable / at capacity after the ack (then force-stopped) */
    int not_session;    /* healthcheck and other non-session items (acked, force-stopped) */
    int malformed;      /* malformed items (acked, force-stopped) */
    int unusable;       /* items left untouched (bad work id, other environment) */
    int ack_failed;     /* acks that failed: item skipped, not stopped (5.3.5) */
    int stopped;        /* force-stops that succeeded */
    int stop_failed;    /* force-stops that failed (logged; the lease expires) */
} rc_fcgi_drain_summary;

void rc_fcgi_drain_run(const rc_fcgi_drain_ops *ops, void *ctx, const rc_fcgi_drain_params *p,
                       rc_fcgi_drain_summary *ret);

/* "drained", "limit_reached", "deadline_reached", "at_capacity", "repeated_item",
 * "launcher_unavailable", "poll_failed", "poll_refused", "shutting_down". */
const char *rc_fcgi_drain_end_name(enum rc_fcgi_drain_end end);

/* The HTTP status the webhook answers with: 200, except 503 for a launcher that could not be
 * reached, a transient poll failure or a shutdown (the sender retries later), and 500 for a
 * fatal poll failure. */
int rc_fcgi_drain_http_status(const rc_fcgi_drain_summary *s);

/* The answer body: {"status":<end name>,"claimed":..,"handed_off":..,...}. */
int rc_fcgi_drain_summary_json(const rc_fcgi_drain_summary *s, rc_buf *out, rc_error *err);

#endif
