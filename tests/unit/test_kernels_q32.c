/* Tests the 32-element quant families: the scalar reference against known
 * layouts and real llama.cpp files, and every SIMD kernel set of this build
 * (AVX2, NEON, WASM SIMD128) against the reference (bit-exact quantizer and
 * dequantizers, dot products within a stated rounding bound). */
#include "check.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "format/gguf.h"
#include "kernels/kernels.h"
#include "quant/blocks.h"

static const lb_type q32_types[] = {LB_TYPE_Q4_0, LB_TYPE_Q4_1, LB_TYPE_Q5_0, LB_TYPE_Q5_1, LB_TYPE_Q8_0};
#define N_TYPES (int)(sizeof q32_types / sizeof q32_types[0])
#define MAX_N 11008

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_unit(void) { return (float)((double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0)); } /* [0,1) */
static float rng_sym(void) { return 2.0f * rng_unit() - 1.0f; }                                        /* [-1,1) */

enum { D_UNIFORM, D_ZERO, D_OUTLIER, D_NEGMAX, D_TIES, D_TINY, D_HUGE, D_CONST, D_COUNT };
static const char *dist_name[D_COUNT] = {"uniform", "zeros", "outlier", "negmax", "ties", "tiny", "huge", "const"};

/* Fills x[n] (n a multiple of 32) with one of the test distributions. */
static void fill(float *x, int64_t n, int dist)
{
    for (int64_t i = 0; i < n; i++) {
        switch (dist) {
        case D_UNIFORM: x[i] = rng_sym(); break;
        case D_ZERO: x[i] = 0.0f; break;
        case D_OUTLIER: x[i] = (i % 32 == 7) ? 1000.0f * rng_sym() : rng_sym(); break;
        case D_NEGMAX: x[i] = (i % 32 == 31) ? -3.0f : rng_sym(); break;
        case D_TIES: {
            /* max|x| = 127/8 so d = 1/8 and id = 8 exactly: x * id lands on k + 0.5 */
            int k = (int)(rng_u64() % 254) - 127;
            x[i] = (i % 32 == 0) ? ((rng_u64() & 1) ? 127.0f / 8 : -127.0f / 8) : ((float)k + 0.5f) / 8.0f;
            break;
        }
        case D_TINY: x[i] = 1e-12f * rng_sym(); break;
        case D_HUGE: x[i] = 3e4f * rng_sym(); break;   /* fp16 scales must stay finite */
        case D_CONST: x[i] = 0.75f; break;
        }
    }
}

static int lengths_blocks(int64_t *out)
{
    int k = 0;
    for (int64_t n = 32; n <= 1024; n += 32)
        out[k++] = n;
    out[k++] = 4096;
    out[k++] = 11008;
    return k;
}

/* Σ over elements of the magnitudes the dot's float arithmetic rounds:
 * |d q a| for every type, |m a| for the offset types, and |off d Σa| per
 * block for Q4_0/Q5_0 (off = 8 or 16, the stored bias of q). */
static double dot_magnitude(lb_type t, const void *w, const lb_block_a8_32 *a, int64_t n)
{
    double mag = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        float d, m = 0;
        int q[32];
        const uint8_t *qs = NULL, *qhp = NULL;
        int off = 0;
        switch (t) {
        case LB_TYPE_Q4_0: { const lb_block_q4_0 *b = (const lb_block_q4_0 *)w + i; d = lb_f16_to_f32(b->d); qs = b->qs; off = 8; break; }
        case LB_TYPE_Q4_1: { const lb_block_q4_1 *b = (const lb_block_q4_1 *)w + i; d = lb_f16_to_f32(b->d); m = lb_f16_to_f32(b->m); qs = b->qs; break; }
        case LB_TYPE_Q5_0: { const lb_block_q5_0 *b = (const lb_block_q5_0 *)w + i; d = lb_f16_to_f32(b->d); qs = b->qs; qhp = b->qh; off = 16; break; }
        case LB_TYPE_Q5_1: { const lb_block_q5_1 *b = (const lb_block_q5_1 *)w + i; d = lb_f16_to_f32(b->d); m = lb_f16_to_f32(b->m); qs = b->qs; qhp = b->qh; break; }
        default: { const lb_block_q8_0 *b = (const lb_block_q8_0 *)w + i; d = lb_f16_to_f32(b->d); for (int j = 0; j < 32; j++) q[j] = b->qs[j]; break; }
        }
        if (qs) {
            uint32_t h = 0;
            if (qhp)
                memcpy(&h, qhp, 4);
            for (int j = 0; j < 32; j++)
                q[j] = (j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4)) + (int)(((h >> j) & 1) << 4) - off;
        }
        for (int j = 0; j < 32; j++)
            mag += fabs((double)d * q[j] * a[i].d * a[i].qs[j]) + fabs((double)m * a[i].d * a[i].qs[j]);
        /* the SIMD kernels may fold off * Σa into one lane before rounding */
        mag += fabs((double)off * d * a[i].d * a[i].sum);
    }
    return mag;
}

