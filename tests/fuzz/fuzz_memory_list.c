/* fuzz_memory_list.c - one memory list page (protocol 16.1) from a hostile server.
 *
 * The bytes are the page's JSON text. Invariants for every item the parser passes on: a valid id
 * and sha shape, a relative path that rc_memory_rel_path accepts again unchanged (no leading '/',
 * no empty, "." or ".." segment, not the marker), and content within the cap whose length matches
 * the string. The same bytes parsed twice give the same count and next page. */
#include "memory.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int check_item(const rc_memory_item *it, const char *rel, void *ud, rc_error *err)
{
    size_t *count = ud;
    char *again = NULL;
    (void)err;
    if (!rc_memory_id_ok(it->id) || !rc_memory_sha_ok(it->sha) || rel[0] == '/' ||
        strcmp(rel, RC_MEMORY_MARKER) == 0 || strstr(rel, "//"))
        abort();
    if (rc_memory_rel_path(rel, &again, NULL) != 0 || strcmp(again, rel) != 0)
        abort();
    free(again);
    for (const char *s = rel;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            abort();
        if (!slash)
            break;
        s = slash + 1;
    }
    if (it->content &&
        (it->content_len > RC_MEMORY_CONTENT_MAX || strlen(it->content) != it->content_len))
        abort();
    (*count)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t c1 = 0, c2 = 0, s1 = 0, s2 = 0;
    char *n1 = NULL, *n2 = NULL;
    int r1 = rc_memory_list_page_parse((const char *)data, size, check_item, &c1, &n1, &s1, NULL);
    int r2 = rc_memory_list_page_parse((const char *)data, size, check_item, &c2, &n2, &s2, NULL);
    if (r1 != r2 || c1 != c2 || s1 != s2 || (n1 == NULL) != (n2 == NULL) ||
        (n1 && strcmp(n1, n2) != 0) || (r1 >= 0 && (size_t)r1 != c1))
        abort();
    free(n1);
    free(n2);
    return 0;
}
