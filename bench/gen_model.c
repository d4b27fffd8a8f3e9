/* lowbit-genmodel: writes a synthetic TinyLlama-1.1B-shaped llama GGUF with seeded random weights, for benchmarks at a realistic size.
 *
 *   lowbit-genmodel OUT.gguf [--layers N] [--type f16|f32] [--seed S] [--vocab VOCAB.gguf]
 *
 * Shape: dim 2048, 32 query / 4 KV heads of 64, ffn 5632, context 2048, RMSNorm
 * eps 1e-5, rope base 10000, vocabulary 32000 (SentencePiece, copied with every
 * other tokenizer.ggml.* key from VOCAB, default ../shared/models/llama-2-tiny-random.gguf).
 * Matrices are N(0, 0.02^2), which keeps the residual stream and the logits
 * well inside F16 range over 22 layers; norms are 1.0 in F32.  The output is
 * a deterministic function of (layers, type, seed).
 *
 * The GGUF writer needs every tensor's bytes alive until it returns, which for
 * the full model would mean 2.2 GB (F16) or 4.4 GB (F32) of RAM.  Instead the
 * file is written twice: first with every tensor pointing at one shared,
 * never-touched calloc'd region (zero pages, so next to no RSS), then each
 * tensor's random bytes are generated in chunks and written over its slot at
 * the offset the reader reports.  Peak RSS stays at a few MiB per chunk. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fp16.h"
#include "base/status.h"
#include "format/gguf.h"
#include "format/tensor_type.h"

enum {
    N_EMBD = 2048, N_HEAD = 32, N_HEAD_KV = 4, HEAD_DIM = 64, N_FF = 5632,
    N_VOCAB = 32000, N_CTX = 2048, N_LAYER_DEFAULT = 22,
};
#define WEIGHT_STD 0.02f
#define CHUNK_ELEMS ((size_t)1 << 20)

typedef struct tdesc {
    char name[64];
    uint32_t type;               /* LB_TYPE_F16 or LB_TYPE_F32 */
    uint32_t n_dims;
    int64_t ne[2];               /* ne[0] innermost (the input dimension of a matrix) */
    int is_norm;                 /* 1: filled with 1.0, 0: Gaussian */
} tdesc;

/* splitmix64: seeds each tensor's stream independently of the others, so a
 * tensor's values do not depend on how many layers come before it. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* xoshiro256** state. */
typedef struct rng { uint64_t s[4]; int has_spare; float spare; } rng;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t sm = seed ^ (stream * 0xd1342543de82ef95ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&sm);
    r->has_spare = 0;
}

/* Uniform in (-1, 1) from the top 24 bits. */
static float rng_sym(rng *r)
{
    return (float)((int32_t)(rng_next(r) >> 40) - (1 << 23) + 0.5) * (1.0f / (float)(1 << 23));
}

/* Standard normal by Marsaglia's polar method (no trigonometry; pairs). */
static float rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    float u, v, q;
    do {
        u = rng_sym(r);
        v = rng_sym(r);
        q = u * u + v * v;
    } while (q >= 1.0f || q == 0.0f);
    float f = sqrtf(-2.0f * logf(q) / q);
    r->spare = v * f;
    r->has_spare = 1;
    return u * f;
}

static int n_tensors_for(int n_layer) { return 1 + 9 * n_layer + 2; }

/* Tensor list in the order llama.cpp's converter writes a llama model. */
static void describe(tdesc *t, int n_layer, uint32_t wtype)
{
    int k = 0;
#define ADD(nm, nd, a, b, norm) do { \
        tdesc *d = &t[k++]; \
        snprintf(d->name, sizeof d->name, "%s", nm); \
        d->type = (norm) ? LB_TYPE_F32 : wtype; d->n_dims = (nd); \
        d->ne[0] = (a); d->ne[1] = (b); d->is_norm = (norm); \
    } while (0)
    ADD("token_embd.weight", 2, N_EMBD, N_VOCAB, 0);
    char nm[64];
    for (int l = 0; l < n_layer; l++) {
        static const struct { const char *s; int nd; int64_t a, b; int norm; } lt[] = {
            {"attn_norm", 1, N_EMBD, 1, 1},
            {"attn_q", 2, N_EMBD, N_HEAD * HEAD_DIM, 0},
            {"attn_k", 2, N_EMBD, N_HEAD_KV * HEAD_DIM, 0},
            {"attn_v", 2, N_EMBD, N_HEAD_KV * HEAD_DIM, 0},
            {"attn_output", 2, N_HEAD * HEAD_DIM, N_EMBD, 0},
            {"ffn_norm", 1, N_EMBD, 1, 1},
            {"ffn_gate", 2, N_EMBD, N_FF, 0},
            {"ffn_up", 2, N_EMBD, N_FF, 0},
            {"ffn_down", 2, N_FF, N_EMBD, 0},
        };
        for (size_t j = 0; j < sizeof lt / sizeof lt[0]; j++) {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, lt[j].s);
            ADD(nm, lt[j].nd, lt[j].a, lt[j].b, lt[j].norm);
        }
    }
    ADD("output_norm.weight", 1, N_EMBD, 1, 1);
    ADD("output.weight", 2, N_EMBD, N_VOCAB, 0);
