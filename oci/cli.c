/* runcell-oci - snapshots, bundles and containers by hand (issue 5).
 *
 * A thin command line over the library: snapshot.h (import, ls, prune), bundle.h (create, rm,
 * workspace retention) and runc.h (run a command in a session's container and wait for it). The
 * launcher uses the same calls; this binary exists for operators and for the integration tests.
 * Nothing here takes a credential: bundle options are ids, paths and limits, and the generator
 * refuses credential-looking values anyway.
 *
 * Exit status: 0 success; for `run`, the command's own status (128 + signal when killed, 124
 * when the wall-clock limit stopped it); 1 failure; 2 usage error. */
#include "bundle.h"
#include "cleanup.h"
#include "err.h"
#include "log.h"
#include "runc.h"
#include "snapshot.h"
#include "spec.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 124 };

#define DEFAULT_SNAPSHOT_AGE_S (30 * 24 * 3600)

typedef struct cli {
    const char *state_dir;
    const char *runc;
} cli;

static volatile sig_atomic_t got_signal;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: runcell-oci [--state-dir DIR] [--runc PATH] COMMAND ...\n"
            "\n"
            "  snapshot import FILE           import a tarball (plain, gzip, zstd, xz); prints\n"
            "                                 its digest\n"
            "  snapshot ls                    list imported snapshots\n"
            "  snapshot prune [--older-than SECONDS]\n"
            "                                 remove snapshots unused that long (default 30 days)\n"
            "                                 and used by no bundle\n"
            "  bundle create SESSION_ID --snapshot DIGEST [options]\n"
            "                                 make the session's bundle and config.json\n"
            "      --writable-root            overlay root (lower = snapshot), default read-only\n"
            "      --netns PATH               join this network namespace (default: new, lo only)\n"
            "      --memory SIZE --swap SIZE --pids N --cpus N --tmp-size SIZE\n"
            "      --nofile N --nproc N       limits (SIZE takes K, M, G suffixes)\n"
            "      --uid-base N --map-size N  host ids of container id 0, and how many\n"
            "      --agent-uid N              the tool user inside (default 1000)\n"
            "      --api-dir DIR              host dir with the broker's socket (mounted ro)\n"
            "      --idmap auto|on|off        idmapped snapshot mount, so the container sees the\n"
            "                                 archive's owners (default auto: when supported)\n"
            "      --workspace-size SIZE      cap /workspace: a sparse ext4 image of SIZE made on\n"
            "                                 first use, loop-mounted (default 0: no cap, a plain\n"
            "                                 directory; an existing image is always used)\n"
            "      --environment-id ID --work-id ID --base-url URL --hostname NAME\n"
            "      --http-proxy URL --https-proxy URL --no-proxy LIST   proxy variables\n"
            "  run SESSION_ID [--timeout SECONDS] [--grace SECONDS] [--output-max SIZE] -- CMD...\n"
            "                                 run CMD in the session's container (create, start,\n"
            "                                 wait, delete); output also goes to output.log\n"
            "  state SESSION_ID               print runc's status of the session's container\n"
            "  rm SESSION_ID [--purge-workspace] [--grace SECONDS]\n"
            "                                 stop (SIGTERM, SIGKILL after --grace, default 10)\n"
            "                                 and delete the container and the bundle; the\n"
            "                                 workspace is kept (marked ended) unless purged\n"
            "  workspace prune [--retention SECONDS]\n"
            "                                 remove ended sessions' workspaces (default 7 days)\n"
            "\n"
            "  --state-dir DIR   runcell's state dir (default " RC_BUNDLE_DEFAULT_STATE_DIR ")\n"
            "  --runc PATH       the runc binary (default: runc on PATH)\n"
            "  -h, --help        this text\n"
            "\n"
            "Exit status: 0 success (run: the command's status, 128+N when killed by signal N,\n"
            "124 when --timeout stopped it), 1 failure, 2 usage error.\n");
}

