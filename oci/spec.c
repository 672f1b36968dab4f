/* spec.c - builds a session's config.json (runtime-spec 1.0.2, runc 1.1) from rc_oci_config.
 *
 * The document is assembled with cJSON through a tiny "sticky out-of-memory" builder: every add
 * goes through jb_* helpers that record an allocation failure instead of returning it, so the
 * section builders read as a flat description of the config and the one check happens at the
 * end. Every value that comes from the caller is validated first (rc_oci_config_validate);
 * environment entries and arguments are checked for credentials both when the tree is built and
 * again when it is written, so no path into config.json skips the check. */
#include "spec.h"

#include "buf.h"
#include "cleanup.h"
#include "fsio.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const rc_oci_masked_paths[] = {
    /* runc's defaults (`runc spec`) */
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    /* extras (Docker's later additions and a few more host-identifying files) */
    "/sys/devices/virtual/powercap", "/proc/interrupts", "/sys/kernel/debug", "/sys/kernel/tracing",
    NULL};

const char *const rc_oci_readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL};

/* Each one is explained in docs/OCI.md. */
const char *const rc_oci_kept_caps[] = {
    "CAP_SETUID", /* setresuid/setfsuid to the agent uid before running a tool */
    "CAP_SETGID", /* setresgid/setgroups/setfsgid to the agent gid */
    "CAP_KILL",   /* signal a tool's process group, which runs as another uid */
    NULL};

const char *const rc_oci_mount_points[] = {"/proc",      "/dev", "/sys", "/tmp",
                                           "/workspace", "/run", NULL};

/* ---- credential checks ----------------------------------------------------------------------- */

static const char *const credential_markers[] = {"sk-ant-", "whsec_", NULL};
static const char *const credential_names[] = {"ANTHROPIC_WORK_SECRET", "ANTHROPIC_ENVIRONMENT_KEY",
                                               "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", NULL};

int rc_oci_value_check(const char *value, rc_error *err)
{
    if (!value)
        return 0;
    for (size_t i = 0; credential_markers[i]; i++)
        if (strstr(value, credential_markers[i]))
            return rc_error_set(err, RC_EINVAL,
                                "refusing a value that looks like a credential (%s...)",
                                credential_markers[i]);
    if (strcasestr(value, "bearer "))
        return rc_error_set(err, RC_EINVAL, "refusing a value that looks like a bearer token");
    return 0;
}

int rc_oci_env_check(const char *entry, rc_error *err)
{
    const char *eq = entry ? strchr(entry, '=') : NULL;
    if (!eq || eq == entry)
        return rc_error_set(err, RC_EINVAL, "environment entry is not NAME=value");
    size_t nlen = (size_t)(eq - entry);
    for (size_t i = 0; credential_names[i]; i++)
        if (strlen(credential_names[i]) == nlen && strncmp(entry, credential_names[i], nlen) == 0)
            return rc_error_set(err, RC_EINVAL, "refusing credential variable %s in a container",
                                credential_names[i]);
    for (size_t i = 0; i < nlen; i++) {
        char ch = entry[i];
        if (!(ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (i > 0 && ch >= '0' && ch <= '9')))
            return rc_error_set(err, RC_EINVAL, "environment name has a bad character");
    }
    int r = rc_oci_value_check(eq + 1, err);
    if (r < 0)
        return rc_error_wrap(err, RC_EINVAL, "environment");
    return 0;
}

/* A URL with user info ("http://user:pass@proxy") carries a credential. */
static int url_check(const char *name, const char *url, rc_error *err)
{
    if (!url)
        return 0;
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    if (memchr(auth, '@', alen))
        return rc_error_set(err, RC_EINVAL, "%s carries user info (a credential): refused", name);
    return rc_oci_value_check(url, err);
}

/* ---- validation ------------------------------------------------------------------------------ */

static bool session_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 128 || id[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!(ch == '_' || ch == '-' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9')))
            return false;
    }
    return true;
}

bool rc_oci_session_id_valid(const char *id)
{
    return session_id_valid(id);
}

