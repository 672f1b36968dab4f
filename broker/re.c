/* re.c - the policy regex engine (see re.h): a recursive-descent parser builds a small syntax
 * tree, whose compiled size is checked before a Thompson-style program is emitted; matching runs
 * the program as a Pike VM (a set of program counters advanced one input byte at a time), so
 * time is linear in the text and memory is fixed by the program. Only "does it match" is
 * computed, so thread priority and captures are not tracked. */
#include "re.h"

#include "cleanup.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum node_kind { N_EMPTY, N_SET, N_CAT, N_ALT, N_REPEAT, N_BOL, N_EOL };

#define REPEAT_INF (-1)

typedef struct node {
    int kind;
    int a, b;     /* children: CAT, ALT (a, b); REPEAT (a) */
    int min, max; /* REPEAT bounds; max REPEAT_INF for unbounded */
    int set;      /* N_SET: index into the set table */
} node;

typedef struct byteset {
    uint8_t bits[32];
} byteset;

enum op { OP_SET, OP_SPLIT, OP_JMP, OP_BOL, OP_EOL, OP_MATCH };

typedef struct inst {
    uint8_t op;
    uint32_t x, y; /* SET: set index; SPLIT: both targets; JMP: x */
} inst;

struct rc_re {
    inst *prog;
    size_t nprog;
    byteset *sets;
    size_t nsets;
};

typedef struct parser {
    const unsigned char *p;
    size_t len, pos;
    node *nodes;
    size_t nnodes, capnodes;
    byteset *sets;
    size_t nsets, capsets;
    unsigned depth;
    rc_error *err;
} parser;

/* ---- byte sets ---- */

static void set_add(byteset *s, unsigned c)
{
    s->bits[c >> 3] |= (uint8_t)(1u << (c & 7));
}

static bool set_has(const byteset *s, unsigned c)
{
    return s->bits[c >> 3] & (1u << (c & 7));
}

static void set_add_range(byteset *s, unsigned lo, unsigned hi)
{
    for (unsigned c = lo; c <= hi; c++)
        set_add(s, c);
}

static void set_invert(byteset *s)
{
    for (size_t i = 0; i < sizeof s->bits; i++)
        s->bits[i] = (uint8_t)~s->bits[i];
}

static void set_union(byteset *s, const byteset *o)
{
    for (size_t i = 0; i < sizeof s->bits; i++)
        s->bits[i] |= o->bits[i];
}

static void set_fold_case(byteset *s)
{
    for (unsigned c = 'a'; c <= 'z'; c++) {
        if (set_has(s, c) || set_has(s, c - 32)) {
            set_add(s, c);
            set_add(s, c - 32);
        }
    }
}

/* The class named by a Perl escape letter (d, w, s and their negations); false if not one. */
static bool perl_class(unsigned char letter, byteset *ret)
{
    byteset s = {{0}};
    switch (tolower(letter)) {
    case 'd':
        set_add_range(&s, '0', '9');
        break;
    case 'w':
        set_add_range(&s, '0', '9');
        set_add_range(&s, 'a', 'z');
        set_add_range(&s, 'A', 'Z');
        set_add(&s, '_');
        break;
    case 's': /* RE2's \s: [\t\n\f\r ] */
        set_add(&s, '\t');
        set_add(&s, '\n');
        set_add(&s, '\f');
        set_add(&s, '\r');
        set_add(&s, ' ');
        break;
    default:
        return false;
    }
    if (isupper(letter))
        set_invert(&s);
    *ret = s;
    return true;
}

static bool posix_class(const char *name, size_t n, byteset *ret)
{
    static const struct {
        const char *name;
        int (*fn)(int);
    } classes[] = {{"alpha", isalpha},   {"digit", isdigit}, {"alnum", isalnum},
                   {"upper", isupper},   {"lower", islower}, {"space", isspace},
                   {"xdigit", isxdigit}, {"punct", ispunct}};
    byteset s = {{0}};
    if (n == 4 && memcmp(name, "word", 4) == 0)
        return perl_class('w', ret);
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        if (strlen(classes[i].name) != n || memcmp(classes[i].name, name, n) != 0)
            continue;
        for (unsigned c = 0; c < 128; c++)
            if (classes[i].fn((int)c))
                set_add(&s, c);
        *ret = s;
        return true;
    }
    return false;
}

/* ---- tree building ---- */

