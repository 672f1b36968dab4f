/* launcher.h - runcell-launcher: the root daemon that turns claimed work items into containers,
 * and the per-session shim it forks (issue 7, docs/LAUNCHER.md).
 *
 * One header for the module because its parts share one configuration and one on-disk layout:
 *   config.c     configuration from the environment (and an optional env file), --help text
 *   state.c      the per-session files (lock, pid/state file, root-only work file holding the
 *                session token), the netns bind mounts, and the idempotent session cleanup
 *   daemon.c     the hand-off server: SO_PEERCRED, capacity and reservations, shim spawning,
 *                shim liveness through pidfds
 *   shim.c       one process per session: secret -> token, netns, broker, bundle, runc, wait,
 *                force-stop unless the lease was lost, teardown, one summary line
 *   reconcile.c  adopt live shims at start; clean up and stop the items of dead ones
 *
 * Layout (RUNCELL_RUN_DIR = R, RUNCELL_STATE_DIR = S):
 *   R/launcher.sock               hand-off socket (SOCK_SEQPACKET)
 *   R/sessions/<sid>/lock         flock held by the session's shim for its whole life
 *   R/sessions/<sid>/state.json   pid, ids, start time, phase (no secret; world-readable)
 *   R/sessions/<sid>/api/api.sock the broker's API channel (bind-mounted read-only)
 *   R/netns/<sid>                 the session's network namespace (nsfs bind mount)
 *   S/sessions/<sid>/work         environment id, work id, session token (0600, dir 0700)
 *   S/sessions/<sid>/heartbeat    the last 200 heartbeat answer the API channel relayed
 *                                 (last_heartbeat, TTL, time; 0600, no secret), for reconcile
 *   S/sessions/<sid>/output.log   the container's output, kept when the session ends
 *   S/sessions/<sid>/api-audit.jsonl, egress-audit.jsonl   the broker's audit lines
 *   S/tls/<sid>/                  the session CA's certificate and merged bundle (never its key),
 *                                 bound read-only at /run/runcell-ca (launcher/tlstrust.h)
 *   S/bundles, S/workspaces, S/runc, S/snapshots           the OCI module's (oci/bundle.h)
 *   S/artifacts/<sid>/<UTC time>/  files exported at session end (RUNCELL_ARTIFACTS), or
 *   S/artifacts/<sid>/<UTC time>.tar.gz with RUNCELL_ARTIFACTS_FORMAT=tar */
#ifndef RUNCELL_LAUNCHER_H
#define RUNCELL_LAUNCHER_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RC_LAUNCHER_DEFAULT_STATE_DIR "/var/lib/runcell"
#define RC_LAUNCHER_DEFAULT_RUN_DIR   "/run/runcell"
#define RC_LAUNCHER_DEFAULT_CAPACITY  16
#define RC_LAUNCHER_DEFAULT_WALL_S    (4 * 3600)
#define RC_LAUNCHER_PROXY_PORT        3128
#define RC_LAUNCHER_PATH_MAX          512
#define RC_LAUNCHER_MAX_CONNS         64
#define RC_LAUNCHER_MAX_SESSIONS      4096
#define RC_LAUNCHER_SESSION_ID_MAX    128

/* Exit statuses of the daemon and of a shim. */
enum { RC_LAUNCHER_EXIT_OK = 0, RC_LAUNCHER_EXIT_FAIL = 1, RC_LAUNCHER_EXIT_USAGE = 2 };