static int fail_usage(const char *msg)
{
    fprintf(stderr, "runcell-oci: %s (see --help)\n", msg);
    return EXIT_USAGE;
}

static int fail(const rc_error *e)
{
    fprintf(stderr, "runcell-oci: %s\n", e->msg[0] ? e->msg : rc_errcode_name(e->code));
    return EXIT_FAIL;
}

/* ---- number parsing -------------------------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max)
        return -1;
    *ret = v;
    return 0;
}

/* Bytes with an optional K/M/G suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *ret)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*end || v > (UINT64_MAX >> 24) >> shift)
        return -1;
    *ret = (uint64_t)v << shift;
    return 0;
}

/* ---- snapshots ------------------------------------------------------------------------------- */

static int open_store(const cli *o, rc_snapshot_store **ret, rc_error *err)
{
    char dir[PATH_MAX];
    int r = rc_bundle_snapshot_dir(o->state_dir, dir, sizeof dir, err);
    if (r < 0)
        return r;
    if ((r = rc_bundle_state_init(o->state_dir, err)) < 0)
        return r;
    return rc_snapshot_store_open(dir, NULL, ret, err);
}

static void print_time(int64_t t)
{
    char buf[32];
    struct tm tm;
    time_t tt = (time_t)t;
    if (t > 0 && gmtime_r(&tt, &tm) && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
        printf("%s", buf);
    else
        printf("-");
}

static int snapshot_import(rc_snapshot_store *store, const char *file)
{
    char digest[RC_SNAPSHOT_DIGEST_SIZE];
    rc_error e = {0};
    if (rc_snapshot_import(store, file, digest, &e) < 0)
        return fail(&e);
    printf("%s\n", digest);
    return EXIT_OK;
}

static int snapshot_prune(const cli *o, rc_snapshot_store *store, int64_t age)
{
    rc_bundle **bundles = NULL;
    size_t nb = 0;
    rc_error e = {0};
    /* Snapshots that bundles use are held for the duration, like a live session's. */
    if (rc_bundle_open_all(o->state_dir, store, &bundles, &nb, &e) < 0)
        return fail(&e);
    int n = rc_snapshot_prune(store, age, &e);
    rc_bundle_list_free(bundles, nb);
    if (n < 0)
        return fail(&e);
    printf("removed %d snapshot%s\n", n, n == 1 ? "" : "s");
    return EXIT_OK;
}

static int snapshot_ls(rc_snapshot_store *store)
{
    _cleanup_free_ rc_snapshot_info *items = NULL;
    size_t n = 0;
    rc_error e = {0};
    if (rc_snapshot_list(store, &items, &n, &e) < 0)
        return fail(&e);
    printf("DIGEST\tIMPORTED\tLAST_USED\tBYTES\tENTRIES\tHELD\n");
    for (size_t i = 0; i < n; i++) {
        printf("%s\t", items[i].digest);
        print_time(items[i].imported_at);
        printf("\t");
        print_time(items[i].last_used_at);
        printf("\t%" PRIu64 "\t%" PRIu64 "\t%s\n", items[i].bytes, items[i].entries,
               items[i].held ? "yes" : "no");
    }
    return EXIT_OK;
}

static int cmd_snapshot(const cli *o, int argc, char **argv)
{
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *store = NULL;
    const char *sub = argc >= 2 ? argv[1] : "";
    uint64_t age = DEFAULT_SNAPSHOT_AGE_S;
    rc_error e = {0};
    if (strcmp(sub, "import") == 0) {
        if (argc != 3)
            return fail_usage("snapshot import takes one FILE");
    } else if (strcmp(sub, "ls") == 0) {
        if (argc != 2)
            return fail_usage("snapshot ls takes no arguments");
    } else if (strcmp(sub, "prune") == 0) {
        bool with_age = argc == 4 && strcmp(argv[2], "--older-than") == 0;
        if ((!with_age && argc != 2) || (with_age && parse_u64(argv[3], INT64_MAX, &age) < 0))
            return fail_usage("snapshot prune [--older-than SECONDS]");
    } else {
        return fail_usage("snapshot needs import, ls or prune");
    }
    if (open_store(o, &store, &e) < 0)
        return fail(&e);
    if (strcmp(sub, "import") == 0)
        return snapshot_import(store, argv[2]);
    if (strcmp(sub, "prune") == 0)
        return snapshot_prune(o, store, (int64_t)age);
    return snapshot_ls(store);
}

/* ---- bundle create --------------------------------------------------------------------------- */

enum {
    OPT_SNAPSHOT = 256,
    OPT_WRITABLE,
    OPT_NETNS,
    OPT_MEMORY,
    OPT_SWAP,
    OPT_PIDS,
    OPT_CPUS,
    OPT_TMP,
    OPT_NOFILE,
    OPT_NPROC,
    OPT_UIDBASE,
    OPT_MAPSIZE,
    OPT_AGENT,
    OPT_APIDIR,
    OPT_ENVID,
    OPT_WORKID,
    OPT_BASEURL,
    OPT_HOSTNAME,
    OPT_IDMAP,
    OPT_HTTP_PROXY,
    OPT_HTTPS_PROXY,
    OPT_NO_PROXY,
    OPT_WORKSPACE_SIZE,
};

static int bundle_opt(int c, const char *arg, rc_oci_config *cfg, const char **snapshot)
{
    uint64_t v = 0;
    switch (c) {
    case OPT_SNAPSHOT:
        *snapshot = arg;
        return 0;
    case OPT_WRITABLE:
        cfg->writable_root = true;
        return 0;
    case OPT_NETNS:
        cfg->netns_path = arg;
        return 0;
    case OPT_APIDIR:
        cfg->api_dir_host = arg;
        return 0;
    case OPT_ENVID:
        cfg->environment_id = arg;
        return 0;
    case OPT_WORKID:
        cfg->work_id = arg;
        return 0;
    case OPT_BASEURL:
        cfg->base_url = arg;
        return 0;
    case OPT_HOSTNAME:
        cfg->hostname = arg;
        return 0;
    case OPT_HTTP_PROXY:
        cfg->http_proxy = arg;
        return 0;
    case OPT_HTTPS_PROXY:
        cfg->https_proxy = arg;
        return 0;
    case OPT_NO_PROXY:
        cfg->no_proxy = arg;
        return 0;
    case OPT_MEMORY:
    case OPT_SWAP:
    case OPT_TMP:
        if (parse_size(arg, &v) < 0 || v > (uint64_t)INT64_MAX)
            return -1;
        if (c == OPT_MEMORY)
            cfg->memory_limit = (int64_t)v;
        else if (c == OPT_SWAP)
            cfg->swap_limit = (int64_t)v;
        else
            cfg->tmp_size = v;
        return 0;
    case OPT_CPUS:
        if (parse_u64(arg, 1024, &v) < 0 || v == 0)
            return -1;
        cfg->cpu_quota = (int64_t)(v * cfg->cpu_period);
        return 0;
    default:
        break;
    }
    if (parse_u64(arg, UINT32_MAX, &v) < 0)
        return -1;
    switch (c) {
    case OPT_PIDS:
        cfg->pids_limit = (int64_t)v;
        return 0;
    case OPT_NOFILE:
        cfg->nofile = v;
        return 0;
    case OPT_NPROC:
        cfg->nproc = v;
        return 0;
    case OPT_UIDBASE:
        cfg->map_host_uid = cfg->map_host_gid = (uint32_t)v;
        return 0;
    case OPT_MAPSIZE:
        cfg->map_size = (uint32_t)v;
        return 0;
    case OPT_AGENT:
        cfg->agent_uid = cfg->agent_gid = (uint32_t)v;
        return 0;
    default:
        return -1;
    }
}

static int parse_idmap(const char *s)
{
    if (strcmp(s, "auto") == 0)
        return RC_BUNDLE_IDMAP_AUTO;
    if (strcmp(s, "on") == 0)
        return RC_BUNDLE_IDMAP_ON;
    if (strcmp(s, "off") == 0)
        return RC_BUNDLE_IDMAP_OFF;
    return -1;
}

static int cmd_bundle(const cli *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"snapshot", required_argument, NULL, OPT_SNAPSHOT},
        {"writable-root", no_argument, NULL, OPT_WRITABLE},
        {"netns", required_argument, NULL, OPT_NETNS},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"swap", required_argument, NULL, OPT_SWAP},
        {"pids", required_argument, NULL, OPT_PIDS},
        {"cpus", required_argument, NULL, OPT_CPUS},
        {"tmp-size", required_argument, NULL, OPT_TMP},
        {"nofile", required_argument, NULL, OPT_NOFILE},
        {"nproc", required_argument, NULL, OPT_NPROC},
        {"uid-base", required_argument, NULL, OPT_UIDBASE},
        {"map-size", required_argument, NULL, OPT_MAPSIZE},
        {"agent-uid", required_argument, NULL, OPT_AGENT},
        {"api-dir", required_argument, NULL, OPT_APIDIR},
        {"environment-id", required_argument, NULL, OPT_ENVID},
        {"work-id", required_argument, NULL, OPT_WORKID},
        {"base-url", required_argument, NULL, OPT_BASEURL},
        {"hostname", required_argument, NULL, OPT_HOSTNAME},
        {"idmap", required_argument, NULL, OPT_IDMAP},
        {"http-proxy", required_argument, NULL, OPT_HTTP_PROXY},
        {"https-proxy", required_argument, NULL, OPT_HTTPS_PROXY},
        {"no-proxy", required_argument, NULL, OPT_NO_PROXY},
        {"workspace-size", required_argument, NULL, OPT_WORKSPACE_SIZE},
        {NULL, 0, NULL, 0},
    };
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *store = NULL;
    _cleanup_(rc_bundle_freep) rc_bundle *b = NULL;
    rc_oci_config cfg;
    const char *snapshot = NULL;
    rc_error e = {0};
    int c, idmap = RC_BUNDLE_IDMAP_AUTO;
    uint64_t workspace_size = 0;

    if (argc < 3 || strcmp(argv[1], "create") != 0)
        return fail_usage("bundle create SESSION_ID --snapshot DIGEST");
    rc_oci_config_init(&cfg);
    cfg.session_id = argv[2];
    optind = 3;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == OPT_IDMAP) {
            if ((idmap = parse_idmap(optarg)) < 0)
                return fail_usage("--idmap takes auto, on or off");
        } else if (c == OPT_WORKSPACE_SIZE) {
            if (parse_size(optarg, &workspace_size) < 0)
                return fail_usage("--workspace-size takes a size (K, M, G suffixes) or 0");
        } else if (c == '?' || bundle_opt(c, optarg, &cfg, &snapshot) < 0) {
            return fail_usage("bad bundle option");
        }
    }
    if (optind != argc || !snapshot)
        return fail_usage("bundle create SESSION_ID --snapshot DIGEST [options]");
    if (open_store(o, &store, &e) < 0)
        return fail(&e);
    rc_bundle_opts bo = {.state_dir = o->state_dir,
                         .store = store,
                         .snapshot_digest = snapshot,
                         .idmap = idmap,
                         .workspace_size = workspace_size};
    if (rc_bundle_create(&bo, &cfg, &b, &e) < 0)
        return fail(&e);
    printf("%s\n", rc_bundle_dir(b));
    return EXIT_OK;
}

