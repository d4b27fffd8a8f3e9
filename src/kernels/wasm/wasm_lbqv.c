/* WebAssembly SIMD128 dot product of LBQV weights (quant/lbqv.h) against A8_H
 * activations, one activation row and four per weight row (prefill, batched
 * decode), with the bits of the scalar reference in quant/lbqv.c: exact
 * integer sums, then the reference's float combination per block. */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

#include "base/fp16.h"
#include "quant/lbqv.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline int32_t hsum_i32(v128_t v)
{
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

/* A codeword's bytes from its sign byte sg, as two 8-byte masks: c = (mag
 * ^ N) + T bytewise, where N is 0xFF in the negative elements (bits 0..6 of
 * sg, and for element 7 the parity of those) and T = shift - N (shift +1
 * or -1 by bit 7): the same bytes as negating, then adding the shift, with
 * two table loads in place of a parity, a multiply and two compares per
 * codeword, which made this kernel 4x slower than LBQ2's in browsers. */
#define LBQV_PAR7(s) (((s) ^ (s) >> 1 ^ (s) >> 2 ^ (s) >> 3 ^ (s) >> 4 ^ (s) >> 5 ^ (s) >> 6) & 1u)
#define LBQV_NEG(s, j) ((j) < 7 ? ((unsigned)(s) >> (j)) & 1u : LBQV_PAR7((unsigned)(s)))
#define LBQV_NB(s, j) ((uint64_t)(LBQV_NEG(s, j) * 0xFFu) << (8 * (j)))
#define LBQV_TB(s, j) ((uint64_t)((((s) & 0x80 ? 1u : 0xFFu) + LBQV_NEG(s, j)) & 0xFFu) << (8 * (j)))
#define LBQV_N(s) (LBQV_NB(s, 0) | LBQV_NB(s, 1) | LBQV_NB(s, 2) | LBQV_NB(s, 3) | LBQV_NB(s, 4) | LBQV_NB(s, 5) | \
                   LBQV_NB(s, 6) | LBQV_NB(s, 7))
#define LBQV_T(s) (LBQV_TB(s, 0) | LBQV_TB(s, 1) | LBQV_TB(s, 2) | LBQV_TB(s, 3) | LBQV_TB(s, 4) | LBQV_TB(s, 5) | \
                   LBQV_TB(s, 6) | LBQV_TB(s, 7))
#define LBQV_E(s) {LBQV_N(s), LBQV_T(s)}
#define LBQV_E4(s) LBQV_E(s), LBQV_E((s) + 1), LBQV_E((s) + 2), LBQV_E((s) + 3)
#define LBQV_E16(s) LBQV_E4(s), LBQV_E4((s) + 4), LBQV_E4((s) + 8), LBQV_E4((s) + 12)
#define LBQV_E64(s) LBQV_E16(s), LBQV_E16((s) + 16), LBQV_E16((s) + 32), LBQV_E16((s) + 48)
static const uint64_t sign_tab[256][2] = {LBQV_E64(0), LBQV_E64(64), LBQV_E64(128), LBQV_E64(192)};   /* [sg][N, T] */

/* Codewords k and k + 1 of a block as 16 int8 values (|c| <= 11). */
static inline v128_t codeword_pair(const uint8_t *idx, const uint8_t *sg)
{
    v128_t mag = wasm_v128_load64_lane(lb__lbqv_grid[idx[1]], wasm_v128_load64_zero(lb__lbqv_grid[idx[0]]), 1);
    v128_t n = wasm_v128_load64_lane(&sign_tab[sg[1]][0], wasm_v128_load64_zero(&sign_tab[sg[0]][0]), 1);
    v128_t t = wasm_v128_load64_lane(&sign_tab[sg[1]][1], wasm_v128_load64_zero(&sign_tab[sg[0]][1]), 1);
    return wasm_i8x16_add(wasm_v128_xor(mag, n), t);
}

/* The 32 products of one group as 4 int32 lanes: four products per int16
 * lane stay below 4 * 11 * 127 < 2^15 before the pairwise widening. */
static inline v128_t group_dot(v128_t q0, v128_t q1, const int8_t *a)
{
    v128_t a0 = wasm_v128_load(a), a1 = wasm_v128_load(a + 16);
    v128_t p = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(q0, a0), wasm_i16x8_extmul_high_i8x16(q0, a0));
    p = wasm_i16x8_add(p, wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(q1, a1), wasm_i16x8_extmul_high_i8x16(q1, a1)));
    return wasm_i32x4_extadd_pairwise_i16x8(p);
}

/* One LBQV weight row against R = 1 or 4 activation rows act_stride bytes
 * apart; codewords are decoded once for all R. */
static inline void dot_rows(int64_t n, float *s, int64_t s_stride, const void *w, const void *act,
                            size_t act_stride, int R)
{
    const lb_block_lbqv *b = w;
    const lb_block_a8_K *a[4];   /* [R] activation rows, each [n / 256] blocks */
    for (int j = 0; j < R; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        v128_t sum[4];
        for (int j = 0; j < R; j++)
            sum[j] = wasm_i32x4_splat(0);
        for (int g = 0; g < 8; g++) {
            v128_t q0 = codeword_pair(b[i].idx + 4 * g, b[i].sg + 4 * g);
            v128_t q1 = codeword_pair(b[i].idx + 4 * g + 2, b[i].sg + 4 * g + 2);
            v128_t sc = wasm_i32x4_splat(((b[i].scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1);
            for (int j = 0; j < R; j++)
                sum[j] = wasm_i32x4_add(sum[j], wasm_i32x4_mul(group_dot(q0, q1, a[j][i].qs + 32 * g), sc));
        }
        float dw = lb_f16_to_f32(b[i].d);
        for (int j = 0; j < R; j++) {
            float dd = a[j][i].d * dw * 0.0625f;
            acc[j] = acc[j] + dd * (float)hsum_i32(sum[j]);
        }
    }
    for (int j = 0; j < R; j++)
        s[j * s_stride] = acc[j];
}

static void dot_lbqv(int64_t n, float *s, const void *w, const void *act) { dot_rows(n, s, 0, w, act, 0, 1); }

static void dot4_lbqv(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot_rows(n, s, s_stride, w, act, act_stride, 4);
}

void lb__kernels_register_wasm_lbqv(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_LBQV] = dot_lbqv;
    k->vec_dot4[LB_TYPE_LBQV] = dot4_lbqv;
}
#endif
