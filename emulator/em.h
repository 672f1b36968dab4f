/* em.h - runcell-emulator's in-memory model, shared by its modules.
 *
 * The emulator keeps every object (environments, agents, sessions, events, work items,
 * credentials, open streams, parked requests) in memory under ONE mutex, rc_em.lock. Every
 * function named rc_emstore_*, rc_emsse_*, rc_emplay_* and the route handlers expects the lock to
 * be held by its caller unless its comment says otherwise; critical sections stay short because
 * nothing under the lock blocks (no I/O, no sleeping: long-polls and streams suspend their
 * connection instead, see server.c and sse.c).
 *
 * Objects are never freed while the server runs: a deleted environment or session is only marked
 * deleted, so raw pointers between objects stay valid for the life of the process. (Verdicts of
 * deleted sessions stay readable for the same reason.) Everything is freed by rc_emstore_free at
 * exit. */
#ifndef RUNCELL_EMULATOR_EM_H
#define RUNCELL_EMULATOR_EM_H

#include "buf.h"
#include "err.h"
#include "scenario.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_EM_ID_MAX             48                 /* "sesn_" + 24 base62 + room */
#define RC_EM_DEFAULT_TTL_S      300                /* 6.3.1 */
#define RC_EM_RECLAIM_DEFAULT_MS 5000               /* 5.2 */
#define RC_EM_POLLING_WINDOW_MS  30000              /* 5.6.4 */
#define RC_EM_STREAM_BUF_MAX     (4u * 1024 * 1024) /* 9.2.10 */
#define RC_EM_BODY_MAX           (4u * 1024 * 1024) /* request bodies; results >= 1 MiB (9.3.8) */
#define RC_EM_JSON_DEPTH_MAX     128
#define RC_EM_PAGE_MAX           1000 /* 9.1: the runner sends limit=1000 */
#define RC_EM_PAGE_DEFAULT       20
#define RC_EM_REQLOG_MAX         20000 /* request log ring */
#define RC_EM_CONFIRM_DELAY_MS   100   /* scenario "confirm": the user answers after this */

/* Credential kinds (bit flags so routes can list the kinds they accept). */
enum rc_em_cred_kind {
    RC_EM_CRED_NONE = 0,
    RC_EM_CRED_API_KEY = 1,
    RC_EM_CRED_ENV_KEY = 2,
    RC_EM_CRED_TOKEN = 4,
};

enum rc_em_work_state {
    RC_EM_WORK_QUEUED,
    RC_EM_WORK_STARTING,
    RC_EM_WORK_ACTIVE,
    RC_EM_WORK_STOPPING,
    RC_EM_WORK_STOPPED,
};

enum rc_em_session_status {
    RC_EM_SESSION_IDLE,
    RC_EM_SESSION_RUNNING,
    RC_EM_SESSION_RESCHEDULING,
    RC_EM_SESSION_TERMINATED,
};

typedef struct rc_em_poller {
    char *worker_id;
    int64_t last_ms;
} rc_em_poller;

typedef struct rc_em_env {
    char id[RC_EM_ID_MAX];
    char *name;
    char *description; /* NULL = null */
    char *scope;
    cJSON *metadata;                             /* object */
    int64_t created_us, updated_us, archived_us; /* archived_us 0 = not archived */
    bool deleted;
    rc_em_poller *pollers; /* Anthropic-Worker-ID values seen (5.2.9) */
    size_t npollers;
} rc_em_env;

typedef struct rc_em_agent {
    char id[RC_EM_ID_MAX];
    cJSON **versions; /* versions[i] is the agent object of version i + 1 */
    size_t nversions;
} rc_em_agent;

typedef struct rc_em_event {
    char id[RC_EM_ID_MAX];
    char *type;
    char *json; /* compact JSON of the stored event */
    size_t json_len;
    int64_t processed_us; /* 0 = null */
} rc_em_event;

/* An agent.tool_use / agent.custom_tool_use of a session and how it was resolved. */
typedef struct rc_em_call {
    char id[RC_EM_ID_MAX];
    bool custom;
    bool ask;       /* evaluated_permission "ask": waits for a user.tool_confirmation */
    int confirmed;  /* 0 none, 1 allow, 2 deny */
    bool answered;  /* a result (or the server's synthetic denial) is recorded */
    bool abandoned; /* the agent moved on without it (interrupt, scenario timeout) */
} rc_em_call;