/* ---- run, state, rm -------------------------------------------------------------------------- */

static void on_signal(int sig)
{
    got_signal = sig;
}

static int container_for(const cli *o, const char *session_id, const char *bundle_dir, int echo,
                         size_t output_max, rc_runc_container **ret, rc_error *err)
{
    char root[PATH_MAX], dir[PATH_MAX];
    int r = rc_bundle_runc_root(o->state_dir, root, sizeof root, err);
    if (r < 0)
        return r;
    if (!bundle_dir) {
        snprintf(dir, sizeof dir, "%s/bundles/%s",
                 o->state_dir ? o->state_dir : RC_BUNDLE_DEFAULT_STATE_DIR, session_id);
        bundle_dir = dir;
    }
    rc_runc_opts ro = {
        .runc_path = o->runc, .root = root, .echo_fd = echo, .output_max = output_max};
    return rc_runc_container_new(&ro, session_id, bundle_dir, ret, err);
}

static int exit_code_of(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return EXIT_FAIL;
}

/* Wait in short slices so a signal to us or the wall clock can stop the container. */
static int wait_loop(rc_runc_container *c, int64_t timeout_s, int grace_s, int *ret_code,
                     rc_error *e)
{
    int64_t waited_ms = 0;
    int wstatus = 0, r;
    for (;;) {
        r = rc_runc_wait(c, 200, &wstatus, e);
        if (r == 0) {
            *ret_code = exit_code_of(wstatus);
            return 0;
        }
        if (r != -RC_ETIMEOUT)
            return r;
        waited_ms += 200;
        bool timed_out = timeout_s > 0 && waited_ms >= timeout_s * 1000;
        if (timed_out || got_signal) {
            fprintf(stderr, "runcell-oci: %s: stopping the container\n",
                    timed_out ? "wall-clock limit reached" : "signal received");
            if ((r = rc_runc_stop(c, grace_s * 1000, NULL, e)) < 0)
                return r;
            *ret_code = timed_out ? EXIT_TIMEOUT : 128 + (int)got_signal;
            return 0;
        }
    }
}

