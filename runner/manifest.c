/* manifest.c - parsing and validating the custom tools manifest (see custom.h and
 * docs/CUSTOM_TOOLS.md), and printing the agent's tool definitions from it.
 *
 * The manifest is outside input (it comes with the snapshot), so the parser is strict: capped
 * size and depth through rc_json_parse, every object checked for unknown keys (a typo such as
 * "timeout" for "timeout_ms" must not silently keep the default), every value checked for type
 * and range. Each error names the tool and the field, so a person reading the runner's start-up
 * log can fix the file without guessing. Beyond single fields it checks what keeps the manifest
 * honest as the one reviewable place for the tools: unique names that the API accepts, no shell
 * unless declared, and argv/env/stdin placeholders that agree with the tool's input_schema. */
#include "custom.h"

#include "cleanup.h"
#include "json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- error context ------------------------------------------------------------------------ */

#define NO_TOOL SIZE_MAX

typedef struct mctx {
    const char *origin;
    size_t index;     /* tools[index], or NO_TOOL at the top level */
    const char *name; /* the tool's name once validated, else NULL */
    rc_error *err;
} mctx;

/* "<origin>: tools[2] ("run_tests"): argv[3].flag: must be a non-empty string" */
static int __attribute__((format(printf, 3, 4)))
mfail(const mctx *c, const char *field, const char *fmt, ...)
{
    char what[RC_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(what, sizeof(what), fmt, ap) < 0)
        what[0] = '\0';
    va_end(ap);
    if (c->index == NO_TOOL)
        return rc_error_set(c->err, RC_EINVAL, "%s: %s: %s", c->origin, field, what);
    if (c->name)
        return rc_error_set(c->err, RC_EINVAL, "%s: tools[%zu] (\"%s\"): %s: %s", c->origin,
                            c->index, c->name, field, what);
    return rc_error_set(c->err, RC_EINVAL, "%s: tools[%zu]: %s: %s", c->origin, c->index, field,
                        what);
}

static int oom(const mctx *c)
{
    return rc_error_set(c->err, RC_ENOMEM, "out of memory reading the custom tools manifest");
}