static bool hostname_valid(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > RC_OCI_HOSTNAME_MAX || h[0] == '-' || h[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (!(ch == '-' || ch == '.' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9')))
            return false;
    }
    return true;
}

/* Absolute, no "." or ".." component, no control characters and no ',' (mount options). */
static int path_check(const char *what, const char *p, bool required, rc_error *err)
{
    if (!p)
        return required ? rc_error_set(err, RC_EINVAL, "%s is required", what) : 0;
    if (p[0] != '/' || strlen(p) > 4000)
        return rc_error_set(err, RC_EINVAL, "%s must be an absolute path", what);
    for (const char *s = p; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ',')
            return rc_error_set(err, RC_EINVAL, "%s has a control character or ','", what);
    for (const char *s = p; (s = strchr(s, '/')); s++) {
        size_t n = strcspn(s + 1, "/");
        if ((n == 1 && s[1] == '.') || (n == 2 && s[1] == '.' && s[2] == '.'))
            return rc_error_set(err, RC_EINVAL, "%s has a '.' or '..' component", what);
    }
    return 0;
}

static int ids_check(const rc_oci_config *c, rc_error *err)
{
    if (c->map_size == 0 || c->map_host_uid == 0 || c->map_host_gid == 0)
        return rc_error_set(err, RC_EINVAL,
                            "the id mapping must be non-empty and not start at "
                            "host id 0");
    if ((uint64_t)c->map_host_uid + c->map_size > UINT32_MAX ||
        (uint64_t)c->map_host_gid + c->map_size > UINT32_MAX)
        return rc_error_set(err, RC_EINVAL, "the id mapping overflows 32 bits");
    if (c->runner_uid >= c->map_size || c->runner_gid >= c->map_size ||
        c->agent_uid >= c->map_size || c->agent_gid >= c->map_size)
        return rc_error_set(err, RC_EINVAL, "runner and agent ids must lie inside the mapping");
    if (c->agent_uid == 0)
        return rc_error_set(err, RC_EINVAL, "the agent uid must not be 0");
    /* Switching from uid 0 to the agent is what makes the kernel clear the capabilities; a
     * non-root runner would also need ambient capabilities, which its tools would inherit. */
    if (c->runner_uid != 0)
        return rc_error_set(err, RC_EINVAL, "the runner must run as uid 0 of the user namespace");
    return 0;
}

static int limits_check(const rc_oci_config *c, rc_error *err)
{
    if (c->memory_limit > 0 && c->memory_limit < (4ll << 20))
        return rc_error_set(err, RC_EINVAL, "memory limit below 4 MiB");
    if (c->swap_limit > 0 && c->memory_limit <= 0)
        return rc_error_set(err, RC_EINVAL, "a swap limit needs a memory limit");
    if (c->memory_limit > RC_JSON_INT_EXACT_MAX / 4 || c->swap_limit > RC_JSON_INT_EXACT_MAX / 4)
        return rc_error_set(err, RC_EINVAL, "memory or swap limit too large");
    if (c->pids_limit > 4194304)
        return rc_error_set(err, RC_EINVAL, "pids limit too large");
    if (c->cpu_period < 1000 || c->cpu_period > 1000000)
        return rc_error_set(err, RC_EINVAL, "cpu period must be 1000..1000000 us");
    if (c->cpu_quota > 0 && (c->cpu_quota < 1000 || c->cpu_quota > 1000000ll * 1024))
        return rc_error_set(err, RC_EINVAL, "cpu quota out of range");
    if (c->nofile < 16 || c->nofile > (1u << 20) || c->nproc < 1 || c->nproc > 4194304)
        return rc_error_set(err, RC_EINVAL, "nofile must be 16..1048576, nproc 1..4194304");
    if (c->tmp_size < (1u << 20) || c->tmp_size > ((uint64_t)1 << 40))
        return rc_error_set(err, RC_EINVAL, "tmp size must be 1 MiB..1 TiB");
    if (c->oom_score_adj < -1000 || c->oom_score_adj > 1000)
        return rc_error_set(err, RC_EINVAL, "oom_score_adj must be -1000..1000");
    return 0;
}

static int args_check(const char *const *args, rc_error *err)
{
    size_t n = 0;
    if (!args)
        return 0;
    for (; args[n]; n++) {
        if (n >= RC_OCI_ARGS_MAX)
            return rc_error_set(err, RC_EINVAL, "too many process arguments");
        int r = rc_oci_value_check(args[n], err);
        if (r < 0)
            return rc_error_wrap(err, RC_EINVAL, "process argument");
    }
    if (n == 0 || args[0][0] != '/')
        return rc_error_set(err, RC_EINVAL, "process args[0] must be an absolute path");
    return 0;
}

static int env_inputs_check(const rc_oci_config *c, rc_error *err)
{
    const char *vals[] = {c->environment_id, c->work_id, c->tools_manifest, c->log_level};
    int r;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        if ((r = rc_oci_value_check(vals[i], err)) < 0)
            return r;
    if ((r = url_check("base_url", c->base_url, err)) < 0 ||
        (r = url_check("http_proxy", c->http_proxy, err)) < 0 ||
        (r = url_check("https_proxy", c->https_proxy, err)) < 0 ||
        (r = rc_oci_value_check(c->no_proxy, err)) < 0)
        return r;
    size_t n = 0;
    for (const char *const *e = c->extra_env; e && *e; e++, n++) {
        if (n >= RC_OCI_ENV_MAX)
            return rc_error_set(err, RC_EINVAL, "too many extra environment entries");
        if ((r = rc_oci_env_check(*e, err)) < 0)
            return r;
    }
    return 0;
}

static bool path_under(const char *p, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* The CA dir and the binds of its files over the rootfs's trust files (issue 11). A destination
 * may not be the root or lie in a kernel filesystem. */
static int ca_check(const rc_oci_config *c, rc_error *err)
{
    static const char *const kernel_dirs[] = {"/proc", "/sys", "/dev", NULL};
    int r;
    if ((r = path_check("ca_dir_host", c->ca_dir_host, false, err)) < 0)
        return r;
    if (c->n_ca_binds && (!c->ca_dir_host || !c->ca_binds))
        return rc_error_set(err, RC_EINVAL, "ca_binds need ca_dir_host");
    if (c->n_ca_binds > RC_OCI_CA_BINDS_MAX)
        return rc_error_set(err, RC_EINVAL, "more than %d ca_binds", RC_OCI_CA_BINDS_MAX);
    for (size_t i = 0; i < c->n_ca_binds; i++) {
        const char *d = c->ca_binds[i].destination;
        if ((r = path_check("ca_binds source", c->ca_binds[i].source, true, err)) < 0 ||
            (r = path_check("ca_binds destination", d, true, err)) < 0)
            return r;
        if (strcmp(d, "/") == 0)
            return rc_error_set(err, RC_EINVAL, "a ca_binds destination cannot be /");
        for (size_t k = 0; kernel_dirs[k]; k++)
            if (path_under(d, kernel_dirs[k]))
                return rc_error_set(err, RC_EINVAL, "a ca_binds destination lies in %s",
                                    kernel_dirs[k]);
    }
    return 0;
}

static int paths_check(const rc_oci_config *c, rc_error *err)
{
    int r;
    if ((r = path_check("rootfs", c->rootfs, true, err)) < 0 ||
        (r = path_check("workspace_host", c->workspace_host, true, err)) < 0 ||
        (r = path_check("workdir", c->workdir, true, err)) < 0 ||
        (r = path_check("state_host", c->state_host, true, err)) < 0 ||
        (r = path_check("state_path", c->state_path, true, err)) < 0 ||
        (r = path_check("api_dir_host", c->api_dir_host, false, err)) < 0 ||
        (r = path_check("skills_host", c->skills_host, false, err)) < 0 ||
        (r = path_check("api_dir", c->api_dir, true, err)) < 0 ||
        (r = path_check("netns_path", c->netns_path, false, err)) < 0 ||
        (r = path_check("cgroup_parent", c->cgroup_parent, true, err)) < 0 ||
        (r = ca_check(c, err)) < 0)
        return r;
    if (!c->api_socket_name || !c->api_socket_name[0] || strchr(c->api_socket_name, '/') ||
        strlen(c->api_socket_name) > 64)
        return rc_error_set(err, RC_EINVAL, "api_socket_name must be a plain file name");
    return 0;
}

int rc_oci_config_validate(const rc_oci_config *c, rc_error *err)
{
    int r;
    if (!c)
        return rc_error_set(err, RC_EINVAL, "no config");
    if (!session_id_valid(c->session_id))
        return rc_error_set(err, RC_EINVAL, "session id must be 1..128 of [A-Za-z0-9_-]");
    if (c->hostname && !hostname_valid(c->hostname))
        return rc_error_set(err, RC_EINVAL, "hostname must be 1..63 of [A-Za-z0-9.-]");
    if ((r = ids_check(c, err)) < 0 || (r = paths_check(c, err)) < 0 ||
        (r = limits_check(c, err)) < 0 || (r = args_check(c->args, err)) < 0 ||
        (r = env_inputs_check(c, err)) < 0)
        return r;
    return 0;
}

void rc_oci_config_init(rc_oci_config *c)
{
    *c = (rc_oci_config){
        .map_host_uid = RC_OCI_DEFAULT_MAP_HOST,
        .map_host_gid = RC_OCI_DEFAULT_MAP_HOST,
        .map_size = RC_OCI_DEFAULT_MAP_SIZE,
        .runner_uid = RC_OCI_DEFAULT_RUNNER_UID,
        .runner_gid = RC_OCI_DEFAULT_RUNNER_UID,
        .agent_uid = RC_OCI_DEFAULT_AGENT_UID,
        .agent_gid = RC_OCI_DEFAULT_AGENT_UID,
        .workdir = RC_OCI_DEFAULT_WORKDIR,
        .state_path = RC_OCI_DEFAULT_STATE_PATH,
        .api_dir = RC_OCI_DEFAULT_API_DIR,
        .api_socket_name = RC_OCI_DEFAULT_API_SOCKET_NAME,
        .tmp_size = RC_OCI_DEFAULT_TMP_SIZE,
        .memory_limit = RC_OCI_DEFAULT_MEMORY,
        .swap_limit = RC_OCI_DEFAULT_SWAP,
        .pids_limit = RC_OCI_DEFAULT_PIDS,
        .cpu_quota = RC_OCI_DEFAULT_CPU_QUOTA,
        .cpu_period = RC_OCI_DEFAULT_CPU_PERIOD,
        .nofile = RC_OCI_DEFAULT_NOFILE,
        .nproc = RC_OCI_DEFAULT_NPROC,
        .oom_score_adj = RC_OCI_DEFAULT_OOM_SCORE_ADJ,
        .cgroup_parent = RC_OCI_DEFAULT_CGROUP_PARENT,
        .max_idle_ms = -1,
    };
}

/* ---- the sticky-OOM builder ------------------------------------------------------------------ */

typedef struct jb {
    bool oom;
} jb;

static cJSON *jb_add(jb *b, cJSON *parent, const char *key, cJSON *item)
{
    if (!item || !parent) {
        cJSON_Delete(item);
        b->oom = true;
        return NULL;
    }
    bool ok = key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item);
    if (!ok) {
        cJSON_Delete(item);
        b->oom = true;
        return NULL;
    }
    return item;
}

static cJSON *jb_obj(jb *b, cJSON *parent, const char *key)
{
    return jb_add(b, parent, key, cJSON_CreateObject());
}

static cJSON *jb_arr(jb *b, cJSON *parent, const char *key)
{
    return jb_add(b, parent, key, cJSON_CreateArray());
}

static void jb_str(jb *b, cJSON *parent, const char *key, const char *v)
{
    jb_add(b, parent, key, cJSON_CreateString(v));
}

static void jb_num(jb *b, cJSON *parent, const char *key, double v)
{
    jb_add(b, parent, key, cJSON_CreateNumber(v));
}

static void jb_bool(jb *b, cJSON *parent, const char *key, bool v)
{
    jb_add(b, parent, key, cJSON_CreateBool(v));
}

static void jb_strs(jb *b, cJSON *parent, const char *key, const char *const *list)
{
    cJSON *a = jb_arr(b, parent, key);
    for (size_t i = 0; list && list[i]; i++)
        jb_str(b, a, NULL, list[i]);
}

/* ---- process --------------------------------------------------------------------------------- */

static void env_add(jb *b, cJSON *env, const char *name, const char *value)
{
    _cleanup_(rc_buf_free) rc_buf e = RC_BUF_INIT(8192);
    if (!value)
        return;
    if (rc_buf_appendf(&e, NULL, "%s=%s", name, value) < 0) {
        b->oom = true; /* over the cap counts as a failure too; validate caught real cases */
        return;
    }
    jb_str(b, env, NULL, rc_buf_cstr(&e));
}

static void env_add_u(jb *b, cJSON *env, const char *name, unsigned long long v)
{
    char num[32];
    snprintf(num, sizeof num, "%llu", v);
    env_add(b, env, name, num);
}

/* Issue 11: clients with their own trust stores (curl, Python requests/pip, git, npm, the AWS
 * SDKs, cargo, gRPC, Node) are pointed at the merged bundle (system roots + the session CA), Node
 * additionally at the CA alone (NODE_EXTRA_CA_CERTS adds to its bundled roots). */
static void build_ca_env(jb *b, cJSON *env)
{
    static const char *const bundle_vars[] = {"SSL_CERT_FILE",
                                              "CURL_CA_BUNDLE",
                                              "REQUESTS_CA_BUNDLE",
                                              "GIT_SSL_CAINFO",
                                              "PIP_CERT",
                                              "NPM_CONFIG_CAFILE",
                                              "AWS_CA_BUNDLE",
                                              "CARGO_HTTP_CAINFO",
                                              "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
                                              NULL};
    const char *bundle = RC_OCI_DEFAULT_CA_DIR "/" RC_OCI_CA_BUNDLE_NAME;
    for (size_t i = 0; bundle_vars[i]; i++)
        env_add(b, env, bundle_vars[i], bundle);
    env_add(b, env, "NODE_EXTRA_CA_CERTS", RC_OCI_DEFAULT_CA_DIR "/" RC_OCI_CA_PEM_NAME);
    env_add(b, env, "NODE_USE_SYSTEM_CA", "1");
}

static void build_env(jb *b, cJSON *proc, const rc_oci_config *c)
{
    cJSON *env = jb_arr(b, proc, "env");
    char sock[4200];

    env_add(b, env, "PATH", RC_OCI_DEFAULT_PATH_ENV);
    env_add(b, env, "HOME", c->workdir);
    env_add(b, env, "LANG", "C.UTF-8");
    env_add(b, env, "ANTHROPIC_ENVIRONMENT_ID", c->environment_id);
    env_add(b, env, "ANTHROPIC_WORK_ID", c->work_id);
    env_add(b, env, "ANTHROPIC_SESSION_ID", c->session_id);
    env_add(b, env, "ANTHROPIC_BASE_URL", c->base_url);
    if (c->api_dir_host) {
        snprintf(sock, sizeof sock, "%s/%s", c->api_dir, c->api_socket_name);
        env_add(b, env, "RUNCELL_API_SOCKET", sock);
    }
    env_add(b, env, "RUNCELL_WORKDIR", c->workdir);
    env_add_u(b, env, "RUNCELL_TOOL_UID", c->agent_uid);
    env_add_u(b, env, "RUNCELL_TOOL_GID", c->agent_gid);
    env_add(b, env, "RUNCELL_TOOLS_MANIFEST", c->tools_manifest);
    env_add(b, env, "RUNCELL_LOG_LEVEL", c->log_level);
    if (c->max_idle_ms >= 0)
        env_add_u(b, env, "RUNCELL_MAX_IDLE_MS", (unsigned long long)c->max_idle_ms);
    env_add(b, env, "HTTP_PROXY", c->http_proxy);
    env_add(b, env, "http_proxy", c->http_proxy);
    env_add(b, env, "HTTPS_PROXY", c->https_proxy);
    env_add(b, env, "https_proxy", c->https_proxy);
    env_add(b, env, "NO_PROXY", c->no_proxy);
    env_add(b, env, "no_proxy", c->no_proxy);
    /* Tools that read only ALL_PROXY (some curl builds, git's libcurl, pip) or need to be told to
     * honour the variables at all (Node's built-in fetch) use the same proxy (issue 6). */
    env_add(b, env, "ALL_PROXY", c->https_proxy ? c->https_proxy : c->http_proxy);
    env_add(b, env, "all_proxy", c->https_proxy ? c->https_proxy : c->http_proxy);
    if (c->https_proxy || c->http_proxy)
        env_add(b, env, "NODE_USE_ENV_PROXY", "1");
    if (c->ca_dir_host)
        build_ca_env(b, env);
    for (const char *const *e = c->extra_env; e && *e; e++)
        jb_str(b, env, NULL, *e);
}

static void build_caps(jb *b, cJSON *proc)
{
    static const char *const none[] = {NULL};
    cJSON *caps = jb_obj(b, proc, "capabilities");
    jb_strs(b, caps, "bounding", rc_oci_kept_caps);
    jb_strs(b, caps, "effective", rc_oci_kept_caps);
    jb_strs(b, caps, "permitted", rc_oci_kept_caps);
    jb_strs(b, caps, "inheritable", none);
    jb_strs(b, caps, "ambient", none);
}

static void build_rlimit(jb *b, cJSON *arr, const char *type, uint64_t v)
{
    cJSON *o = jb_obj(b, arr, NULL);
    jb_str(b, o, "type", type);
    jb_num(b, o, "hard", (double)v);
    jb_num(b, o, "soft", (double)v);
}

static void build_process(jb *b, cJSON *root, const rc_oci_config *c)
{
    static const char *const default_args[] = {RC_OCI_DEFAULT_RUNNER_PATH, NULL};
    cJSON *proc = jb_obj(b, root, "process");
    jb_bool(b, proc, "terminal", false);
    cJSON *user = jb_obj(b, proc, "user");
    jb_num(b, user, "uid", c->runner_uid);
    jb_num(b, user, "gid", c->runner_gid);
    cJSON *groups = jb_arr(b, user, "additionalGids");
    jb_num(b, groups, NULL, c->runner_gid);
    jb_strs(b, proc, "args", c->args ? c->args : default_args);
    build_env(b, proc, c);
    jb_str(b, proc, "cwd", c->workdir);
    build_caps(b, proc);
    cJSON *rl = jb_arr(b, proc, "rlimits");
    build_rlimit(b, rl, "RLIMIT_NOFILE", c->nofile);
    build_rlimit(b, rl, "RLIMIT_NPROC", c->nproc);
    jb_bool(b, proc, "noNewPrivileges", true);
    jb_num(b, proc, "oomScoreAdj", c->oom_score_adj);
}

/* ---- mounts ---------------------------------------------------------------------------------- */

static void build_mount(jb *b, cJSON *arr, const char *dest, const char *type, const char *src,
                        const char *const *opts)
{
    cJSON *m = jb_obj(b, arr, NULL);
    jb_str(b, m, "destination", dest);
    jb_str(b, m, "type", type);
    jb_str(b, m, "source", src);
    jb_strs(b, m, "options", opts);
}

static void build_sys_mounts(jb *b, cJSON *mounts, const rc_oci_config *c)
{
    static const char *const sysfs[] = {"nosuid", "noexec", "nodev", "ro", NULL};
    static const char *const cgroup[] = {"nosuid", "noexec", "nodev", "relatime", "ro", NULL};
    static const char *const empty[] = {"nosuid",  "noexec",   "nodev", "ro",
                                        "size=4k", "mode=555", NULL};
    if (c->netns_path) {
        /* sysfs can only be mounted by the owner of the network namespace, and a joined one
         * belongs to the host: the container gets an empty read-only /sys instead. */
        build_mount(b, mounts, "/sys", "tmpfs", "tmpfs", empty);
        return;
    }
    build_mount(b, mounts, "/sys", "sysfs", "sysfs", sysfs);
    build_mount(b, mounts, "/sys/fs/cgroup", "cgroup", "cgroup", cgroup);
}

/* Issue 11: the session CA's dir inside the /run tmpfs (runc makes the mount point there), then
 * its files over the rootfs's own trust files (existing targets: nothing is created in a
 * read-only root). */
static void build_ca_mounts(jb *b, cJSON *mounts, const rc_oci_config *c)
{
    static const char *const ca_bind[] = {"bind", "ro", "nosuid", "nodev", "noexec", NULL};
    if (!c->ca_dir_host)
        return;
    build_mount(b, mounts, RC_OCI_DEFAULT_CA_DIR, "bind", c->ca_dir_host, ca_bind);
    for (size_t i = 0; i < c->n_ca_binds; i++)
        build_mount(b, mounts, c->ca_binds[i].destination, "bind", c->ca_binds[i].source, ca_bind);
}

static void build_mounts(jb *b, cJSON *root, const rc_oci_config *c)
{
    static const char *const proc[] = {"nosuid", "noexec", "nodev", NULL};
    static const char *const dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
    static const char *const pts[] = {"nosuid",        "noexec",    "newinstance",
                                      "ptmxmode=0666", "mode=0620", NULL};
    static const char *const shm[] = {"nosuid",    "noexec",      "nodev",
                                      "mode=1777", "size=65536k", NULL};
    static const char *const mq[] = {"nosuid", "noexec", "nodev", NULL};
    static const char *const rw_bind[] = {"bind", "rw", "nosuid", "nodev", NULL};
    static const char *const state_bind[] = {"bind", "rw", "nosuid", "nodev", "noexec", NULL};
    static const char *const run[] = {"nosuid", "nodev", "noexec", "mode=755", "size=1m", NULL};
    static const char *const api_bind[] = {"bind", "ro", "nosuid", "nodev", "noexec", NULL};
    static const char *const skills_bind[] = {"bind", "ro", "nosuid", "nodev", NULL}; /* scripts */
    char size[64], skills_at[4200];
    const char *tmp[] = {"nosuid", "nodev", "mode=1777", size, NULL};
    snprintf(size, sizeof size, "size=%llu", (unsigned long long)c->tmp_size);

    cJSON *mounts = jb_arr(b, root, "mounts");
    build_mount(b, mounts, "/proc", "proc", "proc", proc);
    build_mount(b, mounts, "/dev", "tmpfs", "tmpfs", dev);
    build_mount(b, mounts, "/dev/pts", "devpts", "devpts", pts);
    build_mount(b, mounts, "/dev/shm", "tmpfs", "shm", shm);
    build_mount(b, mounts, "/dev/mqueue", "mqueue", "mqueue", mq);
    build_sys_mounts(b, mounts, c);
    build_mount(b, mounts, "/tmp", "tmpfs", "tmpfs", tmp);
    build_mount(b, mounts, "/run", "tmpfs", "tmpfs", run);
    if (c->memory_mount) {
        /* The memory stores' folders (protocol 16.2.1: /mnt/memory/<store>), created by the
         * runner as the tool user, in a small tmpfs of their own. */
        char mem_uid[32], mem_gid[32];
        const char *mem[] = {"nosuid",   "nodev", "noexec", "mode=755",
                             "size=64m", mem_uid, mem_gid,  NULL};
        snprintf(mem_uid, sizeof mem_uid, "uid=%u", (unsigned)c->agent_uid);
        snprintf(mem_gid, sizeof mem_gid, "gid=%u", (unsigned)c->agent_gid);
        build_mount(b, mounts, RC_OCI_MEMORY_DIR, "tmpfs", "tmpfs", mem);
    }
    build_mount(b, mounts, c->workdir, "bind", c->workspace_host, rw_bind);
    build_mount(b, mounts, c->state_path, "bind", c->state_host, state_bind);
    if (c->api_dir_host)
        build_mount(b, mounts, c->api_dir, "bind", c->api_dir_host, api_bind);
    if (c->skills_host) { /* after the workspace: it lies inside it */
        snprintf(skills_at, sizeof skills_at, "%s/skills", c->workdir);
        build_mount(b, mounts, skills_at, "bind", c->skills_host, skills_bind);
    }
    build_ca_mounts(b, mounts, c);
}

/* ---- linux ----------------------------------------------------------------------------------- */

static void build_idmap(jb *b, cJSON *linux_, const char *key, uint32_t host, uint32_t size)
{
    cJSON *m = jb_obj(b, jb_arr(b, linux_, key), NULL);
    jb_num(b, m, "containerID", 0);
    jb_num(b, m, "hostID", host);
    jb_num(b, m, "size", size);
}

static void build_namespaces(jb *b, cJSON *linux_, const rc_oci_config *c)
{
    static const char *const fresh[] = {"pid", "ipc", "uts", "mount", "user", "cgroup", NULL};
    cJSON *ns = jb_arr(b, linux_, "namespaces");
    for (size_t i = 0; fresh[i]; i++)
        jb_str(b, jb_obj(b, ns, NULL), "type", fresh[i]);
    cJSON *net = jb_obj(b, ns, NULL);
    jb_str(b, net, "type", "network");
    if (c->netns_path)
        jb_str(b, net, "path", c->netns_path);
}

static void build_resources(jb *b, cJSON *linux_, const rc_oci_config *c)
{
    cJSON *res = jb_obj(b, linux_, "resources");
    cJSON *dev = jb_obj(b, jb_arr(b, res, "devices"), NULL);
    jb_bool(b, dev, "allow", false);
    jb_str(b, dev, "access", "rwm");
    if (c->memory_limit > 0) {
        cJSON *mem = jb_obj(b, res, "memory");
        jb_num(b, mem, "limit", (double)c->memory_limit);
        /* runtime-spec's swap is memory + swap. */
        if (c->swap_limit >= 0)
            jb_num(b, mem, "swap", (double)(c->memory_limit + c->swap_limit));
    }
    if (c->pids_limit > 0)
        jb_num(b, jb_obj(b, res, "pids"), "limit", (double)c->pids_limit);
    if (c->cpu_quota > 0) {
        cJSON *cpu = jb_obj(b, res, "cpu");
        jb_num(b, cpu, "quota", (double)c->cpu_quota);
        jb_num(b, cpu, "period", (double)c->cpu_period);
    }
}

static void build_linux(jb *b, cJSON *root, const rc_oci_config *c, cJSON *seccomp)
{
    char cg[4400];
    cJSON *linux_ = jb_obj(b, root, "linux");
    build_idmap(b, linux_, "uidMappings", c->map_host_uid, c->map_size);
    build_idmap(b, linux_, "gidMappings", c->map_host_gid, c->map_size);
    build_namespaces(b, linux_, c);
    build_resources(b, linux_, c);
    snprintf(cg, sizeof cg, "%s/%s", strcmp(c->cgroup_parent, "/") ? c->cgroup_parent : "",
             c->session_id);
    jb_str(b, linux_, "cgroupsPath", cg);
    jb_add(b, linux_, "seccomp", seccomp);
    jb_strs(b, linux_, "maskedPaths", rc_oci_masked_paths);
    jb_strs(b, linux_, "readonlyPaths", rc_oci_readonly_paths);
}

static void default_hostname(const char *session_id, char *out, size_t outsz)
{
    snprintf(out, outsz, "rc-%.*s", RC_OCI_HOSTNAME_MAX - 3, session_id);
    for (char *p = out; *p; p++)
        if (*p == '_')
            *p = '-';
}

int rc_oci_spec_build(const rc_oci_config *c, cJSON **ret, rc_error *err)
{
    jb b = {false};
    char host[RC_OCI_HOSTNAME_MAX + 1];
    cJSON *seccomp = NULL;
    int r = rc_oci_config_validate(c, err);
    if (r < 0)
        return r;
    if ((r = rc_oci_seccomp_build(&seccomp, err)) < 0)
        return r;
    _cleanup_json_ cJSON *root = cJSON_CreateObject();
    if (!root) {
        cJSON_Delete(seccomp);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    jb_str(&b, root, "ociVersion", RC_OCI_VERSION);
    build_process(&b, root, c);
    cJSON *rootfs = jb_obj(&b, root, "root");
    jb_str(&b, rootfs, "path", c->rootfs);
    jb_bool(&b, rootfs, "readonly", !c->writable_root);
    if (c->hostname)
        jb_str(&b, root, "hostname", c->hostname);
    else {
        default_hostname(c->session_id, host, sizeof host);
        jb_str(&b, root, "hostname", host);
    }
    build_mounts(&b, root, c);
    build_linux(&b, root, c, seccomp);
    if (b.oom)
        return rc_error_set(err, RC_ENOMEM, "out of memory building config.json");
    *ret = take_ptr(root);
    return 0;
}

/* ---- checking and writing a tree ------------------------------------------------------------- */

static int strings_check(const cJSON *arr, bool env, rc_error *err)
{
    const cJSON *it;
    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr))
        return rc_error_set(err, RC_EINVAL, "process.%s is not an array", env ? "env" : "args");
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it))
            return rc_error_set(err, RC_EINVAL, "process.%s has a non-string",
                                env ? "env" : "args");
        int r =
            env ? rc_oci_env_check(it->valuestring, err) : rc_oci_value_check(it->valuestring, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int spec_credentials_check(const cJSON *spec, rc_error *err)
{
    const cJSON *proc = cJSON_GetObjectItemCaseSensitive(spec, "process");
    int r;
    if (!cJSON_IsObject(proc))
        return rc_error_set(err, RC_EINVAL, "config has no process object");
    if ((r = strings_check(cJSON_GetObjectItemCaseSensitive(proc, "env"), true, err)) < 0 ||
        (r = strings_check(cJSON_GetObjectItemCaseSensitive(proc, "args"), false, err)) < 0)
        return r;
    return 0;
}

int rc_oci_spec_set_args(cJSON *spec, const char *const *args, rc_error *err)
{
    jb b = {false};
    int r = args_check(args, err);
    if (r < 0)
        return r;
    if (!args)
        return rc_error_set(err, RC_EINVAL, "no process arguments");
    cJSON *proc = cJSON_GetObjectItemCaseSensitive(spec, "process");
    if (!cJSON_IsObject(proc))
        return rc_error_set(err, RC_EINVAL, "config has no process object");
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && args[i]; i++)
        jb_str(&b, arr, NULL, args[i]);
    if (!arr || b.oom) {
        cJSON_Delete(arr);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    if (cJSON_GetObjectItemCaseSensitive(proc, "args")) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(proc, "args", arr)) {
            cJSON_Delete(arr);
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
    } else if (!cJSON_AddItemToObject(proc, "args", arr)) {
        cJSON_Delete(arr);
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    }
    return 0;
}

