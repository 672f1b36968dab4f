/* proxy.h - the session's default-deny egress proxy: an event-driven (epoll) HTTP proxy that
 * listens inside the container's network namespace and dials out from the host's.
 *
 * What a container may send it:
 *   - `CONNECT host:port`: checked against the policy (host, then every resolved address), then
 *     the TCP stream is relayed untouched. Refused for domains whose policy entry has rules,
 *     because those rules could not be applied to an encrypted stream (TLS interception is a
 *     later issue): such domains are reached as plain http:// through the proxy instead.
 *   - absolute-form `http://host[:port]/path`: checked the same way, then the domain's rules are
 *     applied (first match wins): a `response` rule is answered by the proxy, a `transform` rule
 *     sets its headers, overwriting any the container sent. A domain with rules is always
 *     dialled over verified TLS (port 443 unless the URL names one), so the agent writes
 *     `http://api.example.com/...` and the credential exists only in the broker. A domain
 *     without rules is forwarded over plain HTTP. One request per connection (the upstream
 *     request says `Connection: close`; the response is relayed as it comes).
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
#include "err.h"
#include "policy.h"

#define RC_PROXY_DENY_HEADER "x-runcell-deny-reason"

typedef struct rc_proxy_config {
    const rc_policy *policy;     /* borrowed; must outlive the proxy */
    rc_audit *audit;             /* borrowed; NULL: no audit lines */
    const char *ca_file;         /* trust for upstream TLS; NULL: the system store */
    const char *hosts_file;      /* test-only name map replacing DNS (see resolve.h); NULL: DNS */
    unsigned max_conns;          /* 0: 512 */
    unsigned head_timeout_ms;    /* request head must arrive within; 0: 30 s */
    unsigned connect_timeout_ms; /* resolve + connect + TLS handshake; 0: 10 s */
    unsigned idle_timeout_ms;    /* no byte either way; 0: 10 min */
    unsigned resolver_threads;   /* 0: 2 */
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
