/* envscrub.c - wipe-then-unset of environment variables by name prefix (see envscrub.h). */
#include "envscrub.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENV_NAME_MAX 256

extern char **environ;

static bool name_has_prefix(const char *entry, const char *const *prefixes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(entry, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* Wipe the value of *e and unset it; returns true when the entry was removed from environ. */
static bool scrub_entry(char *entry)
{
    char name[ENV_NAME_MAX];
    char *eq = strchr(entry, '=');
    size_t n = eq ? (size_t)(eq - entry) : strlen(entry);

    if (eq)
        explicit_bzero(eq + 1, strlen(eq + 1));
    if (n >= sizeof name) {
        /* Too long to name for unsetenv: the value is wiped; blank the name as well. */
        memset(entry, '_', n);
        entry[0] = 'X';
        return false;
    }
    memcpy(name, entry, n);
    name[n] = '\0';
    unsetenv(name);
    return true;
}

int rc_env_scrub_prefixes(const char *const *prefixes, size_t n)
{
    int removed = 0;
    bool again = true;

    /* unsetenv reshuffles environ, so restart the scan after each removal. */
    while (again) {
        again = false;
        for (char **e = environ; e && *e; e++) {
            if (!name_has_prefix(*e, prefixes, n) || !scrub_entry(*e))
                continue;
            removed++;
            again = true;
            break;
        }
    }
    return removed;
}
