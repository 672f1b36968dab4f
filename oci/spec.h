/* spec.h - the OCI runtime configuration (config.json) runcell generates for a session.
 *
 * Everything an operator may tune about a session's container lives in ONE struct,
 * rc_oci_config, filled with documented defaults by rc_oci_config_init(); the caller then sets
 * the per-session fields (paths, ids) and hands it to rc_oci_spec_build(), which produces a
 * runtime-spec 1.0.2 document for runc 1.1 that is locked down by default:
 *
 *   - user namespace mapping container ids [0, map_size) to host ids [map_host_*, +map_size);
 *   - new pid, ipc, uts, mount, cgroup namespaces; a new network namespace (only `lo`) unless
 *     netns_path names one to join (the broker's, so it can listen inside it);
 *   - capabilities: only CAP_SETUID, CAP_SETGID and CAP_KILL, in the bounding, effective and
 *     permitted sets, none inheritable or ambient (see docs/OCI.md for why each one is kept);
 *   - noNewPrivileges; a default-deny seccomp allowlist (oci/seccomp.c);
 *   - masked and read-only paths: runc's defaults plus extras;
 *   - a read-only root (unless writable_root), with /workspace, /tmp (tmpfs, size cap) and the
 *     runner's state dir writable;
 *   - rlimits (nofile, nproc), cgroup limits (memory, swap, pids, cpu quota);
 *   - a hostname per session; the environment the runner needs and nothing else.
 *
 * Credentials never enter a container: the generator refuses any environment entry or argument
 * whose value looks like one (rc_oci_env_check), and never accepts ANTHROPIC_WORK_SECRET,
 * ANTHROPIC_ENVIRONMENT_KEY, ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN at all. */
#ifndef RUNCELL_OCI_SPEC_H
#define RUNCELL_OCI_SPEC_H

#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define RC_OCI_VERSION "1.0.2"

/* Defaults (docs/OCI.md explains each). */
#define RC_OCI_DEFAULT_MAP_HOST        100000u /* host uid/gid of container uid/gid 0 */
#define RC_OCI_DEFAULT_MAP_SIZE        65536u
#define RC_OCI_DEFAULT_RUNNER_UID      0u /* root of the user namespace, not of the host */
#define RC_OCI_DEFAULT_AGENT_UID       1000u
#define RC_OCI_DEFAULT_RUNNER_PATH     "/usr/local/bin/runcell-runner"
#define RC_OCI_DEFAULT_WORKDIR         "/workspace"
#define RC_OCI_DEFAULT_STATE_PATH      "/run/runcell"
#define RC_OCI_DEFAULT_API_DIR         "/run/runcell-api"
#define RC_OCI_DEFAULT_API_SOCKET_NAME "api.sock"
#define RC_OCI_DEFAULT_CA_DIR          "/run/runcell-ca" /* the session CA's dir (issue 11) */
#define RC_OCI_MEMORY_DIR              "/mnt/memory"     /* memory stores (protocol 16.2.1) */
#define RC_OCI_CA_PEM_NAME             "ca.pem"          /* the CA certificate alone */
#define RC_OCI_CA_BUNDLE_NAME          "ca-bundle.pem"   /* system roots + the CA */
#define RC_OCI_CA_BINDS_MAX            8
#define RC_OCI_DEFAULT_TMP_SIZE        (256ull << 20)
#define RC_OCI_DEFAULT_MEMORY          (2048ll << 20)
#define RC_OCI_DEFAULT_SWAP            0ll /* extra swap beyond memory: none */
#define RC_OCI_DEFAULT_PIDS            512ll
#define RC_OCI_DEFAULT_CPU_PERIOD      100000ull /* microseconds */
#define RC_OCI_DEFAULT_CPU_QUOTA       100000ll  /* one CPU */
#define RC_OCI_DEFAULT_NOFILE          4096ull
#define RC_OCI_DEFAULT_NPROC           1024ull
#define RC_OCI_DEFAULT_OOM_SCORE_ADJ   500 /* the host's OOM killer picks sessions first */
#define RC_OCI_DEFAULT_CGROUP_PARENT   "/runcell"
#define RC_OCI_DEFAULT_PATH_ENV        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define RC_OCI_HOSTNAME_MAX            63
#define RC_OCI_ENV_MAX                 64 /* entries in extra_env */
#define RC_OCI_ARGS_MAX                256

