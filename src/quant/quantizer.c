/* The file quantizer: GGUF in, type policy per tensor, threaded quality
 * quantization, GGUF out, and a per-tensor report.  The mixes reproduce
 * which tensors llama.cpp's llama-quantize gives more bits (its
 * src/llama-quant.cpp), so files compare like for like. */
#include "quant/quantizer.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/threadpool.h"
#include "format/gguf.h"
#include "quant/ldlq.h"
#include "quant/quant.h"
#include "quant/quantize.h"

enum mix_kind { MIX_FLOAT, MIX_Q32, MIX_SINGLE, MIX_Q2_K, MIX_Q3_K_S, MIX_Q3_K_M, MIX_Q4_K_S, MIX_Q4_K_M,
                MIX_Q5_K_S, MIX_Q5_K_M, MIX_Q6_K };

typedef struct mix {
    const char *name;
    uint32_t base;       /* type of the ordinary 2-D weights */
    uint32_t file_type;  /* general.file_type, llama.cpp's llama_ftype numbering */
    enum mix_kind kind;
} mix;

static const mix MIXES[] = {
    {"f32", LB_TYPE_F32, 0, MIX_FLOAT},      {"f16", LB_TYPE_F16, 1, MIX_FLOAT},
    {"bf16", LB_TYPE_BF16, 32, MIX_FLOAT},   {"q4_0", LB_TYPE_Q4_0, 2, MIX_Q32},
    {"q4_1", LB_TYPE_Q4_1, 3, MIX_Q32},      {"q8_0", LB_TYPE_Q8_0, 7, MIX_Q32},
    {"q5_0", LB_TYPE_Q5_0, 8, MIX_Q32},      {"q5_1", LB_TYPE_Q5_1, 9, MIX_Q32},
    {"q2_K", LB_TYPE_Q2_K, 10, MIX_Q2_K},    {"q3_K_S", LB_TYPE_Q3_K, 11, MIX_Q3_K_S},
    {"q3_K_M", LB_TYPE_Q3_K, 12, MIX_Q3_K_M}, {"q4_K_S", LB_TYPE_Q4_K, 14, MIX_Q4_K_S},
    {"q4_K_M", LB_TYPE_Q4_K, 15, MIX_Q4_K_M}, {"q5_K_S", LB_TYPE_Q5_K, 16, MIX_Q5_K_S},
    {"q5_K_M", LB_TYPE_Q5_K, 17, MIX_Q5_K_M}, {"q6_K", LB_TYPE_Q6_K, 18, MIX_Q6_K},
    /* single-type K files; llama.cpp has no name for them, its "mostly" ids fit best */
    {"q3_K", LB_TYPE_Q3_K, 11, MIX_SINGLE},  {"q4_K", LB_TYPE_Q4_K, 14, MIX_SINGLE},
    {"q5_K", LB_TYPE_Q5_K, 16, MIX_SINGLE},
    /* lowbit's own types (quant/lbq.h): output Q6_K as in the other mixes;
     * file types 100+ are lowbit's, unknown to llama.cpp */
    {"lbq2", LB_TYPE_LBQ2, 100, MIX_Q32},    {"lbq3", LB_TYPE_LBQ3, 101, MIX_Q32},
    {"lbq4", LB_TYPE_LBQ4, 102, MIX_Q32},    {"lbqv", LB_TYPE_LBQV, 103, MIX_Q32},
};
#define N_MIXES ((int)(sizeof MIXES / sizeof MIXES[0]))

const char *lb_quantize_mix_names(void)
{
    return "q4_K_M q4_K_S q3_K_M q3_K_S q2_K q5_K_M q5_K_S q6_K q8_0 q4_0 q4_1 q5_0 q5_1 "
           "q3_K q4_K q5_K lbq2 lbq3 lbq4 lbqv f16 bf16 f32";
}

lb_quantize_params lb_quantize_default_params(void)
{
    lb_quantize_params p = {"q4_K_M", false, 0, NULL, NULL, NULL, NULL, NULL, 0};
    return p;
}

