/* proxy.h - the session's default-deny egress proxy: an event-driven (epoll) HTTP proxy that
 * listens inside the container's network namespace and dials out from the host's.
 *
 * What a container may send it:
 *   - `CONNECT host:port`: checked against the policy (host, then every resolved address), then
 *     the TCP stream is relayed untouched. For a domain whose policy entry has rules, the stream
 *     cannot be left encrypted (the rules would be bypassed): with a session CA configured
 *     (cfg.ca) the proxy answers 200, terminates the client's TLS with a leaf certificate for
 *     the host, reads the request inside and treats it like a plain-HTTP request to that host
 *     (its Host must name the CONNECT target); without a CA such a CONNECT is refused.
 *   - absolute-form `http://host[:port]/path`: checked the same way, then the domain's rules are
 *     applied (first match wins): a `response` rule is answered by the proxy, a `transform` rule
 *     sets its headers, overwriting any the container sent. A domain with rules is always
 *     dialled over verified TLS (port 443 unless the URL names one), so the agent writes
 *     `http://api.example.com/...` and the credential exists only in the broker. A domain
 *     without rules is forwarded over plain HTTP. One request per connection (the upstream
 *     request says `Connection: close`; the response is relayed as it comes). A `forwardURL`
 *     rule sends the request to the operator's HTTPS proxy instead, with
 *     x-runcell-forwarded-{host,scheme,port,path} and a signed token (forward.h).
 * A response to a request that carried an injected value is scanned for that value (scan.h);
 * if it appears, the response is cut before those bytes reach the client.
 * Everything else is refused with a status, an `x-runcell-deny-reason` header and an audit line,
 * and the connection is closed: nothing refused is ever left open.
 *
 * The SSRF guard (rc_policy_check_addr) runs on every resolved address before dialling and again
 * on the address the socket actually connected to (getpeername), with the host's own addresses
 * refreshed from getifaddrs every few seconds.
 *
 * rc_proxy_run blocks SIGPIPE in the calling thread for its duration; write errors surface as
 * EPIPE instead. Not thread-safe except rc_proxy_stop. */
#ifndef RUNCELL_BROKER_PROXY_H
#define RUNCELL_BROKER_PROXY_H

#include "audit.h"
#include "ca.h"
#include "err.h"
#include "policy.h"

#define RC_PROXY_DENY_HEADER "x-runcell-deny-reason"

typedef struct rc_proxy_config {
    const rc_policy *policy; /* borrowed; must outlive the proxy */
    rc_audit *audit;         /* borrowed; NULL: no audit lines */
    const char *ca_file;     /* trust for upstream TLS; NULL: the system store */
    /* The session's interception CA (borrowed; must outlive the proxy). NULL: no interception:
     * CONNECT to a domain with rules is refused (403) as before issue 11. Set: such a CONNECT is
     * answered 200, terminated with a leaf from this CA, and each request inside is judged like
     * a plain-HTTP request (rules, Host check, response scan) and sent upstream over verified
     * TLS. Domains without rules are always tunnelled untouched. */
    const rc_ca *ca;
    /* HMAC-SHA256 key file for forwardURL tokens (forward.h). Required when the policy has
     * forwardURL rules (rc_proxy_new fails without it); NULL otherwise. */
    const char *forward_key_file;
    const char *session_id;      /* the "sid" claim of forward tokens; NULL: "" */
    const char *hosts_file;      /* test-only name map replacing DNS (see resolve.h); NULL: DNS */
    unsigned max_conns;          /* 0: 512 */
    unsigned head_timeout_ms;    /* request head must arrive within; 0: 30 s */
    unsigned connect_timeout_ms; /* resolve + connect + TLS handshake; 0: 10 s */
    unsigned idle_timeout_ms;    /* no byte either way; 0: 10 min */
    unsigned resolver_threads;   /* 0: 2 */
    /* The tool calls the runner reports running (written by the API channel's local route;
     * borrowed, must outlive the proxy). Copied when a request is about to get an injected
     * value; the injection's audit line carries them as "tool_calls" and its log line names
     * them. NULL: no such field. */
    rc_audit_calls *running_calls;
} rc_proxy_config;

typedef struct rc_proxy rc_proxy;

/* listen_fd: a listening TCP socket (for instance from rc_netns_listen_tcp); owned by the proxy
 * from now on, even on failure. */
int rc_proxy_new(const rc_proxy_config *cfg, int listen_fd, rc_proxy **ret, rc_error *err);
/* Serve until rc_proxy_stop. Open connections are closed (and audited) on the way out. */
int rc_proxy_run(rc_proxy *p, rc_error *err);
/* Ask rc_proxy_run to return; async-signal-safe and callable from any thread. */
void rc_proxy_stop(rc_proxy *p);
void rc_proxy_free(rc_proxy *p);

static inline void rc_proxy_freep(rc_proxy **p)
{
    if (*p)
        rc_proxy_free(*p);
}

#endif