/* A key or name from the file, made safe to print: printable ASCII only, at most 64 bytes. */
static const char *printable(const char *s, char out[72])
{
    size_t i = 0;
    for (; s[i] && i < 64; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
    if (s[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* ---- small typed readers ------------------------------------------------------------------ */

static bool key_allowed(const char *key, const char *const *allowed)
{
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(key, allowed[i]) == 0)
            return true;
    return false;
}

static int check_keys(const mctx *c, const char *where, const cJSON *obj,
                      const char *const *allowed)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (!key_allowed(it->string, allowed)) {
            char k[72];
            return mfail(c, where, "unknown key \"%s\"", printable(it->string, k));
        }
    }
    return 0;
}

/* The member, or NULL when absent or JSON null. */
static const cJSON *member(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* Optional string: 0 absent, 1 present (copied into *ret), negative on a wrong type. */
static int opt_string(const mctx *c, const char *field, const cJSON *v, bool nonempty, char **ret)
{
    if (!v)
        return 0;
    if (!cJSON_IsString(v))
        return mfail(c, field, "must be a string");
    if (nonempty && !v->valuestring[0])
        return mfail(c, field, "must not be empty");
    if (!(*ret = strdup(v->valuestring)))
        return oom(c);
    return 1;
}

static int opt_bool(const mctx *c, const char *field, const cJSON *v, bool *ret)
{
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return mfail(c, field, "must be true or false");
    *ret = cJSON_IsTrue(v);
    return 1;
}

/* Optional integer in [lo, hi] (read exactly from its source text by rc_json_get_int64). */
static int opt_int(const mctx *c, const cJSON *obj, const char *key, int64_t lo, int64_t hi,
                   int64_t *ret)
{
    int64_t v;
    int r = rc_json_get_int64_opt(obj, key, &v, NULL);
    if (r < 0)
        return mfail(c, key, "must be an integer");
    if (r == 0)
        return 0;
    if (v < lo || v > hi)
        return mfail(c, key, "must be between %lld and %lld", (long long)lo, (long long)hi);
    *ret = v;
    return 1;
}

/* ---- names -------------------------------------------------------------------------------- */

static const char *const BUILTIN_TOOLS[] = {"bash", "read",      "write",      "edit", "glob",
                                            "grep", "web_fetch", "web_search", NULL};

/* 17.13.2: 1-128 characters of [A-Za-z0-9_-], not a toolset name, not mcp__*. */
static int check_tool_name(const mctx *c, const char *name)
{
    size_t n = strlen(name);
    char k[72];
    if (n == 0 || n > RC_CUSTOM_NAME_MAX)
        return mfail(c, "name", "must be 1 to %d characters", RC_CUSTOM_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return mfail(c, "name", "\"%s\" may only contain letters, digits, '_' and '-'",
                         printable(name, k));
    }
    if (key_allowed(name, BUILTIN_TOOLS))
        return mfail(c, "name", "\"%s\" is a built-in toolset tool", name);
    if (strncmp(name, "mcp__", 5) == 0)
        return mfail(c, "name", "\"%s\": names starting with mcp__ are reserved", name);
    return 0;
}

static bool env_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RC_CUSTOM_ENV_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return true;
}

/* Variables that make a program load or run code chosen by whoever sets them: a value from the
 * tool input may not set them (a fixed value in the manifest may). */
static bool env_name_runs_code(const char *name)
{
    static const char *const exact[] = {"BASH_ENV",
                                        "ENV",
                                        "SHELLOPTS",
                                        "BASHOPTS",
                                        "PS4",
                                        "IFS",
                                        "PATH",
                                        "CDPATH",
                                        "GLOBIGNORE",
                                        "NODE_OPTIONS",
                                        "PYTHONPATH",
                                        "PYTHONSTARTUP",
                                        "PERL5OPT",
                                        "PERL5LIB",
                                        "RUBYOPT",
                                        "RUBYLIB",
                                        "GIT_SSH_COMMAND",
                                        "GIT_EXEC_PATH",
                                        "EDITOR",
                                        "VISUAL",
                                        "PAGER",
                                        NULL};
    return strncmp(name, "LD_", 3) == 0 || strncmp(name, "BASH_FUNC_", 10) == 0 ||
           key_allowed(name, exact);
}

/* Basenames of shells: running one without "shell": true would hide a shell behind argv. */
static bool program_is_shell(const char *program)
{
    static const char *const shells[] = {"sh",   "bash", "dash", "zsh",  "ksh",   "mksh",    "ash",
                                         "fish", "csh",  "tcsh", "yash", "rbash", "busybox", NULL};
    const char *base = strrchr(program, '/');
    return key_allowed(base ? base + 1 : program, shells);
}

/* ---- placeholders ------------------------------------------------------------------------- */

enum arg_place { PLACE_ARGV, PLACE_ENV, PLACE_STDIN };

static void arg_clear(rc_custom_arg *a)
{
    free(a->literal);
    free(a->input);
    free(a->flag);
    free(a->prefix);
    cJSON_Delete(a->default_value);
    *a = (rc_custom_arg){0};
}

static const char *const *placeholder_keys(int place)
{
    static const char *const argv_keys[] = {"input", "optional", "default",    "path",
                                            "flag",  "prefix",   "allow_dash", NULL};
    static const char *const env_keys[] = {"input", "optional", "default", "path", "prefix", NULL};
    static const char *const stdin_keys[] = {"input", "optional", "default", NULL};
    return place == PLACE_ARGV ? argv_keys : place == PLACE_ENV ? env_keys : stdin_keys;
}

static int parse_default(const mctx *c, const char *field, const cJSON *v, bool path,
                         rc_custom_arg *a)
{
    if (!v)
        return 0;
    if (!cJSON_IsString(v) && !cJSON_IsNumber(v) && !cJSON_IsBool(v))
        return mfail(c, field, "default must be a string, number or boolean");
    if (path && !cJSON_IsString(v))
        return mfail(c, field, "default of a path must be a string");
    if (!(a->default_value = cJSON_Duplicate(v, false)))
        return oom(c);
    return 0;
}

static int parse_placeholder(const mctx *c, const char *field, const cJSON *v, int place,
                             rc_custom_arg *a)
{
    int r = check_keys(c, field, v, placeholder_keys(place));
    if (r < 0)
        return r;
    a->kind = RC_CUSTOM_ARG_INPUT;
    const cJSON *in = member(v, "input");
    if (!in)
        return mfail(c, field, "a placeholder needs \"input\" (the input field's name)");
    if ((r = opt_string(c, field, in, true, &a->input)) < 0)
        return r;
    if (strlen(a->input) > RC_CUSTOM_NAME_MAX)
        return mfail(c, field, "input name longer than %d characters", RC_CUSTOM_NAME_MAX);
    if ((r = opt_bool(c, field, member(v, "optional"), &a->optional)) < 0 ||
        (r = opt_bool(c, field, member(v, "path"), &a->path)) < 0 ||
        (r = opt_bool(c, field, member(v, "allow_dash"), &a->allow_dash)) < 0 ||
        (r = opt_string(c, field, member(v, "flag"), true, &a->flag)) < 0 ||
        (r = opt_string(c, field, member(v, "prefix"), true, &a->prefix)) < 0)
        return r;
    return parse_default(c, field, member(v, "default"), a->path, a);
}

/* A literal string or an {"input": ...} placeholder. */
static int parse_arg(const mctx *c, const char *field, const cJSON *v, int place,
                     rc_custom_arg *ret)
{
    rc_custom_arg a = {0};
    int r;
    if (cJSON_IsString(v)) {
        a.kind = RC_CUSTOM_ARG_LITERAL;
        if (!(a.literal = strdup(v->valuestring)))
            return oom(c);
        *ret = a;
        return 0;
    }
    if (!cJSON_IsObject(v))
        return mfail(c, field, "must be a string or an {\"input\": ...} placeholder");
    if ((r = parse_placeholder(c, field, v, place, &a)) < 0) {
        arg_clear(&a);
        return r;
    }
    *ret = a;
    return 0;
}

/* ---- tool fields -------------------------------------------------------------------------- */

static int parse_argv(const mctx *c, const cJSON *obj, rc_custom_tool *t)
{
    const cJSON *arr = member(obj, "argv");
    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr))
        return mfail(c, "argv", "must be an array");
    int n = cJSON_GetArraySize(arr);
    if (n > RC_CUSTOM_MAX_ARGS)
        return mfail(c, "argv", "more than %d entries", RC_CUSTOM_MAX_ARGS);
    if (n > 0 && !(t->args = calloc((size_t)n, sizeof(*t->args))))
        return oom(c);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char field[32];
        snprintf(field, sizeof(field), "argv[%zu]", t->nargs);
        int r = parse_arg(c, field, it, PLACE_ARGV, &t->args[t->nargs]);
        if (r < 0)
            return r;
        t->nargs++;
    }
    return 0;
}