typedef struct rc_launcher_config {
    const char *state_dir;                  /* RUNCELL_STATE_DIR */
    const char *run_dir;                    /* RUNCELL_RUN_DIR */
    char socket_path[RC_LAUNCHER_PATH_MAX]; /* RUNCELL_LAUNCHER_SOCKET, default R/launcher.sock */
    uid_t fcgi_uid;                         /* RUNCELL_FCGI_UID; (uid_t)-1: only root may connect */
    long capacity;                          /* RUNCELL_CAPACITY */
    const char *snapshot;       /* RUNCELL_SNAPSHOT: digest or tarball path (imported at start) */
    const char *policy_file;    /* RUNCELL_POLICY_FILE; NULL: "deny-all" */
    const char *policy_dir;     /* RUNCELL_POLICY_DIR: named and per-agent policies; NULL: none */
    const char *tools_manifest; /* RUNCELL_TOOLS_MANIFEST: path INSIDE the container */
    const char *base_url;       /* ANTHROPIC_BASE_URL: where the broker forwards, force-stops go */
    bool allow_plain_http;      /* RUNCELL_ALLOW_PLAIN_HTTP=1: http:// to a non-loopback host */
    const char *ca_file;        /* RUNCELL_CA_FILE: extra CA bundle for the API and the proxy */
    const char *hosts_file;     /* RUNCELL_BROKER_HOSTS_FILE: test-only name map for the proxy */
    const char *forward_key_file; /* RUNCELL_FORWARD_KEY_FILE: forwardURL token key (forward.h) */
    const char *runc_path;        /* RUNCELL_RUNC; NULL: runc on PATH */
    int64_t wall_limit_s;         /* RUNCELL_SESSION_WALL_LIMIT_S */
    int64_t grace_ms;             /* RUNCELL_STOP_GRACE_MS: SIGTERM -> SIGKILL */
    int64_t lock_wait_ms;         /* RUNCELL_SESSION_LOCK_WAIT_MS: wait for a previous shim */
    int64_t memory_limit;         /* RUNCELL_MEMORY (bytes, K/M/G); 0: the OCI default */
    int64_t pids_limit;           /* RUNCELL_PIDS; 0: default */
    int64_t cpus;                 /* RUNCELL_CPUS; 0: default (one CPU) */
    int64_t max_idle_ms;          /* RUNCELL_MAX_IDLE_MS passed to the runner; -1: runner default */
    uint32_t map_host;            /* RUNCELL_UID_BASE: host uid/gid of container id 0 */
    bool purge_workspace;         /* RUNCELL_PURGE_WORKSPACE=1: drop the workspace at session end */
    int64_t workspace_size;       /* RUNCELL_WORKSPACE_SIZE (bytes, K/M/G): a new workspace's cap
                                   * (ext4 image, docs/OCI.md); 0: no cap */
    bool writable_root; /* RUNCELL_WRITABLE_ROOT=1: per-session overlay root (docs/OCI.md) */
    bool skills;        /* RUNCELL_SKILLS (default on): fetch the agent's skills */
    bool tls_intercept; /* RUNCELL_TLS_INTERCEPT (default on): per-session CA for rule domains */
    const char *runner_log_level; /* RUNCELL_RUNNER_LOG_LEVEL */
    const char *artifacts;        /* RUNCELL_ARTIFACTS: comma-separated globs; NULL: no export */
    char artifacts_dir[RC_LAUNCHER_PATH_MAX]; /* RUNCELL_ARTIFACTS_DIR, default S/artifacts */
    int64_t artifacts_max_bytes;              /* RUNCELL_ARTIFACTS_MAX_BYTES (default 100M) */
    bool artifacts_tar;          /* RUNCELL_ARTIFACTS_FORMAT=tar: <UTC time>.tar.gz per export */
    int64_t artifacts_keep_days; /* RUNCELL_ARTIFACTS_KEEP_DAYS: prune older exports; 0: never */
} rc_launcher_config;

/* ---- config.c ---------------------------------------------------------------------------- */

/* Apply env_file (KEY=VALUE lines, '#' comments; variables already set win) when non-NULL, then
 * read the configuration from the environment. Strings point into the environment. */
int rc_launcher_config_load(const char *env_file, rc_launcher_config *ret, rc_error *err);
const char *rc_launcher_help(void);

/* ---- state.c ----------------------------------------------------------------------------- */

enum rc_launcher_path {
    RC_LP_RUN_SESSION,  /* R/sessions/<sid> */
    RC_LP_LOCK,         /* R/sessions/<sid>/lock */
    RC_LP_STATE,        /* R/sessions/<sid>/state.json */
    RC_LP_API_DIR,      /* R/sessions/<sid>/api */
    RC_LP_API_SOCKET,   /* R/sessions/<sid>/api/api.sock */
    RC_LP_NETNS,        /* R/netns/<sid> */
    RC_LP_SECRET_DIR,   /* S/sessions/<sid> */
    RC_LP_WORK,         /* S/sessions/<sid>/work */
    RC_LP_HEARTBEAT,    /* S/sessions/<sid>/heartbeat (broker/apichan.h rc_apichan_hb_record) */
    RC_LP_API_AUDIT,    /* S/sessions/<sid>/api-audit.jsonl */
    RC_LP_EGRESS_AUDIT, /* S/sessions/<sid>/egress-audit.jsonl */
    RC_LP_SKILLS,       /* S/skills/<sid>: the session's skills, bound read-only */
    RC_LP_TLS,          /* S/tls/<sid>: the session CA's certificate files, bound read-only */
};

