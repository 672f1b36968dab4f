/* sdlisten.h - taking the listening socket that systemd socket activation passed (sd_listen_fds
 * without libsystemd).
 *
 * Both daemons accept exactly one socket, as fd 3 (SD_LISTEN_FDS_START), when LISTEN_PID names
 * this process. The LISTEN_* variables are always removed, so nothing the daemon starts later
 * inherits them and mistakes fd 3 for its own. */
#ifndef RUNCELL_SDLISTEN_H
#define RUNCELL_SDLISTEN_H

#include "err.h"

#define RC_SD_LISTEN_FD 3 /* SD_LISTEN_FDS_START */

/* sock_type: SOCK_STREAM or SOCK_SEQPACKET. Returns 1 with *ret_fd (set close-on-exec) when one
 * listening socket of that type was passed, 0 when the process was not socket-activated, or a
 * negative code (several sockets, wrong type, not listening, malformed LISTEN_FDS). */
int rc_sd_listen_fd(int sock_type, int *ret_fd, rc_error *err);

#endif
