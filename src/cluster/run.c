/*
 * cluster layer: `weft run` (a coordinator and N workers on loopback, in
 * one command) and the clients `weft submit` and `weft status`.
 *
 * weft run starts its workers as child processes of this one. They die
 * with it (PR_SET_PDEATHSIG), and when the job ends — done, failed or
 * interrupted — any still running after a grace period are killed by pid.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft/cluster.h"
#include "weft/core.h"

#include "cluster_int.h"

extern volatile sig_atomic_t wf_coord_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    wf_coord_interrupted = 1;
}

int wf_parse_hostport(const char *s, char **host, int *port) {
    const char *c = strrchr(s, ':');
    char *end;
    long p = c ? strtol(c + 1, &end, 10) : -1;
    if (!c || c == s || *end || p <= 0 || p > 65535) return wf_error(WF_ERR_INVALID, "'%s' is not HOST:PORT", s);
    *host = wf_malloc((size_t)(c - s) + 1);
    if (!*host) return wf_error(WF_ERR_NOMEM, "out of memory");
    memcpy(*host, s, (size_t)(c - s));
    (*host)[c - s] = 0;
    *port = (int)p;
    return WF_OK;
}

/* Waits up to `grace` seconds for the children, then kills the rest. */
static void reap(pid_t *pids, int n, double grace) {
    double until = wf_now() + grace;
    int left = n;
    while (left > 0) {
        left = 0;
        for (int i = 0; i < n; i++) {
            if (pids[i] <= 0) continue;
            pid_t r = waitpid(pids[i], NULL, WNOHANG);
            if (r == pids[i] || (r < 0 && errno == ECHILD))
                pids[i] = 0;
            else
                left++;
        }
        if (!left) break;
        if (wf_now() > until) {
            for (int i = 0; i < n; i++)
                if (pids[i] > 0) {
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], NULL, 0);
                    pids[i] = 0;
                }
            break;
        }
        usleep(20000);
    }
}

int wf_run_local(const struct wf_run_opts *o, const char *self_exe) {
    struct wf_token tok;
    char hex[129];
    int rc = wf_token_generate(&tok, hex, NULL);
    if (rc < 0) return rc;
    int lfd, port;
    if ((rc = wf_tcp_listen("127.0.0.1", 0, &lfd, &port)) < 0) return rc;
    int n = o->workers > 0 ? o->workers : (o->pp > 0 ? o->pp : 1) * (o->dp > 0 ? o->dp : 1);
    if (n < 1 || n > WF_MAX_WORKERS) {
        close(lfd);
        return wf_error(WF_ERR_INVALID, "--workers must be 1 to %d", WF_MAX_WORKERS);
    }
    pid_t *pids = wf_calloc((size_t)n, sizeof(pid_t));
    if (!pids) {
        close(lfd);
        return wf_error(WF_ERR_NOMEM, "out of memory");
    }
    struct sigaction sa = {.sa_handler = on_sigint}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    pid_t parent = getpid();
    fflush(NULL);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) {
            rc = wf_error(WF_ERR_IO, "cannot start worker %d: %s", i, strerror(errno));
            break;
        }
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);
            signal(SIGINT, SIG_IGN); /* Ctrl-C goes to weft run, which stops everything */
            close(lfd);
            setenv("WEFT_TOKEN", hex, 1);
            execl(self_exe, self_exe, "worker", "--coordinator", addr, "--once", (char *)NULL);
            fprintf(stderr, "weft run: cannot start %s: %s\n", self_exe, strerror(errno));
            _exit(127);
        }
        pids[i] = p;
    }
    if (rc == WF_OK) {
        struct wf_coord_opts co = {.listen_fd = lfd, .token = &tok, .run = o, .child_pids = pids, .n_children = n};
        rc = wf_coordinator(&co);
    }
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", wf_errmsg());
    close(lfd);
    reap(pids, n, 2.0);
    wf_free(pids);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc < 0) wf_error(rc, "%s", keep);
    return rc;
}

