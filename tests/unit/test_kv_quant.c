/* The quantized KV cache: row packing and quantization error per type, the
 * Hadamard rotation, AVX2 kernels against the scalar references, attention
 * on the quantized cache against a float attention over the same
 * (dequantized) keys and values at awkward lengths and residual-window
 * boundaries, sizes and names. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "check.h"
#include "kernels/kvq.h"
#include "kv/kv_cache.h"

static uint64_t rng = 0x1234567887654321ull;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float uniform(void) { return (float)(next_u32() & 0xffffff) / 16777216.0f; }

static float gauss(void)
{
    float u = uniform() + 1e-7f, v = uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static const int bits_list[4] = {8, 4, 3, 2};

static void test_pack_roundtrip(void)
{
    for (int b = 0; b < 4; b++) {
        int bits = bits_list[b];
        uint8_t c[64], p[64], back[64];
        for (int rep = 0; rep < 50; rep++) {
            for (int i = 0; i < 64; i++)
                c[i] = (uint8_t)(next_u32() & ((1u << bits) - 1));
            lb_kvq_pack_row(bits, c, p);
            lb_kvq_unpack_row(bits, p, back);
            CHECKF(!memcmp(c, back, 64), "bits %d", bits);
        }
    }
}

/* RMS quantization error relative to the row's RMS, Gaussian rows (what a
 * Hadamard-rotated head vector looks like).  Bounds: 2^-bits-ish, with room. */
static void test_quantize_error(void)
{
    const double bound[4] = {0.012, 0.11, 0.22, 0.42};
    for (int b = 0; b < 4; b++) {
        int bits = bits_list[b];
        double e2 = 0, x2 = 0, worst_row = 0;
        for (int rep = 0; rep < 200; rep++) {
            float x[64], y[64];
            float off = 3.0f * gauss();   /* asymmetric rows: min must carry the offset */
            for (int i = 0; i < 64; i++)
                x[i] = off + gauss();
            uint8_t p[64];
            lb_f16 d, m;
            lb_kvq_quantize_row(bits, 64, x, p, &d, &m);
            lb_kvq_dequantize_row(bits, p, d, m, y);
            double re = 0, rx = 0;
            for (int i = 0; i < 64; i++) {
                re += (double)(y[i] - x[i]) * (y[i] - x[i]);
                rx += (double)(x[i] - off) * (x[i] - off);
            }
            e2 += re;
            x2 += rx;
            worst_row = fmax(worst_row, sqrt(re / rx));
        }
        double rel = sqrt(e2 / x2);
        CHECKF(rel < bound[b], "bits %d: relative RMS error %.4f >= %.4f", bits, rel, bound[b]);
        CHECKF(worst_row < 2 * bound[b], "bits %d: worst row %.4f", bits, worst_row);
        printf("  q%d row quantization: relative RMS error %.4f (worst row %.4f)\n", bits, rel, worst_row);
    }
    /* 128 values sharing one scale: two packed rows that dequantize within half a step */
    {
        float x[128], y[64];
        uint8_t p[48];
        lb_f16 d, m;
        for (int i = 0; i < 128; i++)
            x[i] = gauss();
        lb_kvq_quantize_row(3, 128, x, p, &d, &m);
        double worst = 0, step = lb_f16_to_f32(d);
        for (int r = 0; r < 2; r++) {
            lb_kvq_dequantize_row(3, p + 24 * r, d, m, y);
            for (int i = 0; i < 64; i++) {
                float xi = x[64 * r + i], lo = lb_f16_to_f32(m), hi = lo + 7 * (float)step;
                if (xi >= lo && xi <= hi)   /* values clipped by the range search are excepted */
                    worst = fmax(worst, fabs(y[i] - xi));
            }
        }
        CHECKF(worst <= 0.5 * step * 1.001 + 1e-6, "worst %g step %g", worst, step);
    }
    /* a constant row is exact; 8 bits of a ramp are exact to 1/2 step */
    float x[64], y[64];
    uint8_t p[64];
    lb_f16 d, m;
    for (int i = 0; i < 64; i++)
        x[i] = 0.75f;
    lb_kvq_quantize_row(4, 64, x, p, &d, &m);
    lb_kvq_dequantize_row(4, p, d, m, y);
    for (int i = 0; i < 64; i++)
        CHECK(y[i] == 0.75f);
}

