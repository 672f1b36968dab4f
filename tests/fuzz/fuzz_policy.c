/* fuzz_policy.c - the egress policy parser, its regex engine and the request-side helpers on
 * arbitrary bytes.
 *
 * Byte 0 chooses the target. Even: the rest is a policy document; an accepted policy is
 * described (which must not contain any injected header value), every domain is looked up by
 * its own pattern and must be allowed, and a few requests and addresses are judged. Odd: the
 * rest is "pattern\0text" for the regex engine (an accepted pattern must match the empty
 * pattern's language consistently: "(?:pattern)|" matches every text), and the text also goes
 * through the path check and the query parser. */
#include "cleanup.h"
#include "policy.h"
#include "re.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void judge_requests(const rc_policy_domain *d)
{
    static const rc_policy_kv headers[] = {{"Authorization", 13, "Bearer _brokered_", 17},
                                           {"x-api-key", 9, "k", 1}};
    static const rc_policy_kv query[] = {{"a", 1, "1", 1}};
    static const char *const paths[] = {"/", "/v1/sessions/s/events", "/a/b"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        rc_policy_request req = {.method = i ? "POST" : "GET",
                                 .path = paths[i],
                                 .path_len = strlen(paths[i]),
                                 .query = query,
                                 .n_query = 1,
                                 .headers = headers,
                                 .n_headers = 2};
        const rc_policy_rule *rule = NULL;
        size_t idx = 0;
        int r = rc_policy_match_request(d, &req, &rule, &idx, NULL);
        if (r == 1 && (idx >= d->n_rules || rule != &d->rules[idx]))
            abort();
    }
}

static void judge_addresses(const rc_policy *p)
{
    static const char *const addrs[] = {"127.0.0.1", "169.254.169.254", "203.0.113.5",
                                        "::1",       "::ffff:10.0.0.1", "2001:db8::1"};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        struct sockaddr_storage ss = {0};
        rc_policy_verdict v;
        if (inet_pton(AF_INET, addrs[i], &((struct sockaddr_in *)&ss)->sin_addr) == 1)
            ss.ss_family = AF_INET;
        else if (inet_pton(AF_INET6, addrs[i], &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
            ss.ss_family = AF_INET6;
        rc_policy_check_addr(p, (struct sockaddr *)&ss, NULL, &v);
        if (!v.reason)
            abort();
        /* the SSRF guard holds unless the policy names the address in subnets.allow */
        if (v.allow && rc_policy_addr_class((struct sockaddr *)&ss) &&
            strcmp(v.reason, "address in subnets.allow") != 0)
            abort();
    }
}

static void check_policy(const rc_policy *p)
{
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT((size_t)8 * 1024 * 1024);
    rc_policy_verdict v;

    if (rc_policy_describe(p, &out, NULL) == 0) {
        for (size_t i = 0; i < rc_policy_domain_count(p); i++) {
            const rc_policy_domain *d = rc_policy_domain_at(p, i);
            for (size_t j = 0; j < d->n_rules; j++)
                for (size_t k = 0; k < d->rules[j].n_set_headers; k++)
                    if (strlen(d->rules[j].set_headers[k].value) >= 8 &&
                        strstr(out.data, d->rules[j].set_headers[k].value))
                        abort();
        }
    }
    for (size_t i = 0; i < rc_policy_domain_count(p); i++) {
        const rc_policy_domain *d = rc_policy_domain_at(p, i);
        if (d->kind == RC_POLICY_DOMAIN_EXACT) {
            if (rc_policy_check_host(p, d->pattern, &v, NULL) < 0 || !v.allow || v.domain != d)
                abort();
        }
        judge_requests(d);
    }
    (void)rc_policy_check_host(p, "unlisted.example", &v, NULL);
    (void)rc_policy_check_host(p, "10.0.0.1", &v, NULL);
    judge_addresses(p);
}

static void fuzz_regex(const char *s, size_t n)
{
    const char *nul = memchr(s, '\0', n);
    size_t plen = nul ? (size_t)(nul - s) : n;
    const char *text = nul ? nul + 1 : "";
    size_t tlen = nul ? n - plen - 1 : 0;
    rc_policy_query q = {0};
    rc_re *re = NULL;

    if (rc_re_compile(s, plen, plen && (s[0] & 1), &re, NULL) == 0) {
        int m = rc_re_search(re, text, tlen);
        if (m < 0)
            abort();
        rc_re_free(re);
        /* "(?:p)|" matches every text, whatever p is */
        if (plen < RC_RE_PATTERN_MAX - 8) {
            char buf[RC_RE_PATTERN_MAX];
            memcpy(buf, "(?:", 3);
            memcpy(buf + 3, s, plen);
            memcpy(buf + 3 + plen, ")|", 2);
            re = NULL;
            if (rc_re_compile(buf, plen + 5, false, &re, NULL) == 0) {
                if (rc_re_search(re, text, tlen) != 1)
                    abort();
                rc_re_free(re);
            }
        }
    }
    (void)rc_policy_path_check(text, tlen, NULL);
    if (rc_policy_query_parse(text, tlen, &q, NULL) == 0) {
        for (size_t i = 0; i < q.n; i++)
            if (q.kv[i].key_len > tlen || q.kv[i].value_len > tlen)
                abort();
        rc_policy_query_free(&q);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rc_policy *p = NULL;

    if (size < 1)
        return 0;
    if (data[0] & 1) {
        fuzz_regex((const char *)data + 1, size - 1);
        return 0;
    }
    if (rc_policy_parse((const char *)data + 1, size - 1, &p, NULL) < 0)
        return 0;
    check_policy(p);
    rc_policy_free(p);
    return 0;
}
