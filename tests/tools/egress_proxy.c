/* egress_proxy.c - runs the broker's egress proxy standalone, for integration tests and by hand.
 *
 *   egress_proxy --policy FILE [--listen 127.0.0.1:3128] [--netns NS] [--ca-file FILE]
 *                [--hosts-file FILE] [--audit FILE|-] [--session-id ID] [--ready-file FILE]
 *                [--intercept-ca-out FILE] [--forward-key FILE]
 *
 * --netns binds the listener inside that network namespace (a name under /var/run/netns or a
 * path such as /proc/PID/ns/net) while the proxy itself dials from the namespace it runs in, as
 * the per-session broker does. --hosts-file (or RUNCELL_BROKER_HOSTS_FILE) replaces DNS with a
 * hosts-style map, so tests never resolve a real name. Once listening, the bound port is written
 * to --ready-file (atomically) and "ready PORT" to stdout. SIGTERM or SIGINT stops it.
 * --intercept-ca-out turns TLS interception on: a fresh session CA (1 hour) is created, as the
 * shim does, and its certificate (never its key) is written to FILE for clients to trust.
 * --forward-key is the HMAC key file for forwardURL tokens. --tool-calls ID,ID... plays the
 * runner's report of running tool calls (issue 11; "" for none): the audit line of each
 * injection names them. */
#include "audit.h"
#include "ca.h"
#include "cleanup.h"
#include "log.h"
#include "netns.h"
#include "policy.h"
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static rc_proxy *running;

static void on_signal(int sig)
{
    (void)sig;
    if (running)
        rc_proxy_stop(running);
}

typedef struct options {
    const char *policy, *listen, *netns, *ca_file, *hosts_file, *audit, *session_id, *ready;
    const char *ca_out, *forward_key, *tool_calls;
} options;

static int usage(void)
{
    fprintf(stderr, "usage: egress_proxy --policy FILE [--listen ADDR:PORT] [--netns NS] "
                    "[--ca-file FILE] [--hosts-file FILE] [--audit FILE|-] [--session-id ID] "
                    "[--ready-file FILE] [--intercept-ca-out FILE] [--forward-key FILE] "
                    "[--tool-calls ID,...]\n");
    return 2;
}

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {{"policy", required_argument, NULL, 'p'},
                                             {"listen", required_argument, NULL, 'l'},
                                             {"netns", required_argument, NULL, 'n'},
                                             {"ca-file", required_argument, NULL, 'c'},
                                             {"hosts-file", required_argument, NULL, 'h'},
                                             {"audit", required_argument, NULL, 'a'},
                                             {"session-id", required_argument, NULL, 's'},
                                             {"ready-file", required_argument, NULL, 'r'},
                                             {"intercept-ca-out", required_argument, NULL, 'i'},
                                             {"forward-key", required_argument, NULL, 'f'},
                                             {"tool-calls", required_argument, NULL, 't'},
                                             {NULL, 0, NULL, 0}};
    int ch;

    *o = (options){.listen = "127.0.0.1:3128", .session_id = "", .audit = "-"};
    o->hosts_file = getenv("RUNCELL_BROKER_HOSTS_FILE");
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            o->policy = optarg;
            break;
        case 'l':
            o->listen = optarg;
            break;
        case 'n':
            o->netns = optarg;
            break;
        case 'c':
            o->ca_file = optarg;
            break;
        case 'h':
            o->hosts_file = optarg;
            break;
        case 'a':
            o->audit = optarg;
            break;
        case 's':
            o->session_id = optarg;
            break;
        case 'r':
            o->ready = optarg;
            break;
        case 'i':
            o->ca_out = optarg;
            break;
        case 'f':
            o->forward_key = optarg;
            break;
        case 't':
            o->tool_calls = optarg;
            break;
        default:
            return -1;
        }
    }
    return o->policy && optind == argc ? 0 : -1;
}

/* "ADDR:PORT" or "[V6]:PORT" */
static int split_listen(const char *s, char *addr, size_t n, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    const char *a = s;
    size_t alen;
    char *end;
    unsigned long p;

    if (!colon)
        return -1;
    alen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (alen < 2 || colon[-1] != ']')
            return -1;
        a = s + 1;
        alen -= 2;
    }
    if (alen == 0 || alen >= n)
        return -1;
    memcpy(addr, a, alen);
    addr[alen] = '\0';
    errno = 0;
    p = strtoul(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || p > 65535)
        return -1;
    *port = (uint16_t)p;
    return 0;
}

