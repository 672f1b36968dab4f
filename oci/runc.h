/* runc.h - the runc driver: one session container's life through runc 1.1's CLI.
 *
 *   rc_runc_become_subreaper()        once per process, before the first create
 *   rc_runc_container_new()           names the container (id, bundle, --root, logs)
 *   rc_runc_create() + rc_runc_start() detached: runc exits, the container keeps running, its
 *                                     init is reparented to us (the subreaper)
 *   rc_runc_wait()                    waitpid on the init: the runner's real exit status, while
 *                                     pumping its stdout/stderr into the capped output log
 *   rc_runc_stop()                    SIGTERM, then SIGKILL after a grace period
 *   rc_runc_delete()                  `delete --force`: no state, cgroup or mount left
 *
 * runc is spawned with fork + execve (never a shell), with a fixed argv that holds ids and
 * paths only, and every call passes `--root <dir> --log <bundle>/runc.log --log-format json`.
 * When runc fails, the error quotes runc's own message (the last "error" line of its json log,
 * or its stderr). The container's stdout and stderr go to a pipe we read; the bytes land in
 * <bundle>/output.log up to output_max, after which they are counted and dropped (one marker line
 * says so), so a chatty container cannot fill the disk and never blocks on a full pipe. */
#ifndef RUNCELL_OCI_RUNC_H
#define RUNCELL_OCI_RUNC_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RC_RUNC_DEFAULT_OUTPUT_MAX      (8u << 20) /* bytes of container output kept */
#define RC_RUNC_DEFAULT_GRACE_MS        10000      /* SIGTERM -> SIGKILL */
#define RC_RUNC_DEFAULT_CALL_TIMEOUT_MS 60000      /* one runc invocation */
#define RC_RUNC_OUTPUT_LOG              "output.log"
#define RC_RUNC_RUNC_LOG                "runc.log"
#define RC_RUNC_PID_FILE                "init.pid"

typedef struct rc_runc_opts {
    const char *runc_path; /* NULL: "runc" found on PATH (an absolute path is used as is) */
    const char *root;      /* required: runc's --root (state) dir, created 0700 if missing */
    size_t output_max;     /* 0: RC_RUNC_DEFAULT_OUTPUT_MAX */
    int call_timeout_ms;   /* 0: RC_RUNC_DEFAULT_CALL_TIMEOUT_MS */
    int echo_fd;           /* >= 0: container output is also copied here (the CLI); else -1 */
} rc_runc_opts;

typedef struct rc_runc_container rc_runc_container;

enum rc_runc_status {
    RC_RUNC_ABSENT = 0, /* runc does not know the id */
    RC_RUNC_CREATING,
    RC_RUNC_CREATED,
    RC_RUNC_RUNNING,
    RC_RUNC_PAUSED,
    RC_RUNC_STOPPED,
};

/* Make the calling process a child subreaper (PR_SET_CHILD_SUBREAPER), so a detached
 * container's init becomes our child when runc exits. */
int rc_runc_become_subreaper(rc_error *err);

/* Find the runc binary: opts->runc_path, else PATH. -RC_ENOTFOUND with a clear message. */
int rc_runc_find(const char *runc_path, char **ret_path, rc_error *err);

/* id: the container id (a session id, rc_oci_session_id_valid); bundle: absolute dir holding
 * config.json, where the logs and pid file are written. Copies what it needs from opts. */
int rc_runc_container_new(const rc_runc_opts *opts, const char *id, const char *bundle,
                          rc_runc_container **ret, rc_error *err);
void rc_runc_container_free(rc_runc_container *c);
static inline void rc_runc_container_freep(rc_runc_container **c)
{
    if (*c)
        rc_runc_container_free(*c);
}

/* `runc create`: the container exists, its init waits for start. Opens the output pipe. */
int rc_runc_create(rc_runc_container *c, rc_error *err);
/* `runc start`. */
int rc_runc_start(rc_runc_container *c, rc_error *err);
/* `runc state`: status and init pid (0 when none). ABSENT when runc does not know the id. */
int rc_runc_state(rc_runc_container *c, int *ret_status, pid_t *ret_pid, rc_error *err);
/* `runc kill <id> <sig>` (with --all when all is true). */
int rc_runc_kill(rc_runc_container *c, int sig, bool all, rc_error *err);
/* Wait for the init to exit, pumping output, for at most timeout_ms (< 0: no limit). 0 and
 * *ret_wstatus (waitpid's status word) on exit, -RC_ETIMEOUT when the time ran out. A container
 * whose init is not our child (created by another process) is polled through `runc state`;
 * then *ret_wstatus is 0 unless known. */
int rc_runc_wait(rc_runc_container *c, int64_t timeout_ms, int *ret_wstatus, rc_error *err);
/* SIGTERM, wait grace_ms, then SIGKILL (--all) and wait for the init. *ret_wstatus optional. */
int rc_runc_stop(rc_runc_container *c, int grace_ms, int *ret_wstatus, rc_error *err);
/* `runc delete --force`; an id runc does not know is not an error. */
int rc_runc_delete(rc_runc_container *c, rc_error *err);

/* Read what the container wrote so far (non-blocking) into the output log. Returns 1 while the
 * pipe is open, 0 once every writer has closed it. For callers that run their own poll loop. */
int rc_runc_pump(rc_runc_container *c, rc_error *err);
/* The pipe's read end to poll (-1 before create or after EOF). */
int rc_runc_output_fd(const rc_runc_container *c);
/* The init's pid (0 before create). */
pid_t rc_runc_init_pid(const rc_runc_container *c);
/* Bytes of container output dropped so far: over the cap, or lost to a failing write. */
uint64_t rc_runc_output_dropped(const rc_runc_container *c);
/* The errno of the first failed write of output.log (the bytes then count as dropped), or 0. */
int rc_runc_output_errno(const rc_runc_container *c);

/* Name of a status ("running", ...). */
const char *rc_runc_status_name(int status);

#endif
