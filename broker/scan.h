/* scan.h - finding an injected credential in a response (reflection defence, issue 11).
 *
 * An upstream that echoes request headers (httpbin's /headers, debug pages, error pages that quote
 * the request) would hand a transform's credential straight back to the agent. The proxy therefore
 * scans every response to a request that carried an injected value, headers and body, for that
 * value in the encodings a reflection plausibly uses:
 *   - raw, and its credential part after an auth scheme ("Bearer X" -> "X");
 *   - percent-encoded (upper- and lowercase hex, and '+' for space);
 *   - JSON-escaped ('/' as "\/", '"' and '\' escaped);
 *   - base64 and base64url at each of the three byte alignments (so a value embedded anywhere in a
 *     larger base64 blob, as in a Basic auth echo, is still found: the characters that depend only
 *     on the value's own bytes are searched).
 * Needles shorter than RC_SCAN_MIN_LEN are dropped (they would match ordinary text).
 *
 * Streaming: the caller scans a window that overlaps the previous one by rc_scan_holdback() bytes
 * and must not release those last bytes to the client until more data arrived or the stream
 * ended, so a needle split across two reads is still seen before any of it leaves. Compressed or
 * chunk-split reflections are not decoded (the proxy asks for `Accept-Encoding: identity` on
 * requests it injects into). */
#ifndef RUNCELL_BROKER_SCAN_H
#define RUNCELL_BROKER_SCAN_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>

#define RC_SCAN_MIN_LEN     8u
#define RC_SCAN_NEEDLES_MAX 512u

typedef struct rc_scan {
    char **needles;
    size_t *lens;
    size_t n;
    size_t max_len;
} rc_scan;

/* Build the needles for n secret values (NUL-terminated). An rc_scan with no needles (every value
 * too short) is valid and finds nothing. */
int rc_scan_init(rc_scan *s, const char *const *values, size_t n, rc_error *err);
void rc_scan_free(rc_scan *s);
/* True when data[0..len) contains any needle. */
bool rc_scan_find(const rc_scan *s, const char *data, size_t len);
/* Bytes at the end of a scanned window that must be held back (max needle length - 1). */
size_t rc_scan_holdback(const rc_scan *s);

#endif