static int write_ready(const char *path, uint16_t port)
{
    char tmp[4096], text[16];
    _cleanup_close_ int fd = -1;
    int len = snprintf(text, sizeof text, "%u\n", port);

    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)len) != len)
        return -1;
    return rename(tmp, path);
}

/* A session CA for interception; its certificate goes to path. */
static int make_ca(const char *path, const char *label, rc_ca **ret, rc_error *err)
{
    _cleanup_(rc_ca_freep) rc_ca *ca = NULL;
    _cleanup_(rc_buf_free) rc_buf pem = RC_BUF_INIT(65536);
    _cleanup_close_ int fd = -1;
    int r = rc_ca_new(label[0] ? label : "test", 3600, &ca, err);

    if (r < 0 || (r = rc_ca_cert_pem(ca, &pem, err)) < 0)
        return r;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, pem.data, pem.len) != (ssize_t)pem.len)
        return rc_error_sys(err, RC_EIO, "cannot write %s", path);
    *ret = take_ptr(ca);
    return 0;
}

/* "ID,ID,..." (or "") into a running-calls set. */
static int make_calls(const char *list, rc_audit_calls **ret, rc_error *err)
{
    static rc_audit_call_ids ids;
    const char *p = list;
    int r;

    while (*p) {
        size_t len = strcspn(p, ",");
        if (ids.n == RC_AUDIT_CALLS_MAX || !rc_audit_call_id_ok(p, len))
            return rc_error_set(err, RC_EINVAL, "--tool-calls: not a list of tool-use ids");
        snprintf(ids.ids[ids.n++], sizeof ids.ids[0], "%.*s", (int)len, p);
        p += len + (p[len] == ',');
    }
    if ((r = rc_audit_calls_new(ret, err)) < 0)
        return r;
    rc_audit_calls_set(*ret, &ids);
    return 0;
}

int main(int argc, char **argv)
{
    _cleanup_(rc_audit_calls_freep) rc_audit_calls *calls = NULL;
    _cleanup_(rc_ca_freep) rc_ca *ca = NULL;
    _cleanup_(rc_policy_freep) rc_policy *pol = NULL;
    _cleanup_(rc_audit_closep) rc_audit *audit = NULL;
    _cleanup_(rc_proxy_freep) rc_proxy *px = NULL;
    _cleanup_(rc_buf_free) rc_buf desc = RC_BUF_INIT(1 << 20);
    struct sigaction sa = {.sa_handler = on_signal};
    rc_proxy_config cfg = {0};
    rc_error err = {0};
    options o;
    char addr[64];
    uint16_t port, bound = 0;
    int fd;

    rc_log_init("egress", RC_LOG_INFO, -1);
    if (parse_options(argc, argv, &o) < 0 || split_listen(o.listen, addr, sizeof addr, &port) < 0)
        return usage();
    if (rc_policy_load(o.policy, &pol, &err) < 0 ||
        rc_audit_open(o.audit, o.session_id, &audit, &err) < 0) {
        fprintf(stderr, "egress_proxy: %s\n", err.msg);
        return 1;
    }
    if (o.tool_calls && make_calls(o.tool_calls, &calls, &err) < 0) {
        fprintf(stderr, "egress_proxy: %s\n", err.msg);
        return 1;
    }
    if (o.ca_out && make_ca(o.ca_out, o.session_id, &ca, &err) < 0) {
        fprintf(stderr, "egress_proxy: %s\n", err.msg);
        return 1;
    }
    if (rc_policy_describe(pol, &desc, NULL) == 0)
        rc_log_info("egress policy: %s", desc.data);
    if (rc_netns_listen_tcp(o.netns, addr, port, 128, &fd, &bound, &err) < 0) {
        fprintf(stderr, "egress_proxy: %s\n", err.msg);
        return 1;
    }
    cfg = (rc_proxy_config){.policy = pol,
                            .audit = audit,
                            .ca_file = o.ca_file,
                            .hosts_file = o.hosts_file,
                            .ca = ca,
                            .forward_key_file = o.forward_key,
                            .session_id = o.session_id,
                            .running_calls = calls};
    if (rc_proxy_new(&cfg, fd, &px, &err) < 0) {
        fprintf(stderr, "egress_proxy: %s\n", err.msg);
        return 1;
    }
    running = px;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (o.ready && write_ready(o.ready, bound) < 0) {
        fprintf(stderr, "egress_proxy: cannot write %s\n", o.ready);
        return 1;
    }
    printf("ready %u\n", bound);
    fflush(stdout);
    if (rc_proxy_run(px, &err) < 0) {
        fprintf(stderr, "egress_proxy: %s\n", err.msg);
        return 1;
    }
    running = NULL;
    return 0;
}
