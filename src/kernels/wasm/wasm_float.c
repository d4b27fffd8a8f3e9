/* WebAssembly SIMD128 kernels for the float weight types F32, F16 and BF16:
 * dot products against F32 activations and dequantizers.
 *
 * The dots keep eight independent accumulators (32 elements per iteration),
 * then 8-element steps and a scalar tail, so any n >= 0 works; the float
 * rounding differs from the reference's double sum within the bound of
 * tests/unit/test_kernels_float.c.  WebAssembly has no f16 conversion
 * instruction; the bit-level one below is exact, so the dequantizers match
 * the scalar reference bit for bit. */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

#include "base/fp16.h"

static inline v128_t load_f32(const void *p, int64_t i) { return wasm_v128_load((const float *)p + i); }

/* Four f16 values to float, exactly as lb_f16_to_f32: the bits shifted into
 * float position and scaled by 2^112 give every normal and subnormal value;
 * inf and NaN (NaNs quieted) are patched in. */
static inline v128_t load_f16(const void *p, int64_t i)
{
    v128_t w = wasm_u32x4_load16x4((const uint16_t *)p + i);
    v128_t sign = wasm_i32x4_shl(wasm_v128_and(w, wasm_i32x4_splat(0x8000)), 16);
    v128_t em = wasm_i32x4_shl(wasm_v128_and(w, wasm_i32x4_splat(0x7fff)), 13);
    v128_t f = wasm_f32x4_mul(em, wasm_f32x4_splat(0x1p112f));
    v128_t special = wasm_i32x4_eq(wasm_v128_and(w, wasm_i32x4_splat(0x7c00)), wasm_i32x4_splat(0x7c00));
    v128_t quiet = wasm_v128_and(wasm_i32x4_ne(wasm_v128_and(em, wasm_i32x4_splat(0x7fe000)), wasm_i32x4_splat(0)),
                                 wasm_i32x4_splat(0x400000));
    v128_t inf_nan = wasm_v128_or(wasm_v128_or(em, wasm_i32x4_splat(0x7f800000)), quiet);
    return wasm_v128_or(sign, wasm_v128_bitselect(inf_nan, f, special));
}

static inline v128_t load_bf16(const void *p, int64_t i)
{
    return wasm_i32x4_shl(wasm_u32x4_load16x4((const uint16_t *)p + i), 16);
}

static inline float one_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }
static inline float one_f16(const void *p, int64_t i) { return lb_f16_to_f32(((const lb_f16 *)p)[i]); }
static inline float one_bf16(const void *p, int64_t i) { return lb_bf16_to_f32(((const lb_bf16 *)p)[i]); }

#define DOT_FLOAT(NAME, LOAD, ONE)                                                        \
    static void NAME(int64_t n, float *s, const void *w, const void *a)                   \
    {                                                                                     \
        const float *y = a;     /* [n] */                                                 \
        v128_t acc[8];                                                                    \
        for (int k = 0; k < 8; k++)                                                       \
            acc[k] = wasm_f32x4_splat(0.0f);                                              \
        int64_t i = 0;                                                                    \
        for (; i + 32 <= n; i += 32)                                                      \
            for (int k = 0; k < 8; k++)                                                   \
                acc[k] = wasm_f32x4_add(acc[k], wasm_f32x4_mul(LOAD(w, i + 4 * k), wasm_v128_load(y + i + 4 * k))); \
        for (; i + 8 <= n; i += 8) {                                                      \
            acc[0] = wasm_f32x4_add(acc[0], wasm_f32x4_mul(LOAD(w, i), wasm_v128_load(y + i)));             \
            acc[1] = wasm_f32x4_add(acc[1], wasm_f32x4_mul(LOAD(w, i + 4), wasm_v128_load(y + i + 4)));     \
        }                                                                                 \
        float tail = 0.0f;                                                                \
        for (; i < n; i++)                                                                \
            tail += ONE(w, i) * y[i];                                                     \
        for (int k = 0; k < 4; k++)                                                       \
            acc[k] = wasm_f32x4_add(acc[k], acc[k + 4]);                                  \
        v128_t r = wasm_f32x4_add(wasm_f32x4_add(acc[0], acc[1]), wasm_f32x4_add(acc[2], acc[3]));        \
        *s = (wasm_f32x4_extract_lane(r, 0) + wasm_f32x4_extract_lane(r, 1)) +            \
             (wasm_f32x4_extract_lane(r, 2) + wasm_f32x4_extract_lane(r, 3)) + tail;      \
    }

DOT_FLOAT(dot_f32, load_f32, one_f32)
DOT_FLOAT(dot_f16, load_f16, one_f16)
DOT_FLOAT(dot_bf16, load_bf16, one_bf16)

static void dequant_f16(const void *src, float *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(dst + i, load_f16(src, i));
    for (; i < n; i++)
        dst[i] = one_f16(src, i);
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(dst + i, load_bf16(src, i));
    for (; i < n; i++)
        dst[i] = one_bf16(src, i);
}

/* Same operations per element as the scalar version, so results are bit-identical. */
static void axpy_f32(int64_t n, float a, const float *x, float *y)
{
    const v128_t va = wasm_f32x4_splat(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(va, wasm_v128_load(x + i))));
    for (; i < n; i++)
        y[i] += a * x[i];
}

void lb__kernels_register_wasm_float(lb_kernel_set *k)
{
    k->axpy_f32 = axpy_f32;
    k->vec_dot[LB_TYPE_F32] = dot_f32;
    k->vec_dot[LB_TYPE_F16] = dot_f16;
    k->vec_dot[LB_TYPE_BF16] = dot_bf16;
    k->dequant[LB_TYPE_F16] = dequant_f16;
    k->dequant[LB_TYPE_BF16] = dequant_bf16;
}
#endif
