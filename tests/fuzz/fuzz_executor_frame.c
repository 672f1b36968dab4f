/* fuzz_executor_frame.c - the tool executor's channel (runner/executor.c): a byte stream split
 * into frames with rc_executor_frame_parse (bounded), each payload decoded both as a request and
 * as an answer, the way each side reads what the other sends. Aborts when:
 *   - a complete frame's payload or length lies outside the input or exceeds the bound,
 *   - a decoded request or answer does not survive encode -> frame -> decode unchanged,
 *   - an accepted answer's content is not an array of valid blocks. */
#include "buf.h"
#include "cleanup.h"
#include "executor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_FRAME_MAX ((size_t)1 << 20)

/* Same printed form (cJSON_Compare misjudges objects with repeated keys). */
static int same_json(const cJSON *a, const cJSON *b)
{
    _cleanup_free_ char *pa = cJSON_PrintUnformatted(a), *pb = cJSON_PrintUnformatted(b);
    return pa && pb && strcmp(pa, pb) == 0;
}

static void check_request(const char *p, size_t n)
{
    _cleanup_free_ char *name = NULL, *name2 = NULL;
    cJSON *input = NULL, *input2 = NULL;
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(RC_EXECUTOR_FRAME_MAX + 16);
    const char *q = NULL;
    size_t len = 0, used = 0;

    if (rc_executor_request_decode(p, n, &name, &input, NULL) < 0)
        return;
    if (!cJSON_IsObject(input)) { /* a non-object input is dropped by encode: skip the compare */
        cJSON_Delete(input);
        return;
    }
    if (rc_executor_request_encode(name, input, &out, NULL) == 0) {
        if (rc_executor_frame_parse(out.data, out.len, RC_EXECUTOR_FRAME_MAX, &q, &len, &used,
                                    NULL) != 1 ||
            used != out.len || rc_executor_request_decode(q, len, &name2, &input2, NULL) < 0 ||
            strcmp(name, name2) != 0 || !same_json(input, input2))
            abort();
    }
    cJSON_Delete(input);
    cJSON_Delete(input2);
}

static void check_answer(const char *p, size_t n)
{
    rc_tool_result res = {0}, res2 = {0};
    _cleanup_(rc_buf_free) rc_buf out = RC_BUF_INIT(RC_EXECUTOR_FRAME_MAX + 16);
    const char *q = NULL;
    size_t len = 0, used = 0;

    if (rc_executor_answer_decode(p, n, &res, NULL) < 0) {
        if (res.content)
            abort(); /* nothing is written on failure */
        return;
    }
    if (!cJSON_IsArray(res.content) || cJSON_GetArraySize(res.content) < 1)
        abort();
    if (rc_executor_answer_encode(&res, NULL, &out, NULL) == 0) {
        if (rc_executor_frame_parse(out.data, out.len, RC_EXECUTOR_FRAME_MAX, &q, &len, &used,
                                    NULL) != 1 ||
            rc_executor_answer_decode(q, len, &res2, NULL) < 0 || res.is_error != res2.is_error ||
            !same_json(res.content, res2.content))
            abort();
    }
    rc_tool_result_clear(&res);
    rc_tool_result_clear(&res2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (int frames = 0; frames < 64 && off < size; frames++) {
        const char *p = NULL;
        size_t len = 0, used = 0;
        int r =
            rc_executor_frame_parse(data + off, size - off, FUZZ_FRAME_MAX, &p, &len, &used, NULL);
        if (r <= 0)
            break;
        if (used != len + RC_EXECUTOR_FRAME_HEADER || used > size - off || len > FUZZ_FRAME_MAX ||
            p != (const char *)data + off + RC_EXECUTOR_FRAME_HEADER)
            abort();
        check_request(p, len);
        check_answer(p, len);
        off += used;
    }
    return 0;
}