static const mix *find_mix(const char *name)
{
    for (int i = 0; i < N_MIXES; i++)
        if (!strcmp(MIXES[i].name, name))
            return &MIXES[i];
    for (int i = 0; i < N_MIXES; i++) /* then case-insensitively: "Q4_K_M" */
        if (!strcasecmp(MIXES[i].name, name))
            return &MIXES[i];
    return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static bool is_quantized(uint32_t t) { return t != LB_TYPE_F32 && t != LB_TYPE_F16 && t != LB_TYPE_BF16; }

/* llama.cpp's "use more bits" layers: the first and last eighth, and every
 * third layer in between. */
static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The type the policy wants for a quantizable 2-D weight. */
static uint32_t policy_type(const mix *m, bool pure, const char *name, int layer, int n_layer, int n_gqa)
{
    uint32_t t = m->base;
    if (pure || m->kind == MIX_FLOAT || m->kind == MIX_SINGLE)
        return t;
    if (!strcmp(name, "output.weight"))
        return t == LB_TYPE_Q8_0 ? t : LB_TYPE_Q6_K;
    if (!strcmp(name, "token_embd.weight"))
        return t;
    bool attn_v = strstr(name, "attn_v.weight") != NULL, ffn_down = strstr(name, "ffn_down") != NULL;
    bool attn_out = strstr(name, "attn_output.weight") != NULL, qkv = strstr(name, "attn_qkv.weight") != NULL;
    int i = layer >= 0 ? layer : 0;
    switch (m->kind) {
    case MIX_Q2_K:
        if (attn_v)
            return n_gqa >= 4 ? LB_TYPE_Q4_K : LB_TYPE_Q3_K;
        if (ffn_down || attn_out)
            return LB_TYPE_Q3_K;
        break;
    case MIX_Q3_K_M:
        if (attn_v)
            return i < 2 ? LB_TYPE_Q5_K : LB_TYPE_Q4_K;
        if (ffn_down)
            return i < n_layer / 16 ? LB_TYPE_Q5_K : LB_TYPE_Q4_K;
        if (attn_out || qkv)
            return LB_TYPE_Q4_K;
        break;
    case MIX_Q4_K_S:
        if (attn_v && i < 4)
            return LB_TYPE_Q5_K;
        if (ffn_down && i < n_layer / 8)
            return LB_TYPE_Q5_K;
        break;
    case MIX_Q4_K_M:
        if ((attn_v || ffn_down) && more_bits(i, n_layer))
            return LB_TYPE_Q6_K;
        if (qkv)
            return LB_TYPE_Q5_K;
        break;
    case MIX_Q5_K_M:
        if ((attn_v || ffn_down) && more_bits(i, n_layer))
            return LB_TYPE_Q6_K;
        if (qkv)
            return LB_TYPE_Q6_K;
        break;
    default:
        break;
    }
    return t;
}

/* A type whose block divides the row length, as close in size as possible. */
static uint32_t fallback_type(uint32_t t, int64_t ne0, bool output)
{
    if (output && t != LB_TYPE_F16 && t != LB_TYPE_F32 && t != LB_TYPE_BF16)
        t = LB_TYPE_Q8_0;
    switch (t) {
    case LB_TYPE_Q2_K: case LB_TYPE_Q3_K: case LB_TYPE_LBQ2: case LB_TYPE_LBQ3: case LB_TYPE_LBQ4: case LB_TYPE_LBQV: t = LB_TYPE_Q4_0; break;
    case LB_TYPE_Q4_K: t = LB_TYPE_Q5_0; break;
    case LB_TYPE_Q5_K: t = LB_TYPE_Q5_1; break;
    case LB_TYPE_Q6_K: t = LB_TYPE_Q8_0; break;
    default: break;
    }
    if (ne0 % lb_type_layout_of(t)->blck != 0)
        t = LB_TYPE_F16;
    return t;
}

/* ---- the threaded per-tensor job */

typedef struct qjob {
    const uint8_t *src;           /* [nrows][src_row] bytes of the source tensor */
    size_t src_row, dst_row;
    int64_t nrows, ne0;
    uint32_t type;
    lb_dequant_fn src_dequant, dst_dequant;
    const float *importance;      /* [ne0] per-column weights, or NULL */
    uint8_t *dst;                 /* [nrows][dst_row] */
    float *scratch;               /* [n_threads][2 * ne0] */
    double *err, *sum2;           /* [n_threads] */
    bool done;                    /* dst already holds the rows: only measure the error */
} qjob;

static void qjob_run(void *ctx, int ith, int nth)
{
    qjob *j = ctx;
    int64_t r0, r1;
    lb_split(j->nrows, ith, nth, &r0, &r1);
    float *x = j->scratch + (size_t)ith * 2 * (size_t)j->ne0, *y = x + j->ne0;
    double e = 0, s2 = 0;
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *d = j->dst + (size_t)r * j->dst_row;
        j->src_dequant(j->src + (size_t)r * j->src_row, x, j->ne0);
        if (!j->done)
            lb_quantize_row(j->type, x, d, j->ne0, j->importance);
        j->dst_dequant(d, y, j->ne0);
        for (int64_t i = 0; i < j->ne0; i++) {
            double dx = (double)x[i] - y[i];
            e += dx * dx;
            s2 += (double)x[i] * x[i];
        }
    }
    j->err[ith] = e;
    j->sum2[ith] = s2;
}