static int run_container(const cli *o, rc_bundle *b, size_t output_max, int64_t timeout_s,
                         int grace_s, int *ret_code, rc_error *e)
{
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = NULL;
    rc_error ignored;
    int r;
    if ((r = container_for(o, rc_bundle_session_id(b), rc_bundle_dir(b), STDOUT_FILENO, output_max,
                           &c, e)) < 0)
        return r;
    if ((r = rc_runc_create(c, e)) < 0) {
        (void)rc_runc_delete(c, &ignored);
        return r;
    }
    if ((r = rc_runc_start(c, e)) == 0)
        r = wait_loop(c, timeout_s, grace_s, ret_code, e);
    if (r < 0) {
        (void)rc_runc_stop(c, 0, NULL, &ignored);
        (void)rc_runc_delete(c, &ignored);
        return r;
    }
    return rc_runc_delete(c, e);
}

static int cmd_run(const cli *o, int argc, char **argv)
{
    static const struct option opts[] = {{"timeout", required_argument, NULL, 't'},
                                         {"grace", required_argument, NULL, 'g'},
                                         {"output-max", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    _cleanup_(rc_snapshot_store_freep) rc_snapshot_store *store = NULL;
    _cleanup_(rc_bundle_freep) rc_bundle *b = NULL;
    uint64_t timeout_s = 0, grace_s = 10, output_max = RC_RUNC_DEFAULT_OUTPUT_MAX;
    rc_error e = {0};
    int c, code = EXIT_FAIL;
    if (argc < 2)
        return fail_usage("run SESSION_ID [--timeout S] [--grace S] -- CMD...");
    optind = 2;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == '?')
            return fail_usage("bad run option");
        if (c == 'o') {
            if (parse_size(optarg, &output_max) < 0 || output_max == 0 || output_max > SIZE_MAX)
                return fail_usage("--output-max takes a size");
        } else if (parse_u64(optarg, 86400 * 365, c == 't' ? &timeout_s : &grace_s) < 0) {
            return fail_usage("--timeout and --grace take seconds");
        }
    }
    if (optind >= argc)
        return fail_usage("run needs a command after --");
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (rc_runc_become_subreaper(&e) < 0 || open_store(o, &store, &e) < 0 ||
        rc_bundle_open(o->state_dir, store, argv[1], &b, &e) < 0 ||
        rc_bundle_set_args(b, (const char *const *)argv + optind, &e) < 0 ||
        run_container(o, b, (size_t)output_max, (int64_t)timeout_s, (int)grace_s, &code, &e) < 0)
        return fail(&e);
    return code;
}

