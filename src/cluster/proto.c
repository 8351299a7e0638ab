/*
 * cluster layer: the messages — one encoder and one bounded decoder per
 * type, the byte layouts documented in docs/messages.md. The decoder trusts
 * nothing: every count is checked against the bytes left before anything
 * is allocated, and a message with bytes left over is refused.
 */
#include <stdio.h>
#include <string.h>

#include "weft/cluster.h"
#include "weft/core.h"

const char *wf_msg_name(int type) {
    switch (type) {
    case WF_M_CHALLENGE: return "CHALLENGE";
    case WF_M_HELLO: return "HELLO";
    case WF_M_WELCOME: return "WELCOME";
    case WF_M_REFUSE: return "REFUSE";
    case WF_M_ASSIGN: return "ASSIGN";
    case WF_M_COMPILE_DONE: return "COMPILE_DONE";
    case WF_M_COMPILE_FAIL: return "COMPILE_FAIL";
    case WF_M_START: return "START";
    case WF_M_HEARTBEAT: return "HEARTBEAT";
    case WF_M_STEP_LOSS: return "STEP_LOSS";
    case WF_M_EVAL: return "EVAL";
    case WF_M_STATE: return "STATE";
    case WF_M_DONE: return "DONE";
    case WF_M_FAIL: return "FAIL";
    case WF_M_ABORT: return "ABORT";
    case WF_M_SHUTDOWN: return "SHUTDOWN";
    case WF_M_TRACE: return "TRACE";
    case WF_M_CLIP_PART: return "CLIP_PART";
    case WF_M_CLIP: return "CLIP";
    case WF_M_SUBMIT: return "SUBMIT";
    case WF_M_JOB_EVENT: return "JOB_EVENT";
    case WF_M_JOB_END: return "JOB_END";
    case WF_M_STATUS: return "STATUS";
    case WF_M_STATUS_REPLY: return "STATUS_REPLY";
    case WF_M_ACT: return "ACT";
    case WF_M_GRAD: return "GRAD";
    case WF_M_STOP: return "STOP";
    case WF_M_STOPPED: return "STOPPED";
    case WF_M_SNAP: return "SNAP";
    case WF_M_FETCH: return "FETCH";
    case WF_M_RESTORE: return "RESTORE";
    }
    return "unknown";
}

static void put_s(struct wf_wbuf *b, const char *s) { wf_put_str(b, s ? s : ""); }

