/* netns.h - bind a listening socket inside another network namespace, from the host.
 *
 * The container's network namespace holds only `lo`; the broker's egress proxy must listen on
 * 127.0.0.1:3128 *inside* it while the broker itself stays in the host namespace (where it can
 * reach upstreams). A socket belongs to the namespace it was created in for its whole life, so a
 * short-lived thread enters the target namespace with setns(2) (a per-thread operation for
 * CLONE_NEWNET), creates and binds the socket, and exits; the fd is handed back and used from the
 * host namespace. Needs CAP_SYS_ADMIN over the target namespace. */
#ifndef RUNCELL_BROKER_NETNS_H
#define RUNCELL_BROKER_NETNS_H

#include "err.h"

#include <stdint.h>

/* ns: NULL (the caller's own namespace), a name under /var/run/netns, or an absolute path such as
 * /var/run/netns/NAME or /proc/PID/ns/net. addr: a numeric IPv4 or IPv6 address. port 0 picks a
 * free port; *ret_port (optional) gets the port actually bound. The fd is non-blocking and
 * close-on-exec, listening with the given backlog. */
int rc_netns_listen_tcp(const char *ns, const char *addr, uint16_t port, int backlog, int *ret_fd,
                        uint16_t *ret_port, rc_error *err);

#endif
