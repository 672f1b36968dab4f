/* lifecycle.c - one work item from claim to force-stop (see lifecycle.h; protocol 14.3-14.5).
 *
 * Threads: the session thread (the caller: session fetch, reconcile, tools, result posts, the
 * final force-stop), the heartbeat thread, the stream reader, and a signal thread that turns
 * SIGTERM into a shutdown request. Each thread that talks to the API has its own client; the
 * session thread's client is the only one another thread touches, and only through its cancel
 * token.
 *
 * Shutdown is one function, request_shutdown(), called by the signal thread or by the heartbeat
 * when it ends the lease: it stops the stream reader, aborts the session thread's API call or
 * back-off, and cancels the running tool. The session thread then unwinds; a result that could
 * not be posted gets one last post when the shutdown is local and the lease still held
 * (final_post), and the teardown releases the item unless the lease is lost. A lost lease
 * arriving in the middle of that aborts the last post again: nothing is sent for an item that
 * belongs to someone else. */
#include "lifecycle.h"

#include "cleanup.h"
#include "custom.h"
#include "executor.h"
#include "heartbeat.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "memory.h"
#include "session.h"
#include "stream.h"
#include "sync.h"
#include "tools.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define USER_AGENT                   "runcell-runner"
#define PATH_BUF_MAX                 1024
#define TOOL_LOG_MAX                 (RC_LOG_LINE_MAX + 2048)
#define SHUTDOWN_LOCAL               (-1) /* shutdown cause: a signal (not a lease end) */
#define SESSION_FETCH_BACKOFF_MS     500  /* first wait after a failed session read */
#define SESSION_FETCH_BACKOFF_CAP_MS 8000

typedef struct runner {
    const rc_runner_config *cfg;
    rc_lease lease;
    rc_api *call_api; /* session thread only (its cancel token: any thread) */
    rc_http_cancel *call_cancel;
    rc_toolbox *toolbox;   /* bash (its shell is a child under the tool user) */
    rc_executor *executor; /* the file tools, in the tool executor process */
    rc_custom_tools *custom;
    rc_memory *memory; /* the session's memory stores (NULL: none); set and cleared under lock
                          by the session thread, which alone uses it (others only cancel) */
    rc_api *memory_api;
    bool clean_end; /* 14.3.12: the run ended without a shutdown (earns the final sync) */
    /* The last call that ran, for its log line: its event id and exit status (-1: none). */
    char last_call_id[RC_SESSION_ID_MAX + 1];
    int last_exit_status;
    int last_signal;
    rc_heartbeat *hb;

    pthread_mutex_t lock; /* guards stream and session pointers against the other threads */
    rc_stream *stream;
    rc_session *session;
    _Atomic int64_t ttl_ms;

    atomic_bool shutdown;
    atomic_bool stopping_item;  /* teardown's force-stop is under way: no cancel may abort it */
    _Atomic int shutdown_cause; /* SHUTDOWN_LOCAL or an rc_lease_end */
    _Atomic int64_t shutdown_at_ms;

    pthread_t sig_thread;
    bool sig_thread_started;
    pthread_cond_t done_cond; /* CLOCK_MONOTONIC */
    bool done;
} runner;

/* ---- shutdown ----------------------------------------------------------------------------- */

/* Abort the session thread's API call in flight, unless it is teardown's force-stop (which has
 * its own deadline); the lock orders this against force_stop's reset. */
static void cancel_call(runner *rn)
{
    pthread_mutex_lock(&rn->lock);
    if (!atomic_load(&rn->stopping_item))
        rc_http_cancel_trigger(rn->call_cancel);
    pthread_mutex_unlock(&rn->lock);
}

static void request_shutdown(runner *rn, int cause)
{
    bool first = !atomic_exchange(&rn->shutdown, true);

    if (!first) {
        /* Already shutting down; a lease lost meanwhile must still abort a last result post. */
        if (rc_lease_reason_is_lost(cause))
            cancel_call(rn);
        return;
    }
    atomic_store(&rn->shutdown_cause, cause);
    atomic_store(&rn->shutdown_at_ms, rc_http_now_mono_ms());
    /* The call first: cancelling the stream wakes the session thread, which may go straight to
     * teardown's force-stop, which no later cancel may abort. */
    cancel_call(rn);
    pthread_mutex_lock(&rn->lock);
    if (rn->stream)
        rc_stream_cancel(rn->stream);
    rc_memory_cancel(rn->memory); /* a sync or download in flight; teardown's flush resets it */
    rc_executor_cancel(rn->executor);
    pthread_mutex_unlock(&rn->lock);
    rc_toolbox_cancel(rn->toolbox);
    if (rn->custom)
        rc_custom_tools_cancel(rn->custom);
}

