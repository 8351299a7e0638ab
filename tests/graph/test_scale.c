/*
 * graph + compile at scale: a 20,000-statement chain and a model of wide
 * fan-out and fan-in parse, build, differentiate and plan correctly (the
 * name index finds every value, a name defined twice is still refused with
 * the first definition's place, every gradient is there, no two values that
 * are alive at once share bytes). No timing is asserted: a quadratic
 * builder would show as this test taking minutes under its timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/compile.h"
#include "weft/core.h"
#include "weft/model.h"

#define CHAIN 20000 /* statements */

static const char *ops[] = {"relu", "tanh", "sigmoid", "gelu"};

/* input, linear, CHAIN - 4 cheap layers h1 .. h(CHAIN-4), loss, output */
static char *chain_text(int n) {
    size_t cap = (size_t)n * 40 + 256, k = 0;
    char *t = malloc(cap);
    wf_appendf(t, cap, &k, "model chain\ninput x : f32[B, 16]\nh0 = linear(x, out=16)\n");
    for (int i = 1; i <= n - 4; i++)
        wf_appendf(t, cap, &k, "h%d = %s(h%d)\n", i, ops[(i - 1) % 4], i - 1);
    wf_appendf(t, cap, &k, "loss = mean(h%d)\noutput loss\n", n - 4);
    return t;
}

/* blocks of 8 branches reading the block's input, summed by a tree of adds */
static char *fanout_text(int blocks) {
    size_t cap = (size_t)blocks * 400 + 256, k = 0;
    char *t = malloc(cap);
    wf_appendf(t, cap, &k, "model fan\ninput x : f32[B, 8]\nh0 = linear(x, out=8)\n");
    for (int b = 1; b <= blocks; b++) {
        for (int j = 1; j <= 8; j++)
            wf_appendf(t, cap, &k, "b%d_%d = %s(h%d)\n", b, j, ops[j % 4], b - 1);
        for (int j = 1; j <= 4; j++)
            wf_appendf(t, cap, &k, "b%d_s%d = add(b%d_%d, b%d_%d)\n", b, j, b, 2 * j - 1, b, 2 * j);
        wf_appendf(t, cap, &k, "b%d_t = add(b%d_s1, b%d_s2)\nb%d_u = add(b%d_s3, b%d_s4)\nh%d = add(b%d_t, b%d_u)\n", b,
                   b, b, b, b, b, b, b, b);
    }
    wf_appendf(t, cap, &k, "loss = mean(h%d)\noutput loss\n", blocks);
    return t;
}

struct span {
    int64_t lo, hi;  /* bytes */
    int first, last; /* steps */
    int v;
};

static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : x->v - y->v;
}

/* Lifetimes recomputed from the nodes; every two arena values whose bytes
 * overlap must not be alive at the same step (views share their base's). */
static void check_plan(const struct wf_program *p, const char *what) {
    const struct wf_graph *g = &p->g;
    int nv = g->nv;
    int *first = malloc(sizeof(int) * (size_t)nv), *last = malloc(sizeof(int) * (size_t)nv);
    struct span *sp = malloc(sizeof *sp * (size_t)nv);
    for (int v = 0; v < nv; v++) {
        first[v] = g->v[v].producer >= 0 ? g->v[v].producer : 0;
        last[v] = first[v];
    }
    for (int ni = 0; ni < p->n_exec; ni++) {
        const struct wf_node *n = &g->n[ni];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0 && last[n->in[i]] < ni) last[n->in[i]] = ni;
    }
    for (int v = nv - 1; v >= 0; v--) /* a view keeps its base alive */
        if (g->v[v].alias >= 0) {
            int r = g->v[v].alias;
            if (last[v] > last[r]) last[r] = last[v];
        }
    int ns = 0;
    for (int v = 0; v < nv; v++)
        if (p->storage[v] == WF_STORE_ARENA && g->v[v].alias < 0) {
            int64_t sz = g->v[v].numel * 4;
            CHECKF(p->offset[v] >= 0 && (size_t)(p->offset[v] + sz) <= p->arena_bytes, "%s: '%s' outside the arena",
                   what, g->v[v].name);
            sp[ns++] = (struct span){p->offset[v], p->offset[v] + sz, first[v], last[v], v};
        }
    qsort(sp, (size_t)ns, sizeof *sp, cmp_span);
    long pairs = 0, bad = 0;
    for (int i = 0; i < ns && pairs < 200000000L; i++)
        for (int j = i + 1; j < ns && sp[j].lo < sp[i].hi; j++, pairs++)
            if (sp[i].first <= sp[j].last && sp[j].first <= sp[i].last && bad++ < 5)
                fprintf(stderr, "%s: '%s' and '%s' share bytes while both alive\n", what, g->v[sp[i].v].name,
                        g->v[sp[j].v].name);
    CHECKF(bad == 0, "%s: %ld overlaps", what, bad);
    CHECKF(pairs < 200000000L, "%s: too many overlapping spans to check", what);
    CHECK(p->arena_bytes > 0 && p->arena_bytes <= p->naive_bytes);
    free(first);
    free(last);
    free(sp);
}

