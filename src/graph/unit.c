/*
 * graph layer: a `unit` block (model.h) into one node of the outer graph
 * and the body graph the executor runs once per time step
 * (docs/recurrent.md).
 *
 * The body is built by the ordinary graph builder from a model made here:
 * the step's slice of `over` and the states become inputs, the body's
 * names get the unit's name in front (so that its parameters are
 * UNIT.LAYER.weight...), and a skip region is cut out of the rest by a
 * `region_in` for each value it reads from outside (the start node) and a
 * `region_out` for each of its values read after it (the end node, with
 * the state it replaces as the bypass value, or 0). The outer node takes
 * the body's parameters under the same names, so optimizers, checkpoints
 * and the partitioner see them like any layer's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "weft/core.h"
#include "weft/graph.h"
#include "weft/model.h"
#include "weft/safetensors.h"

#include "ops_int.h"

#define NAME_MAX_ 512

struct ub {
    struct wf_graph *g;
    const struct wf_model *m;
    const struct wf_mstmt *st;
    struct wf_model tm; /* the body as a plain model */
    const char *path;
    /* body names: where each is defined */
    struct wf_hmap names;       /* body name -> 1 state, 2 layer before the region, 3 region layer, 4 after */
    struct wf_hmap region_read; /* outside names the region reads: given a region_in */
    struct wf_hmap region_out;  /* region names read after it: given a region_out */
};

