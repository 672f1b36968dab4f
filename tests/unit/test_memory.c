/* test_memory.c - the pure parts of runner/memory.c: path validation, the three-way merge
 * decisions (protocol 16.2.4, the SDK's #syncStore/#syncPath), the delete cap, and the list page
 * parser against hostile pages. The I/O parts run end to end in
 * tests/integration/runner_memory.sh against the emulator. */
#include "harness.h"
#include "memory.h"

#include <stdlib.h>
#include <string.h>

#define A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static int rel_ok(const char *wire, const char *want)
{
    char *rel = NULL;
    int r = rc_memory_rel_path(wire, &rel, NULL);
    int ok = r == 0 && rel && strcmp(rel, want) == 0;
    free(rel);
    return ok;
}

static int rel_refused(const char *wire)
{
    char *rel = NULL;
    int r = rc_memory_rel_path(wire, &rel, NULL);
    free(rel);
    return r == -RC_EINVAL && rel == NULL;
}

TEST(rel_path_strips_leading_slashes)
{
    CHECK(rel_ok("/notes/a.md", "notes/a.md"));
    CHECK(rel_ok("///x", "x"));
    CHECK(rel_ok("plain", "plain"));
    CHECK(rel_ok("/a b/ü.md", "a b/ü.md"));
    CHECK(rel_ok("/.hidden", ".hidden"));
    CHECK(rel_ok("/a/...", "a/..."));
}

TEST(rel_path_refuses_escapes_and_junk)
{
    CHECK(rel_refused("/"));
    CHECK(rel_refused(""));
    CHECK(rel_refused("/.."));
    CHECK(rel_refused("/../etc/passwd"));
    CHECK(rel_refused("/a/../../b"));
    CHECK(rel_refused("/a/./b"));
    CHECK(rel_refused("/a//b"));
    CHECK(rel_refused("/a/"));
    CHECK(rel_refused("/a\nb"));
    CHECK(rel_refused("/a\tb"));
    CHECK(rel_refused("/" RC_MEMORY_MARKER));
    CHECK(rel_ok("/x/" RC_MEMORY_MARKER, "x/" RC_MEMORY_MARKER)); /* only the root's is reserved */
    CHECK(rc_memory_rel_path(NULL, &(char *){NULL}, NULL) == -RC_EINVAL);

    char seg[300];
    memset(seg, 'x', sizeof seg - 1);
    seg[sizeof seg - 1] = '\0';
    CHECK(rel_refused(seg)); /* a segment over 255 bytes */

    char deep[200];
    size_t dl = 0;
    for (int i = 0; i < RC_MEMORY_DEPTH_MAX + 1; i++) {
        deep[dl++] = '/';
        deep[dl++] = 'd';
    }
    deep[dl] = '\0';
    CHECK(rel_refused(deep));
    deep[dl - 2] = '\0'; /* exactly RC_MEMORY_DEPTH_MAX segments */
    CHECK(rel_ok(deep, deep + 1));

    char *longp = malloc(RC_MEMORY_PATH_MAX + 2);
    REQUIRE(longp);
    memset(longp, 'a', RC_MEMORY_PATH_MAX + 1);
    longp[0] = '/';
    longp[RC_MEMORY_PATH_MAX + 1] = '\0';
    CHECK(rel_refused(longp));
    free(longp);
}

TEST(mount_path_must_be_clean_and_absolute)
{
    CHECK(rc_memory_mount_path_ok("/mnt/memory/notes"));
    CHECK(rc_memory_mount_path_ok("/x"));
    CHECK(!rc_memory_mount_path_ok("/"));
    CHECK(!rc_memory_mount_path_ok(""));
    CHECK(!rc_memory_mount_path_ok(NULL));
    CHECK(!rc_memory_mount_path_ok("mnt/memory"));
    CHECK(!rc_memory_mount_path_ok("/mnt/../etc"));
    CHECK(!rc_memory_mount_path_ok("/mnt/./memory"));
    CHECK(!rc_memory_mount_path_ok("/mnt//memory"));
    CHECK(!rc_memory_mount_path_ok("/mnt/memory/"));
    CHECK(!rc_memory_mount_path_ok("/mnt/mem\nory"));
}