/* Random weight blocks straight from random bytes (every bit pattern of qs
 * and qh), with a finite random scale and offset. */
static void random_blocks(lb_type t, void *dst, int64_t n)
{
    size_t bytes = lb_type_row_bytes(t, n);
    uint8_t *p = dst;
    for (size_t i = 0; i < bytes; i++)
        p[i] = (uint8_t)rng_u64();
    size_t bs = lb_type_row_bytes(t, 32);
    int scales = (t == LB_TYPE_Q4_1 || t == LB_TYPE_Q5_1) ? 2 : 1;
    for (int64_t b = 0; b < n / 32; b++)
        for (int s = 0; s < scales; s++) {
            lb_f16 h = lb_f32_to_f16(rng_sym() * 0.01f);
            memcpy(p + (size_t)b * bs + 2 * (size_t)s, &h, 2);
        }
}

static float xw[MAX_N], xa[MAX_N];                 /* [MAX_N] float inputs */
static float deq_ref[MAX_N], deq_simd[MAX_N];      /* [MAX_N] dequantized */
static lb_block_a8_32 a_ref[MAX_N / 32], a_simd[MAX_N / 32];
static uint8_t wq[MAX_N / 32 * 34];                /* one row of any q32 type */

/* Nibble and bit order, checked on blocks built by hand. */
static void test_layout_by_hand(void)
{
    const lb_quant_traits *q40 = lb_quant_ref(LB_TYPE_Q4_0), *q51 = lb_quant_ref(LB_TYPE_Q5_1);
    lb_block_q4_0 b4;
    b4.d = lb_f32_to_f16(1.0f);
    for (int j = 0; j < 16; j++)
        b4.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    q40->dequant(&b4, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECKF(y[j] == (float)(j - 8), "q4_0 low nibble %d -> %g", j, y[j]);
        CHECKF(y[j + 16] == (float)(7 - j), "q4_0 high nibble %d -> %g", j, y[j + 16]);
    }
    lb_block_q5_1 b5;
    b5.d = lb_f32_to_f16(0.5f);
    b5.m = lb_f32_to_f16(-1.0f);
    memset(b5.qs, 0, sizeof b5.qs);
    uint32_t h = 0x80000001u | (1u << 17);   /* elements 0, 17 and 31 get bit 4 */
    memcpy(b5.qh, &h, 4);
    b5.qs[15] = 0xf0;                         /* element 31: low nibble 15 */
    q51->dequant(&b5, y, 32);
    CHECK(y[0] == 16 * 0.5f - 1.0f);
    CHECK(y[17] == 16 * 0.5f - 1.0f);
    CHECK(y[31] == 31 * 0.5f - 1.0f);
    CHECK(y[1] == -1.0f && y[16] == -1.0f && y[15] == -1.0f);

    /* llama.cpp's Q4_0 rule: the signed extreme maps to level 0 (d = max / -8) */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    q40->quantize(x, &b4, 32);
    CHECK(lb_f16_to_f32(b4.d) == 2.0f);
    CHECK((b4.qs[0] & 15) == 0);             /* -16 / 2 + 8.5 = 0.5 -> 0 */
    CHECK((b4.qs[15] >> 4) == 15);            /* 15: 7.5 + 8.5 = 16 -> clamped to 15 */
    CHECK((b4.qs[2] & 15) == 1);              /* -14: 1.5 truncates to 1 */
}

/* Each reference quantizer: round trip error within half a step, and the
 * reference dot equals the dot of the dequantized vectors. */
