/* shim.c - one process per session, on the host side (DESIGN.md §2 step 4).
 *
 * Started by the daemon (double fork + setsid + exec, so it outlives a launcher restart), it
 * receives the claimed item over a socketpair and then owns the session from start to finish:
 *
 *   secret -> session token (refuse without one) -> session lock (waits for a previous shim of
 *   the same session) -> leftovers of a crashed run removed -> root-only work file -> netns with
 *   lo -> broker (API channel socket + egress proxy listening inside the netns; a per-session
 *   CA when the policy has request rules, its certificate published under S/tls) -> bundle ->
 *   runc create + start (we are the subreaper of the container's init) -> wait (wall-clock limit,
 *   SIGTERM from `runcell stop`) -> force-stop the item unless the lease was lost -> runc delete,
 *   broker down, artifacts exported (RUNCELL_ARTIFACTS), bundle, netns, files removed -> one
 *   summary line.
 *
 * The order of teardown is fixed and every step runs whatever failed before it, so a failed
 * spawn never leaves an item claimed (the gap the reference app had) and nothing stays mounted.
 * The token lives in this process only (and in the root-only work file, for reconcile after a
 * crash); it is registered with the log redactor and wiped when freed. The session CA's private
 * key (TLS interception, issue 11) lives in this process only, never on disk: only its
 * certificate is written (launcher/tlstrust.h). */
#include "launcher.h"

#include "../broker/apichan.h"
#include "../broker/audit.h"
#include "../broker/ca.h"
#include "../broker/netns.h"
#include "../broker/policy.h"
#include "../broker/proxy.h"
#include "../fcgi/handoff.h"
#include "../oci/bundle.h"
#include "../oci/runc.h"
#include "../oci/snapshot.h"
#include "../oci/spec.h"
#include "../oci/tar.h"
#include "api.h"
#include "artifacts.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "skills.h"
#include "tlstrust.h"
#include "webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_SLICE_MS 200
#define PROXY_ADDR    "127.0.0.1"
#define PROXY_URL     "http://127.0.0.1:3128"

typedef struct shim {
    const rc_launcher_config *cfg;
    const char *digest;
    rc_launcher_session_info info;
    char *token; /* rc_worksecret_free */
    int lock_fd;
    char netns[RC_LAUNCHER_PATH_MAX];
    bool netns_made;
    rc_apichan *chan;
    rc_audit_calls *calls; /* running tool calls: the channel writes, the proxy reads */
    rc_policy *policy;
    rc_audit *audit;
    rc_proxy *proxy;
    rc_ca *ca; /* the session's interception CA (NULL: none); outlives the proxy */
    pthread_t proxy_thread;
    bool proxy_running;
    rc_snapshot_store *store;
    rc_bundle *bundle;
    rc_runc_container *ct;
    char skills_dir[RC_LAUNCHER_PATH_MAX]; /* non-empty once the skills are in place */
    char tls_dir[RC_LAUNCHER_PATH_MAX];    /* S/tls/<sid> once the CA is published */
    /* outcome */
    const char *end; /* "exit", "wall_limit", "signal", "start_failed", "refused" */
    int wstatus;     /* valid when have_status */
    bool have_status;
    int64_t t0_ms;
} shim;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_phase(shim *s, const char *phase)
{
    rc_error e = {0};
    snprintf(s->info.phase, sizeof s->info.phase, "%s", phase);
    if (rc_launcher_info_write(s->cfg, &s->info, &e) < 0)
        rc_log_warn("state file: %s", e.msg);
}

/* ---- the item ------------------------------------------------------------------------------ */

