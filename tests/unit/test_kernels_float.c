/* Tests the float weight kernels (F32, F16, BF16) of every SIMD set of this
 * build (AVX2, NEON, WASM SIMD128): dot products against the
 * double-accumulating reference within a stated bound, dequantizers and axpy
 * bit for bit, at awkward lengths. */
#include "check.h"

#include <math.h>
#include <stdint.h>

#include "base/fp16.h"
#include "kernels/kernels.h"

static const int64_t lens[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 255, 256, 257, 511, 1023, 4096};
#define N_LENS (int)(sizeof lens / sizeof lens[0])
#define MAX_N 4096

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_sym(void) { return (float)((double)(rng_u64() >> 11) * (2.0 / 9007199254740992.0) - 1.0); }

enum { D_UNIFORM, D_ZERO, D_OUTLIER, D_MIXED_SCALE, D_CANCEL, D_COUNT };

static void fill(float *x, int64_t n, int dist)
{
    for (int64_t i = 0; i < n; i++) {
        switch (dist) {
        case D_UNIFORM: x[i] = rng_sym(); break;
        case D_ZERO: x[i] = 0.0f; break;
        case D_OUTLIER: x[i] = (i == n / 2) ? -3e4f : rng_sym(); break;
        case D_MIXED_SCALE: x[i] = rng_sym() * ldexpf(1.0f, (int)(rng_u64() % 28) - 14)   /* stays inside f16's range */; break;
        case D_CANCEL: x[i] = (i & 1) ? 1000.0f : -1000.0f; break;   /* sums cancel to ~0 */
        }
    }
}

static float xw[MAX_N], xa[MAX_N];              /* [MAX_N] weights and activations as float */
static uint16_t w16[MAX_N];                     /* [MAX_N] the weights as f16 or bf16 bits */
static float deq_ref[MAX_N], deq_simd[MAX_N + 1];   /* [MAX_N], plus a guard element */

static const void *as_type(lb_type t, int64_t n)
{
    if (t == LB_TYPE_F32)
        return xw;
    for (int64_t i = 0; i < n; i++)
        w16[i] = t == LB_TYPE_F16 ? lb_f32_to_f16(xw[i]) : lb_f32_to_bf16(xw[i]);
    return w16;
}

static float weight_value(lb_type t, int64_t i)
{
    return t == LB_TYPE_F32 ? xw[i] : t == LB_TYPE_F16 ? lb_f16_to_f32(w16[i]) : lb_bf16_to_f32(w16[i]);
}

static void dots(const lb_kernel_set *simd)
{
    const lb_kernel_set *ref = lb_kernels_scalar();
    const lb_type types[] = {LB_TYPE_F32, LB_TYPE_F16, LB_TYPE_BF16};
    for (int ti = 0; ti < 3; ti++) {
        lb_type t = types[ti];
        double worst = 0;
        for (int li = 0; li < N_LENS; li++) {
            int64_t n = lens[li];
            for (int dist = 0; dist < D_COUNT; dist++) {
                fill(xw, n, dist);
                fill(xa, n, (dist + 1) % D_COUNT);
                const void *w = as_type(t, n);
                float sr = 0, ss = 0;
                ref->vec_dot[t](n, &sr, w, xa);
                simd->vec_dot[t](n, &ss, w, xa);
                double mag = 0;
                for (int64_t i = 0; i < n; i++)
                    mag += fabs((double)weight_value(t, i) * xa[i]);
                /* the SIMD sum rounds at most n/32 + 12 times in a chain (four
                 * accumulators, one 8-wide step, horizontal adds, the tail);
                 * the reference once when it narrows its double to float */
                double bound = (double)(n / 32 + 13) * ldexp(1.0, -24) * mag + 1e-38;
                double err = fabs((double)sr - ss);
                CHECKF(err <= bound, "%s %s n=%lld dist %d: ref %.9g simd %.9g (bound %g)", simd->isa, lb_type_layout_of(t)->name,
                       (long long)n, dist, sr, ss, bound);
                if (mag > 0 && err / (ldexp(1.0, -24) * mag) > worst)
                    worst = err / (ldexp(1.0, -24) * mag);
            }
        }
        printf("  %s %-4s dot: worst |simd-ref| = %.3f * 2^-24 * sum|w*a| (bound allows %d at n=4096)\n",
               simd->isa, lb_type_layout_of(t)->name, worst, 4096 / 32 + 13);
    }
}