static void test_reference_self_consistency(void)
{
    const lb_quant_traits *act = lb_quant_ref(LB_TYPE_A8_32);
    for (int ti = 0; ti < N_TYPES; ti++) {
        lb_type t = q32_types[ti];
        const lb_quant_traits *q = lb_quant_ref(t);
        CHECK(q && q->dequant && q->quantize && q->vec_dot && q->act_type == LB_TYPE_A8_32);
        if (!q)
            continue;
        const int64_t n = 4096;
        for (int dist = 0; dist < D_COUNT; dist++) {
            fill(xw, n, dist);
            fill(xa, n, D_UNIFORM);
            q->quantize(xw, wq, n);
            q->dequant(wq, deq_ref, n);
            int levels = (t == LB_TYPE_Q8_0) ? 254 : (t == LB_TYPE_Q5_0 || t == LB_TYPE_Q5_1) ? 31 : 15;
            for (int64_t b = 0; b < n / 32; b++) {
                float mn = FLT_MAX, mx = -FLT_MAX;
                for (int j = 0; j < 32; j++) {
                    mn = fminf(mn, xw[b * 32 + j]);
                    mx = fmaxf(mx, xw[b * 32 + j]);
                }
                /* one quantization step (before fp16 rounding of d), with slack
                 * for fp16 d and m and for the clamped extreme level */
                float range = (t == LB_TYPE_Q4_1 || t == LB_TYPE_Q5_1) ? mx - mn : 2 * fmaxf(fabsf(mn), fabsf(mx));
                float step = range / (float)levels;
                float worst = 0;
                for (int j = 0; j < 32; j++)
                    worst = fmaxf(worst, fabsf(deq_ref[b * 32 + j] - xw[b * 32 + j]));
                /* fp16 keeps d to 2^-11 relative, or 2^-25 absolute once subnormal */
                float slack = 1e-3f * fmaxf(fabsf(mn), fabsf(mx)) + (float)levels * 0x1p-25f;
                CHECKF(worst <= 1.01f * step + slack,
                       "%s %s block %lld: error %g, step %g", lb_type_layout_of(t)->name, dist_name[dist],
                       (long long)b, worst, step);
            }
            act->quantize(xa, a_ref, n);
            float s;
            q->vec_dot(n, &s, wq, a_ref);
            act->dequant(a_ref, deq_simd, n);
            double exact = 0;
            for (int64_t i = 0; i < n; i++)
                exact += (double)deq_ref[i] * deq_simd[i];
            double mag = dot_magnitude(t, wq, a_ref, n);
            double tol = (n / 32 + 8) * ldexp(1.0, -23) * mag + 1e-37;
            CHECKF(fabs(s - exact) <= tol, "%s %s: dot %.9g vs dequantized %.9g (tol %g)",
                   lb_type_layout_of(t)->name, dist_name[dist], s, exact, tol);
        }
    }
}

/* The A8_32 rule: d = max|x|/127, q = round-half-even(x / d), sum = Σq. */
static void test_a8_32_reference(void)
{
    const lb_quant_traits *act = lb_quant_ref(LB_TYPE_A8_32);
    float x[64];
    for (int j = 0; j < 64; j++)
        x[j] = ((float)(j - 32) + 0.5f) / 8.0f;  /* ties at k + 0.5 once scaled by 8 */
    x[5] = -127.0f / 8;                            /* block 0's extreme is negative: d = 1/8 */
    x[40] = 127.0f / 8;
    lb_block_a8_32 b[2];
    act->quantize(x, b, 64);
    CHECK(b[0].d == 0.125f && b[1].d == 0.125f);
    CHECK(b[0].qs[5] == -127 && b[1].qs[8] == 127);
    CHECK(b[0].qs[0] == -32);   /* -31.5 -> -32 (even) */
    CHECK(b[0].qs[1] == -30);   /* -30.5 -> -30 */
    CHECK(b[1].qs[0] == 0);     /*   0.5 ->  0 */
    CHECK(b[1].qs[1] == 2);     /*   1.5 ->  2 */
    int32_t s0 = 0;
    for (int j = 0; j < 32; j++)
        s0 += b[0].qs[j];
    CHECK(s0 == b[0].sum);
    memset(x, 0, sizeof x);
    act->quantize(x, b, 32);
    CHECK(b[0].d == 0.0f && b[0].sum == 0 && b[0].qs[3] == 0);
}

