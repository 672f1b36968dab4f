/* config.c - runcell-launcher's configuration: environment variables (the names the systemd
 * unit's env file uses), optionally read from an env file first. One struct, documented defaults,
 * strict number parsing; the same code configures the daemon and the shims it re-executes (a shim
 * inherits the daemon's environment, so both always agree). */
#include "launcher.h"

#include "../oci/bundle.h"
#include "artifacts.h"
#include "cleanup.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_FILE_MAX (64 * 1024)

static const char help_text[] =
    "usage: runcell-launcher [--env-file FILE] [--check-config]\n"
    "\n"
    "The root daemon that starts one container per claimed work item (docs/LAUNCHER.md). It\n"
    "holds no API key: each session's shim decodes that item's secret into its session token.\n"
    "\n"
    "--check-config validates the configuration and every egress policy (RUNCELL_POLICY_FILE,\n"
    "each file of RUNCELL_POLICY_DIR) and exits 0, or 2 with the file and JSON path at fault.\n"
    "The daemon runs the same check at start and refuses to start on an error.\n"
    "\n"
    "Configuration (environment, or KEY=VALUE lines of --env-file; the environment wins):\n"
    "  RUNCELL_STATE_DIR             state dir: bundles, workspaces, snapshots, per-session\n"
    "                                root-only work files (default /var/lib/runcell)\n"
    "  RUNCELL_RUN_DIR               runtime dir: socket, session locks, netns (default\n"
    "                                /run/runcell)\n"
    "  RUNCELL_LAUNCHER_SOCKET       hand-off socket (default $RUNCELL_RUN_DIR/launcher.sock)\n"
    "  RUNCELL_FCGI_UID              the only non-root uid allowed to connect (SO_PEERCRED);\n"
    "                                unset: root only\n"
    "  RUNCELL_CAPACITY              maximum concurrent sessions (default 16)\n"
    "  RUNCELL_SNAPSHOT              required: snapshot digest (sha256:...) already in the store,\n"
    "                                or a tarball path imported at start\n"
    "  RUNCELL_POLICY_FILE           default egress policy (NetworkPolicy JSON); unset:\n"
    "                                \"deny-all\"\n"
    "  RUNCELL_POLICY_DIR            per-session and per-agent policies: <name>.json chosen by\n"
    "                                session metadata runcell_policy, agents/<agent_id>.json\n"
    "                                (precedence: session, agent, default; docs/BROKER.md)\n"
    "  RUNCELL_TOOLS_MANIFEST        custom tools manifest, path inside the container\n"
    "  ANTHROPIC_BASE_URL            API base URL the broker forwards to and force-stops go to\n"
    "                                (default https://api.anthropic.com)\n"
    "  RUNCELL_ALLOW_PLAIN_HTTP      1: allow http:// to a non-loopback API host\n"
    "  RUNCELL_CA_FILE               CA bundle trusted instead of the system store (API and\n"
    "                                egress TLS; for test upstreams)\n"
    "  RUNCELL_SESSION_WALL_LIMIT_S  hard wall-clock limit per session (default 14400)\n"
    "  RUNCELL_STOP_GRACE_MS         SIGTERM -> SIGKILL grace when stopping (default 10000)\n"
    "  RUNCELL_SESSION_LOCK_WAIT_MS  how long a re-claimed session waits for its previous\n"
    "                                shim to finish (default 60000)\n"
    "  RUNCELL_MEMORY                memory limit per session, bytes with K/M/G (default 2G)\n"
    "  RUNCELL_PIDS                  pids limit per session (default 512)\n"
    "  RUNCELL_CPUS                  CPUs per session (default 1)\n"
    "  RUNCELL_UID_BASE              host uid/gid of container id 0 (default 100000)\n"
    "  RUNCELL_MAX_IDLE_MS           passed to the runner (idle exit after end_turn)\n"
    "  RUNCELL_RUNNER_LOG_LEVEL      passed to the runner as RUNCELL_LOG_LEVEL\n"
    "  RUNCELL_PURGE_WORKSPACE       1: delete the workspace when the session ends (default:\n"
    "                                keep it for a re-claim; `runcell-oci workspace prune`)\n"
    "  RUNCELL_WORKSPACE_SIZE        size cap of each session's /workspace, bytes with K/M/G\n"
    "                                (default 10G: a sparse ext4 image, loop-mounted; needs\n"
    "                                mkfs.ext4 and loop devices); 0: no cap\n"
    "  RUNCELL_SKILLS                0: do not fetch the agent's skills (default: fetch them on\n"
    "                                the host, bound read-only at /workspace/skills; "
    "docs/SKILLS.md)\n"
    "  RUNCELL_TLS_INTERCEPT         1 (default): a session whose egress policy has request rules\n"
    "                                gets its own CA, so https:// to those domains is terminated\n"
    "                                by the proxy and its rules apply; the container trusts the\n"
    "                                CA (never its key) through /run/runcell-ca and\n"
    "                                SSL_CERT_FILE etc. 0: off, CONNECT to such domains is\n"
    "                                refused (docs/BROKER.md)\n"
    "  RUNCELL_FORWARD_KEY_FILE      HMAC key (>= 32 bytes, mode 0600) signing the token of\n"
    "                                forwardURL rules; needed when a policy has them\n"
    "  RUNCELL_WRITABLE_ROOT         1: a per-session overlay over the snapshot, so the agent can\n"
    "                                write /usr/local, /opt and its home (default: read-only "
    "root;\n"
    "                                docs/OCI.md)\n"
    "  RUNCELL_ARTIFACTS             comma-separated globs under /workspace exported when a\n"
    "                                session ends (`**` = any depth; default: no export;\n"
    "                                docs/OPERATIONS.md)\n"
    "  RUNCELL_ARTIFACTS_DIR         where exports go, <dir>/<session>/<UTC time>/ (default\n"
    "                                $RUNCELL_STATE_DIR/artifacts)\n"
    "  RUNCELL_ARTIFACTS_MAX_BYTES   size cap of one session's export, bytes with K/M/G\n"
    "                                (default 100M)\n"
    "  RUNCELL_ARTIFACTS_FORMAT      dir (default) or tar: one <UTC time>.tar.gz per export\n"
    "  RUNCELL_ARTIFACTS_KEEP_DAYS   delete exports older than this many days after each\n"
    "                                export (default 0: keep them all)\n"
    "  RUNCELL_RUNC                  runc binary (default: runc on PATH)\n"
    "  RUNCELL_BROKER_HOSTS_FILE     test only: hosts-style name map for the egress proxy\n"
    "  RUNCELL_LOG_LEVEL             debug, info, warn, error\n"
    "\n"
    "Items without a usable session token are refused (answer \"refused\"); runcell-fcgi then\n"
    "force-stops them with the environment key. RUNCELL_ALLOW_ENVIRONMENT_KEY_BROKERING is\n"
    "not supported here: the launcher never holds the environment key.\n"
    "\n"
    "Exit status: 0 after SIGTERM/SIGINT, 1 runtime failure, 2 configuration error.\n";