static void on_heartbeat_end(void *ud, int reason)
{
    runner *rn = ud;
    rc_lease_finish(&rn->lease, reason);
    request_shutdown(rn, reason);
}

static void on_heartbeat_ttl(void *ud, int64_t ttl_ms)
{
    runner *rn = ud;
    atomic_store(&rn->ttl_ms, ttl_ms);
    pthread_mutex_lock(&rn->lock);
    if (rn->session)
        rc_session_set_send_window(rn->session, ttl_ms);
    pthread_mutex_unlock(&rn->lock);
}

/* ---- signals ------------------------------------------------------------------------------ */

void rc_runner_signal_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1); /* internal: tells the signal thread the run is over */
}

/* After a shutdown signal the run must end within the budget; a teardown stuck past it (a tool
 * that ignores cancellation) ends the process rather than outlive the supervisor's grace. */
static void wait_done_or_exit(runner *rn)
{
    int64_t end = rc_http_now_mono_ms() + RC_RUNNER_SHUTDOWN_BUDGET_MS - 500;
    struct timespec ts = {.tv_sec = end / 1000, .tv_nsec = (long)(end % 1000) * 1000000L};

    pthread_mutex_lock(&rn->lock);
    while (!rn->done && pthread_cond_timedwait(&rn->done_cond, &rn->lock, &ts) == 0)
        ;
    if (!rn->done) {
        rc_log_error("shutdown did not finish within %d ms; exiting now",
                     RC_RUNNER_SHUTDOWN_BUDGET_MS);
        _exit(RC_RUNNER_EXIT_FAILED);
    }
    pthread_mutex_unlock(&rn->lock);
}

static void *signal_main(void *arg)
{
    runner *rn = arg;
    sigset_t set;
    int sig = 0;

    rc_log_set_context(rn->cfg->session_id, rn->cfg->work_id);
    rc_runner_signal_set(&set);
    if (sigwait(&set, &sig) != 0 || sig == SIGUSR1)
        return NULL;
    rc_log_info("received %s; cancelling the running tool and releasing the item",
                sig == SIGTERM  ? "SIGTERM"
                : sig == SIGINT ? "SIGINT"
                                : "SIGHUP");
    request_shutdown(rn, SHUTDOWN_LOCAL);
    wait_done_or_exit(rn);
    return NULL;
}

/* ---- the session's I/O -------------------------------------------------------------------- */

static int io_list(void *ud, rc_api_page_fn fn, void *fn_ud, rc_error *err)
{
    runner *rn = ud;
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    return rc_api_events_list(rn->call_api, rn->cfg->session_id, fn, fn_ud, &res, err);
}

static int session_path(const runner *rn, rc_buf *path, const char *tail, rc_error *err)
{
    int r;
    if ((r = rc_http_path_add_segment(path, "v1", err)) < 0 ||
        (r = rc_http_path_add_segment(path, "sessions", err)) < 0 ||
        (r = rc_http_path_add_segment(path, rn->cfg->session_id, err)) < 0)
        return r;
    return tail ? rc_http_path_add_segment(path, tail, err) : 0;
}

/* POST /v1/sessions/{id}/events {"events":[event]} with a deadline (rc_api_events_send has
 * none, and the last post of a shutdown needs one). */
static int io_send(void *ud, const cJSON *event, int64_t deadline, rc_error *err)
{
    runner *rn = ud;
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(PATH_BUF_MAX);
    _cleanup_json_ cJSON *body = cJSON_CreateObject();
    cJSON *arr;
    rc_api_request req = {.method = "POST", .accept_any_body = true, .deadline_mono_ms = deadline};
    int r;

    if ((r = session_path(rn, &path, "events", err)) < 0)
        return r;
    if (!body || !(arr = cJSON_AddArrayToObject(body, "events")) ||
        !cJSON_AddItemReferenceToArray(arr, (cJSON *)event))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    req.path = rc_buf_cstr(&path);
    req.json_body = body;
    return rc_api_request_do(rn->call_api, &req, &res, err);
}

static void note_call(runner *rn, const cJSON *call)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(call, "id");
    snprintf(rn->last_call_id, sizeof rn->last_call_id, "%s",
             cJSON_IsString(id) ? id->valuestring : "");
    rn->last_exit_status = -1;
    rn->last_signal = 0;
}