static int read_item(shim *s, int fd, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    _cleanup_json_ cJSON *tree = NULL;
    rc_handoff_request req;
    int r;

    if ((r = rc_handoff_recv(fd, &msg, err)) < 0)
        return r;
    if (r == 0)
        return rc_error_set(err, RC_EIO, "the launcher sent no item");
    if ((r = rc_handoff_request_decode(msg.data, msg.len, &tree, &req, err)) < 0)
        return r;
    if (req.op != RC_HANDOFF_OP_LAUNCH)
        return rc_error_set(err, RC_EINVAL, "the launcher sent no launch request");
    snprintf(s->info.session_id, sizeof s->info.session_id, "%s", req.item.session_id);
    snprintf(s->info.work_id, sizeof s->info.work_id, "%s", req.item.work_id);
    snprintf(s->info.environment_id, sizeof s->info.environment_id, "%s", req.item.environment_id);
    r = rc_worksecret_decode(req.item.secret, RC_WORKSECRET_LEGACY, &s->token, err);
    /* The tree held the raw secret: wipe it before it is freed. */
    cJSON *sec = cJSON_GetObjectItemCaseSensitive(tree, "secret");
    if (cJSON_IsString(sec))
        explicit_bzero(sec->valuestring, strlen(sec->valuestring));
    explicit_bzero(msg.data, msg.len);
    return r;
}

/* ---- setup steps --------------------------------------------------------------------------- */