int rc_oci_spec_write(const cJSON *spec, int dirfd, const char *name, rc_error *err)
{
    _cleanup_free_ char *text = NULL;
    _cleanup_close_ int fd = -1;
    char tmp[300];
    int r = spec_credentials_check(spec, err);
    if (r < 0)
        return r;
    if (!name || !name[0] || strchr(name, '/') || strlen(name) > 200)
        return rc_error_set(err, RC_EINVAL, "bad config file name");
    text = cJSON_Print(spec);
    if (!text)
        return rc_error_set(err, RC_ENOMEM, "out of memory printing config");
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    (void)unlinkat(dirfd, tmp, 0);
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "create %s", tmp);
    if ((r = rc_fd_write_all(fd, text, strlen(text), "config", err)) < 0 ||
        (r = rc_fd_write_all(fd, "\n", 1, "config", err)) < 0)
        goto fail;
    if (fsync(fd) < 0) {
        r = rc_error_sys(err, RC_EIO, "fsync %s", tmp);
        goto fail;
    }
    if (renameat(dirfd, tmp, dirfd, name) < 0) {
        r = rc_error_sys(err, RC_EIO, "rename %s", tmp);
        goto fail;
    }
    return 0;
fail:
    (void)unlinkat(dirfd, tmp, 0);
    return r;
}