/* A read-only bind mount: a host file or dir over a path inside the container. */
typedef struct rc_oci_bind {
    const char *source;      /* absolute host path */
    const char *destination; /* absolute path inside the container */
} rc_oci_bind;

typedef struct rc_oci_config {
    /* ---- identity ---- */
    const char *session_id; /* required: names the cgroup and (by default) the hostname */
    const char *hostname;   /* NULL: "rc-" + session_id, cut to RC_OCI_HOSTNAME_MAX */

    /* ---- users: the one id range the container sees ---- */
    uint32_t map_host_uid, map_host_gid; /* RC_OCI_DEFAULT_MAP_HOST */
    uint32_t map_size;                   /* RC_OCI_DEFAULT_MAP_SIZE, same for uid and gid */
    uint32_t runner_uid, runner_gid;     /* the process's ids inside; uid must be 0 (see docs) */
    uint32_t agent_uid, agent_gid;       /* the tool user inside (1000); RUNCELL_TOOL_UID/GID */

    /* ---- filesystem (host paths are absolute; the bundle layer fills them) ---- */
    const char *rootfs; /* required: the snapshot's rootfs, or the overlay's merge */
    bool writable_root; /* false: root mounted read-only (default) */
    /* A 64 MiB tmpfs owned by the tool user at RC_OCI_MEMORY_DIR for the session's memory stores
     * (protocol 16.2.1). The bundle layer sets it when runc can mount there: a writable root, or
     * a snapshot that has the directory (imports since the memory stores were added do). */
    bool memory_mount;
    const char *workspace_host;  /* required: bind-mounted read-write at workdir */
    const char *workdir;         /* RC_OCI_DEFAULT_WORKDIR; also the process cwd */
    const char *state_host;      /* required: bind-mounted read-write at state_path */
    const char *state_path;      /* RC_OCI_DEFAULT_STATE_PATH */
    const char *api_dir_host;    /* NULL: none; else bind-mounted read-only at api_dir */
    const char *skills_host;     /* NULL: none; else bind-mounted read-only at <workdir>/skills */
    const char *api_dir;         /* RC_OCI_DEFAULT_API_DIR */
    const char *api_socket_name; /* RC_OCI_DEFAULT_API_SOCKET_NAME, inside api_dir */
    uint64_t tmp_size;           /* bytes of the /tmp tmpfs (RC_OCI_DEFAULT_TMP_SIZE) */
    /* TLS interception (issue 11). NULL: none. Else a host dir holding RC_OCI_CA_PEM_NAME and
     * RC_OCI_CA_BUNDLE_NAME (certificates only), bound read-only at RC_OCI_DEFAULT_CA_DIR, and
     * the trust variables (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, ...) point there. */
    const char *ca_dir_host;
    /* Read-only binds of those files over the rootfs's own trust files (the system bundle,
     * anchor dirs); mounted after everything else. A destination must exist in a read-only
     * root. At most RC_OCI_CA_BINDS_MAX; only used with ca_dir_host. */
    const rc_oci_bind *ca_binds;
    size_t n_ca_binds;

    /* ---- network ---- */
    const char *netns_path; /* NULL: a new namespace with only lo; else joined */

    /* ---- limits (0 or negative where noted = not set) ---- */
    int64_t memory_limit; /* bytes; RC_OCI_DEFAULT_MEMORY; <= 0 unset */
    int64_t swap_limit;   /* bytes of swap on top of memory (0 = none); < 0 leave unset */
    int64_t pids_limit;   /* RC_OCI_DEFAULT_PIDS; <= 0 unset */
    int64_t cpu_quota;    /* microseconds per cpu_period; RC_OCI_DEFAULT_CPU_QUOTA; <= 0 unset */
    uint64_t cpu_period;  /* RC_OCI_DEFAULT_CPU_PERIOD */
    uint64_t nofile;      /* RLIMIT_NOFILE soft = hard */
    uint64_t nproc;       /* RLIMIT_NPROC soft = hard */
    int oom_score_adj;    /* RC_OCI_DEFAULT_OOM_SCORE_ADJ */
    const char *cgroup_parent; /* RC_OCI_DEFAULT_CGROUP_PARENT; cgroupsPath = parent/session */

    /* ---- process ---- */
    const char *const *args; /* NULL: { RC_OCI_DEFAULT_RUNNER_PATH } */
    /* Runner inputs (protocol 14.7); NULL leaves the variable out. */
    const char *environment_id; /* ANTHROPIC_ENVIRONMENT_ID */
    const char *work_id;        /* ANTHROPIC_WORK_ID */
    const char *base_url;       /* ANTHROPIC_BASE_URL */
    const char *tools_manifest; /* RUNCELL_TOOLS_MANIFEST (path inside the container) */
    const char *log_level;      /* RUNCELL_LOG_LEVEL */
    int64_t max_idle_ms;        /* RUNCELL_MAX_IDLE_MS; < 0 leaves it out (default -1) */
    const char *http_proxy, *https_proxy, *no_proxy; /* both spellings are set */
    const char *const *extra_env; /* NULL-terminated "NAME=value"; checked like the rest */
} rc_oci_config;

