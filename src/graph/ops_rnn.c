/*
 * graph layer, op table: recurrent cells, one time step each — rnn_tanh,
 * gru, lstm — shape inference, forward, backward, scratch and cost, on the
 * kernels of src/tensor/rnn.c. docs/recurrent.md has the formulas.
 *
 *     h1 = rnn_tanh(x, h0, hidden=H)    x f32[B, I], h0 f32[B, H]  -> f32[B, H]
 *     h1 = gru(x, h0, hidden=H)         x f32[B, I], h0 f32[B, H]  -> f32[B, H]
 *     s1 = lstm(x, s0, hidden=H)        x f32[B, I], s0 f32[B, 2H] -> f32[B, 2H], each row [h | c]
 *
 * Parameters as PyTorch names them: LAYER.weight_ih [G*H, I], .weight_hh
 * [G*H, H], .bias_ih [G*H], .bias_hh [G*H] (G = 1, 3, 4), all uniform in
 * ±1/sqrt(H) as PyTorch initializes them. The cells honour wf_run.rows: only
 * the live prefix of the batch is read and written, and the parameter
 * gradients sum over those rows.
 */
#include "weft/core.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"

#include "ops_int.h"

#define F32 WF_DT(WF_F32)

enum cell { CELL_RNN_TANH, CELL_GRU, CELL_LSTM };
static const int cell_gates[] = {1, 3, 4};

/* input order of a cell's node: the two arguments, then the parameters in creation order */
enum { IN_X, IN_S, IN_W_IH, IN_W_HH, IN_B_IH, IN_B_HH };

static int cell_infer(struct wf_infer *c, int cell) {
    const struct wf_value *x = &c->in[0], *s = &c->in[1];
    struct wf_node *n = &c->g->n[c->node];
    char s1[96], s2[96];
    int64_t H = n->ai[0], G = cell_gates[cell], SW = cell == CELL_LSTM ? 2 * H : H; /* |H| < 2^31: no overflow */
    if (H <= 0) return wf_infer_err(c, "hidden must be positive, got %lld", (long long)H);
    int64_t B = x->shape[0], I = x->shape[1];
    if (s->shape[0] != B || s->shape[1] != SW)
        return wf_infer_err(c, "the state must be f32[%lld, %lld]%s for input %s, got %s", (long long)B, (long long)SW,
                            cell == CELL_LSTM ? " ([h | c] per row)" : "", wf_infer_shape(c, 0, s1),
                            wf_infer_shape(c, 1, s2));
    int64_t wih[2] = {G * H, I}, whh[2] = {G * H, H}, gh = G * H, sh[2] = {B, SW};
    int rc;
    /* PyTorch's init for all four: uniform(-1/sqrt(H), 1/sqrt(H)), i.e. fan-in uniform with fan-in H */
    if ((rc = wf_infer_param(c, "weight_ih", 2, wih, WF_INIT_FANIN_UNIFORM, (double)H)) < 0) return rc;
    if ((rc = wf_infer_param(c, "weight_hh", 2, whh, WF_INIT_FANIN_UNIFORM, (double)H)) < 0) return rc;
    if ((rc = wf_infer_param(c, "bias_ih", 1, &gh, WF_INIT_FANIN_UNIFORM, (double)H)) < 0) return rc;
    if ((rc = wf_infer_param(c, "bias_hh", 1, &gh, WF_INIT_FANIN_UNIFORM, (double)H)) < 0) return rc;
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, 2, sh)) < 0) return rc;
    /* what the backward reads besides the arguments and the weights: the activated gates (gru, lstm), and
     * the gru's W_hn h + b_hn; the rnn_tanh reads its output, the lstm its output's c */
    if (cell != CELL_RNN_TANH) {
        int64_t gs[2] = {B, G * H};
        if ((rc = wf_infer_out(c, "gates", WF_V_AUX, WF_F32, 2, gs)) < 0) return rc;
    }
    if (cell == CELL_GRU) {
        int64_t hs[2] = {B, H};
        if ((rc = wf_infer_out(c, "hn", WF_V_AUX, WF_F32, 2, hs)) < 0) return rc;
    }
    /* two GEMMs, and about 8 operations a gate unit for biases, nonlinearities and the state update */
    c->g->n[c->node].flops = 2.0 * (double)B * (double)(G * H) * (double)(I + H) + 8.0 * (double)B * (double)(G * H);
    return WF_OK;
}

static int rnn_tanh_infer(struct wf_infer *c) { return cell_infer(c, CELL_RNN_TANH); }
static int gru_infer(struct wf_infer *c) { return cell_infer(c, CELL_GRU); }
static int lstm_infer(struct wf_infer *c) { return cell_infer(c, CELL_LSTM); }

/* The sizes of a run: the rows it processes (wf_run.rows, the live prefix, or all of them), I and H. */
static int cell_dims(const struct wf_run *r, int *B, int *I, int *H) {
    const struct wf_value *x = XV(r, IN_X);
    int all = (int)x->shape[0];
    if (r->rows < 0 || r->rows > all)
        return wf_error(WF_ERR_INTERNAL, "%s:%d:%d: layer '%s': asked to run %d rows of a batch of %d", r->g->path,
                        r->n->line, r->n->col, r->n->name, r->rows, all);
    *B = r->rows > 0 ? r->rows : all;
    *I = (int)x->shape[1];
    *H = (int)r->n->ai[0];
    return WF_OK;
}

