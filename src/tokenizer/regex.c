/*
 * regex.c -- the regular-expression subset that tokenizer.json `Split` patterns use, matched
 * by a Pike VM (Thompson NFA simulation with thread priorities), so there is no backtracking
 * and no blow-up: one search costs O(program size x text scanned).
 *
 * Owns: parsing a pattern, compiling it to a small program, leftmost-first search.
 *
 * Supported: literals and escapes (\r \n \t \f \v \0 \xHH \x{H..} \uHHHH, escaped
 * punctuation), `.`, classes [...] / [^...] with ranges, \s \S \d \D \w \W, \p{..} \P{..}
 * \pL (general categories L Lu Ll Lt Lm Lo M Mn Mc Me N Nd Nl No P Pc Pd Ps Pe Pi Pf Po S Sm
 * Sc Sk So Z Zs Zl Zp C Cc Cf Co Cn Cs, and L&), groups ( ) (?: ), case-insensitive groups
 * (?i: ), alternation, quantifiers ? * + {m} {m,} {m,n} (greedy or lazy `?`), and
 * lookahead (?! ) / (?= ) over one character class (\s+(?!\S)), ^ and $ (whole text).
 * Anything else is refused with the construct named.
 *
 * Semantics follow Oniguruma (Hugging Face tokenizers) for these patterns: leftmost match,
 * alternatives tried in order, greedy quantifiers. \s is Unicode White_Space, \d is Nd,
 * \w is L|M|Nd|Pc. Unicode data come from utf8proc. Bytes that are not valid UTF-8 are one
 * character each, of no category (they match only negated classes and `.`).
 */
#include "tok_ext.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- character classes ------------------------------------------------------------- */

enum { IT_RANGE, IT_CATS, IT_SPACE, IT_DIGIT, IT_WORD, IT_ANY };

typedef struct re_item {
    uint8_t kind, negated;
    uint32_t lo, hi;    /* IT_RANGE */
    uint32_t cats;      /* IT_CATS: bit per utf8proc category */
} re_item;

typedef struct re_class {
    int neg, ci;
    re_item *items;
    int n, cap;
} re_class;

#define CP_INVALID 0xFFFFFFFFu /* a byte that is not UTF-8 */

static int is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static uint32_t cat_bit(uint32_t c) {
    if (c == CP_INVALID) return 0;
    return 1u << utf8proc_category((utf8proc_int32_t)c);
}

#define CATS_L 0x3Eu                                  /* Lu Ll Lt Lm Lo */
#define CATS_M ((1u << 6) | (1u << 7) | (1u << 8))
#define CATS_N ((1u << 9) | (1u << 10) | (1u << 11))
#define CATS_P (0x7Fu << 12)
#define CATS_S (0xFu << 19)
#define CATS_Z (0x7u << 23)
#define CATS_C ((1u << 0) | (0xFu << 26))

static int item_match(const re_item *it, uint32_t c) {
    int m;
    switch (it->kind) {
    case IT_RANGE: m = c != CP_INVALID && c >= it->lo && c <= it->hi; break;
    case IT_CATS: m = (cat_bit(c) & it->cats) != 0; break;
    case IT_SPACE: m = c != CP_INVALID && is_white_space(c); break;
    case IT_DIGIT: m = (cat_bit(c) & (1u << 9)) != 0; break;
    case IT_WORD: m = (cat_bit(c) & (CATS_L | CATS_M | (1u << 9) | (1u << 12))) != 0; break;
    default: m = 1; break;
    }
    return it->negated ? !m : m;
}

static int class_match1(const re_class *k, uint32_t c) {
    for (int i = 0; i < k->n; i++)
        if (item_match(&k->items[i], c)) return 1;
    return 0;
}

static int class_match(const re_class *k, uint32_t c) {
    int m = class_match1(k, c);
    if (!m && k->ci && c != CP_INVALID) {
        uint32_t lo = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        uint32_t up = (uint32_t)utf8proc_toupper((utf8proc_int32_t)c);
        m = (lo != c && class_match1(k, lo)) || (up != c && class_match1(k, up));
    }
    return k->neg ? !m : m;
}