/* A session id usable as a directory name, a runc container id and a cgroup name:
 * 1..128 characters of [A-Za-z0-9_-], not starting with '-'. */
bool rc_oci_session_id_valid(const char *id);

/* Fill every field with its default; pointers the caller must set are NULL. */
void rc_oci_config_init(rc_oci_config *c);

/* Check the config without building anything: required fields, absolute paths, ids inside the
 * mapping, limits in range, no credential in env or args. */
int rc_oci_config_validate(const rc_oci_config *c, rc_error *err);

/* Build the config.json tree. *ret is owned by the caller (cJSON_Delete). */
int rc_oci_spec_build(const rc_oci_config *c, cJSON **ret, rc_error *err);

/* Write a tree as `name` under dirfd atomically (temp file + fsync + rename), mode 0600. Before
 * writing, every process.env entry and process.args element is checked again with
 * rc_oci_env_check, so a tree edited after rc_oci_spec_build cannot smuggle a credential. */
int rc_oci_spec_write(const cJSON *spec, int dirfd, const char *name, rc_error *err);

/* Replace process.args of a built tree (checked for credentials). */
int rc_oci_spec_set_args(cJSON *spec, const char *const *args, rc_error *err);

/* Refuse a value that looks like a credential: contains "sk-ant-", "whsec_" or "Bearer ", or
 * (for an env entry) names a credential variable. -RC_EINVAL; the message never quotes it. */
int rc_oci_env_check(const char *entry, rc_error *err);
int rc_oci_value_check(const char *value, rc_error *err);

/* The seccomp section (oci/seccomp.c): Docker's default profile flattened for this
 * architecture and the capabilities above. *ret owned by the caller. */
int rc_oci_seccomp_build(cJSON **ret, rc_error *err);

/* The masked and read-only path lists (NULL-terminated), exposed for the tests and docs. */
extern const char *const rc_oci_masked_paths[];
extern const char *const rc_oci_readonly_paths[];
/* Capability names kept for the runner (NULL-terminated). */
extern const char *const rc_oci_kept_caps[];
/* Mount points the rootfs must already have (besides workdir), so runc never has to create one
 * inside a shared, read-only snapshot. /run is a tmpfs in the container; the state and API dirs
 * are created inside it. */
extern const char *const rc_oci_mount_points[];

#endif