static int parse_env_entry(const mctx *c, const cJSON *it, rc_custom_env *e)
{
    char field[RC_CUSTOM_ENV_NAME_MAX + 8], k[72];
    if (!env_name_valid(it->string))
        return mfail(c, "env", "\"%s\" is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
                     printable(it->string, k));
    snprintf(field, sizeof(field), "env.%s", it->string);
    if (strncasecmp(it->string, "ANTHROPIC_", 10) == 0)
        return mfail(c, field, "ANTHROPIC_* variables are never passed to tools");
    if (!(e->name = strdup(it->string)))
        return oom(c);
    int r = parse_arg(c, field, it, PLACE_ENV, &e->value);
    if (r < 0)
        return r;
    if (e->value.kind == RC_CUSTOM_ARG_INPUT && env_name_runs_code(e->name))
        return mfail(c, field,
                     "a value from the tool input cannot set %s (it makes programs "
                     "load or run other code)",
                     e->name);
    return 0;
}

static int parse_env(const mctx *c, const cJSON *obj, rc_custom_tool *t)
{
    const cJSON *env = member(obj, "env");
    if (!env)
        return 0;
    if (!cJSON_IsObject(env))
        return mfail(c, "env", "must be an object of NAME: value");
    int n = cJSON_GetArraySize(env);
    if (n > RC_CUSTOM_MAX_ENV)
        return mfail(c, "env", "more than %d variables", RC_CUSTOM_MAX_ENV);
    if (n > 0 && !(t->env = calloc((size_t)n, sizeof(*t->env))))
        return oom(c);
    for (const cJSON *it = env->child; it; it = it->next) {
        int r = parse_env_entry(c, it, &t->env[t->nenv]);
        t->nenv++; /* counted even on failure, so free releases a half-filled entry */
        if (r < 0)
            return r;
    }
    return 0;
}

