/* config.c - runcell-runner's environment inputs (see config.h for the contract).
 *
 * Reading is separated from the process environment (an envp array is passed in) so the rules
 * are unit-tested without touching environ; only rc_runner_env_scrub() works on the real one.
 * Error messages name variables, never their values: a value may be a credential. */
#include "config.h"

#include "cleanup.h"
#include "envscrub.h"
#include "log.h"
#include "webhook.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- lookup ------------------------------------------------------------------------------- */

/* Value of name in envp (first occurrence, as getenv), NULL when absent or empty. */
static const char *env_get(const char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return (*envp)[n + 1] ? *envp + n + 1 : NULL;
    return NULL;
}

static int dup_into(char **dst, const char *v, rc_error *err)
{
    if (!v) {
        *dst = NULL;
        return 0;
    }
    *dst = strdup(v);
    return *dst ? 0 : rc_error_set(err, RC_ENOMEM, "out of memory");
}

static int read_id(const char *const *envp, const char *name, const char *prefix, char **dst,
                   rc_error *err)
{
    const char *v = env_get(envp, name);
    if (!v)
        return rc_error_set(err, RC_EINVAL, "%s is not set", name);
    if (!rc_id_valid(v, prefix))
        return rc_error_set(err, RC_EINVAL,
                            "%s is not a valid id (%s followed by letters and digits)", name,
                            prefix);
    return dup_into(dst, v, err);
}

/* Decimal integer in [lo, hi], the whole value. */
static int parse_ll(const char *name, const char *v, long long lo, long long hi, long long *ret,
                    rc_error *err)
{
    char *end = NULL;
    long long x;

    /* strtoll would skip leading whitespace and take a '+': neither is a plain number. */
    bool start_ok = (v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && lo < 0);
    errno = 0;
    x = strtoll(v, &end, 10);
    if (!start_ok || errno || end == v || *end || x < lo || x > hi)
        return rc_error_set(err, RC_EINVAL, "%s must be an integer between %lld and %lld", name, lo,
                            hi);
    *ret = x;
    return 0;
}

/* ---- the pieces ---------------------------------------------------------------------------- */

static int read_endpoint(const char *const *envp, rc_runner_config *c, rc_error *err)
{
    const char *url = env_get(envp, "ANTHROPIC_BASE_URL");
    const char *sock = env_get(envp, "RUNCELL_API_SOCKET");
    int r;

    if (url && strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return rc_error_set(err, RC_EINVAL,
                            "ANTHROPIC_BASE_URL must be an http:// or https:// URL");
    if (url && strpbrk(url, " \t\r\n"))
        return rc_error_set(err, RC_EINVAL, "ANTHROPIC_BASE_URL contains whitespace");
    if (sock && sock[0] != '/')
        return rc_error_set(err, RC_EINVAL, "RUNCELL_API_SOCKET must be an absolute path");
    if (sock && strlen(sock) >= 108)
        return rc_error_set(err, RC_EINVAL, "RUNCELL_API_SOCKET is longer than a socket path");
    if (!sock && !url)
        url = RC_RUNNER_DEFAULT_BASE_URL;
    if ((r = dup_into(&c->base_url, url, err)) < 0 || (r = dup_into(&c->api_socket, sock, err)) < 0)
        return r;
    return 0;
}

/* Socket mode: no credential may be present at all; the broker injects the real one. */
static int read_credential_socket(const char *const *envp, rc_runner_config *c, rc_error *err)
{
    if (env_get(envp, "ANTHROPIC_WORK_SECRET") || env_get(envp, "ANTHROPIC_ENVIRONMENT_KEY"))
        return rc_error_set(err, RC_EINVAL,
                            "RUNCELL_API_SOCKET is set (container mode) but a credential "
                            "(ANTHROPIC_WORK_SECRET or ANTHROPIC_ENVIRONMENT_KEY) is present too; "
                            "the broker injects the credential and none may enter the container");
    c->credential_kind = RC_RUNNER_CRED_PLACEHOLDER;
    return dup_into(&c->credential, RC_RUNNER_PLACEHOLDER_CREDENTIAL, err);
}

/* Outside a container: the sessions token from the secret, else the environment key (4.2). */
static int read_credential_host(const char *const *envp, rc_runner_config *c, rc_error *err)
{
    const char *secret = env_get(envp, "ANTHROPIC_WORK_SECRET");
    const char *key = env_get(envp, "ANTHROPIC_ENVIRONMENT_KEY");
    char *token = NULL;
    int r;

    if (!secret && !key)
        return rc_error_set(err, RC_EINVAL,
                            "neither ANTHROPIC_WORK_SECRET nor ANTHROPIC_ENVIRONMENT_KEY is set");
    if (secret) {
        r = rc_worksecret_decode(secret, RC_WORKSECRET_LEGACY, &token, NULL);
        if (r == 0) {
            c->credential = token;
            c->credential_kind = RC_RUNNER_CRED_SESSIONS_TOKEN;
            return 0;
        }
        if (r == -RC_ENOMEM)
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        c->secret_undecodable = true;
        if (!key)
            return rc_error_set(err, RC_EINVAL,
                                "ANTHROPIC_WORK_SECRET yields no sessions token and "
                                "ANTHROPIC_ENVIRONMENT_KEY is not set");
    }
    if (strpbrk(key, " \t\r\n"))
        return rc_error_set(err, RC_EINVAL, "ANTHROPIC_ENVIRONMENT_KEY contains whitespace");
    c->credential_kind = RC_RUNNER_CRED_ENVIRONMENT_KEY;
    return dup_into(&c->credential, key, err);
}

static int read_tool_ids(const char *const *envp, rc_runner_config *c, rc_error *err)
{
    const char *u = env_get(envp, "RUNCELL_TOOL_UID"), *g = env_get(envp, "RUNCELL_TOOL_GID");
    long long uid, gid;
    int r;

    if (!u && !g)
        return 0;
    if (!u || !g)
        return rc_error_set(err, RC_EINVAL, "RUNCELL_TOOL_UID and RUNCELL_TOOL_GID go together");
    /* (uid_t)-1 means "unchanged" to the set*id calls: refused. */
    if ((r = parse_ll("RUNCELL_TOOL_UID", u, 0, 4294967294LL, &uid, err)) < 0 ||
        (r = parse_ll("RUNCELL_TOOL_GID", g, 0, 4294967294LL, &gid, err)) < 0)
        return r;
    c->set_tool_ids = true;
    c->tool_uid = (uid_t)uid;
    c->tool_gid = (gid_t)gid;
    return 0;
}

static int read_log_level(const char *const *envp, rc_runner_config *c, rc_error *err)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    const char *v = env_get(envp, "RUNCELL_LOG_LEVEL");

    c->log_level = RC_LOG_INFO;
    if (!v)
        return 0;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(v, names[i]) == 0) {
            c->log_level = i;
            return 0;
        }
    return rc_error_set(err, RC_EINVAL, "RUNCELL_LOG_LEVEL must be debug, info, warn or error");
}