static int run_custom(runner *rn, const char *name, const cJSON *input, rc_tool_result *ret,
                      rc_error *err)
{
    rc_custom_run_opts opts = {.workdir = rn->cfg->workdir, .uid = -1, .gid = -1};
    rc_custom_run_info info;
    int r;

    if (rn->cfg->set_tool_ids) {
        opts.uid = (int)rn->cfg->tool_uid;
        opts.gid = (int)rn->cfg->tool_gid;
    }
    r = rc_custom_tools_run(rn->custom, name, input, &opts, ret, err);
    if (r == -RC_ENOTFOUND)
        return r;
    rc_custom_tools_last_run(rn->custom, &info);
    rn->last_exit_status = info.exit_code;
    rn->last_signal = info.signal;
    return r;
}

/* Issue 11: tell the broker which tool call is running (id set) or that none is (NULL), so that
 * the egress proxy's audit line of each credential injection names the calls that were running.
 * Socket mode only: the broker's channel answers it locally (PUT
 * /_runcell/v1/running-tool-calls) and only from our uid. Calls run one at a time on the session
 * thread, so the whole set is this call. Best effort: a failure never affects the call. */
#define RUNNING_CALLS_PATH       "/_runcell/v1/running-tool-calls"
#define RUNNING_CALLS_TIMEOUT_MS 2000

static void report_running_calls(runner *rn, const char *id)
{
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    _cleanup_json_ cJSON *body = cJSON_CreateObject();
    cJSON *ids;
    rc_error e = {0};

    if (!rn->cfg->api_socket || atomic_load(&rn->shutdown))
        return;
    if (!body || !(ids = cJSON_AddArrayToObject(body, "ids")) ||
        (id && !cJSON_AddItemToArray(ids, cJSON_CreateString(id))))
        return;
    rc_api_request req = {.method = "PUT",
                          .path = RUNNING_CALLS_PATH,
                          .json_body = body,
                          .accept_any_body = true,
                          .timeout_ms = RUNNING_CALLS_TIMEOUT_MS,
                          .max_attempts = 1};
    if (rc_api_request_do(rn->call_api, &req, &res, &e) < 0)
        rc_log_debug("running tool calls not reported to the broker: %s", e.msg);
}

static int io_run_tool_now(runner *rn, const cJSON *call, rc_tool_result *ret, rc_error *err);

static int io_run_tool(void *ud, const cJSON *call, rc_tool_result *ret, rc_error *err)
{
    runner *rn = ud;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(call, "id");
    bool reported = cJSON_IsString(id);
    int r;

    if (reported)
        report_running_calls(rn, id->valuestring);
    r = io_run_tool_now(rn, call, ret, err);
    if (reported)
        report_running_calls(rn, NULL);
    return r;
}

static int io_run_tool_now(runner *rn, const cJSON *call, rc_tool_result *ret, rc_error *err)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(call, "name");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(call, "input");
    int r;

    if (!cJSON_IsString(name))
        return -RC_ENOTFOUND;
    note_call(rn, call);
    /* One registry by name, as the SDK's: the built-in names first (a manifest cannot take
     * them), then the manifest. The file tools run in the executor process. */
    if (rn->executor && rc_executor_owns(name->valuestring))
        return rc_executor_run(rn->executor, name->valuestring, input, ret, err);
    if (rc_toolbox_owns(name->valuestring)) {
        r = rc_toolbox_run(rn->toolbox, name->valuestring, input, ret, err);
        rn->last_exit_status = rc_toolbox_last_exit_status(rn->toolbox);
        return r;
    }
    if (!rn->custom)
        return -RC_ENOTFOUND;
    return run_custom(rn, name->valuestring, input, ret, err);
}

static int io_sleep(void *ud, int64_t ms)
{
    runner *rn = ud;
    return rc_http_cancel_sleep(rn->call_cancel, ms, NULL);
}

static int64_t io_now(void *ud)
{
    (void)ud;
    return rc_http_now_mono_ms();
}

static bool io_cancelled(void *ud)
{
    runner *rn = ud;
    return atomic_load(&rn->shutdown);
}

/* 14.5.3: after a local shutdown (signal, or the server asking to stop) the result of the call
 * that was running is still posted, while the lease is held; never after the lease is lost. */