static int fail(parser *ps, const char *what)
{
    return rc_error_set(ps->err, RC_EINVAL, "regex: %s at offset %zu", what, ps->pos);
}

static int new_node(parser *ps, int kind, int *ret)
{
    if (ps->nnodes == ps->capnodes) {
        size_t cap = ps->capnodes ? ps->capnodes * 2 : 32;
        node *n = realloc(ps->nodes, cap * sizeof *n);
        if (!n)
            return rc_error_set(ps->err, RC_ENOMEM, "regex: out of memory");
        ps->nodes = n;
        ps->capnodes = cap;
    }
    ps->nodes[ps->nnodes] = (node){.kind = kind, .a = -1, .b = -1};
    *ret = (int)ps->nnodes++;
    return 0;
}

static int new_set_node(parser *ps, const byteset *s, bool icase, int *ret)
{
    int r, n;
    if (ps->nsets == ps->capsets) {
        size_t cap = ps->capsets ? ps->capsets * 2 : 16;
        byteset *b = realloc(ps->sets, cap * sizeof *b);
        if (!b)
            return rc_error_set(ps->err, RC_ENOMEM, "regex: out of memory");
        ps->sets = b;
        ps->capsets = cap;
    }
    r = new_node(ps, N_SET, &n);
    if (r < 0)
        return r;
    ps->sets[ps->nsets] = *s;
    if (icase)
        set_fold_case(&ps->sets[ps->nsets]);
    ps->nodes[n].set = (int)ps->nsets++;
    *ret = n;
    return 0;
}

static int new_pair(parser *ps, int kind, int a, int b, int *ret)
{
    int n, r = new_node(ps, kind, &n);
    if (r < 0)
        return r;
    ps->nodes[n].a = a;
    ps->nodes[n].b = b;
    *ret = n;
    return 0;
}

static bool at_end(const parser *ps)
{
    return ps->pos >= ps->len;
}

