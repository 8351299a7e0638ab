/* tensor: weft's loss kernels (src/tensor/loss.c) against PyTorch.
 *
 * tests/ref/loss/ holds reference data written by tools/ref/gen_loss_ref.py
 * with PyTorch 1.13 (float32): F.mse_loss and F.binary_cross_entropy_with_logits
 * with reduction "mean" (scale 1/n) or "sum" (scale 1), a random upstream
 * gradient dloss, and PyTorch's loss and gradients of both arguments. This
 * test only reads those files, so it needs no PyTorch. Every case listed in
 * MANIFEST runs; each prints its worst error. The reader is
 * test_kernels_torch_dense.c's (same file format).
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
#define MAX_ITEMS 48

/* ---- reading a case file (format in tools/ref/gen_dense_ref.py) ---- */

struct ref_item {
    char key[32];
    int kind;   /* 'i' int, 'f' float, 'a' array */
    int is_int; /* arrays: 1 = int32, 0 = float32 */
    long count; /* arrays: elements */
    double num; /* ints and floats */
    void *data; /* arrays: an aligned copy */
};

struct ref_case {
    char name[64];
    char op[32];
    int n;
    struct ref_item items[MAX_ITEMS];
    int missing; /* a lookup failed: the case is reported and skipped */
};

static void ref_free(struct ref_case *rc) {
    for (int i = 0; i < rc->n; i++)
        free(rc->items[i].data);
    rc->n = 0;
}

/* Returns 0 on success; the header is text lines, then the arrays' bytes. */
static int ref_load(struct ref_case *rc, const char *path) {
    memset(rc, 0, sizeof *rc);
    char *buf;
    size_t len;
    if (wf_read_file(path, &buf, &len) != WF_OK) return -1;
    size_t pos = 0;
    int ok = 0, first = 1;
    while (pos < len) {
        char *eol = memchr(buf + pos, '\n', len - pos);
        if (!eol) break;
        *eol = '\0';
        char *line = buf + pos;
        pos = (size_t)(eol - buf) + 1;
        char a[32], b[64], c[32];
        double d = 0;
        long cnt = 0;
        if (first) {
            if (strcmp(line, "weft-ref 1") != 0) break;
            first = 0;
        } else if (strcmp(line, "end") == 0) {
            ok = 1;
            break;
        } else if (sscanf(line, "case %63s", b) == 1) {
            snprintf(rc->name, sizeof rc->name, "%s", b);
        } else if (sscanf(line, "op %31s", a) == 1) {
            snprintf(rc->op, sizeof rc->op, "%s", a);
        } else if (rc->n < MAX_ITEMS && sscanf(line, "int %31s %lf", a, &d) == 2) {
            struct ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'i';
            it->num = d;
        } else if (rc->n < MAX_ITEMS && sscanf(line, "float %31s %63s", a, b) == 2) {
            struct ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'f';
            it->num = strtof(b, NULL);
        } else if (rc->n < MAX_ITEMS && sscanf(line, "array %31s %31s %ld", a, c, &cnt) == 3 && cnt >= 0) {
            struct ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'a';
            it->is_int = strcmp(c, "i32") == 0;
            it->count = cnt;
        } else {
            break;
        }
    }
    for (int i = 0; ok && i < rc->n; i++) {
        struct ref_item *it = &rc->items[i];
        if (it->kind != 'a') continue;
        size_t bytes = (size_t)it->count * 4;
        if (len - pos < bytes) {
            ok = 0;
            break;
        }
        it->data = malloc(bytes ? bytes : 4);
        memcpy(it->data, buf + pos, bytes); /* the machines we run on are little-endian */
        pos += bytes;
    }
    free(buf);
    if (!ok || pos != len) {
        ref_free(rc);
        return -1;
    }
    return 0;
}

static struct ref_item *find(struct ref_case *rc, const char *key, int kind) {
    for (int i = 0; i < rc->n; i++) {
        if (rc->items[i].kind == kind && strcmp(rc->items[i].key, key) == 0) return &rc->items[i];
    }
    fprintf(stderr, "%s: missing %s\n", rc->name, key);
    rc->missing = 1;
    return NULL;
}

static int gi(struct ref_case *rc, const char *key) {
    struct ref_item *it = find(rc, key, 'i');
    return it ? (int)it->num : 0;
}

static float gf(struct ref_case *rc, const char *key) {
    struct ref_item *it = find(rc, key, 'f');
    return it ? (float)it->num : 0.0f;
}

