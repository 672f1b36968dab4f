/* re.h - a small regular-expression engine for policy matchers: an RE2-compatible subset that
 * matches in linear time.
 *
 * The egress policy's `regex` matchers use RE2 syntax (reference-app.md 8.4.5). RE2 is not in
 * the project's dependencies and PCRE2 backtracks, so the broker carries its own Pike-VM
 * matcher: time O(text length x program size), no recursion on input, no backtracking, so a
 * hostile path or header cannot stall the proxy. Compiling rejects anything outside the subset
 * with a clear message instead of guessing.
 *
 * Supported: literals; `.` (any byte but newline); classes `[a-z]`, `[^...]`, `[[:alpha:]]`
 * (alpha digit alnum upper lower space xdigit punct word); escapes `\d \D \w \W \s \S`,
 * `\n \t \r \f \v`, `\xHH`, `\A`, `\z` and escaped punctuation; anchors `^` `$` (whole-text,
 * RE2's default); groups `(...)`, `(?:...)`, `(?P<name>...)`, `(?<name>...)`; the flag `i` as
 * `(?i)` or `(?i:...)`; alternation `|`; repetition `* + ? {n} {n,} {n,m}` (n, m <= 1000) with
 * an optional lazy `?`. Rejected: backreferences, lookaround, `\b`, Unicode classes, other flags.
 * Matching is over bytes and unanchored (RE2::PartialMatch, Go's MatchString): write `^...$`
 * to match the whole text. */
#ifndef RUNCELL_BROKER_RE_H
#define RUNCELL_BROKER_RE_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>

#define RC_RE_PATTERN_MAX 1024u  /* bytes of pattern text */
#define RC_RE_PROGRAM_MAX 20000u /* compiled instructions (repetition expands) */
#define RC_RE_REPEAT_MAX  1000u  /* largest n or m in {n,m} (RE2's own limit) */
#define RC_RE_DEPTH_MAX   64u    /* nested groups */

typedef struct rc_re rc_re;

/* Compile pattern[0..len). icase makes the whole pattern case-insensitive (as if it began with
 * (?i)); used for header names. Errors (-RC_EINVAL, -RC_ETOOBIG, -RC_ENOMEM) name the offset and
 * the construct, never echo the pattern. */
int rc_re_compile(const char *pattern, size_t len, bool icase, rc_re **ret, rc_error *err);
/* 1 when the pattern matches somewhere in text[0..len), 0 when not, -RC_ENOMEM when the matcher's
 * work lists cannot be allocated (callers must treat that as a failure, never as "no match").
 * Safe to call from several threads on the same rc_re. */
int rc_re_search(const rc_re *re, const char *text, size_t len);
void rc_re_free(rc_re *re);

static inline void rc_re_freep(rc_re **p)
{
    if (*p)
        rc_re_free(*p);
}

#endif
