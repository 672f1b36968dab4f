/* log.h - JSON-lines logging with secret redaction.
 *
 * One line per call on stderr (or the fd given to rc_log_init):
 *   {"ts":"2026-11-23T17:42:12.123Z","level":"info","component":"fcgi",
 *    "session_id":"sesn_..","work_id":"work_..","msg":"..."}
 * session_id/work_id come from the calling thread's context (rc_log_set_context) and are
 * omitted when unset. Before a line is written, every registered secret value and every
 * `sk-ant-...`, `whsec_...` and `Bearer ...` token in the message is replaced by [REDACTED].
 * Lines are written with a single write(2), so concurrent threads never interleave. */
#ifndef RUNCELL_LOG_H
#define RUNCELL_LOG_H

#include "err.h"

#include <stddef.h>

enum rc_log_level { RC_LOG_DEBUG = 0, RC_LOG_INFO, RC_LOG_WARN, RC_LOG_ERROR };

#define RC_LOG_LINE_MAX       8192      /* a longer message is truncated (marked with "...") */
#define RC_LOG_MESSAGE_MAX    (1 << 20) /* longer messages are dropped, never cut unredacted */
#define RC_LOG_SECRETS_MAX    64        /* registered secret values at one time */
#define RC_LOG_SECRET_MIN_LEN 6         /* shorter values would redact ordinary words: refused */

/* component: short name ("fcgi", "runner"...); level: minimum level written; fd: where lines go
 * (-1 keeps stderr). RUNCELL_LOG_LEVEL (debug|info|warn|error) overrides level when set. */
void rc_log_init(const char *component, int level, int fd);

/* Register a secret value so it is redacted from every later line; the value is copied.
 * Returns -RC_EINVAL for a value shorter than RC_LOG_SECRET_MIN_LEN, -RC_ETOOBIG when full. */
int rc_log_register_secret(const char *value, rc_error *err);
void rc_log_unregister_secret(const char *value);

/* Per-thread context (copied; NULL clears). */
void rc_log_set_context(const char *session_id, const char *work_id);

void rc_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rc_log_debug(...) rc_log(RC_LOG_DEBUG, __VA_ARGS__)
#define rc_log_info(...)  rc_log(RC_LOG_INFO, __VA_ARGS__)
#define rc_log_warn(...)  rc_log(RC_LOG_WARN, __VA_ARGS__)
#define rc_log_error(...) rc_log(RC_LOG_ERROR, __VA_ARGS__)

/* RFC 3339 UTC timestamp with milliseconds ("2026-11-23T17:42:12.123Z"), as in log lines; for
 * audit records and other JSON lines that sit beside them. */
void rc_log_timestamp(char *out, size_t outsz);

/* Redact s in place (same rules as the log lines); the result is never longer than s.
 * Exposed so error messages and audit lines can use the same pass. */
void rc_redact(char *s);

/* Format one complete log line (with trailing newline) into out; used by rc_log and by tests.
 * Returns the line length, or a negative RC_E* code. */
int rc_log_format(char *out, size_t outsz, int level, const char *msg);

#endif
