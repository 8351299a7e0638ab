/*
 * cluster layer: the gate between a listening socket and its owner's poll
 * loop. Each new connection is a handshake in progress (struct wf_auth):
 * challenged at once, advanced only when poll() says it has bytes, dropped
 * at its deadline, or, when `cap` are in progress and another arrives, the
 * oldest first. The owner sees only authenticated connections.
 *
 *     struct pollfd pf[1 + WF_GATE_CAP + ...];
 *     int n = wf_gate_pollfds(&g, pf);          // then the owner's own fds
 *     poll(pf, n + mine, 100);
 *     wf_gate_service(&g, pf, wf_now(), on_peer, me);
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "weft/cluster.h"
#include "weft/core.h"

int wf_gate_init(struct wf_gate *g, int lfd, const struct wf_token *t, int cap, double timeout_s) {
    memset(g, 0, sizeof *g);
    g->lfd = lfd;
    g->token = t;
    g->cap = cap > 0 ? cap : WF_GATE_CAP;
    g->timeout_s = timeout_s > 0 ? timeout_s : 5.0;
    g->pend = wf_calloc((size_t)g->cap, sizeof *g->pend);
    return g->pend ? WF_OK : wf_error(WF_ERR_NOMEM, "out of memory");
}

void wf_gate_free(struct wf_gate *g) {
    for (int i = 0; i < g->n; i++)
        wf_conn_close(&g->pend[i].c);
    wf_free(g->pend);
    g->pend = NULL;
    g->n = 0;
}

int wf_gate_pollfds(const struct wf_gate *g, struct pollfd *pf) {
    pf[0] = (struct pollfd){.fd = g->lfd, .events = POLLIN};
    for (int i = 0; i < g->n; i++)
        pf[1 + i] = (struct pollfd){.fd = g->pend[i].c.fd, .events = POLLIN};
    return 1 + g->n;
}

static void note_refusal(struct wf_gate *g, uint64_t *counter) {
    (*counter)++;
    snprintf(g->last_refusal, sizeof g->last_refusal, "%s", wf_errmsg());
}

/* Drops the oldest handshake in progress. */
static void evict_oldest(struct wf_gate *g) {
    wf_error(WF_ERR_PEER, "%s: dropped unauthenticated (%d connections were waiting to authenticate)",
             g->pend[0].c.name, g->n);
    note_refusal(g, &g->st.evicted);
    wf_conn_close(&g->pend[0].c);
    memmove(g->pend, g->pend + 1, sizeof *g->pend * (size_t)(g->n - 1));
    g->n--;
}

static void accept_new(struct wf_gate *g) {
    for (int k = 0; k < WF_GATE_BURST; k++) {
        struct wf_conn c;
        int rc = wf_tcp_accept(g->lfd, &c, "an unauthenticated peer", 0.0);
        if (rc == WF_ERR_TIMEOUT) return; /* none waiting */
        if (rc < 0) {
            /* out of descriptors: the oldest handshake makes room; else try at the next call */
            if (g->n > 0) evict_oldest(g);
            note_refusal(g, &g->st.refused);
            return;
        }
        g->st.accepted++;
        if (g->n == g->cap) evict_oldest(g);
        if (wf_auth_begin(&g->pend[g->n], &c, g->timeout_s) < 0) {
            note_refusal(g, &g->st.refused);
            continue;
        }
        g->n++;
    }
}

void wf_gate_service(struct wf_gate *g, const struct pollfd *pf, double now, wf_gate_peer_fn on_peer, void *arg) {
    /* pf[1..] describes pend[0..n) as wf_gate_pollfds left it: advance those, then compact */
    int n = g->n, keep = 0;
    for (int i = 0; i < n; i++) {
        struct wf_auth *a = &g->pend[i];
        int rc = 0;
        if (pf[1 + i].fd == a->c.fd && (pf[1 + i].revents & (POLLIN | POLLHUP | POLLERR))) {
            struct wf_msg hello;
            rc = wf_auth_step(a, g->token, &hello);
            if (rc == 1) {
                g->st.authenticated++;
                struct wf_conn c = a->c;
                on_peer(arg, &c, &hello);
                continue;
            }
            if (rc < 0) note_refusal(g, &g->st.refused);
        }
        if (rc == 0 && now >= a->deadline) {
            wf_error(WF_ERR_TIMEOUT, "%s: no HELLO within %.1f s of connecting", a->c.name, a->timeout_s);
            note_refusal(g, &g->st.expired);
            wf_conn_close(&a->c);
            rc = -1;
        }
        if (rc < 0) continue;
        if (keep != i) g->pend[keep] = *a;
        keep++;
    }
    g->n = keep;
    if (pf[0].revents & POLLIN) accept_new(g);
}
