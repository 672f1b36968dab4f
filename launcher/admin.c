/* admin.c - `runcell`, the operator's view of a host: reads the launcher's state (the same
 * configuration and files as the daemon, launcher.h) and asks the daemon for its counts over the
 * hand-off socket. Holds no credential and never reads the root-only work files.
 *
 *   runcell status            the daemon's capacity, active and reserved slots
 *   runcell sessions          one line per session on this host
 *   runcell stop SESSION_ID   SIGTERM to the session's shim: it stops the container (grace, then
 *                             SIGKILL), force-stops the work item and cleans up; --wait waits
 *                             until it is gone */
#include "launcher.h"

#include "../fcgi/handoff.h"
#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static void usage(FILE *f)
{
    fprintf(f, "usage: runcell [--env-file FILE] COMMAND\n"
               "\n"
               "  status                 capacity and load of runcell-launcher\n"
               "  sessions               sessions on this host (live shim or leftovers)\n"
               "  stop SESSION_ID [--wait]\n"
               "                         stop a session: its container is stopped, its work\n"
               "                         item force-stopped, everything cleaned up\n"
               "\n"
               "Reads the launcher's configuration (RUNCELL_RUN_DIR, RUNCELL_STATE_DIR,\n"
               "RUNCELL_LAUNCHER_SOCKET; see runcell-launcher --help), so run it with the same\n"
               "environment or --env-file. Exit status: 0 ok, 1 failure, 2 usage.\n");
}

static int fail(const char *what, const rc_error *e)
{
    fprintf(stderr, "runcell: %s: %s\n", what, e->msg[0] ? e->msg : rc_errcode_name(e->code));
    return EXIT_FAIL;
}

static int cmd_status(const rc_launcher_config *c)
{
    _cleanup_close_ int fd = -1;
    rc_handoff_answer a;
    rc_error e = {0};

    if (rc_handoff_connect(c->socket_path, 5000, &fd, &e) < 0)
        return fail("launcher", &e);
    if (rc_handoff_call(fd, RC_HANDOFF_OP_STATUS, NULL, &a, &e) < 0)
        return fail("launcher", &e);
    if (a.status != RC_HANDOFF_OK) {
        fprintf(stderr, "runcell: launcher answered %s\n", rc_handoff_status_name(a.status));
        return EXIT_FAIL;
    }
    printf("active %ld\ncapacity %ld\nreserved %ld\nfree %ld\n", a.active, a.capacity, a.reserved,
           a.capacity - a.active - a.reserved);
    return EXIT_OK;
}

static int cmd_sessions(const rc_launcher_config *c)
{
    char(*ids)[RC_LAUNCHER_SESSION_ID_MAX + 1] = NULL;
    size_t n = 0;
    rc_error e = {0};
    int64_t now = (int64_t)time(NULL);

    if (rc_launcher_session_ids(c, &ids, &n, &e) < 0)
        return fail("sessions", &e);
    printf("SESSION\tWORK\tPID\tPHASE\tAGE_S\tSHIM\n");
    for (size_t i = 0; i < n; i++) {
        rc_launcher_session_info info = {0};
        int live = rc_launcher_session_locked(c, ids[i], NULL);
        if (rc_launcher_info_read(c, ids[i], &info, NULL) < 0)
            printf("%s\t-\t-\t-\t-\t%s\n", ids[i], live == 1 ? "live" : "none");
        else
            printf("%s\t%s\t%ld\t%s\t%lld\t%s\n", ids[i], info.work_id, (long)info.pid, info.phase,
                   (long long)(now - info.started_at), live == 1 ? "live" : "none");
    }
    free(ids);
    return EXIT_OK;
}

static int cmd_stop(const rc_launcher_config *c, const char *sid, bool wait)
{
    rc_launcher_session_info info;
    rc_error e = {0};

    if (rc_launcher_session_locked(c, sid, &e) != 1) {
        fprintf(stderr, "runcell: no live shim for %s\n", sid);
        return EXIT_FAIL;
    }
    if (rc_launcher_info_read(c, sid, &info, &e) < 0)
        return fail("state file", &e);
    if (info.pid <= 1 || strcmp(info.session_id, sid) != 0) {
        fprintf(stderr, "runcell: the state file of %s is inconsistent\n", sid);
        return EXIT_FAIL;
    }
    if (kill(info.pid, SIGTERM) < 0) {
        fprintf(stderr, "runcell: kill %ld: %s\n", (long)info.pid, strerror(errno));
        return EXIT_FAIL;
    }
    printf("stopping %s (shim pid %ld)\n", sid, (long)info.pid);
    if (!wait)
        return EXIT_OK;
    for (int i = 0; i < 1200; i++) {
        if (rc_launcher_session_locked(c, sid, NULL) != 1) {
            printf("stopped %s\n", sid);
            return EXIT_OK;
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "runcell: %s did not stop within 120 s\n", sid);
    return EXIT_FAIL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"env-file", required_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *env_file = NULL;
    rc_launcher_config cfg;
    rc_error e = {0};
    int ch;

    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 'e') {
            env_file = optarg;
        } else if (ch == 'h') {
            usage(stdout);
            return EXIT_OK;
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    rc_log_init("runcell", RC_LOG_WARN, -1);
    if (rc_launcher_config_load(env_file, &cfg, &e) < 0)
        return fail("configuration", &e);
    argc -= optind;
    argv += optind;
    if (argc == 1 && strcmp(argv[0], "status") == 0)
        return cmd_status(&cfg);
    if (argc == 1 && strcmp(argv[0], "sessions") == 0)
        return cmd_sessions(&cfg);
    if ((argc == 2 || argc == 3) && strcmp(argv[0], "stop") == 0) {
        bool wait = argc == 3 && strcmp(argv[2], "--wait") == 0;
        if (argc == 3 && !wait) {
            usage(stderr);
            return EXIT_USAGE;
        }
        return cmd_stop(&cfg, argv[1], wait);
    }
    usage(stderr);
    return EXIT_USAGE;
}
