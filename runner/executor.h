/* executor.h - the tool executor: the child process that runs the file tools (read, write, edit,
 * glob, grep) for the runner, under the tool user's uid/gid, with no access to the runner's API
 * channel, memory or files (issue 4, "Privilege separation").
 *
 * The runner starts it once at start-up by fork + exec of its own binary (/proc/self/exe with
 * RC_EXECUTOR_ARG): a fresh image holds none of the runner's memory (no credential, no API
 * client), its environment is the tools' scrubbed one (no ANTHROPIC_* or RUNCELL_*), and its
 * only descriptors are 0 (its end of a socketpair) and 1/2 (/dev/null). With a tool uid/gid the
 * child switches ids (setgroups, setresgid, setresuid) before exec; the runner itself is not
 * dumpable, so the executor cannot ptrace it or read its /proc files either way.
 *
 * Protocol over the socketpair: frames of a 4-byte big-endian length then that many bytes of
 * JSON, at most RC_EXECUTOR_FRAME_MAX. First the runner sends the toolbox configuration and the
 * executor answers {"ready":true,"pid":..,"uid":..,"gid":..}; then one request
 * {"name":..,"input":..} and one answer {"is_error":..,"content":[..]} (or {"error":"msg"} for
 * an internal failure) per call, strictly alternating.
 *
 * Failures never hang the runner: an executor that dies or stops answering (call timeout plus a
 * margin) is killed, restarted, and the call in flight gets an "Error: ..." result. A dead
 * executor found before a call is restarted silently and the call runs normally.
 *
 * Threading: rc_executor_run from one thread (the session thread); rc_executor_cancel from any
 * thread or a signal handler. */
#ifndef RUNCELL_RUNNER_EXECUTOR_H
#define RUNCELL_RUNNER_EXECUTOR_H

#include "buf.h"
#include "err.h"
#include "tools.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RC_EXECUTOR_ARG             "--tool-executor" /* argv[1] of the executor image */
#define RC_EXECUTOR_FRAME_HEADER    4
#define RC_EXECUTOR_FRAME_MAX       ((size_t)32 * 1024 * 1024) /* payload bytes */
#define RC_EXECUTOR_START_MS        5000 /* the executor must be ready within this */
#define RC_EXECUTOR_MARGIN_MS       10000 /* added to the call timeout before the executor is killed */
#define RC_EXECUTOR_CANCEL_GRACE_MS 2000 /* after a cancel, before the executor is killed */

typedef struct rc_executor_config {
    const rc_toolbox_config
        *tools;           /* the executor's toolbox; set_ids/uid/gid: the user it runs as */
    const char *exe_path; /* the binary to exec; NULL = /proc/self/exe */
    int call_wait_ms;     /* longest wait for one answer; 0 = call timeout + margin */
} rc_executor_config;

typedef struct rc_executor rc_executor;

/* True for the tools the executor runs: read, write, edit, glob, grep. */
bool rc_executor_owns(const char *name);

/* Start the executor and wait until it is ready (RC_EXECUTOR_START_MS). A failure to switch to
 * the tool user, to exec, or to build the toolbox is an error here: the runner does not start. */
int rc_executor_start(const rc_executor_config *cfg, rc_executor **ret, rc_error *err);

/* Run one call in the executor. 0 with *ret for every outcome the model should see (including
 * "Error: ..." results for a dead, hung or unstartable executor), -RC_ENOTFOUND for a name the
 * executor does not own, -RC_ENOMEM when no result could be built. */
int rc_executor_run(rc_executor *ex, const char *name, const cJSON *input, rc_tool_result *ret,
                    rc_error *err);

/* Async-signal-safe: the running call is cancelled (the executor's toolbox gets the cancel; a
 * call that does not finish within RC_EXECUTOR_CANCEL_GRACE_MS is cut off) and every later call
 * fails as aborted without starting. */
void rc_executor_cancel(rc_executor *ex);

/* The executor's pid (0 when none runs) and how many times it was restarted (tests, logs). */
pid_t rc_executor_pid(const rc_executor *ex);
unsigned rc_executor_restarts(const rc_executor *ex);

/* Close the socket (the executor exits on EOF), then SIGKILL and reap it. NULL is a no-op. */
void rc_executor_free(rc_executor *ex);

/* ---- the executor's side ---------------------------------------------------------------- */

/* main() of the executor image: fd is its socket (0). Returns the process exit status. */
int rc_executor_main(int fd);

/* Serve requests on fd with tb until EOF (0) or a broken channel (negative). Exposed for tests,
 * which run it in a forked child without exec. */
int rc_executor_serve(int fd, rc_toolbox *tb, rc_error *err);

/* ---- frames and messages (exposed for tests and the fuzzer) ------------------------------- */

/* Parse one frame at the start of buf[0..n): 1 with the payload and the bytes used when
 * complete, 0 when more bytes are needed, -RC_ETOOBIG when the announced length exceeds max,
 * -RC_EPARSE for an empty frame. */
int rc_executor_frame_parse(const void *buf, size_t n, size_t max, const char **ret_payload,
                            size_t *ret_len, size_t *ret_used, rc_error *err);
/* Append the header and payload to out. */
int rc_executor_frame_append(rc_buf *out, const char *payload, size_t len, rc_error *err);

/* Request payload {"name":..,"input":..}: encode (framed) / decode. */
int rc_executor_request_encode(const char *name, const cJSON *input, rc_buf *out, rc_error *err);
int rc_executor_request_decode(const char *payload, size_t len, char **ret_name, cJSON **ret_input,
                               rc_error *err);
/* Answer payload: encode (framed) a result, or an internal error when res is NULL. Decode: 0
 * with *ret for a result (content validated: an array of 1+ blocks, each an object with a string
 * "type", a text block with a string "text"), -RC_EIO with the executor's message for an
 * internal error, -RC_EPARSE for anything malformed. */
int rc_executor_answer_encode(const rc_tool_result *res, const char *internal_error, rc_buf *out,
                              rc_error *err);
int rc_executor_answer_decode(const char *payload, size_t len, rc_tool_result *ret, rc_error *err);

#endif