static void test_rotation(void)
{
    const int ns[3] = {64, 128, 256};
    for (int k = 0; k < 3; k++) {
        int n = ns[k];
        float a[256], b[256], a0[256];
        double dot0 = 0, dot1 = 0, err = 0;
        for (int i = 0; i < n; i++) {
            a[i] = a0[i] = gauss();
            b[i] = gauss();
            dot0 += (double)a[i] * b[i];
        }
        lb__kv_rotate(a, n);
        lb__kv_rotate(b, n);
        for (int i = 0; i < n; i++)
            dot1 += (double)a[i] * b[i];
        CHECKF(fabs(dot0 - dot1) < 1e-4 * (1 + fabs(dot0)), "n %d: dot %f vs %f", n, dot0, dot1);
        lb__kv_unrotate(a, n);
        for (int i = 0; i < n; i++)
            err = fmax(err, fabs(a[i] - a0[i]));
        CHECKF(err < 1e-5, "n %d: round trip error %g", n, err);
    }
    /* an outlier channel is spread over all channels */
    float x[64] = {0};
    x[5] = 8.0f;
    lb__kv_rotate(x, 64);
    for (int i = 0; i < 64; i++)
        CHECK(fabsf(fabsf(x[i]) - 1.0f) < 1e-6f);
}

static void test_kernels_avx2_vs_scalar(void)
{
    const lb_kvq_kernels *ref = lb_kvq_scalar(), *simd = lb_kvq_avx2();
    if (!simd) {
        printf("  (no AVX2 on this CPU: only the scalar kernels are checked)\n");
        simd = lb_kvq_get();
    }
    const int dims[2] = {64, 128}, ns[7] = {1, 2, 3, 31, 32, 33, 64};
    for (int b = 0; b < 4; b++) {
        int bits = bits_list[b], rb = lb_kvq_row_bytes(bits);
        for (int di = 0; di < 2; di++) {
            int dim = dims[di];
            static uint8_t codes[256 * 2 * 64];
            lb_f16 sc[256], mn[256];
            float q[256], s0[64], s1[64];
            for (int i = 0; i < 2 * dim * rb; i++)
                codes[i] = (uint8_t)next_u32();
            for (int d = 0; d < dim; d++) {
                sc[d] = lb_f32_to_f16(0.01f + 0.1f * uniform());
                mn[d] = lb_f32_to_f16(gauss());
                q[d] = gauss();
            }
            /* rows of 2 * 8b bytes per channel (two 64-token halves of a 128-token group) */
            ref->k_scores(bits, dim, codes + rb, 2 * (size_t)rb, sc, mn, q, s0);
            simd->k_scores(bits, dim, codes + rb, 2 * (size_t)rb, sc, mn, q, s1);
            double worst = 0;
            for (int t = 0; t < 64; t++)
                worst = fmax(worst, fabs(s0[t] - s1[t]) / (1 + fabs(s0[t])));
            CHECKF(worst < 1e-5, "k_scores bits %d dim %d: %g", bits, dim, worst);
        }
        for (int ni = 0; ni < 7; ni++) {
            int n = ns[ni];
            const size_t stride = (size_t)rb + 4 + 3;   /* odd stride: rows are unaligned */
            static uint8_t rows[64 * 80];
            float p[64], o0[64], o1[64];
            for (size_t i = 0; i < stride * (size_t)n; i++)
                rows[i] = (uint8_t)next_u32();
            for (int t = 0; t < n; t++) {
                lb_f16 d = lb_f32_to_f16(0.01f + 0.1f * uniform()), m = lb_f32_to_f16(gauss());
                memcpy(rows + t * stride + rb, &d, 2);
                memcpy(rows + t * stride + rb + 2, &m, 2);
                p[t] = uniform();
            }
            for (int i = 0; i < 64; i++)
                o0[i] = o1[i] = gauss();
            ref->v_accum(bits, n, rows, stride, p, o0);
            simd->v_accum(bits, n, rows, stride, p, o1);
            double worst = 0;
            for (int i = 0; i < 64; i++)
                worst = fmax(worst, fabs(o0[i] - o1[i]) / (1 + fabs(o0[i])));
            CHECKF(worst < 1e-5, "v_accum bits %d n %d: %g", bits, n, worst);
        }
    }
}

