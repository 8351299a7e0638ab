/* tensor: element-wise loss kernels that reduce to one scalar — mean squared
 * error and binary cross-entropy on logits — forward and backward.
 *
 * Rules (see kernels.h): the forward sums its n terms in double, in one fixed
 * order (8 interleaved accumulators, combined pairwise, then the tail), on the
 * calling thread only, so the loss has the same bits on every run and for
 * every thread count. The backward is element-wise; each element depends only
 * on its own inputs. Backward outputs are overwritten; NULL ones are skipped.
 * Losses usually take scale = 1/n (a mean, as torch's reduction="mean"). */
#include <math.h>

#include "weft/kernels.h"

/* log(1 + exp(-|x|)) + max(x, 0) - x*t, the stable form torch uses for
 * binary_cross_entropy_with_logits: exp never sees a positive argument. */
static double bce_term(float x, float t) {
    double xd = (double)x;
    return fmax(xd, 0.0) - xd * (double)t + log1p(exp(-fabs(xd)));
}

/* sigmoid in double without overflow: exp of a non-positive argument only */
static double sigmoid_d(float x) {
    double xd = (double)x;
    if (xd >= 0.0) return 1.0 / (1.0 + exp(-xd));
    double e = exp(xd);
    return e / (1.0 + e);
}

void wf_mse_forward(float *loss, const float *a, const float *b, long n, float scale) {
    double acc[8] = {0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) {
            double d = (double)a[i + k] - (double)b[i + k];
            acc[k] += d * d;
        }
    }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    *loss = (float)((double)scale * s);
}

void wf_mse_backward(float *da, float *db, const float *a, const float *b, long n, float scale, float dloss) {
    /* the factor in double then rounded once, as the forward's scale */
    float k = (float)(2.0 * (double)scale * (double)dloss);
    if (da) {
        for (long i = 0; i < n; i++)
            da[i] = k * (a[i] - b[i]);
    }
    if (db) {
        for (long i = 0; i < n; i++)
            db[i] = k * (b[i] - a[i]); /* exactly -da: a - b and b - a round alike */
    }
}

void wf_bce_logits_forward(float *loss, const float *x, const float *t, long n, float scale) {
    double acc[8] = {0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++)
            acc[k] += bce_term(x[i + k], t[i + k]);
    }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++)
        s += bce_term(x[i], t[i]);
    *loss = (float)((double)scale * s);
}

void wf_bce_logits_backward(float *dx, float *dt, const float *x, const float *t, long n, float scale, float dloss) {
    double k = (double)scale * (double)dloss;
    if (dx) {
        for (long i = 0; i < n; i++)
            dx[i] = (float)(k * (sigmoid_d(x[i]) - (double)t[i]));
    }
    if (dt) {
        for (long i = 0; i < n; i++)
            dt[i] = (float)(-k * (double)x[i]);
    }
}
