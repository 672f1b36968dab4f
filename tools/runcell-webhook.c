/* runcell-webhook - sign or verify a Standard Webhooks delivery from the command line.
 *
 * For operators and tests (the npm cross-check): the same code path as the webhook handler
 * (lib/webhook.c), driven by flags. The key is read only from ANTHROPIC_WEBHOOK_SIGNING_KEY so it
 * never appears in argv (visible in /proc/<pid>/cmdline) or in shell history; the body comes from
 * stdin, capped like a request body.
 *
 * Exit status: 0 signed / verified, 1 verification refused (or the key is unusable), 2 usage or
 * input error. */
#include "buf.h"
#include "cleanup.h"
#include "webhook.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY_ENV "ANTHROPIC_WEBHOOK_SIGNING_KEY"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2 };

struct options {
    const char *command;
    const char *id;
    const char *timestamp; /* raw header text for verify; strict integer for sign */
    const char *signature;
    const char *now;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: runcell-webhook sign   --id ID [--timestamp SECONDS] < body\n"
            "       runcell-webhook verify --id ID --signature SIG [--timestamp TS]\n"
            "                              [--now SECONDS] < body\n"
            "\n"
            "sign    prints the webhook-signature value (v1,<base64>) for the body on stdin.\n"
            "verify  checks a delivery as a webhook endpoint would (protocol.md 18.3); TS is the\n"
            "        webhook-timestamp header text, SIG the webhook-signature header (several\n"
            "        space-separated entries allowed).\n"
            "\n"
            "  --id ID             webhook-id\n"
            "  --timestamp TS      webhook-timestamp (default: the current time)\n"
            "  --signature SIG     webhook-signature (verify only)\n"
            "  --now SECONDS       the clock used for the 300 s window (verify only)\n"
            "  -h, --help          this text\n"
            "\n"
            "The signing key (whsec_...) is read from the environment variable " KEY_ENV " only.\n"
            "The body is read from stdin, at most %d bytes.\n"
            "Exit status: 0 success, 1 verification failed, 2 usage or input error.\n",
            RC_WEBHOOK_BODY_MAX);
}

static int fail_usage(const char *msg)
{
    fprintf(stderr, "runcell-webhook: %s (see --help)\n", msg);
    return EXIT_USAGE;
}

/* Strict decimal int64: the whole string, no overflow. */
static int parse_int64(const char *s, int64_t *ret)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *ret = (int64_t)v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"id", required_argument, NULL, 'i'},
        {"timestamp", required_argument, NULL, 't'},
        {"signature", required_argument, NULL, 's'},
        {"now", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            o->id = optarg;
            break;
        case 't':
            o->timestamp = optarg;
            break;
        case 's':
            o->signature = optarg;
            break;
        case 'n':
            o->now = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        default:
            return -1;
        }
    }
    if (optind != argc)
        return -1;
    return 0;
}

/* The whole of stdin, at most RC_WEBHOOK_BODY_MAX bytes. */
static int read_body(rc_buf *body)
{
    rc_error err = {0};

    for (;;) {
        size_t chunk = 65536 < body->max - body->len ? 65536 : body->max - body->len;
        ssize_t n;
        if (rc_buf_reserve(body, chunk, &err) < 0)
            return -1;
        if (body->len == body->max) {
            char extra;
            n = read(STDIN_FILENO, &extra, 1);
            if (n > 0) {
                fprintf(stderr, "runcell-webhook: body exceeds %zu bytes\n", body->max);
                return -1;
            }
        } else {
            n = read(STDIN_FILENO, body->data + body->len, chunk); /* what was reserved */
            if (n > 0) {
                body->len += (size_t)n;
                continue;
            }
        }
        if (n == 0)
            return 0;
        if (errno != EINTR) {
            fprintf(stderr, "runcell-webhook: reading stdin: %s\n", strerror(errno));
            return -1;
        }
    }
}

static int run_sign(const struct options *o, const char *key, const rc_buf *body)
{
    char sig[RC_WEBHOOK_SIGNATURE_SIZE];
    rc_error err = {0};
    int64_t ts = (int64_t)time(NULL);
    int r;

    if (o->signature || o->now)
        return fail_usage("--signature and --now apply to verify only");
    if (o->timestamp && parse_int64(o->timestamp, &ts) < 0)
        return fail_usage("--timestamp must be a decimal integer");
    r = rc_webhook_sign(o->id, ts, body->data, body->len, key, sig, &err);
    if (r < 0) {
        fprintf(stderr, "runcell-webhook: sign: %s\n", err.msg);
        return rc_webhook_is_rejection(r) ? EXIT_REFUSED : EXIT_USAGE;
    }
    printf("%s\n", sig);
    return EXIT_OK;
}

static int run_verify(const struct options *o, const char *key, const rc_buf *body)
{
    char tsbuf[24];
    rc_webhook_headers h = {o->id, o->timestamp, o->signature};
    rc_error err = {0};
    int64_t now = (int64_t)time(NULL);
    int r;

    if (o->now && parse_int64(o->now, &now) < 0)
        return fail_usage("--now must be a decimal integer");
    if (!h.timestamp) {
        snprintf(tsbuf, sizeof tsbuf, "%" PRId64, now);
        h.timestamp = tsbuf;
    }
    r = rc_webhook_verify(&h, body->data, body->len, key, now, &err);
    if (r == 0) {
        fprintf(stderr, "runcell-webhook: verify: signature valid\n");
        return EXIT_OK;
    }
    fprintf(stderr, "runcell-webhook: verify: rejected: %s (%s)\n", rc_webhook_strerror(r),
            err.msg);
    return rc_webhook_is_rejection(r) ? EXIT_REFUSED : EXIT_USAGE;
}

int main(int argc, char **argv)
{
    _cleanup_(rc_buf_free) rc_buf body = RC_BUF_INIT(RC_WEBHOOK_BODY_MAX);
    struct options o = {0};
    const char *key;

    if (argc < 2)
        return fail_usage("missing command");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    o.command = argv[1];
    if (strcmp(o.command, "sign") != 0 && strcmp(o.command, "verify") != 0)
        return fail_usage("command must be sign or verify");
    if (parse_options(argc - 1, argv + 1, &o) < 0)
        return fail_usage("bad arguments");
    if (!o.id)
        return fail_usage("--id is required");
    if (strcmp(o.command, "verify") == 0 && !o.signature)
        return fail_usage("--signature is required for verify");
    key = getenv(KEY_ENV);
    if (!key || !*key) {
        fprintf(stderr, "runcell-webhook: %s is not set\n", KEY_ENV);
        return EXIT_USAGE;
    }
    if (read_body(&body) < 0)
        return EXIT_USAGE;
    if (strcmp(o.command, "sign") == 0)
        return run_sign(&o, key, &body);
    return run_verify(&o, key, &body);
}