int rc_launcher_path(const rc_launcher_config *c, const char *sid, int which, char *buf,
                     size_t bufsz, rc_error *err);

/* Create the run and state directories (and make R/netns a shared mount point, as `ip netns`
 * does with /run/netns, so unmounting a namespace file propagates). Idempotent. */
int rc_launcher_state_init(const rc_launcher_config *c, rc_error *err);

/* Create R/sessions/<sid> (0711) and lock it: *ret_fd holds an exclusive flock on the lock file.
 * Waits up to wait_ms for another holder (a previous shim of the same session). -RC_ETIMEOUT. */
int rc_launcher_session_lock(const rc_launcher_config *c, const char *sid, int64_t wait_ms,
                             int *ret_fd, rc_error *err);
/* 1 when a live process holds the session's lock, 0 when not (or no lock file). */
int rc_launcher_session_locked(const rc_launcher_config *c, const char *sid, rc_error *err);

typedef struct rc_launcher_session_info {
    char session_id[RC_LAUNCHER_SESSION_ID_MAX + 1];
    char work_id[RC_LAUNCHER_SESSION_ID_MAX + 1];
    char environment_id[RC_LAUNCHER_SESSION_ID_MAX + 1];
    pid_t pid;
    int64_t started_at;
    char phase[32];
} rc_launcher_session_info;

int rc_launcher_info_write(const rc_launcher_config *c, const rc_launcher_session_info *info,
                           rc_error *err);
int rc_launcher_info_read(const rc_launcher_config *c, const char *sid,
                          rc_launcher_session_info *ret, rc_error *err);

/* The root-only work file: what a later process needs to stop the item. token is wiped by the
 * caller; *ret_token from read is freed with rc_worksecret_free. */
int rc_launcher_work_write(const rc_launcher_config *c, const char *sid, const char *env_id,
                           const char *work_id, const char *token, rc_error *err);
int rc_launcher_work_read(const rc_launcher_config *c, const char *sid, char *ret_env,
                          char *ret_work, size_t idsz, char **ret_token, rc_error *err);

/* Network namespace: a new one with `lo` up, bind-mounted at path; and its removal. */
int rc_launcher_netns_create(const char *path, rc_error *err);
int rc_launcher_netns_remove(const char *path, rc_error *err);

/* Does the item's lease still belong to this host? One heartbeat with the session token that
 * echoes expected (the last_heartbeat of the last 200 answer the session's API channel relayed,
 * rc_apichan_hb_record). RC_LAUNCHER_LEASE_OURS on 200 (the lease was extended: stop the item
 * right after), _LOST on 404, 409, 410 or 412 (re-queued or claimed by another worker: leave it
 * alone), _REFUSED on 401 or 403 (the token died with its item); a negative code when no answer
 * came (network, 5xx after retries). *ret_status gets the HTTP status when one arrived. */
enum { RC_LAUNCHER_LEASE_OURS = 0, RC_LAUNCHER_LEASE_LOST = 1, RC_LAUNCHER_LEASE_REFUSED = 2 };
int rc_launcher_lease_check(const rc_launcher_config *c, const char *env_id, const char *work_id,
                            const char *token, const char *expected, long *ret_status,
                            rc_error *err);

/* Force-stop a work item with the session token (409 counts as success). */
int rc_launcher_force_stop(const rc_launcher_config *c, const char *env_id, const char *work_id,
                           const char *token, rc_error *err);

/* Keep the container's output: move S/bundles/<sid>/output.log to S/sessions/<sid>/output.log
 * (before the bundle is removed). Nothing to keep is not an error; a failure is logged. */
void rc_launcher_keep_output(const rc_launcher_config *c, const char *sid);

/* Idempotent cleanup of everything a session leaves on the host: the runc container (killed and
 * deleted), the bundle (workspace kept unless purge), the netns mount, the API socket dir, the
 * run dir (lock file included), the work file and the heartbeat record (the secret dir itself
 * stays, with the audit logs and the kept output). Steps that fail are logged; the first error
 * is returned. keep_lock leaves the run dir and its lock file (a shim clearing leftovers of a
 * previous run before it starts). Call only while holding the session's lock (or knowing no shim
 * lives). */
int rc_launcher_session_cleanup(const rc_launcher_config *c, const char *sid, bool purge,
                                bool keep_lock, rc_error *err);