struct rc_em_stream;
struct rc_em_play;
struct rc_em_work;

typedef struct rc_em_session {
    char id[RC_EM_ID_MAX];
    rc_em_env *env;
    cJSON *agent; /* snapshot of the agent version, with the scenario's tools when it has some */
    cJSON *metadata;
    cJSON *resources, *vault_ids, *budget;
    char *title; /* NULL = null */
    enum rc_em_session_status status;
    int64_t created_us, updated_us, archived_us;
    bool deleted;
    rc_em_event **events;
    size_t nevents, events_cap;
    rc_em_call *calls;
    size_t ncalls, calls_cap;
    struct rc_em_stream *streams; /* open SSE subscribers (list through stream->snext) */
    struct rc_em_work *live;      /* the live work item (queued..stopping) or NULL (6.5.2) */
    struct rc_em_play *play;      /* scenario player / default agent state; NULL until used */
} rc_em_session;

typedef struct rc_em_work {
    char id[RC_EM_ID_MAX];
    rc_em_env *env;
    char data_type[16]; /* "session" | "healthcheck" */
    char data_id[RC_EM_ID_MAX];
    rc_em_session *session; /* NULL for healthcheck items */
    enum rc_em_work_state state;
    char *token;  /* sessions token (4.4.1) */
    char *secret; /* base64url of {"sessions_token":...}; NULL = null secret */
    cJSON *metadata;
    int64_t created_us, acked_us, started_us, latest_hb_us, stop_req_us, stopped_us;
    char last_hb[40];       /* "" = no heartbeat recorded */
    int64_t queued_seq;     /* order in the queue */
    int64_t pending_ms;     /* monotonic time of the last hand-out; 0 = not pending */
    int64_t lease_until_ms; /* starting/active: monotonic lease deadline */
    int ttl_s;
    int heartbeats; /* heartbeat requests seen (heartbeat_412_on) */
} rc_em_work;

typedef struct rc_em_cred {
    int kind;
    char *value;
    rc_em_env *env;   /* environment key: its environment */
    rc_em_work *work; /* token: its work item */
    bool revoked;
} rc_em_cred;

/* One loaded scenario; refcounted because a session keeps playing the version it started with
 * after the scenario is replaced. */
typedef struct rc_em_scenario {
    rc_sc_scenario *sc;
    int refs;
} rc_em_scenario;

/* POST /_emulator/v1/faults (scenario.md §3), plus extensions. */
typedef struct rc_em_faults {
    long stream_drop_after_events; /* 0 = off */
    double http_error_rate;
    int http_error_statuses[16];
    size_t n_http_error_statuses;
    char **http_error_paths;
    size_t n_http_error_paths;
    long heartbeat_412_on;  /* 0 = off */
    long lease_ttl_seconds; /* 0 = default */
    long webhook_duplicates;
    long webhook_delay_ms;
    long latency_ms;
    /* extensions */
    int empty_poll;  /* 0: 204, 1: 200 null, 2: 200 JSON with Content-Length 0 (5.2.6) */
    int secret_mode; /* 0: normal, 1: null secret, 2: corrupt secret (4.4.3) */
    int stop_status; /* 204 (default) or 200 with the work object (5.5.3) */
} rc_em_faults;

typedef struct rc_em_reqlog {
    uint64_t seq;
    int64_t ts_us;
    char *method, *path, *query;
    int status;
    int cred_kind;
    char *headers; /* JSON array of header names */
    char *safe;    /* JSON object of non-secret header values */
    char *body;    /* request body (truncated) or NULL */
    bool body_truncated;
    long duration_ms;
} rc_em_reqlog;

struct rc_em_req;
struct rc_em_hookjob;