/* ---- parsing to an AST ------------------------------------------------------------- */

enum { N_CLASS, N_SEQ, N_ALT, N_REP, N_LOOK, N_BOL, N_EOL };

typedef struct re_node {
    int type;
    int cls;                 /* N_CLASS, N_LOOK: class index */
    int negated;             /* N_LOOK */
    int min, max, greedy;    /* N_REP (max -1 = unbounded) */
    struct re_node **kids;
    int n_kids, cap_kids;
} re_node;

enum { OP_CLASS, OP_SPLIT, OP_JMP, OP_MATCH, OP_LOOK, OP_BOL, OP_EOL };

typedef struct re_inst {
    uint8_t op;
    uint8_t negated;
    int x, y; /* OP_SPLIT: x preferred; OP_JMP: x; OP_CLASS/OP_LOOK: x = class */
} re_inst;

struct qkv__re {
    re_class *cls;
    int n_cls, cap_cls;
    re_inst *prog;
    int n_prog, cap_prog;
};

typedef struct parser {
    const char *p, *end, *pat;
    qkv__re *re;
    int ci;
    int depth;
    qkv_status st;
} parser;

#define RE_MAX_PROG 100000
#define RE_MAX_REPEAT 1000

static qkv_status perr(parser *ps, const char *what) {
    if (!ps->st)
        ps->st = qkv__fail(QKV_EFORMAT, "regex: %s at offset %ld of \"%.80s\"", what,
                           (long)(ps->p - ps->pat), ps->pat);
    return ps->st;
}

static void node_free(re_node *n) {
    if (!n) return;
    for (int i = 0; i < n->n_kids; i++) node_free(n->kids[i]);
    free(n->kids);
    free(n);
}

static re_node *node_new(parser *ps, int type) {
    re_node *n = calloc(1, sizeof *n);
    if (!n) {
        if (!ps->st) ps->st = qkv__fail(QKV_ENOMEM, "regex: out of memory");
        return NULL;
    }
    n->type = type;
    return n;
}

static int node_add(parser *ps, re_node *n, re_node *kid) {
    if (n->n_kids == n->cap_kids) {
        int cap = n->cap_kids ? n->cap_kids * 2 : 4;
        re_node **k = realloc(n->kids, (size_t)cap * sizeof *k);
        if (!k) {
            node_free(kid);
            if (!ps->st) ps->st = qkv__fail(QKV_ENOMEM, "regex: out of memory");
            return 0;
        }
        n->kids = k;
        n->cap_kids = cap;
    }
    n->kids[n->n_kids++] = kid;
    return 1;
}

static int new_class(parser *ps) {
    qkv__re *re = ps->re;
    if (re->n_cls == re->cap_cls) {
        int cap = re->cap_cls ? re->cap_cls * 2 : 16;
        re_class *c = realloc(re->cls, (size_t)cap * sizeof *c);
        if (!c) {
            perr(ps, "out of memory");
            return -1;
        }
        re->cls = c;
        re->cap_cls = cap;
    }
    memset(&re->cls[re->n_cls], 0, sizeof re->cls[0]);
    re->cls[re->n_cls].ci = ps->ci;
    return re->n_cls++;
}

static int class_add(parser *ps, int ci, re_item it) {
    re_class *k = &ps->re->cls[ci];
    if (k->n == k->cap) {
        int cap = k->cap ? k->cap * 2 : 4;
        re_item *p = realloc(k->items, (size_t)cap * sizeof *p);
        if (!p) {
            perr(ps, "out of memory");
            return 0;
        }
        k->items = p;
        k->cap = cap;
    }
    k->items[k->n++] = it;
    return 1;
}