static lb_hparams small_hp(int head_dim)
{
    lb_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_layer = 2;
    hp.n_head = 4;
    hp.n_head_kv = 2;
    hp.head_dim = head_dim;
    hp.n_embd = 4 * head_dim;
    hp.n_rot = head_dim;
    return hp;
}

/* Float attention of q ([n_head][D]) over positions 0..n_pos-1 read back from the cache. */
static void ref_attention(lb_kvq_cache *q, const lb_hparams *hp, int il, int n_pos, const float *qv, float *out)
{
    const int D = hp->head_dim, grp = hp->n_head / hp->n_head_kv;
    float *k = malloc(sizeof(float) * D * n_pos), *v = malloc(sizeof(float) * D * n_pos);
    double *s = malloc(sizeof(double) * n_pos);
    for (int h = 0; h < hp->n_head_kv; h++) {
        for (int p = 0; p < n_pos; p++)
            lb__kvq_read(q, il, h, p, k + (size_t)p * D, v + (size_t)p * D);
        for (int g = 0; g < grp; g++) {
            const float *qq = qv + (size_t)(h * grp + g) * D;
            double mx = -1e300, sum = 0;
            for (int p = 0; p < n_pos; p++) {
                double d = 0;
                for (int i = 0; i < D; i++)
                    d += (double)qq[i] * k[(size_t)p * D + i];
                s[p] = d / sqrt((double)D);
                mx = fmax(mx, s[p]);
            }
            for (int p = 0; p < n_pos; p++)
                sum += s[p] = exp(s[p] - mx);
            float *o = out + (size_t)(h * grp + g) * D;
            for (int i = 0; i < D; i++) {
                double a = 0;
                for (int p = 0; p < n_pos; p++)
                    a += s[p] / sum * v[(size_t)p * D + i];
                o[i] = (float)a;
            }
        }
    }
    free(k);
    free(v);
    free(s);
}

/* One cache configuration, two caches: A is fed in batches of the given
 * sizes, B one token at a time.  Checked: every row of B's attention against
 * a float attention over B's keys and values read back (the state that row
 * saw), A's rows equal to B's (a batch gives what token-by-token decoding
 * gives), the scalar kernels' attention equal to the AVX2 one, and the
 * read-back values close to what was stored. */
