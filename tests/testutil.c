#include "testutil.h"

#include <math.h>
#include <stdio.h>

int wf_test_failures = 0;
int wf_test_checks = 0;

int wf_test_close(const char *what, const float *a, const float *b, long n, double rtol, double atol) {
    long worst = -1;
    double worst_excess = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double lim = atol + rtol * fabs((double)b[i]);
        if (!(d <= lim) && (worst < 0 || d - lim > worst_excess)) {
            worst = i;
            worst_excess = d - lim;
        }
    }
    wf_test_checks++;
    if (worst >= 0) {
        wf_test_failures++;
        fprintf(stderr, "%s: mismatch at [%ld]: got %.9g want %.9g (rtol %g atol %g)\n", what, worst, (double)a[worst],
                (double)b[worst], rtol, atol);
        return 0;
    }
    return 1;
}

int wf_test_done(const char *name) {
    printf("%s: %d checks, %d failed\n", name, wf_test_checks, wf_test_failures);
    return wf_test_failures ? 1 : 0;
}

const char *wf_test_src(const char *rel) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", WF_SOURCE_DIR, rel);
    return buf;
}
