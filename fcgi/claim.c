/* claim.c - the production drain ops: the API with the environment key, and the launcher socket.
 *
 * drain.c decides; this file only performs and logs. One launcher connection per drain carries
 * the reservation and the hand-offs (closing it releases whatever is still held, should this
 * process die). Log lines name work and session ids (set as the thread's log context), never
 * the secret or a key. */
#include "app.h"

#include "cleanup.h"
#include "handoff.h"
#include "log.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define USER_AGENT "runcell-fcgi"

int64_t rc_fcgi_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rc_fcgi_worker_api(rc_fcgi_worker *w, rc_api **ret, rc_error *err)
{
    const rc_fcgi_config *cfg = w->app->cfg;
    int r;

    if (!w->api) {
        rc_api_config ac = {
            .http = {.base_url = cfg->base_url,
                     .unix_socket = cfg->api_socket,
                     .ca_file = cfg->ca_file,
                     .user_agent = USER_AGENT,
                     .timeout_ms = cfg->api_timeout_ms,
                     .connect_timeout_ms = cfg->api_timeout_ms,
                     .max_attempts = 2},
            .credential = cfg->environment_key,
        };
        if ((r = rc_api_new(&ac, &w->api, err)) < 0)
            return r;
    }
    *ret = w->api;
    return 0;
}

void rc_fcgi_worker_clear(rc_fcgi_worker *w)
{
    rc_api_free(w->api);
    w->api = NULL;
}

/* ---- the ops ------------------------------------------------------------------------------- */

struct claim {
    rc_fcgi_worker *w;
    rc_api *api;
    int launcher_fd;
    const char *webhook_id;
};

static void launcher_close(struct claim *c)
{
    if (c->launcher_fd >= 0)
        close(c->launcher_fd);
    c->launcher_fd = -1;
}

/* One exchange; a transport failure closes the connection. */
static int launcher_call(struct claim *c, enum rc_handoff_op op, const rc_handoff_item *item,
                         rc_handoff_answer *ret)
{
    const rc_fcgi_config *cfg = c->w->app->cfg;
    rc_error err = {0};
    int r;

    if (c->launcher_fd < 0 &&
        (r = rc_handoff_connect(cfg->launcher_socket, cfg->launcher_timeout_ms, &c->launcher_fd,
                                &err)) < 0) {
        rc_log_warn("launcher: %s", err.msg);
        return r;
    }
    if ((r = rc_handoff_call(c->launcher_fd, op, item, ret, &err)) < 0) {
        rc_log_warn("launcher %s: %s", rc_handoff_op_name(op), err.msg);
        launcher_close(c);
    }
    return r;
}

static enum rc_fcgi_reserve_answer op_reserve(void *ctx)
{
    struct claim *c = ctx;
    rc_handoff_answer a;

    if (launcher_call(c, RC_HANDOFF_OP_RESERVE, NULL, &a) < 0)
        return RC_FCGI_RESERVE_FAILED;
    if (a.status == RC_HANDOFF_RESERVED)
        return RC_FCGI_RESERVED;
    if (a.status == RC_HANDOFF_AT_CAPACITY)
        return RC_FCGI_RESERVE_AT_CAPACITY;
    rc_log_warn("launcher answered reserve with \"%s\"%s%s", rc_handoff_status_name(a.status),
                a.reason[0] ? ": " : "", a.reason);
    return RC_FCGI_RESERVE_FAILED;
}

static void op_release(void *ctx)
{
    struct claim *c = ctx;
    rc_handoff_answer a;

    if (c->launcher_fd >= 0)
        (void)launcher_call(c, RC_HANDOFF_OP_RELEASE, NULL, &a);
}

static enum rc_fcgi_launch_answer op_launch(void *ctx, const rc_fcgi_work_item *it)
{
    struct claim *c = ctx;
    rc_handoff_item item = {.work_id = it->work_id,
                            .session_id = it->session_id,
                            .environment_id = it->environment_id,
                            .secret = it->secret};
    rc_handoff_answer a;
    int r;

    rc_log_set_context(it->session_id, it->work_id);
    r = launcher_call(c, RC_HANDOFF_OP_LAUNCH, &item, &a);
    rc_log_set_context(NULL, NULL);
    if (r < 0)
        return RC_FCGI_LAUNCH_FAILED;
    switch (a.status) {
    case RC_HANDOFF_ACCEPTED:
        return RC_FCGI_LAUNCH_ACCEPTED;
    case RC_HANDOFF_AT_CAPACITY:
        return RC_FCGI_LAUNCH_AT_CAPACITY;
    case RC_HANDOFF_REFUSED:
        rc_log_set_context(it->session_id, it->work_id);
        rc_log_warn("launcher refused the item: %s", a.reason[0] ? a.reason : "(no reason)");
        rc_log_set_context(NULL, NULL);
        return RC_FCGI_LAUNCH_REFUSED;
    default:
        rc_log_warn("launcher answered launch with \"%s\"%s%s", rc_handoff_status_name(a.status),
                    a.reason[0] ? ": " : "", a.reason);
        return RC_FCGI_LAUNCH_FAILED;
    }
}