static void run_cache(int head_dim, lb_kv_type tk, lb_kv_type tv, int n_sink, const int *batches, int n_batches,
                      double *rt_k, double *rt_v)
{
    lb_hparams hp = small_hp(head_dim);
    const int D = head_dim, n_ctx = 300, KV = hp.n_head_kv * D, Q = hp.n_head * D;
    lb_pool *pool = lb_pool_new(2);
    lb_kv_cache *ca = NULL, *cb = NULL;
    lb_err err = {0};
    CHECK(lb_kv_cache_new_typed(&hp, n_ctx, lb_pool_size(pool), tk, tv, n_sink, &ca, &err) == LB_OK);
    CHECK(lb_kv_cache_new_typed(&hp, n_ctx, lb_pool_size(pool), tk, tv, n_sink, &cb, &err) == LB_OK);
    if (!ca || !cb) {
        lb_kv_cache_free(ca);
        lb_kv_cache_free(cb);
        lb_pool_free(pool);
        return;
    }
    lb_kvq_cache *qa = lb__kv_cache_quant(ca), *qb = lb__kv_cache_quant(cb);
    CHECK(qa && qb);
    lb_kv_ops A = lb_kv_cache_ops(ca), B = lb_kv_cache_ops(cb);
    float *kin = malloc(sizeof(float) * KV * n_ctx), *vin = malloc(sizeof(float) * KV * n_ctx);
    float *qin = malloc(sizeof(float) * Q * n_ctx), *out = malloc(sizeof(float) * Q * n_ctx),
          *out2 = malloc(sizeof(float) * Q * n_ctx), *ref = malloc(sizeof(float) * Q), *one = malloc(sizeof(float) * Q);
    for (int i = 0; i < KV * n_ctx; i++) {
        /* a fixed per-channel offset and one outlier channel, as real keys have */
        int ch = i % D;
        kin[i] = gauss() + (ch == 7 ? 6.0f : 0.3f * (float)(ch % 5));
        vin[i] = gauss();
    }
    for (int i = 0; i < Q * n_ctx; i++)
        qin[i] = gauss();
    int pos = 0;
    double worst_ref = 0, worst_ab = 0, worst_kern = 0;
    for (int bi = 0; bi < n_batches && pos + batches[bi] <= n_ctx; bi++) {
        const int n = batches[bi];
        for (int il = 0; il < hp.n_layer; il++) {
            CHECK(A.store(A.ctx, il, pos, n, kin + (size_t)pos * KV, vin + (size_t)pos * KV) == LB_OK);
            A.attend(A.ctx, il, pos, n, qin + (size_t)pos * Q, out, pool);
        }
        /* the last layer again with the scalar kernels (a rewind to pos is always allowed here
         * unless pos is inside a quantized group; then only the plain path is compared) */
        lb__kvq_use_kernels(qa, lb_kvq_scalar());
        A.attend(A.ctx, hp.n_layer - 1, pos, n, qin + (size_t)pos * Q, out2, pool);
        lb__kvq_use_kernels(qa, lb_kvq_get());
        for (int t = 0; t < n; t++) {
            const int p = pos + t;
            for (int il = 0; il < hp.n_layer; il++) {
                CHECK(B.store(B.ctx, il, p, 1, kin + (size_t)p * KV, vin + (size_t)p * KV) == LB_OK);
                B.attend(B.ctx, il, p, 1, qin + (size_t)p * Q, one, pool);
            }
            ref_attention(qb, &hp, hp.n_layer - 1, p + 1, qin + (size_t)p * Q, ref);
            for (int i = 0; i < Q; i++) {
                worst_ref = fmax(worst_ref, fabs(one[i] - ref[i]));
                worst_ab = fmax(worst_ab, fabs(one[i] - out[(size_t)t * Q + i]));
            }
            /* out2 came from the plain path after the batch was stored: equal to out for rows
             * whose group is still F16 at the end, i.e. the last group's rows */
            if (p >= n_sink && (p - n_sink) / LB_KV_GROUP == (pos + n - 1 - n_sink) / LB_KV_GROUP)
                for (int i = 0; i < Q; i++)
                    worst_kern = fmax(worst_kern, fabs(out2[(size_t)t * Q + i] - out[(size_t)t * Q + i]));
        }
        pos += n;
    }
    CHECKF(worst_ref < 2e-5, "%s/%s sinks %d D %d: attention vs float reference: %g", lb_kv_type_name(tk),
           lb_kv_type_name(tv), n_sink, D, worst_ref);
    CHECKF(worst_ab < 2e-5, "%s/%s sinks %d D %d: batched vs one at a time: %g", lb_kv_type_name(tk),
           lb_kv_type_name(tv), n_sink, D, worst_ab);
    CHECKF(worst_kern < 2e-5, "%s/%s: AVX2 vs scalar attention: %g", lb_kv_type_name(tk), lb_kv_type_name(tv),
           worst_kern);
    /* scalar vs AVX2 over the whole cache, quantized groups included (no batch is
     * pending, so this attends over the state the last row saw) */
    const int p_last = pos - 1;
    float *o_simd = malloc(sizeof(float) * Q), *o_ref = malloc(sizeof(float) * Q);
    B.attend(B.ctx, 0, p_last, 1, qin + (size_t)p_last * Q, o_simd, pool);
    lb__kvq_use_kernels(qb, lb_kvq_scalar());
    B.attend(B.ctx, 0, p_last, 1, qin + (size_t)p_last * Q, o_ref, pool);
    lb__kvq_use_kernels(qb, lb_kvq_get());
    for (int i = 0; i < Q; i++)
        worst_kern = fmax(worst_kern, fabs(o_simd[i] - o_ref[i]));
    CHECKF(worst_kern < 2e-5, "%s/%s: AVX2 vs scalar attention, whole cache: %g", lb_kv_type_name(tk),
           lb_kv_type_name(tv), worst_kern);
    free(o_simd);
    free(o_ref);
    /* read-back error of every stored position (relative to the vectors' RMS, ~1) */
    float *k = malloc(sizeof(float) * D), *v = malloc(sizeof(float) * D);
    double ek = 0, ev = 0, nk = 0;
    for (int p = 0; p < pos; p++)
        for (int h = 0; h < hp.n_head_kv; h++) {
            lb__kvq_read(qb, 1, h, p, k, v);
            for (int i = 0; i < D; i++) {
                double a = k[i] - kin[(size_t)p * KV + h * D + i], b = v[i] - vin[(size_t)p * KV + h * D + i];
                ek += a * a;
                ev += b * b;
                nk++;
            }
        }
    *rt_k = sqrt(ek / nk);
    *rt_v = sqrt(ev / nk);
    /* storing past what is stored, or rewriting inside a quantized group, is refused */
    CHECK(B.store(B.ctx, 0, pos + 1, 1, kin, vin) == LB_ERR_RANGE);
    if (pos >= n_sink + 2 * LB_KV_GROUP)
        CHECK(B.store(B.ctx, 0, n_sink + 5, 1, kin, vin) == LB_ERR_RANGE);
    CHECK(B.store(B.ctx, 0, 0, 1, kin, vin) == LB_OK);   /* a reset is always allowed */
    B.attend(B.ctx, 0, 0, 1, qin, one, pool);
    ref_attention(qb, &hp, 0, 1, qin, ref);
    double e0 = 0;
    for (int i = 0; i < Q; i++)
        e0 = fmax(e0, fabs(one[i] - ref[i]));
    CHECK(e0 < 2e-5);
    free(k);
    free(v);
    free(kin);
    free(vin);
    free(qin);
    free(out);
    free(out2);
    free(ref);
    free(one);
    lb_kv_cache_free(ca);
    lb_kv_cache_free(cb);
    lb_pool_free(pool);
}