static int cmd_state(const cli *o, int argc, char **argv)
{
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = NULL;
    rc_error e = {0};
    int status;
    pid_t pid;
    if (argc != 2)
        return fail_usage("state SESSION_ID");
    if (container_for(o, argv[1], NULL, -1, 0, &c, &e) < 0 ||
        rc_runc_state(c, &status, &pid, &e) < 0)
        return fail(&e);
    printf("%s %d\n", rc_runc_status_name(status), (int)pid);
    return EXIT_OK;
}

static int cmd_rm(const cli *o, int argc, char **argv)
{
    static const struct option opts[] = {{"purge-workspace", no_argument, NULL, 'p'},
                                         {"grace", required_argument, NULL, 'g'},
                                         {NULL, 0, NULL, 0}};
    _cleanup_(rc_runc_container_freep) rc_runc_container *c = NULL;
    rc_error e = {0};
    bool purge = false;
    uint64_t grace_s = RC_RUNC_DEFAULT_GRACE_MS / 1000;
    int ch;
    if (argc < 2)
        return fail_usage("rm SESSION_ID [--purge-workspace] [--grace SECONDS]");
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'p')
            purge = true;
        else if (ch != 'g' || parse_u64(optarg, 3600, &grace_s) < 0)
            return fail_usage("rm SESSION_ID [--purge-workspace] [--grace SECONDS]");
    }
    if (optind != argc)
        return fail_usage("rm SESSION_ID [--purge-workspace] [--grace SECONDS]");
    if (container_for(o, argv[1], NULL, -1, 0, &c, &e) < 0 ||
        rc_runc_stop(c, (int)grace_s * 1000, NULL, &e) < 0 || rc_runc_delete(c, &e) < 0 ||
        rc_bundle_remove_id(o->state_dir, argv[1], purge, &e) < 0)
        return fail(&e);
    return EXIT_OK;
}

