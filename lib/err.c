/* err.c - the rc_error object: formatting failures into a bounded message. */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void error_vformat(rc_error *err, const char *fmt, va_list ap)
{
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    if (n < 0)
        err->msg[0] = '\0';
}

int rc_error_set(rc_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->sys_errno = 0;
        va_start(ap, fmt);
        error_vformat(err, fmt, ap);
        va_end(ap);
    }
    return -code;
}

int rc_error_sys(rc_error *err, int code, const char *fmt, ...)
{
    int saved = errno;
    if (err) {
        va_list ap;
        size_t len;
        char ebuf[128];
        err->code = code;
        err->sys_errno = saved;
        va_start(ap, fmt);
        error_vformat(err, fmt, ap);
        va_end(ap);
        len = strlen(err->msg);
        /* GNU strerror_r returns the message pointer (may not use ebuf). */
        snprintf(err->msg + len, sizeof err->msg - len, ": %s",
                 strerror_r(saved, ebuf, sizeof ebuf));
    }
    errno = saved;
    return -code;
}

int rc_error_wrap(rc_error *err, int fallback_code, const char *context)
{
    char old[RC_ERR_MSG_MAX];
    if (!err)
        return -fallback_code;
    if (err->code == 0)
        err->code = fallback_code;
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    if (snprintf(err->msg, sizeof err->msg, "%s: %s", context, old) < 0)
        err->msg[0] = '\0';
    return -err->code;
}

void rc_error_clear(rc_error *err)
{
    if (err) {
        err->code = 0;
        err->sys_errno = 0;
        err->msg[0] = '\0';
    }
}

const char *rc_errcode_name(int code)
{
    static const char *const names[RC_ERRCODE_MAX] = {
        [RC_OK] = "OK",
        [RC_EINVAL] = "EINVAL",
        [RC_ENOMEM] = "ENOMEM",
        [RC_ETOOBIG] = "ETOOBIG",
        [RC_EIO] = "EIO",
        [RC_EPARSE] = "EPARSE",
        [RC_EHTTP] = "EHTTP",
        [RC_ESTATUS] = "ESTATUS",
        [RC_ETIMEOUT] = "ETIMEOUT",
        [RC_ENOTFOUND] = "ENOTFOUND",
        [RC_EFATAL] = "EFATAL",
        [RC_ECANCELED] = "ECANCELED",
        [RC_EAUTH] = "EAUTH",
    };
    if (code < 0)
        code = -code;
    if (code >= RC_ERRCODE_MAX || !names[code])
        return "EUNKNOWN";
    return names[code];
}