void wf_msg_encode(struct wf_wbuf *b, const struct wf_msg *m) {
    switch (m->type) {
    case WF_M_CHALLENGE: wf_put_bytes(b, m->nonce, WF_NONCE); break;
    case WF_M_HELLO:
        wf_put_bytes(b, m->mac, WF_MAC);
        wf_put_u32(b, m->role);
        wf_put_u32(b, m->cores);
        wf_put_u64(b, m->mem);
        wf_put_u32(b, m->port);
        wf_put_u32(b, m->pid);
        put_s(b, m->name);
        wf_put_u64(b, m->job_id);
        wf_put_u64(b, m->id);
        wf_put_u32(b, m->link);
        break;
    case WF_M_WELCOME: wf_put_u64(b, m->id); break;
    case WF_M_REFUSE:
    case WF_M_COMPILE_FAIL:
    case WF_M_FAIL:
    case WF_M_ABORT:
    case WF_M_JOB_EVENT:
    case WF_M_STATUS_REPLY: put_s(b, m->text); break;
    case WF_M_ASSIGN: {
        wf_put_u64(b, m->job_id);
        const uint32_t u[] = {m->worker,        m->stage,    m->n_stages, m->replica,        m->n_replicas,
                              m->micro_batches, m->schedule, m->threads,  m->trace,          m->in_grad,
                              m->out_grad,      m->version,  m->elastic,  m->snapshot_every, m->restore};
        for (size_t i = 0; i < WF_ARRAY_LEN(u); i++)
            wf_put_u32(b, u[i]);
        const char *s[] = {m->job_text, m->model_text, m->in, m->out, m->x_name, m->y_name, m->len_name};
        for (size_t i = 0; i < WF_ARRAY_LEN(s); i++)
            put_s(b, s[i]);
        wf_put_u32(b, m->n_peers);
        for (uint32_t i = 0; i < m->n_peers; i++) {
            put_s(b, m->peers[i].host);
            wf_put_u32(b, m->peers[i].port);
        }
        break;
    }
    case WF_M_COMPILE_DONE:
        wf_put_f64(b, m->seconds);
        wf_put_u64(b, m->bytes);
        wf_put_u64(b, m->nodes);
        break;
    case WF_M_START:
    case WF_M_SHUTDOWN:
    case WF_M_STATUS: break;
    case WF_M_HEARTBEAT:
        wf_put_u64(b, (uint64_t)m->step);
        put_s(b, m->text);
        break;
    case WF_M_CLIP:
        wf_put_u64(b, (uint64_t)m->step);
        wf_put_f64(b, m->value);
        break;
    case WF_M_CLIP_PART:
    case WF_M_STEP_LOSS:
        wf_put_u64(b, (uint64_t)m->step);
        wf_put_u32(b, m->first);
        wf_put_u32(b, m->n);
        for (uint32_t i = 0; i < m->n; i++)
            wf_put_f64(b, m->vals[i]);
        if (m->type == WF_M_STEP_LOSS) {
            wf_put_u32(b, m->n_ids);
            for (uint32_t i = 0; i < m->n_ids; i++)
                wf_put_u32(b, m->ids[i]);
        }
        break;
    case WF_M_STOP:
        wf_put_u32(b, m->version);
        wf_put_u64(b, (uint64_t)m->step);
        break;
    case WF_M_STOPPED:
        wf_put_u32(b, m->version);
        wf_put_u64(b, (uint64_t)m->step);
        wf_put_u32(b, m->n_inv);
        for (uint32_t i = 0; i < m->n_inv; i++) {
            wf_put_u32(b, (uint32_t)m->inv[2 * i]);
            wf_put_u64(b, (uint64_t)m->inv[2 * i + 1]);
        }
        break;
    case WF_M_FETCH:
        wf_put_u32(b, m->version);
        wf_put_u32(b, m->stage);
        wf_put_u64(b, (uint64_t)m->step);
        break;
    case WF_M_SNAP:
        wf_put_u32(b, m->version);
        wf_put_u32(b, m->stage);
        wf_put_u32(b, m->link);
        wf_put_u64(b, (uint64_t)m->step);
        wf_put_u64(b, m->nbytes);
        wf_put_bytes(b, m->data, m->nbytes);
        break;
    case WF_M_EVAL:
        wf_put_u64(b, (uint64_t)m->epoch);
        wf_put_f64(b, m->loss_sum);
        wf_put_u64(b, m->correct);
        wf_put_u64(b, m->count);
        break;
    case WF_M_STATE:
    case WF_M_RESTORE:
        wf_put_u64(b, (uint64_t)m->step);
        wf_put_u64(b, (uint64_t)m->epoch);
        wf_put_u64(b, (uint64_t)m->epoch_step);
        wf_put_u64(b, m->nbytes);
        wf_put_bytes(b, m->data, m->nbytes);
        break;
    case WF_M_DONE:
        wf_put_u64(b, (uint64_t)m->step);
        wf_put_f64(b, m->compute_s);
        wf_put_f64(b, m->comm_s);
        wf_put_f64(b, m->idle_s);
        wf_put_u64(b, m->max_live);
        wf_put_u64(b, m->bytes);
        break;
    case WF_M_TRACE:
        wf_put_u64(b, m->nbytes);
        wf_put_bytes(b, m->data, m->nbytes);
        break;
    case WF_M_SUBMIT:
        put_s(b, m->text);
        put_s(b, m->name);
        wf_put_u32(b, m->workers);
        wf_put_u32(b, m->pp);
        wf_put_u32(b, m->dp);
        wf_put_u32(b, m->micro_batches);
        wf_put_u32(b, m->schedule);
        wf_put_u32(b, m->threads);
        wf_put_u32(b, m->nodes_min);
        wf_put_u32(b, m->nodes_max);
        wf_put_u32(b, m->max_recoveries);
        wf_put_u32(b, m->snapshot_every);
        wf_put_f64(b, m->settle_s);
        wf_put_f64(b, m->hb_timeout_s);
        wf_put_u32(b, m->link);
        break;
    case WF_M_JOB_END:
        wf_put_u64(b, (uint64_t)m->status);
        put_s(b, m->text);
        break;
    case WF_M_ACT:
    case WF_M_GRAD:
        wf_put_u64(b, (uint64_t)m->step);
        wf_put_u32(b, m->first);
        wf_put_u64(b, m->nbytes);
        wf_put_bytes(b, m->data, m->nbytes);
        break;
    }
}

