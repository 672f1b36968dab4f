/* ids.c - strict identifier check (see ids.h). */
#include "ids.h"

#include <string.h>

bool rc_id_valid(const char *id, const char *prefix)
{
    size_t plen, len;

    if (!id || !prefix)
        return false;
    plen = strlen(prefix);
    if (strncmp(id, prefix, plen) != 0)
        return false;
    len = strnlen(id, RC_ID_MAX + 1);
    if (len == plen || len > RC_ID_MAX)
        return false;
    for (const char *p = id + plen; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}
