/*
 * graph + compile: the example models build with the right shapes and
 * parameter counts; shape and name errors name file:line:col and layer;
 * autodiff gives every parameter a gradient and sums fan-out; the memory
 * plan never lets two values that are alive at once share bytes.
 */
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "weft/compile.h"
#include "weft/core.h"
#include "weft/model.h"

static int compile_file(struct wf_program *p, const char *rel, int batch, int train) {
    struct wf_model m;
    int rc = wf_model_load(&m, wf_test_src(rel));
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return rc;
    rc = wf_program_compile(p, &m, batch, train);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    wf_model_free(&m);
    return rc;
}

/* Recomputes lifetimes independently and checks arena overlaps. */
static void check_plan(const struct wf_program *p, const char *what) {
    const struct wf_graph *g = &p->g;
    int nv = g->nv;
    int first[4096], last[4096];
    if (nv > 4096) return;
    for (int v = 0; v < nv; v++)
        first[v] = last[v] = -1;
    for (int ni = 0; ni < p->n_exec; ni++) {
        const struct wf_node *n = &g->n[ni];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0) {
                int v = n->in[i];
                if (first[v] < 0) first[v] = 0; /* inputs exist from the start */
                last[v] = ni;
            }
        for (int i = 0; i < n->n_out; i++)
            if (n->out[i] >= 0) {
                if (first[n->out[i]] < 0) first[n->out[i]] = ni;
                if (last[n->out[i]] < ni) last[n->out[i]] = ni;
            }
    }
    if (g->loss >= 0) last[g->loss] = p->n_exec;
    int bad = 0;
    for (int a = 0; a < nv && !bad; a++) {
        if (p->storage[a] != WF_STORE_ARENA || first[a] < 0) continue;
        for (int b = a + 1; b < nv && !bad; b++) {
            if (p->storage[b] != WF_STORE_ARENA || first[b] < 0) continue;
            /* views legitimately share their base's bytes */
            int ra = a, rb = b;
            while (g->v[ra].alias >= 0)
                ra = g->v[ra].alias;
            while (g->v[rb].alias >= 0)
                rb = g->v[rb].alias;
            if (ra == rb) continue;
            int live = first[a] <= last[b] && first[b] <= last[a];
            int64_t a0 = p->offset[a], a1 = a0 + g->v[a].numel * 4, b0 = p->offset[b], b1 = b0 + g->v[b].numel * 4;
            if (live && a0 < b1 && b0 < a1) {
                bad = 1;
                CHECKF(0, "%s: '%s' and '%s' are alive together but share bytes", what, g->v[a].name, g->v[b].name);
            }
            CHECK(a1 <= (int64_t)p->arena_bytes && b1 <= (int64_t)p->arena_bytes);
        }
    }
    CHECK(p->arena_bytes <= p->naive_bytes);
}

