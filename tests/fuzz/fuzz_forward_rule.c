/* fuzz_forward_rule.c - libFuzzer target for what issue 11 added on the parsing side:
 * forwardURL values (rc_policy_forward_url_parse), requests read inside an intercepted tunnel
 * (rc_httpreq_parse_origin) and the reflection scanner (rc_scan).
 *
 * Input: byte 0 selects the target; the rest is the data.
 * Checks (abort on violation):
 *   - forwardURL: an accepted URL starts with https://, has a valid lowercase host (name or IP),
 *     a port in 1..65535 and a path starting with '/', no '?' or '#', no userinfo; a refused one
 *     leaves no field set;
 *   - tunnel request: returns 1, 0 or a negative code with a status in {400, 405, 431, 501}; an
 *     accepted one is origin form for the tunnel's host and port, has a Host header, and its
 *     path starts with '/';
 *   - scan: the data split at '\n' are values; each value of 8+ bytes is found in a text that
 *     embeds it, and the scanner never reads outside the window it is given. */
#include "httpreq.h"
#include "policy.h"
#include "scan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void fuzz_url(const char *s)
{
    rc_policy_rule r = {0};
    if (rc_policy_forward_url_parse(s, &r, NULL) < 0) {
        CHECK(!r.fwd_url && !r.fwd_host && !r.fwd_path);
        return;
    }
    CHECK(strncmp(r.fwd_url, "https://", 8) == 0);
    CHECK(!strpbrk(r.fwd_url, "?#"));
    CHECK(!memchr(r.fwd_url + 8, '@', strcspn(r.fwd_url + 8, "/"))); /* no userinfo */
    CHECK(r.fwd_host[0] && r.fwd_path[0] == '/');
    CHECK(r.fwd_host_is_ip || rc_policy_hostname_valid(r.fwd_host));
    CHECK(r.fwd_port >= 1 && r.fwd_port <= 65535);
    CHECK(r.action == RC_POLICY_ACTION_FORWARD);
    free(r.fwd_url);
    free(r.fwd_host);
    free(r.fwd_path);
}

static void fuzz_inner(const char *data, size_t len)
{
    rc_httpreq r;
    int st = 0;
    int rc = rc_httpreq_parse_origin(data, len, "api.test", 443, &r, &st, NULL);
    if (rc < 0) {
        CHECK(st == 400 || st == 405 || st == 431 || st == 501);
        return;
    }
    if (rc == 0)
        return;
    CHECK(r.form == RC_HTTPREQ_ORIGIN);
    CHECK(strcmp(r.host, "api.test") == 0 && r.port == 443);
    CHECK(r.path && r.path[0] == '/');
    CHECK(rc_httpreq_header(&r, "host") != NULL);
    rc_httpreq_free(&r);
}

static void fuzz_scan(const char *data, size_t len)
{
    char *copy = strndup(data, len), *p;
    const char *values[8];
    size_t n = 0;
    rc_scan s;

    if (!copy)
        return;
    for (p = copy; p && n < 8;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        values[n++] = p;
        p = nl ? nl + 1 : NULL;
    }
    if (rc_scan_init(&s, values, n, NULL) == 0) {
        for (size_t i = 0; i < n; i++) {
            size_t vl = strlen(values[i]);
            char *text = malloc(vl + 6);
            if (!text)
                break;
            memcpy(text, "<<<", 3);
            memcpy(text + 3, values[i], vl);
            memcpy(text + 3 + vl, ">>>", 3);
            if (vl >= RC_SCAN_MIN_LEN)
                CHECK(rc_scan_find(&s, text, vl + 6));
            free(text);
        }
        (void)rc_scan_find(&s, data, len);
        rc_scan_free(&s);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;
    if (size < 1 || size > 20000)
        return 0;
    switch (data[0] % 3) {
    case 0:
        s = strndup((const char *)data + 1, size - 1);
        if (s)
            fuzz_url(s);
        free(s);
        break;
    case 1:
        fuzz_inner((const char *)data + 1, size - 1);
        break;
    default:
        fuzz_scan((const char *)data + 1, size - 1);
        break;
    }
    return 0;
}