static void test_chain(void) {
    char *text = chain_text(CHAIN);
    struct wf_model m;
    int rc = wf_model_parse(&m, "chain.wf", text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) {
        free(text);
        return;
    }
    CHECK(m.n == CHAIN);
    struct wf_program p;
    rc = wf_program_compile(&p, &m, 4, 1);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc == WF_OK) {
        const struct wf_graph *g = &p.g;
        int layers = CHAIN - 2;
        CHECK(g->n_fwd == layers);
        CHECK(g->nn == 2 * layers); /* one backward per layer, no fan-out */
        CHECK(g->n_params == 2 && g->v[g->params[0]].grad >= 0 && g->v[g->params[1]].grad >= 0);
        char name[32];
        int found = 0;
        for (int i = 0; i <= CHAIN - 4; i += 1) {
            snprintf(name, sizeof name, "h%d", i);
            int v = wf_graph_find(g, name);
            found += v >= 0 && !strcmp(g->v[v].name, name) && g->v[v].producer == i && g->v[v].kind == WF_V_ACT;
        }
        CHECK(found == CHAIN - 3);
        CHECK(wf_graph_find(g, "h0.weight") == g->params[0]);
        CHECK(wf_graph_find(g, "loss") == g->loss);
        CHECK(wf_graph_find(g, "dloss") == g->loss_grad);
        CHECK(wf_graph_find(g, "h99999") == -1);
        snprintf(name, sizeof name, "dh%d@h%d", CHAIN - 5, CHAIN - 4); /* a gradient contribution */
        int d = wf_graph_find(g, name);
        snprintf(name, sizeof name, "h%d", CHAIN - 5);
        CHECK(d >= 0 && g->v[d].kind == WF_V_GRAD && g->v[d].grad_of == wf_graph_find(g, name));
        check_plan(&p, "chain, train");
        wf_program_free(&p);
    }
    rc = wf_program_compile(&p, &m, 4, 0);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc == WF_OK) {
        CHECK(p.arena_bytes <= 3 * 256); /* forward only: neighbours reuse the same few blocks */
        check_plan(&p, "chain, eval");
        wf_program_free(&p);
    }
    wf_model_free(&m);

    /* a name defined twice at the end is refused, naming the first definition */
    size_t n = strlen(text), cap = n + 64;
    text = realloc(text, cap);
    wf_appendf(text, cap, &n, "h7 = relu(h8)\n");
    rc = wf_model_parse(&m, "chain.wf", text);
    CHECK(rc == WF_ERR_PARSE);
    CHECKF(strstr(wf_errmsg(), "'h7' already defined at chain.wf:10:1") != NULL, "%s", wf_errmsg());
    if (rc == WF_OK) wf_model_free(&m);
    free(text);
}

static void test_fanout(void) {
    int blocks = 1000;
    char *text = fanout_text(blocks);
    struct wf_model m;
    int rc = wf_model_parse(&m, "fan.wf", text);
    free(text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    struct wf_program p;
    rc = wf_program_compile(&p, &m, 3, 1);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc == WF_OK) {
        const struct wf_graph *g = &p.g;
        int layers = 2 + 15 * blocks;
        CHECK(g->n_fwd == layers);
        /* each block input is read 8 times: one accum node sums its 8 contributions */
        int accum = 0;
        for (int i = g->n_fwd; i < g->nn; i++)
            accum += g->n[i].backward && g->n[i].fwd < 0;
        CHECK(accum == blocks);
        CHECK(g->nn == 2 * layers + accum);
        int h500 = wf_graph_find(g, "h500");
        int dh = wf_graph_find(g, "dh500"); /* the sum of its 8 contributions */
        CHECK(dh >= 0 && g->v[dh].grad_of == h500 && g->n[g->v[dh].producer].n_in == 8);
        check_plan(&p, "fan-out, train");
        wf_program_free(&p);
    }
    wf_model_free(&m);
}

int main(void) {
    test_chain();
    test_fanout();
    return wf_test_done("test_scale");
}
