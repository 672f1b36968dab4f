/* handoff.c - codec and client of the fcgi <-> launcher hand-off protocol (see handoff.h).
 *
 * Requests are written by hand rather than through cJSON: every field of a launch request is
 * checked to consist of characters that need no JSON escaping (ids: [A-Za-z0-9_], the secret:
 * the base64/base64url alphabet), so the only copy of the secret is the caller's rc_buf, which
 * rc_buf_free() wipes. Decoding goes through rc_json_parse (strict, capped). */
#include "handoff.h"

#include "cleanup.h"
#include "fcgi_config.h"
#include "json.h"
#include "webhook.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static const rc_json_limits msg_limits = {
    .max_size = RC_HANDOFF_MSG_MAX, .max_depth = 4, .allow_duplicates = false};

static const struct {
    enum rc_handoff_op op;
    const char *name;
} op_names[] = {
    {RC_HANDOFF_OP_RESERVE, "reserve"},
    {RC_HANDOFF_OP_RELEASE, "release"},
    {RC_HANDOFF_OP_LAUNCH, "launch"},
    {RC_HANDOFF_OP_STATUS, "status"},
};

static const struct {
    enum rc_handoff_status status;
    const char *name;
} status_names[] = {
    {RC_HANDOFF_RESERVED, "reserved"}, {RC_HANDOFF_RELEASED, "released"},
    {RC_HANDOFF_ACCEPTED, "accepted"}, {RC_HANDOFF_AT_CAPACITY, "at_capacity"},
    {RC_HANDOFF_REFUSED, "refused"},   {RC_HANDOFF_OK, "ok"},
    {RC_HANDOFF_ERROR, "error"},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

const char *rc_handoff_op_name(enum rc_handoff_op op)
{
    for (size_t i = 0; i < N_ELEMS(op_names); i++)
        if (op_names[i].op == op)
            return op_names[i].name;
    return "unknown";
}

const char *rc_handoff_status_name(enum rc_handoff_status s)
{
    for (size_t i = 0; i < N_ELEMS(status_names); i++)
        if (status_names[i].status == s)
            return status_names[i].name;
    return "unknown";
}

static int op_from_name(const char *name)
{
    for (size_t i = 0; i < N_ELEMS(op_names); i++)
        if (strcmp(op_names[i].name, name) == 0)
            return (int)op_names[i].op;
    return -1;
}

static int status_from_name(const char *name)
{
    for (size_t i = 0; i < N_ELEMS(status_names); i++)
        if (strcmp(status_names[i].name, name) == 0)
            return (int)status_names[i].status;
    return -1;
}

rc_handoff_answer rc_handoff_answer_make(enum rc_handoff_status s, const char *reason)
{
    rc_handoff_answer a = {.status = s, .active = -1, .capacity = -1, .reserved = -1};
    if (reason)
        snprintf(a.reason, sizeof a.reason, "%s", reason);
    return a;
}

/* ---- requests ------------------------------------------------------------------------------ */

/* The secret's alphabet: base64url (4.1.2) plus the standard alphabet and padding. */
static bool secret_chars_ok(const char *s)
{
    size_t n = 0;
    for (; *s; s++, n++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '+' || c == '/' || c == '='))
            return false;
        if (n >= RC_WORKSECRET_MAX)
            return false;
    }
    return true;
}

static int item_check(const rc_handoff_item *item, rc_error *err)
{
    if (!item || !rc_id_valid(item->work_id, "work_") || !rc_id_valid(item->session_id, "sesn_") ||
        !rc_id_valid(item->environment_id, "env_"))
        return rc_error_set(err, RC_EINVAL,
                            "launch item: malformed work, session or environment id");
    if (item->secret && !secret_chars_ok(item->secret))
        return rc_error_set(err, RC_EINVAL,
                            "launch item: secret is longer than %d characters or not base64url",
                            RC_WORKSECRET_MAX);
    return 0;
}

int rc_handoff_request_encode(enum rc_handoff_op op, const rc_handoff_item *item, rc_buf *out,
                              rc_error *err)
{
    const char *name = rc_handoff_op_name(op);
    int r;

    if (strcmp(name, "unknown") == 0)
        return rc_error_set(err, RC_EINVAL, "hand-off: unknown op %d", (int)op);
    if (op != RC_HANDOFF_OP_LAUNCH)
        return rc_buf_appendf(out, err, "{\"v\":%d,\"op\":\"%s\"}", RC_HANDOFF_VERSION, name);
    if ((r = item_check(item, err)) < 0)
        return r;
    if ((r = rc_buf_appendf(out, err,
                            "{\"v\":%d,\"op\":\"launch\",\"work_id\":\"%s\",\"session_id\":\"%s\","
                            "\"environment_id\":\"%s\",\"secret\":",
                            RC_HANDOFF_VERSION, item->work_id, item->session_id,
                            item->environment_id)) < 0)
        return r;
    if (!item->secret)
        return rc_buf_append_str(out, "null}", err);
    if ((r = rc_buf_putc(out, '"', err)) < 0 || (r = rc_buf_append_str(out, item->secret, err)) < 0)
        return r;
    return rc_buf_append_str(out, "\"}", err);
}