#undef ADD
}

static size_t tensor_bytes(const tdesc *t)
{
    size_t n = (size_t)t->ne[0] * (size_t)t->ne[1];
    return n * (t->type == LB_TYPE_F16 ? 2 : 4);
}

static lb_status set_metadata(lb_gguf_writer *w, const char *vocab_path, int n_layer, uint32_t wtype, lb_err *err)
{
    lb_gguf *src = NULL;
    lb_status st = lb_gguf_open_file(vocab_path, true, &src, err);
    if (st)
        return st;
    st = lb_gguf_writer_copy_kv(w, src);
    lb_gguf_free(src);
    if (st)
        return lb__errf(err, st, "copying metadata from '%s' failed", vocab_path);
    /* The source's llama.* keys describe a tiny model; every one of them is
     * overridden or removed so nothing stale survives. */
    lb_gguf_writer_remove(w, "general.alignment");
    char name[96];
    snprintf(name, sizeof name, "TinyLlama-1.1B synthetic (random, %d layers)", n_layer);
    if ((st = lb_gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (st = lb_gguf_writer_set_str(w, "general.name", name)) ||
        (st = lb_gguf_writer_set_u32(w, "llama.context_length", N_CTX)) ||
        (st = lb_gguf_writer_set_u32(w, "llama.embedding_length", N_EMBD)) ||
        (st = lb_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)n_layer)) ||
        (st = lb_gguf_writer_set_u32(w, "llama.feed_forward_length", N_FF)) ||
        (st = lb_gguf_writer_set_u32(w, "llama.rope.dimension_count", HEAD_DIM)) ||
        (st = lb_gguf_writer_set_u32(w, "llama.attention.head_count", N_HEAD)) ||
        (st = lb_gguf_writer_set_u32(w, "llama.attention.head_count_kv", N_HEAD_KV)) ||
        (st = lb_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (st = lb_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f)) ||
        /* llama_ftype: 0 all F32, 1 mostly F16 */
        (st = lb_gguf_writer_set_u32(w, "general.file_type", wtype == LB_TYPE_F16 ? 1 : 0)) ||
        (st = lb_gguf_writer_set_u32(w, "llama.vocab_size", N_VOCAB)))
        return lb__errf(err, st, "setting metadata: %s", lb_status_str(st));
    return LB_OK;
}

/* Second pass: generates each tensor in CHUNK_ELEMS pieces and writes it over
 * its placeholder at the offset the reader finds for it. */
static lb_status fill_tensors(const char *path, const tdesc *t, int nt, uint64_t seed, lb_err *err)
{
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_file(path, true, &g, err);
    if (st)
        return st;
    uint64_t *offs = malloc((size_t)nt * sizeof *offs);   /* [nt] absolute file offset of each tensor's data */
    if (!offs) {
        lb_gguf_free(g);
        return lb__errf(err, LB_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < nt; i++) {
        const lb_gguf_tensor *gt = lb_gguf_find_tensor(g, t[i].name);
        if (!gt || gt->nbytes != tensor_bytes(&t[i])) {
            free(offs);
            lb_gguf_free(g);
            return lb__errf(err, LB_ERR_FORMAT, "%s: tensor '%s' missing or of the wrong size after the first pass",
                            path, t[i].name);
        }
        offs[i] = lb_gguf_data_offset(g) + gt->offset;
    }
    lb_gguf_free(g);

    FILE *f = fopen(path, "r+b");
    float *fbuf = malloc(CHUNK_ELEMS * sizeof *fbuf);      /* [CHUNK_ELEMS] one chunk as F32 */
    lb_f16 *hbuf = malloc(CHUNK_ELEMS * sizeof *hbuf);     /* [CHUNK_ELEMS] the same chunk as F16 */
    if (!f || !fbuf || !hbuf) {
        st = f ? lb__errf(err, LB_ERR_NOMEM, "out of memory")
               : lb__errf(err, LB_ERR_IO, "cannot reopen '%s': %s", path, strerror(errno));
        goto done;
    }
    for (int i = 0; i < nt; i++) {
        rng r;
        rng_seed(&r, seed, (uint64_t)i + 1);
        size_t n = (size_t)t[i].ne[0] * (size_t)t[i].ne[1];
        if (fseeko(f, (off_t)offs[i], SEEK_SET) != 0) {
            st = lb__errf(err, LB_ERR_IO, "%s: seek to %" PRIu64 " for '%s': %s", path, offs[i], t[i].name, strerror(errno));
            goto done;
        }
        for (size_t at = 0; at < n; at += CHUNK_ELEMS) {
            size_t k = n - at < CHUNK_ELEMS ? n - at : CHUNK_ELEMS;
            for (size_t j = 0; j < k; j++)
                fbuf[j] = t[i].is_norm ? 1.0f : WEIGHT_STD * rng_normal(&r);
            size_t wrote;
            if (t[i].type == LB_TYPE_F16) {
                for (size_t j = 0; j < k; j++)
                    hbuf[j] = lb_f32_to_f16(fbuf[j]);
                wrote = fwrite(hbuf, sizeof *hbuf, k, f);
            } else {
                wrote = fwrite(fbuf, sizeof *fbuf, k, f);
            }
            if (wrote != k) {
                st = lb__errf(err, LB_ERR_IO, "%s: writing tensor '%s': %s", path, t[i].name, strerror(errno));
                goto done;
            }
        }
    }
done:
    if (f && fclose(f) != 0 && !st)
        st = lb__errf(err, LB_ERR_IO, "%s: close: %s", path, strerror(errno));
    free(fbuf);
    free(hbuf);
    free(offs);
    return st;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lowbit-genmodel OUT.gguf [--layers N] [--type f16|f32] [--seed S] [--vocab VOCAB.gguf]\n"
               "  --layers N   transformer blocks (default %d, as TinyLlama-1.1B)\n"
               "  --type T     f16 (default) or f32 for the matrices; norms are always f32\n"
               "  --seed S     PRNG seed (default 1); the file is a function of the options\n"
               "  --vocab F    GGUF whose tokenizer.ggml.* keys are copied\n"
               "               (default ../shared/models/llama-2-tiny-random.gguf, a 32000-token Llama-2 vocabulary)\n",
            N_LAYER_DEFAULT);
}

