/* envscrub.h - wiping and removing variables from the process's own environment.
 *
 * Daemons read their credentials from the environment once and then remove them, so that no
 * child they start (and no /proc/<pid>/environ reader) can find them. The value bytes are wiped
 * in place before the variable is unset, because unsetenv only unlinks the entry. */
#ifndef RUNCELL_ENVSCRUB_H
#define RUNCELL_ENVSCRUB_H

#include <stddef.h>

/* Wipe and unset every variable whose name starts with one of the n prefixes. Returns how many
 * were removed. A name too long to pass to unsetenv is left in place with its value wiped and
 * its name blanked. */
int rc_env_scrub_prefixes(const char *const *prefixes, size_t n);

#endif
