/* log.c - JSON-lines logging with redaction (see log.h).
 *
 * Redaction runs on the message text before it is JSON-escaped, so a secret containing characters
 * that escaping would change is still found. Registered secrets live in a fixed table under a
 * mutex and are wiped when unregistered. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define REDACTED       "[REDACTED]"
#define CONTEXT_ID_MAX 128

static struct {
    char component[32];
    int level;
    int fd;
} log_cfg = {.component = "runcell", .level = RC_LOG_INFO, .fd = 2};

static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[RC_LOG_SECRETS_MAX];

static __thread char ctx_session[CONTEXT_ID_MAX];
static __thread char ctx_work[CONTEXT_ID_MAX];

static int level_from_name(const char *s, int fallback)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (s && strcasecmp(s, names[i]) == 0)
            return i;
    return fallback;
}

void rc_log_init(const char *component, int level, int fd)
{
    snprintf(log_cfg.component, sizeof log_cfg.component, "%s", component ? component : "runcell");
    log_cfg.level = level_from_name(getenv("RUNCELL_LOG_LEVEL"), level);
    if (fd >= 0)
        log_cfg.fd = fd;
}

int rc_log_register_secret(const char *value, rc_error *err)
{
    int r = rc_error_set(err, RC_ETOOBIG, "secret table full");
    if (!value || strlen(value) < RC_LOG_SECRET_MIN_LEN)
        return rc_error_set(err, RC_EINVAL, "secret too short to redact safely");
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < RC_LOG_SECRETS_MAX; i++) {
        if (secrets[i] && strcmp(secrets[i], value) == 0) {
            r = 0;
            break;
        }
        if (!secrets[i]) {
            secrets[i] = strdup(value);
            r = secrets[i] ? 0 : rc_error_set(err, RC_ENOMEM, "out of memory");
            break;
        }
    }
    pthread_mutex_unlock(&secrets_lock);
    if (r == 0)
        rc_error_clear(err);
    return r;
}

void rc_log_unregister_secret(const char *value)
{
    if (!value)
        return;
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < RC_LOG_SECRETS_MAX; i++) {
        if (secrets[i] && strcmp(secrets[i], value) == 0) {
            explicit_bzero(secrets[i], strlen(secrets[i]));
            free(secrets[i]);
            secrets[i] = NULL;
        }
    }
    pthread_mutex_unlock(&secrets_lock);
}

void rc_log_set_context(const char *session_id, const char *work_id)
{
    snprintf(ctx_session, sizeof ctx_session, "%s", session_id ? session_id : "");
    snprintf(ctx_work, sizeof ctx_work, "%s", work_id ? work_id : "");
}

/* Replace s[start, start+len) by REDACTED if that is not longer; otherwise by '*'s. */
static size_t redact_span(char *s, size_t start, size_t len)
{
    size_t rl = strlen(REDACTED), tail = strlen(s + start + len);
    if (len >= rl) {
        memcpy(s + start, REDACTED, rl);
        memmove(s + start + rl, s + start + len, tail + 1);
        return rl;
    }
    memset(s + start, '*', len);
    return len;
}

static int is_token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '+' || c == '/' || c == '=' || c == '.' || c == '~';
}

/* Redact the token that follows each occurrence of prefix (the prefix itself is kept). */
static void redact_after_prefix(char *s, const char *prefix, int case_insensitive)
{
    size_t plen = strlen(prefix);
    char *p = s;
    while ((p = case_insensitive ? strcasestr(p, prefix) : strstr(p, prefix)) != NULL) {
        size_t start = (size_t)(p - s) + plen, n = 0;
        while (is_token_char(s[start + n]))
            n++;
        if (n == 0) {
            p += plen;
            continue;
        }
        p = s + start + redact_span(s, start, n);
    }
}

