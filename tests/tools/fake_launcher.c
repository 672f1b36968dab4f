/* fake_launcher.c - TEST DOUBLE of runcell-launcher's hand-off endpoint (fcgi/handoff.h).
 *
 * Not the launcher: it starts nothing. It implements the server side of the hand-off protocol
 * (docs/FCGI.md, "Hand-off protocol") with a configurable answer, so runcell-fcgi's integration
 * tests can exercise accepted / at_capacity / refused / unreachable-after-ack hand-offs until
 * the real launcher lands. Every launch request is appended to the log file as one JSON line with
 * the ids, the answer, and whether the secret decodes to a sessions token (proving it arrived
 * intact) - never the secret itself.
 *
 *   fake_launcher --socket PATH [--answer MODE] [--answer-file FILE] [--capacity N] [--log FILE]
 *
 * MODE: accepted (default; slots limited by --capacity, default 100), at_capacity (every reserve
 * and launch answers at_capacity), refused (reserve succeeds, launch is refused), drop (reserve
 * succeeds, the connection is closed on launch without an answer). With --answer-file the mode
 * is re-read from FILE before every request (so a test can switch it at run time). Accepted
 * sessions stay "active" until the process exits. SIGTERM/SIGINT: remove the socket and exit. */
#include "buf.h"
#include "cleanup.h"
#include "handoff.h"
#include "json.h"
#include "webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CLIENTS 64

struct opts {
    const char *socket_path;
    const char *answer;
    const char *answer_file;
    const char *log_path;
    long capacity;
};

struct state {
    struct opts o;
    char mode[32];
    long active, reserved;
    int listen_fd;
    int fds[MAX_CLIENTS];
    bool held[MAX_CLIENTS]; /* the connection holds a reservation */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: fake_launcher --socket PATH [--answer accepted|at_capacity|refused|"
                    "drop] [--answer-file FILE] [--capacity N] [--log FILE]\n");
    return 2;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.answer = "accepted", .capacity = 100};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return -1;
        if (strcmp(a, "--socket") == 0)
            o->socket_path = v;
        else if (strcmp(a, "--answer") == 0)
            o->answer = v;
        else if (strcmp(a, "--answer-file") == 0)
            o->answer_file = v;
        else if (strcmp(a, "--log") == 0)
            o->log_path = v;
        else if (strcmp(a, "--capacity") == 0)
            o->capacity = strtol(v, NULL, 10);
        else
            return -1;
        i++;
    }
    return o->socket_path ? 0 : -1;
}

