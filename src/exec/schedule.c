/*
 * exec layer: pipeline schedules — the order in which one stage runs the
 * forward (F) and backward (B) tasks of a step's micro-batches.
 *
 * GPipe: F0 .. F(K-1), then B0 .. B(K-1); K micro-batches of activations
 * are alive at once.
 * 1F1B: stage s of S first runs min(S-1-s, K) forwards (warm-up), then
 * alternates one forward and one backward, then drains the backwards. B j
 * comes as soon as F j is done and j's gradient can have arrived, and at
 * most min(S-s, K) micro-batches of activations are alive.
 */
#include "weft/core.h"
#include "weft/exec.h"

int wf_schedule(int kind, int S, int s, int K, struct wf_sched_ev *ev) {
    int n = 0;
    if (kind == WF_SCHED_GPIPE) {
        for (int j = 0; j < K; j++)
            ev[n++] = (struct wf_sched_ev){WF_EV_F, j};
        for (int j = 0; j < K; j++)
            ev[n++] = (struct wf_sched_ev){WF_EV_B, j};
        return n;
    }
    int warm = WF_MIN(S - 1 - s, K), f = 0, b = 0;
    if (warm < 0) warm = 0;
    while (f < warm)
        ev[n++] = (struct wf_sched_ev){WF_EV_F, f++};
    while (f < K) {
        ev[n++] = (struct wf_sched_ev){WF_EV_F, f++};
        ev[n++] = (struct wf_sched_ev){WF_EV_B, b++};
    }
    while (b < K)
        ev[n++] = (struct wf_sched_ev){WF_EV_B, b++};
    return n;
}

int wf_schedule_max_live(const struct wf_sched_ev *ev, int n) {
    int live = 0, peak = 0;
    for (int i = 0; i < n; i++) {
        live += ev[i].kind == WF_EV_F ? 1 : -1;
        if (live > peak) peak = live;
    }
    return peak;
}
