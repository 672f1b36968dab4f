/* json.h - strict, capped JSON parsing, typed getters and printing over cJSON.
 *
 * Everything runcell reads from the network (API responses, SSE data, webhook bodies, the work
 * secret) goes through rc_json_parse, which checks the text BEFORE cJSON sees it: a size cap, a
 * nesting-depth cap, strict RFC 8259 lexical rules (UTF-8 validity, no raw control characters in
 * strings, no NUL or "\u0000", no BOM, numbers and literals exactly as the grammar says, nothing
 * after the value) and then, on the tree, no duplicate keys and no number that overflows a double.
 * cJSON alone is lenient on all of these. (One cJSON limit remains: a number written with more
 * than 63 characters is refused.) Safe to call from several threads at once.
 *
 * Getters return borrowed pointers into the tree (valid until cJSON_Delete) and never write the
 * output on failure. Codes: -RC_ENOTFOUND for a missing required key, -RC_EINVAL for a wrong
 * type or value. The `_opt` variants return 1 when the key is present, 0 when it is missing or
 * JSON null (output untouched), negative for a wrong type. Error messages name the key, never
 * the value.
 *
 * Declare trees with `_cleanup_json_ cJSON *root = NULL;`. */
#ifndef RUNCELL_JSON_H
#define RUNCELL_JSON_H

#include "buf.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_JSON_DEFAULT_MAX_SIZE  ((size_t)1024 * 1024)
#define RC_JSON_DEFAULT_MAX_DEPTH 32u
/* Deepest nesting rc_json_parse accepts in a limits struct (cJSON's own nesting limit). */
#define RC_JSON_MAX_DEPTH_LIMIT 1000u

typedef struct rc_json_limits {
    size_t max_size;       /* bytes of text; longer input fails with -RC_ETOOBIG */
    unsigned max_depth;    /* nested arrays/objects: "{}" is 1, "[{}]" 2, a scalar 0 */
    bool allow_duplicates; /* false (strict): an object with a repeated key is rejected */
} rc_json_limits;

/* 1 MiB, depth 32, duplicate keys rejected. Used when rc_json_parse gets lim == NULL. */
extern const rc_json_limits rc_json_limits_default;

static inline void rc_json_freep(cJSON **p)
{
    if (*p)
        cJSON_Delete(*p);
}
#define _cleanup_json_ __attribute__((cleanup(rc_json_freep)))

/* Parse exactly len bytes of text (need not be NUL-terminated). On success *ret is a new tree the
 * caller owns. Fails with -RC_ETOOBIG (size or depth cap), -RC_EPARSE (not strict JSON),
 * -RC_ENOMEM, or -RC_EINVAL (bad limits). */
int rc_json_parse(const char *text, size_t len, const rc_json_limits *lim, cJSON **ret,
                  rc_error *err);

/* True when s[0..len) is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). */
bool rc_json_utf8_valid(const char *s, size_t len);

/* Typed getters; obj must be an object (else -RC_EINVAL). Keys are matched case-sensitively. */
int rc_json_get_string(const cJSON *obj, const char *key, const char **ret, rc_error *err);
int rc_json_get_string_opt(const cJSON *obj, const char *key, const char **ret, rc_error *err);
/* Integral numbers only (1.0 and 1e3 count; 1.5 does not), over the whole int64 range. A parsed
 * number is judged exactly from its source text (rc_json_parse keeps it in the node's valuestring,
 * which cJSON frees and otherwise ignores for numbers), so 9223372036854775807 reads exactly and
 * 1.0000000000000001 is refused. A number built in memory (cJSON_CreateNumber, or changed after
 * parsing) is a double and is accepted only within +-RC_JSON_INT_EXACT_MAX (2^53). */
int rc_json_get_int64(const cJSON *obj, const char *key, int64_t *ret, rc_error *err);
int rc_json_get_int64_opt(const cJSON *obj, const char *key, int64_t *ret, rc_error *err);
int rc_json_get_bool(const cJSON *obj, const char *key, bool *ret, rc_error *err);
int rc_json_get_bool_opt(const cJSON *obj, const char *key, bool *ret, rc_error *err);
int rc_json_get_object(const cJSON *obj, const char *key, const cJSON **ret, rc_error *err);
int rc_json_get_object_opt(const cJSON *obj, const char *key, const cJSON **ret, rc_error *err);
int rc_json_get_array(const cJSON *obj, const char *key, const cJSON **ret, rc_error *err);
int rc_json_get_array_opt(const cJSON *obj, const char *key, const cJSON **ret, rc_error *err);

#define RC_JSON_INT_EXACT_MAX ((int64_t)1 << 53)

/* Append the compact (unformatted) text of item to buf. -RC_ETOOBIG when it does not fit in the
 * buffer's max (buf unchanged), -RC_EINVAL when a string holds invalid UTF-8 (the output would
 * not be JSON), -RC_ENOMEM. Non-finite numbers print as null (cJSON's rule). */
int rc_json_print(const cJSON *item, rc_buf *buf, rc_error *err);

/* The standard error body (protocol 2.6.1):
 *   {"type":"error","error":{"type":T,"message":M,"details":{"error_code":C}},"request_id":R}
 * error_code and request_id may be NULL (then "details" / "request_id" are left out). */
int rc_json_error_body_build(const char *type, const char *message, const char *error_code,
                             const char *request_id, cJSON **ret, rc_error *err);
/* Same, printed compactly and appended to buf. */
int rc_json_error_body_write(rc_buf *buf, const char *type, const char *message,
                             const char *error_code, const char *request_id, rc_error *err);

/* The fields the HTTP client and the SSE "error" event use; each is "" when absent or not a
 * string, and cut (at a UTF-8 boundary) when longer than its buffer. */
typedef struct rc_json_error_info {
    char type[64];       /* error.type, e.g. "not_found_error" */
    char message[512];   /* error.message */
    char error_code[64]; /* error.details.error_code, e.g. "work_not_found" */
    char request_id[64]; /* request_id */
} rc_json_error_info;

/* Parse an error body (default limits). Succeeds when the text is JSON with an "error" object;
 * otherwise fails with rc_json_parse's code or -RC_EPARSE (for example an HTML page from a proxy,
 * or JSON without "error"), and the caller falls back on the status alone. */
int rc_json_error_body_parse(const char *text, size_t len, rc_json_error_info *ret, rc_error *err);

#endif