void lb_quantize_report_free(lb_quantize_report *rep)
{
    if (!rep)
        return;
    free(rep->tensors);
    memset(rep, 0, sizeof *rep);
}

static int64_t layer_of(const char *name)
{
    int v = -1;
    if (sscanf(name, "blk.%d.", &v) != 1)
        return -1;
    return v;
}

static int64_t get_int_or(const lb_gguf *g, const char *arch, const char *suffix, int64_t dflt)
{
    char key[128];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return lb_gguf_get_int(g, key, &v, NULL) == LB_OK ? v : dflt;
}

lb_status lb_quantize_file(const char *in_path, const char *out_path, const lb_quantize_params *p,
                           lb_quantize_report *rep, lb_err *err)
{
    lb_quantize_params def = lb_quantize_default_params();
    if (!p)
        p = &def;
    if (rep)
        memset(rep, 0, sizeof *rep);
    const mix *m = find_mix(p->type ? p->type : "");
    if (!m)
        return lb__errf(err, LB_ERR_INVALID_ARG, "unknown quantization type '%s' (known: %s)", p->type ? p->type : "",
                        lb_quantize_mix_names());
    double t0 = lb_time_ms();
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_file(in_path, true, &g, err);
    if (st) {
        lb__err_prefix(err, "%s: ", in_path);
        return st;
    }
    int64_t nt = lb_gguf_n_tensors(g);
    lb_quantize_tensor *tr = calloc((size_t)(nt > 0 ? nt : 1), sizeof *tr);
    uint8_t **bufs = calloc((size_t)(nt > 0 ? nt : 1), sizeof *bufs); /* [nt] converted data, owned */
    lb_gguf_writer *w = lb_gguf_writer_new();
    lb_pool *pool = NULL;
    float *scratch = NULL;
    double *acc = NULL;
    char tmp_path[4096];
    bool wrote_tmp = false;
    if (!tr || !bufs || !w) {
        st = lb__errf(err, LB_ERR_NOMEM, "out of memory");
        goto out;
    }

    /* hyper-parameters the mixes need */
    char arch[64] = "llama";
    lb_gguf_str as;
    if (lb_gguf_get_str(g, "general.architecture", &as, NULL) == LB_OK && as.len < sizeof arch) {
        memcpy(arch, as.ptr, as.len);
        arch[as.len] = 0;
    }
    int64_t n_layer = get_int_or(g, arch, "block_count", 0);
    int64_t n_head = get_int_or(g, arch, "attention.head_count", 1);
    int64_t n_head_kv = get_int_or(g, arch, "attention.head_count_kv", n_head);
    int n_gqa = n_head_kv > 0 ? (int)(n_head / n_head_kv) : 1;
    uint64_t n_params = 0, total_q = 0, done_q = 0;
    int64_t max_ne0 = 1;
    for (int64_t i = 0; i < nt; i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        if (n_layer <= layer_of(name))
            n_layer = layer_of(name) + 1;
        int64_t ne = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        n_params += (uint64_t)ne;
        total_q += (uint64_t)ne;
        if (t->ne[0] > max_ne0)
            max_ne0 = t->ne[0];
    }

    pool = lb_pool_new(p->n_threads > 0 ? p->n_threads : 0);
    int nth = lb_pool_size(pool);
    scratch = malloc((size_t)nth * 2 * (size_t)max_ne0 * sizeof *scratch);
    acc = calloc((size_t)nth * 2, sizeof *acc);
    if (!pool || !scratch || !acc) {
        st = lb__errf(err, LB_ERR_NOMEM, "out of memory for %d threads", nth);
        goto out;
    }
    if ((st = lb_gguf_writer_copy_kv(w, g)) || (st = lb_gguf_writer_set_u32(w, "general.file_type", m->file_type)) ||
        (st = lb_gguf_writer_set_u32(w, "general.quantization_version", 2))) {
        st = lb__errf(err, st, "cannot copy the metadata of %s", in_path);
        goto out;
    }

    for (int64_t i = 0; i < nt; i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        lb_quantize_tensor *r = &tr[i];
        char name[256];
        if (t->name.len >= sizeof name) {
            st = lb__errf(err, LB_ERR_UNSUPPORTED, "tensor %" PRId64 ": name longer than %zu bytes", i, sizeof name - 1);
            goto out;
        }
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        size_t nl = t->name.len < sizeof r->name - 1 ? t->name.len : sizeof r->name - 1;
        memcpy(r->name, name, nl);
        r->name[nl] = 0;
        r->n_dims = t->n_dims;
        memcpy(r->ne, t->ne, sizeof r->ne);
        r->src_type = t->type;
        int64_t ne0 = t->ne[0], nrows = t->ne[1] * t->ne[2] * t->ne[3];
        if (is_quantized(t->type) && rep)
            rep->requantized = true;

        /* which type */
        bool quantize = ends_with(name, "weight") && t->n_dims >= 2 && !strstr(name, "_norm.weight") &&
                        !strstr(name, "ffn_gate_inp.weight") && strcmp(name, "position_embd.weight") &&
                        strcmp(name, "token_types.weight");
        uint32_t type;
        if (quantize) {
            type = policy_type(m, p->pure, name, (int)layer_of(name), (int)n_layer, n_gqa);
            for (int k = 0; k < p->n_overrides; k++)
                if (p->overrides[k].pattern[0] == '=' ? !strcmp(name, p->overrides[k].pattern + 1)
                                                      : strstr(name, p->overrides[k].pattern) != NULL) {
                    type = p->overrides[k].type;
                    break;
                }
        }
        else if (t->n_dims == 1 || strstr(name, "_norm"))
            type = LB_TYPE_F32;
        else
            type = t->type;
        r->wanted = type;
        if (ne0 % lb_type_layout_of(type)->blck != 0) {
            type = fallback_type(type, ne0, !strcmp(name, "output.weight"));
            r->fallback = true;
            if (rep)
                rep->n_fallback++;
        }
        r->type = type;
        r->bytes = (uint64_t)lb_type_row_bytes(type, ne0) * (uint64_t)nrows;
        int64_t ne = ne0 * nrows;
        r->bpw = ne > 0 ? (double)r->bytes * 8.0 / (double)ne : 0;

        const void *data = t->data;
        if (type != t->type) {
            const lb_quant_traits *src = lb_quant_ref(t->type), *dst = lb_quant_ref(type);
            if (!src || !src->dequant) {
                st = lb__errf(err, LB_ERR_UNSUPPORTED, "tensor %s: cannot read its type %s", name,
                              lb_type_layout_of(t->type) ? lb_type_layout_of(t->type)->name : "?");
                goto out;
            }
            if (!dst || !dst->dequant || !lb_quantize_supported(type)) {
                st = lb__errf(err, LB_ERR_UNSUPPORTED, "tensor %s: cannot write type %s", name,
                              lb_type_layout_of(type)->name);
                goto out;
            }
            const float *imp = NULL;
            if (p->imatrix && is_quantized(type)) {
                int64_t icols = 0;
                imp = lb_imatrix_find(p->imatrix, name, &icols);
                if (imp && icols != ne0) {
                    st = lb__errf(err, LB_ERR_INVALID_ARG, "tensor %s: the importance matrix has %" PRId64
                                  " columns for it, the tensor %" PRId64 " (made for another model?)", name, icols, ne0);
                    goto out;
                }
                r->imatrix_used = imp != NULL;
                r->imatrix_missing = imp == NULL;
                if (!imp && rep)
                    rep->n_imatrix_missing++;
            }
            bufs[i] = malloc(r->bytes ? r->bytes : 1);
            if (!bufs[i]) {
                st = lb__errf(err, LB_ERR_NOMEM, "tensor %s: out of memory for %" PRIu64 " bytes", name, r->bytes);
                goto out;
            }
            const float *hm = NULL;
            int64_t hcols = 0;
            if (p->hessian && lb_quantize_hessian_supported(type) && (hm = lb_hessian_find(p->hessian, name, &hcols)) &&
                hcols != ne0) {
                st = lb__errf(err, LB_ERR_INVALID_ARG, "tensor %s: the Hessian is %" PRId64 " x %" PRId64
                              ", the rows have %" PRId64 " columns (made for another model?)", name, hcols, hcols, ne0);
                goto out;
            }
            qjob job = {t->data, lb_type_row_bytes(t->type, ne0), lb_type_row_bytes(type, ne0), nrows, ne0, type,
                        src->dequant, dst->dequant, imp, bufs[i], scratch, acc, acc + nth, false};
            if (hm) {
                /* the whole tensor at once: the feedback runs along each row, threads split the rows */
                float *wf = malloc((size_t)ne * sizeof *wf); /* [nrows][ne0] */
                if (!wf) {
                    st = lb__errf(err, LB_ERR_NOMEM, "tensor %s: out of memory for %" PRId64 " floats", name, ne);
                    goto out;
                }
                for (int64_t rr = 0; rr < nrows; rr++)
                    src->dequant((const uint8_t *)t->data + (size_t)rr * job.src_row, wf + rr * ne0, ne0);
                st = lb_quantize_hessian(type, wf, nrows, ne0, hm, imp, bufs[i], nth, err);
                free(wf);
                if (st) {
                    lb__err_prefix(err, "tensor %s: ", name);
                    goto out;
                }
                r->hessian_used = true;
                job.done = true;
            }
            memset(acc, 0, (size_t)nth * 2 * sizeof *acc);
            lb_pool_run(pool, qjob_run, &job);
            double e = 0, s2 = 0;
            for (int k = 0; k < nth; k++) {
                e += acc[k];
                s2 += acc[nth + k];
            }
            r->rel_rms = s2 > 0 ? sqrt(e / s2) : 0;
            data = bufs[i];
        }
        st = lb_gguf_writer_add_tensor(w, name, type, t->n_dims, t->ne, data);
        if (st) {
            st = lb__errf(err, st, "tensor %s: cannot add it to the output", name);
            goto out;
        }
        done_q += (uint64_t)ne;
        if (p->progress)
            p->progress(total_q ? (float)((double)done_q / (double)total_q) : 1.0f, p->progress_user);
    }

    /* Files holding lowbit's own types say so: other readers reject the unknown
     * type ids anyway, and this names the documentation. */
    for (int64_t i = 0; i < nt; i++)
        if (tr[i].type == LB_TYPE_LBQ2 || tr[i].type == LB_TYPE_LBQ3 || tr[i].type == LB_TYPE_LBQ4 ||
            tr[i].type == LB_TYPE_LBQV) {
            if ((st = lb_gguf_writer_set_str(w, "lowbit.quant.types",
                                             "lbq2=100 lbq3=101 lbq4=102 lbqv=103 (lowbit docs/quantization.md)"))) {
                st = lb__errf(err, st, "cannot set lowbit.quant.types");
                goto out;
            }
            break;
        }
    /* Write beside the target and rename, so a failure never leaves a truncated model. */
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path);
    wrote_tmp = true;
    if ((st = lb_gguf_writer_write(w, tmp_path, err))) {
        lb__err_prefix(err, "writing %s: ", tmp_path);
        goto out;
    }
    if (rename(tmp_path, out_path) != 0) {
        st = lb__errf(err, LB_ERR_IO, "cannot rename %s to %s", tmp_path, out_path);
        goto out;
    }
    wrote_tmp = false;
    if (rep) {
        FILE *f = fopen(out_path, "rb");
        long sz = -1;
        if (f && fseek(f, 0, SEEK_END) == 0)
            sz = ftell(f);
        if (f)
            fclose(f);
        rep->tensors = tr;
        tr = NULL;
        rep->n_tensors = nt;
        rep->n_params = n_params;
        rep->file_bytes = sz > 0 ? (uint64_t)sz : 0;
        rep->src_bytes = lb_gguf_file_size(g);
        rep->bpw = n_params ? (double)rep->file_bytes * 8.0 / (double)n_params : 0;
        rep->file_type = m->file_type;
        rep->seconds = (lb_time_ms() - t0) / 1000.0;
    }
    st = LB_OK;
out:
    if (wrote_tmp)
        remove(tmp_path);
    if (st && rep)
        lb_quantize_report_free(rep);
    for (int64_t i = 0; bufs && i < nt; i++)
        free(bufs[i]);
    free(bufs);
    free(tr);
    free(scratch);
    free(acc);
    lb_pool_free(pool);
    lb_gguf_writer_free(w);
    lb_gguf_free(g);
    return st;
}
