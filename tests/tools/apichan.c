/* tests/tools/apichan.c - runs the broker's API channel on its own, for the integration tests
 * (tests/integration/apichan_*.sh) and for trying it by hand.
 *
 *   ANTHROPIC_WORK_SECRET=... apichan --socket PATH --allowed-uid UID --base-url URL \
 *       --environment-id env_.. --work-id work_.. --session-id sesn_.. [options]
 *
 * The credential never comes from argv: the work secret is read from ANTHROPIC_WORK_SECRET
 * and, only when RUNCELL_ALLOW_ENVIRONMENT_KEY_BROKERING=1 and the secret yields no token, the
 * environment key from ANTHROPIC_ENVIRONMENT_KEY. Both are wiped from the environment (and so
 * from /proc/self/environ) right after they are read. Prints "ready" on stdout once the socket
 * is listening, serves until SIGINT/SIGTERM, then prints one "stats ..." line and exits 0.
 * Exit status 2: bad usage or configuration; 3: the work item has no usable credential. */
#include "apichan.h"
#include "cleanup.h"
#include "err.h"
#include "log.h"
#include "webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MEMORY_STORES_MAX 16

extern char **environ;

static void usage(FILE *f)
{
    fputs("usage: apichan --socket PATH --allowed-uid UID --base-url URL\n"
          "               --environment-id ID --work-id ID --session-id ID\n"
          "               [--socket-gid GID] [--allow-plain-http] [--ca-file FILE]\n"
          "               [--allow-skills] [--memory-store ID]... [--max-connections N]\n"
          "               [--max-body BYTES] [--max-response BYTES] [--idle-timeout-ms MS]\n"
          "               [--upstream-timeout-ms MS] [--audit-file PATH]\n"
          "The work secret comes from ANTHROPIC_WORK_SECRET only (never argv).\n",
          f);
}

static int parse_ull(const char *s, unsigned long long max, unsigned long long *ret)
{
    char *end = NULL;
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *ret = v;
    return 0;
}

/* Read NAME's value (copied) and wipe and remove it from the environment. */
static char *env_take(const char *name)
{
    const char *v = getenv(name);
    char *copy = v && *v ? strdup(v) : NULL;
    size_t nl = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=')
            explicit_bzero(*e + nl + 1, strlen(*e + nl + 1));
    unsetenv(name);
    return copy;
}

static void secret_freep(char **p)
{
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
    }
}

enum {
    OPT_SOCKET = 256,
    OPT_UID,
    OPT_GID,
    OPT_BASE,
    OPT_PLAIN,
    OPT_CA,
    OPT_ENV,
    OPT_WORK,
    OPT_SESSION,
    OPT_SKILLS,
    OPT_MEMORY,
    OPT_MAXCONN,
    OPT_MAXBODY,
    OPT_MAXRESP,
    OPT_IDLE,
    OPT_UPSTREAM,
    OPT_AUDIT,
    OPT_HELP,
};

