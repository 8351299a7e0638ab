/* Test helpers: CHECK macros that count failures, and a closing line. */
#ifndef WEFT_TESTUTIL_H
#define WEFT_TESTUTIL_H
#include <stdio.h>

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
#endif
