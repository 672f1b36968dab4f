/* test_policy.c - the egress policy (broker/policy.c) and its regex engine (broker/re.c): every
 * schema form, every matcher, lookup precedence, the SSRF address classes, request hardening,
 * and a table of invalid documents with the JSON path each error must name. */
#include "harness.h"

#include "cleanup.h"
#include "policy.h"
#include "re.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static rc_policy *parse_ok(const char *json)
{
    rc_policy *p = NULL;
    rc_error err = {0};
    if (rc_policy_parse(json, strlen(json), &p, &err) < 0) {
        rc_test_fail(__FILE__, __LINE__, "parse failed: %s (policy %s)", err.msg, json);
        return NULL;
    }
    return p;
}

/* The verdict of check_host as "allow:<reason>" / "deny:<reason>" / "error". */
static const char *host_verdict(const rc_policy *p, const char *host, const rc_policy_domain **d)
{
    static char out[160];
    rc_policy_verdict v;
    if (rc_policy_check_host(p, host, &v, NULL) < 0)
        return "error";
    snprintf(out, sizeof out, "%s:%s", v.allow ? "allow" : "deny", v.reason);
    if (d)
        *d = v.domain;
    return out;
}

static struct sockaddr_storage addr_of(const char *s)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, s, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    return ss;
}

static bool addr_allowed(const rc_policy *p, const char *a, const rc_policy_hostaddrs *own,
                         const char **reason)
{
    struct sockaddr_storage ss = addr_of(a);
    rc_policy_verdict v;
    rc_policy_check_addr(p, (struct sockaddr *)&ss, own, &v);
    if (reason)
        *reason = v.reason;
    return v.allow;
}

/* ---- regex engine ---- */

static int re_match(const char *pat, bool icase, const char *text)
{
    rc_re *re = NULL;
    rc_error err = {0};
    int r = rc_re_compile(pat, strlen(pat), icase, &re, &err);
    if (r < 0)
        return -100 + r;
    r = rc_re_search(re, text, strlen(text));
    rc_re_free(re);
    return r;
}