static int client_connect(struct wf_conn *c, const char *host, int port, const struct wf_token *t) {
    char name[300];
    snprintf(name, sizeof name, "coordinator %s:%d", host, port);
    int rc = wf_tcp_connect(c, host, port, name, 10.0);
    if (rc < 0) return rc;
    struct wf_msg h = {.role = WF_ROLE_CLIENT, .pid = (uint32_t)getpid()}, w;
    if ((rc = wf_auth_connect(c, t, &h, 10.0)) < 0 || (rc = wf_msg_recv(c, &w, 10.0)) < 0) {
        wf_conn_close(c);
        return rc;
    }
    if (w.type != WF_M_WELCOME) {
        rc = wf_error(WF_ERR_AUTH, "%s refused: %s", c->name, w.text ? w.text : wf_msg_name(w.type));
        wf_msg_free(&w);
        wf_conn_close(c);
        return rc;
    }
    wf_msg_free(&w);
    return WF_OK;
}

int wf_submit(const char *host, int port, const struct wf_token *t, const struct wf_run_opts *o, double reconnect_s) {
    char path[4096];
    if (!realpath(o->job_path, path)) return wf_error(WF_ERR_NOTFOUND, "%s: job file not found", o->job_path);
    struct wf_conn c;
    int rc = client_connect(&c, host, port, t);
    if (rc < 0) return rc;
    struct wf_msg m = {.type = WF_M_SUBMIT,
                       .text = path,
                       .workers = (uint32_t)o->workers,
                       .pp = (uint32_t)o->pp,
                       .dp = (uint32_t)o->dp,
                       .micro_batches = (uint32_t)o->micro_batches,
                       .schedule = (uint32_t)(o->schedule + 1),
                       .threads = (uint32_t)o->threads,
                       .nodes_min = (uint32_t)o->nodes_min,
                       .nodes_max = (uint32_t)o->nodes_max,
                       .max_recoveries = (uint32_t)o->max_recoveries,
                       .snapshot_every = (uint32_t)o->snapshot_every,
                       .settle_s = o->settle_s,
                       .hb_timeout_s = o->heartbeat_timeout_s};
    if ((rc = wf_msg_send(&c, &m, 10.0)) < 0) goto done;
    for (;;) {
        struct wf_msg r;
        if ((rc = wf_msg_recv(&c, &r, 3600.0 * 24)) < 0) {
            if (reconnect_s <= 0 || rc == WF_ERR_TIMEOUT) break;
            /* the coordinator went away: watch the job again once one is back (--journal takes it over) */
            fprintf(stderr, "weft submit: lost the coordinator (%s); watching again when it is back (up to %.0f s)\n",
                    wf_errmsg(), reconnect_s);
            wf_conn_close(&c);
            double until = wf_now() + reconnect_s;
            rc = WF_ERR_PEER;
            while (wf_now() < until) {
                usleep(500000);
                if (client_connect(&c, host, port, t) < 0) continue;
                m.link = 1; /* attach to the job of this path */
                if ((rc = wf_msg_send(&c, &m, 10.0)) == WF_OK) break;
                wf_conn_close(&c);
            }
            if (rc < 0) {
                rc = wf_error(WF_ERR_PEER, "the coordinator %s:%d did not come back within %.0f s", host, port,
                              reconnect_s);
                return rc;
            }
            continue;
        }
        if (r.type == WF_M_JOB_EVENT) {
            printf("%s\n", r.text ? r.text : "");
            fflush(stdout);
        } else if (r.type == WF_M_JOB_END) {
            rc = r.status < 0 ? wf_error((int)r.status, "%s", r.text ? r.text : "job failed") : WF_OK;
            wf_msg_free(&r);
            break;
        }
        wf_msg_free(&r);
    }
done:
    wf_conn_close(&c);
    return rc;
}

int wf_status(const char *host, int port, const struct wf_token *t) {
    struct wf_conn c;
    int rc = client_connect(&c, host, port, t);
    if (rc < 0) return rc;
    struct wf_msg m = {.type = WF_M_STATUS}, r;
    if ((rc = wf_msg_send(&c, &m, 10.0)) == WF_OK && (rc = wf_msg_recv(&c, &r, 10.0)) == WF_OK) {
        fputs(r.text ? r.text : "", stdout);
        wf_msg_free(&r);
    }
    wf_conn_close(&c);
    return rc;
}
