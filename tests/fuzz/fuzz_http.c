/* fuzz_http.c - the HTTP client's parsers of server-controlled text: retry-after-ms /
 * retry-after header values (seconds, floats, HTTP dates) and the percent-encoder used for
 * outside identifiers in paths and queries. Invariants: the delay is never negative and never
 * above 2^31-1 ms; an encoded segment holds only unreserved characters and %XX escapes. */
#include "buf.h"
#include "cleanup.h"
#include "http.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static double fixed_rand(void *ctx)
{
    (void)ctx;
    return 0.5;
}

static int is_unreserved(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static void check_delay(const char *a, const char *b, int n)
{
    int64_t d = rc_http_retry_delay_ms(n, a, b, 1700000000, fixed_rand, NULL);
    if (d < 0 || d > INT32_MAX)
        abort();
}

static void check_encoding(const char *s)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(1 << 20);
    if (rc_http_percent_encode(&out, s, false, NULL) < 0)
        return;
    for (size_t i = 0; i < out.len; i++) {
        char c = out.data[i];
        if (c == '%') {
            if (i + 2 >= out.len || !isxdigit((unsigned char)out.data[i + 1]) ||
                !isxdigit((unsigned char)out.data[i + 2]))
                abort();
            i += 2;
        } else if (!is_unreserved(c)) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *split;
    _cleanup_(rc_buf_free) rc_buf path = RC_BUF_INIT(1 << 20);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    /* First NUL-free part as retry-after-ms, the rest after a '|' as retry-after. */
    split = strchr(text, '|');
    if (split)
        *split++ = '\0';
    check_delay(text, split, (int)(size % 8));
    check_delay(NULL, text, 0);
    check_encoding(text);
    if (rc_http_path_add_segment(&path, text, NULL) == 0 &&
        (strcmp(text, "..") == 0 || strcmp(text, ".") == 0 || text[0] == '\0'))
        abort();
    free(text);
    return 0;
}
