/* handoff.h - the runcell-fcgi <-> runcell-launcher hand-off protocol (docs/FCGI.md, "Hand-off").
 *
 * Transport: an AF_UNIX SOCK_SEQPACKET socket (the launcher's), one JSON object per message, at
 * most RC_HANDOFF_MSG_MAX bytes, strictly alternating request / answer on one connection. A
 * connection may carry several exchanges; runcell-fcgi opens one per webhook delivery.
 *
 * Requests (all carry "v":1):
 *   {"v":1,"op":"reserve"}  hold one session slot for this connection
 *   {"v":1,"op":"release"}  give the held slot back (closing the connection does the same)
 *   {"v":1,"op":"launch","work_id":"work_..","session_id":"sesn_..","environment_id":"env_..",
 *    "secret":"<raw base64url>"|null}
 *                           take a claimed (acked) item; consumes the held slot if any
 *   {"v":1,"op":"status"}   capacity and load, for metrics
 * Answers: {"status":S, ...} with S one of
 *   "reserved" | "released" | "accepted" | "at_capacity" | "refused" (+ "reason") | "ok"
 *   (status: + "active", "capacity", "reserved") | "error" (+ "reason": a protocol error).
 *
 * The secret travels exactly as the poll returned it (never decoded here, never logged); every
 * buffer that held an encoded launch request is wiped when freed (rc_buf_free). The codec
 * functions are shared by the client (runcell-fcgi), the launcher and the test double
 * (tests/tools/fake_launcher.c). */
#ifndef RUNCELL_FCGI_HANDOFF_H
#define RUNCELL_FCGI_HANDOFF_H

#include "buf.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define RC_HANDOFF_VERSION    1
#define RC_HANDOFF_MSG_MAX    65536
#define RC_HANDOFF_REASON_MAX 128

enum rc_handoff_op {
    RC_HANDOFF_OP_RESERVE = 1,
    RC_HANDOFF_OP_RELEASE,
    RC_HANDOFF_OP_LAUNCH,
    RC_HANDOFF_OP_STATUS,
};

enum rc_handoff_status {
    RC_HANDOFF_RESERVED = 1,
    RC_HANDOFF_RELEASED,
    RC_HANDOFF_ACCEPTED,
    RC_HANDOFF_AT_CAPACITY,
    RC_HANDOFF_REFUSED,
    RC_HANDOFF_OK,
    RC_HANDOFF_ERROR,
};

/* One work item to launch; strings borrowed. secret may be NULL (the item had none). */
typedef struct rc_handoff_item {
    const char *work_id;
    const char *session_id;
    const char *environment_id;
    const char *secret;
} rc_handoff_item;

typedef struct rc_handoff_request {
    enum rc_handoff_op op;
    rc_handoff_item item; /* RC_HANDOFF_OP_LAUNCH only; borrowed from the decoded tree */
} rc_handoff_request;

typedef struct rc_handoff_answer {
    enum rc_handoff_status status;
    char reason[RC_HANDOFF_REASON_MAX]; /* "" when absent */
    long active, capacity, reserved;    /* -1 when absent */
} rc_handoff_answer;

/* ---- codec --------------------------------------------------------------------------------- */

const char *rc_handoff_op_name(enum rc_handoff_op op);
const char *rc_handoff_status_name(enum rc_handoff_status s);

/* Append the request to out (item only for LAUNCH). The launch item is validated: ids as in
 * protocol 1.1.1, secret at most RC_WORKSECRET_MAX characters. */
int rc_handoff_request_encode(enum rc_handoff_op op, const rc_handoff_item *item, rc_buf *out,
                              rc_error *err);
/* Parse one request message. *ret_tree must be freed by the caller (cJSON_Delete); ret's
 * strings point into it. Unknown versions and ops, missing or malformed fields: -RC_EPARSE /
 * -RC_EINVAL. */
int rc_handoff_request_decode(const char *msg, size_t len, cJSON **ret_tree,
                              rc_handoff_request *ret, rc_error *err);

int rc_handoff_answer_encode(const rc_handoff_answer *a, rc_buf *out, rc_error *err);
int rc_handoff_answer_decode(const char *msg, size_t len, rc_handoff_answer *ret, rc_error *err);

/* An answer with only status set (reason "" and the numbers -1). */
rc_handoff_answer rc_handoff_answer_make(enum rc_handoff_status s, const char *reason);

/* ---- client -------------------------------------------------------------------------------- */

/* Connect to the launcher socket; send and receive time out after timeout_ms. */
int rc_handoff_connect(const char *path, long timeout_ms, int *ret_fd, rc_error *err);

/* One request/answer exchange on fd. -RC_EIO / -RC_ETIMEOUT when the launcher is unreachable or
 * silent, -RC_EPARSE for an answer that is not one. */
int rc_handoff_call(int fd, enum rc_handoff_op op, const rc_handoff_item *item,
                    rc_handoff_answer *ret, rc_error *err);

/* ---- server side helpers (launcher and test double) ---------------------------------------- */

/* Receive one message (at most RC_HANDOFF_MSG_MAX bytes) into out (reset first). Returns the
 * length, 0 at end of connection, -RC_ETOOBIG for a truncated message, -RC_EIO. */
int rc_handoff_recv(int fd, rc_buf *out, rc_error *err);
/* Send one message. */
int rc_handoff_send(int fd, const rc_buf *msg, rc_error *err);

#endif