/* Next code point of the pattern (the pattern is UTF-8). */
static uint32_t pnext(parser *ps) {
    uint32_t c;
    size_t l = qkv__utf8_decode((const uint8_t *)ps->p, (size_t)(ps->end - ps->p), &c);
    if (l == 0) {
        perr(ps, "pattern is not valid UTF-8");
        ps->p = ps->end;
        return 0;
    }
    ps->p += l;
    return c;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static uint32_t parse_hex(parser *ps, int ndig) {
    uint32_t v = 0;
    int braced = ps->p < ps->end && *ps->p == '{';
    if (braced) ps->p++;
    int got = 0;
    while (ps->p < ps->end && (braced || got < ndig) && hexval(*ps->p) >= 0 && got < 8) {
        v = v * 16 + (uint32_t)hexval(*ps->p++);
        got++;
    }
    if (braced) {
        if (ps->p < ps->end && *ps->p == '}') ps->p++;
        else perr(ps, "unterminated \\x{...}");
    }
    if (!got || (!braced && got != ndig) || v > 0x10FFFF) perr(ps, "bad hex escape");
    return v;
}

/* \p{...}: category name -> mask (0 = unknown). */
static uint32_t category_mask(const char *s, size_t n) {
    static const struct { const char *name; uint32_t mask; } cats[] = {
        {"L", CATS_L}, {"Letter", CATS_L}, {"L&", 0xEu}, {"LC", 0xEu},
        {"Lu", 1u << 1}, {"Ll", 1u << 2}, {"Lt", 1u << 3}, {"Lm", 1u << 4}, {"Lo", 1u << 5},
        {"M", CATS_M}, {"Mark", CATS_M}, {"Mn", 1u << 6}, {"Mc", 1u << 7}, {"Me", 1u << 8},
        {"N", CATS_N}, {"Number", CATS_N}, {"Nd", 1u << 9}, {"Nl", 1u << 10}, {"No", 1u << 11},
        {"P", CATS_P}, {"Punctuation", CATS_P}, {"Pc", 1u << 12}, {"Pd", 1u << 13},
        {"Ps", 1u << 14}, {"Pe", 1u << 15}, {"Pi", 1u << 16}, {"Pf", 1u << 17}, {"Po", 1u << 18},
        {"S", CATS_S}, {"Symbol", CATS_S}, {"Sm", 1u << 19}, {"Sc", 1u << 20}, {"Sk", 1u << 21},
        {"So", 1u << 22}, {"Z", CATS_Z}, {"Separator", CATS_Z}, {"Zs", 1u << 23},
        {"Zl", 1u << 24}, {"Zp", 1u << 25}, {"C", CATS_C}, {"Other", CATS_C}, {"Cc", 1u << 26},
        {"Cf", 1u << 27}, {"Cs", 1u << 28}, {"Co", 1u << 29}, {"Cn", 1u << 0},
    };
    for (size_t i = 0; i < sizeof cats / sizeof cats[0]; i++)
        if (strlen(cats[i].name) == n && memcmp(cats[i].name, s, n) == 0) return cats[i].mask;
    return 0;
}

/* After a backslash: fills *it with a class item (returns 1) or *lit with a literal (0). */
static int parse_escape(parser *ps, re_item *it, uint32_t *lit) {
    if (ps->p >= ps->end) {
        perr(ps, "pattern ends with a backslash");
        return -1;
    }
    char c = *ps->p++;
    memset(it, 0, sizeof *it);
    switch (c) {
    case 's': it->kind = IT_SPACE; return 1;
    case 'S': it->kind = IT_SPACE; it->negated = 1; return 1;
    case 'd': it->kind = IT_DIGIT; return 1;
    case 'D': it->kind = IT_DIGIT; it->negated = 1; return 1;
    case 'w': it->kind = IT_WORD; return 1;
    case 'W': it->kind = IT_WORD; it->negated = 1; return 1;
    case 'p':
    case 'P': {
        const char *name = ps->p;
        size_t n;
        if (ps->p < ps->end && *ps->p == '{') {
            name = ++ps->p;
            while (ps->p < ps->end && *ps->p != '}') ps->p++;
            if (ps->p >= ps->end) {
                perr(ps, "unterminated \\p{");
                return -1;
            }
            n = (size_t)(ps->p - name);
            ps->p++;
        } else {
            if (ps->p >= ps->end) {
                perr(ps, "\\p without a name");
                return -1;
            }
            n = 1;
            ps->p++;
        }
        int neg = c == 'P';
        if (n > 0 && name[0] == '^') { /* \p{^L} */
            neg = !neg;
            name++;
            n--;
        }
        uint32_t m = category_mask(name, n);
        if (!m) {
            char buf[64];
            size_t k = n < 40 ? n : 40;
            memcpy(buf, name, k);
            buf[k] = '\0';
            ps->p = name;
            char what[128];
            snprintf(what, sizeof what, "unsupported Unicode property \\p{%s} (general categories only)", buf);
            perr(ps, what);
            return -1;
        }
        it->kind = IT_CATS;
        it->cats = m;
        it->negated = (uint8_t)neg;
        return 1;
    }
    case 'r': *lit = '\r'; return 0;
    case 'n': *lit = '\n'; return 0;
    case 't': *lit = '\t'; return 0;
    case 'f': *lit = '\f'; return 0;
    case 'v': *lit = '\v'; return 0;
    case 'a': *lit = 7; return 0;
    case 'e': *lit = 27; return 0;
    case '0': *lit = 0; return 0;
    case 'x': *lit = parse_hex(ps, 2); return 0;
    case 'u': *lit = parse_hex(ps, 4); return 0;
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            char what[64];
            ps->p--;
            snprintf(what, sizeof what, "unsupported escape \\%c", c);
            perr(ps, what);
            return -1;
        }
        if ((unsigned char)c >= 0x80) { /* an escaped non-ASCII character */
            ps->p--;
            *lit = pnext(ps);
            return 0;
        }
        *lit = (uint32_t)(unsigned char)c;
        return 0;
    }
}