/* Bytes of a counted block, checked against what is left. */
static const void *get_block(struct wf_rbuf *r, uint64_t *n) {
    *n = wf_get_u64(r);
    if (r->err || *n > r->len - r->pos) {
        r->err = 1;
        return NULL;
    }
    return wf_get_bytes(r, (size_t)*n);
}

static int decode(struct wf_msg *m, struct wf_rbuf *r) {
    switch (m->type) {
    case WF_M_CHALLENGE: {
        const void *p = wf_get_bytes(r, WF_NONCE);
        if (p) memcpy(m->nonce, p, WF_NONCE);
        break;
    }
    case WF_M_HELLO: {
        const void *p = wf_get_bytes(r, WF_MAC);
        if (p) memcpy(m->mac, p, WF_MAC);
        m->role = wf_get_u32(r);
        m->cores = wf_get_u32(r);
        m->mem = wf_get_u64(r);
        m->port = wf_get_u32(r);
        m->pid = wf_get_u32(r);
        m->name = wf_get_str(r, 256);
        m->job_id = wf_get_u64(r);
        m->id = wf_get_u64(r);
        m->link = wf_get_u32(r);
        break;
    }
    case WF_M_WELCOME: m->id = wf_get_u64(r); break;
    case WF_M_REFUSE:
    case WF_M_COMPILE_FAIL:
    case WF_M_FAIL:
    case WF_M_ABORT:
    case WF_M_JOB_EVENT:
    case WF_M_STATUS_REPLY: m->text = wf_get_str(r, WF_TEXT_MAX); break;
    case WF_M_ASSIGN: {
        m->job_id = wf_get_u64(r);
        uint32_t *u[] = {&m->worker,        &m->stage,    &m->n_stages, &m->replica,        &m->n_replicas,
                         &m->micro_batches, &m->schedule, &m->threads,  &m->trace,          &m->in_grad,
                         &m->out_grad,      &m->version,  &m->elastic,  &m->snapshot_every, &m->restore};
        for (size_t i = 0; i < WF_ARRAY_LEN(u); i++)
            *u[i] = wf_get_u32(r);
        char **s[] = {&m->job_text, &m->model_text, &m->in, &m->out, &m->x_name, &m->y_name, &m->len_name};
        for (size_t i = 0; i < WF_ARRAY_LEN(s); i++)
            *s[i] = wf_get_str(r, WF_TEXT_MAX);
        m->n_peers = wf_get_u32(r);
        /* each peer takes at least 8 bytes: refuse counts the payload cannot hold */
        if (r->err || m->n_peers > WF_MAX_WORKERS || (size_t)m->n_peers * 8 > r->len - r->pos) {
            r->err = 1;
            m->n_peers = 0;
            break;
        }
        m->peers = wf_calloc(m->n_peers + 1, sizeof *m->peers);
        if (!m->peers) return wf_error(WF_ERR_NOMEM, "out of memory decoding ASSIGN");
        for (uint32_t i = 0; i < m->n_peers && !r->err; i++) {
            m->peers[i].host = wf_get_str(r, 255);
            m->peers[i].port = wf_get_u32(r);
        }
        if (!r->err && (m->n_stages == 0 || m->stage >= m->n_stages || m->n_replicas == 0 ||
                        m->replica >= m->n_replicas || m->n_peers != m->n_stages * m->n_replicas ||
                        m->worker >= m->n_peers || m->micro_batches == 0 || m->schedule > 1))
            r->err = 1;
        break;
    }
    case WF_M_COMPILE_DONE:
        m->seconds = wf_get_f64(r);
        m->bytes = wf_get_u64(r);
        m->nodes = wf_get_u64(r);
        break;
    case WF_M_START:
    case WF_M_SHUTDOWN:
    case WF_M_STATUS: break;
    case WF_M_HEARTBEAT:
        m->step = (int64_t)wf_get_u64(r);
        m->text = wf_get_str(r, 1024);
        break;
    case WF_M_CLIP:
        m->step = (int64_t)wf_get_u64(r);
        m->value = wf_get_f64(r);
        break;
    case WF_M_CLIP_PART:
    case WF_M_STEP_LOSS: {
        m->step = (int64_t)wf_get_u64(r);
        m->first = wf_get_u32(r);
        m->n = wf_get_u32(r);
        size_t tail = m->type == WF_M_STEP_LOSS ? 4 : 0; /* the id count */
        if (r->err || (size_t)m->n * 8 + tail > r->len - r->pos || (!tail && (size_t)m->n * 8 != r->len - r->pos)) {
            r->err = 1;
            m->n = 0;
            break;
        }
        m->vals = wf_malloc(sizeof(double) * ((size_t)m->n + 1));
        if (!m->vals) return wf_error(WF_ERR_NOMEM, "out of memory decoding %s", wf_msg_name(m->type));
        for (uint32_t i = 0; i < m->n; i++)
            m->vals[i] = wf_get_f64(r);
        if (!tail) break;
        m->n_ids = wf_get_u32(r);
        if (r->err || (size_t)m->n_ids * 4 != r->len - r->pos) {
            r->err = 1;
            m->n_ids = 0;
            break;
        }
        m->ids = wf_malloc(sizeof(uint32_t) * ((size_t)m->n_ids + 1));
        if (!m->ids) return wf_error(WF_ERR_NOMEM, "out of memory decoding STEP_LOSS");
        for (uint32_t i = 0; i < m->n_ids; i++)
            m->ids[i] = wf_get_u32(r);
        break;
    }
    case WF_M_STOP:
        m->version = wf_get_u32(r);
        m->step = (int64_t)wf_get_u64(r);
        break;
    case WF_M_STOPPED:
        m->version = wf_get_u32(r);
        m->step = (int64_t)wf_get_u64(r);
        m->n_inv = wf_get_u32(r);
        if (r->err || (size_t)m->n_inv * 12 != r->len - r->pos) {
            r->err = 1;
            m->n_inv = 0;
            break;
        }
        m->inv = wf_malloc(sizeof(int64_t) * (2 * (size_t)m->n_inv + 1));
        if (!m->inv) return wf_error(WF_ERR_NOMEM, "out of memory decoding STOPPED");
        for (uint32_t i = 0; i < m->n_inv; i++) {
            m->inv[2 * i] = wf_get_u32(r);
            m->inv[2 * i + 1] = (int64_t)wf_get_u64(r);
        }
        break;
    case WF_M_FETCH:
        m->version = wf_get_u32(r);
        m->stage = wf_get_u32(r);
        m->step = (int64_t)wf_get_u64(r);
        break;
    case WF_M_SNAP:
        m->version = wf_get_u32(r);
        m->stage = wf_get_u32(r);
        m->link = wf_get_u32(r);
        m->step = (int64_t)wf_get_u64(r);
        m->data = get_block(r, &m->nbytes);
        break;
    case WF_M_EVAL:
        m->epoch = (int64_t)wf_get_u64(r);
        m->loss_sum = wf_get_f64(r);
        m->correct = wf_get_u64(r);
        m->count = wf_get_u64(r);
        break;
    case WF_M_STATE:
    case WF_M_RESTORE:
        m->step = (int64_t)wf_get_u64(r);
        m->epoch = (int64_t)wf_get_u64(r);
        m->epoch_step = (int64_t)wf_get_u64(r);
        m->data = get_block(r, &m->nbytes);
        break;
    case WF_M_DONE:
        m->step = (int64_t)wf_get_u64(r);
        m->compute_s = wf_get_f64(r);
        m->comm_s = wf_get_f64(r);
        m->idle_s = wf_get_f64(r);
        m->max_live = wf_get_u64(r);
        m->bytes = wf_get_u64(r);
        break;
    case WF_M_TRACE: m->data = get_block(r, &m->nbytes); break;
    case WF_M_SUBMIT:
        m->text = wf_get_str(r, 4096);
        m->name = wf_get_str(r, 4096);
        m->workers = wf_get_u32(r);
        m->pp = wf_get_u32(r);
        m->dp = wf_get_u32(r);
        m->micro_batches = wf_get_u32(r);
        m->schedule = wf_get_u32(r);
        m->threads = wf_get_u32(r);
        m->nodes_min = wf_get_u32(r);
        m->nodes_max = wf_get_u32(r);
        m->max_recoveries = wf_get_u32(r);
        m->snapshot_every = wf_get_u32(r);
        m->settle_s = wf_get_f64(r);
        m->hb_timeout_s = wf_get_f64(r);
        m->link = wf_get_u32(r);
        break;
    case WF_M_JOB_END:
        m->status = (int64_t)wf_get_u64(r);
        m->text = wf_get_str(r, WF_TEXT_MAX);
        break;
    case WF_M_ACT:
    case WF_M_GRAD:
        m->step = (int64_t)wf_get_u64(r);
        m->first = wf_get_u32(r);
        m->data = get_block(r, &m->nbytes);
        break;
    default: return wf_error(WF_ERR_PEER, "unknown message type %d", m->type);
    }
    return WF_OK;
}