static int parse_stdin(const mctx *c, const cJSON *obj, rc_custom_tool *t)
{
    const cJSON *v = member(obj, "stdin");
    if (!v)
        return 0;
    int r = parse_arg(c, "stdin", v, PLACE_STDIN, &t->stdin_arg);
    if (r < 0)
        return r;
    t->has_stdin = true;
    return 0;
}

/* Relative, no "..", stored without "." and empty components ("" = the workdir). */
static int parse_cwd(const mctx *c, const cJSON *obj, rc_custom_tool *t)
{
    _cleanup_free_ char *raw = NULL;
    int r = opt_string(c, "cwd", member(obj, "cwd"), false, &raw);
    if (r < 0)
        return r;
    if (!(t->cwd = calloc(1, raw ? strlen(raw) + 1 : 1)))
        return oom(c);
    if (!raw)
        return 0;
    if (raw[0] == '/')
        return mfail(c, "cwd", "must be relative to the workdir");
    size_t len = 0;
    for (char *save = NULL, *part = strtok_r(raw, "/", &save); part;
         part = strtok_r(NULL, "/", &save)) {
        if (strcmp(part, "..") == 0)
            return mfail(c, "cwd", "must not contain \"..\"");
        if (strcmp(part, ".") == 0)
            continue;
        if (len > 0)
            t->cwd[len++] = '/';
        memcpy(t->cwd + len, part, strlen(part));
        len += strlen(part);
    }
    t->cwd[len] = '\0';
    return 0;
}

static int parse_ok_exit_codes(const mctx *c, const cJSON *obj, rc_custom_tool *t)
{
    const cJSON *arr = member(obj, "ok_exit_codes");
    t->ok_exit_codes[0] = 0;
    t->n_ok_exit_codes = 1;
    if (!arr)
        return 0;
    size_t cap = sizeof(t->ok_exit_codes) / sizeof(t->ok_exit_codes[0]);
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1 || (size_t)cJSON_GetArraySize(arr) > cap)
        return mfail(c, "ok_exit_codes", "must be an array of 1 to %zu exit statuses", cap);
    t->n_ok_exit_codes = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || d < 0 || d > 255 || d != (double)(int)d)
            return mfail(c, "ok_exit_codes", "entries must be integers from 0 to 255");
        t->ok_exit_codes[t->n_ok_exit_codes++] = (int)d;
    }
    return 0;
}

static int parse_limits(const mctx *c, const cJSON *obj, rc_custom_tool *t)
{
    int64_t v = RC_CUSTOM_DEFAULT_TIMEOUT_MS;
    int r = opt_int(c, obj, "timeout_ms", 1, RC_CUSTOM_MAX_TIMEOUT_MS, &v);
    if (r < 0)
        return r;
    t->timeout_ms = (int)v;
    v = RC_CUSTOM_DEFAULT_OUTPUT;
    if ((r = opt_int(c, obj, "max_output_bytes", 1, RC_CUSTOM_MAX_OUTPUT, &v)) < 0)
        return r;
    t->max_output_bytes = (size_t)v;
    return parse_ok_exit_codes(c, obj, t);
}

/* program, shell, script: no shell unless declared, and then only with a fixed script. */
static int parse_program(const mctx *c, const cJSON *obj, rc_custom_tool *t)
{
    int r;
    if ((r = opt_bool(c, "shell", member(obj, "shell"), &t->shell)) < 0 ||
        (r = opt_string(c, "program", member(obj, "program"), true, &t->program)) < 0 ||
        (r = opt_string(c, "script", member(obj, "script"), true, &t->script)) < 0)
        return r;
    if (t->shell && !t->script)
        return mfail(c, "script", "is required with \"shell\": true");
    if (!t->shell && t->script)
        return mfail(c, "script", "is only allowed with \"shell\": true");
    if (!t->program && t->shell && !(t->program = strdup(RC_CUSTOM_DEFAULT_SHELL)))
        return oom(c);
    if (!t->program)
        return mfail(c, "program", "is required (an absolute path)");
    if (t->program[0] != '/')
        return mfail(c, "program", "must be an absolute path (there is no PATH search)");
    if (!t->shell && program_is_shell(t->program))
        return mfail(c, "program",
                     "is a shell: declare \"shell\": true with a fixed \"script\" "
                     "and pass inputs as $1.. or env");
    return 0;
}

