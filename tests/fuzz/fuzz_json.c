/* fuzz_json.c - rc_json_parse on arbitrary bytes.
 *
 * Byte 0 picks the depth cap (default, or 0..15) and whether duplicates are allowed; the rest is
 * the text. Invariants for accepted input: it prints, the printed text parses again under the
 * same depth cap and compares equal, and every integer the getter reads converts back to the
 * node's double (both checks only without duplicate keys, where lookups are ambiguous). The
 * error-body parser runs on every input. */
#include "json.h"

#include <stdint.h>
#include <stdlib.h>

static void check_getters(const cJSON *root)
{
    const cJSON *child, *sub;
    const char *s;
    int64_t v;
    bool b;

    if (!cJSON_IsObject(root))
        return;
    for (child = root->child; child; child = child->next) {
        if (rc_json_get_int64(root, child->string, &v, NULL) == 0 &&
            (double)v != child->valuedouble)
            abort();
        if (rc_json_get_string(root, child->string, &s, NULL) == 0 && !cJSON_IsString(child))
            abort();
        if (rc_json_get_bool_opt(root, child->string, &b, NULL) == 1 && !cJSON_IsBool(child))
            abort();
        (void)rc_json_get_object_opt(root, child->string, &sub, NULL);
        (void)rc_json_get_array_opt(root, child->string, &sub, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rc_json_limits lim = rc_json_limits_default;
    cJSON *root = NULL, *again = NULL;
    rc_buf out = RC_BUF_INIT((size_t)64 * 1024 * 1024);
    rc_json_error_info info;
    const char *text;
    size_t len;

    if (size < 1)
        return 0;
    if (data[0] & 0x80)
        lim.max_depth = data[0] & 0x0F;
    lim.allow_duplicates = data[0] & 0x40;
    text = (const char *)data + 1;
    len = size - 1;
    (void)rc_json_error_body_parse(text, len, &info, NULL);
    if (rc_json_parse(text, len, &lim, &root, NULL) < 0)
        return 0;
    if (!lim.allow_duplicates)
        check_getters(root); /* with duplicates a lookup finds the first of them */
    if (rc_json_print(root, &out, NULL) < 0)
        abort();
    lim.max_size = out.len;
    if (rc_json_parse(out.data, out.len, &lim, &again, NULL) < 0)
        abort();
    if (!lim.allow_duplicates && !cJSON_Compare(root, again, true))
        abort();
    cJSON_Delete(again);
    cJSON_Delete(root);
    rc_buf_free(&out);
    return 0;
}
