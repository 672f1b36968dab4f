/* fcgi_server.h - runcell-fcgi's listening socket, worker threads, signal handling and routes.
 *
 * The listening socket comes from systemd socket activation (exactly one socket, fd 3, checked to
 * be a listening stream socket; the LISTEN_* variables are removed whatever they said) or is a
 * unix socket created at a path. It is put in non-blocking mode so that each worker thread can
 * wait in poll() on it and on the app's shutdown eventfd, then call FCGX_Accept_r(): a shutdown
 * wakes every waiting thread at once without touching the socket (which systemd shares), and a
 * thread that is serving a request finishes it first. Signals are blocked in every thread and
 * taken with sigwait() by the thread that called rc_fcgi_server_run(). */
#ifndef RUNCELL_FCGI_SERVER_H
#define RUNCELL_FCGI_SERVER_H

#include "app.h"
#include "err.h"

#include <fcgiapp.h>
#include <signal.h>
#include <stdbool.h>

/* Take the socket passed by socket activation. Returns 1 with *ret_fd set when LISTEN_PID is this
 * process and LISTEN_FDS is 1, 0 when there is no activation, < 0 when the passed fds are unusable
 * (not exactly one, not a listening stream socket). Always unsets LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES. */
int rc_fcgi_listen_activated(int *ret_fd, rc_error *err);

/* Create a listening unix stream socket at path with the given mode (a stale socket file there is
 * replaced; any other file is an error). */
int rc_fcgi_listen_unix(const char *path, unsigned mode, int *ret_fd, rc_error *err);

/* The signals main() blocks before any thread exists. */
void rc_fcgi_signal_set(sigset_t *set);

/* Drop every capability and set no_new_privs (runcell-fcgi needs none). */
int rc_fcgi_drop_privileges(rc_error *err);

/* Serve until SIGTERM/SIGINT: start cfg->threads workers on app->listen_fd, wait for the signal,
 * let in-flight requests finish, join. Returns 0, or < 0 when no worker could start. */
int rc_fcgi_server_run(rc_fcgi_app *app, rc_error *err);

/* Route one accepted request (webhook, /healthz, /metrics, 404). */
void rc_fcgi_route(rc_fcgi_worker *w, FCGX_Request *req);

#endif