static int decode_item(const cJSON *root, rc_handoff_item *item, rc_error *err)
{
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(root, "secret");
    int r;

    if ((r = rc_json_get_string(root, "work_id", &item->work_id, err)) < 0 ||
        (r = rc_json_get_string(root, "session_id", &item->session_id, err)) < 0 ||
        (r = rc_json_get_string(root, "environment_id", &item->environment_id, err)) < 0)
        return r;
    if (!secret || cJSON_IsNull(secret))
        item->secret = NULL;
    else if (cJSON_IsString(secret))
        item->secret = secret->valuestring;
    else
        return rc_error_set(err, RC_EINVAL, "launch item: secret is not a string or null");
    return item_check(item, err);
}

int rc_handoff_request_decode(const char *msg, size_t len, cJSON **ret_tree,
                              rc_handoff_request *ret, rc_error *err)
{
    _cleanup_json_ cJSON *root = NULL;
    rc_handoff_request req = {0};
    const char *op_name = NULL;
    int64_t v = 0;
    int r, op;

    if ((r = rc_json_parse(msg, len, &msg_limits, &root, err)) < 0)
        return r;
    if (!cJSON_IsObject(root))
        return rc_error_set(err, RC_EPARSE, "hand-off request is not a JSON object");
    if ((r = rc_json_get_int64(root, "v", &v, err)) < 0)
        return r;
    if (v != RC_HANDOFF_VERSION)
        return rc_error_set(err, RC_EINVAL, "hand-off request: unsupported version %lld",
                            (long long)v);
    if ((r = rc_json_get_string(root, "op", &op_name, err)) < 0)
        return r;
    if ((op = op_from_name(op_name)) < 0)
        return rc_error_set(err, RC_EINVAL, "hand-off request: unknown op");
    req.op = (enum rc_handoff_op)op;
    if (req.op == RC_HANDOFF_OP_LAUNCH && (r = decode_item(root, &req.item, err)) < 0)
        return r;
    *ret = req;
    *ret_tree = take_ptr(root);
    return 0;
}

/* ---- answers ------------------------------------------------------------------------------- */

static bool reason_char_ok(char c)
{
    return (unsigned char)c >= 0x20 && c != '"' && c != '\\' && (unsigned char)c < 0x7f;
}

int rc_handoff_answer_encode(const rc_handoff_answer *a, rc_buf *out, rc_error *err)
{
    const char *name = rc_handoff_status_name(a->status);
    int r;

    if (strcmp(name, "unknown") == 0)
        return rc_error_set(err, RC_EINVAL, "hand-off: unknown status %d", (int)a->status);
    if ((r = rc_buf_appendf(out, err, "{\"status\":\"%s\"", name)) < 0)
        return r;
    if (a->reason[0]) {
        if ((r = rc_buf_append_str(out, ",\"reason\":\"", err)) < 0)
            return r;
        for (const char *p = a->reason; *p; p++)
            if ((r = rc_buf_putc(out, reason_char_ok(*p) ? *p : '?', err)) < 0)
                return r;
        if ((r = rc_buf_putc(out, '"', err)) < 0)
            return r;
    }
    if (a->active >= 0 && (r = rc_buf_appendf(out, err, ",\"active\":%ld", a->active)) < 0)
        return r;
    if (a->capacity >= 0 && (r = rc_buf_appendf(out, err, ",\"capacity\":%ld", a->capacity)) < 0)
        return r;
    if (a->reserved >= 0 && (r = rc_buf_appendf(out, err, ",\"reserved\":%ld", a->reserved)) < 0)
        return r;
    return rc_buf_putc(out, '}', err);
}

static int get_count(const cJSON *root, const char *key, long *ret, rc_error *err)
{
    int64_t v;
    int r = rc_json_get_int64_opt(root, key, &v, err);
    if (r < 0)
        return r;
    if (r == 0) {
        *ret = -1;
        return 0;
    }
    if (v < 0 || v > 1000000000)
        return rc_error_set(err, RC_EINVAL, "hand-off answer: %s out of range", key);
    *ret = (long)v;
    return 0;
}

