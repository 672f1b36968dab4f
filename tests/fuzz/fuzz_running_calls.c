/* fuzz_running_calls.c - libFuzzer target for the API channel's local route body parser
 * (rc_apichan_running_calls_parse, issue 11): the running tool calls the runner reports.
 *
 * Input: the request body. Checks (abort on violation): on success at most RC_AUDIT_CALLS_MAX
 * ids, each of the tool-use id shape ([A-Za-z0-9_-]{1,128}, NUL-terminated in its slot) and
 * all distinct; on failure the output is untouched and the code is -RC_EPARSE or -RC_ETOOBIG;
 * the error message never holds the input (checked by its length: the messages are fixed). */
#include "apichan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rc_audit_call_ids ids;
    rc_error err = {0};

    memset(&ids, 0xa5, sizeof ids);
    int r = rc_apichan_running_calls_parse((const char *)data, size, &ids, &err);
    if (r < 0) {
        CHECK(r == -RC_EPARSE || r == -RC_ETOOBIG);
        for (size_t i = 0; i < sizeof ids; i++)
            CHECK(((const unsigned char *)&ids)[i] == 0xa5);
        CHECK(strlen(err.msg) < 80);
        return 0;
    }
    CHECK(r == 0 && ids.n <= RC_AUDIT_CALLS_MAX);
    for (size_t i = 0; i < ids.n; i++) {
        size_t len = strnlen(ids.ids[i], sizeof ids.ids[i]);
        CHECK(len < sizeof ids.ids[i]);
        CHECK(rc_audit_call_id_ok(ids.ids[i], len));
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(ids.ids[i], ids.ids[j]) != 0);
    }
    return 0;
}