static re_item range_item(uint32_t lo, uint32_t hi) {
    re_item it;
    memset(&it, 0, sizeof it);
    it.kind = IT_RANGE;
    it.lo = lo;
    it.hi = hi;
    return it;
}

static re_node *class_node(parser *ps, int ci) {
    re_node *n = node_new(ps, N_CLASS);
    if (n) n->cls = ci;
    return n;
}

/* [ ... ] after the '[' */
static re_node *parse_bracket(parser *ps) {
    int ci = new_class(ps);
    if (ci < 0) return NULL;
    if (ps->p < ps->end && *ps->p == '^') {
        ps->re->cls[ci].neg = 1;
        ps->p++;
    }
    int first = 1;
    for (;;) {
        if (ps->p >= ps->end) {
            perr(ps, "unterminated [");
            return NULL;
        }
        if (*ps->p == ']' && !first) {
            ps->p++;
            break;
        }
        if (*ps->p == '[') {
            perr(ps, "nested classes / [:posix:] are not supported");
            return NULL;
        }
        if (*ps->p == '&' && ps->p + 1 < ps->end && ps->p[1] == '&') {
            perr(ps, "class intersection && is not supported");
            return NULL;
        }
        first = 0;
        uint32_t lo;
        re_item it;
        if (*ps->p == '\\') {
            ps->p++;
            int r = parse_escape(ps, &it, &lo);
            if (r < 0) return NULL;
            if (r == 1) {
                if (!class_add(ps, ci, it)) return NULL;
                continue;
            }
        } else {
            lo = pnext(ps);
        }
        uint32_t hi = lo;
        if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
            ps->p++;
            if (*ps->p == '\\') {
                ps->p++;
                int r = parse_escape(ps, &it, &hi);
                if (r < 0) return NULL;
                if (r == 1) {
                    perr(ps, "a class escape cannot end a range");
                    return NULL;
                }
            } else {
                hi = pnext(ps);
            }
            if (hi < lo) {
                perr(ps, "range out of order");
                return NULL;
            }
        }
        if (!class_add(ps, ci, range_item(lo, hi))) return NULL;
    }
    return class_node(ps, ci);
}

static re_node *parse_alt(parser *ps);