/* ---- input_schema ------------------------------------------------------------------------- */

static bool has_ref(const cJSON *v)
{
    for (const cJSON *it = v ? v->child : NULL; it; it = it->next) {
        if (it->string && strcmp(it->string, "$ref") == 0)
            return true;
        if (has_ref(it))
            return true;
    }
    return false;
}

/* 17.13.2: type "object", no $ref anywhere, no top-level oneOf/anyOf/allOf. */
static int parse_schema(const mctx *c, const cJSON *obj, rc_custom_tool *t)
{
    const cJSON *s = member(obj, "input_schema");
    if (!s)
        return 0;
    if (!cJSON_IsObject(s))
        return mfail(c, "input_schema", "must be an object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "object") != 0)
        return mfail(c, "input_schema", "must have \"type\": \"object\"");
    if (has_ref(s))
        return mfail(c, "input_schema", "must not use $ref");
    static const char *const combinators[] = {"oneOf", "anyOf", "allOf"};
    for (size_t i = 0; i < 3; i++)
        if (cJSON_HasObjectItem(s, combinators[i]))
            return mfail(c, "input_schema", "must not have a top-level %s", combinators[i]);
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    if (props && !cJSON_IsObject(props))
        return mfail(c, "input_schema", "properties must be an object");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required"), *it;
    if (req && !cJSON_IsArray(req))
        return mfail(c, "input_schema", "required must be an array of names");
    cJSON_ArrayForEach(it, req)
    {
        if (!cJSON_IsString(it))
            return mfail(c, "input_schema", "required must be an array of names");
    }
    if (!(t->input_schema = cJSON_Duplicate(s, true)))
        return oom(c);
    return 0;
}

static bool schema_requires(const cJSON *schema, const char *name)
{
    const cJSON *it, *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
    cJSON_ArrayForEach(it, req)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, name) == 0)
            return true;
    }
    return false;
}

static bool arg_required(const rc_custom_arg *a)
{
    return a->kind == RC_CUSTOM_ARG_INPUT && !a->optional && !a->default_value;
}

/* The placeholder's input must be declared, and required in the schema when the tool needs it. */
static int check_arg_in_schema(const mctx *c, const char *field, const rc_custom_arg *a,
                               const cJSON *schema)
{
    if (a->kind != RC_CUSTOM_ARG_INPUT || !schema)
        return 0;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    char k[72];
    if (!cJSON_GetObjectItemCaseSensitive(props, a->input))
        return mfail(c, field, "input \"%s\" is not declared in input_schema.properties",
                     printable(a->input, k));
    if (arg_required(a) && !schema_requires(schema, a->input))
        return mfail(c, field,
                     "input \"%s\" is required here (no optional/default) but not listed in "
                     "input_schema.required",
                     printable(a->input, k));
    return 0;
}

static int check_schema_agrees(const mctx *c, const rc_custom_tool *t)
{
    char field[RC_CUSTOM_ENV_NAME_MAX + 8];
    int r;
    for (size_t i = 0; i < t->nargs; i++) {
        snprintf(field, sizeof(field), "argv[%zu]", i);
        if ((r = check_arg_in_schema(c, field, &t->args[i], t->input_schema)) < 0)
            return r;
    }
    for (size_t i = 0; i < t->nenv; i++) {
        snprintf(field, sizeof(field), "env.%s", t->env[i].name);
        if ((r = check_arg_in_schema(c, field, &t->env[i].value, t->input_schema)) < 0)
            return r;
    }
    if (t->has_stdin)
        return check_arg_in_schema(c, "stdin", &t->stdin_arg, t->input_schema);
    return 0;
}

/* ---- one tool, the whole manifest --------------------------------------------------------- */

