/* config.h - runcell-runner's inputs, all read from the environment (issue 4, protocol 14.7).
 *
 * The launcher, the tests and a person at a shell drive the runner the same way: identifiers,
 * the API endpoint, the workdir, the tools manifest, the idle window, the tool user and (outside a
 * container only) a credential. Everything is validated before the runner touches the API: ids
 * must match the strict shapes of protocol 1.1.1, numbers are parsed with full checks, and a
 * missing or contradictory input is a start-up error naming the variable (never its value).
 *
 * Credentials. With RUNCELL_API_SOCKET the runner is inside a container and talks to the broker,
 * which injects the session's real token: the runner then sends a fixed placeholder, and refuses
 * to start if ANTHROPIC_WORK_SECRET or ANTHROPIC_ENVIRONMENT_KEY is present at all (no credential
 * may enter a container). Outside a container the credential is the sessions token decoded from
 * ANTHROPIC_WORK_SECRET (protocol 4.2), else ANTHROPIC_ENVIRONMENT_KEY (the SDK's fallback, 4.2.1).
 *
 * rc_runner_env_scrub() then wipes and removes every ANTHROPIC_* variable from the process's own
 * environment, so no child (bash, custom tools, rg) can inherit one. */
#ifndef RUNCELL_RUNNER_CONFIG_H
#define RUNCELL_RUNNER_CONFIG_H

#include "err.h"
#include "ids.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define RC_RUNNER_DEFAULT_WORKDIR     "/workspace"
#define RC_RUNNER_DEFAULT_BASE_URL    "https://api.anthropic.com"
#define RC_RUNNER_DEFAULT_MAX_IDLE_MS 60000LL
#define RC_RUNNER_MAX_IDLE_MS_LIMIT   (7LL * 24 * 3600 * 1000) /* a week */
#define RC_RUNNER_ID_MAX              RC_ID_MAX                /* characters of an id */
/* Sent in socket mode: the broker strips every Authorization header and injects the real one. */
#define RC_RUNNER_PLACEHOLDER_CREDENTIAL "runcell-broker-placeholder"

enum rc_runner_credential_kind {
    RC_RUNNER_CRED_PLACEHOLDER = 0, /* socket mode: the broker injects the credential */
    RC_RUNNER_CRED_SESSIONS_TOKEN,  /* decoded from ANTHROPIC_WORK_SECRET */
    RC_RUNNER_CRED_ENVIRONMENT_KEY, /* ANTHROPIC_ENVIRONMENT_KEY (fallback outside containers) */
};

typedef struct rc_runner_config {
    char *environment_id;  /* env_... */
    char *work_id;         /* work_... */
    char *session_id;      /* sesn_... */
    char *base_url;        /* http(s) URL; with api_socket only the Host header (may be NULL) */
    char *api_socket;      /* unix socket of the broker's API channel; NULL = TCP */
    char *credential;      /* bearer value; wiped by rc_runner_config_clear */
    int credential_kind;   /* enum rc_runner_credential_kind */
    char *workdir;         /* RUNCELL_WORKDIR, default /workspace */
    char *tools_manifest;  /* RUNCELL_TOOLS_MANIFEST; NULL = no custom tools */
    long long max_idle_ms; /* RUNCELL_MAX_IDLE_MS; <= 0 disables the idle exit */
    bool set_tool_ids;     /* RUNCELL_TOOL_UID and RUNCELL_TOOL_GID both given */
    uid_t tool_uid;
    gid_t tool_gid;
    int log_level; /* from RUNCELL_LOG_LEVEL (enum rc_log_level), default info */
    /* RUNCELL_MEMORY_SYNC_INTERVAL_MS: memory sync interval (>= 5000), 0 = the default (15 s),
     * -1 ("off") = memory stores disabled (protocol 14.3 steps 7 and 9 skipped). */
    long long memory_sync_interval_ms;
    /* RUNCELL_MEMORY_DELETE_DELAY_MS (test-only): how long a file must stay missing before its
     * remote delete goes out, 0..30000; -1 = the protocol's 30 s. */
    long long memory_delete_delay_ms;
    bool secret_undecodable; /* a work secret was given but yielded no token (logged as warning) */
} rc_runner_config;

/* Read the configuration from envp (a NULL-terminated "NAME=value" array, e.g. environ). Empty
 * values count as unset (protocol 4.3.1). On success *ret is filled (the caller clears it with
 * rc_runner_config_clear); on failure nothing is written and err names the variable. */
int rc_runner_config_load(const char *const *envp, rc_runner_config *ret, rc_error *err);

/* Wipe the credential and free every field. Safe on a zeroed struct. */
void rc_runner_config_clear(rc_runner_config *cfg);

/* Wipe the values of every ANTHROPIC_* variable in the process environment (the strings that
 * /proc/self/environ shows too) and unsetenv them. Returns how many were removed. */
int rc_runner_env_scrub(void);

/* The text `runcell-runner --help` prints. */
const char *rc_runner_config_help(void);

#endif