static re_node *parse_atom(parser *ps) {
    char c = *ps->p;
    if (c == '(') {
        ps->p++;
        if (++ps->depth > 100) {
            perr(ps, "groups nested too deeply");
            return NULL;
        }
        int saved_ci = ps->ci;
        int look = 0, look_neg = 0;
        if (ps->p < ps->end && *ps->p == '?') {
            ps->p++;
            if (ps->p < ps->end && *ps->p == ':') {
                ps->p++;
            } else if (ps->p < ps->end && (*ps->p == '!' || *ps->p == '=')) {
                look = 1;
                look_neg = *ps->p == '!';
                ps->p++;
            } else if (ps->p + 1 < ps->end && ps->p[0] == 'i' && ps->p[1] == ':') {
                ps->ci = 1;
                ps->p += 2;
            } else if (ps->p < ps->end && *ps->p == '<') {
                perr(ps, "lookbehind and named groups are not supported");
                return NULL;
            } else {
                perr(ps, "unsupported group flag (only (?: (?i: (?! (?= )");
                return NULL;
            }
        }
        re_node *in = parse_alt(ps);
        ps->ci = saved_ci;
        ps->depth--;
        if (!in) return NULL;
        if (ps->p >= ps->end || *ps->p != ')') {
            node_free(in);
            perr(ps, "missing )");
            return NULL;
        }
        ps->p++;
        if (!look) return in;
        /* lookahead over exactly one character class */
        re_node *k = in;
        while (k && (k->type == N_SEQ || k->type == N_ALT) && k->n_kids == 1) k = k->kids[0];
        if (!k || k->type != N_CLASS) {
            node_free(in);
            perr(ps, "lookahead is supported over one character class only, e.g. (?!\\S)");
            return NULL;
        }
        re_node *n = node_new(ps, N_LOOK);
        if (n) {
            n->cls = k->cls;
            n->negated = look_neg;
        }
        node_free(in);
        return n;
    }
    if (c == '[') {
        ps->p++;
        return parse_bracket(ps);
    }
    if (c == '^' || c == '$') {
        ps->p++;
        return node_new(ps, c == '^' ? N_BOL : N_EOL);
    }
    int ci = new_class(ps);
    if (ci < 0) return NULL;
    if (c == '.') {
        ps->p++;
        re_item it = range_item(0, 0);
        it.kind = IT_ANY;
        if (!class_add(ps, ci, range_item('\n', '\n'))) return NULL;
        ps->re->cls[ci].neg = 1; /* . = anything but \n */
        (void)it;
        return class_node(ps, ci);
    }
    uint32_t lit;
    if (c == '\\') {
        ps->p++;
        re_item it;
        int r = parse_escape(ps, &it, &lit);
        if (r < 0) return NULL;
        if (r == 1) {
            if (!class_add(ps, ci, it)) return NULL;
            return class_node(ps, ci);
        }
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        perr(ps, "quantifier without an operand");
        return NULL;
    } else {
        lit = pnext(ps);
    }
    if (!class_add(ps, ci, range_item(lit, lit))) return NULL;
    return class_node(ps, ci);
}

static int parse_int(parser *ps, int *v) {
    int got = 0;
    long x = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        if (x < 100000) x = x * 10 + (*ps->p - '0');
        ps->p++;
        got = 1;
    }
    *v = (int)x;
    return got;
}