typedef struct rc_em_config {
    char *listen;
    char *scenarios_dir;
    char *webhook_url;
    char *webhook_secret;
    char *api_key;
    char *state_dir;
    long ping_ms;            /* SSE keep-alive interval (9.2.6) */
    long default_ttl_s;      /* lease TTL (6.3.1) */
    long hook_backoff_ms[2]; /* delays before the 2nd and 3rd webhook attempt (18.9.3) */
    long hook_timeout_ms;
    bool lenient_beta;
    int threads;
} rc_em_config;

typedef struct rc_em {
    pthread_mutex_t lock;
    pthread_cond_t hook_cond; /* webhook queue changed (waits with lock) */
    rc_em_config cfg;
    char base_url[128];
    struct MHD_Daemon *mhd;
    int listen_fd;
    volatile int stopping;

    rc_em_cred api_key;
    char *state_api_key, *state_webhook_secret; /* credentials read from --state-dir */
    rc_em_env **envs;
    size_t nenvs, envs_cap;
    rc_em_agent **agents;
    size_t nagents, agents_cap;
    rc_em_session **sessions;
    size_t nsessions, sessions_cap;
    rc_em_work **works;
    size_t nworks, works_cap;
    rc_em_cred **creds; /* environment keys and tokens */
    size_t ncreds, creds_cap;
    struct {
        char *name;
        rc_em_scenario *s;
    } * scenarios;
    size_t nscenarios, scenarios_cap;
    bool warned_no_version; /* a request without anthropic-version was logged once */
    int64_t queue_seq;
    int64_t last_hb_us; /* makes every last_heartbeat value unique */

    rc_em_faults faults;
    uint64_t rng;
    struct rc_em_skills *skills; /* skills.c; NULL until the first skill is created */
    struct rc_em_memory *memory; /* memory.c; NULL until the first memory store is created */

    rc_em_reqlog *reqlog; /* ring of RC_EM_REQLOG_MAX */
    uint64_t reqlog_seq;

    struct rc_em_stream *streams; /* every open stream (list through stream->gnext) */
    size_t nstreams;
    struct rc_em_req *parked; /* suspended requests waiting for a deadline or an event */

    struct rc_em_hookjob *hooks; /* webhook deliveries, sorted by due time */
    bool hook_disabled;          /* a 3xx disabled the endpoint (18.7.5) */
    struct {
        uint64_t enqueued, delivered, failed, attempts, dropped;
        uint64_t by_status[600]; /* response codes; [0] = transport error */
    } hookstats;

    pthread_t tick_thread, hook_thread;
    bool tick_started, hook_started;
} rc_em;

static inline void rc_emutil_json_freep(cJSON **p)
{
    cJSON_Delete(*p);
}
#define _cleanup_json_ __attribute__((cleanup(rc_emutil_json_freep)))

/* ---- util.c ---- */
int64_t rc_emutil_now_us(void);
int64_t rc_emutil_mono_ms(void);
/* RFC 3339 UTC with microseconds ("2026-05-01T12:00:31.123456Z"). */
void rc_emutil_rfc3339(int64_t us, char out[40]);
int rc_emutil_parse_rfc3339(const char *s, int64_t *ret_us);
/* prefix + 24 characters of [A-Za-z0-9] from getrandom (1.1.2). */
int rc_emutil_random_id(const char *prefix, char *out, size_t outsz, rc_error *err);
int rc_emutil_random_base62(char *out, size_t n, rc_error *err);
uint64_t rc_emutil_rng_next(uint64_t *state);
double rc_emutil_rng_unit(uint64_t *state);
cJSON *rc_emutil_ts(int64_t us); /* string, or JSON null for 0 */
bool rc_emutil_utf8_valid(const char *s, size_t n);
bool rc_emutil_json_depth_ok(const char *s, size_t n, int max);
/* Strict whole-body parse: valid UTF-8, bounded depth, nothing after the value. */
int rc_emutil_parse_json(const char *s, size_t n, cJSON **ret, rc_error *err);
char *rc_emutil_print(const cJSON *j);                       /* compact; NULL on ENOMEM */
const char *rc_emutil_jstr(const cJSON *o, const char *key); /* string member or NULL */
/* Strict decimal integer (optional leading '-'); -RC_EINVAL on anything else. */
int rc_emutil_parse_long(const char *s, long *ret);
bool rc_emutil_const_eq(const char *a, const char *b);
/* Validate a metadata map (19.2.1: at most 16 pairs, keys <= 64, values <= 512 characters).
 * With patch, null values are allowed (they delete). */
