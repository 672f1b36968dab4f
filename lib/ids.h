/* ids.h - the one strict check for API identifiers that come from outside (protocol 1.1.1).
 *
 * Work items, webhooks and environment variables carry ids such as env_..., work_..., sesn_...
 * that later become URL path segments, file names and log fields. Every component accepts only
 * the prefix followed by ASCII letters and digits, RC_ID_MAX characters in all. */
#ifndef RUNCELL_IDS_H
#define RUNCELL_IDS_H

#include <stdbool.h>

#define RC_ID_MAX 128 /* characters of an id, prefix included */

/* True when id is prefix followed by 1 or more [A-Za-z0-9], at most RC_ID_MAX in all. */
bool rc_id_valid(const char *id, const char *prefix);

#endif
