/* main.c - runcell-runner: serves one claimed work item of a Managed Agents session.
 *
 * A thin entry point: block the shutdown signals before any thread exists (so only the
 * lifecycle's signal thread ever takes them), read the configuration from the environment,
 * wipe every ANTHROPIC_* variable from the process environment, and hand over to the lifecycle
 * (runner/lifecycle.c). Started as `runcell-runner --tool-executor` by the runner itself, it is
 * the tool executor instead (runner/executor.c). Everything the runner reads is documented by
 * `runcell-runner --help` (runner/config.c). */
#include "config.h"
#include "executor.h"
#include "lifecycle.h"
#include "log.h"

#include <malloc.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

extern char **environ;

/* Idle memory (docs/RUNNER.md, "Memory"). One malloc arena for every thread: the threads other
 * than the session thread allocate little, and each extra arena keeps its own partly used heap.
 * Without TLS (socket mode or an http:// URL) OpenSSL is initialised here, before libcurl does
 * it, without reading openssl.cnf and without its error strings: OpenSSL runs each part of its
 * initialisation once, so libcurl's later request for them is a no-op (about 0.9 MiB RSS). */
static void tune_memory(const rc_runner_config *cfg)
{
    (void)mallopt(M_ARENA_MAX, 1);
    if (cfg->api_socket || (cfg->base_url && strncmp(cfg->base_url, "http://", 7) == 0))
        (void)OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_LOAD_SSL_STRINGS |
                                   OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS,
                               NULL);
}

static int usage_error(const char *arg)
{
    fprintf(stderr,
            "runcell-runner: unknown argument '%s' (the runner reads only the "
            "environment; see --help)\n",
            arg);
    return RC_RUNNER_EXIT_CONFIG;
}

int main(int argc, char **argv)
{
    rc_runner_config cfg = {0};
    rc_error err = {0};
    sigset_t set;
    int r, status;

    /* The tool executor is this binary re-executed by the runner (runner/executor.c). */
    if (argc == 2 && strcmp(argv[1], RC_EXECUTOR_ARG) == 0)
        return rc_executor_main(STDIN_FILENO);
    /* Not dumpable: no process of the tool user (nor any other non-root one) may ptrace the
     * runner or read its memory and /proc files, even when the tools run as the same uid. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(rc_runner_config_help(), stdout);
            return 0;
        }
        return usage_error(argv[i]);
    }
    rc_runner_signal_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc_log_init("runner", RC_LOG_INFO, -1);

    r = rc_runner_config_load((const char *const *)environ, &cfg, &err);
    rc_runner_env_scrub(); /* also on failure: nothing below may see a credential */
    if (r < 0) {
        rc_log_error("configuration: %s", err.msg);
        return RC_RUNNER_EXIT_CONFIG;
    }
    if (cfg.credential_kind != RC_RUNNER_CRED_PLACEHOLDER &&
        rc_log_register_secret(cfg.credential, &err) < 0)
        rc_log_warn("credential not registered for log redaction: %s", err.msg);
    if (cfg.secret_undecodable)
        rc_log_warn("ANTHROPIC_WORK_SECRET yields no sessions token; using "
                    "ANTHROPIC_ENVIRONMENT_KEY instead");
    rc_log_set_context(cfg.session_id, cfg.work_id);
    tune_memory(&cfg);

    status = rc_runner_run(&cfg);
    rc_runner_config_clear(&cfg);
    return status;
}