/* Memory stores (protocol 16): the sync interval, or "off"; the test-only delete delay. */
static int read_memory(const char *const *envp, rc_runner_config *c, rc_error *err)
{
    const char *iv = env_get(envp, "RUNCELL_MEMORY_SYNC_INTERVAL_MS");
    const char *dd = env_get(envp, "RUNCELL_MEMORY_DELETE_DELAY_MS");
    int r;

    c->memory_sync_interval_ms = 0;
    c->memory_delete_delay_ms = -1;
    if (iv && strcmp(iv, "off") == 0)
        c->memory_sync_interval_ms = -1;
    else if (iv &&
             (r = parse_ll("RUNCELL_MEMORY_SYNC_INTERVAL_MS", iv, 5000, RC_RUNNER_MAX_IDLE_MS_LIMIT,
                           &c->memory_sync_interval_ms, NULL)) < 0)
        return rc_error_set(err, RC_EINVAL,
                            "RUNCELL_MEMORY_SYNC_INTERVAL_MS must be \"off\" or an integer between "
                            "5000 and %lld",
                            (long long)RC_RUNNER_MAX_IDLE_MS_LIMIT);
    if (dd && (r = parse_ll("RUNCELL_MEMORY_DELETE_DELAY_MS", dd, 0, 30000,
                            &c->memory_delete_delay_ms, err)) < 0)
        return r;
    return 0;
}

static int read_local(const char *const *envp, rc_runner_config *c, rc_error *err)
{
    const char *workdir = env_get(envp, "RUNCELL_WORKDIR");
    const char *manifest = env_get(envp, "RUNCELL_TOOLS_MANIFEST");
    const char *idle = env_get(envp, "RUNCELL_MAX_IDLE_MS");
    int r;

    if (workdir && workdir[0] != '/')
        return rc_error_set(err, RC_EINVAL, "RUNCELL_WORKDIR must be an absolute path");
    if ((r = dup_into(&c->workdir, workdir ? workdir : RC_RUNNER_DEFAULT_WORKDIR, err)) < 0 ||
        (r = dup_into(&c->tools_manifest, manifest, err)) < 0)
        return r;
    c->max_idle_ms = RC_RUNNER_DEFAULT_MAX_IDLE_MS;
    if (idle && (r = parse_ll("RUNCELL_MAX_IDLE_MS", idle, -1, RC_RUNNER_MAX_IDLE_MS_LIMIT,
                              &c->max_idle_ms, err)) < 0)
        return r;
    if ((r = read_tool_ids(envp, c, err)) < 0 || (r = read_memory(envp, c, err)) < 0)
        return r;
    return read_log_level(envp, c, err);
}