TEST(sha_and_id_shapes)
{
    CHECK(rc_memory_sha_ok(A));
    CHECK(!rc_memory_sha_ok("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    CHECK(!rc_memory_sha_ok(A "a"));
    CHECK(!rc_memory_sha_ok("abc"));
    CHECK(!rc_memory_sha_ok(NULL));
    CHECK(rc_memory_id_ok("mem_01ABCxyz-_"));
    CHECK(!rc_memory_id_ok(""));
    CHECK(!rc_memory_id_ok("mem/../x"));
    CHECK(!rc_memory_id_ok("mem%2F"));
    CHECK(!rc_memory_id_ok("mem x"));
}

TEST(sha256_hex)
{
    char out[RC_MEMORY_SHA_HEX + 1];
    REQUIRE(rc_memory_sha256_hex("", 0, out, NULL) == 0);
    CHECK_STR(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    REQUIRE(rc_memory_sha256_hex("hello\n", 6, out, NULL) == 0);
    CHECK_STR(out, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
}

TEST(delete_cap_is_bounded)
{
    CHECK_INT(rc_memory_delete_cap(0), 8);
    CHECK_INT(rc_memory_delete_cap(32), 8);
    CHECK_INT(rc_memory_delete_cap(40), 10);
    CHECK_INT(rc_memory_delete_cap(200), 50);
    CHECK_INT(rc_memory_delete_cap(2000), 50);
}

typedef struct merge_case {
    const char *name;
    const char *local, *remote, *base, *refused;
    bool ro;
    int want;
} merge_case;

TEST(merge_decisions)
{
    static const merge_case cases[] = {
        /* in sync */
        {"unchanged", A, A, A, NULL, false, RC_MEMORY_KEEP},
        {"unchanged read-only", A, A, A, NULL, true, RC_MEMORY_KEEP},
        /* remote-only changes are pulled */
        {"remote edit", A, B, A, NULL, false, RC_MEMORY_PULL},
        {"remote new", NULL, B, NULL, NULL, false, RC_MEMORY_PULL},
        {"remote edit read-only", A, B, A, NULL, true, RC_MEMORY_PULL},
        /* local-only changes are pushed, never from a read-only store */
        {"local edit", B, A, A, NULL, false, RC_MEMORY_PUSH_UPDATE},
        {"local edit read-only", B, A, A, NULL, true, RC_MEMORY_KEEP},
        {"local new", A, NULL, NULL, NULL, false, RC_MEMORY_PUSH_CREATE},
        {"local new read-only", A, NULL, NULL, NULL, true, RC_MEMORY_KEEP_UNSYNCED},
        {"local edit refused before", B, A, A, B, false, RC_MEMORY_KEEP_REFUSED},
        {"local edit refused other", C, A, A, B, false, RC_MEMORY_PUSH_UPDATE},
        {"local new refused", A, NULL, NULL, A, false, RC_MEMORY_KEEP_UNSYNCED},
        /* both changed: the server wins */
        {"conflict", B, C, A, NULL, false, RC_MEMORY_PULL},
        {"same change both sides", B, B, A, NULL, false, RC_MEMORY_ADOPT},
        {"both new, same", A, A, NULL, NULL, false, RC_MEMORY_ADOPT},
        {"both new, different", A, B, NULL, NULL, false, RC_MEMORY_PULL},
        /* deletes */
        {"local delete", NULL, A, A, NULL, false, RC_MEMORY_DELETE_REMOTE},
        {"local delete read-only", NULL, A, A, NULL, true, RC_MEMORY_HOLD},
        {"local delete, remote edit", NULL, B, A, NULL, false, RC_MEMORY_PULL},
        {"remote delete", A, NULL, A, NULL, false, RC_MEMORY_REMOVE_LOCAL},
        {"remote delete read-only", A, NULL, A, NULL, true, RC_MEMORY_REMOVE_LOCAL},
        {"remote delete, local edit", B, NULL, A, NULL, false, RC_MEMORY_PUSH_CREATE},
        {"remote delete, local edit ro", B, NULL, A, NULL, true, RC_MEMORY_KEEP_UNSYNCED},
        {"deleted both sides", NULL, NULL, A, NULL, false, RC_MEMORY_DROP},
        {"nothing anywhere", NULL, NULL, NULL, NULL, false, RC_MEMORY_DROP},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const merge_case *c = &cases[i];
        rc_memory_merge_in in = {.local = c->local,
                                 .remote = c->remote,
                                 .base = c->base,
                                 .refused = c->refused,
                                 .read_only = c->ro};
        int got = rc_memory_merge(&in);
        if (got != c->want)
            rc_test_fail(__FILE__, __LINE__, "%s: %s, want %s", c->name, rc_memory_action_name(got),
                         rc_memory_action_name(c->want));
    }
}

typedef struct collected {
    int n;
    char rel[8][64];
    char id[8][64];
    size_t content_len[8];
    int with_content;
} collected;

static int collect(const rc_memory_item *it, const char *rel, void *ud, rc_error *err)
{
    collected *c = ud;
    (void)err;
    if (c->n < 8) {
        snprintf(c->rel[c->n], sizeof c->rel[0], "%s", rel);
        snprintf(c->id[c->n], sizeof c->id[0], "%s", it->id);
        c->content_len[c->n] = it->content_len;
        c->with_content += it->content != NULL;
    }
    c->n++;
    return 0;
}

static int parse(const char *page, collected *c, char **next, size_t *skipped)
{
    *c = (collected){0};
    return rc_memory_list_page_parse(page, strlen(page), collect, c, next, skipped, NULL);
}

TEST(list_page_parses_memories_and_skips_the_rest)
{
    const char *page =
        "{\"data\":["
        "{\"type\":\"memory\",\"id\":\"mem_1\",\"path\":\"/a.md\",\"content_sha256\":\"" A "\","
        "\"content\":\"hi\"},"
        "{\"type\":\"memory_prefix\",\"path\":\"/docs/\"},"
        "{\"type\":\"memory\",\"id\":\"mem_2\",\"path\":\"/docs/b.md\",\"content_sha256\":\"" B
        "\","
        "\"content\":null},"
        "{\"type\":\"memory\",\"id\":\"mem_3\",\"path\":\"/../escape\",\"content_sha256\":\"" B
        "\"},"
        "{\"type\":\"memory\",\"id\":\"../x\",\"path\":\"/ok\",\"content_sha256\":\"" B "\"},"
        "{\"type\":\"memory\",\"id\":\"mem_4\",\"path\":\"/ok\",\"content_sha256\":\"XYZ\"},"
        "{\"type\":\"memory\",\"id\":\"mem_5\",\"path\":\"/" RC_MEMORY_MARKER
        "\",\"content_sha256\":\"" B "\"},"
        "{\"type\":\"memory\",\"id\":\"mem_6\",\"path\":7,\"content_sha256\":\"" B "\"},"
        "{\"type\":\"memory\",\"id\":\"mem_7\",\"path\":\"/c\",\"content_sha256\":\"" B "\","
        "\"content\":42},"
        "17,null,\"x\""
        "],\"next_page\":\"mp_abc\"}";
    collected c;
    char *next = NULL;
    size_t skipped = 0;
    CHECK_INT(parse(page, &c, &next, &skipped), 2);
    CHECK_STR(c.rel[0], "a.md");
    CHECK_STR(c.id[0], "mem_1");
    CHECK_INT(c.content_len[0], 2);
    CHECK_STR(c.rel[1], "docs/b.md");
    CHECK_INT(c.with_content, 1);
    CHECK_INT(skipped, 6);
    CHECK_STR(next, "mp_abc");
    free(next);
}

TEST(list_page_last_page_and_malformed_pages)
{
    collected c;
    char *next = (char *)"untouched";
    size_t skipped = 99;
    CHECK_INT(parse("{\"data\":[],\"next_page\":null}", &c, &next, &skipped), 0);
    CHECK(next == NULL);
    CHECK_INT(skipped, 0);
    CHECK_INT(parse("{\"data\":[]}", &c, &next, &skipped), 0);
    CHECK(next == NULL);
    CHECK_INT(parse("{\"data\":[],\"next_page\":\"\"}", &c, &next, &skipped), 0);
    CHECK(next == NULL);

    CHECK(parse("[]", &c, &next, &skipped) < 0);
    CHECK(parse("{\"data\":{}}", &c, &next, &skipped) < 0);
    CHECK(parse("{\"data\":[],\"next_page\":5}", &c, &next, &skipped) < 0);
    CHECK(parse("{\"data\":[", &c, &next, &skipped) < 0);
    CHECK(parse("{\"data\":[],\"data\":[]}", &c, &next, &skipped) < 0); /* duplicate key */
    CHECK(parse("", &c, &next, &skipped) < 0);
}

TEST(list_page_caps_content)
{
    size_t n = RC_MEMORY_CONTENT_MAX + 1;
    size_t cap = n + 512;
    char *page = malloc(cap);
    REQUIRE(page);
    int off = snprintf(page, cap,
                       "{\"data\":[{\"type\":\"memory\",\"id\":\"mem_1\",\"path\":\"/big\","
                       "\"content_sha256\":\"" A "\",\"content\":\"");
    memset(page + off, 'x', n);
    snprintf(page + off + n, cap - (size_t)off - n, "\"}],\"next_page\":null}");
    collected c;
    char *next = NULL;
    size_t skipped = 0;
    CHECK_INT(parse(page, &c, &next, &skipped), 0);
    CHECK_INT(skipped, 1);
    free(page);
}

TEST(session_store_count)
{
    cJSON *s = cJSON_Parse("{\"resources\":[{\"type\":\"memory_store\",\"memory_store_id\":\"m1\"},"
                           "{\"type\":\"file\"},{\"type\":\"memory_store\"}]}");
    REQUIRE(s);
    CHECK_INT(rc_memory_session_store_count(s), 2);
    cJSON_Delete(s);
    s = cJSON_Parse("{\"resources\":null}");
    CHECK_INT(rc_memory_session_store_count(s), 0);
    cJSON_Delete(s);
    CHECK_INT(rc_memory_session_store_count(NULL), 0);
}
