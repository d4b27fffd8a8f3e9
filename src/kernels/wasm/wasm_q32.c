/* WebAssembly SIMD128 kernels for the 32-element families (Q4_0 Q4_1 Q5_0
 * Q5_1 Q8_0): dot products against A8_32 activations and the A8_32
 * quantizer.
 *
 * Products of int8 pairs are exact in int16 (extmul), pairs of them exact in
 * int32 (extadd), so each block's integer sum is exact; blocks are then
 * combined in four float lanes, which rounds differently from the
 * reference's one running sum (tests/unit/test_kernels_q32.c states the
 * bound).  The quantizer performs the reference's float operations and
 * rounds half to even (f32x4.nearest), so its bytes equal the reference's. */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

#include "quant/blocks.h"

static inline float f16(lb_f16 h) { return lb_f16_to_f32(h); }

static inline float hsum_f32(v128_t v)
{
    return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
           (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

static inline int32_t hsum_i32(v128_t v)
{
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

/* Four int32 partial sums of x[j] * y[j] over 16 int8 pairs (no pair may be
 * -128 * -128; activations are within +-127). */
static inline v128_t dot_s8(v128_t x, v128_t y)
{
    v128_t lo = wasm_i16x8_extmul_low_i8x16(x, y);
    v128_t hi = wasm_i16x8_extmul_high_i8x16(x, y);
    return wasm_i32x4_add(wasm_i32x4_extadd_pairwise_i16x8(lo), wasm_i32x4_extadd_pairwise_i16x8(hi));
}

/* 0xff in byte j of *lo (elements 0..15) and *hi (16..31) where bit j of the
 * little-endian 32-bit qh is set. */
static inline void bits_to_bytes(const uint8_t *qh, v128_t *lo, v128_t *hi)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    const v128_t v = wasm_i32x4_splat((int32_t)h);
    const v128_t bit = wasm_i8x16_const(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    v128_t b0 = wasm_i8x16_swizzle(v, wasm_i8x16_const(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    v128_t b1 = wasm_i8x16_swizzle(v, wasm_i8x16_const(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    *lo = wasm_i8x16_eq(wasm_v128_and(b0, bit), bit);
    *hi = wasm_i8x16_eq(wasm_v128_and(b1, bit), bit);
}

/* Per-block integer products: four int32 lanes whose total is exactly
 * sum_j w_j * a_j, w the block's signed (offset removed) or unsigned quant. */
static inline v128_t prod_q4(const uint8_t *qs, const int8_t *a, int off)
{
    v128_t b = wasm_v128_load(qs);
    v128_t lo = wasm_v128_and(b, wasm_i8x16_splat(0x0f));
    v128_t hi = wasm_u8x16_shr(b, 4);
    if (off) {
        lo = wasm_i8x16_sub(lo, wasm_i8x16_splat((int8_t)off));
        hi = wasm_i8x16_sub(hi, wasm_i8x16_splat((int8_t)off));
    }
    return wasm_i32x4_add(dot_s8(lo, wasm_v128_load(a)), dot_s8(hi, wasm_v128_load(a + 16)));
}

static inline v128_t prod_q5(const uint8_t *qs, const uint8_t *qh, const int8_t *a, int off)
{
    v128_t b = wasm_v128_load(qs), hl, hh;
    bits_to_bytes(qh, &hl, &hh);
    const v128_t b4 = wasm_i8x16_splat(0x10);
    v128_t lo = wasm_v128_or(wasm_v128_and(b, wasm_i8x16_splat(0x0f)), wasm_v128_and(hl, b4));
    v128_t hi = wasm_v128_or(wasm_u8x16_shr(b, 4), wasm_v128_and(hh, b4));
    if (off) {
        lo = wasm_i8x16_sub(lo, wasm_i8x16_splat((int8_t)off));
        hi = wasm_i8x16_sub(hi, wasm_i8x16_splat((int8_t)off));
    }
    return wasm_i32x4_add(dot_s8(lo, wasm_v128_load(a)), dot_s8(hi, wasm_v128_load(a + 16)));
}

static inline v128_t prod_q4_0(const lb_block_q4_0 *b, const lb_block_a8_32 *y) { return prod_q4(b->qs, y->qs, 8); }
static inline v128_t prod_q4_1(const lb_block_q4_1 *b, const lb_block_a8_32 *y) { return prod_q4(b->qs, y->qs, 0); }
static inline v128_t prod_q5_0(const lb_block_q5_0 *b, const lb_block_a8_32 *y) { return prod_q5(b->qs, b->qh, y->qs, 16); }
static inline v128_t prod_q5_1(const lb_block_q5_1 *b, const lb_block_a8_32 *y) { return prod_q5(b->qs, b->qh, y->qs, 0); }
static inline v128_t prod_q8_0(const lb_block_q8_0 *b, const lb_block_a8_32 *y)
{
    return wasm_i32x4_add(dot_s8(wasm_v128_load(b->qs), wasm_v128_load(y->qs)),
                          dot_s8(wasm_v128_load(b->qs + 16), wasm_v128_load(y->qs + 16)));
}

/* The offset term m * d_a * sum(a) of a block of the asymmetric types. */
static inline float off_none(const void *b, const lb_block_a8_32 *y) { (void)b; (void)y; return 0.0f; }
static inline float off_q4_1(const lb_block_q4_1 *b, const lb_block_a8_32 *y) { return f16(b->m) * y->d * (float)y->sum; }
static inline float off_q5_1(const lb_block_q5_1 *b, const lb_block_a8_32 *y) { return f16(b->m) * y->d * (float)y->sum; }

/* Two blocks per iteration into separate accumulators (hides the float add
 * latency); the offset terms are summed in float on the side, as the AVX2
 * kernels do. */
#define DOT(NAME, BLOCK, PROD, OFF)                                                       \
    static void NAME(int64_t n, float *s, const void *w, const void *a)                   \
    {                                                                                     \
        const BLOCK *x = w;             /* [n / 32] */                                    \
        const lb_block_a8_32 *y = a;    /* [n / 32] */                                    \
        const int64_t nb = n / LB_QK;                                                     \
        v128_t acc0 = wasm_f32x4_splat(0.0f), acc1 = wasm_f32x4_splat(0.0f);              \
        float summ = 0.0f;                                                                \
        int64_t i = 0;                                                                    \
        for (; i + 1 < nb; i += 2) {                                                      \
            v128_t p0 = wasm_f32x4_convert_i32x4(PROD(&x[i], &y[i]));                     \
            v128_t p1 = wasm_f32x4_convert_i32x4(PROD(&x[i + 1], &y[i + 1]));             \
            float d0 = f16(x[i].d) * y[i].d, d1 = f16(x[i + 1].d) * y[i + 1].d;          \
            acc0 = wasm_f32x4_add(acc0, wasm_f32x4_mul(wasm_f32x4_splat(d0), p0));        \
            acc1 = wasm_f32x4_add(acc1, wasm_f32x4_mul(wasm_f32x4_splat(d1), p1));        \
            summ += OFF(&x[i], &y[i]) + OFF(&x[i + 1], &y[i + 1]);                        \
        }                                                                                 \
        if (i < nb) {                                                                     \
            v128_t p0 = wasm_f32x4_convert_i32x4(PROD(&x[i], &y[i]));                     \
            float d0 = f16(x[i].d) * y[i].d;                                              \
            acc0 = wasm_f32x4_add(acc0, wasm_f32x4_mul(wasm_f32x4_splat(d0), p0));        \
            summ += OFF(&x[i], &y[i]);                                                    \
        }                                                                                 \
        *s = hsum_f32(wasm_f32x4_add(acc0, acc1)) + summ;                                 \
    }

DOT(dot_q4_0, lb_block_q4_0, prod_q4_0, off_none)
DOT(dot_q5_0, lb_block_q5_0, prod_q5_0, off_none)
DOT(dot_q8_0, lb_block_q8_0, prod_q8_0, off_none)
DOT(dot_q4_1, lb_block_q4_1, prod_q4_1, off_q4_1)
DOT(dot_q5_1, lb_block_q5_1, prod_q5_1, off_q5_1)

/* ---- A8_32 quantizer: the reference's rule, four lanes at a time. */
static void quant_a8_32(const float *src, void *dst, int64_t n)
{
    lb_block_a8_32 *b = dst;               /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        v128_t v[8];
        /* pmax(m, v) keeps m when v is NaN, as the reference's comparison does */
        v128_t m = wasm_f32x4_splat(0.0f);
        for (int k = 0; k < 8; k++) {
            v[k] = wasm_v128_load(x + 4 * k);
            m = wasm_f32x4_pmax(m, wasm_f32x4_abs(v[k]));
        }
        float amax = wasm_f32x4_extract_lane(m, 0);
        for (int k = 1; k < 4; k++) {
            float e = k == 1 ? wasm_f32x4_extract_lane(m, 1) : k == 2 ? wasm_f32x4_extract_lane(m, 2)
                                                                       : wasm_f32x4_extract_lane(m, 3);
            if (e > amax)
                amax = e;
        }
        const v128_t vid = wasm_f32x4_splat(amax != 0.0f ? 127.0f / amax : 0.0f);
        v128_t q32[8], sum = wasm_i32x4_splat(0);
        for (int k = 0; k < 8; k++) {
            q32[k] = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[k], vid)));
            sum = wasm_i32x4_add(sum, q32[k]);
        }
        for (int k = 0; k < 2; k++) {
            v128_t lo = wasm_i16x8_narrow_i32x4(q32[4 * k], q32[4 * k + 1]);
            v128_t hi = wasm_i16x8_narrow_i32x4(q32[4 * k + 2], q32[4 * k + 3]);
            wasm_v128_store(b[i].qs + 16 * k, wasm_i8x16_narrow_i16x8(lo, hi));
        }
        b[i].d = lb_f16_to_f32(lb_f32_to_f16(amax / 127.0f));
        b[i].sum = hsum_i32(sum);
    }
}

void lb__kernels_register_wasm_q32(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_Q4_0] = dot_q4_0;
    k->vec_dot[LB_TYPE_Q4_1] = dot_q4_1;
    k->vec_dot[LB_TYPE_Q5_0] = dot_q5_0;
    k->vec_dot[LB_TYPE_Q5_1] = dot_q5_1;
    k->vec_dot[LB_TYPE_Q8_0] = dot_q8_0;
    k->quantize[LB_TYPE_A8_32] = quant_a8_32;
}
#endif