static void tool_clear(rc_custom_tool *t)
{
    free(t->name);
    free(t->description);
    cJSON_Delete(t->input_schema);
    free(t->program);
    free(t->script);
    for (size_t i = 0; i < t->nargs; i++)
        arg_clear(&t->args[i]);
    free(t->args);
    for (size_t i = 0; i < t->nenv; i++) {
        free(t->env[i].name);
        arg_clear(&t->env[i].value);
    }
    free(t->env);
    arg_clear(&t->stdin_arg);
    free(t->cwd);
    *t = (rc_custom_tool){0};
}

static const char *const TOOL_KEYS[] = {"name",
                                        "description",
                                        "input_schema",
                                        "program",
                                        "shell",
                                        "script",
                                        "argv",
                                        "env",
                                        "inherit_env",
                                        "stdin",
                                        "cwd",
                                        "timeout_ms",
                                        "max_output_bytes",
                                        "ok_exit_codes",
                                        NULL};

static int parse_name(mctx *c, const cJSON *obj, const rc_custom_manifest *m, rc_custom_tool *t)
{
    const cJSON *v = member(obj, "name");
    if (!v)
        return mfail(c, "name", "is required");
    int r = opt_string(c, "name", v, false, &t->name);
    if (r < 0 || (r = check_tool_name(c, t->name)) < 0)
        return r;
    if (rc_custom_manifest_find(m, t->name))
        return mfail(c, "name", "\"%s\" is declared twice", t->name);
    c->name = t->name;
    return 0;
}

static int parse_tool(mctx *c, const cJSON *obj, const rc_custom_manifest *m, rc_custom_tool *t)
{
    if (!cJSON_IsObject(obj))
        return mfail(c, "tool", "must be an object");
    int r = parse_name(c, obj, m, t);
    if (r < 0 || (r = check_keys(c, "tool", obj, TOOL_KEYS)) < 0)
        return r;
    t->inherit_env = true;
    if ((r = opt_string(c, "description", member(obj, "description"), true, &t->description)) < 0 ||
        (r = parse_schema(c, obj, t)) < 0 || (r = parse_program(c, obj, t)) < 0 ||
        (r = parse_argv(c, obj, t)) < 0 || (r = parse_env(c, obj, t)) < 0 ||
        (r = opt_bool(c, "inherit_env", member(obj, "inherit_env"), &t->inherit_env)) < 0 ||
        (r = parse_stdin(c, obj, t)) < 0 || (r = parse_cwd(c, obj, t)) < 0 ||
        (r = parse_limits(c, obj, t)) < 0)
        return r;
    return check_schema_agrees(c, t);
}

static int parse_tools(mctx *c, const cJSON *root, rc_custom_manifest *m)
{
    const cJSON *tools = member(root, "tools");
    if (!cJSON_IsArray(tools))
        return mfail(c, "tools", "is required and must be an array");
    int n = cJSON_GetArraySize(tools);
    if (n > RC_CUSTOM_MAX_TOOLS)
        return mfail(c, "tools", "more than %d tools (an agent should stay at or under %d)",
                     RC_CUSTOM_MAX_TOOLS, RC_CUSTOM_MAX_TOOLS);
    if (n > 0 && !(m->tools = calloc((size_t)n, sizeof(*m->tools))))
        return oom(c);
    const cJSON *it;
    cJSON_ArrayForEach(it, tools)
    {
        c->index = m->count;
        c->name = NULL;
        rc_custom_tool t = {0};
        int r = parse_tool(c, it, m, &t);
        if (r < 0) {
            tool_clear(&t);
            return r;
        }
        m->tools[m->count++] = t;
    }
    return 0;
}