uint32_t wf_msg_max_len(int type, const char **name) {
    *name = wf_msg_name(type);
    switch (type) { /* from the fields decode() reads and the limits it puts on them */
    case WF_M_CHALLENGE: return WF_NONCE;
    case WF_M_HELLO: return WF_MAC + 4 + 4 + 8 + 4 + 4 + (4 + 256) + 8 + 8 + 4;
    case WF_M_WELCOME: return 8;
    case WF_M_REFUSE:
    case WF_M_COMPILE_FAIL:
    case WF_M_FAIL:
    case WF_M_ABORT:
    case WF_M_JOB_EVENT:
    case WF_M_STATUS_REPLY: return 4 + WF_TEXT_MAX;
    case WF_M_JOB_END: return 8 + 4 + WF_TEXT_MAX;
    case WF_M_COMPILE_DONE: return 24;
    case WF_M_START:
    case WF_M_SHUTDOWN:
    case WF_M_STATUS: return 0;
    case WF_M_HEARTBEAT: return 8 + 4 + 1024;
    case WF_M_CLIP: return 16;
    case WF_M_STOP: return 12;
    case WF_M_FETCH: return 16;
    case WF_M_EVAL: return 32;
    case WF_M_DONE: return 48;
    case WF_M_SUBMIT: return 2 * (4 + 4096) + 10 * 4 + 2 * 8 + 4;
    case WF_M_ASSIGN: /* model texts, and per-sample or per-parameter arrays: the connection's own limit */
    case WF_M_STEP_LOSS:
    case WF_M_CLIP_PART:
    case WF_M_STOPPED:
    case WF_M_SNAP:
    case WF_M_STATE:
    case WF_M_RESTORE:
    case WF_M_TRACE:
    case WF_M_ACT:
    case WF_M_GRAD: return UINT32_MAX;
    default: *name = "unknown message"; return 0;
    }
}