static bool io_final_post(void *ud, int64_t *ret_deadline)
{
    runner *rn = ud;
    int cause = atomic_load(&rn->shutdown_cause);

    if (cause != SHUTDOWN_LOCAL && cause != RC_LEASE_HEARTBEAT_STOP)
        return false;
    if (rc_lease_reason_is_lost(rc_lease_reason(&rn->lease)))
        return false;
    rc_http_cancel_reset(rn->call_cancel);
    if (rc_lease_reason_is_lost(rc_lease_reason(&rn->lease))) { /* lost meanwhile */
        rc_http_cancel_trigger(rn->call_cancel);
        return false;
    }
    *ret_deadline = atomic_load(&rn->shutdown_at_ms) + RC_RUNNER_FINAL_POST_BUDGET_MS;
    return true;
}

static const char *outcome_name(int outcome)
{
    static const char *const names[] = {"posted", "not_posted", "not_owned", "denied"};
    return outcome >= 0 && outcome <= RC_CALL_DENIED ? names[outcome] : "unknown";
}

/* One structured line per tool call: the common log fields (rc_log_format) plus the call's own,
 * spliced in as real JSON members. */
static void log_call(runner *rn, const rc_session_call_report *rep)
{
    _cleanup_json_ cJSON *f = cJSON_CreateObject();
    _cleanup_free_ char *fields = NULL;
    char line[TOOL_LOG_MAX];
    int n;

    if (rn->cfg->log_level > RC_LOG_INFO || !f)
        return;
    cJSON_AddStringToObject(f, "tool", rep->name);
    cJSON_AddStringToObject(f, "tool_use_id", rep->id);
    cJSON_AddStringToObject(f, "kind", rep->custom ? "custom" : "builtin");
    cJSON_AddStringToObject(f, "outcome", outcome_name(rep->outcome));
    cJSON_AddBoolToObject(f, "is_error", rep->is_error);
    cJSON_AddNumberToObject(f, "duration_ms", (double)rep->duration_ms);
    cJSON_AddNumberToObject(f, "output_bytes", (double)rep->output_bytes);
    cJSON_AddNumberToObject(f, "send_attempts", rep->attempts);
    cJSON_AddBoolToObject(f, "confirmed", rep->confirmed);
    /* bash and custom tools: the command's exit status (null when it did not exit by itself:
     * a file tool, a timeout, a signal, a refused input); a custom tool's fatal signal too. */
    if (rep->id && strcmp(rep->id, rn->last_call_id) == 0 && rn->last_exit_status >= 0)
        cJSON_AddNumberToObject(f, "exit_status", rn->last_exit_status);
    else
        cJSON_AddNullToObject(f, "exit_status");
    if (rep->id && strcmp(rep->id, rn->last_call_id) == 0 && rn->last_signal > 0)
        cJSON_AddNumberToObject(f, "signal", rn->last_signal);
    if (!(fields = cJSON_PrintUnformatted(f)) || strlen(fields) > 2000)
        return;
    rc_redact(fields);
    n = rc_log_format(line, sizeof line - 2048, RC_LOG_INFO, "tool call");
    if (n < 3 || line[n - 2] != '}')
        return;
    /* "...,"msg":"tool call"}\n" + ",{fields minus its braces}" */
    n -= 2;
    n += snprintf(line + n, sizeof line - (size_t)n, ",%s", fields + 1);
    if (n > 0 && (size_t)n + 1 < sizeof line) {
        line[n++] = '\n';
        ssize_t w = write(STDERR_FILENO, line, (size_t)n);
        (void)w;
    }
}

/* After each dispatched call: the call's log line, then a memory sync when one is due
 * (14.3.11). */
static void io_on_call(void *ud, const rc_session_call_report *rep)
{
    runner *rn = ud;
    log_call(rn, rep);
    if (!atomic_load(&rn->shutdown))
        rc_memory_sync_if_due(rn->memory);
}

/* ---- steps -------------------------------------------------------------------------------- */

static int api_new(const rc_runner_config *cfg, rc_api **ret, rc_error *err)
{
    rc_api_config ac = {
        .http = {.base_url = cfg->base_url,
                 .unix_socket = cfg->api_socket,
                 .user_agent = USER_AGENT},
        .credential = cfg->credential,
    };
    return rc_api_new(&ac, ret, err);
}

static rc_toolbox_config tool_config(const rc_runner_config *cfg)
{
    static const char *const scrub[] = {"RUNCELL_", NULL};
    return (rc_toolbox_config){.workdir = cfg->workdir,
                               .scrub_prefixes = scrub,
                               .set_ids = cfg->set_tool_ids,
                               .uid = cfg->tool_uid,
                               .gid = cfg->tool_gid};
}

