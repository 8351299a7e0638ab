#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft/core.h"

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

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double wf_test_slow(void) {
    static double slow;
    if (slow > 0) return slow;
    const char *e = getenv("WEFT_TEST_SLOW");
    if (e && atof(e) > 0) {
        slow = atof(e);
        printf("slowdown factor %g (WEFT_TEST_SLOW)\n", slow);
        return slow;
    }
    double w0 = wf_now(), c0 = cpu_seconds(), c;
    volatile uint64_t spin = 0;
    do {
        for (int i = 0; i < 100000; i++)
            spin += (uint64_t)i;
    } while ((c = cpu_seconds() - c0) < 0.1);
    double share = (wf_now() - w0) / c, avg[1] = {0};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double load = getloadavg(avg, 1) == 1 && cores > 0 ? avg[0] / (double)cores : 0;
    slow = fmin(10.0, fmax(1.0, fmax(share, load)));
    printf("slowdown factor %.1f (a CPU-bound probe ran %.2fx its CPU time; load average %.1f on %ld cores)\n", slow,
           share, avg[0], cores);
    return slow;
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

/* ---- float buffers ---- */

float *wf_test_filled(long n, float v) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++)
        x[i] = v;
    return x;
}

float *wf_test_randn(struct wf_rng *rng, long n, float scale) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++)
        x[i] = scale * wf_rng_normal(rng);
    return x;
}

int wf_test_same_bits(const float *a, const float *b, long n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

/* ---- finite differences ---- */

static double fd_worst_all;
static char fd_worst_where[96];

double wf_test_fd(const char *what, double (*f)(void *ctx), void *ctx, float *x, const float *grad, long n, float eps,
                  double floor, double tol) {
    double worst = 0, wfd = 0;
    long wi = -1;
    for (long i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + eps;
        double lp = f(ctx);
        x[i] = keep - eps;
        double lm = f(ctx);
        x[i] = keep;
        double fd = (lp - lm) / (2.0 * (double)eps);
        double an = grad[i];
        double err = fabs(fd - an) / fmax(fmax(fabs(an), fabs(fd)), floor);
        if (!(err <= worst)) {
            worst = err;
            wi = i;
            wfd = fd;
        }
    }
    CHECKF(worst <= tol, "%s: fd %.6g analytic %.6g at [%ld] (err %.3g)", what, wfd, wi >= 0 ? grad[wi] : 0.0, wi,
           worst);
    printf("  fd %-28s worst err %.3g\n", what, worst);
    if (!(worst <= fd_worst_all)) {
        fd_worst_all = worst;
        snprintf(fd_worst_where, sizeof fd_worst_where, "%s", what);
    }
    return worst;
}

void wf_test_fd_summary(double tol) {
    printf("finite differences: worst err %.3g in %s (tolerance %g)\n", fd_worst_all, fd_worst_where, tol);
}

/* ---- PyTorch reference cases ---- */

static void ref_free(struct wf_ref_case *rc) {
    for (int i = 0; i < rc->n; i++)
        free(rc->items[i].data);
    rc->n = 0;
}

/* Returns 0 on success; the header is text lines, then the arrays' bytes. */
static int ref_load(struct wf_ref_case *rc, const char *path) {
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
        } else if (rc->n < WF_REF_MAX_ITEMS && sscanf(line, "int %31s %lf", a, &d) == 2) {
            struct wf_ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'i';
            it->num = d;
        } else if (rc->n < WF_REF_MAX_ITEMS && sscanf(line, "float %31s %63s", a, b) == 2) {
            struct wf_ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'f';
            it->num = strtof(b, NULL);
        } else if (rc->n < WF_REF_MAX_ITEMS && sscanf(line, "array %31s %31s %ld", a, c, &cnt) == 3 && cnt >= 0) {
            struct wf_ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'a';
            it->is_int = strcmp(c, "i32") == 0;
            it->count = cnt;
        } else {
            break;
        }
    }
    for (int i = 0; ok && i < rc->n; i++) {
        struct wf_ref_item *it = &rc->items[i];
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

static struct wf_ref_item *ref_find(struct wf_ref_case *rc, const char *key, int kind) {
    for (int i = 0; i < rc->n; i++) {
        if (rc->items[i].kind == kind && strcmp(rc->items[i].key, key) == 0) return &rc->items[i];
    }
    fprintf(stderr, "%s: missing %s\n", rc->name, key);
    rc->missing = 1;
    return NULL;
}

int wf_ref_int(struct wf_ref_case *rc, const char *key) {
    struct wf_ref_item *it = ref_find(rc, key, 'i');
    return it ? (int)it->num : 0;
}

float wf_ref_float(struct wf_ref_case *rc, const char *key) {
    struct wf_ref_item *it = ref_find(rc, key, 'f');
    return it ? (float)it->num : 0.0f;
}

const float *wf_ref_array(struct wf_ref_case *rc, const char *key, long count) {
    static float dummy[1];
    struct wf_ref_item *it = ref_find(rc, key, 'a');
    if (it && it->count != count) {
        fprintf(stderr, "%s: %s has %ld elements, want %ld\n", rc->name, key, it->count, count);
        rc->missing = 1;
    }
    return it && it->count == count ? it->data : dummy;
}

const int32_t *wf_ref_ids(struct wf_ref_case *rc, const char *key, long count) {
    return (const int32_t *)wf_ref_array(rc, key, count);
}

static double ref_worst_all = 0; /* over all cases: max |d| / (atol + rtol|want|) */
static char ref_worst_where[128];

void wf_ref_cmp(struct wf_ref_case *rc, const char *what, const float *got, const float *want, long n) {
    double worst = 0, wabs = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double r = d / (rc->atol + rc->rtol * fabs((double)want[i]));
        if (!(r <= worst)) worst = r; /* NaN counts as worst */
        if (d > wabs) wabs = d;
    }
    if (!(worst <= rc->worst_ratio)) rc->worst_ratio = worst;
    if (wabs > rc->worst) rc->worst = wabs;
    if (!(worst <= ref_worst_all)) {
        ref_worst_all = worst;
        snprintf(ref_worst_where, sizeof ref_worst_where, "%s.%s", rc->name, what);
    }
    char label[128];
    snprintf(label, sizeof label, "%s.%s", rc->name, what);
    wf_test_close(label, got, want, n, rc->rtol, rc->atol);
}

