/* scenario.h - scripted-agent scenarios: the file format of spec/scenario.md §1, parsed into plain
 * structs the emulator's player walks, and the checker that judges a tool result against a step's
 * `expect`.
 *
 * The format is a contract other tools write to, so parsing is strict about what the spec defines
 * (required fields, types, enums, one step kind per step, a valid `matches` regex) and every
 * rejection names the offending field as a JSON path ("turns[1].steps[0].expect.matches: ...").
 * Unknown keys are accepted at the top level and in `agent` / `session` (extensions are welcome
 * there), but rejected inside turns, steps and `expect`, where a misspelt key would silently weaken
 * a check. Keys starting with "_" are ignored everywhere (comments).
 *
 * Inputs are capped (RC_SC_MAX_BYTES, RC_SC_MAX_DEPTH) because scenarios also arrive over HTTP
 * (`POST /_emulator/v1/scenarios`). */
#ifndef RUNCELL_EMULATOR_SCENARIO_H
#define RUNCELL_EMULATOR_SCENARIO_H

#include "err.h"

#include <cjson/cJSON.h>
#include <stddef.h>

#define RC_SC_MAX_BYTES     (1024 * 1024) /* one scenario document */
#define RC_SC_MAX_DEPTH     64            /* JSON nesting, anywhere in the document */
#define RC_SC_MAX_TURNS     1024
#define RC_SC_MAX_STEPS     4096           /* per turn */
#define RC_SC_MAX_MS        3600000        /* sleep_ms, pause_after_ms, wait_ms: one hour */
#define RC_SC_DEFAULT_WAIT  60000          /* wait_ms when the step expects a result */
#define RC_SC_NORESULT_WAIT 2000           /* wait_ms with no_result */
#define RC_SC_FAULTS_SUFFIX ".faults.json" /* sidecar files rc_sc_load_dir skips */

enum rc_sc_step_kind { RC_SC_TOOL, RC_SC_CUSTOM_TOOL, RC_SC_MESSAGE, RC_SC_SLEEP, RC_SC_TERMINATE };

typedef struct rc_sc_expect {
    int has_is_error, is_error;
    char *text, *contains, *not_contains, *matches, *block_type; /* NULL when absent */
    int no_result;
    long wait_ms; /* already resolved: given value, else 2000 with no_result, else 60000 */
} rc_sc_expect;

typedef struct rc_sc_step {
    enum rc_sc_step_kind kind;
    char *name;       /* tool / custom tool name */
    cJSON *input;     /* owned; an empty object when the step gives none (tool steps only) */
    char *permission; /* "allow"|"ask"|"deny" or NULL */
    char *confirm;    /* "allow"|"deny" or NULL (only with permission "ask") */
    int has_expect;
    rc_sc_expect expect; /* tool steps: defaults (wait_ms 60000) even when has_expect is 0 */
    char *message;       /* RC_SC_MESSAGE */
    long sleep_ms;       /* RC_SC_SLEEP */
} rc_sc_step;

typedef struct rc_sc_turn {
    char *user;
    rc_sc_step *steps;
    size_t nsteps;
    int end_none; /* "end": "none" */
    long pause_after_ms;
} rc_sc_turn;

typedef struct rc_sc_scenario {
    char *name, *description; /* description NULL when absent */
    cJSON *agent_tools;       /* owned array, as the real API takes it */
    cJSON *session_metadata;  /* owned object or NULL */
    rc_sc_turn *turns;
    size_t nturns;
} rc_sc_scenario;

/* Parse one scenario document (json need not be NUL-terminated). On failure err names the field. */
int rc_sc_parse(const char *json, size_t len, rc_sc_scenario **ret, rc_error *err);
void rc_sc_free(rc_sc_scenario *s);

/* Load every "*.json" file of dir (not hidden files, not "*.faults.json" sidecars), sorted by file
 * name. Fails as a whole on the first bad file (the message names it) or on two files with the
 * same scenario name. *ret_list (an array of *ret_n scenarios) belongs to the caller: free it with
 * rc_sc_list_free. An empty directory yields 0 scenarios and a NULL list. */
int rc_sc_load_dir(const char *dir, rc_sc_scenario ***ret_list, size_t *ret_n, rc_error *err);
void rc_sc_list_free(rc_sc_scenario **list, size_t n);

/* Judge a result against e. content is the result's "content" array (or NULL) and is_error its
 * flag. Returns 1 when every given field holds, 0 when some fail (detail lists each failure with a
 * short quote of the text), < 0 when the content is malformed (not an array, a text block without a
 * string "text") or too large; detail is filled in every case (when detailsz > 0). With no_result
 * set, any result fails. wait_ms is not checked here: the caller times the wait. */
int rc_sc_expect_check(const rc_sc_expect *e, const cJSON *content, int is_error, char *detail,
                       size_t detailsz);

#endif