static int start_api_channel(shim *s, rc_error *err)
{
    const rc_launcher_config *c = s->cfg;
    char dir[RC_LAUNCHER_PATH_MAX], sock[RC_LAUNCHER_PATH_MAX], audit[RC_LAUNCHER_PATH_MAX];
    char hb[RC_LAUNCHER_PATH_MAX];
    _cleanup_close_ int audit_fd = -1;
    int r;

    if ((r = rc_launcher_path(c, s->info.session_id, RC_LP_API_DIR, dir, sizeof dir, err)) < 0 ||
        (r = rc_launcher_path(c, s->info.session_id, RC_LP_API_SOCKET, sock, sizeof sock, err)) <
            0 ||
        (r = rc_launcher_path(c, s->info.session_id, RC_LP_API_AUDIT, audit, sizeof audit, err)) <
            0 ||
        (r = rc_launcher_path(c, s->info.session_id, RC_LP_HEARTBEAT, hb, sizeof hb, err)) < 0)
        return r;
    if (mkdir(dir, 0711) < 0 && errno != EEXIST)
        return rc_error_sys(err, RC_EIO, "mkdir %s", dir);
    if ((r = rc_audit_calls_new(&s->calls, err)) < 0)
        return r;
    audit_fd = open(audit, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (audit_fd < 0)
        return rc_error_sys(err, RC_EIO, "open %s", audit);
    rc_apichan_config ac = {
        .socket_path = sock,
        /* The runner is container uid 0, host uid map_host (docs/OCI.md). */
        .allowed_uid = (uid_t)c->map_host + RC_OCI_DEFAULT_RUNNER_UID,
        .socket_gid = (gid_t)-1,
        .base_url = c->base_url,
        .allow_plain_http = c->allow_plain_http,
        .ca_file = c->ca_file,
        .scope = {.environment_id = s->info.environment_id,
                  .work_id = s->info.work_id,
                  .session_id = s->info.session_id},
        .credential = s->token,
        .credential_kind = RC_APICHAN_CRED_SESSIONS_TOKEN,
        .audit_fd = audit_fd, /* the channel writes to it; we keep it open until it is freed */
        .heartbeat_record_path = hb, /* S/sessions/<sid>/heartbeat (0700 dir): for reconcile */
        .running_calls = s->calls,   /* the runner's reports, for the egress audit (issue 11) */
    };
    if ((r = rc_apichan_new(&ac, &s->chan, err)) < 0)
        return r;
    /* The channel keeps using audit_fd: leak it on purpose until the process exits. */
    (void)take_fd(audit_fd);
    return rc_apichan_start(s->chan, err);
}

static void *proxy_main(void *arg)
{
    shim *s = arg;
    rc_error e = {0};
    rc_log_set_context(s->info.session_id, s->info.work_id);
    if (rc_proxy_run(s->proxy, &e) < 0)
        rc_log_error("egress proxy: %s", e.msg);
    return NULL;
}

/* Issue 11: a policy with request rules gets a per-session CA, so the proxy can terminate TLS
 * for those domains. It lives as long as the session may (wall-clock limit plus the stop grace
 * and a minute of clock slack); the key never leaves this process. */
static int make_ca(shim *s, rc_error *err)
{
    const rc_launcher_config *c = s->cfg;
    uint64_t lifetime;
    int r;

    if (!rc_tlstrust_policy_wants_ca(s->policy))
        return 0;
    if (!c->tls_intercept) {
        rc_log_info("tls: interception off (RUNCELL_TLS_INTERCEPT=0): CONNECT to domains with "
                    "request rules is refused");
        return 0;
    }
    lifetime = (uint64_t)c->wall_limit_s + (uint64_t)(c->grace_ms / 1000) + 60;
    if ((r = rc_ca_new(s->info.session_id, lifetime, &s->ca, err)) < 0)
        return rc_error_wrap(err, RC_EIO, "creating the session's TLS interception CA");
    rc_log_info("tls: per-session interception CA created (lifetime %llu s)",
                (unsigned long long)lifetime);
    return 0;
}

/* Publish the CA's certificate (never its key) in S/tls/<sid> and tell the bundle where to bind
 * it (launcher/tlstrust.h). res must outlive the bundle's creation. */
static int publish_ca(shim *s, rc_oci_config *oc, rc_tlstrust_result *res, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf pem = RC_BUF_INIT(RC_TLSTRUST_CA_PEM_MAX);
    char digest[RC_SNAPSHOT_DIGEST_SIZE], rootfs[RC_LAUNCHER_PATH_MAX];
    int r;

    if (!s->ca)
        return 0;
    if ((r = rc_launcher_path(s->cfg, s->info.session_id, RC_LP_TLS, s->tls_dir, sizeof s->tls_dir,
                              err)) < 0 ||
        (r = rc_ca_cert_pem(s->ca, &pem, err)) < 0 ||
        (r = rc_snapshot_digest_parse(s->digest, digest, err)) < 0 ||
        (r = rc_snapshot_rootfs_path(s->store, digest, rootfs, sizeof rootfs, err)) < 0 ||
        (r = rc_tlstrust_prepare(rootfs, s->tls_dir, pem.data, pem.len, s->cfg->writable_root, res,
                                 err)) < 0)
        return rc_error_wrap(err, RC_EIO, "publishing the session CA");
    oc->ca_dir_host = s->tls_dir;
    oc->ca_binds = res->binds;
    oc->n_ca_binds = res->n_binds;
    rc_log_info("tls: session CA published at %s (%zu binds over the snapshot's trust files%s)",
                RC_OCI_DEFAULT_CA_DIR, res->n_binds,
                res->system_bundle ? "" : "; no system bundle in the snapshot");
    return 0;
}

static int start_proxy(shim *s, rc_error *err)
{
    const rc_launcher_config *c = s->cfg;
    char audit[RC_LAUNCHER_PATH_MAX];
    rc_launcher_policy_choice pol;
    int fd = -1, r;

    if ((r = rc_launcher_policy_load(c, s->info.session_id, s->token, &s->policy, &pol, err)) < 0)
        return r;
    rc_log_info("egress policy: %s %s", rc_launcher_policy_source_name(pol.source),
                pol.path[0] ? pol.path : "deny-all");
    if ((r = make_ca(s, err)) < 0)
        return r;
    if ((r = rc_launcher_path(c, s->info.session_id, RC_LP_EGRESS_AUDIT, audit, sizeof audit,
                              err)) < 0 ||
        (r = rc_audit_open(audit, s->info.session_id, &s->audit, err)) < 0 ||
        (r = rc_netns_listen_tcp(s->netns, PROXY_ADDR, RC_LAUNCHER_PROXY_PORT, 128, &fd, NULL,
                                 err)) < 0)
        return r;
    rc_proxy_config pc = {.policy = s->policy,
                          .audit = s->audit,
                          .ca_file = c->ca_file,
                          .hosts_file = c->hosts_file,
                          .ca = s->ca,
                          .forward_key_file = c->forward_key_file,
                          .session_id = s->info.session_id,
                          .running_calls = s->calls};
    if ((r = rc_proxy_new(&pc, fd, &s->proxy, err)) < 0)
        return r;
    if ((r = pthread_create(&s->proxy_thread, NULL, proxy_main, s)) != 0) {
        errno = r;
        return rc_error_sys(err, RC_EIO, "egress proxy thread");
    }
    s->proxy_running = true;
    return 0;
}

/* The agent's skills (protocol.md 15.4), fetched here on the host with the session token and bound
 * read-only at {workdir}/skills, so no credential enters the container. Never fatal: a session
 * whose skills cannot be fetched runs without them (each failure is logged). */
static void fetch_skills(shim *s)
{
    const rc_launcher_config *c = s->cfg;
    rc_api_config ac = {.http = {.base_url = c->base_url,
                                 .ca_file = c->ca_file,
                                 .user_agent = "runcell-launcher",
                                 .timeout_ms = 120000,
                                 .max_body = RC_SKILLS_DEFAULT_MAX_ARCHIVE_BYTES + 1,
                                 .max_attempts = 3},
                        .credential = s->token};
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    rc_skills_report rep = {0};
    const cJSON *agent, *list;
    char dir[RC_LAUNCHER_PATH_MAX], parent[RC_LAUNCHER_PATH_MAX];
    rc_api *api = NULL;
    rc_error e = {0};
    int r;

    if (!c->skills || !s->token ||
        rc_launcher_path(c, s->info.session_id, RC_LP_SKILLS, dir, sizeof dir, &e) < 0)
        return;
    if (snprintf(parent, sizeof parent, "%s/skills", c->state_dir) >= (int)sizeof parent ||
        (mkdir(parent, 0711) < 0 && errno != EEXIST)) {
        rc_log_warn("skills: cannot create %s", parent);
        return;
    }
    if ((r = rc_api_new(&ac, &api, &e)) == 0 &&
        (r = rc_api_session_get(api, s->info.session_id, &res, &e)) == 0) {
        agent = cJSON_GetObjectItemCaseSensitive(res.json, "agent");
        list = agent ? cJSON_GetObjectItemCaseSensitive(agent, "skills") : NULL;
        if (cJSON_IsArray(list) && cJSON_GetArraySize(list) > 0 &&
            (r = rc_skills_fetch(api, res.json, dir, NULL, &rep, &e)) >= 0) {
            snprintf(s->skills_dir, sizeof s->skills_dir, "%s", dir);
            rc_log_info("skills: %zu ready, %zu failed", rep.n_ok, rep.n_failed);
        }
    }
    if (r < 0)
        rc_log_warn("skills: not fetched: %s", e.msg);
    rc_skills_report_free(&rep);
    rc_api_free(api);
}

static int make_bundle(shim *s, rc_error *err)
{
    const rc_launcher_config *c = s->cfg;
    char snapdir[RC_LAUNCHER_PATH_MAX], apidir[RC_LAUNCHER_PATH_MAX];
    _cleanup_free_ rc_tlstrust_result *tls = NULL; /* the binds point into it */
    rc_oci_config oc;
    int r;

    if ((r = rc_bundle_snapshot_dir(c->state_dir, snapdir, sizeof snapdir, err)) < 0 ||
        (r = rc_snapshot_store_open(snapdir, NULL, &s->store, err)) < 0 ||
        (r = rc_launcher_path(c, s->info.session_id, RC_LP_API_DIR, apidir, sizeof apidir, err)) <
            0)
        return r;
    rc_oci_config_init(&oc);
    oc.session_id = s->info.session_id;
    oc.map_host_uid = oc.map_host_gid = c->map_host;
    oc.netns_path = s->netns;
    oc.api_dir_host = apidir;
    oc.environment_id = s->info.environment_id;
    oc.work_id = s->info.work_id;
    oc.tools_manifest = c->tools_manifest;
    oc.log_level = c->runner_log_level;
    oc.max_idle_ms = c->max_idle_ms;
    oc.http_proxy = oc.https_proxy = PROXY_URL;
    oc.no_proxy = "localhost,127.0.0.1";
    oc.writable_root = c->writable_root;
    oc.skills_host = s->skills_dir[0] ? s->skills_dir : NULL;
    if (c->memory_limit > 0)
        oc.memory_limit = c->memory_limit;
    if (c->pids_limit > 0)
        oc.pids_limit = c->pids_limit;
    if (c->cpus > 0)
        oc.cpu_quota = c->cpus * (int64_t)oc.cpu_period;
    if (s->ca && !(tls = calloc(1, sizeof *tls)))
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    if ((r = publish_ca(s, &oc, tls, err)) < 0)
        return r;
    rc_bundle_opts bo = {.state_dir = c->state_dir,
                         .store = s->store,
                         .snapshot_digest = s->digest,
                         .workspace_size = (uint64_t)c->workspace_size};
    return rc_bundle_create(&bo, &oc, &s->bundle, err);
}

static int start_container(shim *s, rc_error *err)
{
    char root[RC_LAUNCHER_PATH_MAX];
    int r;

    if ((r = rc_bundle_runc_root(s->cfg->state_dir, root, sizeof root, err)) < 0)
        return r;
    rc_runc_opts ro = {.runc_path = s->cfg->runc_path, .root = root, .echo_fd = -1};
    if ((r = rc_runc_become_subreaper(err)) < 0 ||
        (r = rc_runc_container_new(&ro, s->info.session_id, rc_bundle_dir(s->bundle), &s->ct,
                                   err)) < 0 ||
        (r = rc_runc_create(s->ct, err)) < 0)
        return r;
    return rc_runc_start(s->ct, err);
}

static int setup(shim *s, rc_error *err)
{
    const rc_launcher_config *c = s->cfg;
    rc_error e = {0};
    int r;

    if ((r = rc_launcher_session_lock(c, s->info.session_id, c->lock_wait_ms, &s->lock_fd, err)) <
        0)
        return r;
    s->info.pid = getpid();
    s->info.started_at = (int64_t)time(NULL);
    /* Leftovers of a run that crashed before its cleanup (we hold the lock: nobody else runs). */
    if (rc_launcher_session_cleanup(c, s->info.session_id, false, true, &e) < 0)
        rc_log_warn("leftovers of an earlier run: %s", e.msg);
    if ((r = rc_launcher_work_write(c, s->info.session_id, s->info.environment_id, s->info.work_id,
                                    s->token, err)) < 0)
        return r;
    set_phase(s, "starting");
    if ((r = rc_launcher_path(c, s->info.session_id, RC_LP_NETNS, s->netns, sizeof s->netns, err)) <
            0 ||
        (r = rc_launcher_netns_create(s->netns, err)) < 0)
        return r;
    s->netns_made = true;
    if ((r = start_api_channel(s, err)) < 0 || (r = start_proxy(s, err)) < 0)
        return r;
    fetch_skills(s);
    if ((r = make_bundle(s, err)) < 0 || (r = start_container(s, err)) < 0)
        return r;
    set_phase(s, "running");
    return 0;
}

/* ---- waiting ------------------------------------------------------------------------------- */

/* A shutdown signal, if one is pending (they are blocked in every thread). */
static int pending_signal(void)
{
    sigset_t set;
    struct timespec zero = {0, 0};
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int sig = sigtimedwait(&set, NULL, &zero);
    return sig > 0 ? sig : 0;
}

static void wait_container(shim *s)
{
    int64_t deadline = s->t0_ms + s->cfg->wall_limit_s * 1000;
    rc_error e = {0};
    int r, sig;

    for (;;) {
        r = rc_runc_wait(s->ct, WAIT_SLICE_MS, &s->wstatus, &e);
        if (r == 0) {
            s->have_status = true;
            s->end = "exit";
            return;
        }
        if (r != -RC_ETIMEOUT) {
            rc_log_error("waiting for the container: %s", e.msg);
            s->end = "wait_failed";
            break;
        }
        if ((sig = pending_signal()) != 0) {
            rc_log_info("signal %d: stopping the session", sig);
            s->end = "signal";
            break;
        }
        if (now_ms() >= deadline) {
            rc_log_warn("wall-clock limit of %lld s reached: stopping the session",
                        (long long)s->cfg->wall_limit_s);
            s->end = "wall_limit";
            break;
        }
    }
    set_phase(s, "stopping");
    if (rc_runc_stop(s->ct, (int)s->cfg->grace_ms, &s->wstatus, &e) < 0)
        rc_log_error("stopping the container: %s", e.msg);
    else
        s->have_status = true;
}

/* ---- teardown ------------------------------------------------------------------------------ */

static int exit_code(const shim *s)
{
    if (!s->have_status)
        return -1;
    if (WIFEXITED(s->wstatus))
        return WEXITSTATUS(s->wstatus);
    if (WIFSIGNALED(s->wstatus))
        return 128 + WTERMSIG(s->wstatus);
    return -1;
}

/* 14.4: no force-stop when the lease was lost (the runner exits 3 then); in every other case, a
 * failed start included, the item is stopped so it is never left claimed. A runner that exits 0
 * (also after our SIGTERM: runcell stop, wall limit) has normally force-stopped the item itself
 * (14.5), after which its token is refused: that 401 means "released_by_runner". The stop is
 * still sent, because exit 0 does not prove the runner's own stop got through (a runner whose
 * stop request was cancelled by its shutdown exits 0 too). SIGKILL reports 137. */
static const char *force_stop(shim *s)
{
    rc_error e = {0};
    int r;

    if (exit_code(s) == 3)
        return "skipped_lease_lost";
    if (!s->token)
        return "no_token";
    r = rc_launcher_force_stop(s->cfg, s->info.environment_id, s->info.work_id, s->token, &e);
    if (r == -RC_EAUTH && exit_code(s) == 0)
        return "released_by_runner";
    if (r == -RC_EAUTH) {
        rc_log_warn("force-stop: %s", e.msg);
        return "token_refused";
    }
    if (r < 0) {
        rc_log_error("force-stop of the work item failed: %s", e.msg);
        return "stop_failed";
    }
    return "stopped";
}

static void stop_broker(shim *s, rc_apichan_stats *ret_stats)
{
    if (s->proxy_running) {
        rc_proxy_stop(s->proxy);
        pthread_join(s->proxy_thread, NULL);
        s->proxy_running = false;
    }
    rc_proxy_free(s->proxy);
    s->proxy = NULL;
    if (s->ca)
        rc_ca_free(s->ca); /* after the proxy that used it */
    s->ca = NULL;
    if (s->audit)
        rc_audit_close(s->audit);
    s->audit = NULL;
    rc_policy_free(s->policy);
    s->policy = NULL;
    if (s->chan) {
        rc_apichan_stop(s->chan);
        rc_apichan_get_stats(s->chan, ret_stats);
        rc_apichan_free(s->chan);
        s->chan = NULL;
    }
    rc_audit_calls_free(s->calls); /* after both of its users */
    s->calls = NULL;
}

/* RUNCELL_ARTIFACTS_FORMAT=tar: the export directory becomes <dir>.tar.gz, and kept names what
 * is left. On failure the directory stays (nothing is lost) and the failure is logged. */
static void pack_export(const char *dir, char *kept, size_t kept_n)
{
    char tgz[RC_LAUNCHER_PATH_MAX + 16];
    const char *leaf = strrchr(dir, '/');
    rc_error e = {0};
    snprintf(kept, kept_n, "%s", dir);
    int n = snprintf(tgz, sizeof tgz, "%s.tar.gz", dir);
    if (n < 0 || (size_t)n >= sizeof tgz || (size_t)n >= kept_n || !leaf) {
        rc_log_error("artifacts: archive path too long, the directory is kept");
        return;
    }
    if (rc_artifacts_pack(dir, tgz, &e) < 0) {
        rc_log_error("artifacts: packing failed, the directory is kept: %s", e.msg);
        return;
    }
    snprintf(kept, kept_n, "%s", tgz);
    _cleanup_free_ char *parent = strndup(dir, (size_t)(leaf - dir));
    _cleanup_close_ int pfd =
        parent ? open(parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (pfd < 0 || rc_tar_remove_tree(pfd, leaf + 1, &e) < 0)
        rc_log_warn("artifacts: packed, but the directory %s could not be removed", dir);
}

/* RUNCELL_ARTIFACTS_KEEP_DAYS: drop every session's exports older than that. */
static void prune_exports(const rc_launcher_config *c, time_t now)
{
    rc_error e = {0};
    if (c->artifacts_keep_days <= 0)
        return;
    int n =
        rc_artifacts_prune(c->artifacts_dir, now - (time_t)(c->artifacts_keep_days * 86400), &e);
    if (n < 0)
        rc_log_warn("artifacts: pruning old exports failed: %s", e.msg);
    else if (n > 0)
        rc_log_info("artifacts: pruned %d exports older than %lld days", n,
                    (long long)c->artifacts_keep_days);
}

static void log_export(const rc_artifacts_report *rep, const char *kept)
{
    if (rep->files || rep->skipped)
        rc_log_info(
            "artifacts: %llu files, %llu bytes in %s; skipped %llu (symlink=%llu "
            "special=%llu hardlink=%llu too_big=%llu over_cap=%llu depth=%llu error=%llu)%s",
            (unsigned long long)rep->files, (unsigned long long)rep->bytes,
            rep->files ? kept : "(nothing kept)", (unsigned long long)rep->skipped,
            (unsigned long long)rep->skipped_symlink, (unsigned long long)rep->skipped_special,
            (unsigned long long)rep->skipped_hardlink, (unsigned long long)rep->skipped_too_big,
            (unsigned long long)rep->skipped_cap, (unsigned long long)rep->skipped_depth,
            (unsigned long long)rep->skipped_error,
            rep->walk_truncated ? " walk truncated at the entry cap" : "");
}

/* <artifacts dir>/<sid>/<UTC time> (the directories made), or -1 having logged why not. */
static int export_dest(const rc_launcher_config *c, const char *sid, const struct timespec *now,
                       char *dir, size_t dir_n)
{
    char stamp[32];
    struct tm tm;
    int n = snprintf(dir, dir_n, "%s/%s", c->artifacts_dir, sid), m;
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", gmtime_r(&now->tv_sec, &tm));
    if (n < 0 || (size_t)n >= dir_n || (mkdir(c->artifacts_dir, 0700) < 0 && errno != EEXIST) ||
        (mkdir(dir, 0700) < 0 && errno != EEXIST)) {
        rc_log_error("artifacts: cannot make %s", c->artifacts_dir);
        return -1;
    }
    m = snprintf(dir + n, dir_n - (size_t)n, "/%s.%03ldZ", stamp, now->tv_nsec / 1000000);
    if (m < 0 || (size_t)m >= dir_n - (size_t)n) {
        rc_log_error("artifacts: destination path too long");
        return -1;
    }
    return 0;
}

/* RUNCELL_ARTIFACTS: copy the matching files out of the workspace into
 * <artifacts dir>/<sid>/<UTC time>/ (or .tar.gz) while it is still mounted, then prune old
 * exports. Failures are logged only. */
static void export_artifacts(shim *s, rc_artifacts_report *rep)
{
    const rc_launcher_config *c = s->cfg;
    char dir[RC_LAUNCHER_PATH_MAX], kept[RC_LAUNCHER_PATH_MAX + 16];
    _cleanup_(rc_artifacts_globs_freep) char **globs = NULL;
    rc_error e = {0};
    struct timespec now;

    if (!c->artifacts || !s->bundle)
        return;
    if (rc_artifacts_parse_globs(c->artifacts, &globs, &e) < 0) {
        rc_log_error("artifacts: %s", e.msg);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    if (export_dest(c, s->info.session_id, &now, dir, sizeof dir) < 0)
        return;
    rc_artifacts_limits lim = {.max_total_bytes = (uint64_t)c->artifacts_max_bytes};
    if (rc_artifacts_export(rc_bundle_workspace_dir(s->bundle), (const char *const *)globs, dir,
                            &lim, rep, &e) < 0) {
        rc_log_error("artifacts: export failed: %s", e.msg);
        return;
    }
    snprintf(kept, sizeof kept, "%s", dir);
    if (rep->files && c->artifacts_tar)
        pack_export(dir, kept, sizeof kept);
    log_export(rep, kept);
    prune_exports(c, now.tv_sec);
}

static void teardown(shim *s, const char *error)
{
    rc_artifacts_report art = {0};
    const rc_launcher_config *c = s->cfg;
    rc_apichan_stats st = {0};
    rc_error e = {0};
    uint64_t dropped = 0;
    const char *stop;

    if (s->lock_fd < 0) {
        /* Never got the session (another shim owns it, or its run dir could not be made): stop
         * only our item; still one summary line, like every other end. */
        stop = force_stop(s);
        rc_log_error("session not started: %s; work item %s", error ? error : "?", stop);
        rc_log_info(
            "session ended: end=not_started exit=-1 duration_ms=%lld work_item=%s "
            "api_requests=0 api_forbidden=0 output_bytes_dropped=0 artifacts=0 artifact_bytes=0 "
            "error=%s",
            (long long)(now_ms() - s->t0_ms), stop, error ? error : "?");
        return;
    }
    if (s->ct) {
        dropped = rc_runc_output_dropped(s->ct);
        if (rc_runc_output_errno(s->ct))
            rc_log_warn("container output not kept (%llu bytes dropped): output.log: %s",
                        (unsigned long long)dropped, strerror(rc_runc_output_errno(s->ct)));
        if (rc_runc_delete(s->ct, &e) < 0)
            rc_log_error("runc delete: %s", e.msg);
        rc_runc_container_free(s->ct);
        s->ct = NULL;
    }
    stop = force_stop(s);
    stop_broker(s, &st);
    export_artifacts(s, &art); /* before rc_bundle_remove unmounts the workspace */
    if (s->bundle) {
        rc_launcher_keep_output(c, s->info.session_id); /* the bundle is about to go */
        if (rc_bundle_remove(s->bundle, c->purge_workspace, &e) < 0)
            rc_log_error("bundle removal: %s", e.msg);
        rc_bundle_free(s->bundle);
        s->bundle = NULL;
    }
    if (s->store)
        rc_snapshot_store_free(s->store);
    s->store = NULL;
    if (rc_launcher_session_cleanup(c, s->info.session_id, c->purge_workspace, false, &e) < 0)
        rc_log_error("cleanup: %s", e.msg);
    rc_log_info(
        "session ended: end=%s exit=%d duration_ms=%lld work_item=%s api_requests=%llu "
        "api_forbidden=%llu output_bytes_dropped=%llu artifacts=%llu artifact_bytes=%llu%s%s",
        s->end ? s->end : "start_failed", exit_code(s), (long long)(now_ms() - s->t0_ms), stop,
        st.requests, st.forbidden, (unsigned long long)dropped, (unsigned long long)art.files,
        (unsigned long long)art.bytes, error ? " error=" : "", error ? error : "");
}

int rc_launcher_shim_main(const rc_launcher_config *c, const char *snapshot_digest, int item_fd)
{
    shim s = {.cfg = c, .digest = snapshot_digest, .lock_fd = -1, .t0_ms = now_ms()};
    sigset_t set;
    rc_error e = {0};
    int r;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread: only the wait loop takes them */
    signal(SIGPIPE, SIG_IGN);
    /* The token and the session CA's key live in this process: no core dump of it, and no
     * /proc/<pid>/mem for anyone without CAP_SYS_PTRACE. Reset by execve in our children. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    r = read_item(&s, item_fd, &e);
    close(item_fd);
    if (s.info.session_id[0])
        rc_log_set_context(s.info.session_id, s.info.work_id);
    if (s.token && rc_log_register_secret(s.token, NULL) < 0)
        rc_log_warn("token not registered for redaction");
    if (r < 0) {
        rc_log_error("refusing the item: %s", e.msg);
        rc_worksecret_free(s.token);
        return RC_LAUNCHER_EXIT_FAIL;
    }
    rc_log_info("shim started (pid %ld)", (long)getpid());
    r = setup(&s, &e);
    if (r == 0)
        wait_container(&s);
    else
        rc_log_error("session start failed: %s", e.msg);
    teardown(&s, r < 0 ? e.msg : NULL);
    if (s.token)
        rc_log_unregister_secret(s.token);
    rc_worksecret_free(s.token);
    if (s.lock_fd >= 0)
        close(s.lock_fd);
    return r < 0 ? RC_LAUNCHER_EXIT_FAIL : RC_LAUNCHER_EXIT_OK;
}