/* The array `key`, which must have `count` elements. */
static const float *ga(struct ref_case *rc, const char *key, long count) {
    static float dummy[1];
    struct ref_item *it = find(rc, key, 'a');
    if (it && it->count != count) {
        fprintf(stderr, "%s: %s has %ld elements, want %ld\n", rc->name, key, it->count, count);
        rc->missing = 1;
    }
    return it && it->count == count ? it->data : dummy;
}

/* ---- comparison ---- */

static double worst_ratio_all = 0; /* over all cases: max |d| / (ATOL + RTOL|want|) */
static char worst_where[128];
static double case_ratio, case_abs; /* this case */

static void cmp(struct ref_case *rc, const char *what, const float *got, const float *want, long n) {
    double worst = 0, wabs = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double r = d / (ATOL + RTOL * fabs((double)want[i]));
        if (!(r <= worst)) worst = r; /* NaN counts as worst */
        if (d > wabs) wabs = d;
    }
    if (!(worst <= case_ratio)) case_ratio = worst;
    if (wabs > case_abs) case_abs = wabs;
    if (!(worst <= worst_ratio_all)) {
        worst_ratio_all = worst;
        snprintf(worst_where, sizeof worst_where, "%s.%s", rc->name, what);
    }
    char label[128];
    snprintf(label, sizeof label, "%s.%s", rc->name, what);
    wf_test_close(label, got, want, n, RTOL, ATOL);
}

/* A buffer pre-filled with NaN, so a kernel that fails to overwrite shows. */
static float *nanbuf(long n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

/* ---- one runner per op ---- */

/* mse: (a, b) -> loss; bce_logits: (x, t) -> loss. Both arguments' gradients. */
static void run_loss(struct ref_case *rc, int is_bce) {
    long n = gi(rc, "n");
    float scale = gf(rc, "scale"), dloss = gf(rc, "dloss");
    const char *pk = is_bce ? "x" : "a", *qk = is_bce ? "t" : "b", *dpk = is_bce ? "dx" : "da",
               *dqk = is_bce ? "dt" : "db";
    const float *p = ga(rc, pk, n), *q = ga(rc, qk, n), *loss = ga(rc, "loss", 1);
    const float *dp = ga(rc, dpk, n), *dq = ga(rc, dqk, n);
    if (rc->missing) return;
    float l = NAN, *dpt = nanbuf(n), *dqt = nanbuf(n);
    if (is_bce) {
        wf_bce_logits_forward(&l, p, q, n, scale);
        wf_bce_logits_backward(dpt, dqt, p, q, n, scale, dloss);
    } else {
        wf_mse_forward(&l, p, q, n, scale);
        wf_mse_backward(dpt, dqt, p, q, n, scale, dloss);
    }
    cmp(rc, "loss", &l, loss, 1);
    cmp(rc, dpk, dpt, dp, n);
    cmp(rc, dqk, dqt, dq, n);
    free(dpt), free(dqt);
}

static void run_case(struct ref_case *rc) {
    const char *op = rc->op;
    if (!strcmp(op, "mse"))
        run_loss(rc, 0);
    else if (!strcmp(op, "bce_logits"))
        run_loss(rc, 1);
    else
        CHECKF(0, "%s: unknown op '%s'", rc->name, op);
    CHECKF(!rc->missing, "%s: malformed case", rc->name);
}

int main(void) {
    wf_blas_set_threads(1);
    char *manifest;
    size_t len;
    int ncases = 0;
    if (wf_read_file(wf_test_src("tests/ref/loss/MANIFEST"), &manifest, &len) != WF_OK) {
        CHECKF(0, "cannot read tests/ref/loss/MANIFEST: %s", wf_errmsg());
        return wf_test_done("test_kernels_torch_loss");
    }
    for (char *save = NULL, *name = strtok_r(manifest, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
        char rel[256];
        snprintf(rel, sizeof rel, "tests/ref/loss/%s.ref", name);
        struct ref_case *rc = malloc(sizeof *rc);
        if (ref_load(rc, wf_test_src(rel)) != 0) {
            CHECKF(0, "cannot load %s", rel);
            free(rc);
            continue;
        }
        case_ratio = case_abs = 0;
        int before = wf_test_failures;
        run_case(rc);
        printf("%-16s %-11s worst |weft-torch| %.3g, %.3g of tolerance%s\n", rc->name, rc->op, case_abs, case_ratio,
               wf_test_failures > before ? "  FAILED" : "");
        ref_free(rc);
        free(rc);
        ncases++;
    }
    free(manifest);
    CHECKF(ncases >= 10, "only %d cases in MANIFEST", ncases);
    printf("%d cases; worst at %.3g of tolerance (rtol %g, atol %g) in %s\n", ncases, worst_ratio_all, RTOL, ATOL,
           worst_where);
    return wf_test_done("test_kernels_torch_loss");
}
