/* policy.h - the egress network policy: a strict parser for the Vercel Sandbox `NetworkPolicy`
 * JSON shape (spec/reference-app.md 8-9) and the pure decisions the proxy asks of it.
 *
 * Accepted forms: "deny-all", "allow-all", {"mode":"deny-all"|"allow-all"} (the SDK's wire form),
 * and {"allow": [domains] | {domain: [rules]}, "subnets": {"allow": [cidr], "deny": [cidr]}}.
 * Anything else, including unknown members, is an error naming the JSON path of the bad field
 * (`$.allow["api.example.com"][0].match.path: ...`), so a typo never silently widens egress.
 * Error messages never contain a header value from a transform or response.
 *
 * Decisions, in the order the proxy asks them:
 *   1. rc_policy_check_host: is this host name (or IP literal) allowed at all? Names are looked
 *      up exact first, then the most specific `*.suffix` wildcard (one or more labels, never the
 *      apex), then `*`. Unlisted names are refused before anything is resolved.
 *   2. rc_policy_check_addr: after resolving, may this address be dialled? subnets.deny refuses,
 *      subnets.allow permits, then the SSRF guard refuses the host's own addresses, loopback,
 *      private, link-local (169.254.169.254), CGNAT, multicast and reserved ranges.
 *   3. rc_policy_match_request (plain HTTP, or HTTPS intercepted with the session CA): the first
 *      rule of the domain whose match matches decides (transform, response or forwardURL); no rule
 *      matching forwards the request unchanged.
 * Helpers for the request side (path hardening, query parsing) live here too so they are unit
 * tested without sockets. The structs below are read-only views built by the parser. */
#ifndef RUNCELL_BROKER_POLICY_H
#define RUNCELL_BROKER_POLICY_H

#include "buf.h"
#include "err.h"
#include "re.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Caps on the policy document (every one is an error when exceeded, never a silent cut). */
#define RC_POLICY_FILE_MAX     ((size_t)1024 * 1024)
#define RC_POLICY_DEPTH_MAX    16u
#define RC_POLICY_DOMAINS_MAX  4096u
#define RC_POLICY_RULES_MAX    256u /* per domain */
#define RC_POLICY_METHODS_MAX  16u
#define RC_POLICY_KV_MAX       32u /* queryString / headers matchers per rule */
#define RC_POLICY_HEADERS_MAX  32u /* headers set by one rule */
#define RC_POLICY_CIDRS_MAX    1024u
#define RC_POLICY_STRING_MAX   8192u /* matcher strings, header values */
#define RC_POLICY_BODY_MAX     65536u
#define RC_POLICY_QUERY_MAX    64u /* parameters in one request's query string */
#define RC_POLICY_HOST_MAX     253u
#define RC_POLICY_HOSTADDR_MAX 64u /* own addresses the SSRF guard knows */

enum rc_policy_mode { RC_POLICY_DENY_ALL = 0, RC_POLICY_ALLOW_ALL, RC_POLICY_CUSTOM };

enum rc_policy_match_kind { RC_POLICY_MATCH_EXACT, RC_POLICY_MATCH_PREFIX, RC_POLICY_MATCH_REGEX };

typedef struct rc_policy_strmatch {
    int kind;   /* enum rc_policy_match_kind */
    char *text; /* exact / startsWith text (header names: lowercased) */
    size_t len;
    rc_re *re; /* regex */
} rc_policy_strmatch;

typedef struct rc_policy_kvmatch {
    bool has_key, has_value; /* an omitted side matches anything */
    rc_policy_strmatch key, value;
} rc_policy_kvmatch;

typedef struct rc_policy_header {
    char *name; /* lowercased token */
    char *value;
} rc_policy_header;

enum rc_policy_action {
    RC_POLICY_ACTION_TRANSFORM,
    RC_POLICY_ACTION_RESPONSE,
    RC_POLICY_ACTION_FORWARD /* forwardURL */
};

#define RC_POLICY_URL_MAX 512u /* forwardURL */

typedef struct rc_policy_rule {
    bool has_match; /* false: the rule matches every request to the domain */
    bool has_path;
    rc_policy_strmatch path;
    char **methods; /* uppercase tokens; any one matching is enough */
    size_t n_methods;
    rc_policy_kvmatch *query; /* every one must match some parameter */
    size_t n_query;
    rc_policy_kvmatch *headers; /* every one must match some header */
    size_t n_headers;
    int action; /* enum rc_policy_action */
    /* transform: headers set on the upstream request (merged over every transformer) */
    rc_policy_header *set_headers;
    size_t n_set_headers;
    /* response */
    int status;
    char *content_type; /* NULL when absent */
    char *body;         /* NULL when absent */
    size_t body_len;
    rc_policy_header *resp_headers;
    size_t n_resp_headers;
    /* forwardURL: "https://host[:port][/path]", no userinfo, query or fragment */
    char *fwd_url;  /* as written */
    char *fwd_host; /* lowercased; an IPv6 literal without brackets */
    bool fwd_host_is_ip;
    unsigned fwd_port; /* 443 unless given */
    char *fwd_path;    /* "/" when absent */
} rc_policy_rule;

enum rc_policy_domain_kind {
    RC_POLICY_DOMAIN_EXACT,
    RC_POLICY_DOMAIN_WILDCARD, /* "*.example.com": suffix ".example.com" */
    RC_POLICY_DOMAIN_ANY       /* "*" */
};

typedef struct rc_policy_domain {
    char *pattern; /* lowercased, as written */
    int kind;      /* enum rc_policy_domain_kind */
    rc_policy_rule *rules;
    size_t n_rules;
} rc_policy_domain;

typedef struct rc_policy_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} rc_policy_cidr;

typedef struct rc_policy rc_policy;

