/* fuzz_manifest.c - the custom tools manifest parser and the argv builder on arbitrary bytes.
 *
 * The input is a manifest, optionally followed by a NUL byte and a tool input (JSON). Every
 * manifest that parses must print its agent tool definitions, and every tool in it must build a
 * command from the input (or refuse it with a message) with these invariants: argv[0] is the
 * program, a shell tool's argv is program -c script name..., every added environment entry is
 * NAME=value with a name that is not ANTHROPIC_*, the cwd is inside the workdir, and a refusal
 * always carries a message. Nothing is executed. */
#include "custom.h"
#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WORKDIR "/tmp"

static void check_cmd(const rc_custom_tool *t, const rc_custom_cmd *cmd)
{
    if (!cmd->argv || !cmd->argv[0] || strcmp(cmd->argv[0], t->program) != 0)
        abort();
    if (t->shell && (!cmd->argv[1] || strcmp(cmd->argv[1], "-c") != 0 || !cmd->argv[2] ||
                     strcmp(cmd->argv[2], t->script) != 0 || !cmd->argv[3] ||
                     strcmp(cmd->argv[3], t->name) != 0))
        abort();
    for (size_t i = 0; cmd->env_set && cmd->env_set[i]; i++) {
        const char *eq = strchr(cmd->env_set[i], '=');
        if (!eq || eq == cmd->env_set[i] || strncasecmp(cmd->env_set[i], "ANTHROPIC_", 10) == 0)
            abort();
    }
    if (!cmd->cwd || strncmp(cmd->cwd, WORKDIR, strlen(WORKDIR)) != 0)
        abort();
    if (cmd->stdin_data && !t->has_stdin)
        abort();
}

static void build_all(const rc_custom_manifest *m, const cJSON *input)
{
    for (size_t i = 0; i < m->count; i++) {
        rc_custom_cmd cmd = {0};
        rc_buf msg = RC_BUF_INIT((size_t)4 * 1024 * 1024);
        rc_error err = {0};
        int r = rc_custom_cmd_build(&m->tools[i], input, WORKDIR, &cmd, &msg, &err);
        if (r == 0)
            check_cmd(&m->tools[i], &cmd);
        else if (r == 1 && msg.len == 0)
            abort();
        rc_custom_cmd_clear(&cmd);
        rc_buf_free(&msg);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t mlen = nul ? (size_t)(nul - text) : size;
    rc_custom_manifest *m = NULL;
    if (rc_custom_manifest_parse(text, mlen, "fuzz", &m, NULL) < 0)
        return 0;
    cJSON *agent = NULL;
    rc_buf out = RC_BUF_INIT((size_t)16 * 1024 * 1024);
    if (rc_custom_manifest_agent_json(m, &agent, NULL) < 0 || rc_json_print(agent, &out, NULL) < 0)
        abort();
    cJSON_Delete(agent);
    rc_buf_free(&out);
    cJSON *input = NULL;
    if (nul)
        (void)rc_json_parse(nul + 1, size - mlen - 1, NULL, &input, NULL);
    build_all(m, input); /* NULL input counts as {} */
    cJSON_Delete(input);
    rc_custom_manifest_free(m);
    return 0;
}