TEST(re_matches)
{
    static const struct {
        const char *pat, *text;
        bool icase;
        int want;
    } cases[] = {
        {"abc", "xxabcxx", false, 1},
        {"^abc", "xxabc", false, 0},
        {"^abc$", "abc", false, 1},
        {"^abc$", "abcd", false, 0},
        {"^/v1/sessions/[a-z_0-9]+/events$", "/v1/sessions/sesn_01/events", false, 1},
        {"^/v1/sessions/[a-z_0-9]+/events$", "/v1/sessions/x/y/events", false, 0},
        {"a|b", "zzb", false, 1},
        {"^(ab|cd)+$", "abcdab", false, 1},
        {"^(ab|cd)+$", "abce", false, 0},
        {"^a{2,3}$", "aaa", false, 1},
        {"^a{2,3}$", "aaaa", false, 0},
        {"^a{2}$", "aa", false, 1},
        {"^a{2,}$", "aaaaaa", false, 1},
        {"^a{2,}$", "a", false, 0},
        {"a{,2}", "a{,2}", false, 1}, /* not a repetition: literal braces, as in RE2 */
        {"^\\d+\\.\\d+$", "12.5", false, 1},
        {"^\\d+\\.\\d+$", "12x5", false, 0},
        {"^\\w+$", "ab_9", false, 1},
        {"^\\W$", "-", false, 1},
        {"\\s", "a b", false, 1},
        {"^[^/]+$", "a/b", false, 0},
        {"^[]a]+$", "]a]", false, 1},
        {"^[a-]+$", "a-a", false, 1},
        {"^[[:digit:]]+$", "0123", false, 1},
        {"^[\\d.]+$", "1.2.3", false, 1},
        {"^.$", "\n", false, 0},
        {"^a.c$", "abc", false, 1},
        {"^\\x41$", "A", false, 1},
        {"^(?:ab)*$", "ababab", false, 1},
        {"^(?P<id>[0-9]+)$", "42", false, 1},
        {"^(?<id>[0-9]+)$", "42", false, 1},
        {"^(?i)abc$", "AbC", false, 1},
        {"^(?i:ab)c$", "ABc", false, 1},
        {"^(?i:ab)c$", "ABC", false, 0},
        {"^authorization$", "Authorization", true, 1},
        {"^x-api-[a-z]+$", "X-API-Key", true, 1},
        {"^a*?b$", "aaab", false, 1},
        {"\\Aab\\z", "ab", false, 1},
        {"(a*)*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false, 0},
        {"", "anything", false, 1},
        {"^$", "", false, 1},
        {"x|", "", false, 1},
        {"^/v1/\\.well-known$", "/v1/.well-known", false, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = re_match(cases[i].pat, cases[i].icase, cases[i].text);
        if (got != cases[i].want)
            rc_test_fail(__FILE__, __LINE__, "/%s/ on \"%s\": got %d, want %d", cases[i].pat,
                         cases[i].text, got, cases[i].want);
    }
}

TEST(re_rejects)
{
    static const char *const bad[] = {
        "(",
        "a)",
        "[a",
        "*a",
        "a**",
        "a+*",
        "a{2}{3}",
        "\\1",
        "(?=a)",
        "(?!a)",
        "(?<=a)",
        "\\b",
        "\\p{L}",
        "(?s)a",
        "(?m)^a",
        "[z-a]",
        "a{1001}",
        "\\",
        "[[:foo:]]",
        "\\xZZ",
        "(?P<>a)",
        "((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((a)))))))))))))))))))))))"
        ")))))))))))))))))))))))))))))))))))))))))))",
        "(a{1000}){1000}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc_re *re = NULL;
        rc_error err = {0};
        if (rc_re_compile(bad[i], strlen(bad[i]), false, &re, &err) >= 0) {
            rc_test_fail(__FILE__, __LINE__, "pattern \"%s\" was accepted", bad[i]);
            rc_re_free(re);
        } else if (strncmp(err.msg, "regex:", 6) != 0) {
            rc_test_fail(__FILE__, __LINE__, "pattern \"%s\": message \"%s\"", bad[i], err.msg);
        }
    }
}

TEST(re_linear_time)
{
    /* A pattern that makes backtracking engines explode runs in linear time here. */
    _cleanup_free_ char *text = malloc(20001);
    REQUIRE(text);
    memset(text, 'a', 20000);
    text[20000] = '\0';
    CHECK_INT(re_match("^(a|a)*(a|a)*(a|a)*b$", false, text), 0);
    CHECK_INT(re_match("(a+)+$", false, text), 1);
}

/* ---- schema forms ---- */

TEST(mode_strings)
{
    rc_policy *p = parse_ok("\"deny-all\"");
    REQUIRE(p);
    CHECK_INT(rc_policy_mode(p), RC_POLICY_DENY_ALL);
    CHECK_STR(host_verdict(p, "example.com", NULL), "deny:policy is deny-all");
    CHECK_STR(host_verdict(p, "192.0.2.1", NULL), "deny:policy is deny-all");
    CHECK(!addr_allowed(p, "192.0.2.1", NULL, NULL));
    rc_policy_free(p);

    p = parse_ok("\"allow-all\"");
    REQUIRE(p);
    CHECK_INT(rc_policy_mode(p), RC_POLICY_ALLOW_ALL);
    CHECK_STR(host_verdict(p, "example.com", NULL), "allow:policy is allow-all");
    CHECK_STR(host_verdict(p, "192.0.2.1", NULL), "allow:policy is allow-all");
    /* allow-all means the internet, not the host: the SSRF guard still applies */
    CHECK(addr_allowed(p, "192.0.2.1", NULL, NULL));
    CHECK(!addr_allowed(p, "127.0.0.1", NULL, NULL));
    CHECK(!addr_allowed(p, "169.254.169.254", NULL, NULL));
    rc_policy_free(p);
}

TEST(mode_wire_objects)
{
    rc_policy *p = parse_ok("{\"mode\":\"deny-all\"}");
    REQUIRE(p);
    CHECK_INT(rc_policy_mode(p), RC_POLICY_DENY_ALL);
    rc_policy_free(p);
    p = parse_ok(" {\"mode\" : \"allow-all\"} ");
    REQUIRE(p);
    CHECK_INT(rc_policy_mode(p), RC_POLICY_ALLOW_ALL);
    rc_policy_free(p);
}

TEST(empty_object_denies_everything)
{
    rc_policy *p = parse_ok("{}");
    REQUIRE(p);
    CHECK_INT(rc_policy_mode(p), RC_POLICY_CUSTOM);
    CHECK_STR(host_verdict(p, "example.com", NULL), "deny:domain not in policy");
    CHECK_STR(host_verdict(p, "192.0.2.1", NULL), "deny:IP address not in subnets.allow");
    rc_policy_free(p);
}

TEST(list_form)
{
    const rc_policy_domain *d = NULL;
    rc_policy *p = parse_ok("{\"allow\":[\"GitHub.com\",\"*.npmjs.org\",\"a.b.example\"]}");
    REQUIRE(p);
    CHECK_INT(rc_policy_domain_count(p), 3);
    CHECK_STR(rc_policy_domain_at(p, 0)->pattern, "github.com");
    CHECK_STR(host_verdict(p, "github.com", &d), "allow:domain listed");
    CHECK(d && d->n_rules == 0);
    CHECK_STR(host_verdict(p, "GITHUB.COM", NULL), "allow:domain listed");
    CHECK_STR(host_verdict(p, "api.github.com", NULL), "deny:domain not in policy");
    CHECK_STR(host_verdict(p, "registry.npmjs.org", NULL), "allow:wildcard domain listed");
    CHECK_STR(host_verdict(p, "a.b.npmjs.org", NULL), "allow:wildcard domain listed");
    CHECK_STR(host_verdict(p, "npmjs.org", NULL), "deny:domain not in policy");
    CHECK_STR(host_verdict(p, "evilnpmjs.org", NULL), "deny:domain not in policy");
    CHECK_STR(host_verdict(p, "a.b.example", NULL), "allow:domain listed");
    CHECK_STR(host_verdict(p, "b.example", NULL), "deny:domain not in policy");
    CHECK(!rc_policy_has_catch_all(p));
    rc_policy_free(p);
}

TEST(map_form_and_precedence)
{
    const rc_policy_domain *d = NULL;
    rc_policy *p = parse_ok("{\"allow\":{"
                            "\"api.example.com\":[{\"transform\":[]}],"
                            "\"*.example.com\":[],"
                            "\"*.deep.example.com\":[{\"response\":{\"statusCode\":403}}],"
                            "\"*\":[]}}");
    REQUIRE(p);
    CHECK(rc_policy_has_catch_all(p));
    CHECK_STR(host_verdict(p, "api.example.com", &d), "allow:domain listed");
    CHECK(d && strcmp(d->pattern, "api.example.com") == 0 && d->n_rules == 1);
    CHECK_STR(host_verdict(p, "www.example.com", &d), "allow:wildcard domain listed");
    CHECK(d && strcmp(d->pattern, "*.example.com") == 0);
    /* the most specific wildcard wins */
    CHECK_STR(host_verdict(p, "x.deep.example.com", &d), "allow:wildcard domain listed");
    CHECK(d && strcmp(d->pattern, "*.deep.example.com") == 0);
    CHECK_STR(host_verdict(p, "deep.example.com", &d), "allow:wildcard domain listed");
    CHECK(d && strcmp(d->pattern, "*.example.com") == 0);
    CHECK_STR(host_verdict(p, "other.org", &d), "allow:catch-all \"*\"");
    CHECK(d && strcmp(d->pattern, "*") == 0);
    /* a catch-all lets IP literals through too (Vercel: domain-less traffic passes under "*") */
    CHECK_STR(host_verdict(p, "192.0.2.7", NULL), "allow:catch-all \"*\"");
    rc_policy_free(p);
}

TEST(host_names_checked)
{
    rc_policy *p = parse_ok("{\"allow\":[\"example.com\"]}");
    REQUIRE(p);
    CHECK_STR(host_verdict(p, "exa mple.com", NULL), "error");
    CHECK_STR(host_verdict(p, "-a.example.com", NULL), "error");
    CHECK_STR(host_verdict(p, "a..example.com", NULL), "error");
    CHECK_STR(host_verdict(p, "example.com.", NULL), "error");
    CHECK_STR(host_verdict(p, "2130706433", NULL), "error"); /* inet_aton form of 127.0.0.1 */
    CHECK_STR(host_verdict(p, "127.1", NULL), "error");
    CHECK_STR(host_verdict(p, "0x7f.1", NULL), "error");
    CHECK_STR(host_verdict(p, "", NULL), "error");
    CHECK(rc_policy_hostname_valid("a-b.c0"));
    CHECK(!rc_policy_hostname_valid("a_b.c"));
    rc_policy_free(p);
}

TEST(ip_literals_and_subnets)
{
    rc_policy *p = parse_ok("{\"allow\":[\"example.com\"],\"subnets\":{"
                            "\"allow\":[\"10.0.0.0/8\",\"2001:db8::/32\"],"
                            "\"deny\":[\"10.1.0.0/16\",\"169.254.169.254/32\"]}}");
    const char *why;
    REQUIRE(p);
    CHECK_STR(host_verdict(p, "10.2.3.4", NULL), "allow:address in subnets.allow");
    CHECK_STR(host_verdict(p, "10.1.3.4", NULL), "deny:address in subnets.deny");
    CHECK_STR(host_verdict(p, "2001:db8::1", NULL), "allow:address in subnets.allow");
    CHECK_STR(host_verdict(p, "192.0.2.1", NULL), "deny:IP address not in subnets.allow");
    /* after resolving: deny beats allow, allow lifts the SSRF guard */
    CHECK(addr_allowed(p, "10.2.3.4", NULL, &why));
    CHECK_STR(why, "address in subnets.allow");
    CHECK(!addr_allowed(p, "10.1.0.1", NULL, &why));
    CHECK_STR(why, "address in subnets.deny");
    CHECK(!addr_allowed(p, "::ffff:10.1.0.1", NULL, &why));
    CHECK_STR(why, "address in subnets.deny");
    CHECK(addr_allowed(p, "::ffff:10.9.0.1", NULL, NULL));
    CHECK(!addr_allowed(p, "169.254.169.254", NULL, NULL));
    CHECK(!addr_allowed(p, "172.16.0.1", NULL, &why));
    CHECK_STR(why, "SSRF guard: private address");
    rc_policy_free(p);
}

TEST(ssrf_classes)
{
    static const struct {
        const char *addr, *cls;
    } cases[] = {
        {"127.0.0.1", "loopback"},
        {"127.255.0.9", "loopback"},
        {"0.0.0.0", "unspecified"},
        {"10.0.0.1", "private"},
        {"172.31.255.255", "private"},
        {"172.32.0.1", NULL},
        {"192.168.1.1", "private"},
        {"100.64.0.1", "shared (CGNAT)"},
        {"100.100.100.200", "shared (CGNAT)"},
        {"169.254.169.254", "metadata"},
        {"169.254.1.1", "link-local"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.250", "multicast"},
        {"255.255.255.255", "reserved"},
        {"240.0.0.1", "reserved"},
        {"198.18.0.1", "reserved"},
        {"192.0.0.8", "reserved"},
        {"203.0.113.9", NULL},
        {"8.8.8.8", NULL},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:169.254.169.254", "metadata"},
        {"::127.0.0.1", "reserved"},
        {"64:ff9b::a00:1", "private"},
        {"64:ff9b::808:808", NULL},
        {"2002:c0a8:0101::1", "private"},
        {"2001::1", "reserved"},
        {"fc00::1", "private"},
        {"fd00:ec2::254", "private"},
        {"fe80::1", "link-local"},
        {"fec0::1", "reserved"},
        {"ff02::1", "multicast"},
        {"2001:db8::1", NULL},
        {"2606:4700::1111", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss = addr_of(cases[i].addr);
        const char *got = rc_policy_addr_class((struct sockaddr *)&ss);
        if ((got == NULL) != (cases[i].cls == NULL) || (got && strcmp(got, cases[i].cls) != 0))
            rc_test_fail(__FILE__, __LINE__, "%s: class %s, want %s", cases[i].addr,
                         got ? got : "(public)", cases[i].cls ? cases[i].cls : "(public)");
    }
}

TEST(ssrf_own_addresses)
{
    rc_policy *p =
        parse_ok("{\"allow\":[\"example.com\"],\"subnets\":{\"allow\":[\"192.0.2.5/32\"]}}");
    rc_policy_hostaddrs own = {0};
    const char *why;
    REQUIRE(p);
    REQUIRE(rc_policy_cidr_parse("203.0.113.1/32", &own.addr[own.n++], NULL) == 0);
    REQUIRE(rc_policy_cidr_parse("192.0.2.5/32", &own.addr[own.n++], NULL) == 0);
    CHECK(!addr_allowed(p, "203.0.113.1", &own, &why));
    CHECK_STR(why, "SSRF guard: one of the broker host's own addresses");
    CHECK(!addr_allowed(p, "::ffff:203.0.113.1", &own, NULL));
    CHECK(addr_allowed(p, "203.0.113.2", &own, NULL));
    /* subnets.allow naming an own address opens it (the operator said so) */
    CHECK(addr_allowed(p, "192.0.2.5", &own, NULL));
    rc_policy_free(p);
}

/* ---- rules and matchers ---- */

static const rc_policy_domain *domain_for(const rc_policy *p, const char *host)
{
    rc_policy_verdict v;
    if (rc_policy_check_host(p, host, &v, NULL) < 0 || !v.allow)
        return NULL;
    return v.domain;
}

/* Index of the first matching rule, -1 for none, -2 for an error. */
static int first_rule(const rc_policy_domain *d, const char *method, const char *path,
                      const char *query, const rc_policy_kv *headers, size_t n_headers)
{
    rc_policy_query q = {0};
    rc_policy_request req = {.method = method,
                             .path = path,
                             .path_len = strlen(path),
                             .headers = headers,
                             .n_headers = n_headers};
    size_t idx = 0;
    int r;
    if (query && rc_policy_query_parse(query, strlen(query), &q, NULL) < 0)
        return -2;
    req.query = q.kv;
    req.n_query = q.n;
    r = rc_policy_match_request(d, &req, NULL, &idx, NULL);
    rc_policy_query_free(&q);
    return r < 0 ? -2 : r == 0 ? -1 : (int)idx;
}

#define KV(k, v)                                                                                   \
    {                                                                                              \
        k, sizeof(k) - 1, v, sizeof(v) - 1                                                         \
    }

TEST(path_matchers)
{
    rc_policy *p = parse_ok("{\"allow\":{\"h.test\":["
                            "{\"match\":{\"path\":{\"exact\":\"/v1/x\"}},\"transform\":[]},"
                            "{\"match\":{\"path\":{\"startsWith\":\"/v1/\"}},\"transform\":[]},"
                            "{\"match\":{\"path\":{\"regex\":\"^/v2/[0-9]+$\"}},\"transform\":[]}"
                            "]}}");
    const rc_policy_domain *d;
    REQUIRE(p);
    d = domain_for(p, "h.test");
    REQUIRE(d);
    CHECK_INT(first_rule(d, "GET", "/v1/x", NULL, NULL, 0), 0);
    CHECK_INT(first_rule(d, "GET", "/v1/x/", NULL, NULL, 0), 1);
    CHECK_INT(first_rule(d, "GET", "/v1/", NULL, NULL, 0), 1);
    CHECK_INT(first_rule(d, "GET", "/v1", NULL, NULL, 0), -1);
    CHECK_INT(first_rule(d, "GET", "/V1/x", NULL, NULL, 0), -1); /* paths are case-sensitive */
    CHECK_INT(first_rule(d, "GET", "/v2/42", NULL, NULL, 0), 2);
    CHECK_INT(first_rule(d, "GET", "/v2/42a", NULL, NULL, 0), -1);
    rc_policy_free(p);
}

TEST(method_query_header_matchers)
{
    rc_policy *p = parse_ok(
        "{\"allow\":{\"h.test\":["
        "{\"match\":{\"method\":[\"POST\",\"PUT\"]},\"transform\":[]},"
        "{\"match\":{\"queryString\":[{\"key\":{\"exact\":\"a\"},\"value\":{\"exact\":\"1 2\"}},"
        "                             {\"key\":{\"startsWith\":\"x-\"}}]},\"transform\":[]},"
        "{\"match\":{\"queryString\":[{\"value\":{\"regex\":\"^tok[0-9]$\"}}]},\"transform\":[]},"
        "{\"match\":{\"headers\":[{\"key\":{\"exact\":\"Authorization\"},"
        "                          \"value\":{\"exact\":\"Bearer _brokered_\"}}]},"
        "                          \"transform\":[]},"
        "{\"match\":{\"headers\":[{\"key\":{\"regex\":\"^x-api-\"}}]},\"transform\":[]}"
        "]}}");
    const rc_policy_domain *d;
    rc_policy_kv auth[] = {KV("accept", "*/*"), KV("AUTHORIZATION", "Bearer _brokered_")};
    rc_policy_kv auth_wrong[] = {KV("authorization", "bearer _brokered_")};
    rc_policy_kv auth_split[] = {KV("authorization", "x"), KV("other", "Bearer _brokered_")};
    rc_policy_kv auth_twice[] = {KV("authorization", "x"),
                                 KV("Authorization", "Bearer _brokered_")};
    rc_policy_kv apikey[] = {KV("X-Api-Key", "k")};
    REQUIRE(p);
    d = domain_for(p, "h.test");
    REQUIRE(d);
    CHECK_INT(first_rule(d, "POST", "/", NULL, NULL, 0), 0);
    CHECK_INT(first_rule(d, "PUT", "/", NULL, NULL, 0), 0);
    CHECK_INT(first_rule(d, "post", "/", NULL, NULL, 0), -1); /* methods are case-sensitive */
    /* both query matchers must match (AND), each by some parameter */
    CHECK_INT(first_rule(d, "GET", "/", "a=1%202&x-y=", NULL, 0), 1);
    CHECK_INT(first_rule(d, "GET", "/", "x-y&a=1%202", NULL, 0), 1);
    CHECK_INT(first_rule(d, "GET", "/", "a=1%202", NULL, 0), -1);
    CHECK_INT(first_rule(d, "GET", "/", "a=1+2&x-y=1", NULL, 0), -1); /* '+' is not a space */
    CHECK_INT(first_rule(d, "GET", "/", "q=tok7", NULL, 0), 2);
    CHECK_INT(first_rule(d, "GET", "/", "q=tok77", NULL, 0), -1);
    CHECK_INT(first_rule(d, "GET", "/", "q=%zz", NULL, 0), -2);
    /* header names case-insensitive, values case-sensitive, key and value on the same header */
    CHECK_INT(first_rule(d, "GET", "/", NULL, auth, 2), 3);
    CHECK_INT(first_rule(d, "GET", "/", NULL, auth_wrong, 1), -1);
    CHECK_INT(first_rule(d, "GET", "/", NULL, auth_split, 2), -1);
    CHECK_INT(first_rule(d, "GET", "/", NULL, auth_twice, 2), 3);
    CHECK_INT(first_rule(d, "GET", "/", NULL, apikey, 1), 4);
    rc_policy_free(p);
}

TEST(combined_match_is_and_first_match_wins)
{
    rc_policy *p = parse_ok(
        "{\"allow\":{\"api.anthropic.com\":["
        "{\"match\":{\"path\":{\"startsWith\":\"/v1/sessions/sesn_1/\"},\"method\":[\"GET\"]},"
        " \"transform\":[{\"headers\":{\"Authorization\":\"Bearer sk-ant-secret-value\"}},"
        "                {\"headers\":{\"x-extra\":\"1\"}}]},"
        "{\"match\":{\"path\":{\"startsWith\":\"/v1/sessions/sesn_1/\"}},"
        " \"response\":{\"statusCode\":405,\"contentType\":\"text/plain\",\"body\":\"no\","
        "              \"headers\":{\"x-why\":\"method\"}}},"
        "{\"transform\":[]},"
        "{\"response\":{\"statusCode\":403}}]}}");
    const rc_policy_domain *d;
    const rc_policy_rule *rule;
    REQUIRE(p);
    d = domain_for(p, "api.anthropic.com");
    REQUIRE(d && d->n_rules == 4);
    CHECK_INT(first_rule(d, "GET", "/v1/sessions/sesn_1/events", NULL, NULL, 0), 0);
    CHECK_INT(first_rule(d, "POST", "/v1/sessions/sesn_1/events", NULL, NULL, 0), 1);
    /* a rule without match matches everything and hides the rules after it */
    CHECK_INT(first_rule(d, "GET", "/v1/other", NULL, NULL, 0), 2);
    rule = &d->rules[0];
    CHECK_INT(rule->action, RC_POLICY_ACTION_TRANSFORM);
    REQUIRE(rule->n_set_headers == 2);
    CHECK_STR(rule->set_headers[0].name, "authorization");
    CHECK_STR(rule->set_headers[0].value, "Bearer sk-ant-secret-value");
    CHECK_STR(rule->set_headers[1].name, "x-extra");
    rule = &d->rules[1];
    CHECK_INT(rule->action, RC_POLICY_ACTION_RESPONSE);
    CHECK_INT(rule->status, 405);
    CHECK_STR(rule->content_type, "text/plain");
    CHECK_STR(rule->body, "no");
    REQUIRE(rule->n_resp_headers == 1);
    CHECK_STR(rule->resp_headers[0].name, "x-why");
    CHECK(!d->rules[2].has_match);
    CHECK_INT(d->rules[3].status, 403);
    CHECK(d->rules[3].body == NULL);
    rc_policy_free(p);
}

TEST(describe_lists_names_never_values)
{
    rc_policy *p =
        parse_ok("{\"allow\":{\"api.x.test\":[{\"transform\":[{\"headers\":"
                 "{\"Authorization\":\"Bearer sk-ant-never-printed\"}}]}],\"b.test\":[]},"
                 "\"subnets\":{\"allow\":[\"10.0.0.0/8\"],\"deny\":[\"fd00::/8\"]}}");
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(65536);
    REQUIRE(p);
    REQUIRE(rc_policy_describe(p, &out, NULL) == 0);
    CHECK(strstr(out.data, "\"authorization\"") != NULL);
    CHECK(strstr(out.data, "never-printed") == NULL);
    CHECK(strstr(out.data, "\"10.0.0.0/8\"") != NULL);
    CHECK(strstr(out.data, "\"fd00::/8\"") != NULL);
    CHECK(strstr(out.data, "\"mode\":\"custom\"") != NULL);
    rc_policy_free(p);
}

/* ---- invalid documents ---- */

TEST(invalid_policies)
{
    static const struct {
        const char *json, *want; /* want: a substring of the error */
    } cases[] = {
        {"", "not valid JSON"},
        {"{\"allow\":[]", "not valid JSON"},
        {"{\"allow\":[],\"allow\":[]}", "not valid JSON"},
        {"\"deny\"", "$: expected \"deny-all\""},
        {"42", "$: expected \"deny-all\", \"allow-all\" or a policy object, got a number"},
        {"null", "got null"},
        {"{\"allowed\":[]}", "$: unknown member \"allowed\""},
        {"{\"mode\":\"custom\",\"allowedDomains\":[]}", "$.mode: the legacy"},
        {"{\"mode\":\"allow-all\",\"allow\":[]}", "$: unknown member \"allow\""},
        {"{\"mode\":1}", "$.mode: expected a string"},
        {"{\"mode\":\"open\"}", "$.mode: expected \"deny-all\""},
        {"{\"allow\":\"example.com\"}", "$.allow: expected an array of domains"},
        {"{\"allow\":[1]}", "$.allow[0]: expected a domain string, got a number"},
        {"{\"allow\":[\"ok.test\",\"bad host\"]}", "$.allow[1]: not a valid host name"},
        {"{\"allow\":[\"example.com.\"]}", "$.allow[0]: remove the trailing dot"},
        {"{\"allow\":[\"10.0.0.1\"]}", "$.allow[0]: an IP address is not a domain"},
        {"{\"allow\":[\"::1\"]}", "$.allow[0]: an IP address is not a domain"},
        {"{\"allow\":[\"a.*.com\"]}", "$.allow[0]: a wildcard is only allowed"},
        {"{\"allow\":[\"*example.com\"]}", "$.allow[0]: a wildcard is only allowed"},
        {"{\"allow\":[\"*.\"]}", "$.allow[0]: remove the trailing dot"},
        {"{\"allow\":[\"*.-a.com\"]}", "$.allow[0]: not a valid wildcard domain"},
        {"{\"allow\":[\"*.*.com\"]}", "$.allow[0]: not a valid wildcard domain"},
        {"{\"allow\":[\"b\\u00fccher.de\"]}", "$.allow[0]: non-ASCII domain"},
        {"{\"allow\":[\"a.test\",\"A.test\"]}", "$: domain \"a.test\" listed twice"},
        {"{\"allow\":[\"*.a.test\",\"*.A.TEST\"]}", "listed twice"},
        {"{\"allow\":[\"*\",\"*\"]}", "domain \"*\" listed twice"},
        {"{\"allow\":{\"x.test\":{}}}", "$.allow[\"x.test\"]: expected an array of rules"},
        {"{\"allow\":{\"x.test\":[{}]}}", "$.allow[\"x.test\"][0]: a rule needs exactly one of"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[],\"response\":{\"statusCode\":403}}]}}",
         "a rule needs exactly one of"},
        {"{\"allow\":{\"x.test\":[{\"forwardURL\":\"http://p.example/f\"}]}}",
         "$.allow[\"x.test\"][0].forwardURL: a forward URL must start with https://"},
        {"{\"allow\":{\"x.test\":[{\"forwardURL\":\"https://p.example/f?a=1\"}]}}",
         "[0].forwardURL: a forward URL has no query or fragment"},
        {"{\"allow\":{\"x.test\":[{\"forwardURL\":\"https://u@p.example/f\"}]}}",
         "[0].forwardURL: a forward URL has no userinfo"},
        {"{\"allow\":{\"x.test\":[{\"forwardURL\":\"https://p.example:0/f\"}]}}",
         "[0].forwardURL: a forward URL has a bad port"},
        {"{\"allow\":{\"x.test\":[{\"forwardURL\":\"https://p.example/a/../b\"}]}}",
         "[0].forwardURL: a forward URL has a path that is not allowed"},
        {"{\"allow\":{\"x.test\":[{\"forwardURL\":7}]}}",
         "[0].forwardURL: expected an https:// URL string"},
        {"{\"allow\":{\"x.test\":[{\"forwardURL\":\"https://p.example/\",\"transform\":[]}]}}",
         "[0]: a rule needs exactly one of"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[],\"matches\":{}}]}}",
         "$.allow[\"x.test\"][0]: unknown member \"matches\""},
        {"{\"allow\":{\"x.test\":[{\"match\":[],\"transform\":[]}]}}",
         "[0].match: expected an object, got an array"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"paths\":{}},\"transform\":[]}]}}",
         "[0].match: unknown member \"paths\""},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"path\":\"/v1\"},\"transform\":[]}]}}",
         "[0].match.path: expected an object with \"exact\""},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"path\":{}},\"transform\":[]}]}}",
         "[0].match.path: needs exactly one of"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"path\":{\"exact\":\"/a\",\"startsWith\":\"/\"}},"
         "\"transform\":[]}]}}",
         "[0].match.path: needs exactly one of"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"path\":{\"prefix\":\"/a\"}},\"transform\":[]}]}}",
         "[0].match.path: unknown member \"prefix\""},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"path\":{\"startsWith\":\"v1/\"}},"
         "\"transform\":[]}]}}",
         "[0].match.path.startsWith: a path must start with \"/\""},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"path\":{\"exact\":1}},\"transform\":[]}]}}",
         "[0].match.path.exact: expected a string"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"path\":{\"regex\":\"(\"}},\"transform\":[]}]}}",
         "[0].match.path.regex: regex: missing )"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"path\":{\"regex\":\"(?=x)\"}},\"transform\":[]}]}}",
         "[0].match.path.regex: regex: unsupported group"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"method\":\"GET\"},\"transform\":[]}]}}",
         "[0].match.method: expected an array of method names"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"method\":[]},\"transform\":[]}]}}",
         "[0].match.method: needs at least 1 methods"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"method\":[\"get\"]},\"transform\":[]}]}}",
         "[0].match.method[0]: methods are case-sensitive"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"method\":[\"GET\",\"GET\"]},\"transform\":[]}]}}",
         "[0].match.method[1]: method listed twice"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"method\":[\"G T\"]},\"transform\":[]}]}}",
         "[0].match.method[0]: not an HTTP method token"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"queryString\":{}},\"transform\":[]}]}}",
         "[0].match.queryString: expected an array"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"queryString\":[]},\"transform\":[]}]}}",
         "[0].match.queryString: needs at least 1 query matchers"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"queryString\":[{}]},\"transform\":[]}]}}",
         "[0].match.queryString[0]: needs \"key\" or \"value\""},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"queryString\":[{\"name\":{}}]},"
         "\"transform\":[]}]}}",
         "[0].match.queryString[0]: unknown member \"name\""},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"headers\":[{\"key\":{\"exact\":\"bad name\"}}]},"
         "\"transform\":[]}]}}",
         "[0].match.headers[0].key.exact: not a valid header name"},
        {"{\"allow\":{\"x.test\":[{\"match\":{\"headers\":[{\"value\":{\"regex\":\"[\"}}]},"
         "\"transform\":[]}]}}",
         "[0].match.headers[0].value.regex: regex: missing ]"},
        {"{\"allow\":{\"x.test\":[{\"transform\":{}}]}}",
         "[0].transform: expected an array of transformers"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[{\"header\":{}}]}]}}",
         "[0].transform[0]: unknown member \"header\""},
        {"{\"allow\":{\"x.test\":[{\"transform\":[{\"headers\":[]}]}]}}",
         "[0].transform[0].headers: expected an object of header names"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[{\"headers\":{\"a b\":\"v\"}}]}]}}",
         "[0].transform[0].headers[\"a b\"]: not a valid header name"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[{\"headers\":{\"Host\":\"v\"}}]}]}}",
         "[0].transform[0].headers.Host: this header is managed by the proxy"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[{\"headers\":{\"Content-Length\":\"1\"}}]}]}}",
         "managed by the proxy"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[{\"headers\":{\"a\":1}}]}]}}",
         "[0].transform[0].headers.a: expected a string"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[{\"headers\":{\"a\":\"x\\r\\nInjected: "
         "1\"}}]}]}}",
         "[0].transform[0].headers.a: value holds a control"},
        {"{\"allow\":{\"x.test\":[{\"transform\":[{\"headers\":{\"A\":\"1\"}},"
         "{\"headers\":{\"a\":\"2\"}}]}]}}",
         "[0].transform[1].headers.a: header set twice"},
        {"{\"allow\":{\"x.test\":[{\"response\":{}}]}}", "[0].response.statusCode: required"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":\"403\"}}]}}",
         "[0].response.statusCode: expected an integer"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":403.5}}]}}",
         "[0].response.statusCode: expected an integer"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":100}}]}}",
         "[0].response.statusCode: must be between 200 and 599"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":600}}]}}",
         "must be between 200 and 599"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":403,\"body\":\"x\"}}]}}",
         "[0].response.body: a body needs \"contentType\""},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":204,\"contentType\":\"t/p\","
         "\"body\":\"x\"}}]}}",
         "[0].response.body: status 204 has no body"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":403,\"headers\":"
         "{\"Connection\":\"close\"}}}]}}",
         "[0].response.headers.Connection: this header is managed by the proxy"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":403,\"headers\":"
         "{\"Transfer-Encoding\":\"chunked\"}}}]}}",
         "managed by the proxy"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":403,\"contentType\":\"a/b\","
         "\"headers\":{\"Content-Type\":\"c/d\"}}}]}}",
         "content-type is already given"},
        {"{\"allow\":{\"x.test\":[{\"response\":{\"statusCode\":403,\"reason\":\"x\"}}]}}",
         "[0].response: unknown member \"reason\""},
        {"{\"allow\":{\"*\":[],\"x.test\":[{\"transform\":[{\"headers\":{\"a\":\"b\"}}]}]}}",
         "$: a \"*\" catch-all cannot be combined with header injection"},
        {"{\"subnets\":[]}", "$.subnets: expected an object"},
        {"{\"subnets\":{\"allowed\":[]}}", "$.subnets: unknown member \"allowed\""},
        {"{\"subnets\":{\"allow\":\"10.0.0.0/8\"}}", "$.subnets.allow: expected an array"},
        {"{\"subnets\":{\"allow\":[\"10.0.0.1\"]}}", "$.subnets.allow[0]: expected a CIDR"},
        {"{\"subnets\":{\"deny\":[\"10.0.0.1/8\"]}}", "$.subnets.deny[0]: host bits set"},
        {"{\"subnets\":{\"deny\":[\"10.0.0.0/33\"]}}", "$.subnets.deny[0]: prefix length above 32"},
        {"{\"subnets\":{\"deny\":[\"::/129\"]}}", "prefix length above 128"},
        {"{\"subnets\":{\"deny\":[\"10.0.0.0/08\"]}}", "bad prefix length"},
        {"{\"subnets\":{\"deny\":[\"10.0.0.0/\"]}}", "bad prefix length"},
        {"{\"subnets\":{\"deny\":[\"010.0.0.0/8\"]}}", "not a valid IPv4 or IPv6 address"},
        {"{\"subnets\":{\"deny\":[\"example.com/8\"]}}", "not a valid IPv4 or IPv6 address"},
        {"{\"subnets\":{\"deny\":[1]}}", "$.subnets.deny[0]: expected a CIDR string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc_policy *p = NULL;
        rc_error err = {0};
        int r = rc_policy_parse(cases[i].json, strlen(cases[i].json), &p, &err);
        if (r >= 0) {
            rc_test_fail(__FILE__, __LINE__, "accepted: %s", cases[i].json);
            rc_policy_free(p);
            continue;
        }
        if (!strstr(err.msg, cases[i].want))
            rc_test_fail(__FILE__, __LINE__, "%s\n#   error \"%s\"\n#   wanted \"%s\"",
                         cases[i].json, err.msg, cases[i].want);
    }
}

TEST(errors_never_echo_header_values)
{
    const char *json = "{\"allow\":{\"x.test\":[{\"transform\":[{\"headers\":"
                       "{\"authorization\":\"Bearer sk-ant-zzz\\u0001\"}}]}]}}";
    rc_policy *p = NULL;
    rc_error err = {0};
    CHECK(rc_policy_parse(json, strlen(json), &p, &err) < 0);
    CHECK(strstr(err.msg, "sk-ant") == NULL);
    CHECK(strstr(err.msg, "authorization") != NULL);
}

TEST(caps)
{
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT((size_t)4 * 1024 * 1024);
    rc_policy *p = NULL;
    rc_error err = {0};

    /* too many domains */
    REQUIRE(rc_buf_append_str(&b, "{\"allow\":[", NULL) == 0);
    for (unsigned i = 0; i <= RC_POLICY_DOMAINS_MAX; i++)
        REQUIRE(rc_buf_appendf(&b, NULL, "%s\"h%u.test\"", i ? "," : "", i) == 0);
    REQUIRE(rc_buf_append_str(&b, "]}", NULL) == 0);
    CHECK_INT(rc_policy_parse(b.data, b.len, &p, &err), -RC_ETOOBIG);
    CHECK(strstr(err.msg, "$.allow: more than 4096 domains") != NULL);

    /* too deep */
    rc_buf_reset(&b);
    for (int i = 0; i < 40; i++)
        REQUIRE(rc_buf_append_str(&b, "[", NULL) == 0);
    for (int i = 0; i < 40; i++)
        REQUIRE(rc_buf_append_str(&b, "]", NULL) == 0);
    CHECK(rc_policy_parse(b.data, b.len, &p, &err) < 0);

    /* too large */
    rc_buf_reset(&b);
    REQUIRE(rc_buf_append_str(&b, "\"", NULL) == 0);
    for (size_t i = 0; i < RC_POLICY_FILE_MAX; i++)
        REQUIRE(rc_buf_putc(&b, 'a', NULL) == 0);
    REQUIRE(rc_buf_append_str(&b, "\"", NULL) == 0);
    CHECK_INT(rc_policy_parse(b.data, b.len, &p, &err), -RC_ETOOBIG);
}

TEST(load_file)
{
    char dir[] = "/tmp/rc-policy-test.XXXXXX", path[128];
    rc_policy *p = NULL;
    rc_error err = {0};
    int fd;

    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/p.json", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "{\"allow\":[\"a.test\"]}\n", 21) == 21);
    close(fd);
    CHECK_INT(rc_policy_load(path, &p, &err), 0);
    REQUIRE(p);
    CHECK_STR(host_verdict(p, "a.test", NULL), "allow:domain listed");
    rc_policy_free(p);
    p = NULL;
    CHECK(rc_policy_load(dir, &p, &err) < 0);
    CHECK(strstr(err.msg, "not a regular file") != NULL);
    unlink(path);
    CHECK(rc_policy_load(path, &p, &err) < 0);
    CHECK(strstr(err.msg, "cannot open") != NULL);
    rmdir(dir);
}

/* ---- request-side helpers ---- */

TEST(path_hardening)
{
    static const struct {
        const char *path;
        bool ok;
    } cases[] = {
        {"/", true},
        {"/v1/sessions/sesn_1/events", true},
        {"/v1/sessions/sesn_1/", true},
        {"/a%20b", true},
        {"/a%2Cb", true},
        {"/.well-known/x", true},
        {"/a..b/c.", true},
        {"", false},
        {"v1", false},
        {"//x", false},
        {"/a//b", false},
        {"/a/./b", false},
        {"/a/../b", false},
        {"/a/..", false},
        {"/a/.", false},
        {"/a/%2e%2e/b", false},
        {"/a/%2E/b", false},
        {"/a%2fb", false},
        {"/a%2Fb", false},
        {"/a%5cb", false},
        {"/a\\b", false},
        {"/a%41", false}, /* encoded unreserved: non-canonical */
        {"/a%7e", false},
        {"/a%00", false},
        {"/a%zz", false},
        {"/a%2", false},
        {"/a b", false},
        {"/a\x7f", false},
        {"/a\xc3\xa9", false},
        {"/a?b", false},
        {"/a#b", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc_error err = {0};
        int r = rc_policy_path_check(cases[i].path, strlen(cases[i].path), &err);
        if ((r == 0) != cases[i].ok)
            rc_test_fail(__FILE__, __LINE__, "path \"%s\": got %d (%s)", cases[i].path, r, err.msg);
    }
}

TEST(query_parse)
{
    rc_policy_query q = {0};
    _cleanup_(rc_buf_free) rc_buf b = RC_BUF_INIT(4096);

    REQUIRE(rc_policy_query_parse("a=1&b&&c=%41%3d&=v&d=", 21, &q, NULL) == 0);
    REQUIRE(q.n == 5);
    CHECK_MEM(q.kv[0].key, q.kv[0].key_len, "a", 1);
    CHECK_MEM(q.kv[0].value, q.kv[0].value_len, "1", 1);
    CHECK_MEM(q.kv[1].key, q.kv[1].key_len, "b", 1);
    CHECK_INT(q.kv[1].value_len, 0);
    CHECK_MEM(q.kv[2].value, q.kv[2].value_len, "A=", 2);
    CHECK_INT(q.kv[3].key_len, 0);
    CHECK_MEM(q.kv[3].value, q.kv[3].value_len, "v", 1);
    CHECK_MEM(q.kv[4].key, q.kv[4].key_len, "d", 1);
    rc_policy_query_free(&q);

    CHECK_INT(rc_policy_query_parse("a=%00", 5, &q, NULL), -RC_EINVAL);
    CHECK_INT(rc_policy_query_parse("a=%4", 4, &q, NULL), -RC_EINVAL);
    CHECK_INT(rc_policy_query_parse("", 0, &q, NULL), 0);
    CHECK_INT(q.n, 0);
    rc_policy_query_free(&q);
    for (unsigned i = 0; i <= RC_POLICY_QUERY_MAX; i++)
        REQUIRE(rc_buf_appendf(&b, NULL, "k%u=v&", i) == 0);
    CHECK_INT(rc_policy_query_parse(b.data, b.len, &q, NULL), -RC_ETOOBIG);
}

TEST(cidr_parse)
{
    rc_policy_cidr c;
    struct sockaddr_storage ss;
    CHECK_INT(rc_policy_cidr_parse("192.0.2.0/24", &c, NULL), 0);
    CHECK_INT(c.family, AF_INET);
    CHECK_INT(c.prefix, 24);
    ss = addr_of("192.0.2.200");
    CHECK(rc_policy_cidr_contains(&c, (struct sockaddr *)&ss));
    ss = addr_of("192.0.3.1");
    CHECK(!rc_policy_cidr_contains(&c, (struct sockaddr *)&ss));
    ss = addr_of("::ffff:192.0.2.9");
    CHECK(rc_policy_cidr_contains(&c, (struct sockaddr *)&ss));
    CHECK_INT(rc_policy_cidr_parse("0.0.0.0/0", &c, NULL), 0);
    ss = addr_of("8.8.8.8");
    CHECK(rc_policy_cidr_contains(&c, (struct sockaddr *)&ss));
    ss = addr_of("2001:db8::1");
    CHECK(!rc_policy_cidr_contains(&c, (struct sockaddr *)&ss));
    CHECK_INT(rc_policy_cidr_parse("2001:db8::/33", &c, NULL), 0);
    CHECK(rc_policy_cidr_contains(&c, (struct sockaddr *)&ss));
    CHECK_INT(rc_policy_cidr_parse("11.0.0.0/7", &c, NULL), -RC_EINVAL);
    CHECK_INT(rc_policy_cidr_parse("10.0.0.0/8x", &c, NULL), -RC_EINVAL);
    CHECK_INT(rc_policy_cidr_parse("/8", &c, NULL), -RC_EINVAL);
}