static int cmd_workspace(const cli *o, int argc, char **argv)
{
    uint64_t retention = RC_BUNDLE_DEFAULT_RETENTION_S;
    rc_error e = {0};
    if (argc < 2 || strcmp(argv[1], "prune") != 0)
        return fail_usage("workspace prune [--retention SECONDS]");
    if (argc == 4 && strcmp(argv[2], "--retention") == 0) {
        if (parse_u64(argv[3], INT64_MAX, &retention) < 0)
            return fail_usage("--retention takes seconds");
    } else if (argc != 2) {
        return fail_usage("workspace prune [--retention SECONDS]");
    }
    int n = rc_bundle_prune_workspaces(o->state_dir, (int64_t)retention, (int64_t)time(NULL), &e);
    if (n < 0)
        return fail(&e);
    printf("removed %d workspace%s\n", n, n == 1 ? "" : "s");
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"state-dir", required_argument, NULL, 's'},
                                         {"runc", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    cli o = {0};
    int c;
    rc_log_init("runcell-oci", RC_LOG_INFO, -1);
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            o.state_dir = optarg;
            break;
        case 'r':
            o.runc = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            return fail_usage("bad option");
        }
    }
    if (optind >= argc)
        return fail_usage("no command");
    argc -= optind;
    argv += optind;
    const char *cmd = argv[0];
    if (strcmp(cmd, "snapshot") == 0)
        return cmd_snapshot(&o, argc, argv);
    if (strcmp(cmd, "bundle") == 0)
        return cmd_bundle(&o, argc, argv);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(&o, argc, argv);
    if (strcmp(cmd, "state") == 0)
        return cmd_state(&o, argc, argv);
    if (strcmp(cmd, "rm") == 0)
        return cmd_rm(&o, argc, argv);
    if (strcmp(cmd, "workspace") == 0)
        return cmd_workspace(&o, argc, argv);
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    return fail_usage("unknown command");
}