int wf_msg_decode(struct wf_msg *m, int type, const void *p, size_t len) {
    memset(m, 0, sizeof *m);
    m->type = type;
    struct wf_rbuf r;
    wf_rbuf_init(&r, p, len);
    int rc = decode(m, &r);
    if (rc == WF_OK && (r.err || r.pos != r.len))
        rc = wf_error(WF_ERR_PEER, "malformed %s message (%zu bytes, %s at byte %zu)", wf_msg_name(type), len,
                      r.err ? "truncated or bad field" : "bytes left over", r.pos);
    if (rc < 0) wf_msg_free(m);
    return rc;
}

void wf_msg_free(struct wf_msg *m) {
    if (!m) return;
    char *s[] = {m->text, m->name, m->job_text, m->model_text, m->in, m->out, m->x_name, m->y_name, m->len_name};
    for (size_t i = 0; i < WF_ARRAY_LEN(s); i++)
        wf_free(s[i]);
    for (uint32_t i = 0; m->peers && i < m->n_peers; i++)
        wf_free(m->peers[i].host);
    wf_free(m->peers);
    wf_free(m->vals);
    wf_free(m->ids);
    wf_free(m->inv);
    int type = m->type;
    memset(m, 0, sizeof *m);
    m->type = type;
}

int wf_msg_send(struct wf_conn *c, const struct wf_msg *m, double timeout_s) {
    struct wf_wbuf b;
    wf_wbuf_init(&b);
    wf_msg_encode(&b, m);
    int rc = b.oom ? wf_error(WF_ERR_NOMEM, "out of memory encoding %s", wf_msg_name(m->type))
                   : wf_send(c, m->type, b.p, b.len, timeout_s);
    wf_wbuf_free(&b);
    return rc;
}