int rc_handoff_answer_decode(const char *msg, size_t len, rc_handoff_answer *ret, rc_error *err)
{
    _cleanup_json_ cJSON *root = NULL;
    rc_handoff_answer a = rc_handoff_answer_make(RC_HANDOFF_ERROR, NULL);
    const char *status = NULL, *reason = NULL;
    int r, s;

    if ((r = rc_json_parse(msg, len, &msg_limits, &root, err)) < 0)
        return r;
    if (!cJSON_IsObject(root))
        return rc_error_set(err, RC_EPARSE, "hand-off answer is not a JSON object");
    if ((r = rc_json_get_string(root, "status", &status, err)) < 0)
        return r;
    if ((s = status_from_name(status)) < 0)
        return rc_error_set(err, RC_EPARSE, "hand-off answer: unknown status");
    a.status = (enum rc_handoff_status)s;
    if ((r = rc_json_get_string_opt(root, "reason", &reason, err)) < 0)
        return r;
    if (reason) {
        size_t i = 0;
        for (; reason[i] && i + 1 < sizeof a.reason; i++)
            a.reason[i] = reason_char_ok(reason[i]) ? reason[i] : '?';
        a.reason[i] = '\0';
    }
    if ((r = get_count(root, "active", &a.active, err)) < 0 ||
        (r = get_count(root, "capacity", &a.capacity, err)) < 0 ||
        (r = get_count(root, "reserved", &a.reserved, err)) < 0)
        return r;
    *ret = a;
    return 0;
}

/* ---- transport ----------------------------------------------------------------------------- */

static int set_timeouts(int fd, long timeout_ms, rc_error *err)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
        return rc_error_sys(err, RC_EIO, "hand-off socket: setsockopt");
    return 0;
}

int rc_handoff_connect(const char *path, long timeout_ms, int *ret_fd, rc_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    int r;

    if (!path || strlen(path) >= sizeof sa.sun_path)
        return rc_error_set(err, RC_EINVAL, "launcher socket path is too long");
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "launcher socket");
    if ((r = set_timeouts(fd, timeout_ms > 0 ? timeout_ms : 5000, err)) < 0)
        return r;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EAGAIN || errno == EINPROGRESS)
            return rc_error_set(err, RC_ETIMEOUT, "launcher socket %s: connect timed out", path);
        return rc_error_sys(err, RC_EIO, "launcher socket %s: connect", path);
    }
    *ret_fd = take_fd(fd);
    return 0;
}

int rc_handoff_send(int fd, const rc_buf *msg, rc_error *err)
{
    ssize_t n;

    if (msg->len > RC_HANDOFF_MSG_MAX)
        return rc_error_set(err, RC_ETOOBIG, "hand-off message longer than %d bytes",
                            RC_HANDOFF_MSG_MAX);
    do
        n = send(fd, rc_buf_cstr(msg), msg->len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return rc_error_set(err, RC_ETIMEOUT, "hand-off: send timed out");
    if (n < 0)
        return rc_error_sys(err, RC_EIO, "hand-off: send");
    if ((size_t)n != msg->len)
        return rc_error_set(err, RC_EIO, "hand-off: short send");
    return 0;
}

int rc_handoff_recv(int fd, rc_buf *out, rc_error *err)
{
    struct iovec iov;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;
    int r;

    rc_buf_reset(out);
    if ((r = rc_buf_reserve(out, RC_HANDOFF_MSG_MAX, err)) < 0)
        return r;
    iov.iov_base = out->data;
    iov.iov_len = RC_HANDOFF_MSG_MAX;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return rc_error_set(err, RC_ETIMEOUT, "hand-off: no answer in time");
    if (n < 0)
        return rc_error_sys(err, RC_EIO, "hand-off: receive");
    if (mh.msg_flags & MSG_TRUNC)
        return rc_error_set(err, RC_ETOOBIG, "hand-off message longer than %d bytes",
                            RC_HANDOFF_MSG_MAX);
    out->len = (size_t)n;
    out->data[n] = '\0';
    return (int)n;
}

int rc_handoff_call(int fd, enum rc_handoff_op op, const rc_handoff_item *item,
                    rc_handoff_answer *ret, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    int r;

    /* Full size up front: growing by realloc would leave unwiped copies of the secret. */
    if ((r = rc_buf_reserve(&msg, RC_HANDOFF_MSG_MAX, err)) < 0 ||
        (r = rc_handoff_request_encode(op, item, &msg, err)) < 0 ||
        (r = rc_handoff_send(fd, &msg, err)) < 0)
        return r;
    if ((r = rc_handoff_recv(fd, &msg, err)) < 0)
        return r;
    if (r == 0)
        return rc_error_set(err, RC_EIO, "hand-off: the launcher closed the connection");
    return rc_handoff_answer_decode(msg.data, msg.len, ret, err);
}