/* 14.3.10: the six built-in tools bound to the workdir, plus the manifest's custom tools. */
static int tools_new(runner *rn, rc_error *err)
{
    const rc_runner_config *cfg = rn->cfg;
    rc_toolbox_config tc = tool_config(cfg);
    struct stat st;
    int r;

    if (stat(cfg->workdir, &st) < 0)
        return rc_error_sys(err, RC_EINVAL, "RUNCELL_WORKDIR %s", cfg->workdir);
    if (!S_ISDIR(st.st_mode))
        return rc_error_set(err, RC_EINVAL, "RUNCELL_WORKDIR %s is not a directory", cfg->workdir);
    if ((r = rc_custom_tools_load(cfg->tools_manifest, &rn->custom, err)) < 0)
        return rc_error_wrap(err, -r, "custom tools manifest");
    if (rc_custom_tools_count(rn->custom) > 0)
        rc_log_info("serving %zu custom tools from the manifest",
                    rc_custom_tools_count(rn->custom));
    if ((r = rc_toolbox_new(&tc, &rn->toolbox, err)) < 0)
        return rc_error_wrap(err, -r, "tools");
    if ((r = rc_executor_start(&(rc_executor_config){.tools = &tc}, &rn->executor, err)) < 0)
        return rc_error_wrap(err, -r, "tools");
    rc_log_info("tool executor started (pid %d)", (int)rc_executor_pid(rn->executor));
    return 0;
}

/* 14.3.5-6: 1 = serve (*ret_session = the session object), 0 = terminated (no tools),
 * negative = the item fails. */
static int fetch_session(runner *rn, cJSON **ret_session, rc_error *err)
{
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    const char *status = NULL;
    int r = rc_api_session_get(rn->call_api, rn->cfg->session_id, &res, err);

    if (r < 0)
        return r;
    if (rc_json_get_string(res.json, "status", &status, err) < 0)
        return rc_error_wrap(err, RC_EPARSE, "session answer");
    if (strcmp(status, "terminated") == 0) {
        rc_log_info("skipping the work item of a terminated session");
        return 0;
    }
    *ret_session = take_ptr(res.json);
    return 1;
}

/* The lease TTL the API reported, or the one assumed until it does (7.2). */
static int64_t lease_window_ms(runner *rn)
{
    int64_t ttl = atomic_load(&rn->ttl_ms);
    return ttl > 0 ? ttl : RC_HB_DEFAULT_TTL_MS;
}

/* 14.3.5, with the outage tolerance of the result posts (13.9): a transient failure (connection
 * refused, 5xx, 429, the broker's 502) is retried with back-off for up to the lease TTL, so an
 * API blip at start neither fails the item nor stops the user's turn; a fatal 4xx (401, 403,
 * 404), a lost lease or a shutdown ends it at once. */
static int fetch_session_retrying(runner *rn, cJSON **ret_session, rc_error *err)
{
    int64_t start = io_now(rn), wait = SESSION_FETCH_BACKOFF_MS;
    int r;

    for (int attempt = 1;; attempt++) {
        r = fetch_session(rn, ret_session, err);
        if (r >= 0 || r == -RC_EFATAL || atomic_load(&rn->shutdown) ||
            rc_lease_reason_is_lost(rc_lease_reason(&rn->lease)))
            return r;
        if (io_now(rn) - start + wait > lease_window_ms(rn))
            return r;
        rc_log_warn("session fetch failed (attempt %d); retrying in %lld ms: %s", attempt,
                    (long long)wait, err ? err->msg : "?");
        if (io_sleep(rn, wait) < 0)
            return r;
        wait = wait * 2 > SESSION_FETCH_BACKOFF_CAP_MS ? SESSION_FETCH_BACKOFF_CAP_MS : wait * 2;
        if (err)
            rc_error_clear(err);
    }
}

/* The file tools reach the store folders as extra allowed roots, read-only stores as read-only
 * roots (14.3.9, 17.3): the executor took its roots at start, so a new one is started with them
 * and replaces the first. */
static int tools_add_memory_roots(runner *rn, rc_error *err)
{
    rc_toolbox_config tc = tool_config(rn->cfg);
    rc_executor *ex = NULL, *old;
    int r;

    tc.allowed_roots = rc_memory_roots(rn->memory);
    tc.read_only_roots = rc_memory_read_only_roots(rn->memory);
    if ((r = rc_executor_start(&(rc_executor_config){.tools = &tc}, &ex, err)) < 0)
        return rc_error_wrap(err, -r, "tool executor with the memory folders");
    pthread_mutex_lock(&rn->lock);
    old = rn->executor;
    rn->executor = ex;
    if (atomic_load(&rn->shutdown))
        rc_executor_cancel(ex);
    pthread_mutex_unlock(&rn->lock);
    rc_executor_free(old);
    rc_log_info("tool executor restarted with %zu memory folders (pid %d)",
                rc_memory_store_count(rn->memory), (int)rc_executor_pid(ex));
    return 0;
}