int wf_msg_recv(struct wf_conn *c, struct wf_msg *m, double timeout_s) {
    int type;
    const void *p;
    size_t n;
    memset(m, 0, sizeof *m);
    int rc = wf_recv(c, &type, &p, &n, timeout_s);
    if (rc < 0) return rc;
    rc = wf_msg_decode(m, type, p, n);
    if (rc < 0) return wf_error_prefix(rc, "from %s", c->name);
    return WF_OK;
}

static void le_put(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le_get(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void wf_msg_block_hdr(uint8_t out[WF_BLOCK_HDR], int64_t step, uint32_t first, uint64_t nbytes) {
    le_put(out, (uint64_t)step, 8);
    le_put(out + 8, first, 4);
    le_put(out + 12, nbytes, 8);
}

int wf_msg_recv_block(struct wf_conn *c, struct wf_msg *m, void *dst, size_t n, double timeout_s) {
    uint8_t head[WF_BLOCK_HDR];
    const void *p;
    size_t len;
    int type;
    memset(m, 0, sizeof *m);
    int rc = wf_recv_into(c, &type, head, sizeof head, dst, n, &p, &len, timeout_s);
    if (rc < 0) return rc;
    if (rc == 1) { /* some other frame: decoded as usual, for the caller to name */
        rc = wf_msg_decode(m, type, p, len);
        return rc < 0 ? wf_error_prefix(rc, "from %s", c->name) : WF_OK;
    }
    m->type = type;
    if (type != WF_M_ACT && type != WF_M_GRAD) return WF_OK; /* the caller names it */
    m->step = (int64_t)le_get(head, 8);
    m->first = (uint32_t)le_get(head + 8, 4);
    m->nbytes = le_get(head + 12, 8);
    if (m->nbytes != n)
        return wf_error(WF_ERR_PEER, "from %s: %s block of %llu bytes in a frame of %zu", c->name, wf_msg_name(type),
                        (unsigned long long)m->nbytes, n);
    m->data = dst;
    return WF_OK;
}