static const struct option options[] = {
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"allowed-uid", required_argument, NULL, OPT_UID},
    {"socket-gid", required_argument, NULL, OPT_GID},
    {"base-url", required_argument, NULL, OPT_BASE},
    {"allow-plain-http", no_argument, NULL, OPT_PLAIN},
    {"ca-file", required_argument, NULL, OPT_CA},
    {"environment-id", required_argument, NULL, OPT_ENV},
    {"work-id", required_argument, NULL, OPT_WORK},
    {"session-id", required_argument, NULL, OPT_SESSION},
    {"allow-skills", no_argument, NULL, OPT_SKILLS},
    {"memory-store", required_argument, NULL, OPT_MEMORY},
    {"max-connections", required_argument, NULL, OPT_MAXCONN},
    {"max-body", required_argument, NULL, OPT_MAXBODY},
    {"max-response", required_argument, NULL, OPT_MAXRESP},
    {"idle-timeout-ms", required_argument, NULL, OPT_IDLE},
    {"upstream-timeout-ms", required_argument, NULL, OPT_UPSTREAM},
    {"audit-file", required_argument, NULL, OPT_AUDIT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct args {
    rc_apichan_config cfg;
    const char *memory[MEMORY_STORES_MAX + 1];
    size_t n_memory;
    const char *audit_file;
    bool have_uid;
} args;

static int number_opt(int opt, const char *v, args *a)
{
    unsigned long long n;
    if (parse_ull(v, opt == OPT_UID || opt == OPT_GID ? 0xfffffffeULL : (1ULL << 40), &n) < 0)
        return -1;
    switch (opt) {
    case OPT_UID:
        a->cfg.allowed_uid = (uid_t)n;
        a->have_uid = true;
        break;
    case OPT_GID:
        a->cfg.socket_gid = (gid_t)n;
        break;
    case OPT_MAXCONN:
        a->cfg.max_connections = (size_t)n;
        break;
    case OPT_MAXBODY:
        a->cfg.max_request_body = (size_t)n;
        break;
    case OPT_MAXRESP:
        a->cfg.max_response_body = (size_t)n;
        break;
    case OPT_IDLE:
        a->cfg.idle_timeout_ms = (long)n;
        break;
    default:
        a->cfg.upstream_timeout_ms = (long)n;
        break;
    }
    return 0;
}

static int parse_args(int argc, char **argv, args *a)
{
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_SOCKET:
            a->cfg.socket_path = optarg;
            break;
        case OPT_BASE:
            a->cfg.base_url = optarg;
            break;
        case OPT_PLAIN:
            a->cfg.allow_plain_http = true;
            break;
        case OPT_CA:
            a->cfg.ca_file = optarg;
            break;
        case OPT_ENV:
            a->cfg.scope.environment_id = optarg;
            break;
        case OPT_WORK:
            a->cfg.scope.work_id = optarg;
            break;
        case OPT_SESSION:
            a->cfg.scope.session_id = optarg;
            break;
        case OPT_SKILLS:
            a->cfg.scope.features |= RC_APICHAN_ALLOW_SKILLS;
            break;
        case OPT_AUDIT:
            a->audit_file = optarg;
            break;
        case OPT_MEMORY:
            if (a->n_memory >= MEMORY_STORES_MAX)
                return -1;
            a->memory[a->n_memory++] = optarg;
            a->cfg.scope.features |= RC_APICHAN_ALLOW_MEMORY;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        case '?':
            return -1;
        default:
            if (number_opt(opt, optarg, a) < 0) {
                fprintf(stderr, "apichan: bad number for --%s\n", options[opt - OPT_SOCKET].name);
                return -1;
            }
        }
    }
    if (optind != argc || !a->cfg.socket_path || !a->cfg.base_url || !a->have_uid)
        return -1;
    a->cfg.scope.memory_store_ids = a->n_memory ? a->memory : NULL;
    return 0;
}

static int credential_from_env(args *a, char **ret, rc_error *err)
{
    _cleanup_(secret_freep) char *secret = env_take("ANTHROPIC_WORK_SECRET");
    _cleanup_(secret_freep) char *envkey = env_take("ANTHROPIC_ENVIRONMENT_KEY");
    _cleanup_free_ char *allow = env_take(RC_APICHAN_ENV_KEY_BROKERING_VAR);
    int kind = 0;
    int r = rc_apichan_credential_choose(
        secret, envkey, rc_apichan_env_key_brokering_allowed(allow), ret, &kind, err);
    if (r == 0)
        a->cfg.credential_kind = kind;
    return r;
}

int main(int argc, char **argv)
{
    args a = {.cfg = {.socket_gid = (gid_t)-1, .audit_fd = -1}};
    rc_log_init("apichan", RC_LOG_INFO, -1);
    if (parse_args(argc, argv, &a) < 0) {
        usage(stderr);
        return 2;
    }
    _cleanup_close_ int audit_fd = -1;
    if (a.audit_file) {
        audit_fd = open(a.audit_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (audit_fd < 0) {
            perror("apichan: audit file");
            return 2;
        }
        a.cfg.audit_fd = audit_fd;
    }
    rc_error err = {0};
    _cleanup_(rc_worksecret_freep) char *credential = NULL;
    if (credential_from_env(&a, &credential, &err) < 0) {
        rc_log_error("apichan: refusing the work item: %s", err.msg);
        return 3;
    }
    a.cfg.credential = credential;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits the mask; sigwait below */
    signal(SIGPIPE, SIG_IGN);

    rc_apichan *ch = NULL;
    if (rc_apichan_new(&a.cfg, &ch, &err) < 0 || rc_apichan_start(ch, &err) < 0) {
        rc_log_error("apichan: %s", err.msg);
        rc_apichan_free(ch);
        return 2;
    }
    rc_worksecret_free(credential); /* the channel holds its own locked copy */
    credential = NULL;
    printf("ready %s\n", a.cfg.socket_path);
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);
    rc_apichan_stop(ch);
    rc_apichan_stats st;
    rc_apichan_get_stats(ch, &st);
    printf("stats accepted=%llu refused_peer=%llu refused_capacity=%llu requests=%llu "
           "forbidden=%llu\n",
           st.accepted, st.refused_peer, st.refused_capacity, st.requests, st.forbidden);
    fflush(stdout);
    rc_apichan_free(ch);
    return 0;
}
