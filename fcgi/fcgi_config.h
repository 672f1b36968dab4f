/* fcgi_config.h - runcell-fcgi's configuration, read from the environment (docs/FCGI.md).
 *
 * Reading works on an envp array, not on environ, so the rules are unit-tested without touching
 * the process environment; only rc_fcgi_env_scrub() works on the real one. Every error message
 * names the variable, never its value: two of the values are credentials (the environment key
 * and the webhook signing key). rc_fcgi_config_clear() wipes them. */
#ifndef RUNCELL_FCGI_CONFIG_H
#define RUNCELL_FCGI_CONFIG_H

#include "err.h"
#include "ids.h"

#include <stdbool.h>
#include <stddef.h>

#define RC_FCGI_DEFAULT_BASE_URL            "https://api.anthropic.com"
#define RC_FCGI_DEFAULT_WEBHOOK_PATH        "/webhook"
#define RC_FCGI_DEFAULT_LAUNCHER_SOCKET     "/run/runcell/launcher.sock"
#define RC_FCGI_DEFAULT_MAX_BODY            1048576 /* protocol 18.8.1 */
#define RC_FCGI_DEFAULT_THREADS             4
#define RC_FCGI_DEFAULT_DRAIN_CAP           25   /* protocol 14.2 step 9 */
#define RC_FCGI_DEFAULT_RECLAIM_MS          2000 /* protocol 5.2.2 */
#define RC_FCGI_DEFAULT_DRAIN_DEADLINE_MS   4000
#define RC_FCGI_DEFAULT_API_TIMEOUT_MS      5000
#define RC_FCGI_DEFAULT_LAUNCHER_TIMEOUT_MS 5000
#define RC_FCGI_DEFAULT_DEDUPE_ENTRIES      4096
#define RC_FCGI_DEFAULT_REDRAIN_MS          1000  /* re-drain interval; 0 = off */
#define RC_FCGI_DEFAULT_REDRAIN_IDLE_MS     30000 /* idle re-drain period; 0 = off */
#define RC_FCGI_DEFAULT_DEDUPE_TTL_S        3600
#define RC_FCGI_DEFAULT_SOCKET_MODE         0660
#define RC_FCGI_PATH_MAX                    256 /* webhook path and socket paths */
#define RC_FCGI_UNIX_PATH_MAX               107 /* sun_path minus the NUL */

typedef struct rc_fcgi_config {
    char *base_url;           /* ANTHROPIC_BASE_URL */
    char *api_socket;         /* RUNCELL_API_SOCKET: reach the API over this unix socket (tests) */
    char *environment_id;     /* ANTHROPIC_ENVIRONMENT_ID, env_[A-Za-z0-9]+ */
    char *environment_key;    /* ANTHROPIC_ENVIRONMENT_KEY (secret) */
    char *webhook_key;        /* ANTHROPIC_WEBHOOK_SIGNING_KEY, whsec_... (secret) */
    char *launcher_socket;    /* RUNCELL_LAUNCHER_SOCKET */
    char *webhook_path;       /* RUNCELL_WEBHOOK_PATH */
    char *socket_path;        /* RUNCELL_FCGI_SOCKET or --socket; NULL with socket activation */
    char *worker_id;          /* RUNCELL_WORKER_ID: Anthropic-Worker-ID on polls, NULL = none */
    char *ca_file;            /* RUNCELL_CA_FILE: extra CA bundle for the API */
    unsigned socket_mode;     /* RUNCELL_FCGI_SOCKET_MODE (octal) for a socket we create */
    size_t max_body;          /* RUNCELL_MAX_BODY */
    int threads;              /* RUNCELL_FCGI_THREADS */
    int drain_cap;            /* RUNCELL_DRAIN_MAX_ITEMS */
    long reclaim_ms;          /* RUNCELL_RECLAIM_OLDER_THAN_MS */
    long drain_deadline_ms;   /* RUNCELL_DRAIN_DEADLINE_MS */
    long api_timeout_ms;      /* RUNCELL_API_TIMEOUT_MS */
    long launcher_timeout_ms; /* RUNCELL_LAUNCHER_TIMEOUT_MS */
    size_t dedupe_entries;    /* RUNCELL_DEDUPE_ENTRIES */
    long dedupe_ttl_s;        /* RUNCELL_DEDUPE_TTL_SECONDS */
    long redrain_ms;          /* RUNCELL_REDRAIN_INTERVAL_MS: background re-drain, 0 = off */
    long redrain_idle_ms;     /* RUNCELL_REDRAIN_IDLE_MS: a round at least this often, 0 = off */
} rc_fcgi_config;

/* Read the configuration from envp (NULL-terminated "NAME=value" strings; empty values count as
 * unset). socket_arg is --socket's value (NULL when not given); it wins over RUNCELL_FCGI_SOCKET.
 * On failure *ret is untouched and nothing is leaked. */
int rc_fcgi_config_load(const char *const *envp, const char *socket_arg, rc_fcgi_config *ret,
                        rc_error *err);

/* Wipe the credentials and free everything; leaves *c zeroed. */
void rc_fcgi_config_clear(rc_fcgi_config *c);

/* Ids are checked with rc_id_valid (lib/ids.h); this is its length cap. */
#define RC_FCGI_ID_MAX RC_ID_MAX

/* Remove every ANTHROPIC_* and RUNCELL_* variable from the process environment (values wiped
 * first), so nothing started later could inherit a credential. Returns how many were removed. */
int rc_fcgi_env_scrub(void);

/* The --help text: every variable, its default and meaning. */
const char *rc_fcgi_config_help(void);

#endif