/* Parse text[0..len) (strict JSON, capped by RC_POLICY_FILE_MAX and RC_POLICY_DEPTH_MAX).
 * -RC_EPARSE for text that is not JSON, -RC_EINVAL for a JSON value that is not a valid policy,
 * -RC_ETOOBIG for a cap, -RC_ENOMEM. A "*" entry is logged as a warning when accepted. */
int rc_policy_parse(const char *text, size_t len, rc_policy **ret, rc_error *err);
/* Read and parse a policy file (regular file only, at most RC_POLICY_FILE_MAX bytes). */
int rc_policy_load(const char *path, rc_policy **ret, rc_error *err);
void rc_policy_free(rc_policy *p);

static inline void rc_policy_freep(rc_policy **p)
{
    if (*p)
        rc_policy_free(*p);
}

int rc_policy_mode(const rc_policy *p);
/* True when the policy has a "*" entry (every name allowed). */
bool rc_policy_has_catch_all(const rc_policy *p);
/* True when some rule is a forwardURL rule (the proxy then needs a forward key). */
bool rc_policy_has_forward(const rc_policy *p);
size_t rc_policy_domain_count(const rc_policy *p);
/* The domain entries in declaration order (NULL for i out of range). */
const rc_policy_domain *rc_policy_domain_at(const rc_policy *p, size_t i);

/* A one-line JSON summary for logs and status output: mode, domains with their rules' actions
 * and the NAMES of injected headers (never values), subnets, and whether "*" is present. */
int rc_policy_describe(const rc_policy *p, rc_buf *out, rc_error *err);

/* ---- decisions ---- */

typedef struct rc_policy_verdict {
    bool allow;
    const char *reason;             /* static text; set for both outcomes */
    const rc_policy_domain *domain; /* the entry that allowed a name; NULL otherwise */
} rc_policy_verdict;

/* Step 1. host is a lowercase name or an IP literal (IPv6 without brackets); names that are not
 * valid host names are refused. Returns 0 (the verdict says allow or deny) or -RC_EINVAL. */
int rc_policy_check_host(const rc_policy *p, const char *host, rc_policy_verdict *ret,
                         rc_error *err);

/* The broker host's own addresses, which the SSRF guard refuses (filled by the proxy). */
typedef struct rc_policy_hostaddrs {
    rc_policy_cidr addr[RC_POLICY_HOSTADDR_MAX]; /* prefix 32/128 */
    size_t n;
} rc_policy_hostaddrs;

/* Step 2, for every candidate address and again for the address actually connected to.
 * IPv4-mapped IPv6 addresses are judged as IPv4. own may be NULL. ret->domain is left NULL. */
void rc_policy_check_addr(const rc_policy *p, const struct sockaddr *sa,
                          const rc_policy_hostaddrs *own, rc_policy_verdict *ret);

/* The SSRF class of an address ("loopback", "private", "link-local", ...) or NULL when it is an
 * ordinary public address. Exposed for tests and audit lines. */
const char *rc_policy_addr_class(const struct sockaddr *sa);

/* A key/value pair of the request (query parameter after percent-decoding, or header). */
typedef struct rc_policy_kv {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} rc_policy_kv;

typedef struct rc_policy_request {
    const char *method;
    const char *path; /* origin path without the query, as sent upstream */
    size_t path_len;
    const rc_policy_kv *query;
    size_t n_query;
    const rc_policy_kv *headers; /* names as received; matched case-insensitively */
    size_t n_headers;
} rc_policy_request;

/* Step 3. Returns 1 with *ret_rule / *ret_index (either may be NULL) for the first matching rule,
 * 0 when none matches, negative when a matcher could not run (deny the request). */
int rc_policy_match_request(const rc_policy_domain *d, const rc_policy_request *req,
                            const rc_policy_rule **ret_rule, size_t *ret_index, rc_error *err);

/* ---- request-side helpers ---- */

/* Project hardening (reference-app 9.3.1): 0 when path is an origin path that means exactly what
 * it says; -RC_EINVAL (reason in err) for dot segments, empty segments, a backslash, %2e %2f %5c,
 * percent-encoded unreserved characters, bad percent escapes, or bytes outside visible ASCII. */
int rc_policy_path_check(const char *path, size_t len, rc_error *err);

/* A request's query string split on '&' and the first '=', percent-decoded ('+' stays '+').
 * -RC_EINVAL for a bad escape or a decoded NUL, -RC_ETOOBIG past RC_POLICY_QUERY_MAX params. */
typedef struct rc_policy_query {
    rc_policy_kv kv[RC_POLICY_QUERY_MAX];
    size_t n;
    char *store; /* decoded bytes the kv entries point into */
} rc_policy_query;

int rc_policy_query_parse(const char *q, size_t len, rc_policy_query *ret, rc_error *err);
void rc_policy_query_free(rc_policy_query *q);

/* Parse a forwardURL value strictly: https only, a valid host name or IP literal, an optional
 * port, an optional path that passes rc_policy_path_check, no userinfo, query or fragment, at most
 * RC_POLICY_URL_MAX bytes. Fills rule->fwd_*; the reason for a refusal is in err. */
int rc_policy_forward_url_parse(const char *url, rc_policy_rule *rule, rc_error *err);

/* Parse "a.b.c.d/n" or "x:y::/n" (strict: prefix required, no host bits set). */
int rc_policy_cidr_parse(const char *s, rc_policy_cidr *ret, rc_error *err);
/* True when sa (mapped IPv4 judged as IPv4) lies inside c. */
bool rc_policy_cidr_contains(const rc_policy_cidr *c, const struct sockaddr *sa);

/* True when s is a valid lowercase host name (LDH labels, <= 253 bytes, not an IP literal). */
bool rc_policy_hostname_valid(const char *s);

#endif