/* 14.3.7 and 14.3.9: 0 = go on (memory mounted, or none, or disabled), negative = the item
 * fails. In socket mode the runner cannot see the credential behind the broker: the shim
 * launches only items whose secret carries a sessions token (or brokers the environment key when
 * the operator allows it, which the memory endpoints then refuse: the download fails the item). */
static int memory_setup(runner *rn, const cJSON *session, rc_error *err)
{
    const rc_runner_config *cfg = rn->cfg;
    size_t n = rc_memory_session_store_count(session);
    rc_memory *m = NULL;
    int r;

    if (n == 0)
        return 0;
    if (cfg->memory_sync_interval_ms < 0) {
        rc_log_info("memory stores disabled (RUNCELL_MEMORY_SYNC_INTERVAL_MS=off); the session's "
                    "%zu stores are not mounted",
                    n);
        return 0;
    }
    if (cfg->credential_kind == RC_RUNNER_CRED_ENVIRONMENT_KEY)
        return rc_error_set(err, RC_EINVAL,
                            "cannot mount the session's memories: the work item carried no "
                            "sessions token, and the memory endpoints reject the environment key");
    rc_memory_config mc = {.workdir = cfg->workdir,
                           .sync_interval_ms = cfg->memory_sync_interval_ms,
                           .delete_delay_ms = cfg->memory_delete_delay_ms,
                           .set_ids = cfg->set_tool_ids,
                           .uid = cfg->tool_uid,
                           .gid = cfg->tool_gid};
    if ((r = api_new(cfg, &rn->memory_api, err)) < 0)
        return r;
    mc.api = rn->memory_api;
    if ((r = rc_memory_new(&mc, &m, err)) < 0)
        return r;
    pthread_mutex_lock(&rn->lock);
    rn->memory = m;
    if (atomic_load(&rn->shutdown))
        rc_memory_cancel(m);
    pthread_mutex_unlock(&rn->lock);
    if ((r = rc_memory_download(m, session, err)) < 0)
        return r;
    return tools_add_memory_roots(rn, err);
}

/* The idle window closed (12): one last history read catches input that reached the session
 * while the window was closing (its events may still be on their way down the stream), so it is
 * not left waiting for a worker that is about to stop the item. True when the session is busy
 * again; a failed read keeps the decision to stop. */
static bool input_arrived(rc_session *session)
{
    rc_error e = {0};
    int64_t deadline;

    if (rc_session_reconcile(session, &e) < 0)
        return false;
    return !rc_session_idle_deadline(session, &deadline);
}

static int serve(runner *rn, rc_error *err)
{
    rc_session_io io = {.list = io_list,
                        .send = io_send,
                        .run_tool = io_run_tool,
                        .sleep = io_sleep,
                        .now_ms = io_now,
                        .cancelled = io_cancelled,
                        .final_post = io_final_post,
                        .on_call = io_on_call,
                        .ud = rn};
    rc_session_config sc = {.max_idle_ms = rn->cfg->max_idle_ms,
                            .send_window_ms = atomic_load(&rn->ttl_ms)};
    rc_stream_config stc = {.session_id = rn->cfg->session_id, .work_id = rn->cfg->work_id};
    rc_session *session = NULL;
    rc_stream *stream = NULL;
    int r;

    if ((r = rc_session_new(&sc, &io, &session, err)) < 0)
        return r;
    if ((r = api_new(rn->cfg, &stc.api, err)) < 0 ||
        (r = rc_stream_start(&stc, &stream, err)) < 0) {
        rc_api_free(stc.api);
        rc_session_free(session);
        return r;
    }
    pthread_mutex_lock(&rn->lock);
    rn->session = session;
    rn->stream = stream;
    if (atomic_load(&rn->shutdown)) /* a shutdown that came before the stream existed */
        rc_stream_cancel(stream);
    pthread_mutex_unlock(&rn->lock);

    while ((r = rc_session_serve(session, stream, err)) == RC_SESSION_END_IDLE &&
           !atomic_load(&rn->shutdown) && input_arrived(session))
        rc_log_info("new input arrived as the idle window closed; serving on");
    if (r > 0)
        rc_log_info("session run ended: %s", rc_session_end_name(r));

    pthread_mutex_lock(&rn->lock);
    rn->stream = NULL;
    rn->session = NULL;
    pthread_mutex_unlock(&rn->lock);
    rc_stream_free(stream);
    rc_session_free(session);
    return r;
}

