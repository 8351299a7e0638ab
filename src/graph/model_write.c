/*
 * graph: model files — the canonical writer.
 *
 * The model is checked first against everything the parser enforces, so
 * that whatever is written parses back to the same tree.
 */
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/lex.h"
#include "weft/model.h"
#include "weft/safetensors.h"

/* a constant argument: a finite number in full (graph.c makes it a scalar) */
static int is_number(const char *a) {
    char *end;
    if (!a || !*a || strlen(a) > 40) return 0;
    double x = strtod(a, &end);
    return !*end && x == x && x <= 3.4028235e38 && x >= -3.4028235e38;
}

static int bad(int k, const char *what, const char *name) {
    return wf_error(WF_ERR_INVALID, "model write: statement %d: %s%s%s%s", k + 1, what, name ? " '" : "",
                    name ? name : "", name ? "'" : "");
}

static int check_attr(int k, const struct wf_mstmt *s, int a) {
    const struct wf_mattr *at = &s->attrs[a];
    if (!wf_lex_is_ident(at->key)) return bad(k, "bad attribute key", at->key);
    for (int b = 0; b < a; b++)
        if (strcmp(s->attrs[b].key, at->key) == 0) return bad(k, "duplicate attribute", at->key);
    switch (at->type) {
    case WF_MV_INT:
    case WF_MV_FLOAT: return WF_OK;
    case WF_MV_BOOL: return at->i == 0 || at->i == 1 ? WF_OK : bad(k, "boolean not 0 or 1 in", at->key);
    case WF_MV_IDENT: return wf_lex_is_ident(at->s) ? WF_OK : bad(k, "bad identifier value in", at->key);
    case WF_MV_LIST:
        if (at->n < 0 || at->n > WF_MODEL_MAX_DIMS) return bad(k, "bad list length in", at->key);
        for (int j = 0; j < at->n; j++)
            if (at->list[j] < 0 && at->list[j] != WF_DIM_B) return bad(k, "negative list item in", at->key);
        return WF_OK;
    }
    return bad(k, "bad value type in", at->key);
}

/* Where a statement stands: in the file, a unit's body or its region. */
enum place { IN_FILE, IN_UNIT, IN_REGION };

/* Whether kind may stand in place, and the reason if not. */
static const char *misplaced(int kind, int place) {
    switch (kind) {
    case WF_MS_INPUT:
    case WF_MS_PARAM: return place == IN_FILE ? NULL : "declaration inside a unit";
    case WF_MS_LAYER: return NULL;
    case WF_MS_OUTPUT: return place != IN_REGION ? NULL : "output inside a region";
    case WF_MS_UNIT: return place == IN_FILE ? NULL : "unit inside a unit";
    case WF_MS_STATE:
    case WF_MS_NEXT:
    case WF_MS_REGION:
        if (place == IN_FILE)
            return kind == WF_MS_STATE  ? "state outside a unit"
                   : kind == WF_MS_NEXT ? "next outside a unit"
                                        : "region outside a unit";
        if (place == IN_REGION)
            return kind == WF_MS_REGION ? "region inside a region" : "state or next inside a region";
        return NULL;
    }
    return "bad statement kind";
}

/* The block being checked: names is its namespace (a hash, so that writing
 * a model is linear); in a unit, states are its states and nexts those
 * given a `next`; k counts the statements in written order, for messages. */
struct check {
    struct wf_hmap *names, *states, *nexts;
    int *k, regions;
};

static int check_block(const struct wf_model *b, int place, struct check *c);