static void test_cache_attention(void)
{
    /* batches ending around the residual boundaries (sizes 1, 2, 31, 32, 33 ...) */
    /* ends at 1, 2, 31, 32, 33, 34, 64, 65, 66, 99, 127, 128, 129, 200, 255, 256, 257, 300 */
    const int mixed[] = {1, 1, 29, 1, 1, 1, 30, 1, 1, 33, 28, 1, 1, 71, 55, 1, 1, 43};
    const int big[] = {150, 150};
    const lb_kv_type pairs[][2] = {{LB_KV_Q8, LB_KV_Q8}, {LB_KV_Q4, LB_KV_Q4}, {LB_KV_Q3, LB_KV_Q3},
                                   {LB_KV_Q2, LB_KV_Q2}, {LB_KV_F16, LB_KV_Q4}, {LB_KV_Q4, LB_KV_F16}};
    /* bound on the read-back RMS error per type (inputs have unit variance) */
    const double rt_bound[LB_KV_TYPE_COUNT] = {1e-3, 0.02, 0.15, 0.3, 0.6};
    for (int pi = 0; pi < 6; pi++) {
        lb_kv_type tk = pairs[pi][0], tv = pairs[pi][1];
        double ek, ev;
        run_cache(64, tk, tv, 0, mixed, (int)(sizeof mixed / sizeof *mixed), &ek, &ev);
        CHECKF(ek < rt_bound[tk] * 2 && ev < rt_bound[tv], "%s/%s: read-back RMS error K %.4f V %.4f",
               lb_kv_type_name(tk), lb_kv_type_name(tv), ek, ev);
        printf("  %s/%s: read-back RMS error K %.4f V %.4f\n", lb_kv_type_name(tk), lb_kv_type_name(tv), ek, ev);
        run_cache(64, tk, tv, 3, big, 2, &ek, &ev);
        CHECK(ek < rt_bound[tk] * 2 && ev < rt_bound[tv]);
    }
    double ek, ev;
    run_cache(128, LB_KV_Q4, LB_KV_Q3, 0, big, 2, &ek, &ev);
    CHECK(ek < rt_bound[LB_KV_Q4] * 2 && ev < rt_bound[LB_KV_Q3]);
    run_cache(64, LB_KV_Q2, LB_KV_Q8, 5, big, 2, &ek, &ev);
    CHECK(ek < rt_bound[LB_KV_Q2] * 2 && ev < rt_bound[LB_KV_Q8]);
}