static void redact_registered(char *s)
{
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < RC_LOG_SECRETS_MAX; i++) {
        char *p;
        if (!secrets[i])
            continue;
        for (p = s; (p = strstr(p, secrets[i])) != NULL;)
            p += redact_span(s, (size_t)(p - s), strlen(secrets[i]));
    }
    pthread_mutex_unlock(&secrets_lock);
}

void rc_redact(char *s)
{
    redact_registered(s);
    redact_after_prefix(s, "sk-ant-", 0);
    redact_after_prefix(s, "whsec_", 0);
    redact_after_prefix(s, "Bearer ", 1);
}

/* Append s JSON-escaped to out[*pos..outsz); stops (keeping room for the closing) when full. */
static void json_escape_into(char *out, size_t outsz, size_t *pos, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[7] = {0};
        size_t n;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
        } else {
            esc[0] = (char)c;
        }
        n = strlen(esc);
        if (*pos + n + 8 >= outsz) { /* keep room for `..."}\n` */
            memcpy(out + *pos, "...", 3);
            *pos += 3;
            return;
        }
        memcpy(out + *pos, esc, n);
        *pos += n;
    }
}

static void append_raw(char *out, size_t outsz, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n < outsz) {
        memcpy(out + *pos, s, n);
        *pos += n;
    }
}

void rc_log_timestamp(char *ts, size_t tssz)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, tssz, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
}

int rc_log_format(char *out, size_t outsz, int level, const char *msg)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char ts[40], head[256];
    size_t pos = 0;

    if (outsz < 512)
        return -RC_EINVAL;
    if (level < RC_LOG_DEBUG || level > RC_LOG_ERROR)
        level = RC_LOG_ERROR;
    rc_log_timestamp(ts, sizeof ts);
    snprintf(head, sizeof head, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", ts,
             names[level]);
    append_raw(out, outsz, &pos, head);
    json_escape_into(out, outsz / 4, &pos, log_cfg.component);
    append_raw(out, outsz, &pos, "\"");
    if (ctx_session[0]) {
        append_raw(out, outsz, &pos, ",\"session_id\":\"");
        json_escape_into(out, outsz / 2, &pos, ctx_session);
        append_raw(out, outsz, &pos, "\"");
    }
    if (ctx_work[0]) {
        append_raw(out, outsz, &pos, ",\"work_id\":\"");
        json_escape_into(out, outsz / 2, &pos, ctx_work);
        append_raw(out, outsz, &pos, "\"");
    }
    append_raw(out, outsz, &pos, ",\"msg\":\"");
    json_escape_into(out, outsz - 4, &pos, msg);
    memcpy(out + pos, "\"}\n", 4);
    return (int)(pos + 3);
}

/* Format the whole message, redact it, and only then cut it to RC_LOG_LINE_MAX: cutting first
 * could split a secret so that the redaction pass no longer recognises the part that remains. */
static char *format_redacted_message(const char *fmt, va_list ap)
{
    static const char too_long[] = "[log message too long to redact safely; dropped]";
    va_list ap2;
    char *msg;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || (size_t)n > RC_LOG_MESSAGE_MAX)
        return strdup(too_long);
    msg = malloc((size_t)n + 1);
    if (!msg)
        return NULL;
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    rc_redact(msg);
    if (strlen(msg) > RC_LOG_LINE_MAX)
        memcpy(msg + RC_LOG_LINE_MAX - 3, "...", 4);
    return msg;
}

void rc_log(int level, const char *fmt, ...)
{
    char line[RC_LOG_LINE_MAX + 1024];
    char *msg;
    va_list ap;
    int n;

    if (level < log_cfg.level)
        return;
    va_start(ap, fmt);
    msg = format_redacted_message(fmt, ap);
    va_end(ap);
    if (!msg)
        return;
    n = rc_log_format(line, sizeof line, level, msg);
    free(msg);
    if (n > 0) {
        ssize_t w = write(log_cfg.fd, line, (size_t)n);
        (void)w;
    }
}
