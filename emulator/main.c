/* main.c - runcell-emulator: a local stand-in for the Managed Agents API (protocol.md, played
 * by scenarios of scenario.md).
 *
 * One readable flow: parse options, make up the credentials that were not given, load the
 * scenarios, start the webhook thread, the HTTP server and the ticker, print the ANTHROPIC_*
 * lines a shell can eval, then wait for SIGINT/SIGTERM and shut down in reverse order. Every
 * signal is blocked in every thread and taken synchronously with sigwait() here. */
#include "em.h"
#include "server.h"

#include "base64.h"
#include "cleanup.h"
#include "log.h"
#include "webhook.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fputs("usage: runcell-emulator [--listen HOST:PORT] [--scenarios DIR] [--webhook-url URL]\n"
          "                        [--webhook-secret whsec_...] [--api-key KEY] [--state-dir DIR]\n"
          "                        [--lease-ttl SECONDS] [--ping-interval-ms MS]\n"
          "                        [--webhook-backoff-ms A,B] [--webhook-timeout-ms MS]\n"
          "                        [--threads N] [--lenient-beta]\n"
          "Prints ANTHROPIC_BASE_URL=, ANTHROPIC_API_KEY= and ANTHROPIC_WEBHOOK_SIGNING_KEY=\n"
          "on stdout (generated when not given). The API key and webhook secret may also come\n"
          "from RUNCELL_EMULATOR_API_KEY and RUNCELL_EMULATOR_WEBHOOK_SECRET.\n"
          "See docs/EMULATOR.md.\n",
          f);
}

static int parse_positive(const char *opt, const char *v, long lo, long hi, long *ret,
                          rc_error *err)
{
    long n;
    if (rc_emutil_parse_long(v, &n) < 0 || n < lo || n > hi)
        return rc_error_set(err, RC_EINVAL, "%s: expected an integer between %ld and %ld", opt, lo,
                            hi);
    *ret = n;
    return 0;
}

static int parse_backoff(const char *v, long out[2], rc_error *err)
{
    char a[32], *comma;
    snprintf(a, sizeof(a), "%s", v);
    comma = strchr(a, ',');
    if (!comma)
        return rc_error_set(err, RC_EINVAL, "--webhook-backoff-ms: expected A,B");
    *comma = '\0';
    if (parse_positive("--webhook-backoff-ms", a, 0, 3600000, &out[0], err) < 0 ||
        parse_positive("--webhook-backoff-ms", comma + 1, 0, 3600000, &out[1], err) < 0)
        return -RC_EINVAL;
    return 0;
}

static int parse_args(int argc, char **argv, rc_em_config *cfg, rc_error *err)
{
    enum { O_LEASE = 256, O_PING, O_BACKOFF, O_HOOK_TIMEOUT, O_THREADS, O_LENIENT };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"scenarios", required_argument, NULL, 's'},
        {"webhook-url", required_argument, NULL, 'w'},
        {"webhook-secret", required_argument, NULL, 'k'},
        {"api-key", required_argument, NULL, 'a'},
        {"state-dir", required_argument, NULL, 'd'},
        {"lease-ttl", required_argument, NULL, O_LEASE},
        {"ping-interval-ms", required_argument, NULL, O_PING},
        {"webhook-backoff-ms", required_argument, NULL, O_BACKOFF},
        {"webhook-timeout-ms", required_argument, NULL, O_HOOK_TIMEOUT},
        {"threads", required_argument, NULL, O_THREADS},
        {"lenient-beta", no_argument, NULL, O_LENIENT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long n;
    int c;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            cfg->listen = optarg;
            break;
        case 's':
            cfg->scenarios_dir = optarg;
            break;
        case 'w':
            cfg->webhook_url = optarg;
            break;
        case 'k':
            cfg->webhook_secret = optarg;
            break;
        case 'a':
            cfg->api_key = optarg;
            break;
        case 'd':
            cfg->state_dir = optarg;
            break;
        case O_LEASE:
            if (parse_positive("--lease-ttl", optarg, 1, 86400, &cfg->default_ttl_s, err) < 0)
                return -RC_EINVAL;
            break;
        case O_PING:
            if (parse_positive("--ping-interval-ms", optarg, 10, 3600000, &cfg->ping_ms, err) < 0)
                return -RC_EINVAL;
            break;
        case O_BACKOFF:
            if (parse_backoff(optarg, cfg->hook_backoff_ms, err) < 0)
                return -RC_EINVAL;
            break;
        case O_HOOK_TIMEOUT:
            if (parse_positive("--webhook-timeout-ms", optarg, 100, 600000, &cfg->hook_timeout_ms,
                               err) < 0)
                return -RC_EINVAL;
            break;
        case O_THREADS:
            if (parse_positive("--threads", optarg, 1, 64, &n, err) < 0)
                return -RC_EINVAL;
            cfg->threads = (int)n;
            break;
        case O_LENIENT:
            cfg->lenient_beta = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return rc_error_set(err, RC_EINVAL, "bad command line");
        }
    }
    if (optind < argc)
        return rc_error_set(err, RC_EINVAL, "unexpected argument %s", argv[optind]);
    return 0;
}

/* Credentials from the environment when not given on the command line; they win over the ones
 * a --state-dir remembers. */
