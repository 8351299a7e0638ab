/* tensor: weft's loss kernels (src/tensor/loss.c) against PyTorch.
 *
 * tests/ref/loss/ holds reference data written by tools/ref/gen_loss_ref.py
 * with PyTorch 1.13 (float32): F.mse_loss and F.binary_cross_entropy_with_logits
 * with reduction "mean" (scale 1/n) or "sum" (scale 1), a random upstream
 * gradient dloss, and PyTorch's loss and gradients of both arguments. This
 * test only reads those files, so it needs no PyTorch. Every case listed in
 * MANIFEST runs; each prints its worst error. The reader and the run are
 * testutil's wf_ref_run (the format of tests/ref/dense/).
 * Pass: |weft - torch| <= ATOL + RTOL*|torch| element-wise. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/kernels.h"

#define RTOL 1e-5
#define ATOL 1e-6

/* ---- one runner per op ---- */

/* mse: (a, b) -> loss; bce_logits: (x, t) -> loss. Both arguments' gradients. */
static void run_loss(struct wf_ref_case *rc, int is_bce) {
    long n = wf_ref_int(rc, "n");
    float scale = wf_ref_float(rc, "scale"), dloss = wf_ref_float(rc, "dloss");
    const char *pk = is_bce ? "x" : "a", *qk = is_bce ? "t" : "b", *dpk = is_bce ? "dx" : "da",
               *dqk = is_bce ? "dt" : "db";
    const float *p = wf_ref_array(rc, pk, n), *q = wf_ref_array(rc, qk, n), *loss = wf_ref_array(rc, "loss", 1);
    const float *dp = wf_ref_array(rc, dpk, n), *dq = wf_ref_array(rc, dqk, n);
    if (rc->missing) return;
    float l = NAN, *dpt = wf_test_filled(n, NAN), *dqt = wf_test_filled(n, NAN);
    if (is_bce) {
        wf_bce_logits_forward(&l, p, q, n, scale);
        wf_bce_logits_backward(dpt, dqt, p, q, n, scale, dloss);
    } else {
        wf_mse_forward(&l, p, q, n, scale);
        wf_mse_backward(dpt, dqt, p, q, n, scale, dloss);
    }
    wf_ref_cmp(rc, "loss", &l, loss, 1);
    wf_ref_cmp(rc, dpk, dpt, dp, n);
    wf_ref_cmp(rc, dqk, dqt, dq, n);
    free(dpt), free(dqt);
}

static void run_case(struct wf_ref_case *rc) {
    const char *op = rc->op;
    if (!strcmp(op, "mse"))
        run_loss(rc, 0);
    else if (!strcmp(op, "bce_logits"))
        run_loss(rc, 1);
    else
        CHECKF(0, "%s: unknown op '%s'", rc->name, op);
}

int main(void) {
    wf_blas_set_threads(1);
    wf_ref_run("tests/ref/loss", run_case, RTOL, ATOL, 10);
    return wf_test_done("test_kernels_torch_loss");
}