int rc_custom_manifest_parse(const char *text, size_t len, const char *origin,
                             rc_custom_manifest **ret, rc_error *err)
{
    static const char *const top_keys[] = {"version", "tools", NULL};
    mctx c = {.origin = origin ? origin : "manifest", .index = NO_TOOL, .err = err};
    rc_json_limits lim = {.max_size = RC_CUSTOM_MANIFEST_MAX_BYTES,
                          .max_depth = RC_CUSTOM_MANIFEST_MAX_DEPTH,
                          .allow_duplicates = false};
    _cleanup_json_ cJSON *root = NULL;
    int r = rc_json_parse(text, len, &lim, &root, err);
    if (r < 0)
        return rc_error_wrap(err, -r, c.origin);
    if (!cJSON_IsObject(root))
        return mfail(&c, "manifest", "must be a JSON object with \"tools\"");
    if ((r = check_keys(&c, "manifest", root, top_keys)) < 0)
        return r;
    int64_t version = 1;
    if (rc_json_get_int64_opt(root, "version", &version, NULL) < 0 || version != 1)
        return mfail(&c, "version", "must be 1 (the only format version)");
    rc_custom_manifest *m = calloc(1, sizeof(*m));
    if (!m)
        return oom(&c);
    if ((r = parse_tools(&c, root, m)) < 0) {
        rc_custom_manifest_free(m);
        return r;
    }
    *ret = m;
    return 0;
}

void rc_custom_manifest_free(rc_custom_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++)
        tool_clear(&m->tools[i]);
    free(m->tools);
    free(m);
}

const rc_custom_tool *rc_custom_manifest_find(const rc_custom_manifest *m, const char *name)
{
    for (size_t i = 0; m && name && i < m->count; i++)
        if (strcmp(m->tools[i].name, name) == 0)
            return &m->tools[i];
    return NULL;
}

/* ---- the agent's tool definitions --------------------------------------------------------- */

static const char *generated_type(const rc_custom_arg *a)
{
    if (cJSON_IsBool(a->default_value))
        return "boolean";
    if (cJSON_IsNumber(a->default_value))
        return "number";
    return "string";
}

static int add_generated_input(cJSON *schema, const rc_custom_arg *a)
{
    cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    cJSON *required = cJSON_GetObjectItemCaseSensitive(schema, "required");
    if (a->kind != RC_CUSTOM_ARG_INPUT)
        return 0;
    if (!cJSON_GetObjectItemCaseSensitive(props, a->input)) {
        cJSON *p = cJSON_AddObjectToObject(props, a->input);
        if (!p || !cJSON_AddStringToObject(p, "type", generated_type(a)))
            return -RC_ENOMEM;
    }
    if (arg_required(a) && !schema_requires(schema, a->input)) {
        cJSON *s = cJSON_CreateString(a->input);
        if (!s || !cJSON_AddItemToArray(required, s)) {
            cJSON_Delete(s);
            return -RC_ENOMEM;
        }
    }
    return 0;
}

/* {"type":"object","properties":{...},"required":[...]} from the placeholders. */
static cJSON *generated_schema(const rc_custom_tool *t)
{
    cJSON *s = cJSON_CreateObject();
    if (!s || !cJSON_AddStringToObject(s, "type", "object") ||
        !cJSON_AddObjectToObject(s, "properties") || !cJSON_AddArrayToObject(s, "required")) {
        cJSON_Delete(s);
        return NULL;
    }
    int r = 0;
    for (size_t i = 0; r == 0 && i < t->nargs; i++)
        r = add_generated_input(s, &t->args[i]);
    for (size_t i = 0; r == 0 && i < t->nenv; i++)
        r = add_generated_input(s, &t->env[i].value);
    if (r == 0 && t->has_stdin)
        r = add_generated_input(s, &t->stdin_arg);
    if (r < 0) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

static cJSON *agent_tool(const rc_custom_tool *t)
{
    _cleanup_json_ cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "type", "custom") ||
        !cJSON_AddStringToObject(o, "name", t->name) ||
        (t->description && !cJSON_AddStringToObject(o, "description", t->description)))
        return NULL;
    cJSON *schema = t->input_schema ? cJSON_Duplicate(t->input_schema, true) : generated_schema(t);
    if (!schema || !cJSON_AddItemToObject(o, "input_schema", schema)) {
        cJSON_Delete(schema);
        return NULL;
    }
    return take_ptr(o);
}

int rc_custom_manifest_agent_json(const rc_custom_manifest *m, cJSON **ret, rc_error *err)
{
    _cleanup_json_ cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    for (size_t i = 0; m && i < m->count; i++) {
        cJSON *o = agent_tool(&m->tools[i]);
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            return rc_error_set(err, RC_ENOMEM, "out of memory");
        }
    }
    *ret = take_ptr(arr);
    return 0;
}