static int check_stmt(const struct wf_mstmt *s, int place, struct check *c) {
    int k = (*c->k)++, rc;
    if (k >= WF_MODEL_MAX_STMTS) return bad(k, "too many statements", NULL);
    const char *why = misplaced(s->kind, place);
    if (why) return bad(k, why, s->name);
    int named = s->kind == WF_MS_INPUT || s->kind == WF_MS_PARAM || s->kind == WF_MS_LAYER || s->kind == WF_MS_UNIT ||
                s->kind == WF_MS_STATE;
    if (named) {
        if (!wf_lex_is_ident(s->name)) return bad(k, "bad name", s->name);
        rc = wf_hmap_put(c->names, s->name, k);
        if (rc < 0) return wf_error(rc, "model write: out of memory");
        if (rc == 0) return bad(k, "name defined twice:", s->name);
    }
    if (s->kind == WF_MS_STATE && wf_hmap_put(c->states, s->name, k) < 0)
        return wf_error(WF_ERR_NOMEM, "model write: out of memory");
    if (s->kind == WF_MS_REGION && s->name) return bad(k, "a region has no name, got", s->name);
    if (s->kind == WF_MS_NEXT) {
        if (!wf_lex_is_ident(s->name) || wf_hmap_get(c->states, s->name) < 0)
            return bad(k, "next for no state declared above:", s->name);
        rc = wf_hmap_put(c->nexts, s->name, k);
        if (rc < 0) return wf_error(rc, "model write: out of memory");
        if (rc == 0) return bad(k, "second next for state", s->name);
        if (s->n_args != 1) return bad(k, "next without exactly one value for", s->name);
    }
    if ((s->body != NULL) != (s->kind == WF_MS_UNIT || s->kind == WF_MS_REGION))
        return bad(k, s->body ? "a block on a statement that has none:" : "a unit or region without its block",
                   s->name);
    if (s->kind == WF_MS_REGION && c->regions++) return bad(k, "second region in a unit", NULL);
    if (s->kind == WF_MS_STATE && s->dtype != WF_F32) return bad(k, "dtype not f32 for state", s->name);
    if (s->kind == WF_MS_INPUT || s->kind == WF_MS_PARAM || s->kind == WF_MS_STATE) {
        if (s->dtype != WF_F32 && s->dtype != WF_I32) return bad(k, "dtype not f32 or i32 for", s->name);
        if (s->ndim < 1 || s->ndim > WF_MODEL_MAX_DIMS) return bad(k, "bad rank for", s->name);
        for (int j = 0; j < s->ndim; j++)
            if (s->dims[j] <= 0 && s->dims[j] != WF_DIM_B) return bad(k, "bad dimension in", s->name);
        if (s->n_args != 0) return bad(k, "arguments on a declaration", s->name);
    }
    if (s->kind == WF_MS_LAYER && !wf_lex_is_ident(s->op)) return bad(k, "bad op", s->op);
    if (s->kind == WF_MS_OUTPUT && s->n_args < 1) return bad(k, "output without names", NULL);
    if (s->n_args < 0 || s->n_args > WF_MODEL_MAX_ARGS) return bad(k, "bad argument count", s->name);
    for (int j = 0; j < s->n_args; j++)
        if (!wf_lex_is_ident(s->args[j]) && !(s->kind == WF_MS_LAYER && is_number(s->args[j])))
            return bad(k, "bad argument name", s->args[j]);
    if (s->n_attrs < 0 || s->n_attrs > WF_MODEL_MAX_ATTRS) return bad(k, "bad attribute count", s->name);
    if (s->n_args && (s->kind == WF_MS_UNIT || s->kind == WF_MS_REGION)) return bad(k, "arguments on a block", s->name);
    if (s->n_attrs && s->kind != WF_MS_LAYER && s->kind != WF_MS_PARAM && s->kind != WF_MS_UNIT &&
        s->kind != WF_MS_STATE)
        return bad(k, "attributes on an input, output, next or region", s->name);
    for (int a = 0; a < s->n_attrs; a++) {
        if ((rc = check_attr(k, s, a))) return rc;
        const struct wf_mattr *at = &s->attrs[a];
        int names_tensor = s->kind == WF_MS_UNIT
                               ? !strcmp(at->key, "over") || !strcmp(at->key, "length") || !strcmp(at->key, "when")
                               : s->kind == WF_MS_STATE && !strcmp(at->key, "from");
        if (names_tensor && at->type != WF_MV_IDENT) return bad(k, "not a tensor name:", at->key);
    }
    if (s->kind == WF_MS_UNIT && !wf_mstmt_attr(s, "over")) return bad(k, "no over= for unit", s->name);
    if (s->kind == WF_MS_UNIT) {
        if (s->body->n < 0 || (s->body->n > 0 && !s->body->st)) return bad(k, "bad statement count in unit", s->name);
        int useful = 0;
        for (int j = 0; j < s->body->n && !useful; j++)
            useful = s->body->st[j].kind == WF_MS_STATE || s->body->st[j].kind == WF_MS_OUTPUT;
        if (!useful) return bad(k, "neither state nor output in unit", s->name);
        struct wf_hmap names, states, nexts;
        wf_hmap_init(&names);
        wf_hmap_init(&states);
        wf_hmap_init(&nexts);
        struct check body = {.names = &names, .states = &states, .nexts = &nexts, .k = c->k};
        rc = check_block(s->body, IN_UNIT, &body);
        wf_hmap_free(&names);
        wf_hmap_free(&states);
        wf_hmap_free(&nexts);
        return rc;
    }
    if (s->kind == WF_MS_REGION) {
        if (s->body->n < 0 || (s->body->n > 0 && !s->body->st)) return bad(k, "bad statement count in region", NULL);
        return check_block(s->body, IN_REGION, c);
    }
    return WF_OK;
}

static int check_block(const struct wf_model *b, int place, struct check *c) {
    for (int j = 0; j < b->n; j++) {
        int rc = check_stmt(&b->st[j], place, c);
        if (rc) return rc;
    }
    return WF_OK;
}