int wf_ref_run(const char *dir, void (*run_case)(struct wf_ref_case *rc), double rtol, double atol, int min_cases) {
    char rel[256];
    char *manifest;
    size_t len;
    int ncases = 0;
    snprintf(rel, sizeof rel, "%s/MANIFEST", dir);
    if (wf_read_file(wf_test_src(rel), &manifest, &len) != WF_OK) {
        CHECKF(0, "cannot read %s: %s", rel, wf_errmsg());
        return 0;
    }
    for (char *save = NULL, *name = strtok_r(manifest, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
        snprintf(rel, sizeof rel, "%s/%s.ref", dir, name);
        struct wf_ref_case *rc = malloc(sizeof *rc);
        if (ref_load(rc, wf_test_src(rel)) != 0) {
            CHECKF(0, "cannot load %s", rel);
            free(rc);
            continue;
        }
        rc->rtol = rtol;
        rc->atol = atol;
        int before = wf_test_failures;
        run_case(rc);
        CHECKF(!rc->missing, "%s: malformed case", rc->name);
        printf("%-16s %-13s worst |weft-torch| %.3g, %.3g of tolerance%s\n", rc->name, rc->op, rc->worst,
               rc->worst_ratio, wf_test_failures > before ? "  FAILED" : "");
        ref_free(rc);
        free(rc);
        ncases++;
    }
    free(manifest);
    CHECKF(ncases >= min_cases, "only %d cases in MANIFEST", ncases);
    printf("%d cases; worst at %.3g of tolerance (rtol %g, atol %g) in %s\n", ncases, ref_worst_all, rtol, atol,
           ref_worst_where);
    return ncases;
}
