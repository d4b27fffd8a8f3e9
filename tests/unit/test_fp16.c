/* Tests the portable float <-> f16/bf16 conversions of base/fp16.h: against
 * the F16C instructions (when the CPU has them) for every half value and
 * many floats, and against an independent nearest-even rule for both. */
#include "check.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

#include "base/fp16.h"
#include "kernels/kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_F16C_CODE 1
__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
#else
#define HAVE_F16C_CODE 0
#endif

static uint64_t rng_state = 0x13198a2e03707344ull;
static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int is_nan_h(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
static int is_nan_b(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f); }

/* Floats that stress rounding: exact halves between neighbours (ties), one
 * bit either side of them, subnormal halves, the overflow edge, inf, nan. */
static int interesting_floats(float *out, int cap)
{
    int k = 0;
    for (uint32_t h = 0; h < 0x7c00 && k + 6 <= cap; h += 7) {
        float lo = lb_f16_to_f32((uint16_t)h), hi = lb_f16_to_f32((uint16_t)(h + 1));
        float mid = (float)(((double)lo + hi) / 2);   /* exact: fits in float */
        uint32_t mb = lb__f32_bits(mid);
        out[k++] = mid;
        out[k++] = lb__bits_f32(mb + 1);
        out[k++] = lb__bits_f32(mb - 1);
        out[k++] = -mid;
        out[k++] = lo;
        out[k++] = -hi;
    }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.99f, 65520.0f,
                             -65520.0f, 1e10f, 1e-10f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f,
                             6.097555e-5f, 6.1035156e-5f, FLT_MIN, 1e-45f, FLT_MAX};
    for (size_t i = 0; i < sizeof special / sizeof special[0] && k < cap; i++)
        out[k++] = special[i];
    while (k < cap)
        out[k++] = lb__bits_f32((uint32_t)rng_u64());   /* any bit pattern, nan included */
    return k;
}

static float fl[200000];

static void test_f16_vs_f16c(void)
{
    if (!HAVE_F16C_CODE || !lb_cpu()->f16c) {
        printf("note: no F16C on this CPU, hardware comparison skipped\n");
        return;
    }
#if HAVE_F16C_CODE
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = lb_f16_to_f32((uint16_t)h), b = hw_h2f((uint16_t)h);
        if (lb__f32_bits(a) != lb__f32_bits(b) && bad++ < 5)
            CHECKF(0, "f16 %04x -> %08x, F16C %08x", h, lb__f32_bits(a), lb__f32_bits(b));
    }
    CHECKF(bad == 0, "%d of 65536 halves convert differently", bad);
    int n = interesting_floats(fl, (int)(sizeof fl / sizeof fl[0]));
    bad = 0;
    for (int i = 0; i < n; i++) {
        uint16_t a = lb_f32_to_f16(fl[i]), b = hw_f2h(fl[i]);
        if (a != b && bad++ < 5)
            CHECKF(0, "float %08x -> %04x, F16C %04x", lb__f32_bits(fl[i]), a, b);
    }
    CHECKF(bad == 0, "%d of %d floats convert differently", bad, n);
#endif
}

/* Independent of the hardware: every non-NaN half round-trips, and a float
 * goes to the nearer of its two neighbouring halves, the even one on a tie. */
static void test_f16_rules(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        if (is_nan_h((uint16_t)h)) {
            CHECK(isnan(lb_f16_to_f32((uint16_t)h)));
            CHECK(is_nan_h(lb_f32_to_f16(lb_f16_to_f32((uint16_t)h))));
            continue;
        }
        uint16_t back = lb_f32_to_f16(lb_f16_to_f32((uint16_t)h));
        if (back != h)
            CHECKF(0, "half %04x round-trips to %04x", h, back);
    }
    int n = interesting_floats(fl, (int)(sizeof fl / sizeof fl[0]));
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float f = fl[i];
        uint16_t h = lb_f32_to_f16(f);
        if (isnan(f)) {
            CHECK(is_nan_h(h));
            continue;
        }
        double af = fabs((double)f);
        uint16_t mag = h & 0x7fff;
        int ok;
        if (af >= 65520.0) {
            ok = mag == 0x7c00;             /* at or past max + half an ulp: inf */
        } else {
            double v = lb_f16_to_f32(mag);
            double below = mag ? lb_f16_to_f32((uint16_t)(mag - 1)) : -1;
            double above = lb_f16_to_f32((uint16_t)(mag + 1));
            if (mag == 0x7bff)
                above = 65536.0;
            double e = fabs(v - af);
            ok = e <= fabs(above - af) && (mag == 0 || e <= fabs(af - below));
            if (e == fabs(above - af) || (mag && e == fabs(af - below)))
                ok = ok && (e == 0 || (mag & 1) == 0);   /* a tie goes to even */
        }
        ok = ok && (af == 0 || ((h >> 15) == (lb__f32_bits(f) >> 31)));
        if (!ok && bad++ < 5)
            CHECKF(0, "float %.9g (%08x) -> half %04x", f, lb__f32_bits(f), h);
    }
    CHECKF(bad == 0, "%d floats rounded wrongly", bad);
}

/* bfloat16 is the top half of a float: exact round trip, nearest-even narrowing. */
static void test_bf16_rules(void)
{
    for (uint32_t b = 0; b < 65536; b++) {
        float f = lb_bf16_to_f32((uint16_t)b);
        CHECK(lb__f32_bits(f) == b << 16);
        if (!is_nan_b((uint16_t)b)) {
            if (lb_f32_to_bf16(f) != b)
                CHECKF(0, "bf16 %04x round-trips to %04x", b, lb_f32_to_bf16(f));
        } else {
            CHECK(is_nan_b(lb_f32_to_bf16(f)));
        }
    }
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t x = (uint32_t)rng_u64();
        if (i % 4 == 0)
            x = (x & 0xffff0000u) | 0x8000u;    /* exact ties */
        float f = lb__bits_f32(x);
        uint16_t b = lb_f32_to_bf16(f);
        if (isnan(f)) {
            CHECK(is_nan_b(b));
            continue;
        }
        uint32_t lo = x & 0xffff0000u, rest = x & 0xffffu;
        uint32_t want = lo >> 16;
        if (rest > 0x8000u || (rest == 0x8000u && (want & 1)))
            want++;   /* carries into the exponent, up to inf, as IEEE rounding does */
        if (b != (uint16_t)want && bad++ < 5)
            CHECKF(0, "float %08x -> bf16 %04x, want %04x", x, b, want);
    }
    CHECKF(bad == 0, "%d floats narrowed wrongly to bf16", bad);
}

int main(void)
{
    RUN(test_f16_vs_f16c);
    RUN(test_f16_rules);
    RUN(test_bf16_rules);
    return check_done();
}