static void credentials_from_env(rc_em *em)
{
    const char *env_key = getenv("RUNCELL_EMULATOR_API_KEY");
    const char *env_secret = getenv("RUNCELL_EMULATOR_WEBHOOK_SECRET");
    if (!em->cfg.api_key && env_key && *env_key)
        em->cfg.api_key = (char *)env_key;
    if (!em->cfg.webhook_secret && env_secret && *env_secret)
        em->cfg.webhook_secret = (char *)env_secret;
}

/* Credentials that were not given are generated; the values stay out of logs. */
static int setup_credentials(rc_em *em, rc_error *err)
{
    static char api_key[13 + 64 + 1];
    static char secret[6 + 45];
    unsigned char raw[32];
    int r;

    if (!em->cfg.api_key) {
        memcpy(api_key, "sk-ant-api03-", 13);
        if ((r = rc_emutil_random_base62(api_key + 13, 64, err)) < 0)
            return r;
        em->cfg.api_key = api_key;
    }
    if (!em->cfg.webhook_secret) {
        if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
            return rc_error_sys(err, RC_EIO, "getrandom");
        memcpy(secret, "whsec_", 6);
        if ((r = rc_base64_encode(raw, sizeof(raw), RC_BASE64_STD, secret + 6, sizeof(secret) - 6,
                                  err)) < 0)
            return r;
        explicit_bzero(raw, sizeof(raw));
        em->cfg.webhook_secret = secret;
    } else if ((r = rc_webhook_key_check(em->cfg.webhook_secret, err)) < 0) {
        return rc_error_wrap(err, RC_EINVAL, "--webhook-secret");
    }
    em->api_key.kind = RC_EM_CRED_API_KEY;
    em->api_key.value = strdup(em->cfg.api_key);
    if (!em->api_key.value)
        return rc_error_set(err, RC_ENOMEM, "out of memory");
    rc_log_register_secret(em->cfg.api_key, NULL);
    rc_log_register_secret(em->cfg.webhook_secret, NULL);
    return 0;
}

static int load_scenarios(rc_em *em, rc_error *err)
{
    rc_sc_scenario **list = NULL;
    size_t n = 0;
    int r;
    if (!em->cfg.scenarios_dir)
        return 0;
    if ((r = rc_sc_load_dir(em->cfg.scenarios_dir, &list, &n, err)) < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        rc_sc_scenario *sc = list[i];
        list[i] = NULL;
        if ((r = rc_emstore_scenario_put(em, sc, err)) < 0)
            break;
    }
    rc_sc_list_free(list, n);
    if (r >= 0)
        rc_log_info("%zu scenarios loaded from %s", n, em->cfg.scenarios_dir);
    return r < 0 ? r : 0;
}

static void *tick_thread(void *arg)
{
    rc_em *em = arg;
    while (!em->stopping) {
        int64_t now;
        usleep(20 * 1000);
        pthread_mutex_lock(&em->lock);
        now = rc_emutil_mono_ms();
        rc_emstore_lease_tick(em, now);
        rc_emsrv_park_tick(em, now);
        rc_emsse_tick(em, now);
        rc_emplay_tick(em, now);
        pthread_mutex_unlock(&em->lock);
    }
    return NULL;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int start(rc_em *em, rc_error *err)
{
    int r;
    credentials_from_env(em);
    if ((r = rc_emstore_init(em, err)) < 0 || (r = rc_emstate_load(em, err)) < 0 ||
        (r = setup_credentials(em, err)) < 0 || (r = rc_emstate_save(em, err)) < 0 ||
        (r = load_scenarios(em, err)) < 0 || (r = rc_emhook_start(em, err)) < 0 ||
        (r = rc_emsrv_start(em, err)) < 0)
        return r;
    if (pthread_create(&em->tick_thread, NULL, tick_thread, em) != 0)
        return rc_error_set(err, RC_EIO, "cannot start the ticker thread");
    em->tick_started = true;
    return 0;
}

static void stop(rc_em *em)
{
    rc_emsrv_stop(em);
    rc_emhook_stop(em);
    if (em->tick_started)
        pthread_join(em->tick_thread, NULL);
    pthread_mutex_lock(&em->lock);
    rc_emstate_save(em, NULL);
    pthread_mutex_unlock(&em->lock);
    rc_emstore_free(em);
}

int main(int argc, char **argv)
{
    rc_em em = {0};
    rc_error err = {0};
    sigset_t set;
    int sig = 0;

    em.cfg.listen = "127.0.0.1:8787";
    em.cfg.ping_ms = 15000;
    em.cfg.default_ttl_s = RC_EM_DEFAULT_TTL_S;
    em.cfg.hook_backoff_ms[0] = 5000;
    em.cfg.hook_backoff_ms[1] = 30000;
    em.cfg.hook_timeout_ms = 10000;
    em.cfg.threads = 2;
    em.listen_fd = -1;
    rc_log_init("emulator", RC_LOG_INFO, -1);
    if (parse_args(argc, argv, &em.cfg, &err) < 0) {
        rc_log_error("%s", err.msg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_mutex_init(&em.lock, NULL);
    raise_fd_limit();
    if (start(&em, &err) < 0) {
        rc_log_error("%s", err.msg);
        stop(&em);
        return 1;
    }
    printf("ANTHROPIC_BASE_URL=%s\nANTHROPIC_API_KEY=%s\nANTHROPIC_WEBHOOK_SIGNING_KEY=%s\n",
           em.base_url, em.cfg.api_key, em.cfg.webhook_secret);
    fflush(stdout);
    rc_log_info("listening on %s", em.base_url);
    sigwait(&set, &sig);
    rc_log_info("signal %d: shutting down", sig);
    stop(&em);
    return 0;
}
