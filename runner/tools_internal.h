/* tools_internal.h - what the tool modules share and the runner does not see: the toolbox
 * itself, result builders, input getters, UTF-8 repair, path confinement (pathconf.c) and the
 * children's environment and spawning (toolenv.c). */
#ifndef RUNCELL_TOOLS_INTERNAL_H
#define RUNCELL_TOOLS_INTERNAL_H

#include "buf.h"
#include "tools.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Messages for the model may quote a path of any length the input allows. */
#define RC_TOOLS_MSG_MAX ((size_t)4 * 1024 * 1024)

typedef struct rc_bash_shell {
    pid_t pid; /* 0 when no shell runs; also its process group and session id */
    int in_fd; /* our end of the shell's stdin (a socket, so writes never raise SIGPIPE) */
    int out_fd;
    int pidfd; /* -1 when the kernel has no pidfd_open */
} rc_bash_shell;

struct rc_toolbox {
    pthread_mutex_t lock; /* one call at a time */
    char *workdir;
    char **allowed_roots;     /* NULL-terminated, never NULL */
    char **read_only_roots;   /* NULL-terminated, never NULL */
    char **child_env;         /* scrubbed, NULL-terminated */
    long long max_file_bytes; /* < 0: no cap */
    int call_timeout_ms;
    int grep_timeout_ms;
    int rg_mode;
    bool read_text_only;
    bool set_ids;
    uid_t uid;
    gid_t gid;
    int last_exit_status; /* the last bash command's exit status; -1 when the call ran none */
    atomic_int cancelled;
    int cancel_rd, cancel_wr; /* self-pipe: readable once cancelled */
    rc_bash_shell bash;
};

/* ---- toolbox.c: results, inputs, time, ids ------------------------------------------------ */

/* Set ret to one text block (text repaired as UTF-8, "" becomes "(no output)"). */
int rc_tools_result_text(rc_tool_result *ret, bool is_error, const char *text, size_t len,
                         rc_error *err);
