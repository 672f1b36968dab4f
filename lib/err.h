/* err.h - runcell's error convention, shared by every module.
 *
 * Every fallible function returns int: 0 (or a non-negative count) on success, a negative
 * RC_E* code on failure. It also fills an optional rc_error with a human-readable message, so
 * callers that only branch on the code can pass NULL. Messages never contain secrets: callers
 * describe *what* failed, never the value that failed. */
#ifndef RUNCELL_ERR_H
#define RUNCELL_ERR_H

#include <stddef.h>

enum rc_errcode {
    RC_OK = 0,
    RC_EINVAL = 1,   /* bad argument or malformed input */
    RC_ENOMEM = 2,   /* allocation failed */
    RC_ETOOBIG = 3,  /* input or output exceeds its cap */
    RC_EIO = 4,      /* system call failed (errno in rc_error.sys_errno) */
    RC_EPARSE = 5,   /* input is not valid for its grammar */
    RC_EHTTP = 6,    /* HTTP transport failure (connect, timeout, TLS) */
    RC_ESTATUS = 7,  /* HTTP response with a non-2xx status */
    RC_ETIMEOUT = 8, /* deadline passed */
    RC_ENOTFOUND = 9,
    RC_EFATAL = 10, /* non-retryable protocol failure (fatal 4xx) */
    RC_ECANCELED = 11,
    RC_EAUTH = 12, /* authentication or signature failure (see the module for sub-codes) */
    RC_ERRCODE_MAX
};

#define RC_ERR_MSG_MAX 256

typedef struct rc_error {
    int code;      /* positive RC_E* value of the failure, 0 when unset */
    int sys_errno; /* errno at the failure, 0 when not a system call failure */
    char msg[RC_ERR_MSG_MAX];
} rc_error;

/* Fill err (if non-NULL) and return -code. The message is formatted with vsnprintf and
 * truncated to RC_ERR_MSG_MAX. */
int rc_error_set(rc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Same as rc_error_set, recording errno (captured before formatting) and appending strerror. */
int rc_error_sys(rc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing error's message with context ("while X: <old message>"); returns -err->code
 * (or -fallback_code when err is NULL or unset). */
int rc_error_wrap(rc_error *err, int fallback_code, const char *context);

void rc_error_clear(rc_error *err);

/* Static name of a code ("EINVAL", ...) for logs and tests. */
const char *rc_errcode_name(int code);

#endif
