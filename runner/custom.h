/* custom.h - custom tools declared in a manifest file and run by the runner (protocol 17.13).
 *
 * A team replaces a broad `run_shell` with named tools (`run_tests`, `read_project_file`,
 * `list_changed_files`): each manifest entry names the tool, the program, how its argv is built
 * from the tool input, the working directory, the time limit, the output cap and extra
 * environment. The same entry carries the agent's tool definition (description, input_schema), so
 * the manifest is the one place a reviewer reads to see which tools the agent has and what each
 * one runs; rc_custom_tools_agent_json() prints the `tools` list a create-agent script sends.
 * The format is documented in docs/CUSTOM_TOOLS.md.
 *
 * Two layers:
 * - rc_custom_manifest (manifest.c): the parsed, validated manifest as plain read-only data.
 *   Parsing is strict (unknown keys, wrong types and out-of-range values are errors naming the
 *   tool and the field) and needs no file system.
 * - rc_custom_tools (custom.c): a manifest plus what running it needs (the call lock and the
 *   cancellation pipe). rc_custom_tools_run builds the command from one tool input (values are
 *   never split, globbed or shell-interpreted), starts it with fork + execve in its own process
 *   group (scrubbed environment, stdin from /dev/null unless declared, no other fds, the tool
 *   user's ids), reads its merged stdout+stderr with a deadline, keeps the tail, kills the group
 *   on exit, timeout or cancellation, and turns every outcome into content blocks + is_error.
 *
 * Threading: calls on one rc_custom_tools are serialised. rc_custom_tools_cancel may be called
 * from any thread or a signal handler; it kills the running tool and makes every later call fail
 * as cancelled (the runner cancels only when it shuts down). */
#ifndef RUNCELL_CUSTOM_H
#define RUNCELL_CUSTOM_H

#include "buf.h"
#include "err.h"
#include "tools.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- limits ------------------------------------------------------------------------------- */

#define RC_CUSTOM_MANIFEST_MAX_BYTES ((size_t)256 * 1024) /* manifest file size */
#define RC_CUSTOM_MANIFEST_MAX_DEPTH 32u                  /* JSON nesting (schemas nest) */
#define RC_CUSTOM_MAX_TOOLS          128     /* agents should stay at or under 128 tools */
#define RC_CUSTOM_NAME_MAX           128     /* tool name length (17.13.2) */
#define RC_CUSTOM_MAX_ARGS           256     /* argv template entries */
#define RC_CUSTOM_MAX_ENV            64      /* env entries */
#define RC_CUSTOM_ENV_NAME_MAX       128     /* env variable name length */
#define RC_CUSTOM_DEFAULT_TIMEOUT_MS 120000  /* the runner's per-call cap (13.7.3) */
#define RC_CUSTOM_MAX_TIMEOUT_MS     120000  /* a longer limit would be cut by the runner */
#define RC_CUSTOM_DEFAULT_OUTPUT     102400  /* bytes of output kept (the tail), like bash */
#define RC_CUSTOM_MAX_OUTPUT         524288  /* largest max_output_bytes accepted */
#define RC_CUSTOM_MAX_VALUE_BYTES    65536   /* one input value placed in argv or env */
#define RC_CUSTOM_MAX_STDIN_BYTES    1048576 /* an input field fed to stdin */
#define RC_CUSTOM_DEFAULT_SHELL      "/bin/sh"
#define RC_CUSTOM_TRUNCATED_PREFIX   "[output truncated]\n"

/* ---- the manifest (manifest.c) ------------------------------------------------------------ */

enum rc_custom_arg_kind {
    RC_CUSTOM_ARG_LITERAL = 0, /* a fixed string */
    RC_CUSTOM_ARG_INPUT,       /* a value taken from the tool input */
};

/* One argv entry, one env value or the stdin source. */
typedef struct rc_custom_arg {
    int kind;      /* enum rc_custom_arg_kind */
    char *literal; /* LITERAL: the text */
    char *input;   /* INPUT: the input field's name */
    char *flag;    /* INPUT: argv entry placed before the value (a true boolean: the flag alone) */
    char *prefix;  /* INPUT: text glued in front of the value ("--filter=" + value) */
    cJSON *default_value; /* INPUT: scalar used when the field is absent (NULL: none) */
    bool optional;        /* INPUT: absent field -> nothing (no flag either) */
    bool path; /* INPUT: a path that must resolve inside the workdir; the resolved one is used */
    bool allow_dash; /* INPUT: a bare argv value may start with '-' (off: refused, see docs) */
} rc_custom_arg;

typedef struct rc_custom_env {
    char *name;
    rc_custom_arg value;
} rc_custom_env;

typedef struct rc_custom_tool {
    char *name;
    char *description;   /* NULL when not declared */
    cJSON *input_schema; /* NULL when not declared (a schema is generated for the agent) */
    char *program;       /* absolute path, executed as is (no PATH search) */
    bool shell;          /* program -c script name args...: inputs only as $1.. and env */
    char *script;        /* shell only: the fixed script text */
    rc_custom_arg *args; /* argv after argv[0] (or the positional parameters with shell) */
    size_t nargs;
    rc_custom_env *env; /* set on top of the inherited, scrubbed environment */
    size_t nenv;
    bool inherit_env; /* false: only PATH plus env */
    bool has_stdin;   /* false: stdin is /dev/null */
    rc_custom_arg stdin_arg;
    char *cwd;               /* relative to the workdir; "" = the workdir itself */
    int timeout_ms;          /* 1..RC_CUSTOM_MAX_TIMEOUT_MS */
    size_t max_output_bytes; /* 1..RC_CUSTOM_MAX_OUTPUT */
    int ok_exit_codes[16];   /* exit statuses that are not errors; default {0} */
    size_t n_ok_exit_codes;
} rc_custom_tool;