static size_t cell_work(const struct wf_graph *g, const struct wf_node *f, int cell) {
    int B = (int)g->v[f->in[IN_X]].shape[0], H = (int)f->ai[0];
    int C = (int)(g->v[f->in[IN_X]].numel / g->v[f->in[IN_X]].shape[0]);
    long w = cell == CELL_RNN_TANH ? wf_rnn_tanh_workspace(B, C, H)
             : cell == CELL_GRU    ? wf_gru_workspace(B, C, H)
                                   : wf_lstm_workspace(B, C, H);
    return (size_t)w;
}

static size_t rnn_tanh_work(const struct wf_graph *g, const struct wf_node *f) {
    return cell_work(g, f, CELL_RNN_TANH);
}
static size_t gru_work(const struct wf_graph *g, const struct wf_node *f) { return cell_work(g, f, CELL_GRU); }
static size_t lstm_work(const struct wf_graph *g, const struct wf_node *f) { return cell_work(g, f, CELL_LSTM); }

/* ---- rnn_tanh ---- */

static int rnn_tanh_fwd(const struct wf_run *r) {
    int B = 0, I = 0, H = 0, rc = cell_dims(r, &B, &I, &H);
    if (rc < 0) return rc;
    wf_rnn_tanh_forward(OUT(r, 0), IN(r, IN_X), IN(r, IN_S), IN(r, IN_W_IH), IN(r, IN_W_HH), IN(r, IN_B_IH),
                        IN(r, IN_B_HH), B, I, H, r->work);
    return WF_OK;
}

static int rnn_tanh_bwd(const struct wf_run *r) {
    int B = 0, I = 0, H = 0, rc = cell_dims(r, &B, &I, &H);
    if (rc < 0) return rc;
    wf_rnn_tanh_backward(DIN(r, IN_X), DIN(r, IN_S), DIN(r, IN_W_IH), DIN(r, IN_W_HH), DIN(r, IN_B_IH), DIN(r, IN_B_HH),
                         DOUT(r), IN(r, IN_X), IN(r, IN_S), IN(r, IN_W_IH), IN(r, IN_W_HH), OUT(r, 0), B, I, H,
                         r->work);
    return WF_OK;
}

/* ---- gru ---- */

static int gru_fwd(const struct wf_run *r) {
    int B = 0, I = 0, H = 0, rc = cell_dims(r, &B, &I, &H);
    if (rc < 0) return rc;
    wf_gru_forward(OUT(r, 0), OUT(r, 1), OUT(r, 2), IN(r, IN_X), IN(r, IN_S), IN(r, IN_W_IH), IN(r, IN_W_HH),
                   IN(r, IN_B_IH), IN(r, IN_B_HH), B, I, H, r->work);
    return WF_OK;
}

static int gru_bwd(const struct wf_run *r) {
    int B = 0, I = 0, H = 0, rc = cell_dims(r, &B, &I, &H);
    if (rc < 0) return rc;
    wf_gru_backward(DIN(r, IN_X), DIN(r, IN_S), DIN(r, IN_W_IH), DIN(r, IN_W_HH), DIN(r, IN_B_IH), DIN(r, IN_B_HH),
                    DOUT(r), IN(r, IN_X), IN(r, IN_S), IN(r, IN_W_IH), IN(r, IN_W_HH), OUT(r, 1), OUT(r, 2), B, I, H,
                    r->work);
    return WF_OK;
}

/* ---- lstm ---- */

static int lstm_fwd(const struct wf_run *r) {
    int B = 0, I = 0, H = 0, rc = cell_dims(r, &B, &I, &H);
    if (rc < 0) return rc;
    wf_lstm_forward(OUT(r, 0), OUT(r, 1), IN(r, IN_X), IN(r, IN_S), IN(r, IN_W_IH), IN(r, IN_W_HH), IN(r, IN_B_IH),
                    IN(r, IN_B_HH), B, I, H, r->work);
    return WF_OK;
}

static int lstm_bwd(const struct wf_run *r) {
    int B = 0, I = 0, H = 0, rc = cell_dims(r, &B, &I, &H);
    if (rc < 0) return rc;
    wf_lstm_backward(DIN(r, IN_X), DIN(r, IN_S), DIN(r, IN_W_IH), DIN(r, IN_W_HH), DIN(r, IN_B_IH), DIN(r, IN_B_HH),
                     DOUT(r), IN(r, IN_X), IN(r, IN_S), IN(r, IN_W_IH), IN(r, IN_W_HH), OUT(r, 1), OUT(r, 0), B, I, H,
                     r->work);
    return WF_OK;
}

/* The backward reads x, the state and both weights (bwd_in 0xF, never the biases), and of the outputs:
 * rnn_tanh its output; gru the gates and hn; lstm its output (c1) and the gates. */
#define CELL(nm, inf, fw, bw, wk, bo)                                                                                  \
    {                                                                                                                  \
        .name = nm, .min_in = 2, .max_in = 2, .arg = {{F32, 2, 2}, {F32, 2, 2}}, .n_attr = 1,                          \
        .attr = {{"hidden", WF_AT_INT, 1, 0}}, .flags = WF_OPF_GEMM | WF_OPF_ROWWISE, .bwd_in = 0xF, .bwd_out = bo,    \
        .infer = inf, .forward = fw, .backward = bw, .work = wk                                                        \
    }
const struct wf_op_def wf_opdef_rnn_tanh =
    CELL("rnn_tanh", rnn_tanh_infer, rnn_tanh_fwd, rnn_tanh_bwd, rnn_tanh_work, 1);
const struct wf_op_def wf_opdef_gru = CELL("gru", gru_infer, gru_fwd, gru_bwd, gru_work, 6);
const struct wf_op_def wf_opdef_lstm = CELL("lstm", lstm_infer, lstm_fwd, lstm_bwd, lstm_work, 3);