int rc_runner_config_load(const char *const *envp, rc_runner_config *ret, rc_error *err)
{
    _cleanup_(rc_runner_config_clear) rc_runner_config c = {0};
    int r;

    if ((r = read_id(envp, "ANTHROPIC_ENVIRONMENT_ID", "env_", &c.environment_id, err)) < 0 ||
        (r = read_id(envp, "ANTHROPIC_WORK_ID", "work_", &c.work_id, err)) < 0 ||
        (r = read_id(envp, "ANTHROPIC_SESSION_ID", "sesn_", &c.session_id, err)) < 0 ||
        (r = read_endpoint(envp, &c, err)) < 0 || (r = read_local(envp, &c, err)) < 0)
        return r;
    r = c.api_socket ? read_credential_socket(envp, &c, err) : read_credential_host(envp, &c, err);
    if (r < 0)
        return r;
    *ret = c;
    c = (rc_runner_config){0};
    return 0;
}

void rc_runner_config_clear(rc_runner_config *c)
{
    if (!c)
        return;
    if (c->credential) {
        explicit_bzero(c->credential, strlen(c->credential));
        free(c->credential);
    }
    free(c->environment_id);
    free(c->work_id);
    free(c->session_id);
    free(c->base_url);
    free(c->api_socket);
    free(c->workdir);
    free(c->tools_manifest);
    *c = (rc_runner_config){0};
}

/* ---- scrubbing ---------------------------------------------------------------------------- */

int rc_runner_env_scrub(void)
{
    static const char *const prefixes[] = {"ANTHROPIC_"};
    return rc_env_scrub_prefixes(prefixes, sizeof prefixes / sizeof prefixes[0]);
}

/* ---- help --------------------------------------------------------------------------------- */

const char *rc_runner_config_help(void)
{
    return "usage: runcell-runner [--help]\n"
           "\n"
           "Serves one claimed work item of a Claude Managed Agents session: heartbeats the\n"
           "lease, fetches the session, opens the event stream, reconciles the history, runs the\n"
           "agent's tool calls (bash, read, write, edit, glob, grep and the manifest's custom\n"
           "tools) one at a time, posts each result, and force-stops the item at the end.\n"
           "Every input comes from the environment (empty values count as unset):\n"
           "\n"
           "  ANTHROPIC_ENVIRONMENT_ID   required; env_ followed by letters and digits\n"
           "  ANTHROPIC_WORK_ID          required; work_... (the acked work item)\n"
           "  ANTHROPIC_SESSION_ID       required; sesn_... (the item's session)\n"
           "  ANTHROPIC_BASE_URL         API base URL (default https://api.anthropic.com); with\n"
           "                             RUNCELL_API_SOCKET only the Host header\n"
           "  RUNCELL_API_SOCKET         absolute path of the broker's API channel (a unix\n"
           "                             socket): container mode. The runner then sends a fixed\n"
           "                             placeholder credential (the broker injects the real one)\n"
           "                             and refuses to start if any credential below is set\n"
           "  ANTHROPIC_WORK_SECRET      outside a container only: the work item's raw `secret`\n"
           "                             (base64url); its sessions_token is the credential\n"
           "  ANTHROPIC_ENVIRONMENT_KEY  outside a container only: fallback credential when\n"
           "                             there is no secret or it yields no token\n"
           "  RUNCELL_WORKDIR            tools' working directory (default /workspace)\n"
           "  RUNCELL_TOOLS_MANIFEST     custom tools manifest (JSON); unset or absent file =\n"
           "                             no custom tools; an invalid manifest is a start-up error\n"
           "  RUNCELL_MAX_IDLE_MS        exit this long after the session idles with a stop\n"
           "                             reason other than requires_action (default 60000;\n"
           "                             0 or -1 disables the idle exit)\n"
           "  RUNCELL_TOOL_UID           run tools as this uid (with RUNCELL_TOOL_GID; needs\n"
           "  RUNCELL_TOOL_GID           privileges); unset = the runner's own ids\n"
           "  RUNCELL_MEMORY_SYNC_INTERVAL_MS  memory store sync interval (default 15000,\n"
           "                             at least 5000), or off: no memory stores at all\n"
           "  RUNCELL_MEMORY_DELETE_DELAY_MS   test-only: how long a memory file must stay\n"
           "                             missing before its remote delete (0..30000)\n"
           "  RUNCELL_LOG_LEVEL          debug, info (default), warn or error\n"
           "\n"
           "Every ANTHROPIC_* variable is wiped from the runner's environment after it is read,\n"
           "so no tool process inherits one. Logs are JSON lines on stderr, one per tool call\n"
           "(tool, duration, is_error, output size), never containing a credential.\n"
           "SIGTERM/SIGINT: cancel the running tool, post its error result while the lease is\n"
           "held, force-stop the item, exit within 30 s.\n"
           "\n"
           "Exit status: 0 the run ended normally (idle, session terminated or deleted, stop\n"
           "requested by the server or a signal) and the item was released; 1 the run failed\n"
           "(session fetch, fatal stream or heartbeat error); 2 bad configuration or manifest\n"
           "(nothing was claimed); 3 the lease was lost (412 or no heartbeat within the TTL):\n"
           "the item was left alone, do not stop it.\n";
}