static re_node *parse_seq(parser *ps) {
    re_node *seq = node_new(ps, N_SEQ);
    if (!seq) return NULL;
    while (ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
        re_node *a = parse_atom(ps);
        if (!a) {
            node_free(seq);
            return NULL;
        }
        if (ps->p < ps->end && (*ps->p == '*' || *ps->p == '+' || *ps->p == '?' || *ps->p == '{')) {
            int mn = 0, mx = -1;
            char q = *ps->p++;
            if (q == '+') mn = 1;
            else if (q == '?') mx = 1;
            else if (q == '{') {
                if (!parse_int(ps, &mn)) {
                    node_free(a);
                    node_free(seq);
                    perr(ps, "bad {m,n} quantifier");
                    return NULL;
                }
                mx = mn;
                if (ps->p < ps->end && *ps->p == ',') {
                    ps->p++;
                    if (!parse_int(ps, &mx)) mx = -1;
                }
                if (ps->p >= ps->end || *ps->p != '}' || (mx >= 0 && mx < mn) || mn > RE_MAX_REPEAT ||
                    mx > RE_MAX_REPEAT) {
                    node_free(a);
                    node_free(seq);
                    perr(ps, "bad {m,n} quantifier (at most 1000)");
                    return NULL;
                }
                ps->p++;
            }
            if (a->type == N_LOOK || a->type == N_BOL || a->type == N_EOL) {
                node_free(a);
                node_free(seq);
                perr(ps, "quantified assertion");
                return NULL;
            }
            re_node *r = node_new(ps, N_REP);
            if (!r) {
                node_free(a);
                node_free(seq);
                return NULL;
            }
            r->min = mn;
            r->max = mx;
            r->greedy = 1;
            if (ps->p < ps->end && *ps->p == '?') {
                r->greedy = 0;
                ps->p++;
            } else if (ps->p < ps->end && *ps->p == '+') {
                node_free(r);
                node_free(a);
                node_free(seq);
                perr(ps, "possessive quantifiers are not supported");
                return NULL;
            }
            if (!node_add(ps, r, a)) {
                node_free(r);
                node_free(seq);
                return NULL;
            }
            a = r;
        }
        if (!node_add(ps, seq, a)) {
            node_free(seq);
            return NULL;
        }
    }
    return seq;
}

static re_node *parse_alt(parser *ps) {
    re_node *alt = node_new(ps, N_ALT);
    if (!alt) return NULL;
    for (;;) {
        re_node *s = parse_seq(ps);
        if (!s || !node_add(ps, alt, s)) {
            node_free(alt);
            return NULL;
        }
        if (ps->p < ps->end && *ps->p == '|') {
            ps->p++;
            continue;
        }
        break;
    }
    return alt;
}

/* ---- compiling --------------------------------------------------------------------- */

static int emit(parser *ps, int op, int x, int y) {
    qkv__re *re = ps->re;
    if (re->n_prog >= RE_MAX_PROG) {
        perr(ps, "pattern too large");
        return -1;
    }
    if (re->n_prog == re->cap_prog) {
        int cap = re->cap_prog ? re->cap_prog * 2 : 64;
        re_inst *p = realloc(re->prog, (size_t)cap * sizeof *p);
        if (!p) {
            perr(ps, "out of memory");
            return -1;
        }
        re->prog = p;
        re->cap_prog = cap;
    }
    re_inst *in = &re->prog[re->n_prog];
    in->op = (uint8_t)op;
    in->negated = 0;
    in->x = x;
    in->y = y;
    return re->n_prog++;
}

