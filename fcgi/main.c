/* main.c - runcell-fcgi: the unprivileged FastCGI webhook handler behind nginx (docs/FCGI.md).
 *
 * A thin entry point: block the stop signals before any thread exists, read the configuration
 * from the environment and scrub it (credentials included) from the process environment, take
 * the listening socket (socket activation, else --socket), drop every capability, then hand over
 * to the server (fcgi/fcgi_server.c). The work itself is in webhook_handler.c, drain.c and claim.c.
 */
#include "app.h"
#include "dedupe.h"
#include "fcgi_config.h"
#include "fcgi_server.h"
#include "log.h"

#include <errno.h>
#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

extern char **environ;

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* --socket PATH / --socket=PATH / --help; returns -1 to exit with *status. */
static int parse_args(int argc, char **argv, const char **socket_arg, int *status)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(rc_fcgi_config_help(), stdout);
            *status = EXIT_OK;
            return -1;
        }
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            *socket_arg = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--socket=", 9) == 0) {
            *socket_arg = argv[i] + 9;
            continue;
        }
        fprintf(stderr, "runcell-fcgi: unknown argument '%s' (see --help)\n", argv[i]);
        *status = EXIT_USAGE;
        return -1;
    }
    return 0;
}

static int load_config(const char *socket_arg, rc_fcgi_config *cfg)
{
    rc_error err = {0};
    int r = rc_fcgi_config_load((const char *const *)environ, socket_arg, cfg, &err);

    rc_fcgi_env_scrub(); /* also on failure: nothing later may see a credential */
    if (r < 0) {
        rc_log_error("configuration: %s", err.msg);
        return r;
    }
    if (rc_log_register_secret(cfg->environment_key, &err) < 0)
        rc_log_warn("environment key not registered for log redaction: %s", err.msg);
    if (rc_log_register_secret(cfg->webhook_key, &err) < 0)
        rc_log_warn("webhook key not registered for log redaction: %s", err.msg);
    return 0;
}

/* The listening socket; *ret_created says whether we made the file (and remove it at exit). */
static int take_listener(const rc_fcgi_config *cfg, int *ret_fd, bool *ret_created)
{
    rc_error err = {0};
    int r = rc_fcgi_listen_activated(ret_fd, &err);

    *ret_created = false;
    if (r < 0) {
        rc_log_error("%s", err.msg);
        return r;
    }
    if (r == 1) {
        if (cfg->socket_path)
            rc_log_info("socket activation in use; --socket / RUNCELL_FCGI_SOCKET ignored");
        rc_log_info("listening on the socket passed by socket activation (fd 3)");
        return 0;
    }
    if (!cfg->socket_path) {
        rc_log_error("no listening socket: use socket activation or --socket PATH");
        return -RC_EINVAL;
    }
    if ((r = rc_fcgi_listen_unix(cfg->socket_path, cfg->socket_mode, ret_fd, &err)) < 0) {
        rc_log_error("%s", err.msg);
        return r;
    }
    *ret_created = true;
    rc_log_info("listening on %s (mode %04o)", cfg->socket_path, cfg->socket_mode);
    return 0;
}

static int run(const rc_fcgi_config *cfg, int listen_fd)
{
    rc_fcgi_app app = {.cfg = cfg, .listen_fd = listen_fd, .wake_fd = -1};
    rc_error err = {0};
    int r;

    if ((r = rc_fcgi_dedupe_new(cfg->dedupe_entries, (int64_t)cfg->dedupe_ttl_s * 1000, &app.dedupe,
                                &err)) < 0) {
        rc_log_error("%s", err.msg);
        return EXIT_RUNTIME;
    }
    app.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (app.wake_fd < 0) {
        rc_log_error("eventfd: %s", strerror(errno));
        rc_fcgi_dedupe_free(app.dedupe);
        return EXIT_RUNTIME;
    }
    r = rc_fcgi_server_run(&app, &err);
    if (r < 0)
        rc_log_error("%s", err.msg);
    close(app.wake_fd);
    rc_fcgi_dedupe_free(app.dedupe);
    return r < 0 ? EXIT_RUNTIME : EXIT_OK;
}

int main(int argc, char **argv)
{
    rc_fcgi_config cfg = {0};
    const char *socket_arg = NULL;
    rc_error err = {0};
    bool created = false;
    int listen_fd = -1, status = EXIT_OK;
    sigset_t set;

    if (parse_args(argc, argv, &socket_arg, &status) < 0)
        return status;
    rc_fcgi_signal_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc_log_init("fcgi", RC_LOG_INFO, -1);
    if (load_config(socket_arg, &cfg) < 0)
        return EXIT_USAGE;
    if (take_listener(&cfg, &listen_fd, &created) < 0) {
        rc_fcgi_config_clear(&cfg);
        return EXIT_USAGE;
    }
    if (FCGX_Init() != 0) {
        rc_log_error("FCGX_Init failed");
        status = EXIT_RUNTIME;
    } else if (rc_fcgi_drop_privileges(&err) < 0) {
        rc_log_error("dropping privileges: %s", err.msg);
        status = EXIT_RUNTIME;
    } else {
        if (geteuid() == 0)
            rc_log_warn("running as root (with no capabilities); use a dedicated user");
        status = run(&cfg, listen_fd);
    }
    if (created)
        unlink(cfg.socket_path);
    close(listen_fd);
    rc_fcgi_config_clear(&cfg);
    return status;
}