static void test_sizes_and_names(void)
{
    lb_hparams hp = small_hp(64);
    hp.n_layer = 8;   /* techdocs-28M's shape */
    hp.n_head = 8;
    hp.n_head_kv = 2;
    const size_t f16 = lb_kv_bytes_per_token(&hp, LB_KV_F16, LB_KV_F16);
    CHECK(f16 == 8 * 2 * 64 * 2 * 2);
    CHECK(lb_kv_bytes_per_token(&hp, LB_KV_Q4, LB_KV_Q4) * 100 <= f16 * 30);
    CHECK(lb_kv_bytes_per_token(&hp, LB_KV_Q3, LB_KV_Q3) * 100 <= f16 * 23);
    CHECK(lb_kv_bytes_per_token(&hp, LB_KV_Q2, LB_KV_Q2) * 100 <= f16 * 17);
    CHECK(lb_kv_bytes_per_token(&hp, LB_KV_Q8, LB_KV_Q8) < f16 * 55 / 100);
    for (int t = 0; t < LB_KV_TYPE_COUNT; t++) {
        lb_kv_type back = LB_KV_TYPE_COUNT;
        CHECK(lb_kv_type_parse(lb_kv_type_name((lb_kv_type)t), &back) == LB_OK && back == (lb_kv_type)t);
    }
    lb_kv_type keep = LB_KV_Q4;
    CHECK(lb_kv_type_parse("q5", &keep) == LB_ERR_INVALID_ARG && keep == LB_KV_Q4);
    CHECK(lb_kv_type_parse("Q4", &keep) == LB_ERR_INVALID_ARG);
    CHECK(lb_kv_type_parse(NULL, &keep) == LB_ERR_INVALID_ARG);
    CHECK(!strcmp(lb_kv_type_name((lb_kv_type)99), "?"));
    /* the estimator grows with context at the per-token rate (+ nothing else) */
    const size_t G = LB_KV_GROUP;
    size_t a = lb_kv_estimate_bytes(&hp, 1024 + (int)G, LB_KV_Q4, LB_KV_Q4, 1);
    size_t b = lb_kv_estimate_bytes(&hp, 1024, LB_KV_Q4, LB_KV_Q4, 1);
    size_t per = lb_kv_bytes_per_token(&hp, LB_KV_Q4, LB_KV_Q4);
    /* G more positions: their quantized bytes plus the float scores of 4 query heads per position */
    CHECKF(a - b >= G * per && a - b <= G * per + G * 4 * 4 + 64 * 4, "%zu %zu", a - b, G * per);
    CHECK(lb_kv_estimate_bytes(&hp, 1024, LB_KV_F16, LB_KV_F16, 2) == lb_kv_cache_bytes(&hp, 1024, 2));
    CHECK(lb_kv_estimate_bytes(&hp, 0, LB_KV_Q4, LB_KV_Q4, 1) == 0);
    /* an unsupported head size is refused cleanly */
    lb_hparams odd = small_hp(80);
    lb_kv_cache *c = NULL;
    lb_err err = {0};
    CHECK(lb_kv_cache_new_typed(&odd, 100, 1, LB_KV_Q4, LB_KV_Q4, 0, &c, &err) == LB_ERR_UNSUPPORTED && !c);
    CHECK(strstr(err.msg, "head_dim") != NULL);
    CHECK(lb_kv_estimate_bytes(&odd, 100, LB_KV_Q4, LB_KV_Q4, 1) == 0);
    CHECK(lb_kv_cache_new_typed(&hp, 100, 1, (lb_kv_type)7, LB_KV_Q4, 0, &c, &err) == LB_ERR_INVALID_ARG && !c);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    /* what is allocated is what the estimator said (malloc's own headers aside) */
    const lb_kv_type pairs[3][2] = {{LB_KV_Q4, LB_KV_Q4}, {LB_KV_Q2, LB_KV_F16}, {LB_KV_F16, LB_KV_F16}};
    for (int i = 0; i < 3; i++) {
        size_t est = lb_kv_estimate_bytes(&hp, 4096, pairs[i][0], pairs[i][1], 2);
        size_t before = mallinfo2().uordblks + mallinfo2().hblkhd;
        CHECK(lb_kv_cache_new_typed(&hp, 4096, 2, pairs[i][0], pairs[i][1], 0, &c, &err) == LB_OK);
        size_t after = mallinfo2().uordblks + mallinfo2().hblkhd;
        if (after > before)   /* 0 under sanitizers, which replace malloc */
            CHECKF((double)(after - before) <= est * 1.01 && (double)(after - before) >= est * 0.99,
                   "%s/%s: allocated %zu, estimated %zu", lb_kv_type_name(pairs[i][0]), lb_kv_type_name(pairs[i][1]),
                   after - before, est);
        lb_kv_cache_free(c);
    }
#endif
}

