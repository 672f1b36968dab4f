/* fuzz_scenario.c - libFuzzer target for the scenario parser and the expectation checker.
 *
 * The input is parsed as a scenario document. Checks: no crash, leak or overread on any input; a
 * rejection always carries a message and leaves the result untouched; an accepted scenario has the
 * invariants the player relies on (at least one turn, a name, tool steps with an input object,
 * confirm only with permission "ask", resolved wait_ms), and every expectation in it can be judged
 * against a few fixed results. The input is also used as a result's content array, judged by a
 * fixed expectation. */
#include "scenario.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static const char *const fixed_results[] = {
    "[{\"type\":\"text\",\"text\":\"hi\"}]",
    "[]",
    "[{\"type\":\"image\",\"source\":{}},{\"type\":\"text\",\"text\":\"3 passed\\nok\"}]",
};

static void judge(const rc_sc_expect *e, const cJSON *content)
{
    char detail[256];
    int r = rc_sc_expect_check(e, content, 0, detail, sizeof detail);
    CHECK(r >= -RC_ERRCODE_MAX && r <= 1);
    CHECK(strlen(detail) < sizeof detail);
    CHECK(r != 1 || detail[0] == '\0');
    CHECK(r == 1 || detail[0] != '\0');
}

static void check_step(const rc_sc_step *st, cJSON *const *results, size_t nresults)
{
    switch (st->kind) {
    case RC_SC_TOOL:
    case RC_SC_CUSTOM_TOOL:
        CHECK(st->name && cJSON_IsObject(st->input));
        CHECK(!st->confirm || (st->permission && strcmp(st->permission, "ask") == 0));
        CHECK(st->expect.wait_ms >= 0 && st->expect.wait_ms <= RC_SC_MAX_MS);
        for (size_t i = 0; i < nresults; i++)
            judge(&st->expect, results[i]);
        judge(&st->expect, NULL);
        break;
    case RC_SC_MESSAGE:
        CHECK(st->message && *st->message);
        break;
    case RC_SC_SLEEP:
        CHECK(st->sleep_ms >= 0 && st->sleep_ms <= RC_SC_MAX_MS);
        break;
    case RC_SC_TERMINATE:
        break;
    }
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
    cJSON *results[sizeof fixed_results / sizeof fixed_results[0]];
    size_t nresults = sizeof results / sizeof results[0];
    rc_sc_scenario *s = NULL;
    rc_error err = {0};
    int r = rc_sc_parse((const char *)data, size, &s, &err);

    if (r < 0) {
        CHECK(s == NULL && err.code == -r && err.msg[0] != '\0');
        return;
    }
    CHECK(s && s->name && s->nturns >= 1 && cJSON_IsArray(s->agent_tools));
    for (size_t i = 0; i < nresults; i++)
        CHECK((results[i] = cJSON_Parse(fixed_results[i])) != NULL);
    for (size_t t = 0; t < s->nturns; t++) {
        CHECK(s->turns[t].user && s->turns[t].pause_after_ms >= 0);
        for (size_t k = 0; k < s->turns[t].nsteps; k++)
            check_step(&s->turns[t].steps[k], results, nresults);
    }
    for (size_t i = 0; i < nresults; i++)
        cJSON_Delete(results[i]);
    rc_sc_free(s);
}

static void fuzz_content(const uint8_t *data, size_t size)
{
    cJSON *content = cJSON_ParseWithLength((const char *)data, size);
    rc_sc_expect e = {.has_is_error = 1,
                      .text = "hi",
                      .contains = "a",
                      .not_contains = "b",
                      .matches = "^(x|y)+[0-9]{2,}$",
                      .block_type = "text"};
    if (!content)
        return;
    judge(&e, content);
    e = (rc_sc_expect){.no_result = 1};
    judge(&e, content);
    cJSON_Delete(content);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse(data, size);
    fuzz_content(data, size);
    return 0;
}