static void compare_variant(const lb_kernel_set *simd)
{
    const lb_kernel_set *ref = lb_kernels_scalar();
    int64_t lens[40];
    int nl = lengths_blocks(lens);
    double worst_ratio[N_TYPES] = {0};
    for (int li = 0; li < nl; li++) {
        int64_t n = lens[li];
        for (int dist = 0; dist < D_COUNT + 1; dist++) {
            /* activations: every distribution; quantizer output must be identical bytes */
            fill(xa, n, dist < D_COUNT ? dist : D_UNIFORM);
            ref->quantize[LB_TYPE_A8_32](xa, a_ref, n);
            memset(a_simd, 0xAB, sizeof a_simd);
            simd->quantize[LB_TYPE_A8_32](xa, a_simd, n);
            CHECKF(memcmp(a_ref, a_simd, (size_t)(n / 32) * sizeof(lb_block_a8_32)) == 0,
                   "%s a8_32 quantize differs: n=%lld %s", simd->isa, (long long)n, dist < D_COUNT ? dist_name[dist] : "random");
            for (int ti = 0; ti < N_TYPES; ti++) {
                lb_type t = q32_types[ti];
                const char *name = lb_type_layout_of(t)->name;
                if (dist < D_COUNT) {
                    fill(xw, n, (dist + ti) % D_COUNT);
                    ref->quantize[t](xw, wq, n);
                } else {
                    random_blocks(t, wq, n);
                }
                ref->dequant[t](wq, deq_ref, n);
                memset(deq_simd, 0xAB, sizeof deq_simd);
                simd->dequant[t](wq, deq_simd, n);
                CHECKF(memcmp(deq_ref, deq_simd, (size_t)n * sizeof(float)) == 0, "%s %s dequant differs: n=%lld dist %d",
                       simd->isa, name, (long long)n, dist);
                float sr = 0, ss = 0;
                ref->vec_dot[t](n, &sr, wq, a_ref);
                simd->vec_dot[t](n, &ss, wq, a_ref);
                double mag = dot_magnitude(t, wq, a_ref, n);
                /* each side rounds at most (blocks + 8) times relative to mag */
                double tol = (n / 32 + 8) * ldexp(1.0, -23) * mag + 1e-37;
                double err = fabs((double)sr - ss);
                CHECKF(err <= tol, "%s %s dot: n=%lld dist %d: ref %.9g simd %.9g (tol %g)", simd->isa, name, (long long)n, dist, sr,
                       ss, tol);
                if (mag > 0 && err / (ldexp(1.0, -24) * mag) > worst_ratio[ti])
                    worst_ratio[ti] = err / (ldexp(1.0, -24) * mag);
            }
        }
    }
    for (int ti = 0; ti < N_TYPES; ti++)
        printf("  %s %-5s dot: worst |simd-ref| = %.3f * 2^-24 * mag (bound allows up to %d at n=11008)\n",
               simd->isa, lb_type_layout_of(q32_types[ti])->name, worst_ratio[ti], 2 * (11008 / 32 + 8));
}

static void test_variants_vs_reference(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    if (ns == 0)
        printf("note: no SIMD kernel set in this build or CPU, SIMD comparison skipped\n");
    for (int i = 0; i < ns; i++)
        compare_variant(sets[i]);
}

/* Relative RMS difference of a quantized tensor from the F16 model's tensor,
 * and whether re-quantizing the F16 values with our reference reproduces the
 * file's bytes (llama-quantize without an importance matrix uses the same
 * reference rules). */
