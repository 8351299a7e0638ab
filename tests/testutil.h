/* Test helpers: CHECK macros that count failures, and a closing line. */
#ifndef WEFT_TESTUTIL_H
#define WEFT_TESTUTIL_H
#include <stdint.h>
#include <stdio.h>

struct wf_rng;

extern int wf_test_failures;
extern int wf_test_checks;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        wf_test_checks++;                                                                                              \
        if (!(cond)) {                                                                                                 \
            wf_test_failures++;                                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)

#define CHECKF(cond, ...)                                                                                              \
    do {                                                                                                               \
        wf_test_checks++;                                                                                              \
        if (!(cond)) {                                                                                                 \
            wf_test_failures++;                                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                                   \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

/* Compares two float arrays; |a-b| <= atol + rtol*|b|. Reports the worst. */
int wf_test_close(const char *what, const float *a, const float *b, long n, double rtol, double atol);
/* Prints "name: N checks, N failed" and returns the process exit code. */
int wf_test_done(const char *name);
/* Path under the source tree (static buffer). */
const char *wf_test_src(const char *rel);
/* How much slower than a quiet machine this one runs now (as
 * tests/cli/slow.bash measures it): the factor a test's upper bounds on how
 * long something takes are multiplied by, so that a busy machine does not
 * fail them; 1 on a quiet machine. WEFT_TEST_SLOW=F sets it; otherwise the
 * first call measures it (0.1 s of CPU: call it before starting threads or
 * children) and prints it: the wall time a CPU-bound probe takes over the CPU
 * time it gets, or the 1-minute load average per core if larger; at least
 * 1, at most 10. */
double wf_test_slow(void);

/* ---- float buffers (malloc'd, at least one element; free() them) ---- */

/* n copies of v (NaN or 1e30 show a kernel that fails to overwrite). */
float *wf_test_filled(long n, float v);
/* n normal samples from rng, times scale. */
float *wf_test_randn(struct wf_rng *rng, long n, float scale);
int wf_test_same_bits(const float *a, const float *b, long n);

/* ---- finite differences ---- */

/* Central differences of the objective f(ctx) over every element of x
 * against grad: err = |fd - grad| / max(|grad|, |fd|, floor). CHECKs the
 * worst err <= tol, prints it, keeps the run's worst for wf_test_fd_summary,
 * and returns it. x is left as it was. */
double wf_test_fd(const char *what, double (*f)(void *ctx), void *ctx, float *x, const float *grad, long n, float eps,
                  double floor, double tol);
/* Prints the worst err of every wf_test_fd so far and where. */
void wf_test_fd_summary(double tol);

/* ---- PyTorch reference cases (tests/ref/<set>/, format in tools/ref/gen_dense_ref.py) ---- */

#define WF_REF_MAX_ITEMS 48

struct wf_ref_item {
    char key[32];
    int kind;   /* 'i' int, 'f' float, 'a' array */
    int is_int; /* arrays: 1 = int32, 0 = float32 */
    long count; /* arrays: elements */
    double num; /* ints and floats */
    void *data; /* arrays: an aligned copy */
};

struct wf_ref_case {
    char name[64];
    char op[32];
    int n;
    struct wf_ref_item items[WF_REF_MAX_ITEMS];
    int missing;               /* a lookup failed: the case is reported and skipped */
    double rtol, atol;         /* wf_ref_cmp's tolerance */
    double worst_ratio, worst; /* this case: max |d| / (atol + rtol|want|), max |d| */
};

/* Lookups; a missing key (or an array of another length) is reported and
 * sets rc->missing, and gives 0 or a dummy array. */
int wf_ref_int(struct wf_ref_case *rc, const char *key);
float wf_ref_float(struct wf_ref_case *rc, const char *key);
/* The array `key`, which must have `count` elements. */
const float *wf_ref_array(struct wf_ref_case *rc, const char *key, long count);
const int32_t *wf_ref_ids(struct wf_ref_case *rc, const char *key, long count);
/* Compares got with PyTorch's want (wf_test_close at the case's tolerance)
 * and keeps the case's and the run's worst. */
void wf_ref_cmp(struct wf_ref_case *rc, const char *what, const float *got, const float *want, long n);
/* Runs run_case on every case named in DIR/MANIFEST (DIR relative to the
 * source tree), printing each case's worst error, checks that the case
 * loaded and nothing was missing, that there were at least min_cases, and
 * prints the worst of all. Returns the number of cases. */
int wf_ref_run(const char *dir, void (*run_case)(struct wf_ref_case *rc), double rtol, double atol, int min_cases);
#endif
