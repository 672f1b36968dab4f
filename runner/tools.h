/* tools.h - the built-in tools of `agent_toolset_20260401` (bash, read, write, edit, glob, grep)
 * as a library the runner calls once per tool call (protocol section 17).
 *
 * One rc_toolbox per session holds the workdir, the allowed and read-only roots, the scrubbed
 * environment for children, the persistent bash shell and the limits. rc_toolbox_run executes one
 * call and turns every outcome the model should see (success, a tool error, an internal failure
 * as "Error: <message>") into content blocks plus is_error, with the exact texts of the spec.
 *
 * Threading: calls on one toolbox are serialised by the toolbox (the runner runs one call at a
 * time anyway). rc_toolbox_cancel may be called from any thread and from a signal handler: it
 * makes the running bash or grep call stop at once (bash kills its whole process group) and every
 * later bash or grep call fail as aborted, which is what a runner shutting down wants.
 *
 * Privileges: with set_ids, children (bash, rg) run as uid/gid (setgroups + setresgid +
 * setresuid in the child before exec), and the file tools run with the calling thread's
 * filesystem ids switched to uid/gid for the duration of the call (setfsuid/setfsgid, per
 * thread), so permission checks and file ownership are those of the tool user. Both need the
 * runner to be privileged; a toolbox that cannot switch reports it as an error result. The
 * runner itself runs the file tools in the tool executor process (executor.h), whose toolbox
 * already runs as the tool user and needs no switch. */
#ifndef RUNCELL_TOOLS_H
#define RUNCELL_TOOLS_H

#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <sys/types.h>

#define RC_TOOLS_BASH_OUTPUT_MAX  102400 /* bytes of bash output kept (the tail) */
#define RC_TOOLS_BASH_TIMEOUT_MS  120000 /* bash default when timeout_ms is absent or <= 0 */
#define RC_TOOLS_CALL_TIMEOUT_MS  120000 /* the runner's cap on every call */
#define RC_TOOLS_MAX_FILE_BYTES   262144 /* read/edit size cap */
#define RC_TOOLS_GREP_OUTPUT_MAX  102400 /* grep output budget */
#define RC_TOOLS_GREP_TIMEOUT_MS  60000  /* built-in grep time limit */
#define RC_TOOLS_GREP_MAX_LINE    2000   /* longer lines are skipped by the built-in grep */
#define RC_TOOLS_GREP_MAX_RUNNING 4      /* built-in searches at once, per process */
#define RC_TOOLS_GLOB_RESULTS     200    /* newest matches returned */
#define RC_TOOLS_WALK_MAX_ENTRIES 50000  /* directory entries a glob or grep walk visits */
#define RC_TOOLS_WALK_MAX_DEPTH   40     /* directory levels below the search root */

enum rc_toolbox_rg_mode {
    RC_TOOLBOX_RG_AUTO = 0, /* grep uses an `rg` found on PATH (outside the roots), else built-in */
    RC_TOOLBOX_RG_NEVER,    /* always the built-in walker */
};

typedef struct rc_toolbox_config {
    const char *workdir;                /* required; relative paths resolve against it */
    const char *const *allowed_roots;   /* NULL-terminated; more directories the file tools reach */
    const char *const *read_only_roots; /* NULL-terminated; write/edit refuse targets inside */
    const char *const *env;             /* children's base environment ("K=V"); NULL = environ */
    const char *const
        *scrub_prefixes;      /* more variable-name prefixes to remove (ANTHROPIC_ always) */
    long long max_file_bytes; /* read/edit cap: 0 = RC_TOOLS_MAX_FILE_BYTES, < 0 = none */
    int call_timeout_ms;      /* 0 = RC_TOOLS_CALL_TIMEOUT_MS */
    int grep_timeout_ms;      /* 0 = RC_TOOLS_GREP_TIMEOUT_MS */
    int rg_mode;              /* enum rc_toolbox_rg_mode */
    bool read_text_only;      /* read returns images as text too (the TypeScript SDK's behaviour) */
    bool set_ids;             /* run tools as uid/gid */
    uid_t uid;
    gid_t gid;
} rc_toolbox_config;

/* Content blocks (a cJSON array: [{"type":"text","text":...}] or one image block) + is_error.
 * content belongs to the holder; release with rc_tool_result_clear. */
typedef struct rc_tool_result {
    cJSON *content;
    int is_error;
} rc_tool_result;

typedef struct rc_toolbox rc_toolbox;

/* Copies everything it needs from cfg (the strings and arrays may be freed afterwards) and
 * snapshots the environment. No shell is started until the first bash call. */
int rc_toolbox_new(const rc_toolbox_config *cfg, rc_toolbox **ret, rc_error *err);

/* True for the six built-in names. */
bool rc_toolbox_owns(const char *name);

/* Runs the built-in tool `name` with `input` (an object; anything else is treated as {}).
 * Returns 0 with *ret filled for every outcome the model should see, -RC_ENOTFOUND for a name
 * the toolbox does not own (the runner then posts nothing), or a negative code when not even an
 * error result could be built (-RC_ENOMEM). */
int rc_toolbox_run(rc_toolbox *tb, const char *name, const cJSON *input, rc_tool_result *ret,
                   rc_error *err);

/* The exit status of the command the last bash call ran (what its sentinel reported), or -1
 * when the last call ran no command to completion (another tool, a timeout, an abort). For the
 * per-call log line. */
int rc_toolbox_last_exit_status(rc_toolbox *tb);

/* Async-signal-safe; see the threading note above. */
void rc_toolbox_cancel(rc_toolbox *tb);

/* Kills the shell's process group and frees everything. NULL is a no-op. */
void rc_toolbox_free(rc_toolbox *tb);

void rc_tool_result_clear(rc_tool_result *r);

/* The text of a single-text-block result, or NULL (tests, logs). */
const char *rc_tool_result_text(const rc_tool_result *r);

#endif