int rc_emutil_check_metadata(const cJSON *m, bool patch, rc_error *err);
/* Apply a merge patch of string values / nulls to dst (an object). */
void rc_emutil_merge_metadata(cJSON *dst, const cJSON *patch);

/* ---- skills.c ---- */
void rc_emskills_free(rc_em *em);

/* ---- memory.c ---- */
void rc_emmem_free(rc_em *em);
/* A memory path (16.1): absolute, 1-20 segments, at most 1024 bytes, valid UTF-8 without
 * control or format characters, no empty, `.` or `..` segments. -RC_EINVAL with the reason. */
int rc_emmem_path_check(const char *p, size_t n, rc_error *err);
/* A list path_prefix: "/" or a valid path followed by '/'. */
int rc_emmem_prefix_check(const char *p, size_t n, rc_error *err);
/* The mount-path slug of a store name: ASCII letters and digits lowercased, every run of other
 * characters one '-', none leading or trailing. Returns its length (0: nothing usable). */
size_t rc_emmem_slug(const char *name, char *out, size_t outsz);
/* Whether the session has a memory_store resource for store_id. */
bool rc_emmem_session_has_store(const rc_em_session *s, const char *store_id);

/* ---- store.c ---- */
int rc_emstore_init(rc_em *em, rc_error *err);
void rc_emstore_free(rc_em *em);

rc_em_env *rc_emstore_env_find(rc_em *em, const char *id); /* NULL when unknown or deleted */
int rc_emstore_env_add(rc_em *em, rc_em_env *env, rc_error *err);
cJSON *rc_emstore_env_json(const rc_em_env *env);

rc_em_agent *rc_emstore_agent_find(rc_em *em, const char *id);
int rc_emstore_agent_add(rc_em *em, rc_em_agent *a, rc_error *err);

rc_em_session *rc_emstore_session_find(rc_em *em, const char *id); /* NULL when deleted */
rc_em_session *rc_emstore_session_find_any(rc_em *em, const char *id);
int rc_emstore_session_add(rc_em *em, rc_em_session *s, rc_error *err);
cJSON *rc_emstore_session_json(const rc_em_session *s);
const char *rc_emstore_status_name(enum rc_em_session_status st);

/* Append an event to a session: fills "id" (sevt_...) and "processed_at" (now unless
 * processed_null), stores it, and hands it to every open stream of the session in the same
 * critical section (9.2.8). ev is consumed. *ret_ev (optional) is the stored event. */
int rc_emstore_event_append(rc_em *em, rc_em_session *s, cJSON *ev, bool processed_null,
                            rc_em_event **ret_ev, rc_error *err);
rc_em_call *rc_emstore_call_find(rc_em_session *s, const char *id);
int rc_emstore_call_add(rc_em_session *s, const char *id, bool custom, bool ask, rc_error *err);
/* Status transitions with their events: running appends session.status_running and queues the
 * session.status_run_started webhook (18.6.2) when the session was not running. */
int rc_emstore_session_running(rc_em *em, rc_em_session *s, rc_error *err);
/* Idle with requires_action listing every outstanding call, or end_turn when none is left (or
 * when force_end_turn). */
int rc_emstore_session_idle(rc_em *em, rc_em_session *s, bool force_end_turn, rc_error *err);
int rc_emstore_session_terminate(rc_em *em, rc_em_session *s, rc_error *err);
int rc_emstore_session_delete(rc_em *em, rc_em_session *s, rc_error *err);
/* Queue a work item for the session unless one is live (6.5.2). */
int rc_emstore_session_ensure_work(rc_em *em, rc_em_session *s, rc_error *err);

rc_em_work *rc_emstore_work_find(rc_em *em, const rc_em_env *env, const char *id);
int rc_emstore_work_create(rc_em *em, rc_em_env *env, rc_em_session *s, const char *type,
                           rc_em_work **ret, rc_error *err);