static int compile(parser *ps, const re_node *n) {
    switch (n->type) {
    case N_CLASS: return emit(ps, OP_CLASS, n->cls, 0) < 0 ? -1 : 0;
    case N_LOOK: {
        int i = emit(ps, OP_LOOK, n->cls, 0);
        if (i < 0) return -1;
        ps->re->prog[i].negated = (uint8_t)n->negated;
        return 0;
    }
    case N_BOL: return emit(ps, OP_BOL, 0, 0) < 0 ? -1 : 0;
    case N_EOL: return emit(ps, OP_EOL, 0, 0) < 0 ? -1 : 0;
    case N_SEQ:
        for (int i = 0; i < n->n_kids; i++)
            if (compile(ps, n->kids[i])) return -1;
        return 0;
    case N_ALT: {
        /* split L1, next; L1: a; jmp end; next: split L2, next2 ... */
        int *jumps = malloc((size_t)(n->n_kids + 1) * sizeof *jumps);
        if (!jumps) {
            perr(ps, "out of memory");
            return -1;
        }
        int nj = 0;
        for (int i = 0; i < n->n_kids; i++) {
            int sp = -1;
            if (i + 1 < n->n_kids) {
                sp = emit(ps, OP_SPLIT, 0, 0);
                if (sp < 0) break;
                ps->re->prog[sp].x = ps->re->n_prog;
            }
            if (compile(ps, n->kids[i])) {
                sp = -2;
                break;
            }
            if (i + 1 < n->n_kids) {
                int j = emit(ps, OP_JMP, 0, 0);
                if (j < 0) {
                    sp = -2;
                    break;
                }
                jumps[nj++] = j;
                ps->re->prog[sp].y = ps->re->n_prog;
            }
        }
        for (int i = 0; i < nj; i++) ps->re->prog[jumps[i]].x = ps->re->n_prog;
        free(jumps);
        return ps->st ? -1 : 0;
    }
    case N_REP: {
        const re_node *a = n->kids[0];
        for (int i = 0; i < n->min; i++)
            if (compile(ps, a)) return -1;
        if (n->max < 0) {
            /* L: split body, out (greedy); body; jmp L */
            int sp = emit(ps, OP_SPLIT, 0, 0);
            if (sp < 0) return -1;
            int body = ps->re->n_prog;
            if (compile(ps, a)) return -1;
            if (emit(ps, OP_JMP, sp, 0) < 0) return -1;
            int out = ps->re->n_prog;
            ps->re->prog[sp].x = n->greedy ? body : out;
            ps->re->prog[sp].y = n->greedy ? out : body;
        } else {
            int opt = n->max - n->min;
            int *splits = malloc((size_t)(opt + 1) * sizeof *splits);
            if (!splits) {
                perr(ps, "out of memory");
                return -1;
            }
            for (int i = 0; i < opt; i++) {
                splits[i] = emit(ps, OP_SPLIT, 0, 0);
                if (splits[i] < 0 || compile(ps, a)) {
                    free(splits);
                    return -1;
                }
                ps->re->prog[splits[i]].x = splits[i] + 1; /* body right after */
            }
            int out = ps->re->n_prog;
            for (int i = 0; i < opt; i++) {
                re_inst *in = &ps->re->prog[splits[i]];
                if (n->greedy) {
                    in->y = out;
                } else {
                    in->y = in->x;
                    in->x = out;
                }
            }
            free(splits);
        }
        return 0;
    }
    }
    return -1;
}

void qkv__re_free(qkv__re *re) {
    if (!re) return;
    for (int i = 0; i < re->n_cls; i++) free(re->cls[i].items);
    free(re->cls);
    free(re->prog);
    free(re);
}

qkv_status qkv__re_compile(const char *pat, size_t len, qkv__re **out) {
    *out = NULL;
    qkv__re *re = calloc(1, sizeof *re);
    if (!re) return qkv__fail(QKV_ENOMEM, "regex: out of memory");
    parser ps = {pat, pat + len, pat, re, 0, 0, QKV_OK};
    re_node *root = parse_alt(&ps);
    if (root && ps.p < ps.end) perr(&ps, "unbalanced )");
    if (root && !ps.st) {
        compile(&ps, root);
        if (!ps.st) emit(&ps, OP_MATCH, 0, 0);
    }
    node_free(root);
    if (ps.st || !root) {
        qkv__re_free(re);
        return ps.st ? ps.st : qkv__fail(QKV_EFORMAT, "regex: cannot parse \"%.80s\"", pat);
    }
    *out = re;
    return QKV_OK;
}

/* ---- matching: Pike VM --------------------------------------------------------------- */

/* Code point at s[i] (i < n): valid UTF-8, or one invalid byte as CP_INVALID. */
static inline uint32_t cp_at(const uint8_t *s, size_t n, size_t i, size_t *l) {
    uint32_t c;
    *l = qkv__utf8_decode(s + i, n - i, &c);
    if (*l == 0) {
        *l = 1;
        return CP_INVALID;
    }
    return c;
}

typedef struct thread_list {
    int *pc;
    size_t *start;
    int n;
} thread_list;

struct qkv__re_work {
    int cap;
    thread_list a, b;
    uint32_t *mark;
    uint32_t gen;
    int *stack;
    size_t *stack_start;
};

void qkv__re_work_free(qkv__re_work *w) {
    if (!w) return;
    free(w->a.pc);
    free(w->a.start);
    free(w->b.pc);
    free(w->b.start);
    free(w->mark);
    free(w->stack);
    free(w->stack_start);
    free(w);
}