int main(int argc, char **argv)
{
    const char *out = NULL, *vocab = "../shared/models/llama-2-tiny-random.gguf";
    long n_layer = N_LAYER_DEFAULT;
    uint32_t wtype = LB_TYPE_F16;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--layers") && v) {
            n_layer = strtol(v, &end, 10);
            if (*end || n_layer < 1 || n_layer > 4096) {
                fprintf(stderr, "lowbit-genmodel: --layers takes 1..4096, not '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--type") && v) {
            if (!strcmp(v, "f16"))
                wtype = LB_TYPE_F16;
            else if (!strcmp(v, "f32"))
                wtype = LB_TYPE_F32;
            else {
                fprintf(stderr, "lowbit-genmodel: --type takes f16 or f32, not '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            seed = strtoull(v, &end, 0);
            if (*end || !*v) {
                fprintf(stderr, "lowbit-genmodel: --seed takes an integer, not '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--vocab") && v) {
            vocab = v;
            i++;
        } else if (a[0] != '-' && !out) {
            out = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!out) {
        usage(stderr);
        return 2;
    }

    int nt = n_tensors_for((int)n_layer);
    tdesc *t = calloc((size_t)nt, sizeof *t);   /* [nt] file order */
    lb_gguf_writer *w = lb_gguf_writer_new();
    if (!t || !w) {
        fprintf(stderr, "lowbit-genmodel: out of memory\n");
        return 1;
    }
    describe(t, (int)n_layer, wtype);
    size_t max_bytes = 0;
    uint64_t total = 0, params = 0;
    for (int i = 0; i < nt; i++) {
        size_t b = tensor_bytes(&t[i]);
        max_bytes = b > max_bytes ? b : max_bytes;
        total += b;
        params += (uint64_t)t[i].ne[0] * (uint64_t)t[i].ne[1];
    }
    /* [max_bytes] placeholder data for the first pass: zero pages, never written */
    void *zeros = calloc(1, max_bytes);
    lb_err err = {0};
    lb_status st = zeros ? LB_OK : LB_ERR_NOMEM;
    if (!st)
        st = set_metadata(w, vocab, (int)n_layer, wtype, &err);
    for (int i = 0; i < nt && !st; i++)
        if ((st = lb_gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne, zeros)))
            lb__errf(&err, st, "adding tensor '%s'", t[i].name);
    if (!st)
        st = lb_gguf_writer_write(w, out, &err);
    lb_gguf_writer_free(w);
    free(zeros);
    if (!st) {
        st = fill_tensors(out, t, nt, seed, &err);
        if (st)
            remove(out);
    }
    free(t);
    if (st) {
        fprintf(stderr, "lowbit-genmodel: %s: %s\n", lb_status_str(st), err.msg[0] ? err.msg : "failed");
        return 1;
    }
    printf("%s: %d layers, %d tensors, %" PRIu64 " parameters, %.1f MiB of tensor data (%s), seed %" PRIu64 "\n",
           out, (int)n_layer, nt, params, (double)total / (1024.0 * 1024.0), wtype == LB_TYPE_F16 ? "f16" : "f32", seed);
    return 0;
}