/* Through the public API on a real model: a q8/q8 session's logits are close
 * to an f16/f16 session's, a q4/q4 session fed one token at a time gives the
 * logits of the same session fed one batch, and q2 still predicts. */
static void test_session(void)
{
    lb_model *m = NULL;
    if (lb_model_load(check_shared("models/techdocs-28M-Q4_K_M.gguf"), NULL, &m) != LB_OK) {
        CHECKF(0, "cannot load the model: %s", lb_last_load_error());
        return;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);
    /* the first 1000 bytes of the validation text: some 300 tokens, across two key groups */
    char text[1501] = {0};
    FILE *f = fopen(check_shared("text/techdocs-valid.txt"), "rb");
    size_t len = f ? fread(text, 1, 1000, f) : 0;
    if (f)
        fclose(f);
    CHECK(len == 1000);
    lb_token toks[1600];
    size_t n = 0;
    CHECK(lb_tokenize(m, text, len, true, false, toks, 1600, &n) == LB_OK);
    CHECKF(n > 2 * LB_KV_GROUP && n < 512, "%zu tokens", n);
    const int V = info.n_vocab;
    float *lf = malloc(sizeof(float) * V), *lq = malloc(sizeof(float) * V), *l1 = malloc(sizeof(float) * V);
    const lb_kv_type types[4] = {LB_KV_F16, LB_KV_Q8, LB_KV_Q4, LB_KV_Q2};
    float *outs[4] = {lf, lq, l1, NULL};
    float *l2 = malloc(sizeof(float) * V);
    outs[3] = l2;
    for (int i = 0; i < 4; i++) {
        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = 512;
        sp.n_threads = 2;
        sp.kv_type_k = sp.kv_type_v = types[i];
        lb_session *s = NULL;
        CHECK(lb_session_new(m, &sp, &s) == LB_OK);
        if (s)
            CHECK(lb_session_eval(s, toks, (int)n, outs[i], true) == LB_OK);
        if (s && types[i] == LB_KV_Q4) {
            /* the same tokens one at a time */
            float *one = malloc(sizeof(float) * V);
            lb_session_reset(s);
            for (size_t t = 0; t < n; t++)
                CHECK(lb_session_eval(s, toks + t, 1, one, true) == LB_OK);
            double worst = 0;
            for (int k = 0; k < V; k++)
                worst = fmax(worst, fabs(one[k] - l1[k]));
            CHECKF(worst < 2e-2, "q4 session: batch vs one at a time: %g", worst);
            free(one);
        }
        lb_session_free(s);
    }
    double dq8 = 0, dq4 = 0;
    int am[4] = {0, 0, 0, 0};
    for (int k = 0; k < V; k++) {
        dq8 = fmax(dq8, fabs(lq[k] - lf[k]));
        dq4 = fmax(dq4, fabs(l1[k] - lf[k]));
        for (int i = 0; i < 4; i++)
            if (outs[i][k] > outs[i][am[i]])
                am[i] = k;
    }
    printf("  session: max |logit - f16| q8 %.4f q4 %.4f; argmax f16 %d q8 %d q4 %d q2 %d\n", dq8, dq4, am[0], am[1],
           am[2], am[3]);
    /* (the F16 path rounds q and the probabilities to f16 as llama.cpp does; the quantized
     * path keeps them in float, which alone moves this Q4_K_M model's logits by ~0.2) */
    CHECKF(dq8 < 0.5, "q8 logits differ from f16 by %g", dq8);
    CHECKF(dq4 < 1.0, "q4 logits differ from f16 by %g", dq4);
    CHECK(am[1] == am[0] && am[2] == am[0]);
    /* a bad type is refused through the public API */
    lb_session_params bad = lb_session_default_params();
    bad.n_ctx = 64;
    bad.kv_type_v = (lb_kv_type)42;
    lb_session *s = NULL;
    CHECK(lb_session_new(m, &bad, &s) == LB_ERR_INVALID_ARG && !s);
    free(lf);
    free(lq);
    free(l1);
    free(l2);
    lb_model_free(m);
}

int main(void)
{
    RUN(test_pack_roundtrip);
    RUN(test_quantize_error);
    RUN(test_rotation);
    RUN(test_kernels_avx2_vs_scalar);
    RUN(test_cache_attention);
    RUN(test_sizes_and_names);
    RUN(test_session);
    return check_done();
}