const char *rc_launcher_help(void)
{
    return help_text;
}

static const char *env_str(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int env_i64(const char *name, int64_t min, int64_t max, int64_t def, int64_t *ret,
                   rc_error *err)
{
    const char *v = env_str(name);
    char *end;
    if (!v) {
        *ret = def;
        return 0;
    }
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        return rc_error_set(err, RC_EINVAL, "%s must be an integer in [%lld, %lld]", name,
                            (long long)min, (long long)max);
    *ret = n;
    return 0;
}

/* Bytes with an optional K/M/G suffix. */
static int env_size(const char *name, int64_t *ret, rc_error *err)
{
    const char *v = env_str(name);
    char *end;
    unsigned shift = 0;
    if (!v) {
        *ret = 0;
        return 0;
    }
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (errno || end == v || *end || n <= 0 || n > (INT64_MAX >> 30))
        return rc_error_set(err, RC_EINVAL, "%s must be a positive size (K, M, G suffixes)", name);
    *ret = (int64_t)n << shift;
    return 0;
}

/* The workspace cap: unset = the default, "0" = none, else a size of at least the minimum. */
static int env_workspace_size(int64_t *ret, rc_error *err)
{
    const char *v = env_str("RUNCELL_WORKSPACE_SIZE");
    int r;
    if (!v) {
        *ret = (int64_t)RC_BUNDLE_DEFAULT_WORKSPACE_SIZE;
        return 0;
    }
    if (strcmp(v, "0") == 0) {
        *ret = 0;
        return 0;
    }
    if ((r = env_size("RUNCELL_WORKSPACE_SIZE", ret, err)) < 0)
        return r;
    if ((uint64_t)*ret < RC_BUNDLE_MIN_WORKSPACE_SIZE)
        return rc_error_set(err, RC_EINVAL, "RUNCELL_WORKSPACE_SIZE must be 0 or at least %lluM",
                            (unsigned long long)(RC_BUNDLE_MIN_WORKSPACE_SIZE >> 20));
    return 0;
}

static bool env_flag(const char *name)
{
    const char *v = env_str(name);
    return v && strcmp(v, "1") == 0;
}

/* A strict 0/1 switch: anything else is an error, so a typo never silently flips it. */
static int env_bool(const char *name, bool def, bool *ret, rc_error *err)
{
    const char *v = env_str(name);
    if (!v)
        *ret = def;
    else if (strcmp(v, "1") == 0 || strcmp(v, "0") == 0)
        *ret = v[0] == '1';
    else
        return rc_error_set(err, RC_EINVAL, "%s must be 0 or 1", name);
    return 0;
}

/* One KEY=VALUE line (trimmed; optional surrounding quotes on the value). */
static int apply_env_line(char *line, rc_error *err)
{
    char *eq, *val;
    size_t n;
    while (isspace((unsigned char)*line))
        line++;
    if (!*line || *line == '#')
        return 0;
    if (strncmp(line, "export ", 7) == 0)
        line += 7;
    if (!(eq = strchr(line, '=')) || eq == line)
        return rc_error_set(err, RC_EINVAL, "env file: a line is not KEY=VALUE");
    *eq = '\0';
    for (char *p = line; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return rc_error_set(err, RC_EINVAL, "env file: bad variable name");
    val = eq + 1;
    n = strlen(val);
    while (n && isspace((unsigned char)val[n - 1]))
        val[--n] = '\0';
    if (n >= 2 && (val[0] == '"' || val[0] == '\'') && val[n - 1] == val[0]) {
        val[n - 1] = '\0';
        val++;
    }
    if (setenv(line, val, 0) < 0)
        return rc_error_sys(err, RC_EIO, "env file: setenv");
    return 0;
}

static int apply_env_file(const char *path, rc_error *err)
{
    _cleanup_fclose_ FILE *f = NULL;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0, total = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rc_error_sys(err, RC_EIO, "env file %s", path);
    if (!(f = fdopen(fd, "re"))) {
        close(fd);
        return rc_error_sys(err, RC_EIO, "env file %s", path);
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        int r;
        total += (size_t)n;
        if (total > ENV_FILE_MAX)
            return rc_error_set(err, RC_ETOOBIG, "env file %s is too large", path);
        if ((r = apply_env_line(line, err)) < 0)
            return r;
    }
    return 0;
}

static int load_numbers(rc_launcher_config *c, rc_error *err)
{
    int64_t v;
    int r;
    if ((r = env_i64("RUNCELL_CAPACITY", 0, RC_LAUNCHER_MAX_SESSIONS, RC_LAUNCHER_DEFAULT_CAPACITY,
                     &v, err)) < 0)
        return r;
    c->capacity = (long)v;
    if ((r = env_i64("RUNCELL_FCGI_UID", -1, 4294967294LL, -1, &v, err)) < 0)
        return r;
    c->fcgi_uid = (uid_t)v;
    if ((r = env_i64("RUNCELL_UID_BASE", 1, 4294967294LL - 65536, 100000, &v, err)) < 0)
        return r;
    c->map_host = (uint32_t)v;
    if ((r = env_i64("RUNCELL_SESSION_WALL_LIMIT_S", 1, 30LL * 86400, RC_LAUNCHER_DEFAULT_WALL_S,
                     &c->wall_limit_s, err)) < 0 ||
        (r = env_i64("RUNCELL_STOP_GRACE_MS", 0, 600000, 10000, &c->grace_ms, err)) < 0 ||
        (r = env_i64("RUNCELL_SESSION_LOCK_WAIT_MS", 0, 3600000, 60000, &c->lock_wait_ms, err)) <
            0 ||
        (r = env_i64("RUNCELL_PIDS", 0, 1 << 22, 0, &c->pids_limit, err)) < 0 ||
        (r = env_i64("RUNCELL_CPUS", 0, 1024, 0, &c->cpus, err)) < 0 ||
        (r = env_i64("RUNCELL_MAX_IDLE_MS", -1, 86400000LL, -1, &c->max_idle_ms, err)) < 0 ||
        (r = env_size("RUNCELL_MEMORY", &c->memory_limit, err)) < 0 ||
        (r = env_workspace_size(&c->workspace_size, err)) < 0)
        return r;
    return 0;
}

static int check_abs(const char *name, const char *v, rc_error *err)
{
    if (v && v[0] != '/')
        return rc_error_set(err, RC_EINVAL, "%s must be an absolute path", name);
    return 0;
}

/* RUNCELL_ARTIFACTS*: the globs are checked now so a bad one fails at start, not at session end. */
static int load_artifacts(rc_launcher_config *c, rc_error *err)
{
    const char *dir = env_str("RUNCELL_ARTIFACTS_DIR");
    char **globs = NULL;
    int r;
    c->artifacts = env_str("RUNCELL_ARTIFACTS");
    if ((r = rc_artifacts_parse_globs(c->artifacts, &globs, err)) < 0)
        return r;
    rc_artifacts_globs_free(globs);
    if ((r = check_abs("RUNCELL_ARTIFACTS_DIR", dir, err)) < 0)
        return r;
    if (dir)
        r = snprintf(c->artifacts_dir, sizeof c->artifacts_dir, "%s", dir);
    else
        r = snprintf(c->artifacts_dir, sizeof c->artifacts_dir, "%s/artifacts", c->state_dir);
    if (r < 0 || (size_t)r >= sizeof c->artifacts_dir - 64)
        return rc_error_set(err, RC_EINVAL, "RUNCELL_ARTIFACTS_DIR is too long");
    if ((r = env_size("RUNCELL_ARTIFACTS_MAX_BYTES", &c->artifacts_max_bytes, err)) < 0)
        return r;
    if (!c->artifacts_max_bytes)
        c->artifacts_max_bytes = (int64_t)RC_ARTIFACTS_DEFAULT_MAX_TOTAL_BYTES;
    if ((r = env_i64("RUNCELL_ARTIFACTS_KEEP_DAYS", 0, 36500, 0, &c->artifacts_keep_days, err)) < 0)
        return r;
    const char *fmt = env_str("RUNCELL_ARTIFACTS_FORMAT");
    if (fmt && strcmp(fmt, "dir") && strcmp(fmt, "tar"))
        return rc_error_set(err, RC_EINVAL, "RUNCELL_ARTIFACTS_FORMAT must be dir or tar");
    c->artifacts_tar = fmt && !strcmp(fmt, "tar");
    return 0;
}

int rc_launcher_config_load(const char *env_file, rc_launcher_config *ret, rc_error *err)
{
    rc_launcher_config c = {0};
    const char *sock;
    int r;

    if (env_file && (r = apply_env_file(env_file, err)) < 0)
        return r;
    c.state_dir = env_str("RUNCELL_STATE_DIR") ?: RC_LAUNCHER_DEFAULT_STATE_DIR;
    c.run_dir = env_str("RUNCELL_RUN_DIR") ?: RC_LAUNCHER_DEFAULT_RUN_DIR;
    c.snapshot = env_str("RUNCELL_SNAPSHOT");
    c.policy_file = env_str("RUNCELL_POLICY_FILE");
    c.policy_dir = env_str("RUNCELL_POLICY_DIR");
    c.tools_manifest = env_str("RUNCELL_TOOLS_MANIFEST");
    c.base_url = env_str("ANTHROPIC_BASE_URL") ?: "https://api.anthropic.com";
    c.allow_plain_http = env_flag("RUNCELL_ALLOW_PLAIN_HTTP");
    c.ca_file = env_str("RUNCELL_CA_FILE");
    c.hosts_file = env_str("RUNCELL_BROKER_HOSTS_FILE");
    c.forward_key_file = env_str("RUNCELL_FORWARD_KEY_FILE");
    if ((r = check_abs("RUNCELL_FORWARD_KEY_FILE", c.forward_key_file, err)) < 0)
        return r;
    c.runc_path = env_str("RUNCELL_RUNC");
    c.purge_workspace = env_flag("RUNCELL_PURGE_WORKSPACE");
    c.writable_root = env_flag("RUNCELL_WRITABLE_ROOT");
    c.skills = !env_str("RUNCELL_SKILLS") || strcmp(env_str("RUNCELL_SKILLS"), "0") != 0;
    if ((r = env_bool("RUNCELL_TLS_INTERCEPT", true, &c.tls_intercept, err)) < 0)
        return r;
    c.runner_log_level = env_str("RUNCELL_RUNNER_LOG_LEVEL");
    if ((r = check_abs("RUNCELL_STATE_DIR", c.state_dir, err)) < 0 ||
        (r = check_abs("RUNCELL_RUN_DIR", c.run_dir, err)) < 0 ||
        (r = check_abs("RUNCELL_POLICY_FILE", c.policy_file, err)) < 0 ||
        (r = check_abs("RUNCELL_POLICY_DIR", c.policy_dir, err)) < 0 ||
        (r = check_abs("RUNCELL_TOOLS_MANIFEST", c.tools_manifest, err)) < 0)
        return r;
    sock = env_str("RUNCELL_LAUNCHER_SOCKET");
    if ((r = check_abs("RUNCELL_LAUNCHER_SOCKET", sock, err)) < 0)
        return r;
    if (sock)
        r = snprintf(c.socket_path, sizeof c.socket_path, "%s", sock);
    else
        r = snprintf(c.socket_path, sizeof c.socket_path, "%s/launcher.sock", c.run_dir);
    if (r < 0 || (size_t)r >= 108)
        return rc_error_set(err, RC_EINVAL, "launcher socket path is too long");
    if ((r = load_numbers(&c, err)) < 0 || (r = load_artifacts(&c, err)) < 0)
        return r;
    *ret = c;
    return 0;
}