/* Formatted error result (is_error = 1). */
int rc_tools_result_errorf(rc_tool_result *ret, rc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Formatted success result (is_error = 0). */
int rc_tools_result_okf(rc_tool_result *ret, rc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* String field: 1 and *ret when a non-empty string, 0 when missing/null/"" , -1 when another
 * type (the caller reports "<tool>: <key> must be a string"). */
int rc_tools_input_string(const cJSON *in, const char *key, const char **ret);
/* Present string field (may be ""): 1, missing/null: 0, other type: -1. */
int rc_tools_input_string_any(const cJSON *in, const char *key, const char **ret);
bool rc_tools_input_true(const cJSON *in, const char *key);

/* Append s[0..n) to out with invalid UTF-8 replaced by U+FFFD (maximal subparts, as a WHATWG
 * decoder does) and NUL bytes replaced by U+FFFD too (JSON text cannot carry them here). */
int rc_utf8_repair(rc_buf *out, const char *s, size_t n, rc_error *err);
/* Largest k <= n such that s[0..k) does not end inside a UTF-8 sequence. */
size_t rc_utf8_cut_prefix(const char *s, size_t n);
/* Number of bytes at the start of s[0..n) that are continuation bytes (at most 3). */
size_t rc_utf8_skip_continuation(const char *s, size_t n);

/* Monotonic milliseconds. */
int64_t rc_tools_now_ms(void);
/* "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" (36 chars + NUL) from getrandom. */
int rc_tools_uuid(char out[37], rc_error *err);
bool rc_tools_cancelled(const rc_toolbox *tb);
long long rc_tools_file_cap(const rc_toolbox *tb);

/* Switch the calling thread's filesystem ids to the tool user (no-op without set_ids). */
typedef struct rc_tools_creds {
    bool active;
    uid_t fsuid;
    gid_t fsgid;
    int ngroups;
    gid_t *groups;
} rc_tools_creds;
int rc_tools_creds_enter(const rc_toolbox *tb, rc_tools_creds *saved, rc_error *err);
void rc_tools_creds_leave(rc_tools_creds *saved);

/* ---- the tools (tool_bash.c, tool_files.c, tool_search.c) ------------------------------- */

int rc_tool_bash(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err);
void rc_tool_bash_close(rc_toolbox *tb);
int rc_tool_read(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err);
int rc_tool_write(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err);
int rc_tool_edit(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err);
int rc_tool_glob(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err);
int rc_tool_grep(rc_toolbox *tb, const cJSON *in, rc_tool_result *ret, rc_error *err);

/* Exposed for unit tests. */
size_t rc_bash_strip_ansi(char *s, size_t n);
bool rc_glob_match(const char *pattern, const char *rel);
int rc_grep_translate(const char *js, rc_buf *ere, rc_buf *why, rc_error *err);

/* ---- pathconf.c: path confinement (section 17.3) and confined opening --------------------- */

/* The outcome of confining a path: path is the canonical target T (no symlinks), root the
 * canonical root that contains it (workdir or an allowed root), rel the part of T below root
 * ("" when T is the root itself). */
typedef struct rc_confined {
    char *path;
    char *root;
    const char *rel; /* points into path */
} rc_confined;

void rc_confined_clear(rc_confined *c);

/* base + p collapsed lexically ('.', '..', empty components); p absolute ignores base. */
int rc_pathconf_lexical(const char *base, const char *p, char **ret, rc_error *err);
/* Canonical form of an absolute path (the algorithm of 17.3 step 3): -RC_EIO with
 * err->sys_errno on failure (ELOOP after 40 symlinks). */
int rc_pathconf_canonicalize(const char *abs, char **ret, rc_error *err);
/* p == root or p below root, on canonical paths. */
bool rc_pathconf_within(const char *root, const char *p);
/* Confine p (17.3): 0; -RC_EINVAL when outside every root; -RC_EIO (sys_errno) when it cannot
 * be canonicalised. */
int rc_pathconf_confine(const rc_toolbox *tb, const char *p, rc_confined *ret, rc_error *err);
/* The model's message for a failed rc_pathconf_confine (no tool prefix). */
int rc_pathconf_message(const rc_toolbox *tb, const char *p, const rc_error *cause, rc_buf *out,
                        rc_error *err);
/* The configured read-only root containing the canonical target, or NULL. */
const char *rc_pathconf_read_only_root(const rc_toolbox *tb, const char *target);

/* Open the directory root/rel_dir without following any symlink and without leaving root
 * (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or a component walk with O_NOFOLLOW). With
 * create, missing components are made with mode 0700. flags: O_PATH or O_RDONLY (plus
 * O_DIRECTORY|O_CLOEXEC, always added). -RC_EIO with sys_errno on failure. */
int rc_pathconf_open_dir(const char *root, const char *rel_dir, bool create, int flags, int *ret_fd,
                         rc_error *err);
/* Split rel into its directory part (returned, "" for none) and its last component. */
int rc_pathconf_split(const char *rel, char **ret_dir, const char **ret_base, rc_error *err);

/* The wording of 17.4 for an errno ("no such file or directory", "i/o error (EIO)"...). */
const char *rc_fs_reason(int errnum, char *scratch, size_t scratch_len);
/* "<label>: <reason>" appended to out. */
int rc_fs_message(rc_buf *out, const char *label, int errnum, rc_error *err);
/* Append p as JSON.stringify would quote it. */
int rc_json_quote_append(rc_buf *out, const char *p, rc_error *err);

/* ---- toolenv.c: children's environment and spawning (17.6) -------------------------------- */

/* Whether the variable in "NAME=value" must be kept from children. */
bool rc_toolenv_scrubbed(const char *entry, const char *const *extra_prefixes);
/* Copy of base without scrubbed entries (and entries without '='), then with each "K=V" of set
 * replacing or adding K. */
int rc_toolenv_build(const char *const *base, const char *const *extra_prefixes,
                     const char *const *set, char ***ret, rc_error *err);
void rc_toolenv_free(char **env);
const char *rc_toolenv_get(char *const *env, const char *name);

typedef struct rc_spawn {
    const char *path; /* exact executable path (no PATH search) */
    char *const *argv;
    char *const *envp;
    const char *cwd; /* NULL: inherit */
    int stdin_fd;    /* -1: /dev/null */
    int stdout_fd;   /* -1: /dev/null */
    int stderr_fd;   /* -1: /dev/null */
    bool set_ids;
    uid_t uid;
    gid_t gid;
} rc_spawn;

/* fork + exec in a new session (the child leads its own process group), every signal back to
 * its default, no inherited fds besides 0-2. An exec or set-up failure in the child is reported
 * here (-RC_EIO with sys_errno). */
int rc_toolenv_spawn(const rc_spawn *s, pid_t *ret_pid, rc_error *err);
/* pidfd for pid, or -1 when the kernel has none. */
int rc_toolenv_pidfd(pid_t pid);
/* SIGKILL the process group and reap the leader, waiting at most wait_ms; returns its wait
 * status or -1. */
int rc_toolenv_kill_group(pid_t pid, int pidfd, int wait_ms);
/* First executable `name` in the absolute entries of path_var whose real path is outside every
 * directory of not_inside; the real path is returned. -RC_ENOTFOUND when none. */
int rc_toolenv_find_exec(const char *name, const char *path_var, const char *const *not_inside,
                         char **ret, rc_error *err);

#endif