static void write_value(struct wf_textbuf *b, const struct wf_mattr *a) {
    char f[32];
    switch (a->type) {
    case WF_MV_INT: wf_textbuf_printf(b, "%lld", (long long)a->i); break;
    case WF_MV_FLOAT: wf_textbuf_printf(b, "%s", wf_lex_format_double(a->f, f)); break;
    case WF_MV_BOOL: wf_textbuf_printf(b, "%s", a->i ? "true" : "false"); break;
    case WF_MV_IDENT: wf_textbuf_printf(b, "%s", a->s); break;
    case WF_MV_LIST:
        wf_textbuf_printf(b, "[");
        for (int j = 0; j < a->n; j++) {
            if (a->list[j] == WF_DIM_B)
                wf_textbuf_printf(b, "%sB", j ? ", " : "");
            else
                wf_textbuf_printf(b, "%s%lld", j ? ", " : "", (long long)a->list[j]);
        }
        wf_textbuf_printf(b, "]");
        break;
    }
}

static void write_block(struct wf_textbuf *b, const struct wf_model *m, int indent);

static void write_stmt(struct wf_textbuf *b, const struct wf_mstmt *s, int indent) {
    wf_textbuf_printf(b, "%*s", indent, "");
    switch (s->kind) {
    case WF_MS_INPUT:
    case WF_MS_PARAM:
    case WF_MS_STATE:
        wf_textbuf_printf(b, "%s %s : %s[",
                          s->kind == WF_MS_INPUT   ? "input"
                          : s->kind == WF_MS_PARAM ? "param"
                                                   : "state",
                          s->name, s->dtype == WF_F32 ? "f32" : "i32");
        for (int j = 0; j < s->ndim; j++) {
            if (s->dims[j] == WF_DIM_B)
                wf_textbuf_printf(b, "%sB", j ? ", " : "");
            else
                wf_textbuf_printf(b, "%s%lld", j ? ", " : "", (long long)s->dims[j]);
        }
        wf_textbuf_printf(b, "]");
        for (int a = 0; a < s->n_attrs; a++) {
            wf_textbuf_printf(b, " %s=", s->attrs[a].key);
            write_value(b, &s->attrs[a]);
        }
        break;
    case WF_MS_LAYER:
        wf_textbuf_printf(b, "%s = %s(", s->name, s->op);
        for (int j = 0; j < s->n_args; j++)
            wf_textbuf_printf(b, "%s%s", j ? ", " : "", s->args[j]);
        for (int a = 0; a < s->n_attrs; a++) {
            wf_textbuf_printf(b, "%s%s=", a || s->n_args ? ", " : "", s->attrs[a].key);
            write_value(b, &s->attrs[a]);
        }
        wf_textbuf_printf(b, ")");
        break;
    case WF_MS_OUTPUT:
        wf_textbuf_printf(b, "output");
        for (int j = 0; j < s->n_args; j++)
            wf_textbuf_printf(b, "%s %s", j ? "," : "", s->args[j]);
        break;
    case WF_MS_NEXT: wf_textbuf_printf(b, "next %s = %s", s->name, s->args[0]); break;
    case WF_MS_UNIT:
    case WF_MS_REGION:
        if (s->kind == WF_MS_UNIT) {
            wf_textbuf_printf(b, "unit %s(", s->name);
            for (int a = 0; a < s->n_attrs; a++) {
                wf_textbuf_printf(b, "%s%s=", a ? ", " : "", s->attrs[a].key);
                write_value(b, &s->attrs[a]);
            }
            wf_textbuf_printf(b, ") {\n");
        } else {
            wf_textbuf_printf(b, "region {\n");
        }
        write_block(b, s->body, indent + 4);
        wf_textbuf_printf(b, "%*s}", indent, "");
        break;
    }
    wf_textbuf_printf(b, "\n");
}

static void write_block(struct wf_textbuf *b, const struct wf_model *m, int indent) {
    for (int k = 0; k < m->n; k++)
        write_stmt(b, &m->st[k], indent);
}

int wf_model_write(const struct wf_model *m, char **text, size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    if (m->name && !wf_lex_is_ident(m->name))
        return wf_error(WF_ERR_INVALID, "model write: bad model name '%s'", m->name);
    if (m->n < 0 || (m->n > 0 && !m->st)) return wf_error(WF_ERR_INVALID, "model write: bad statement count");
    struct wf_hmap names;
    wf_hmap_init(&names);
    int k = 0;
    struct check c = {.names = &names, .k = &k};
    int rc = check_block(m, IN_FILE, &c);
    wf_hmap_free(&names);
    if (rc) return rc;
    struct wf_textbuf b = {0};
    if (m->name) wf_textbuf_printf(&b, "model %s\n", m->name);
    write_block(&b, m, 0);
    return wf_textbuf_take(&b, text, len);
}