static void log_api_failure(const char *what, int r, const rc_api_result *res, const rc_error *err)
{
    if (res->status)
        rc_log_warn("%s: HTTP %ld %s%s%s (request %s)", what, res->status, res->error_type,
                    res->error_code[0] ? "/" : "", res->error_code,
                    res->request_id[0] ? res->request_id : "-");
    else
        rc_log_warn("%s: %s (%s)", what, err->msg[0] ? err->msg : "failed", rc_errcode_name(-r));
}

static enum rc_fcgi_poll_outcome op_poll(void *ctx, cJSON **ret_work)
{
    struct claim *c = ctx;
    const rc_fcgi_config *cfg = c->w->app->cfg;
    rc_api_poll_opts opts = {.reclaim_older_than_ms = cfg->reclaim_ms, .worker_id = cfg->worker_id};
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    enum rc_fcgi_poll_outcome o;
    int r;

    r = rc_api_work_poll(c->api, cfg->environment_id, &opts, &res, &err);
    o = rc_fcgi_poll_classify(r, &res);
    if (o == RC_FCGI_POLL_ITEM) {
        *ret_work = res.json;
        res.json = NULL;
    } else if (o != RC_FCGI_POLL_EMPTY) {
        log_api_failure("poll", r, &res, &err);
    }
    rc_api_result_free(&res);
    return o;
}

static int op_ack(void *ctx, const char *work_id)
{
    struct claim *c = ctx;
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    int r = rc_api_work_ack(c->api, c->w->app->cfg->environment_id, work_id, &res, &err);

    if (r < 0)
        log_api_failure("ack", r, &res, &err);
    rc_api_result_free(&res);
    return r < 0 ? r : 0;
}

static int op_stop(void *ctx, const char *work_id)
{
    struct claim *c = ctx;
    rc_api_result res = RC_API_RESULT_INIT;
    rc_error err = {0};
    int r = rc_api_work_stop(c->api, c->w->app->cfg->environment_id, work_id, true, &res, &err);

    if (r < 0 && res.status == 409) /* already stopped (5.5.4) */
        r = 0;
    if (r < 0)
        log_api_failure("force-stop", r, &res, &err);
    rc_api_result_free(&res);
    return r < 0 ? r : 0;
}

static int64_t op_now(void *ctx)
{
    (void)ctx;
    return rc_fcgi_now_ms();
}

static bool op_cancelled(void *ctx)
{
    struct claim *c = ctx;
    return atomic_load(&c->w->app->stopping);
}

static void op_note(void *ctx, const char *event, const rc_fcgi_work_item *it, const char *detail)
{
    struct claim *c = ctx;
    static const char *const routine[] = {"claimed", "handed_off", "stopped", "claimed_to_stop"};
    int level = RC_LOG_WARN;

    for (size_t i = 0; i < sizeof routine / sizeof routine[0]; i++)
        if (strcmp(event, routine[i]) == 0)
            level = RC_LOG_INFO;
    rc_log_set_context(it->session_id, it->work_id);
    if (level == RC_LOG_INFO && !detail)
        rc_log_info("webhook %s: %s", c->webhook_id, event);
    else
        rc_log(level, "webhook %s: item %s%s%s (data.type %s)", c->webhook_id, event,
               detail ? ": " : "", detail ? detail : "", it->data_type ? it->data_type : "-");
    rc_log_set_context(NULL, NULL);
}

static const rc_fcgi_drain_ops claim_ops = {
    .reserve = op_reserve,
    .release = op_release,
    .launch = op_launch,
    .poll = op_poll,
    .ack = op_ack,
    .stop = op_stop,
    .now_ms = op_now,
    .cancelled = op_cancelled,
    .note = op_note,
};

void rc_fcgi_claim_drain(rc_fcgi_worker *w, const char *webhook_id, rc_fcgi_drain_summary *ret)
{
    const rc_fcgi_config *cfg = w->app->cfg;
    struct claim c = {.w = w, .launcher_fd = -1, .webhook_id = webhook_id};
    rc_fcgi_drain_params p = {.environment_id = cfg->environment_id,
                              .max_items = cfg->drain_cap,
                              .deadline_ms = cfg->drain_deadline_ms};
    rc_error err = {0};

    if (rc_fcgi_worker_api(w, &c.api, &err) < 0) {
        rc_log_error("API client: %s", err.msg);
        *ret = (rc_fcgi_drain_summary){.end = RC_FCGI_DRAIN_POLL_ERROR};
        rc_fcgi_redrain_note(w->app, ret->end);
        return;
    }
    rc_fcgi_drain_run(&claim_ops, &c, &p, ret);
    launcher_close(&c);
    rc_fcgi_redrain_note(w->app, ret->end);
}

int rc_fcgi_launcher_status(const rc_fcgi_config *cfg, long timeout_ms, rc_handoff_answer *ret,
                            rc_error *err)
{
    _cleanup_close_ int fd = -1;
    rc_handoff_answer a;
    int r;

    if ((r = rc_handoff_connect(cfg->launcher_socket, timeout_ms, &fd, err)) < 0 ||
        (r = rc_handoff_call(fd, RC_HANDOFF_OP_STATUS, NULL, &a, err)) < 0)
        return r;
    if (a.status != RC_HANDOFF_OK)
        return rc_error_set(err, RC_EPARSE, "launcher answered status with \"%s\"",
                            rc_handoff_status_name(a.status));
    *ret = a;
    return 0;
}
