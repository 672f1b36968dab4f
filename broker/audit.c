/* audit.c - the egress audit log (see audit.h): records become compact JSON through cJSON, the
 * line is redacted as a whole, then written with one write(2) on an O_APPEND descriptor. */
#include "audit.h"

#include "cleanup.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct rc_audit {
    int fd;
    bool owned;
    char *session_id;
};

int rc_audit_open(const char *path, const char *session_id, rc_audit **ret, rc_error *err)
{
    _cleanup_free_ rc_audit *a = calloc(1, sizeof *a);

    if (!a)
        return rc_error_set(err, RC_ENOMEM, "audit: out of memory");
    if (strcmp(path, "-") == 0) {
        a->fd = STDERR_FILENO;
    } else {
        a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
        if (a->fd < 0)
            return rc_error_sys(err, RC_EIO, "audit: cannot open %s", path);
        a->owned = true;
    }
    a->session_id = strdup(session_id ? session_id : "");
    if (!a->session_id) {
        if (a->owned)
            close(a->fd);
        return rc_error_set(err, RC_ENOMEM, "audit: out of memory");
    }
    *ret = take_ptr(a);
    return 0;
}

void rc_audit_close(rc_audit *a)
{
    if (!a)
        return;
    if (a->owned)
        close(a->fd);
    free(a->session_id);
    free(a);
}

static bool add_str(cJSON *o, const char *key, const char *v)
{
    return !v || cJSON_AddStringToObject(o, key, v) != NULL;
}

static bool add_num(cJSON *o, const char *key, double v)
{
    return cJSON_AddNumberToObject(o, key, v) != NULL;
}

static bool add_injected(cJSON *o, const rc_audit_record *rec)
{
    cJSON *a;
    if (!rec->n_injected)
        return true;
    a = cJSON_AddArrayToObject(o, "injected");
    if (!a)
        return false;
    for (size_t i = 0; i < rec->n_injected; i++) {
        cJSON *s = cJSON_CreateString(rec->injected[i]);
        if (!s)
            return false;
        cJSON_AddItemToArray(a, s);
    }
    return true;
}

static bool add_tool_calls(cJSON *o, const rc_audit_record *rec)
{
    cJSON *a;
    if (!rec->has_tool_calls)
        return true;
    a = cJSON_AddArrayToObject(o, "tool_calls");
    if (!a)
        return false;
    for (size_t i = 0; i < rec->n_tool_calls; i++) {
        cJSON *s = cJSON_CreateString(rec->tool_calls[i]);
        if (!s)
            return false;
        cJSON_AddItemToArray(a, s);
    }
    return true;
}

static cJSON *build(const char *session_id, const rc_audit_record *r)
{
    cJSON *o = cJSON_CreateObject();
    char ts[40];
    bool ok;

    if (!o)
        return NULL;
    rc_log_timestamp(ts, sizeof ts);
    ok = add_str(o, "ts", ts) && add_str(o, "session_id", session_id) &&
         add_str(o, "kind", r->kind) && add_str(o, "decision", r->decision) &&
         add_str(o, "reason", r->reason) && add_str(o, "rule", r->rule) &&
         add_str(o, "action", r->action) && add_injected(o, r) && add_tool_calls(o, r) &&
         add_str(o, "host", r->host) && (!r->port || add_num(o, "port", r->port)) &&
         add_str(o, "addr", r->addr) && add_str(o, "method", r->method) &&
         add_str(o, "path", r->path) && (!r->status || add_num(o, "status", r->status)) &&
         add_num(o, "bytes_up", (double)r->bytes_up) &&
         add_num(o, "bytes_down", (double)r->bytes_down) && add_str(o, "end", r->end) &&
         add_num(o, "duration_ms", (double)(r->duration_us / 100) / 10.0);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int rc_audit_format(const char *session_id, const rc_audit_record *rec, rc_buf *out, rc_error *err)
{
    _cleanup_json_ cJSON *o = build(session_id, rec);
    size_t start = out->len;
    int r;

    if (!o)
        return rc_error_set(err, RC_ENOMEM, "audit: out of memory");
    r = rc_json_print(o, out, err);
    if (r < 0)
        return r;
    rc_redact(out->data + start);
    out->len = start + strlen(out->data + start);
    return rc_buf_putc(out, '\n', err);
}

int rc_audit_write(rc_audit *a, const rc_audit_record *rec, rc_error *err)
{
    _cleanup_(rc_buf_free) rc_buf line = RC_BUF_INIT(RC_AUDIT_LINE_MAX);
    ssize_t n;
    int r;

    r = rc_audit_format(a->session_id, rec, &line, err);
    if (r < 0)
        return r;
    do {
        n = write(a->fd, line.data, line.len);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return rc_error_sys(err, RC_EIO, "audit: write failed");
    if ((size_t)n != line.len)
        return rc_error_set(err, RC_EIO, "audit: short write");
    return 0;
}

/* ---- the running tool calls ---- */

struct rc_audit_calls {
    pthread_mutex_t lock;
    rc_audit_call_ids set;
};

bool rc_audit_call_id_ok(const char *id, size_t len)
{
    if (!id || len == 0 || len > RC_AUDIT_CALL_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

int rc_audit_calls_new(rc_audit_calls **ret, rc_error *err)
{
    rc_audit_calls *s = calloc(1, sizeof *s);
    if (!s)
        return rc_error_set(err, RC_ENOMEM, "audit: out of memory");
    pthread_mutex_init(&s->lock, NULL);
    *ret = s;
    return 0;
}

void rc_audit_calls_free(rc_audit_calls *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void rc_audit_calls_set(rc_audit_calls *s, const rc_audit_call_ids *ids)
{
    pthread_mutex_lock(&s->lock);
    s->set = *ids;
    pthread_mutex_unlock(&s->lock);
}

void rc_audit_calls_get(rc_audit_calls *s, rc_audit_call_ids *ret)
{
    pthread_mutex_lock(&s->lock);
    *ret = s->set;
    pthread_mutex_unlock(&s->lock);
}