static int work_fit(qkv__re_work **pw, int n) {
    qkv__re_work *w = *pw;
    if (w && w->cap >= n) return 1;
    qkv__re_work_free(w);
    w = calloc(1, sizeof *w);
    *pw = w;
    if (!w) return 0;
    size_t m = (size_t)n;
    w->a.pc = malloc(m * sizeof(int));
    w->a.start = malloc(m * sizeof(size_t));
    w->b.pc = malloc(m * sizeof(int));
    w->b.start = malloc(m * sizeof(size_t));
    w->mark = calloc(m, sizeof(uint32_t));
    w->stack = malloc(2 * m * sizeof(int));
    w->stack_start = malloc(2 * m * sizeof(size_t));
    if (!w->a.pc || !w->a.start || !w->b.pc || !w->b.start || !w->mark || !w->stack ||
        !w->stack_start) {
        qkv__re_work_free(w);
        *pw = NULL;
        return 0;
    }
    w->cap = n;
    return 1;
}

/* Adds pc and what it reaches through epsilon moves, in priority order. `at` is the text
 * position the thread stands at (for assertions). */
static void add_thread(const qkv__re *re, qkv__re_work *w, thread_list *l, int pc0, size_t start,
                       const uint8_t *s, size_t n, size_t at) {
    int sp = 0;
    w->stack[sp++] = pc0;
    while (sp > 0) {
        int pc = w->stack[--sp];
        if (w->mark[pc] == w->gen) continue;
        w->mark[pc] = w->gen;
        const re_inst *in = &re->prog[pc];
        switch (in->op) {
        case OP_JMP: w->stack[sp++] = in->x; break;
        case OP_SPLIT:
            w->stack[sp++] = in->y; /* pushed first: explored after x */
            w->stack[sp++] = in->x;
            break;
        case OP_LOOK: {
            int m = 0;
            if (at < n) {
                size_t l1;
                m = class_match(&re->cls[in->x], cp_at(s, n, at, &l1));
            }
            if (in->negated ? !m : m) w->stack[sp++] = pc + 1;
            break;
        }
        case OP_BOL:
            if (at == 0) w->stack[sp++] = pc + 1;
            break;
        case OP_EOL:
            if (at == n) w->stack[sp++] = pc + 1;
            break;
        default:
            l->pc[l->n] = pc;
            l->start[l->n] = start;
            l->n++;
            break;
        }
    }
}

int qkv__re_find(const qkv__re *re, qkv__re_work **pw, const uint8_t *s, size_t n, size_t from,
                 size_t *ms, size_t *me) {
    if (!work_fit(pw, re->n_prog + 1)) return -1;
    qkv__re_work *w = *pw;
    thread_list *cl = &w->a, *nl = &w->b;
    cl->n = 0;
    int matched = 0;
    size_t pos = from;
    for (;;) {
        if (++w->gen == 0) { /* wrapped: clear the marks */
            memset(w->mark, 0, (size_t)w->cap * sizeof *w->mark);
            w->gen = 1;
        }
        /* cl was built under the previous generation; re-mark its entries so a new start
         * thread (lowest priority) cannot duplicate them */
        for (int i = 0; i < cl->n; i++) w->mark[cl->pc[i]] = w->gen;
        if (!matched) add_thread(re, w, cl, 0, pos, s, n, pos);
        if (cl->n == 0) break;
        size_t l = 0;
        uint32_t c = pos < n ? cp_at(s, n, pos, &l) : 0;
        if (++w->gen == 0) {
            memset(w->mark, 0, (size_t)w->cap * sizeof *w->mark);
            w->gen = 1;
        }
        nl->n = 0;
        for (int i = 0; i < cl->n; i++) {
            const re_inst *in = &re->prog[cl->pc[i]];
            if (in->op == OP_MATCH) {
                matched = 1;
                *ms = cl->start[i];
                *me = pos;
                break; /* lower-priority threads are cut */
            }
            if (pos < n && class_match(&re->cls[in->x], c))
                add_thread(re, w, nl, cl->pc[i] + 1, cl->start[i], s, n, pos + l);
        }
        if (pos >= n) break;
        thread_list *t = cl;
        cl = nl;
        nl = t;
        pos += l;
        if (cl->n == 0 && matched) break;
    }
    return matched;
}