static int uerr(const struct ub *u, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int uerr(const struct ub *u, int line, int col, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return wf_error(WF_ERR_PARSE, "%s:%d:%d: unit '%s': %s", u->path, line, col, u->st->name, msg);
}

/* ---- the temporary model ---- */

static struct wf_mstmt *tm_add(struct ub *u, int kind, const char *name, int line, int col) {
    struct wf_model *tm = &u->tm;
    if (tm->n == tm->cap) {
        int cap = tm->cap ? 2 * tm->cap : 16;
        struct wf_mstmt *st = wf_realloc(tm->st, sizeof *st * (size_t)cap);
        if (!st) return NULL;
        tm->st = st;
        tm->cap = cap;
    }
    struct wf_mstmt *s = &tm->st[tm->n];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->line = s->op_line = line;
    s->col = s->op_col = col;
    if (name && !(s->name = wf_strdup(name))) return NULL;
    tm->n++;
    return s;
}

static int tm_arg(struct wf_mstmt *s, const char *a, int line, int col) {
    char **args = wf_realloc(s->args, sizeof *args * (size_t)(s->n_args + 1));
    if (!args) return WF_ERR_NOMEM;
    s->args = args;
    int *al = wf_realloc(s->arg_line, sizeof *al * (size_t)(s->n_args + 1));
    if (!al) return WF_ERR_NOMEM;
    s->arg_line = al;
    int *ac = wf_realloc(s->arg_col, sizeof *ac * (size_t)(s->n_args + 1));
    if (!ac) return WF_ERR_NOMEM;
    s->arg_col = ac;
    if (!(s->args[s->n_args] = wf_strdup(a))) return WF_ERR_NOMEM;
    s->arg_line[s->n_args] = line;
    s->arg_col[s->n_args] = col;
    s->n_args++;
    return WF_OK;
}

static int tm_copy_attrs(struct wf_mstmt *s, const struct wf_mstmt *from) {
    if (!from->n_attrs) return WF_OK;
    s->attrs = wf_calloc((size_t)from->n_attrs, sizeof *s->attrs);
    if (!s->attrs) return WF_ERR_NOMEM;
    for (int k = 0; k < from->n_attrs; k++) {
        s->attrs[k] = from->attrs[k];
        s->attrs[k].key = wf_strdup(from->attrs[k].key);
        s->attrs[k].s = from->attrs[k].s ? wf_strdup(from->attrs[k].s) : NULL;
        s->n_attrs++;
        if (!s->attrs[k].key || (from->attrs[k].s && !s->attrs[k].s)) return WF_ERR_NOMEM;
    }
    return WF_OK;
}

/* "UNIT.NAME", or "UNIT.NAME@SUFFIX" */
static void pfx(const struct ub *u, const char *name, const char *suffix, char out[NAME_MAX_]) {
    snprintf(out, NAME_MAX_, "%s.%s%s%s", u->st->name, name, suffix ? "@" : "", suffix ? suffix : "");
}

static int is_number(const char *a) { return (*a >= '0' && *a <= '9') || *a == '-' || *a == '+' || *a == '.'; }

/* What a body statement's argument names in the body model. `where` is 2 (before the region), 3 (in it) or 4
 * (after it, or next/output). */
static int body_ref(struct ub *u, const char *a, int where, int line, int col, char out[NAME_MAX_]) {
    if (is_number(a)) {
        snprintf(out, NAME_MAX_, "%s", a);
        return WF_OK;
    }
    const struct wf_mattr *over = wf_mstmt_attr(u->st, "over");
    int kind = wf_hmap_get(&u->names, a);
    if (kind < 0 && over && !strcmp(a, over->s)) kind = 1; /* the step's slice: like a state */
    if (kind < 0)
        return uerr(u, line, col,
                    "unknown tensor '%s' (a unit's body reads its sequence '%s', its states and its own layers "
                    "defined above)",
                    a, over ? over->s : "?");
    if (kind > where || (kind == 3 && where == 2)) return uerr(u, line, col, "'%s' is used before it is defined", a);
    if (where == 3 && kind != 3) { /* read by the region from outside it: through its start node */
        if (wf_hmap_get(&u->region_read, a) < 0 && wf_hmap_put(&u->region_read, a, 1) < 0) return WF_ERR_NOMEM;
        pfx(u, a, "in", out);
        return WF_OK;
    }
    if (where == 4 && kind == 3) { /* a region value read after it: through its end node */
        if (wf_hmap_get(&u->region_out, a) < 0 && wf_hmap_put(&u->region_out, a, 1) < 0) return WF_ERR_NOMEM;
        pfx(u, a, "out", out);
        return WF_OK;
    }
    pfx(u, a, NULL, out);
    return WF_OK;
}

static int add_layer(struct ub *u, const struct wf_mstmt *s, int where) {
    char name[NAME_MAX_], ref[NAME_MAX_];
    pfx(u, s->name, NULL, name);
    struct wf_mstmt *t = tm_add(u, WF_MS_LAYER, name, s->line, s->col);
    if (!t || !(t->op = wf_strdup(s->op))) return WF_ERR_NOMEM;
    t->op_line = s->op_line;
    t->op_col = s->op_col;
    for (int i = 0; i < s->n_args; i++) {
        int rc = body_ref(u, s->args[i], where, s->arg_line[i], s->arg_col[i], ref);
        if (rc < 0) return rc;
        /* tm_add may move u->tm.st: t is found again */
        t = &u->tm.st[u->tm.n - 1];
        if ((rc = tm_arg(t, ref, s->arg_line[i], s->arg_col[i])) < 0) return rc;
    }
    return tm_copy_attrs(&u->tm.st[u->tm.n - 1], s);
}

/* ---- the block ---- */

static int declare(struct ub *u, const char *name, int kind, int line, int col) {
    const struct wf_mattr *over = wf_mstmt_attr(u->st, "over");
    if (wf_hmap_get(&u->names, name) >= 0 || (over && !strcmp(name, over->s)))
        return uerr(u, line, col, "'%s' is defined twice in the unit", name);
    return wf_hmap_put(&u->names, name, kind) < 0 ? WF_ERR_NOMEM : WF_OK;
}

static const struct wf_mstmt *region_of(const struct wf_model *body) {
    for (int i = 0; i < body->n; i++)
        if (body->st[i].kind == WF_MS_REGION) return &body->st[i];
    return NULL;
}

/* The value `next STATE = V` names for a state, NULL if none. */
static const struct wf_mstmt *next_of(const struct wf_model *body, const char *state) {
    for (int i = 0; i < body->n; i++)
        if (body->st[i].kind == WF_MS_NEXT && !strcmp(body->st[i].name, state)) return &body->st[i];
    return NULL;
}

/* The body model: inputs, layers with the region cut out, the roots as outputs. */
static int make_body(struct ub *u, const struct wf_value *over) {
    const struct wf_model *body = u->st->body;
    const struct wf_mattr *oa = wf_mstmt_attr(u->st, "over");
    char name[NAME_MAX_], ref[NAME_MAX_];
    int rc;
    /* names first: where each is defined */
    for (int i = 0; i < body->n; i++) {
        const struct wf_mstmt *s = &body->st[i];
        if (s->kind == WF_MS_STATE && (rc = declare(u, s->name, 1, s->line, s->col)) < 0) return rc;
        if (s->kind == WF_MS_LAYER &&
            (rc = declare(u, s->name, region_of(body) && i > (int)(region_of(body) - body->st) ? 4 : 2, s->line,
                          s->col)) < 0)
            return rc;
        if (s->kind == WF_MS_REGION)
            for (int k = 0; k < s->body->n; k++)
                if ((rc = declare(u, s->body->st[k].name, 3, s->body->st[k].line, s->body->st[k].col)) < 0) return rc;
    }
    /* the step's slice and the states */
    pfx(u, oa->s, NULL, name);
    struct wf_mstmt *t = tm_add(u, WF_MS_INPUT, name, oa->line, oa->col);
    if (!t) return WF_ERR_NOMEM;
    t->dtype = WF_F32;
    t->ndim = over->ndim - 1;
    t->dims[0] = WF_DIM_B;
    for (int d = 2; d < over->ndim; d++)
        t->dims[d - 1] = over->shape[d];
    for (int i = 0; i < body->n; i++) {
        const struct wf_mstmt *s = &body->st[i];
        if (s->kind != WF_MS_STATE) continue;
        if (s->dtype != WF_F32 || s->ndim < 2 || s->dims[0] != WF_DIM_B)
            return uerr(u, s->line, s->col, "state '%s' must be f32[B, ...]", s->name);
        pfx(u, s->name, NULL, name);
        if (!(t = tm_add(u, WF_MS_INPUT, name, s->line, s->col))) return WF_ERR_NOMEM;
        t->dtype = WF_F32;
        t->ndim = s->ndim;
        memcpy(t->dims, s->dims, sizeof t->dims);
    }
    /* layers before the region, the region's start nodes, its layers, after it */
    const struct wf_mstmt *reg = region_of(body);
    int ri = reg ? (int)(reg - body->st) : body->n;
    for (int i = 0; i < ri; i++)
        if (body->st[i].kind == WF_MS_LAYER && (rc = add_layer(u, &body->st[i], 2)) < 0) return rc;
    if (reg) {
        int mark = u->tm.n;
        for (int k = 0; k < reg->body->n; k++)
            if ((rc = add_layer(u, &reg->body->st[k], 3)) < 0) return rc;
        /* the start nodes go before the region's layers: made now that their reads are known, in definition
         * order (the step's slice, the states, the layers before the region) */
        int n_in = 0;
        for (int i = -1; i < ri; i++) {
            const char *nm = i < 0 ? oa->s : body->st[i].name;
            if (i >= 0 && body->st[i].kind != WF_MS_STATE && body->st[i].kind != WF_MS_LAYER) continue;
            if (wf_hmap_get(&u->region_read, nm) < 0) continue;
            pfx(u, nm, "in", name);
            pfx(u, nm, NULL, ref);
            if (!(t = tm_add(u, WF_MS_LAYER, name, reg->line, reg->col)) || !(t->op = wf_strdup("region_in")) ||
                tm_arg(t, ref, reg->line, reg->col) < 0)
                return WF_ERR_NOMEM;
            n_in++;
        }
        /* rotate the n_in start nodes in front of the region's layers */
        if (n_in) {
            struct wf_mstmt *tmp = wf_malloc(sizeof *tmp * (size_t)n_in);
            if (!tmp) return WF_ERR_NOMEM;
            int n_reg = u->tm.n - n_in - mark;
            memcpy(tmp, &u->tm.st[u->tm.n - n_in], sizeof *tmp * (size_t)n_in);
            memmove(&u->tm.st[mark + n_in], &u->tm.st[mark], sizeof *tmp * (size_t)n_reg);
            memcpy(&u->tm.st[mark], tmp, sizeof *tmp * (size_t)n_in);
            wf_free(tmp);
        }
    }
    /* after the region: its layers, then next and output read values (which makes the end nodes) */
    int out_mark = u->tm.n;
    for (int i = ri + 1; i < body->n; i++)
        if (body->st[i].kind == WF_MS_LAYER && (rc = add_layer(u, &body->st[i], 4)) < 0) return rc;
    struct wf_mstmt out = {0};
    out.kind = WF_MS_OUTPUT;
    /* the roots: each state's next value, then the per-step outputs */
    for (int i = 0; i < body->n; i++) {
        const struct wf_mstmt *s = &body->st[i];
        if (s->kind != WF_MS_STATE) continue;
        const struct wf_mstmt *nx = next_of(body, s->name);
        if (!nx) return uerr(u, s->line, s->col, "state '%s' has no `next %s = ...`", s->name, s->name);
        if ((rc = body_ref(u, nx->args[0], 4, nx->arg_line[0], nx->arg_col[0], ref)) < 0 ||
            (rc = tm_arg(&out, ref, nx->arg_line[0], nx->arg_col[0])) < 0)
            goto out_fail;
    }
    for (int i = 0; i < body->n; i++) {
        const struct wf_mstmt *s = &body->st[i];
        if (s->kind == WF_MS_NEXT && wf_hmap_get(&u->names, s->name) != 1) {
            rc = uerr(u, s->line, s->col, "`next %s`: '%s' is not a state of the unit", s->name, s->name);
            goto out_fail;
        }
        if (s->kind != WF_MS_OUTPUT) continue;
        for (int k = 0; k < s->n_args; k++)
            if ((rc = body_ref(u, s->args[k], 4, s->arg_line[k], s->arg_col[k], ref)) < 0 ||
                (rc = tm_arg(&out, ref, s->arg_line[k], s->arg_col[k])) < 0)
                goto out_fail;
    }
    /* the end nodes, before the layers after the region: a next state's value falls back to the state */
    if (reg) {
        int n_end = 0;
        for (int k = 0; k < reg->body->n; k++) {
            const struct wf_mstmt *s = &reg->body->st[k];
            if (wf_hmap_get(&u->region_out, s->name) < 0) continue;
            const char *bypass = NULL;
            for (int i = 0; i < body->n; i++) {
                const struct wf_mstmt *nx = &body->st[i];
                if (nx->kind != WF_MS_NEXT || strcmp(nx->args[0], s->name)) continue;
                if (bypass) {
                    rc = uerr(u, nx->line, nx->col, "'%s' is the next value of two states", s->name);
                    goto out_fail;
                }
                bypass = nx->name;
            }
            pfx(u, s->name, "out", name);
            pfx(u, s->name, NULL, ref);
            if (!(t = tm_add(u, WF_MS_LAYER, name, reg->end_line ? reg->end_line : reg->line, 1)) ||
                !(t->op = wf_strdup("region_out")) || tm_arg(t, ref, t->line, 1) < 0) {
                rc = WF_ERR_NOMEM;
                goto out_fail;
            }
            if (bypass) {
                pfx(u, bypass, NULL, ref);
                if (tm_arg(t, ref, t->line, 1) < 0) {
                    rc = WF_ERR_NOMEM;
                    goto out_fail;
                }
            }
            n_end++;
        }
        if (n_end) { /* in front of the layers after the region */
            struct wf_mstmt *tmp = wf_malloc(sizeof *tmp * (size_t)n_end);
            if (!tmp) {
                rc = WF_ERR_NOMEM;
                goto out_fail;
            }
            int n_after = u->tm.n - n_end - out_mark;
            memcpy(tmp, &u->tm.st[u->tm.n - n_end], sizeof *tmp * (size_t)n_end);
            memmove(&u->tm.st[out_mark + n_end], &u->tm.st[out_mark], sizeof *tmp * (size_t)n_after);
            memcpy(&u->tm.st[out_mark], tmp, sizeof *tmp * (size_t)n_end);
            wf_free(tmp);
        }
    }
    if (!(t = tm_add(u, WF_MS_OUTPUT, NULL, u->st->line, u->st->col))) {
        rc = WF_ERR_NOMEM;
        goto out_fail;
    }
    t->n_args = out.n_args;
    t->args = out.args;
    t->arg_line = out.arg_line;
    t->arg_col = out.arg_col;
    return WF_OK;
out_fail:
    for (int k = 0; k < out.n_args; k++)
        wf_free(out.args[k]);
    wf_free(out.args);
    wf_free(out.arg_line);
    wf_free(out.arg_col);
    return rc == WF_ERR_NOMEM ? wf_error(WF_ERR_NOMEM, "%s: out of memory", u->path) : rc;
}

/* Which body values hold packed rows and which nodes run on them; region ops must be row-wise. */
static int mark_region(struct ub *u, struct wf_unit *un) {
    struct wf_graph *bg = &un->body;
    un->packed = wf_calloc((size_t)bg->nv + 1, 1);
    un->live_node = wf_calloc((size_t)bg->nn + 1, 1);
    if (!un->packed || !un->live_node) return WF_ERR_NOMEM;
    const struct wf_mstmt *reg = region_of(u->st->body);
    if (!reg) return WF_OK;
    un->region = 1;
    for (int ni = 0; ni < bg->nn; ni++) {
        struct wf_node *n = &bg->n[ni];
        const struct wf_op_def *d = wf_op_get(n->op);
        if (!strcmp(d->name, "region_in")) {
            un->packed[n->out[0]] = 1;
            continue;
        }
        if (!strcmp(d->name, "region_out")) continue;
        int in_region = 0;
        for (int k = 0; k < reg->body->n && !in_region; k++) {
            char name[NAME_MAX_];
            pfx(u, reg->body->st[k].name, NULL, name);
            in_region = !strcmp(name, n->name);
        }
        if (!in_region) continue;
        if (!(d->flags & WF_OPF_ROWWISE))
            return wf_error(WF_ERR_PARSE,
                            "%s:%d:%d: layer '%s' (%s) cannot be in a skip region: its rows are not independent of "
                            "each other (the region runs on the live samples' rows only)",
                            u->path, n->line, n->col, n->name, d->name);
        for (int k = 0; k < d->n_attr; k++)
            if (!strcmp(d->attr[k].name, "axis") && n->ai[k] == 0)
                return wf_error(WF_ERR_PARSE,
                                "%s:%d:%d: layer '%s' (%s) cannot be in a skip region along axis 0, the samples",
                                u->path, n->line, n->col, n->name, d->name);
        un->live_node[ni] = 1;
        for (int j = 0; j < n->n_out; j++)
            un->packed[n->out[j]] = 1;
    }
    return WF_OK;
}

int wf_graph_build_unit(struct wf_graph *g, const struct wf_model *m, const struct wf_mstmt *st) {
    struct ub u = {.g = g, .m = m, .st = st, .path = m->path ? m->path : "<model>"};
    wf_hmap_init(&u.names);
    wf_hmap_init(&u.region_read);
    wf_hmap_init(&u.region_out);
    u.tm.path = (char *)u.path; /* borrowed: cleared before the free */
    struct wf_unit un;
    memset(&un, 0, sizeof un);
    un.length = un.when = -1;
    int rc = WF_OK, have_un = 0;
    const struct wf_mattr *oa = wf_mstmt_attr(st, "over"), *la = wf_mstmt_attr(st, "length"),
                          *wa = wf_mstmt_attr(st, "when");
    for (int k = 0; k < st->n_attrs; k++)
        if (strcmp(st->attrs[k].key, "over") && strcmp(st->attrs[k].key, "length") &&
            strcmp(st->attrs[k].key, "when")) {
            rc = uerr(&u, st->attrs[k].line, st->attrs[k].col, "no attribute '%s' (expected over, length, when)",
                      st->attrs[k].key);
            goto done;
        }
    if (!oa || oa->type != WF_MV_IDENT) {
        rc = uerr(&u, st->line, st->col, "needs over=SEQUENCE, a tensor [B, T, ...] defined above");
        goto done;
    }
    int vo = wf_graph_find(g, oa->s);
    if (vo < 0 || g->v[vo].kind == WF_V_AUX) {
        rc = uerr(&u, oa->line, oa->col, "unknown tensor '%s'", oa->s);
        goto done;
    }
    const struct wf_value over = g->v[vo];
    char s1[96];
    if (over.dtype != WF_F32 || over.ndim < 3 || over.shape[0] != g->batch) {
        rc = uerr(&u, oa->line, oa->col, "over='%s' must be f32[B, T, ...] (at least 3 dimensions), got %s", oa->s,
                  wf_shape_str(&over, s1, sizeof s1));
        goto done;
    }
    un.T = (int)over.shape[1];
    int ins[WF_MAX_IO], n_ins = 0;
    ins[n_ins++] = vo;
    /* the states' initial values */
    const struct wf_model *body = st->body;
    if (!body) {
        rc = uerr(&u, st->line, st->col, "has no body");
        goto done;
    }
    for (int i = 0; i < body->n; i++) {
        const struct wf_mstmt *s = &body->st[i];
        if (s->kind != WF_MS_STATE) continue;
        if (un.n_states >= WF_MAX_IO - 4) {
            rc = uerr(&u, s->line, s->col, "too many states");
            goto done;
        }
        const struct wf_mattr *from = wf_mstmt_attr(s, "from");
        un.state_init[un.n_states] = -1;
        if (from) {
            int vf = from->type == WF_MV_IDENT ? wf_graph_find(g, from->s) : -1;
            if (vf < 0 || g->v[vf].kind == WF_V_AUX) {
                rc = uerr(&u, from->line, from->col, "state '%s': from= names no tensor defined above", s->name);
                goto done;
            }
            un.state_init[un.n_states] = n_ins;
            ins[n_ins++] = vf;
        }
        un.n_states++;
    }
    if (la) {
        int vl = la->type == WF_MV_IDENT ? wf_graph_find(g, la->s) : -1;
        if (vl < 0 || g->v[vl].dtype != WF_I32 || g->v[vl].ndim != 1 || g->v[vl].shape[0] != g->batch) {
            rc = uerr(&u, la->line, la->col, "length= must name an i32[B] tensor defined above (the lengths)");
            goto done;
        }
        un.length = n_ins;
        ins[n_ins++] = vl;
    }
    if (wa) {
        int vw = wa->type == WF_MV_IDENT ? wf_graph_find(g, wa->s) : -1;
        if (vw < 0 || g->v[vw].dtype != WF_I32 || g->v[vw].ndim != 2 || g->v[vw].shape[0] != g->batch ||
            g->v[vw].shape[1] != un.T) {
            rc = uerr(&u, wa->line, wa->col, "when= must name an i32[B, %d] tensor defined above (1: run the region)",
                      un.T);
            goto done;
        }
        un.when = n_ins;
        ins[n_ins++] = vw;
    }
    if (region_of(body) && !la && !wa) {
        const struct wf_mstmt *r = region_of(body);
        rc = uerr(&u, r->line, r->col, "a skip region needs the unit's length= or when=");
        goto done;
    }
    un.n_in_fixed = n_ins;
    if ((rc = make_body(&u, &over)) < 0) goto done;
    if ((rc = wf_graph_build_ex(&un.body, &u.tm, g->batch, 1)) < 0) goto done;
    have_un = 1;
    if ((rc = mark_region(&u, &un)) < 0) goto done;
    /* the body's roots: next states, then outputs */
    struct wf_graph *bg = &un.body;
    char name[NAME_MAX_];
    pfx(&u, oa->s, NULL, name);
    un.step_in = wf_graph_find(bg, name);
    int k = 0;
    for (int i = 0; i < body->n; i++) {
        const struct wf_mstmt *s = &body->st[i];
        if (s->kind != WF_MS_STATE) continue;
        pfx(&u, s->name, NULL, name);
        un.state_in[k] = wf_graph_find(bg, name);
        un.state_next[k] = bg->outputs[k];
        const struct wf_value *a = &bg->v[un.state_in[k]], *b = &bg->v[un.state_next[k]];
        if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim)) {
            const struct wf_mstmt *nx = next_of(body, s->name);
            char s2[96];
            rc = uerr(&u, nx->line, nx->col, "`next %s` is %s, the state is %s", s->name,
                      wf_shape_str(b, s1, sizeof s1), wf_shape_str(a, s2, sizeof s2));
            goto done;
        }
        if (un.state_init[k] >= 0) {
            const struct wf_value *f = &g->v[ins[un.state_init[k]]];
            if (f->dtype != WF_F32 || f->ndim != a->ndim ||
                memcmp(f->shape, a->shape, sizeof(int64_t) * (size_t)a->ndim)) {
                char s2[96];
                rc = uerr(&u, s->line, s->col, "state '%s' is %s, its from= tensor '%s' is %s", s->name,
                          wf_shape_str(a, s1, sizeof s1), f->name, wf_shape_str(f, s2, sizeof s2));
                goto done;
            }
        }
        k++;
    }
    un.n_outs = bg->n_outputs - un.n_states;
    for (int j = 0; j < un.n_outs; j++)
        un.out_body[j] = bg->outputs[un.n_states + j];
    if (un.n_states + un.n_outs == 0 || un.n_states + un.n_outs > WF_MAX_IO) {
        rc = uerr(&u, st->line, st->col, "needs 1 to %d states and outputs", WF_MAX_IO);
        goto done;
    }
    /* the outer node */
    if (wf_graph_find(g, st->name) >= 0) {
        rc = uerr(&u, st->line, st->col, "'%s' is already defined", st->name);
        goto done;
    }
    int ni = wf_graph_add_node(g, wf_ops_unit_id(), st->name);
    if (ni < 0) {
        rc = ni;
        goto done;
    }
    struct wf_node *n = &g->n[ni];
    n->line = st->line;
    n->col = st->col;
    n->ai[0] = g->n_units;
    for (int i = 0; i < n_ins; i++)
        n->in[n->n_in++] = ins[i];
    for (int p = 0; p < bg->n_params; p++) {
        const struct wf_value pv = bg->v[bg->params[p]];
        if (g->n_params >= (int)WF_ARRAY_LEN(g->params) || g->n[ni].n_in >= WF_MAX_IO) {
            rc = uerr(&u, st->line, st->col, "too many parameters");
            goto done;
        }
        if (wf_graph_find(g, pv.name) >= 0) {
            rc = uerr(&u, pv.line, pv.col, "parameter '%s' is already defined", pv.name);
            goto done;
        }
        int vi = wf_graph_add_value(g, pv.name, WF_V_PARAM, WF_F32, pv.ndim, pv.shape);
        if (vi < 0) {
            rc = vi;
            goto done;
        }
        g->v[vi].init = pv.init;
        g->v[vi].init_arg = pv.init_arg;
        g->v[vi].line = pv.line;
        g->v[vi].col = pv.col;
        g->params[g->n_params++] = vi;
        g->n[ni].in[g->n[ni].n_in++] = vi;
    }
    /* outputs: per-step outputs [B, T, ...], then the final states */
    for (int j = 0; j < un.n_outs + un.n_states; j++) {
        const struct wf_value *bv = j < un.n_outs ? &bg->v[un.out_body[j]] : &bg->v[un.state_in[j - un.n_outs]];
        int64_t sh[WF_MAX_DIMS];
        int nd = bv->ndim;
        if (j < un.n_outs) {
            if (nd + 1 > WF_MAX_DIMS || bv->shape[0] != g->batch) {
                rc = uerr(&u, bv->line, bv->col, "output '%s' must be [B, ...] with at most %d dimensions", bv->name,
                          WF_MAX_DIMS - 1);
                goto done;
            }
            sh[0] = g->batch;
            sh[1] = un.T;
            for (int d = 1; d < nd; d++)
                sh[d + 1] = bv->shape[d];
            nd++;
        } else {
            memcpy(sh, bv->shape, sizeof sh);
        }
        int64_t numel = 1;
        for (int d = 0; d < nd; d++)
            if (__builtin_mul_overflow(numel, sh[d], &numel) || numel > WF_MAX_NUMEL) {
                rc = uerr(&u, bv->line, bv->col, "output '%s' over %d steps is too large", bv->name, un.T);
                goto done;
            }
        char oname[NAME_MAX_];
        /* a per-step output made by a region's end node is named NAME@out in the body */
        snprintf(oname, sizeof oname, "%s", bv->name);
        char *at = strchr(oname, '@');
        if (at) *at = 0;
        if (wf_graph_find(g, oname) >= 0) { /* body values are named UNIT.NAME already: the same name outside */
            rc = uerr(&u, bv->line, bv->col, "'%s' is already defined", oname);
            goto done;
        }
        int vi = wf_graph_add_value(g, oname, WF_V_ACT, WF_F32, nd, sh);
        if (vi < 0) {
            rc = vi;
            goto done;
        }
        g->v[vi].producer = ni;
        g->v[vi].line = st->line;
        g->v[vi].col = st->col;
        if (g->n[ni].n_out >= WF_MAX_IO) {
            rc = uerr(&u, st->line, st->col, "too many outputs");
            goto done;
        }
        g->n[ni].out[g->n[ni].n_out++] = vi;
    }
    n = &g->n[ni];
    double flops = 0, bytes = 0;
    for (int i = 0; i < bg->nn; i++)
        flops += bg->n[i].flops;
    n->flops = flops * un.T;
    for (int i = 0; i < n->n_in; i++)
        bytes += (double)g->v[n->in[i]].numel * 4;
    for (int j = 0; j < n->n_out; j++)
        bytes += (double)g->v[n->out[j]].numel * 4;
    n->bytes = bytes;
    un.node = ni;
    struct wf_unit *us = wf_realloc(g->units, sizeof *us * (size_t)(g->n_units + 1));
    if (!us) {
        rc = wf_error(WF_ERR_NOMEM, "%s: out of memory", u.path);
        goto done;
    }
    g->units = us;
    g->units[g->n_units++] = un;
    have_un = 0; /* owned by g now */
done:
    if (have_un) {
        wf_graph_free(&un.body);
        wf_free(un.packed);
        wf_free(un.live_node);
    }
    u.tm.path = NULL;
    wf_model_free(&u.tm);
    wf_hmap_free(&u.names);
    wf_hmap_free(&u.region_read);
    wf_hmap_free(&u.region_out);
    if (rc == WF_ERR_NOMEM && !strstr(wf_errmsg(), "memory"))
        return wf_error(WF_ERR_NOMEM, "%s: out of memory", u.path);
    return rc;
}