typedef struct rc_custom_manifest {
    rc_custom_tool *tools;
    size_t count;
} rc_custom_manifest;

/* Parse and validate manifest text. origin names it in error messages (a path; NULL:
 * "manifest"). Errors: -RC_ETOOBIG, -RC_EPARSE (not strict JSON), -RC_EINVAL (valid JSON that is
 * not a valid manifest; the message names the tool and the field), -RC_ENOMEM. */
int rc_custom_manifest_parse(const char *text, size_t len, const char *origin,
                             rc_custom_manifest **ret, rc_error *err);
void rc_custom_manifest_free(rc_custom_manifest *m);
const rc_custom_tool *rc_custom_manifest_find(const rc_custom_manifest *m, const char *name);
/* The agent's `tools` entries: [{"type":"custom","name":...,"description":...,
 * "input_schema":...}, ...] in manifest order; a tool without input_schema gets one generated
 * from its placeholders (every value a string; required = the inputs without optional/default). */
int rc_custom_manifest_agent_json(const rc_custom_manifest *m, cJSON **ret, rc_error *err);

/* ---- running (custom.c) ------------------------------------------------------------------- */

typedef struct rc_custom_tools rc_custom_tools;

typedef struct rc_custom_run_opts {
    const char *workdir; /* NULL: the current directory */
    int uid, gid;        /* -1 = unchanged */
} rc_custom_run_opts;

/* Read and validate the manifest at manifest_path (at most RC_CUSTOM_MANIFEST_MAX_BYTES) and
 * check that every program exists and is executable. A NULL or empty path, or a file that does
 * not exist, gives an empty set (count 0); any other problem is an error whose message says which
 * tool and which field. */
int rc_custom_tools_load(const char *manifest_path, rc_custom_tools **ret, rc_error *err);
/* Same from manifest text, without the program check (tests, fuzzing). */
int rc_custom_tools_from_text(const char *text, size_t len, const char *origin,
                              rc_custom_tools **ret, rc_error *err);

/* Run the tool `name` with `input` (an object; anything else counts as {}). *ret must be zeroed
 * or hold an earlier result (it is replaced). Returns 0 with *ret filled for every outcome the
 * model should see (success; a refused input; a failed start; a non-zero exit, a signal, a timeout
 * or a cancellation, all with is_error), -RC_ENOTFOUND when the name is not in the manifest (the
 * runner then posts nothing), or another negative code when not even an error result could be
 * built. */
int rc_custom_tools_run(rc_custom_tools *ct, const char *name, const cJSON *input,
                        const rc_custom_run_opts *opts, rc_tool_result *ret, rc_error *err);

/* What the last call did, for the runner's one log line per tool call (never the output). */
typedef struct rc_custom_run_info {
    bool started;  /* false: refused input, failed start, or cancelled before it */
    int exit_code; /* 0-255 when it exited, else -1 */
    int signal;    /* the signal that ended it, else 0 (a timeout or cancel: SIGKILL) */
    bool timed_out;
    bool cancelled;
    size_t output_bytes; /* bytes it wrote to stdout+stderr, before the cap */
    long long duration_ms;
} rc_custom_run_info;

/* Copy of the last call's info (zeroed before the first call). Call it from the thread that
 * called rc_custom_tools_run. */
void rc_custom_tools_last_run(const rc_custom_tools *ct, rc_custom_run_info *ret);

/* Async-signal-safe; see the threading note above. */
void rc_custom_tools_cancel(rc_custom_tools *ct);
/* NULL is a no-op. Must not race a running call. */
void rc_custom_tools_free(rc_custom_tools *ct);
size_t rc_custom_tools_count(const rc_custom_tools *ct);
bool rc_custom_tools_owns(const rc_custom_tools *ct, const char *name);
const rc_custom_manifest *rc_custom_tools_manifest(const rc_custom_tools *ct);
/* The agent's tool definitions, see rc_custom_manifest_agent_json. */
int rc_custom_tools_agent_json(const rc_custom_tools *ct, cJSON **ret, rc_error *err);

/* ---- the command for one call (exposed for tests and the fuzzer) -------------------------- */

typedef struct rc_custom_cmd {
    char **argv;      /* NULL-terminated; argv[0] is the program */
    char **env_set;   /* NULL-terminated "NAME=value" entries the manifest adds */
    char *cwd;        /* canonical absolute working directory */
    char *stdin_data; /* NULL: stdin is /dev/null */
    size_t stdin_len;
} rc_custom_cmd;

void rc_custom_cmd_clear(rc_custom_cmd *cmd);

/* Build the command for tool t and input; workdir must be absolute (it is canonicalised here).
 * Returns 0 and fills *ret; 1 when the input is refused, with the model-facing message appended
 * to msg (`<tool>: <field> is required`, `path "<p>" is outside the session's working
 * directory`...); negative on an internal failure. Executes nothing. */
int rc_custom_cmd_build(const rc_custom_tool *t, const cJSON *input, const char *workdir,
                        rc_custom_cmd *ret, rc_buf *msg, rc_error *err);

#endif
