/* resolve.h - name resolution for the egress proxy, off its event loop.
 *
 * The container has no resolver: the broker resolves the names its policy allowed. getaddrinfo
 * blocks, so lookups run on a small pool of worker threads and finished results are collected
 * by the event loop when the resolver's eventfd becomes readable. For tests, a hosts file
 * (`ADDRESS NAME...` lines, like /etc/hosts) can replace DNS entirely: with one configured, a
 * name that is not in it does not exist, and lookups answer at once without threads. */
#ifndef RUNCELL_BROKER_RESOLVE_H
#define RUNCELL_BROKER_RESOLVE_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RC_RESOLVE_ADDRS_MAX   8u
#define RC_RESOLVE_PENDING_MAX 256u
#define RC_RESOLVE_HOSTS_MAX   1024u /* lines of a hosts file */

typedef struct rc_resolve_result {
    struct sockaddr_storage addr[RC_RESOLVE_ADDRS_MAX]; /* port already set */
    size_t n;
    int code; /* 0, or RC_ENOTFOUND / RC_EIO when the lookup failed (n == 0) */
} rc_resolve_result;

typedef struct rc_resolver rc_resolver;

/* hosts_file: NULL for DNS (threads worker threads); otherwise the only source of names. */
int rc_resolver_new(const char *hosts_file, unsigned threads, rc_resolver **ret, rc_error *err);
void rc_resolver_free(rc_resolver *r);
/* Readable when rc_resolver_next has results; -1 in hosts-file mode (nothing is ever queued). */
int rc_resolver_fd(const rc_resolver *r);
/* Look up name (a valid lowercase host name). Returns 1 with *ret filled when answered at once
 * (hosts-file mode), 0 when queued (the result comes from rc_resolver_next with cookie), or
 * -RC_ETOOBIG when too many lookups are pending. */
int rc_resolver_start(rc_resolver *r, const char *name, uint16_t port, void *cookie,
                      rc_resolve_result *ret, rc_error *err);
/* One finished lookup: 1 with *ret_cookie and *ret, 0 when there is none (drains the eventfd). */
int rc_resolver_next(rc_resolver *r, void **ret_cookie, rc_resolve_result *ret);
/* Drop the result of every pending lookup started with cookie. */
void rc_resolver_cancel(rc_resolver *r, void *cookie);

#endif