static void test_examples(void) {
    struct wf_program p;
    if (compile_file(&p, "examples/mlp.wf", 64, 1) == WF_OK) {
        CHECK(wf_graph_param_count(&p.g) == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
        int fc3 = wf_graph_find(&p.g, "fc3");
        CHECK(fc3 >= 0 && p.g.v[fc3].shape[0] == 64 && p.g.v[fc3].shape[1] == 10);
        CHECK(p.g.loss >= 0 && p.g.logits == fc3);
        for (int i = 0; i < p.g.n_params; i++)
            CHECK(p.g.v[p.g.params[i]].grad >= 0);
        /* 2*(784*256 + 256*256 + 256*10) per sample forward */
        CHECK((long)(p.flops_fwd / 64) >= 2 * (784 * 256 + 256 * 256 + 2560));
        check_plan(&p, "mlp");
        wf_program_free(&p);
    }
    if (compile_file(&p, "examples/cnn.wf", 8, 1) == WF_OK) {
        CHECK(wf_graph_param_count(&p.g) == (32 * 25 + 32) + (64 * 32 * 25 + 64) + (3136 * 128 + 128) + 1290);
        int p2 = wf_graph_find(&p.g, "p2");
        CHECK(p2 >= 0 && p.g.v[p2].shape[1] == 64 && p.g.v[p2].shape[2] == 7 && p.g.v[p2].shape[3] == 7);
        CHECK(p.work_floats > 0);
        check_plan(&p, "cnn");
        wf_program_free(&p);
    }
    if (compile_file(&p, "examples/resmlp.wf", 16, 1) == WF_OK) {
        int accum = 0;
        for (int i = 0; i < p.g.nn; i++)
            accum += p.g.n[i].op == WF_OP_ACCUM;
        CHECKF(accum >= 2, "residual fan-out should give accum nodes, got %d", accum);
        check_plan(&p, "resmlp");
        wf_program_free(&p);
    }
    /* forward-only plan */
    if (compile_file(&p, "examples/cnn.wf", 100, 0) == WF_OK) {
        CHECK(p.n_exec == p.g.n_fwd);
        check_plan(&p, "cnn eval");
        wf_program_free(&p);
    }
}

static void expect_error(const char *text, int status, const char *substr) {
    struct wf_model m;
    struct wf_program p;
    int rc = wf_model_parse(&m, "bad.wf", text);
    if (rc == WF_OK) {
        rc = wf_program_compile(&p, &m, 4, 1);
        if (rc == WF_OK) wf_program_free(&p);
        wf_model_free(&m);
    }
    CHECKF(rc == status, "expected status %d got %d for: %s", status, rc, text);
    CHECKF(strstr(wf_errmsg(), substr) != NULL, "message '%s' lacks '%s'", wf_errmsg(), substr);
}

static void test_errors(void) {
    const char *head = "input x : f32[B, 10]\ninput y : i32[B]\n";
    char buf[1024];
    snprintf(buf, sizeof buf, "%sh = linear(x, out=5)\nz = add(h, x)\nloss = cross_entropy(z, y)\noutput loss\n", head);
    expect_error(buf, WF_ERR_SHAPE, "bad.wf:4:1: layer 'z' (add)");
    snprintf(buf, sizeof buf, "%sh = lnear(x, out=5)\noutput h\n", head);
    expect_error(buf, WF_ERR_PARSE, "bad.wf:3:5: unknown op 'lnear'");
    snprintf(buf, sizeof buf, "%sh = linear(q, out=5)\noutput h\n", head);
    expect_error(buf, WF_ERR_PARSE, "bad.wf:3:12: unknown tensor 'q'");
    snprintf(buf, sizeof buf, "%sh = linear(x, outs=5)\noutput h\n", head);
    expect_error(buf, WF_ERR_PARSE, "bad.wf:3:15: linear has no attribute 'outs'");
    snprintf(buf, sizeof buf, "%sh = linear(x)\noutput h\n", head);
    expect_error(buf, WF_ERR_PARSE, "linear needs attribute 'out'");
    snprintf(buf, sizeof buf, "%sh = conv2d(x, out=4, kernel=3)\noutput h\n", head);
    expect_error(buf, WF_ERR_SHAPE, "argument 1 'x' must have 4 dimensions");
    snprintf(buf, sizeof buf, "%sh = reshape(x, shape=[B, 3, 3])\noutput h\n", head);
    expect_error(buf, WF_ERR_SHAPE, "cannot reshape");
    snprintf(buf, sizeof buf, "%sh = linear(x, out=3)\nloss = cross_entropy(h, x)\noutput loss\n", head);
    expect_error(buf, WF_ERR_SHAPE, "must be i32");
    snprintf(buf, sizeof buf, "%sh = relu(x)\nloss = sum(h)\noutput loss\n", head);
    expect_error(buf, WF_ERR_INVALID, "does not depend on any parameter");
    snprintf(buf, sizeof buf, "%sh = relu(x, y)\noutput h\n", head);
    expect_error(buf, WF_ERR_PARSE, "relu takes 1 tensor argument, got 2");
}

int main(void) {
    test_examples();
    test_errors();
    return wf_test_done("test_graph");
}
