/*
 * Pipeline schedules: for every S, stage s and K (K below S included), each
 * micro-batch runs F then B exactly once, in micro-batch order; 1F1B keeps
 * at most min(S - s, K) micro-batches alive and starts B j as soon as its
 * warm-up allows; GPipe runs every F before any B.
 */
#include <string.h>

#include "testutil.h"
#include "weft/exec.h"

static void check(int kind, int S, int s, int K) {
    struct wf_sched_ev ev[2 * 64];
    int n = wf_schedule(kind, S, s, K, ev);
    CHECKF(n == 2 * K, "S=%d s=%d K=%d: %d events", S, s, K, n);
    int nf = 0, nb = 0, ok = 1;
    for (int i = 0; i < n; i++) {
        if (ev[i].kind == WF_EV_F)
            ok &= ev[i].mb == nf++;
        else
            ok &= ev[i].mb == nb++ && nb <= nf;
    }
    CHECKF(ok && nf == K && nb == K, "kind %d S=%d s=%d K=%d: order broken", kind, S, s, K);
    int peak = wf_schedule_max_live(ev, n);
    int want = kind == WF_SCHED_GPIPE ? K : (S - s < K ? S - s : K);
    CHECKF(peak == want, "kind %d S=%d s=%d K=%d: peak %d, want %d", kind, S, s, K, peak, want);
    if (kind == WF_SCHED_1F1B) {
        /* warm-up of min(S-1-s, K) forwards, then F/B alternate */
        int warm = S - 1 - s < K ? S - 1 - s : K;
        for (int i = 0; i < warm; i++)
            CHECK(ev[i].kind == WF_EV_F);
        if (warm < K) CHECK(ev[warm].kind == WF_EV_F && ev[warm + 1].kind == WF_EV_B && ev[warm + 1].mb == 0);
    }
}

int main(void) {
    for (int S = 1; S <= 6; S++)
        for (int s = 0; s < S; s++)
            for (int K = 1; K <= 2 * S + 2; K++) {
                check(WF_SCHED_1F1B, S, s, K);
                check(WF_SCHED_GPIPE, S, s, K);
            }
    return wf_test_done("test_schedule");
}