static void compare_file(const char *qfile, lb_type want, double max_rel_rms)
{
    lb_err err = {0};
    lb_gguf *gf = NULL, *gq = NULL;
    if (lb_gguf_open_file(check_shared("models/techdocs-28M-f16.gguf"), true, &gf, &err) != LB_OK ||
        lb_gguf_open_file(check_shared(qfile), true, &gq, &err) != LB_OK) {
        CHECKF(0, "open: %s", err.msg);
        lb_gguf_free(gf);
        lb_gguf_free(gq);
        return;
    }
    const lb_quant_traits *q = lb_quant_ref(want), *f16 = lb_quant_ref(LB_TYPE_F16);
    int compared = 0, identical = 0;
    for (int64_t ti = 0; ti < lb_gguf_n_tensors(gq); ti++) {
        const lb_gguf_tensor *tq = lb_gguf_tensor_at(gq, ti);
        if (tq->type != want)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)tq->name.len, tq->name.ptr);
        const lb_gguf_tensor *tf = lb_gguf_find_tensor(gf, name);
        CHECKF(tf && tf->type == LB_TYPE_F16, "%s missing or not f16 in the f16 model", name);
        if (!tf || tf->type != LB_TYPE_F16)
            continue;
        int64_t ne = tq->ne[0] * tq->ne[1] * tq->ne[2] * tq->ne[3];
        CHECK(ne == tf->ne[0] * tf->ne[1] * tf->ne[2] * tf->ne[3]);
        float *a = malloc((size_t)ne * sizeof(float)), *b = malloc((size_t)ne * sizeof(float)); /* [ne] each */
        void *re = malloc(tq->nbytes);
        if (!a || !b || !re) {
            free(a); free(b); free(re);
            CHECK(0);
            break;
        }
        q->dequant(tq->data, a, ne);
        f16->dequant(tf->data, b, ne);
        double se = 0, ss = 0;
        for (int64_t i = 0; i < ne; i++) {
            se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
            ss += (double)b[i] * b[i];
        }
        double rel = sqrt(se / (ss > 0 ? ss : 1));
        CHECKF(rel < max_rel_rms, "%s %s: relative RMS error %.4f", qfile, name, rel);
        q->quantize(b, re, ne);
        compared++;
        if (memcmp(re, tq->data, tq->nbytes) == 0)
            identical++;
        if (compared == 1)
            printf("  %s %s: relative RMS vs f16 %.4f\n", qfile, name, rel);
        free(a); free(b); free(re);
    }
    printf("  %s: %d %s tensors checked, %d re-quantized byte-identical\n", qfile, compared,
           lb_type_layout_of(want)->name, identical);
    CHECK(compared > 0);
    CHECKF(identical == compared, "%d of %d tensors re-quantize to the file's bytes", identical, compared);
    lb_gguf_free(gf);
    lb_gguf_free(gq);
}

static void test_real_q8_0(void) { compare_file("models/techdocs-28M-Q8_0.gguf", LB_TYPE_Q8_0, 0.01); }
static void test_real_q4_0(void) { compare_file("models/techdocs-28M-Q4_0.gguf", LB_TYPE_Q4_0, 0.15); }

/* Speed, for information: one 4096-element row of Q4_0 and Q8_0 dotted
 * repeatedly by the reference and by each SIMD set (not a pass/fail
 * criterion: the machine is shared). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double ns_per_dot(lb_vec_dot_fn dot, int64_t n)
{
    float s = 0, sink = 0;
    int reps = 0;
    double t0 = now_s(), t;
    do {
        for (int k = 0; k < 64; k++, reps++) {
            dot(n, &s, wq, a_ref);
            sink += s;
        }
        t = now_s() - t0;
    } while (t < 0.15);
    CHECK(sink == sink || sink != sink);   /* keeps the calls */
    return 1e9 * t / reps;
}

static void test_speed(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    const lb_type types[2] = {LB_TYPE_Q4_0, LB_TYPE_Q8_0};
    const int64_t n = 4096;
    for (int ti = 0; ti < 2; ti++) {
        lb_type t = types[ti];
        fill(xw, n, D_UNIFORM);
        fill(xa, n, D_UNIFORM);
        lb_quant_ref(t)->quantize(xw, wq, n);
        lb_quant_ref(LB_TYPE_A8_32)->quantize(xa, a_ref, n);
        double ref = ns_per_dot(lb_kernels_scalar()->vec_dot[t], n);
        printf("  speed %s n=%lld: scalar %.0f ns", lb_type_layout_of(t)->name, (long long)n, ref);
        for (int i = 0; i < ns; i++) {
            double v = ns_per_dot(sets[i]->vec_dot[t], n);
            printf(", %s %.0f ns (%.1fx)", sets[i]->isa, v, ref / v);
        }
        printf("\n");
    }
}

int main(void)
{
    RUN(test_layout_by_hand);
    RUN(test_a8_32_reference);
    RUN(test_reference_self_consistency);
    RUN(test_variants_vs_reference);
    RUN(test_real_q8_0);
    RUN(test_real_q4_0);
    RUN(test_speed);
    return check_done();
}