/* 14.3.13.4: force-stop, 409 = already stopped = success. */
static void force_stop(runner *rn)
{
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(PATH_BUF_MAX);
    _cleanup_json_ cJSON *body = cJSON_CreateObject();
    rc_api_request req = {.method = "POST", .accept_any_body = true};
    int64_t at = atomic_load(&rn->shutdown_at_ms);
    rc_error e = {0};
    int r;

    req.deadline_mono_ms = rc_http_now_mono_ms() + RC_RUNNER_SHUTDOWN_BUDGET_MS;
    if (at > 0 && at + RC_RUNNER_STOP_BUDGET_MS < req.deadline_mono_ms)
        req.deadline_mono_ms = at + RC_RUNNER_STOP_BUDGET_MS;
    if (!body || !cJSON_AddTrueToObject(body, "force") ||
        rc_http_path_add_segment(&path, "v1", &e) < 0 ||
        rc_http_path_add_segment(&path, "environments", &e) < 0 ||
        rc_http_path_add_segment(&path, rn->cfg->environment_id, &e) < 0 ||
        rc_http_path_add_segment(&path, "work", &e) < 0 ||
        rc_http_path_add_segment(&path, rn->cfg->work_id, &e) < 0 ||
        rc_http_path_add_segment(&path, "stop", &e) < 0) {
        rc_log_error("force-stop on exit failed: out of memory");
        return;
    }
    req.path = rc_buf_cstr(&path);
    req.json_body = body;
    pthread_mutex_lock(&rn->lock);
    atomic_store(&rn->stopping_item, true);
    rc_http_cancel_reset(rn->call_cancel);
    pthread_mutex_unlock(&rn->lock);
    r = rc_api_request_do(rn->call_api, &req, &res, &e);
    if (r == 0)
        rc_log_info("work item force-stopped");
    else if (res.status == 409)
        rc_log_info("work item was already stopped");
    else
        rc_log_error("force-stop on exit failed: %s", e.msg);
}

/* ---- the run ------------------------------------------------------------------------------ */

static int runner_init(runner *rn, const rc_runner_config *cfg)
{
    *rn = (runner){.cfg = cfg, .last_exit_status = -1};
    return rc_sync_init_monotonic(&rn->lock, &rn->done_cond);
}

static void runner_finish(runner *rn)
{
    if (rn->sig_thread_started) {
        pthread_mutex_lock(&rn->lock);
        rn->done = true;
        pthread_cond_broadcast(&rn->done_cond);
        pthread_mutex_unlock(&rn->lock);
        pthread_kill(rn->sig_thread, SIGUSR1);
        pthread_join(rn->sig_thread, NULL);
    }
    rc_toolbox_free(rn->toolbox); /* kills the shell's process group */
    rc_executor_free(rn->executor);
    rc_custom_tools_free(rn->custom);
    rc_api_free(rn->call_api);
    rc_memory_free(rn->memory);
    rc_api_free(rn->memory_api);
    pthread_cond_destroy(&rn->done_cond);
    pthread_mutex_destroy(&rn->lock);
}

/* Everything that needs no network: a failure here claims nothing. */
static int setup_local(runner *rn, rc_error *err)
{
    int r;
    if ((r = tools_new(rn, err)) < 0 || (r = api_new(rn->cfg, &rn->call_api, err)) < 0)
        return r;
    rn->call_cancel = rc_http_client_cancel(rc_api_http(rn->call_api));
    if ((r = pthread_create(&rn->sig_thread, NULL, signal_main, rn)) != 0) {
        errno = r;
        return rc_error_sys(err, RC_EIO, "cannot start the signal thread");
    }
    rn->sig_thread_started = true;
    return 0;
}

static int start_heartbeat(runner *rn, rc_error *err)
{
    rc_heartbeat_config hc = {.environment_id = rn->cfg->environment_id,
                              .work_id = rn->cfg->work_id,
                              .session_id = rn->cfg->session_id,
                              .on_ttl = on_heartbeat_ttl,
                              .on_end = on_heartbeat_end,
                              .userdata = rn};
    int r;

    if ((r = api_new(rn->cfg, &hc.api, err)) < 0)
        return r;
    if ((r = rc_heartbeat_start(&hc, &rn->hb, err)) < 0) {
        rc_api_free(hc.api);
        return r;
    }
    if (!rc_heartbeat_wait_first(rn->hb, RC_RUNNER_FIRST_BEAT_WAIT_MS))
        rc_log_warn("first heartbeat still pending after %d ms; fetching the session anyway",
                    RC_RUNNER_FIRST_BEAT_WAIT_MS);
    return 0;
}

