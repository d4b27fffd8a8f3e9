/* Scalar conversions between float and the 16-bit float formats stored in
 * GGUF files (IEEE half and bfloat16).  Exact, portable, no intrinsics: the
 * SIMD kernels have their own conversions and are tested against these. */
#ifndef LB_BASE_FP16_H
#define LB_BASE_FP16_H

#include <stdint.h>
#include <string.h>

typedef uint16_t lb_f16;   /* IEEE 754 binary16 bits */
typedef uint16_t lb_bf16;  /* bfloat16 bits */

static inline uint32_t lb__f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float lb__bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float lb_f16_to_f32(lb_f16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f)                      /* inf / nan (a nan comes out quiet, as F16C does) */
        return lb__bits_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0));
    if (exp == 0) {
        if (man == 0)
            return lb__bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return lb__bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* Round to nearest even, as the F16C instruction does. */
static inline lb_f16 lb_f32_to_f16(float f)
{
    uint32_t x = lb__f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)                /* inf, or nan: quiet, top payload bits kept, as F16C does */
        return (lb_f16)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u)                /* rounds to >= 65536: overflow to inf */
        return (lb_f16)(sign | 0x7c00);
    if (ax < 0x38800000u) {               /* below the smallest normal half: subnormal or 0 */
        /* value in units of 2^-24, rounded to nearest even */
        float v = lb__bits_f32(ax) * 16777216.0f;
        uint32_t i = (uint32_t)v;
        float frac = v - (float)i;
        if (frac > 0.5f || (frac == 0.5f && (i & 1)))
            i++;
        return (lb_f16)(sign | i);
    }
    uint32_t e = (ax >> 23) - 112;
    uint32_t m = ax & 0x7fffffu;
    uint32_t h = (e << 10) | (m >> 13);
    uint32_t rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++;                                /* carries into the exponent correctly */
    return (lb_f16)(sign | h);
}

static inline float lb_bf16_to_f32(lb_bf16 b) { return lb__bits_f32((uint32_t)b << 16); }

static inline lb_bf16 lb_f32_to_bf16(float f)
{
    uint32_t x = lb__f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)  /* nan: keep it a quiet nan */
        return (lb_bf16)((x >> 16) | 0x40);
    return (lb_bf16)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

#endif