/* Every 16-bit pattern except NaNs (F16C quiets signalling NaNs), at every length. */
static void dequant(const lb_kernel_set *simd)
{
    const lb_kernel_set *ref = lb_kernels_scalar();
    const lb_type types[] = {LB_TYPE_F16, LB_TYPE_BF16};
    for (int ti = 0; ti < 2; ti++) {
        lb_type t = types[ti];
        uint16_t nanexp = t == LB_TYPE_F16 ? 0x7c00 : 0x7f80;
        for (uint32_t base = 0; base < 65536; base += MAX_N) {
            int64_t n = MAX_N;
            for (int64_t i = 0; i < n; i++) {
                uint16_t h = (uint16_t)(base + (uint32_t)i);
                if ((h & nanexp) == nanexp && (h & ~(nanexp | 0x8000)))
                    h = nanexp;   /* NaN payloads become inf here */
                w16[i] = h;
            }
            for (int li = 0; li < N_LENS; li++) {
                n = lens[li];
                int64_t off = (int64_t)(rng_u64() % (uint64_t)(MAX_N - n + 1));   /* unaligned starts too */
                ref->dequant[t](w16 + off, deq_ref, n);
                memset(deq_simd, 0xAB, sizeof deq_simd);
                simd->dequant[t](w16 + off, deq_simd, n);
                CHECKF(memcmp(deq_ref, deq_simd, (size_t)n * sizeof(float)) == 0, "%s %s dequant n=%lld base %u",
                       simd->isa, lb_type_layout_of(t)->name, (long long)n, base);
                uint32_t guard;
                memcpy(&guard, &deq_simd[n], 4);
                CHECKF(guard == 0xABABABABu, "%s dequant wrote past n=%lld", lb_type_layout_of(t)->name,
                       (long long)n);
            }
        }
    }
}

/* axpy: the same multiply and add per element, so bit for bit. */
static void axpy(const lb_kernel_set *simd)
{
    const lb_kernel_set *ref = lb_kernels_scalar();
    for (int li = 0; li < N_LENS; li++) {
        int64_t n = lens[li];
        fill(xw, n, D_UNIFORM);
        fill(deq_ref, n, D_MIXED_SCALE);
        memcpy(deq_simd, deq_ref, (size_t)n * sizeof(float));
        deq_simd[n] = 12345.0f;
        ref->axpy_f32(n, 0.37f, xw, deq_ref);
        simd->axpy_f32(n, 0.37f, xw, deq_simd);
        CHECKF(memcmp(deq_ref, deq_simd, (size_t)n * sizeof(float)) == 0 && deq_simd[n] == 12345.0f,
               "%s axpy n=%lld", simd->isa, (long long)n);
    }
}

static void test_simd_sets(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    if (ns == 0)
        printf("note: no SIMD kernel set in this build or CPU, SIMD comparison skipped\n");
    for (int i = 0; i < ns; i++) {
        dots(sets[i]);
        dequant(sets[i]);
        axpy(sets[i]);
    }
}

/* F32 entries stay the reference's: dequant is a copy in both sets. */
static void test_tables_complete(void)
{
    const lb_kernel_set *k = lb_kernels();
    CHECK(k->vec_dot[LB_TYPE_F32] && k->vec_dot[LB_TYPE_F16] && k->vec_dot[LB_TYPE_BF16]);
    CHECK(k->dequant[LB_TYPE_F32] && k->dequant[LB_TYPE_F16] && k->dequant[LB_TYPE_BF16]);
    printf("  best kernel set: %s\n", k->isa);
}

int main(void)
{
    RUN(test_tables_complete);
    RUN(test_simd_sets);
    return check_done();
}