cJSON *rc_emstore_work_json(const rc_em_work *w, bool with_secret);
const char *rc_emstore_work_state_name(enum rc_em_work_state st);
/* Poll: the oldest item eligible for hand-out (5.2.5) or NULL; marks it pending. */
rc_em_work *rc_emstore_work_take(rc_em *em, rc_em_env *env, long reclaim_ms);
void rc_emstore_work_requeue(rc_em *em, rc_em_work *w);
void rc_emstore_work_stopped(rc_em *em, rc_em_work *w);
int rc_emstore_lease_ttl(const rc_em *em);
/* Re-queue items whose lease expired (6.2); called by the ticker. */
void rc_emstore_lease_tick(rc_em *em, int64_t now_ms);
/* A unique RFC 3339 heartbeat stamp (5.4.5). */
void rc_emstore_heartbeat_stamp(rc_em *em, char out[40], int64_t *ret_us);
void rc_emstore_poller_seen(rc_em_env *env, const char *worker_id, int64_t now_ms);

rc_em_cred *rc_emstore_cred_lookup(rc_em *em, const char *value);
int rc_emstore_cred_add(rc_em *em, int kind, rc_em_env *env, rc_em_work *w, const char *value,
                        rc_em_cred **ret, rc_error *err);
int rc_emstore_envkey_mint(rc_em *em, rc_em_env *env, char **ret_key, rc_error *err);

rc_em_scenario *rc_emstore_scenario_find(rc_em *em, const char *name);
int rc_emstore_scenario_put(rc_em *em, rc_sc_scenario *sc, rc_error *err); /* takes sc */
void rc_emstore_scenario_unref(rc_em_scenario *s);

/* ---- server.c ---- */
/* Wake parked long-polls of env (a work item was queued). */
void rc_emsrv_wake_pollers(rc_em *em, const rc_em_env *env);
void rc_emsrv_park_tick(rc_em *em, int64_t now_ms);

/* ---- webhooks.c ---- */
int rc_emhook_start(rc_em *em, rc_error *err);
void rc_emhook_stop(rc_em *em); /* lock NOT held */
/* Queue a session.status_run_started delivery (lock held); no-op without --webhook-url. */
void rc_emhook_run_started(rc_em *em, const rc_em_session *s);
cJSON *rc_emhook_stats_json(const rc_em *em);

/* ---- sse.c ---- */
/* Hand a stored event to every stream of s (lock held). */
void rc_emsse_fanout(rc_em *em, rc_em_session *s, const rc_em_event *ev);
/* Close every stream of s after what is queued (session.deleted). */
void rc_emsse_close_session(rc_em *em, rc_em_session *s);
void rc_emsse_tick(rc_em *em, int64_t now_ms);
void rc_emsse_resume_all(rc_em *em);

/* ---- player.c ---- */
/* Start playing sc on a new session (first turn at once). */
int rc_emplay_start(rc_em *em, rc_em_session *s, rc_em_scenario *sc, rc_error *err);
/* A worker's result was recorded for call (after validation). content may be NULL. */
void rc_emplay_on_result(rc_em *em, rc_em_session *s, rc_em_call *call, const cJSON *content,
                         bool is_error);
/* A refused send that the scenario counts as a failure (wrong pairing, unknown id, duplicate). */
void rc_emplay_on_bad_result(rc_em *em, rc_em_session *s, const char *detail);
void rc_emplay_on_confirmation(rc_em *em, rc_em_session *s, rc_em_call *call, bool allow);
void rc_emplay_on_user_message(rc_em *em, rc_em_session *s, const cJSON *content);
void rc_emplay_on_interrupt(rc_em *em, rc_em_session *s);
void rc_emplay_tick(rc_em *em, int64_t now_ms);
/* NULL when the session plays no scenario. */
cJSON *rc_emplay_verdict_json(const rc_em_session *s);
void rc_emplay_free(struct rc_em_play *p);
/* Counts of verdict states for stats. */
void rc_emplay_count(const rc_em *em, size_t *running, size_t *passed, size_t *failed);

/* ---- state.c (--state-dir) ---- */
int rc_emstate_load(rc_em *em, rc_error *err);
int rc_emstate_save(rc_em *em, rc_error *err); /* lock held */

#endif