/* Claim to the end of serving; returns true when the run failed. */
static bool run_item(runner *rn)
{
    rc_error e = {0};
    int r;

    if (start_heartbeat(rn, &e) < 0) {
        rc_log_error("cannot start the heartbeat: %s", e.msg);
        return true;
    }
    if (atomic_load(&rn->shutdown))
        return false;
    _cleanup_json_ cJSON *session = NULL;
    r = fetch_session_retrying(rn, &session, &e);
    if (r < 0 && !atomic_load(&rn->shutdown)) {
        rc_log_error("session fetch failed; the work item fails: %s", e.msg);
        return true;
    }
    if (r <= 0)
        return false;
    if (memory_setup(rn, session, &e) < 0) {
        if (atomic_load(&rn->shutdown))
            return false;
        rc_log_error("memory stores: the work item fails: %s", e.msg);
        return true;
    }
    r = serve(rn, &e);
    rn->clean_end = !atomic_load(&rn->shutdown);
    if (r < 0) {
        rc_log_error("session run failed: %s", e.msg);
        return true;
    }
    return r == RC_SESSION_END_STREAM_FATAL;
}

static int exit_status(runner *rn, bool failed)
{
    int reason = rc_lease_reason(&rn->lease);
    if (rc_lease_reason_is_lost(reason))
        return RC_RUNNER_EXIT_LEASE_LOST;
    if (failed || reason == RC_LEASE_REJECTED)
        return RC_RUNNER_EXIT_FAILED;
    return RC_RUNNER_EXIT_OK;
}

/* A teardown bound for memory: 30 s, and within the shutdown budget once a signal came (the
 * force-stop still needs its turn before RC_RUNNER_STOP_BUDGET_MS). */
static int64_t memory_deadline(runner *rn)
{
    int64_t d = rc_http_now_mono_ms() + RC_MEMORY_TEARDOWN_BOUND_MS;
    int64_t at = atomic_load(&rn->shutdown_at_ms);
    if (at > 0 && at + RC_RUNNER_MEMORY_BUDGET_MS < d)
        d = at + RC_RUNNER_MEMORY_BUDGET_MS;
    return d;
}

/* 14.3.13.2: the final sync on a clean end, the push-only flush always, then the folders go. */
static void memory_teardown(runner *rn)
{
    rc_memory *m;

    pthread_mutex_lock(&rn->lock);
    m = rn->memory;
    pthread_mutex_unlock(&rn->lock);
    if (!m)
        return;
    if (rn->clean_end)
        rc_memory_finish(m, memory_deadline(rn));
    rc_memory_uncancel(m);
    rc_memory_flush(m, memory_deadline(rn));
    pthread_mutex_lock(&rn->lock);
    rn->memory = NULL;
    pthread_mutex_unlock(&rn->lock);
    rc_memory_free(m);
}

static void teardown(runner *rn)
{
    int reason;

    memory_teardown(rn);
    rc_lease_finish(&rn->lease, RC_LEASE_RUNNER_DONE);
    rc_heartbeat_stop(rn->hb); /* 7.11: kept running until just before the force-stop */
    rn->hb = NULL;
    reason = rc_lease_reason(&rn->lease);
    if (rc_lease_reason_is_lost(reason))
        rc_log_info("lease lost (%s); released without stopping the item",
                    rc_lease_reason_name(reason));
    else
        force_stop(rn);
}

int rc_runner_run(const rc_runner_config *cfg)
{
    runner rn;
    rc_error e = {0};
    bool failed;
    int r, status;

    if ((r = runner_init(&rn, cfg)) != 0) {
        rc_log_error("cannot initialise the runner: %s", strerror(r));
        return RC_RUNNER_EXIT_FAILED;
    }
    if (setup_local(&rn, &e) < 0) {
        rc_log_error("%s", e.msg);
        runner_finish(&rn);
        return RC_RUNNER_EXIT_CONFIG;
    }
    rc_log_info("serving work item (workdir %s, max idle %lld ms, %s)", cfg->workdir,
                cfg->max_idle_ms, cfg->api_socket ? "broker socket" : "direct");
    failed = run_item(&rn);
    teardown(&rn);
    status = exit_status(&rn, failed);
    runner_finish(&rn);
    rc_log_info("runner exiting with status %d", status);
    return status;
}