static int peek(const parser *ps)
{
    return at_end(ps) ? -1 : ps->p[ps->pos];
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One escape after the backslash (ps->pos is on the letter). Fills ret_set with its bytes, or
 * sets *ret_assert to N_BOL/N_EOL for \A / \z (only when assertions are allowed). */
static int parse_escape(parser *ps, bool in_class, byteset *ret_set, int *ret_assert)
{
    byteset s = {{0}};
    int c = peek(ps), h1, h2;

    if (c < 0)
        return fail(ps, "trailing backslash");
    ps->pos++;
    *ret_assert = N_EMPTY;
    if (perl_class((unsigned char)c, &s))
        goto done;
    switch (c) {
    case 'n':
        set_add(&s, '\n');
        goto done;
    case 't':
        set_add(&s, '\t');
        goto done;
    case 'r':
        set_add(&s, '\r');
        goto done;
    case 'f':
        set_add(&s, '\f');
        goto done;
    case 'v':
        set_add(&s, '\v');
        goto done;
    case 'x':
        h1 = hexval(peek(ps));
        if (h1 >= 0) {
            ps->pos++;
            h2 = hexval(peek(ps));
            if (h2 >= 0) {
                ps->pos++;
                set_add(&s, (unsigned)(h1 * 16 + h2));
                goto done;
            }
        }
        return fail(ps, "\\x needs exactly two hex digits");
    case 'A':
    case 'z':
        if (in_class)
            return fail(ps, "assertion inside a class");
        *ret_assert = c == 'A' ? N_BOL : N_EOL;
        return 0;
    default:
        break;
    }
    if (c < 0x80 && ispunct(c)) {
        set_add(&s, (unsigned)c);
        goto done;
    }
    return fail(ps, "unsupported escape");
done:
    *ret_set = s;
    return 0;
}

/* A class item: one byte, returned in *ret_byte (>= 0), or a whole set (Perl or POSIX class),
 * returned in ret_set with *ret_byte = -1. */
static int parse_class_item(parser *ps, byteset *ret_set, int *ret_byte)
{
    int c = peek(ps), r, assert_kind;

    if (c < 0)
        return fail(ps, "missing ]");
    if (c == '[' && ps->pos + 1 < ps->len && ps->p[ps->pos + 1] == ':') {
        const char *name = (const char *)ps->p + ps->pos + 2;
        const char *end = memmem(name, ps->len - ps->pos - 2, ":]", 2);
        if (!end || !posix_class(name, (size_t)(end - name), ret_set))
            return fail(ps, "unknown POSIX class");
        ps->pos = (size_t)((const unsigned char *)end - ps->p) + 2;
        *ret_byte = -1;
        return 0;
    }
    ps->pos++;
    if (c != '\\') {
        *ret_byte = c;
        return 0;
    }
    r = parse_escape(ps, true, ret_set, &assert_kind);
    if (r < 0)
        return r;
    /* A single-byte escape (\n, \., \x41) can be a range end; report it as a byte. */
    int count = 0, only = -1;
    for (unsigned b = 0; b < 256; b++)
        if (set_has(ret_set, b)) {
            count++;
            only = (int)b;
        }
    *ret_byte = count == 1 ? only : -1;
    return 0;
}

static int parse_class(parser *ps, bool icase, int *ret)
{
    byteset s = {{0}}, item;
    bool negate = false, first = true;
    int r, lo, hi;

    if (peek(ps) == '^') {
        negate = true;
        ps->pos++;
    }
    for (;;) {
        if (at_end(ps))
            return fail(ps, "missing ]");
        if (peek(ps) == ']' && !first) {
            ps->pos++;
            break;
        }
        first = false;
        r = parse_class_item(ps, &item, &lo);
        if (r < 0)
            return r;
        if (lo < 0) {
            set_union(&s, &item);
            continue;
        }
        if (peek(ps) == '-' && ps->pos + 1 < ps->len && ps->p[ps->pos + 1] != ']') {
            ps->pos++;
            r = parse_class_item(ps, &item, &hi);
            if (r < 0)
                return r;
            if (hi < 0 || hi < lo)
                return fail(ps, "bad character class range");
            set_add_range(&s, (unsigned)lo, (unsigned)hi);
        } else {
            set_add(&s, (unsigned)lo);
        }
    }
    if (icase)
        set_fold_case(&s);
    if (negate)
        set_invert(&s);
    return new_set_node(ps, &s, false, ret);
}

static int parse_alt(parser *ps, bool icase, int *ret);

/* After "(?": a flag group "(?i)" / "(?i:" or a named group "(?P<name>" / "(?<name>".
 * *ret_flag_only is set for "(?i)", which changes the enclosing group's flags. */
static int parse_group_prefix(parser *ps, bool *icase, bool *ret_flag_only)
{
    int c = peek(ps);
    *ret_flag_only = false;
    if (c == 'P' || c == '<') {
        size_t start;
        if (c == 'P')
            ps->pos++;
        if (peek(ps) != '<')
            return fail(ps, "unsupported group syntax");
        start = ++ps->pos;
        while (!at_end(ps) && (isalnum(peek(ps)) || peek(ps) == '_'))
            ps->pos++;
        if (ps->pos == start || peek(ps) != '>')
            return fail(ps, "bad group name");
        ps->pos++;
        return 0;
    }
    if (c == 'i') {
        ps->pos++;
        c = peek(ps);
        if (c == ')' || c == ':') {
            ps->pos++;
            *icase = true;
            *ret_flag_only = c == ')';
            return 0;
        }
    }
    return fail(ps, "unsupported group or flag (only (?:, (?i), (?i:, named groups)");
}

static int parse_group(parser *ps, bool *icase, int *ret, bool *ret_flag_only)
{
    bool inner = *icase;
    int r;

    *ret_flag_only = false;
    if (++ps->depth > RC_RE_DEPTH_MAX)
        return rc_error_set(ps->err, RC_ETOOBIG, "regex: groups nested deeper than %u",
                            RC_RE_DEPTH_MAX);
    if (peek(ps) == '?') {
        ps->pos++;
        if (peek(ps) == ':') {
            ps->pos++;
        } else {
            r = parse_group_prefix(ps, &inner, ret_flag_only);
            if (r < 0)
                return r;
            if (*ret_flag_only) {
                *icase = true;
                ps->depth--;
                return 0;
            }
        }
    }
    r = parse_alt(ps, inner, ret);
    if (r < 0)
        return r;
    if (peek(ps) != ')')
        return fail(ps, "missing )");
    ps->pos++;
    ps->depth--;
    return 0;
}

/* One atom; *ret = -1 (no node) only for a flag-only group. */
static int parse_atom(parser *ps, bool *icase, int *ret)
{
    byteset s = {{0}};
    int c = peek(ps), r, kind;
    bool flag_only;

    ps->pos++;
    switch (c) {
    case '(':
        r = parse_group(ps, icase, ret, &flag_only);
        if (r >= 0 && flag_only)
            *ret = -1;
        return r;
    case '[':
        return parse_class(ps, *icase, ret);
    case '.':
        set_add_range(&s, 0, 255);
        s.bits['\n' >> 3] &= (uint8_t) ~(1u << ('\n' & 7));
        return new_set_node(ps, &s, false, ret);
    case '^':
    case '$':
        return new_node(ps, c == '^' ? N_BOL : N_EOL, ret);
    case '\\':
        r = parse_escape(ps, false, &s, &kind);
        if (r < 0)
            return r;
        if (kind != N_EMPTY)
            return new_node(ps, kind, ret);
        return new_set_node(ps, &s, *icase, ret);
    case '*':
    case '+':
    case '?':
        ps->pos--;
        return fail(ps, "missing argument to repetition operator");
    default:
        set_add(&s, (unsigned)c);
        return new_set_node(ps, &s, *icase, ret);
    }
}

static bool parse_number(parser *ps, int *ret)
{
    long v = 0;
    size_t start = ps->pos;
    while (!at_end(ps) && isdigit(peek(ps))) {
        v = v * 10 + (peek(ps) - '0');
        if (v > 100000)
            v = 100000;
        ps->pos++;
    }
    *ret = (int)v;
    return ps->pos > start;
}

/* "{n}", "{n,}", "{n,m}" at ps->pos (on the '{'). False (position unchanged) when the text is
 * not a repetition, in which case '{' is a literal, as in RE2. */
static bool parse_braces(parser *ps, int *ret_min, int *ret_max)
{
    size_t save = ps->pos;
    int lo, hi;
    ps->pos++;
    if (!parse_number(ps, &lo))
        goto literal;
    hi = lo;
    if (peek(ps) == ',') {
        ps->pos++;
        if (!parse_number(ps, &hi))
            hi = REPEAT_INF;
    }
    if (peek(ps) != '}')
        goto literal;
    ps->pos++;
    *ret_min = lo;
    *ret_max = hi;
    return true;
literal:
    ps->pos = save;
    return false;
}

/* Quantifiers after an atom. */
static int parse_repeat(parser *ps, int atom, int *ret)
{
    int c = peek(ps), lo, hi, n, r;

    if (c == '*' || c == '+' || c == '?') {
        ps->pos++;
        lo = c == '+' ? 1 : 0;
        hi = c == '?' ? 1 : REPEAT_INF;
    } else if (c == '{' && parse_braces(ps, &lo, &hi)) {
        if (lo > (int)RC_RE_REPEAT_MAX || hi > (int)RC_RE_REPEAT_MAX)
            return fail(ps, "repetition count above 1000");
        if (hi != REPEAT_INF && hi < lo)
            return fail(ps, "bad repetition range");
    } else {
        *ret = atom;
        return 0;
    }
    if (peek(ps) == '?') /* lazy: same language, and only "matches or not" is computed */
        ps->pos++;
    c = peek(ps);
    if (c == '*' || c == '+' || c == '?' || (c == '{' && parse_braces(ps, &lo, &lo)))
        return fail(ps, "bad repetition operator (repeated quantifier)");
    r = new_node(ps, N_REPEAT, &n);
    if (r < 0)
        return r;
    ps->nodes[n].a = atom;
    ps->nodes[n].min = lo;
    ps->nodes[n].max = hi;
    *ret = n;
    return 0;
}

static int parse_concat(parser *ps, bool *icase, int *ret)
{
    int acc = -1, atom, r;

    while (!at_end(ps) && peek(ps) != '|' && peek(ps) != ')') {
        r = parse_atom(ps, icase, &atom);
        if (r < 0)
            return r;
        if (atom < 0)
            continue; /* (?i) */
        r = parse_repeat(ps, atom, &atom);
        if (r < 0)
            return r;
        if (acc < 0) {
            acc = atom;
        } else {
            r = new_pair(ps, N_CAT, acc, atom, &acc);
            if (r < 0)
                return r;
        }
    }
    if (acc < 0)
        return new_node(ps, N_EMPTY, ret);
    *ret = acc;
    return 0;
}

static int parse_alt(parser *ps, bool icase, int *ret)
{
    int left, right, r;

    r = parse_concat(ps, &icase, &left);
    if (r < 0)
        return r;
    while (peek(ps) == '|') {
        ps->pos++;
        r = parse_concat(ps, &icase, &right);
        if (r < 0)
            return r;
        r = new_pair(ps, N_ALT, left, right, &left);
        if (r < 0)
            return r;
    }
    *ret = left;
    return 0;
}

/* ---- compiling ---- */

static size_t sat_add(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t sat_mul(size_t a, size_t b)
{
    return b && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

static size_t prog_size(const parser *ps, int n)
{
    const node *nd = &ps->nodes[n];
    size_t s;
    switch (nd->kind) {
    case N_EMPTY:
        return 0;
    case N_CAT:
        return sat_add(prog_size(ps, nd->a), prog_size(ps, nd->b));
    case N_ALT:
        return sat_add(sat_add(prog_size(ps, nd->a), prog_size(ps, nd->b)), 2);
    case N_REPEAT:
        s = prog_size(ps, nd->a);
        if (nd->max == REPEAT_INF)
            return sat_add(sat_mul(s, (size_t)nd->min), sat_add(s, 2));
        return sat_add(sat_mul(s, (size_t)nd->min),
                       sat_mul(sat_add(s, 1), (size_t)(nd->max - nd->min)));
    default:
        return 1;
    }
}

typedef struct emitter {
    inst *prog;
    size_t pc;
} emitter;

static size_t emit_op(emitter *e, int op, uint32_t x, uint32_t y)
{
    e->prog[e->pc] = (inst){.op = (uint8_t)op, .x = x, .y = y};
    return e->pc++;
}

static void emit(const parser *ps, emitter *e, int n);

static void emit_repeat(const parser *ps, emitter *e, const node *nd)
{
    size_t split, i;

    for (i = 0; i < (size_t)nd->min; i++)
        emit(ps, e, nd->a);
    if (nd->max == REPEAT_INF) {
        split = emit_op(e, OP_SPLIT, 0, 0);
        emit(ps, e, nd->a);
        emit_op(e, OP_JMP, (uint32_t)split, 0);
        e->prog[split].x = (uint32_t)(split + 1);
        e->prog[split].y = (uint32_t)e->pc;
        return;
    }
    /* x{min,max} = x^min (x?)^(max-min): each optional copy is "SPLIT copy, after copy". */
    for (i = (size_t)nd->min; i < (size_t)nd->max; i++) {
        split = emit_op(e, OP_SPLIT, 0, 0);
        emit(ps, e, nd->a);
        e->prog[split].x = (uint32_t)(split + 1);
        e->prog[split].y = (uint32_t)e->pc;
    }
}

static void emit(const parser *ps, emitter *e, int n)
{
    const node *nd = &ps->nodes[n];
    size_t split, jmp;

    switch (nd->kind) {
    case N_EMPTY:
        return;
    case N_SET:
        emit_op(e, OP_SET, (uint32_t)nd->set, 0);
        return;
    case N_BOL:
    case N_EOL:
        emit_op(e, nd->kind == N_BOL ? OP_BOL : OP_EOL, 0, 0);
        return;
    case N_CAT:
        emit(ps, e, nd->a);
        emit(ps, e, nd->b);
        return;
    case N_ALT:
        split = emit_op(e, OP_SPLIT, 0, 0);
        emit(ps, e, nd->a);
        jmp = emit_op(e, OP_JMP, 0, 0);
        e->prog[split].x = (uint32_t)(split + 1);
        e->prog[split].y = (uint32_t)e->pc;
        emit(ps, e, nd->b);
        e->prog[jmp].x = (uint32_t)e->pc;
        return;
    case N_REPEAT:
        emit_repeat(ps, e, nd);
        return;
    }
}

static void parser_free(parser *ps)
{
    free(ps->nodes);
    free(ps->sets);
}

int rc_re_compile(const char *pattern, size_t len, bool icase, rc_re **ret, rc_error *err)
{
    _cleanup_(parser_free)
        parser ps = {.p = (const unsigned char *)pattern, .len = len, .err = err};
    _cleanup_(rc_re_freep) rc_re *re = NULL;
    emitter e;
    size_t size;
    int root, r;

    if (len > RC_RE_PATTERN_MAX)
        return rc_error_set(err, RC_ETOOBIG, "regex: longer than %u bytes", RC_RE_PATTERN_MAX);
    if (memchr(pattern, '\0', len))
        return rc_error_set(err, RC_EINVAL, "regex: contains a NUL byte");
    r = parse_alt(&ps, icase, &root);
    if (r < 0)
        return r;
    if (!at_end(&ps))
        return fail(&ps, "unmatched )");
    size = sat_add(prog_size(&ps, root), 1);
    if (size > RC_RE_PROGRAM_MAX)
        return rc_error_set(err, RC_ETOOBIG, "regex: compiles to more than %u instructions",
                            RC_RE_PROGRAM_MAX);
    re = calloc(1, sizeof *re);
    if (!re)
        return rc_error_set(err, RC_ENOMEM, "regex: out of memory");
    re->prog = calloc(size, sizeof *re->prog);
    if (!re->prog)
        return rc_error_set(err, RC_ENOMEM, "regex: out of memory");
    e = (emitter){.prog = re->prog, .pc = 0};
    emit(&ps, &e, root);
    emit_op(&e, OP_MATCH, 0, 0);
    re->nprog = e.pc;
    re->sets = take_ptr(ps.sets);
    re->nsets = ps.nsets;
    *ret = take_ptr(re);
    return 0;
}

void rc_re_free(rc_re *re)
{
    if (!re)
        return;
    free(re->prog);
    free(re->sets);
    free(re);
}

/* ---- matching ---- */

typedef struct vm {
    const rc_re *re;
    uint32_t *mark; /* generation in which each pc was last added */
    uint32_t gen;
    uint32_t *stack;
    bool matched;
} vm;

typedef struct thread_list {
    uint32_t *pc;
    size_t n;
} thread_list;

/* Add pc and everything reachable from it without consuming a byte, at text position pos. */
static void add_thread(vm *m, thread_list *l, uint32_t pc0, size_t pos, size_t len)
{
    size_t sp = 0;
    if (m->mark[pc0] == m->gen)
        return;
    m->mark[pc0] = m->gen;
    m->stack[sp++] = pc0;
    while (sp > 0) {
        uint32_t pc = m->stack[--sp], next[2];
        const inst *in = &m->re->prog[pc];
        int nn = 0;
        switch (in->op) {
        case OP_JMP:
            next[nn++] = in->x;
            break;
        case OP_SPLIT:
            next[nn++] = in->x;
            next[nn++] = in->y;
            break;
        case OP_BOL:
            if (pos == 0)
                next[nn++] = pc + 1;
            break;
        case OP_EOL:
            if (pos == len)
                next[nn++] = pc + 1;
            break;
        case OP_MATCH:
            m->matched = true;
            break;
        default:
            l->pc[l->n++] = pc;
            break;
        }
        for (int i = 0; i < nn; i++) {
            if (m->mark[next[i]] != m->gen) {
                m->mark[next[i]] = m->gen;
                m->stack[sp++] = next[i];
            }
        }
    }
}

int rc_re_search(const rc_re *re, const char *text, size_t len)
{
    size_t n = re->nprog;
    _cleanup_free_ uint32_t *mem = calloc(4 * n, sizeof *mem);
    thread_list cur, nxt, tmp;
    vm m = {.re = re, .gen = 1};

    if (!mem)
        return -RC_ENOMEM;
    if (len >= UINT32_MAX - 1)
        return -RC_ETOOBIG; /* generations are 32-bit; callers cap text far below this */
    m.mark = mem;
    m.stack = mem + n;
    cur = (thread_list){.pc = mem + 2 * n, .n = 0};
    nxt = (thread_list){.pc = mem + 3 * n, .n = 0};
    add_thread(&m, &cur, 0, 0, len);
    for (size_t pos = 0; !m.matched && pos < len; pos++) {
        unsigned char c = (unsigned char)text[pos];
        m.gen++;
        nxt.n = 0;
        for (size_t i = 0; i < cur.n && !m.matched; i++) {
            const inst *in = &re->prog[cur.pc[i]];
            if (in->op == OP_SET && set_has(&re->sets[in->x], c))
                add_thread(&m, &nxt, cur.pc[i] + 1, pos + 1, len);
        }
        add_thread(&m, &nxt, 0, pos + 1, len); /* unanchored: a new start at every byte */
        tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    return m.matched ? 1 : 0;
}