/* Session ids with a run dir, a secret dir or a bundle (deduplicated). *ret freed with free()
 * (one allocation). */
int rc_launcher_session_ids(const rc_launcher_config *c,
                            char (**ret)[RC_LAUNCHER_SESSION_ID_MAX + 1], size_t *ret_n,
                            rc_error *err);

/* ---- policy_select.c --------------------------------------------------------------------- */

/* Which egress policy a session gets (docs/BROKER.md "Which policy a session gets"), most
 * specific first: session metadata "runcell_policy" naming RUNCELL_POLICY_DIR/<name>.json, then
 * RUNCELL_POLICY_DIR/agents/<agent_id>.json, then RUNCELL_POLICY_FILE, then "deny-all". */
#define RC_LAUNCHER_POLICY_META_KEY "runcell_policy"
#define RC_LAUNCHER_POLICY_NAME_MAX 64

enum rc_launcher_policy_source {
    RC_LAUNCHER_POLICY_BUILTIN = 0, /* "deny-all": nothing configured */
    RC_LAUNCHER_POLICY_DEFAULT,     /* RUNCELL_POLICY_FILE */
    RC_LAUNCHER_POLICY_AGENT,       /* agents/<agent_id>.json */
    RC_LAUNCHER_POLICY_SESSION,     /* <name>.json named by the session's metadata */
};

typedef struct rc_launcher_policy_choice {
    int source;                                /* enum rc_launcher_policy_source */
    char path[RC_LAUNCHER_PATH_MAX];           /* empty for the built-in */
    char name[RC_LAUNCHER_SESSION_ID_MAX + 1]; /* policy name or agent id; empty otherwise */
} rc_launcher_policy_choice;

struct cJSON;
struct rc_policy;

/* [A-Za-z0-9][A-Za-z0-9_-]{0,63}. */
bool rc_launcher_policy_name_valid(const char *name);
const char *rc_launcher_policy_source_name(int source);
/* Pure selection from the session object (GET /v1/sessions/{sid}; may be NULL when no policy
 * dir is configured). A bad name, a named file that is missing or not a regular file, or a bad
 * agent id is an error, never a fallback. Files are checked to exist, not parsed. */
int rc_launcher_policy_select(const rc_launcher_config *c, const struct cJSON *session,
                              rc_launcher_policy_choice *ret, rc_error *err);
/* Fetch the session with its token (only when a policy dir is configured), select and parse.
 * ret_choice may be NULL. */
int rc_launcher_policy_load(const rc_launcher_config *c, const char *sid, const char *token,
                            struct rc_policy **ret, rc_launcher_policy_choice *ret_choice,
                            rc_error *err);
/* Parse RUNCELL_POLICY_FILE and every file of RUNCELL_POLICY_DIR (and its agents/); the first
 * error names the file and the JSON path. Returns the number of policies checked. */
int rc_launcher_policy_check_all(const rc_launcher_config *c, rc_error *err);

/* ---- shim.c ------------------------------------------------------------------------------ */

/* The shim's body: reads one hand-off launch message from item_fd, serves the session, tears
 * down. Returns the process exit status. */
int rc_launcher_shim_main(const rc_launcher_config *c, const char *snapshot_digest, int item_fd);

/* ---- reconcile.c ------------------------------------------------------------------------- */

/* For one session with no live shim: force-stop its item with the kept token, but only when the
 * lease can be shown to be still ours (docs/LAUNCHER.md "Reconcile": a heartbeat echoing the
 * recorded last_heartbeat answers 200), keep the container's output, and clean up. Returns 1
 * when something was cleaned, 0 when a live shim holds the session. */
int rc_launcher_reconcile_session(const rc_launcher_config *c, const char *sid, rc_error *err);

/* Called for each live shim found (pid from its state file). */
typedef void (*rc_launcher_adopt_fn)(const char *sid, pid_t pid, void *userdata);
/* Every session: adopt the live ones, reconcile the dead ones. Returns the number cleaned. */
int rc_launcher_reconcile_all(const rc_launcher_config *c, rc_launcher_adopt_fn adopt,
                              void *userdata, rc_error *err);

/* ---- daemon.c ---------------------------------------------------------------------------- */

/* Run the daemon until SIGTERM/SIGINT. self_exe: the binary to re-exec as a shim. */
int rc_launcher_daemon_run(const rc_launcher_config *c, const char *snapshot_digest,
                           const char *self_exe, rc_error *err);

#endif
