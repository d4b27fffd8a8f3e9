/* The memory planner: for each KV type pair, the largest context whose
 * session fits a memory budget next to the weights, computed from a GGUF
 * header alone (so the browser can choose before downloading weights). */
#include <stdio.h>
#include <string.h>

#include "base/threadpool.h"
#include "generate/session.h"
#include "kv/kv_types.h"
#include "model/forward.h"
#include "model/model.h"

/* The smallest request worth a round trip when the header is incomplete:
 * small models' headers fit in one, and larger ones double from there. */
#define PLAN_MIN_REQUEST ((uint64_t)1 << 20)

lb_plan_params lb_plan_default_params(void)
{
    lb_plan_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* The heap of a loaded model's own structures.  Measured with mallinfo2 on
 * the shared models, the tokenizer's tables take 2-3 times the bytes of the
 * header (which is mostly the vocabulary and merges); the layer table is
 * small.  This errs high: techdocs-28M 252 KB measured. */
static uint64_t model_struct_bytes(uint64_t header_bytes, const lb_hparams *hp)
{
    return 3 * header_bytes + (uint64_t)hp->n_layer * sizeof(lb_layer) + sizeof(lb_model) + (64u << 10);
}

/* A session's own small allocations: its struct, the thread pool and one row
 * of logits (lb_generate keeps one). */
static uint64_t session_bytes(const lb_hparams *hp, int n_threads)
{
    return sizeof(struct lb_session) + 4096 + 256 * (uint64_t)n_threads + 4 * (uint64_t)hp->n_vocab;
}

static int batch_for(const lb_plan_params *p, int n_ctx)
{
    int nb = p->n_batch ? p->n_batch : 512;
    return nb < n_ctx ? nb : n_ctx;
}

/* Bytes that grow with the context: cache + forward scratch; 0 if the pair
 * cannot be built. */
static uint64_t ctx_bytes(const lb_hparams *hp, const lb_plan_params *p, int n_threads, lb_kv_type k, lb_kv_type v,
                          int n_ctx, uint64_t *kv_out, uint64_t *fwd_out)
{
    uint64_t kv = lb_kv_estimate_bytes(hp, n_ctx, k, v, n_threads);
    if (!kv)
        return 0;
    uint64_t fwd = lb_forward_bytes(hp, batch_for(p, n_ctx));
    if (kv_out)
        *kv_out = kv;
    if (fwd_out)
        *fwd_out = fwd;
    return kv + fwd;
}

/* Precision rank of a pair (higher is more precise): the weaker side first,
 * then the keys (attention scores are the more sensitive), then the values. */
static int rank(lb_kv_type k, lb_kv_type v)
{
    int bk = lb_kv_type_bits(k), bv = lb_kv_type_bits(v);
    return (bk < bv ? bk : bv) * 10000 + bk * 100 + bv;
}

static void plan(const lb_hparams *hp, uint64_t file_bytes, uint64_t weight_bytes, uint64_t header_bytes,
                 size_t budget, const lb_plan_params *p, lb_plan_result *r)
{
    int n_threads = p->n_threads ? p->n_threads : lb_cpu_count();
    if (n_threads < 1)
        n_threads = 1;
    r->file_bytes = file_bytes;
    r->weight_bytes = weight_bytes;
    r->model_bytes = model_struct_bytes(header_bytes, hp);
    r->overhead_bytes = LB_PLAN_OVERHEAD + session_bytes(hp, n_threads);
    r->fixed_bytes = r->file_bytes + r->model_bytes + r->overhead_bytes;
    r->n_ctx_train = hp->n_ctx_train;
    r->n_threads = n_threads;
    r->n_batch = p->n_batch;
    r->max_ctx = p->max_ctx && p->max_ctx < LB_PLAN_MAX_CTX ? p->max_ctx : LB_PLAN_MAX_CTX;
    r->min_ctx = p->min_ctx ? p->min_ctx : hp->n_ctx_train;
    if (r->min_ctx > r->max_ctx)
        r->min_ctx = r->max_ctx;
    uint64_t room = budget > r->fixed_bytes ? budget - r->fixed_bytes : 0;

    r->recommended = -1;
    int best_fit = -1, best_any = -1;
    for (int k = 0; k < LB_KV_TYPE_COUNT; k++) {
        for (int v = 0; v < LB_KV_TYPE_COUNT; v++) {
            lb_plan_entry *e = &r->pairs[k * LB_KV_TYPE_COUNT + v];
            memset(e, 0, sizeof *e);
            e->kv_k = (lb_kv_type)k;
            e->kv_v = (lb_kv_type)v;
            e->supported = ctx_bytes(hp, p, n_threads, e->kv_k, e->kv_v, 1, NULL, NULL) != 0;
            if (!e->supported)
                continue;
            e->bytes_per_token = lb_kv_bytes_per_token(hp, e->kv_k, e->kv_v);
            /* The cost grows with n_ctx (group by group for the cache, token
             * by token for the batch), so the largest fit is a bisection. */
            int lo = 0, hi = r->max_ctx;
            /* Every token costs at least bytes_per_token, which also keeps
             * the probes' sizes below the budget (size_t is 32-bit in wasm32). */
            if (e->bytes_per_token && room / e->bytes_per_token < (uint64_t)hi)
                hi = (int)(room / e->bytes_per_token);
            while (lo < hi) {
                int mid = lo + (hi - lo + 1) / 2;
                if (ctx_bytes(hp, p, n_threads, e->kv_k, e->kv_v, mid, NULL, NULL) <= room)
                    lo = mid;
                else
                    hi = mid - 1;
            }
            e->n_ctx = lo;
            if (lo > 0) {
                ctx_bytes(hp, p, n_threads, e->kv_k, e->kv_v, lo, &e->kv_bytes, &e->scratch_bytes);
                e->total_bytes = r->fixed_bytes + e->kv_bytes + e->scratch_bytes;
            }
            int idx = k * LB_KV_TYPE_COUNT + v;
            if (lo >= r->min_ctx && (best_fit < 0 || rank(e->kv_k, e->kv_v) > rank(r->pairs[best_fit].kv_k,
                                                                                    r->pairs[best_fit].kv_v)))
                best_fit = idx;
            if (lo > 0 && (best_any < 0 || lo > r->pairs[best_any].n_ctx))
                best_any = idx;
        }
    }
    r->recommended = best_fit >= 0 ? best_fit : best_any;
}

static void set_error(lb_plan_result *out, const char *msg)
{
    size_t n = strlen(msg);
    if (n >= sizeof out->error)
        n = sizeof out->error - 1;
    memcpy(out->error, msg, n);
    out->error[n] = '\0';
}

static lb_status check_params(const lb_plan_params *p, lb_plan_result *out)
{
    if (p->min_ctx < 0 || p->max_ctx < 0 || p->n_threads < 0 || p->n_batch < 0) {
        snprintf(out->error, sizeof out->error, "plan params must not be negative (min_ctx %d, max_ctx %d, threads %d, batch %d)",
                 p->min_ctx, p->max_ctx, p->n_threads, p->n_batch);
        return LB_ERR_INVALID_ARG;
    }
    return LB_OK;
}

lb_status lb_plan_from_gguf(const void *header_bytes, size_t len, size_t memory_budget, const lb_plan_params *p,
                            lb_plan_result *out)
{
    if (!out)
        return LB_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    out->recommended = -1;
    lb_plan_params def = lb_plan_default_params();
    if (!p)
        p = &def;
    if (!header_bytes && len) {
        snprintf(out->error, sizeof out->error, "lb_plan_from_gguf: header_bytes is NULL");
        return LB_ERR_INVALID_ARG;
    }
    lb_status st = check_params(p, out);
    if (st)
        return st;
    lb_err err = {0};
    lb_gguf *g = NULL;
    uint64_t need = 0;
    st = lb_gguf_open_header(header_bytes, len, &g, &need, &err);
    if (st == LB_ERR_RANGE) {
        uint64_t twice = (uint64_t)len > UINT64_MAX / 2 ? UINT64_MAX : 2 * (uint64_t)len;
        out->bytes_needed = need > twice ? need : twice;
        if (out->bytes_needed < PLAN_MIN_REQUEST)
            out->bytes_needed = PLAN_MIN_REQUEST;
    }
    if (st) {
        set_error(out, err.msg);
        return st;
    }
    lb_arch arch;
    lb_hparams hp;
    st = lb__hparams_read(g, &arch, &hp, &err);
    const lb_gguf_tensor *emb = st ? NULL : lb_gguf_find_tensor(g, "token_embd.weight");
    if (!st && !emb)
        st = lb__errf(&err, LB_ERR_NOT_FOUND, "tensor 'token_embd.weight' is missing");
    if (!st && (emb->ne[1] < 1 || emb->ne[1] > (1 << 24)))
        st = lb__errf(&err, LB_ERR_FORMAT, "token_embd.weight has %lld rows", (long long)emb->ne[1]);
    if (st) {
        set_error(out, err.msg);
        lb_gguf_free(g);
        return st;
    }
    hp.n_vocab = (int)emb->ne[1];
    uint64_t wbytes = 0;
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++)
        wbytes += lb_gguf_tensor_at(g, i)->nbytes;
    plan(&hp, lb_gguf_implied_size(g), wbytes, lb_gguf_data_offset(g), memory_budget, p, out);
    lb_gguf_free(g);
    return LB_OK;
}

lb_status lb_plan_model(const lb_model *m, size_t memory_budget, const lb_plan_params *p, lb_plan_result *out)
{
    if (!out)
        return LB_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    out->recommended = -1;
    if (!m) {
        snprintf(out->error, sizeof out->error, "lb_plan_model: model is NULL");
        return LB_ERR_INVALID_ARG;
    }
    lb_plan_params def = lb_plan_default_params();
    if (!p)
        p = &def;
    lb_status st = check_params(p, out);
    if (st)
        return st;
    plan(&m->hp, lb_gguf_file_size(m->gguf), m->weight_bytes, lb_gguf_data_offset(m->gguf), memory_budget, p, out);
    return LB_OK;
}
