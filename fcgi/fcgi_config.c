/* fcgi_config.c - runcell-fcgi's environment inputs (see fcgi_config.h for the contract).
 *
 * Each input has one small reader; rc_fcgi_config_load() runs them in order into a local
 * struct and hands it over only when all of them passed, so a failure never leaves a half-filled
 * configuration behind. Messages name variables, never values. */
#include "fcgi_config.h"

#include "cleanup.h"
#include "envscrub.h"
#include "webhook.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- lookup and small parsers -------------------------------------------------------------- */

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

/* Decimal integer in [lo, hi], the whole value; absent = dflt. */
static int read_ll(const char *const *envp, const char *name, long long lo, long long hi,
                   long long dflt, long long *ret, rc_error *err)
{
    const char *v = env_get(envp, name);
    char *end = NULL;
    long long x;

    if (!v) {
        *ret = dflt;
        return 0;
    }
    errno = 0;
    x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi || v[0] == ' ' || v[0] == '+')
        return rc_error_set(err, RC_EINVAL, "%s must be an integer between %lld and %lld", name, lo,
                            hi);
    *ret = x;
    return 0;
}

static bool has_space_or_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* ---- the pieces ---------------------------------------------------------------------------- */

static int read_endpoint(const char *const *envp, rc_fcgi_config *c, rc_error *err)
{
    const char *url = env_get(envp, "ANTHROPIC_BASE_URL");
    const char *sock = env_get(envp, "RUNCELL_API_SOCKET");
    const char *ca = env_get(envp, "RUNCELL_CA_FILE");
    int r;

    if (url && strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return rc_error_set(err, RC_EINVAL,
                            "ANTHROPIC_BASE_URL must be an http:// or https:// URL");
    if (url && has_space_or_ctl(url))
        return rc_error_set(err, RC_EINVAL, "ANTHROPIC_BASE_URL contains whitespace");
    if (sock && (sock[0] != '/' || strlen(sock) > RC_FCGI_UNIX_PATH_MAX))
        return rc_error_set(err, RC_EINVAL,
                            "RUNCELL_API_SOCKET must be an absolute path of at most %d bytes",
                            RC_FCGI_UNIX_PATH_MAX);
    if (!url && !sock)
        url = RC_FCGI_DEFAULT_BASE_URL;
    if ((r = dup_into(&c->base_url, url, err)) < 0 ||
        (r = dup_into(&c->api_socket, sock, err)) < 0 || (r = dup_into(&c->ca_file, ca, err)) < 0)
        return r;
    return 0;
}

static int read_identity(const char *const *envp, rc_fcgi_config *c, rc_error *err)
{
    const char *env = env_get(envp, "ANTHROPIC_ENVIRONMENT_ID");
    const char *key = env_get(envp, "ANTHROPIC_ENVIRONMENT_KEY");
    const char *wid = env_get(envp, "RUNCELL_WORKER_ID");
    int r;

    if (!env)
        return rc_error_set(err, RC_EINVAL, "ANTHROPIC_ENVIRONMENT_ID is not set");
    if (!rc_id_valid(env, "env_"))
        return rc_error_set(err, RC_EINVAL,
                            "ANTHROPIC_ENVIRONMENT_ID is not a valid id (env_ followed by "
                            "letters and digits)");
    if (!key)
        return rc_error_set(err, RC_EINVAL, "ANTHROPIC_ENVIRONMENT_KEY is not set");
    if (has_space_or_ctl(key))
        return rc_error_set(err, RC_EINVAL,
                            "ANTHROPIC_ENVIRONMENT_KEY contains whitespace or control characters");
    if (wid && (strlen(wid) > 128 || has_space_or_ctl(wid)))
        return rc_error_set(err, RC_EINVAL,
                            "RUNCELL_WORKER_ID must be at most 128 visible characters");
    if ((r = dup_into(&c->environment_id, env, err)) < 0 ||
        (r = dup_into(&c->environment_key, key, err)) < 0 ||
        (r = dup_into(&c->worker_id, wid, err)) < 0)
        return r;
    return 0;
}

static int read_webhook(const char *const *envp, rc_fcgi_config *c, rc_error *err)
{
    const char *key = env_get(envp, "ANTHROPIC_WEBHOOK_SIGNING_KEY");
    const char *path = env_get(envp, "RUNCELL_WEBHOOK_PATH");
    long long max_body;
    int r;

    if (!key)
        return rc_error_set(err, RC_EINVAL, "ANTHROPIC_WEBHOOK_SIGNING_KEY is not set");
    if (rc_webhook_key_check(key, NULL) < 0)
        return rc_error_set(err, RC_EINVAL,
                            "ANTHROPIC_WEBHOOK_SIGNING_KEY is not a usable key (whsec_ followed "
                            "by base64)");
    if (!path)
        path = RC_FCGI_DEFAULT_WEBHOOK_PATH;
    if (path[0] != '/' || strlen(path) > RC_FCGI_PATH_MAX || has_space_or_ctl(path) ||
        strchr(path, '?') || strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0)
        return rc_error_set(err, RC_EINVAL,
                            "RUNCELL_WEBHOOK_PATH must be an absolute path without spaces or "
                            "'?', other than /healthz and /metrics");
    if ((r = read_ll(envp, "RUNCELL_MAX_BODY", 1, 64LL * 1024 * 1024, RC_FCGI_DEFAULT_MAX_BODY,
                     &max_body, err)) < 0)
        return r;
    c->max_body = (size_t)max_body;
    if ((r = dup_into(&c->webhook_key, key, err)) < 0 ||
        (r = dup_into(&c->webhook_path, path, err)) < 0)
        return r;
    return 0;
}

static int read_sockets(const char *const *envp, const char *socket_arg, rc_fcgi_config *c,
                        rc_error *err)
{
    const char *launcher = env_get(envp, "RUNCELL_LAUNCHER_SOCKET");
    const char *sock =
        socket_arg && *socket_arg ? socket_arg : env_get(envp, "RUNCELL_FCGI_SOCKET");
    const char *mode = env_get(envp, "RUNCELL_FCGI_SOCKET_MODE");
    int r;

    if (!launcher)
        launcher = RC_FCGI_DEFAULT_LAUNCHER_SOCKET;
    if (launcher[0] != '/' || strlen(launcher) > RC_FCGI_UNIX_PATH_MAX)
        return rc_error_set(err, RC_EINVAL,
                            "RUNCELL_LAUNCHER_SOCKET must be an absolute path of at most %d bytes",
                            RC_FCGI_UNIX_PATH_MAX);
    if (sock && (strlen(sock) > RC_FCGI_UNIX_PATH_MAX || sock[0] == '\0'))
        return rc_error_set(err, RC_EINVAL, "the FastCGI socket path is longer than %d bytes",
                            RC_FCGI_UNIX_PATH_MAX);
    c->socket_mode = RC_FCGI_DEFAULT_SOCKET_MODE;
    if (mode) {
        char *end = NULL;
        errno = 0;
        unsigned long m = strtoul(mode, &end, 8);
        if (errno || end == mode || *end || m > 0777 || mode[0] == '-' || mode[0] == '+')
            return rc_error_set(err, RC_EINVAL,
                                "RUNCELL_FCGI_SOCKET_MODE must be an octal mode such as 0660");
        c->socket_mode = (unsigned)m;
    }
    if ((r = dup_into(&c->launcher_socket, launcher, err)) < 0 ||
        (r = dup_into(&c->socket_path, sock, err)) < 0)
        return r;
    return 0;
}

static int read_tuning(const char *const *envp, rc_fcgi_config *c, rc_error *err)
{
    long long threads, cap, reclaim, deadline, api_to, launcher_to, entries, ttl, redrain, idle;
    int r;

    if ((r = read_ll(envp, "RUNCELL_FCGI_THREADS", 1, 256, RC_FCGI_DEFAULT_THREADS, &threads,
                     err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_DRAIN_MAX_ITEMS", 1, 1000, RC_FCGI_DEFAULT_DRAIN_CAP, &cap,
                     err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_RECLAIM_OLDER_THAN_MS", 1, 3600000, RC_FCGI_DEFAULT_RECLAIM_MS,
                     &reclaim, err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_DRAIN_DEADLINE_MS", 0, 600000,
                     RC_FCGI_DEFAULT_DRAIN_DEADLINE_MS, &deadline, err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_API_TIMEOUT_MS", 100, 600000, RC_FCGI_DEFAULT_API_TIMEOUT_MS,
                     &api_to, err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_LAUNCHER_TIMEOUT_MS", 100, 600000,
                     RC_FCGI_DEFAULT_LAUNCHER_TIMEOUT_MS, &launcher_to, err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_DEDUPE_ENTRIES", 16, 1000000, RC_FCGI_DEFAULT_DEDUPE_ENTRIES,
                     &entries, err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_DEDUPE_TTL_SECONDS", 1, 7 * 86400, RC_FCGI_DEFAULT_DEDUPE_TTL_S,
                     &ttl, err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_REDRAIN_INTERVAL_MS", 0, 600000, RC_FCGI_DEFAULT_REDRAIN_MS,
                     &redrain, err)) < 0 ||
        (r = read_ll(envp, "RUNCELL_REDRAIN_IDLE_MS", 0, 3600000, RC_FCGI_DEFAULT_REDRAIN_IDLE_MS,
                     &idle, err)) < 0)
        return r;
    c->threads = (int)threads;
    c->drain_cap = (int)cap;
    c->reclaim_ms = (long)reclaim;
    c->drain_deadline_ms = (long)deadline;
    c->api_timeout_ms = (long)api_to;
    c->launcher_timeout_ms = (long)launcher_to;
    c->dedupe_entries = (size_t)entries;
    c->dedupe_ttl_s = (long)ttl;
    c->redrain_ms = (long)redrain;
    c->redrain_idle_ms = (long)idle;
    return 0;
}

int rc_fcgi_config_load(const char *const *envp, const char *socket_arg, rc_fcgi_config *ret,
                        rc_error *err)
{
    rc_fcgi_config c = {0};
    int r;

    if ((r = read_endpoint(envp, &c, err)) < 0 || (r = read_identity(envp, &c, err)) < 0 ||
        (r = read_webhook(envp, &c, err)) < 0 ||
        (r = read_sockets(envp, socket_arg, &c, err)) < 0 || (r = read_tuning(envp, &c, err)) < 0) {
        rc_fcgi_config_clear(&c);
        return r;
    }
    *ret = c;
    return 0;
}

static void free_secret(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
    free(s);
}

void rc_fcgi_config_clear(rc_fcgi_config *c)
{
    free_secret(c->environment_key);
    free_secret(c->webhook_key);
    free(c->base_url);
    free(c->api_socket);
    free(c->environment_id);
    free(c->launcher_socket);
    free(c->webhook_path);
    free(c->socket_path);
    free(c->worker_id);
    free(c->ca_file);
    *c = (rc_fcgi_config){0};
}

/* ---- scrubbing ---------------------------------------------------------------------------- */

int rc_fcgi_env_scrub(void)
{
    static const char *const prefixes[] = {"ANTHROPIC_", "RUNCELL_"};
    return rc_env_scrub_prefixes(prefixes, sizeof prefixes / sizeof prefixes[0]);
}

/* ---- help --------------------------------------------------------------------------------- */

const char *rc_fcgi_config_help(void)
{
    return "usage: runcell-fcgi [--socket PATH] [--help]\n"
           "\n"
           "FastCGI responder for Managed Agents webhooks (behind nginx). It verifies each\n"
           "delivery, drains the environment's work queue and hands every claimed session to\n"
           "runcell-launcher. See docs/FCGI.md.\n"
           "\n"
           "Listening socket: the one passed by systemd socket activation (LISTEN_FDS=1,\n"
           "LISTEN_PID, fd 3), else a unix socket of its own at --socket PATH or\n"
           "RUNCELL_FCGI_SOCKET.\n"
           "\n"
           "  --socket PATH    create and listen on this unix socket (mode "
           "RUNCELL_FCGI_SOCKET_MODE)\n"
           "  -h, --help       this text\n"
           "\n"
           "Environment (empty values count as unset):\n"
           "  ANTHROPIC_ENVIRONMENT_ID        required; env_ followed by letters and digits\n"
           "  ANTHROPIC_ENVIRONMENT_KEY       required; the environment key (poll, ack, stop);\n"
           "                                  never logged, never passed on\n"
           "  ANTHROPIC_WEBHOOK_SIGNING_KEY   required; the webhook signing secret (whsec_...)\n"
           "  ANTHROPIC_BASE_URL              API base URL (default https://api.anthropic.com)\n"
           "  RUNCELL_API_SOCKET              reach the API over this unix socket instead\n"
           "  RUNCELL_CA_FILE                 CA bundle for the API connection, instead of the\n"
           "                                  system store\n"
           "  RUNCELL_LAUNCHER_SOCKET         launcher hand-off socket\n"
           "                                  (default /run/runcell/launcher.sock)\n"
           "  RUNCELL_WEBHOOK_PATH            webhook route (default /webhook)\n"
           "  RUNCELL_MAX_BODY                request body cap in bytes (default 1048576; 413 "
           "above)\n"
           "  RUNCELL_FCGI_SOCKET             same as --socket\n"
           "  RUNCELL_FCGI_SOCKET_MODE        octal mode of a socket runcell-fcgi creates\n"
           "                                  (default 0660)\n"
           "  RUNCELL_FCGI_THREADS            worker threads (default 4)\n"
           "  RUNCELL_DRAIN_MAX_ITEMS         work items taken per delivery (default 25)\n"
           "  RUNCELL_RECLAIM_OLDER_THAN_MS   poll's reclaim_older_than_ms (default 2000)\n"
           "  RUNCELL_DRAIN_DEADLINE_MS       stop claiming after this long in one delivery\n"
           "                                  (default 4000; 0 = no deadline)\n"
           "  RUNCELL_API_TIMEOUT_MS          per-attempt API timeout (default 5000)\n"
           "  RUNCELL_LAUNCHER_TIMEOUT_MS     launcher round-trip timeout (default 5000)\n"
           "  RUNCELL_DEDUPE_ENTRIES          webhook ids remembered (default 4096)\n"
           "  RUNCELL_DEDUPE_TTL_SECONDS      how long a handled id is remembered (default 3600)\n"
           "  RUNCELL_REDRAIN_INTERVAL_MS     background re-drain while work may be queued\n"
           "                                  (launcher full, cap, deadline, failure; default\n"
           "                                  1000; 0 = off)\n"
           "  RUNCELL_REDRAIN_IDLE_MS         and at least this often with a free slot, for work\n"
           "                                  queued again without a webhook (a lease that\n"
           "                                  expired; default 30000; 0 = never)\n"
           "  RUNCELL_WORKER_ID               Anthropic-Worker-ID sent on polls (default none)\n"
           "  RUNCELL_LOG_LEVEL               debug|info|warn|error (default info)\n"
           "\n"
           "Every ANTHROPIC_* and RUNCELL_* variable (and LISTEN_*) is removed from the process\n"
           "environment once read. Both keys are registered for log redaction.\n"
           "\n"
           "Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 on a runtime failure,\n"
           "2 on a usage or configuration error.\n";
}