static void refresh_mode(struct state *s)
{
    char buf[32] = {0};
    _cleanup_close_ int fd = -1;
    ssize_t n;

    snprintf(s->mode, sizeof s->mode, "%s", s->o.answer);
    if (!s->o.answer_file || (fd = open(s->o.answer_file, O_RDONLY | O_CLOEXEC)) < 0)
        return;
    n = read(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return;
    buf[strcspn(buf, "\r\n ")] = '\0';
    if (buf[0])
        snprintf(s->mode, sizeof s->mode, "%s", buf);
}

static void log_launch(const struct state *s, const rc_handoff_item *it, const char *answer)
{
    char *token = NULL;
    bool token_ok;
    FILE *f;

    if (!s->o.log_path)
        return;
    token_ok = it->secret && rc_worksecret_decode(it->secret, 0, &token, NULL) == 0;
    rc_worksecret_free(token);
    f = fopen(s->o.log_path, "ae");
    if (!f)
        return;
    fprintf(f,
            "{\"op\":\"launch\",\"work_id\":\"%s\",\"session_id\":\"%s\",\"environment_id\":"
            "\"%s\",\"has_secret\":%s,\"secret_len\":%zu,\"token_ok\":%s,\"answer\":\"%s\"}\n",
            it->work_id, it->session_id, it->environment_id, it->secret ? "true" : "false",
            it->secret ? strlen(it->secret) : 0, token_ok ? "true" : "false", answer);
    fclose(f);
}

static rc_handoff_answer do_reserve(struct state *s, int i)
{
    if (strcmp(s->mode, "at_capacity") == 0)
        return rc_handoff_answer_make(RC_HANDOFF_AT_CAPACITY, NULL);
    if (s->held[i])
        return rc_handoff_answer_make(RC_HANDOFF_RESERVED, NULL);
    if (strcmp(s->mode, "accepted") == 0 && s->active + s->reserved >= s->o.capacity)
        return rc_handoff_answer_make(RC_HANDOFF_AT_CAPACITY, NULL);
    s->held[i] = true;
    s->reserved++;
    return rc_handoff_answer_make(RC_HANDOFF_RESERVED, NULL);
}

static void drop_reservation(struct state *s, int i)
{
    if (s->held[i]) {
        s->held[i] = false;
        s->reserved--;
    }
}

/* The answer to a launch; *close_conn for the drop mode. */
static rc_handoff_answer do_launch(struct state *s, int i, const rc_handoff_item *it,
                                   bool *close_conn)
{
    bool had = s->held[i];
    rc_handoff_answer a;

    drop_reservation(s, i);
    if (strcmp(s->mode, "drop") == 0) {
        *close_conn = true;
        log_launch(s, it, "dropped");
        return rc_handoff_answer_make(RC_HANDOFF_ERROR, NULL);
    }
    if (strcmp(s->mode, "refused") == 0)
        a = rc_handoff_answer_make(RC_HANDOFF_REFUSED, "fake launcher: configured to refuse");
    else if (strcmp(s->mode, "at_capacity") == 0 || (!had && s->active >= s->o.capacity))
        a = rc_handoff_answer_make(RC_HANDOFF_AT_CAPACITY, NULL);
    else if (!it->secret)
        a = rc_handoff_answer_make(RC_HANDOFF_REFUSED, "item has no secret");
    else {
        a = rc_handoff_answer_make(RC_HANDOFF_ACCEPTED, NULL);
        s->active++;
    }
    log_launch(s, it, rc_handoff_status_name(a.status));
    return a;
}

static rc_handoff_answer answer_request(struct state *s, int i, const rc_buf *msg, bool *close_conn)
{
    _cleanup_json_ cJSON *tree = NULL;
    rc_handoff_request req;
    rc_handoff_answer a;
    rc_error err = {0};

    refresh_mode(s);
    if (rc_handoff_request_decode(msg->data, msg->len, &tree, &req, &err) < 0)
        return rc_handoff_answer_make(RC_HANDOFF_ERROR, err.msg);
    switch (req.op) {
    case RC_HANDOFF_OP_RESERVE:
        return do_reserve(s, i);
    case RC_HANDOFF_OP_RELEASE:
        drop_reservation(s, i);
        return rc_handoff_answer_make(RC_HANDOFF_RELEASED, NULL);
    case RC_HANDOFF_OP_LAUNCH:
        return do_launch(s, i, &req.item, close_conn);
    case RC_HANDOFF_OP_STATUS:
        a = rc_handoff_answer_make(RC_HANDOFF_OK, NULL);
        a.active = s->active;
        a.capacity = s->o.capacity;
        a.reserved = s->reserved;
        return a;
    }
    return rc_handoff_answer_make(RC_HANDOFF_ERROR, "unknown op");
}

static void close_client(struct state *s, int i)
{
    drop_reservation(s, i);
    close(s->fds[i]);
    s->fds[i] = -1;
}

static void serve_client(struct state *s, int i)
{
    _cleanup_(rc_buf_free) rc_buf msg = RC_BUF_INIT(RC_HANDOFF_MSG_MAX);
    rc_handoff_answer a;
    bool close_conn = false;
    int n = rc_handoff_recv(s->fds[i], &msg, NULL);

    if (n <= 0) {
        close_client(s, i);
        return;
    }
    a = answer_request(s, i, &msg, &close_conn);
    if (close_conn) {
        close_client(s, i);
        return;
    }
    rc_buf_reset(&msg);
    if (rc_handoff_answer_encode(&a, &msg, NULL) < 0 || rc_handoff_send(s->fds[i], &msg, NULL) < 0)
        close_client(s, i);
}

static void accept_client(struct state *s)
{
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (s->fds[i] < 0) {
            s->fds[i] = fd;
            s->held[i] = false;
            return;
        }
    }
    close(fd);
}

static int listen_on(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void loop(struct state *s)
{
    struct pollfd p[MAX_CLIENTS + 1];

    while (!stop_requested) {
        p[0] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        for (int i = 0; i < MAX_CLIENTS; i++)
            p[i + 1] = (struct pollfd){.fd = s->fds[i], .events = POLLIN};
        if (poll(p, MAX_CLIENTS + 1, 200) < 0)
            continue;
        if (p[0].revents & POLLIN)
            accept_client(s);
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (s->fds[i] >= 0 && (p[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                serve_client(s, i);
    }
}

int main(int argc, char **argv)
{
    struct state s = {0};
    struct sigaction sa = {.sa_handler = on_signal};

    if (parse_opts(argc, argv, &s.o) < 0)
        return usage();
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < MAX_CLIENTS; i++)
        s.fds[i] = -1;
    s.listen_fd = listen_on(s.o.socket_path);
    if (s.listen_fd < 0) {
        fprintf(stderr, "fake_launcher: cannot listen on %s: %s\n", s.o.socket_path,
                strerror(errno));
        return 1;
    }
    printf("fake_launcher: listening on %s\n", s.o.socket_path);
    fflush(stdout);
    loop(&s);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (s.fds[i] >= 0)
            close(s.fds[i]);
    close(s.listen_fd);
    unlink(s.o.socket_path);
    return 0;
}
