/* skills_fetch - run rc_skills_fetch (launcher/skills.c) by hand or from a test.
 *
 *   skills_fetch --base-url URL --session-id SID --dest DIR [--token-env NAME]
 *                [--max-archive BYTES] [--max-total BYTES] [--remove]
 *
 * Reads the bearer credential from the environment variable NAME (default RUNCELL_SKILLS_TOKEN;
 * never from argv), retrieves the session, fetches its agent.skills into DIR and prints one line
 * per skill: "ok <skill_id> <version> <dir>" or "failed <skill_id> <reason>", then
 * "summary ok=N failed=M". --remove removes DIR afterwards (teardown). Exit status: 0 when
 * every skill landed, 1 when some failed, 2 on a usage or setup error. */
#include "api.h"
#include "cleanup.h"
#include "log.h"
#include "skills.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void api_freep(rc_api **a)
{
    if (*a)
        rc_api_free(*a);
}

static int parse_size(const char *s, size_t *ret)
{
    char *end = NULL;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || !end || *end || end == s || v == 0)
        return -1;
    *ret = (size_t)v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: skills_fetch --base-url URL --session-id SID --dest DIR "
                    "[--token-env NAME] [--max-archive BYTES] [--max-total BYTES] [--remove]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"base-url", required_argument, NULL, 'b'},
                                         {"session-id", required_argument, NULL, 's'},
                                         {"dest", required_argument, NULL, 'd'},
                                         {"token-env", required_argument, NULL, 't'},
                                         {"max-archive", required_argument, NULL, 'a'},
                                         {"max-total", required_argument, NULL, 'm'},
                                         {"remove", no_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    const char *base = NULL, *sid = NULL, *dest = NULL, *token_env = "RUNCELL_SKILLS_TOKEN";
    rc_skills_limits lim = {0};
    size_t total = 0;
    int remove_after = 0, c, rc;
    _cleanup_(api_freep) rc_api *api = NULL;
    _cleanup_(rc_api_result_free) rc_api_result res = RC_API_RESULT_INIT;
    rc_skills_report rep = {0};
    rc_error err = {0};

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            base = optarg;
            break;
        case 's':
            sid = optarg;
            break;
        case 'd':
            dest = optarg;
            break;
        case 't':
            token_env = optarg;
            break;
        case 'a':
            if (parse_size(optarg, &lim.max_archive_bytes) < 0)
                return usage(), 2;
            break;
        case 'm':
            if (parse_size(optarg, &total) < 0)
                return usage(), 2;
            lim.max_total_bytes = total;
            break;
        case 'r':
            remove_after = 1;
            break;
        default:
            usage();
            return 2;
        }
    }
    if (!base || !sid || !dest) {
        usage();
        return 2;
    }
    rc_log_init("skills", RC_LOG_INFO, -1);
    {
        const char *tok = getenv(token_env);
        rc_api_config cfg = {
            .http = {.base_url = base,
                     .max_body = (lim.max_archive_bytes ? lim.max_archive_bytes
                                                        : RC_SKILLS_DEFAULT_MAX_ARCHIVE_BYTES) +
                                 1,
                     .max_attempts = 2},
            .credential = tok && *tok ? tok : NULL};
        if (tok && *tok)
            rc_log_register_secret(tok, NULL);
        if (rc_api_new(&cfg, &api, &err) < 0) {
            fprintf(stderr, "skills_fetch: %s\n", err.msg);
            return 2;
        }
    }
    if (rc_api_session_get(api, sid, &res, &err) < 0 || res.kind != RC_API_BODY_JSON) {
        fprintf(stderr, "skills_fetch: cannot retrieve the session: %s\n", err.msg);
        return 2;
    }
    rc = rc_skills_fetch(api, res.json, dest, &lim, &rep, &err);
    if (rc < 0) {
        fprintf(stderr, "skills_fetch: %s\n", err.msg);
        return 2;
    }
    for (size_t i = 0; i < rep.n_items; i++) {
        const rc_skills_item *it = &rep.items[i];
        if (it->rc == 0)
            printf("ok %s %s %s\n", it->skill_id, it->version, it->dir);
        else
            printf("failed %s %s\n", it->skill_id[0] ? it->skill_id : "-", it->reason);
    }
    printf("summary ok=%zu failed=%zu\n", rep.n_ok, rep.n_failed);
    rc = rep.n_failed ? 1 : 0;
    rc_skills_report_free(&rep);
    if (remove_after && rc_skills_remove(dest, &err) < 0) {
        fprintf(stderr, "skills_fetch: remove: %s\n", err.msg);
        return 2;
    }
    return rc;
}
