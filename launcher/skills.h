/* skills.h - download a session's skills on the host and unpack them for a read-only bind mount
 * at {workdir}/skills (protocol.md 15; docs/SKILLS.md).
 *
 * For each agent.skills[] entry: resolve the version (GET /v1/skills/{id}/versions/{version},
 * `latest` included), name the directory after the last path component of the trimmed skill
 * name (skill_id when that is empty, "." or ".."), download the archive by the concrete version
 * id (Accept: application/binary, size cap), unpack it (zip, or tar optionally gzip/bzip2/xz
 * compressed) into a staging directory next to the target, check it holds only regular files
 * (one link each) and directories, normalise modes (directories 0755, files 0755 if any execute
 * bit else 0644, owned by the caller), strip a single common top-level directory and move it
 * into place, replacing an older copy. Symlinks, hard links, devices, FIFOs and sockets in the
 * archive are skipped; absolute and `..` names, and anything over a cap, refuse the skill. A
 * failing skill is logged with its reason, leaves nothing behind and does not stop the others.
 * The credential stays in the rc_api client: it never reaches the tree, a log line or a message. */
#ifndef RUNCELL_LAUNCHER_SKILLS_H
#define RUNCELL_LAUNCHER_SKILLS_H

#include "api.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rc_skills_limits {
    size_t max_archive_bytes; /* downloaded archive (compressed): 64 MiB */
    uint64_t max_total_bytes; /* unpacked bytes of one skill: 256 MiB */
    uint64_t max_file_bytes;  /* one unpacked file: 64 MiB */
    uint32_t max_entries;     /* archive entries of one skill: 10000 */
    uint32_t max_skills;      /* skills per session (more are reported as failed): 64 */
} rc_skills_limits;

#define RC_SKILLS_DEFAULT_MAX_ARCHIVE_BYTES (64UL << 20)
#define RC_SKILLS_DEFAULT_MAX_TOTAL_BYTES   (256ULL << 20)
#define RC_SKILLS_DEFAULT_MAX_FILE_BYTES    (64ULL << 20)
#define RC_SKILLS_DEFAULT_MAX_ENTRIES       10000U
#define RC_SKILLS_DEFAULT_MAX_SKILLS        64U

typedef struct rc_skills_item {
    char skill_id[128];
    char version[32]; /* the concrete version id, "" when resolution failed */
    char dir[256];    /* directory name under dest_dir, "" when not decided */
    int rc;           /* 0 = landed, negative RC_E* = failed */
    char reason[RC_ERR_MSG_MAX];
} rc_skills_item;

typedef struct rc_skills_report {
    size_t n_ok, n_failed;
    size_t n_items;
    rc_skills_item *items; /* one per agent.skills[] entry, in order */
} rc_skills_report;

void rc_skills_report_free(rc_skills_report *r);

/* Fetch every skill of `skills` (a session object, whose agent.skills is used, or the skills
 * array itself; a session without skills is fine) into dest_dir, which is created 0755 if
 * missing. api: a client holding the credential the skills endpoints accept; its max_body must
 * allow max_archive_bytes. limits NULL = defaults (zero fields = defaults). Returns the number
 * of skills that landed (the report says which failed and why); negative only when nothing
 * could be attempted (bad arguments, dest_dir unusable). *ret_report is always written on
 * success and must be freed with rc_skills_report_free. */
int rc_skills_fetch(rc_api *api, const cJSON *skills, const char *dest_dir,
                    const rc_skills_limits *limits, rc_skills_report *ret_report, rc_error *err);

/* Remove every skill directory in dest_dir and dest_dir itself (teardown, 15.1.7). A missing
 * dest_dir is not an error. */
int rc_skills_remove(const char *dest_dir, rc_error *err);

#endif
