/* Builds the kernel sets once: scalar references first, then each ISA's
 * variants on top where the build targets it and the CPU has the features. */
#include "kernels.h"

#include "base/once.h"

#include <stdlib.h>
#include <string.h>

static lb_kernel_set scalar_set, avx2_set, avx512_set, wasm_set, neon_set, neon_dotprod_set;
static bool avx2_ok, avx512_ok, wasm_ok, neon_ok, neon_dotprod_ok;
static const lb_kernel_set *best_set;   /* what lb_kernels() returns */
static lb_once sets_once = LB_ONCE_INIT;

static void axpy_f32(int64_t n, float a, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void fill_from_ref(lb_kernel_set *k, const char *isa)
{
    k->isa = isa;
    k->axpy_f32 = axpy_f32;
    k->fmath = lb__fmath_ref;
    k->kvq = lb__kvq_ref;
    for (int t = 0; t < LB_TYPE_COUNT; t++) {
        const lb_quant_traits *q = lb_quant_ref((uint32_t)t);
        if (!q)
            continue;
        k->vec_dot[t] = q->vec_dot;
        k->dequant[t] = q->dequant;
        k->quantize[t] = q->quantize;
    }
}

/* The fastest set built, unless LB_ISA caps it: "scalar" for the
 * references, "avx2" for AVX2 where AVX-512 would be chosen (to compare). */
static const lb_kernel_set *choose(void)
{
    const char *cap = getenv("LB_ISA");
    if (cap && strcmp(cap, "scalar") == 0)
        return &scalar_set;
    if (avx512_ok && !(cap && strcmp(cap, "avx2") == 0))
        return &avx512_set;
    if (avx2_ok)
        return &avx2_set;
    if (neon_ok)
        return neon_dotprod_ok ? &neon_dotprod_set : &neon_set;
    return wasm_ok ? &wasm_set : &scalar_set;
}

static void build(void)
{
    fill_from_ref(&scalar_set, "scalar");
#if defined(__x86_64__) || defined(__i386__)
    const lb_cpu_features *f = lb_cpu();
    if (f->avx2 && f->fma && f->f16c) {
        fill_from_ref(&avx2_set, "avx2");
        lb__kernels_register_avx2_float(&avx2_set);
        lb__kernels_register_avx2_q32(&avx2_set);
        lb__kernels_register_avx2_k(&avx2_set);
        lb__kernels_register_avx2_gemm(&avx2_set);
        lb__kernels_register_avx2_lbq(&avx2_set);   /* after _k: reuses its A8_K quantizer */
        lb__kernels_register_avx2_lbqv(&avx2_set);
        lb__fmath_register_avx2(&avx2_set.fmath);
        lb__kvq_register_avx2(&avx2_set.kvq);
        avx2_set.fmath.isa = avx2_set.kvq.isa = "avx2";
        avx2_ok = true;
        /* VNNI's byte and word dot products replace maddubs/madd/add chains;
         * what it does not speed up stays AVX2. */
        if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni) {
            avx512_set = avx2_set;
            avx512_set.isa = "avx512";
            lb__kernels_register_avx512_q32(&avx512_set);
            lb__kernels_register_avx512_k(&avx512_set);
            lb__kernels_register_avx512_lbq(&avx512_set);
            lb__kernels_register_avx512_gemm(&avx512_set);
            lb__fmath_register_avx512(&avx512_set.fmath);
            avx512_set.fmath.isa = "avx512";
            /* LBQV's table lookups, parity and bit transposes need byte
             * permutes, byte popcounts and GF2P8AFFINEQB */
            if (f->avx512vbmi && f->avx512bitalg && f->gfni)
                lb__kernels_register_avx512_lbqv(&avx512_set);
            avx512_ok = true;
        }
    }
#endif
    /* WebAssembly has no run-time feature test: a module built with
     * -msimd128 fails to load where SIMD is missing, so the host picks the
     * build (web/ detects SIMD and loads the scalar build otherwise). */
#if defined(__wasm_simd128__)
    fill_from_ref(&wasm_set, "wasm-simd128");
    lb__kernels_register_wasm_float(&wasm_set);
    lb__kernels_register_wasm_q32(&wasm_set);
    lb__kernels_register_wasm_k(&wasm_set);
    lb__kernels_register_wasm_lbq(&wasm_set);
    lb__kernels_register_wasm_lbqv(&wasm_set);
    lb__fmath_register_wasm(&wasm_set.fmath);
    lb__kvq_register_wasm(&wasm_set.kvq);
    wasm_set.fmath.isa = wasm_set.kvq.isa = "wasm-simd128";
    wasm_ok = true;
#endif
    /* Advanced SIMD is part of every AArch64 CPU. */
#if defined(__aarch64__) && defined(__ARM_NEON)
    fill_from_ref(&neon_set, "neon");
    lb__kernels_register_neon_float(&neon_set);
    lb__kernels_register_neon_q32(&neon_set);
    lb__kernels_register_neon_k(&neon_set);
    lb__kernels_register_neon_lbq(&neon_set);   /* after _k: reuses its A8_K quantizer */
    lb__fmath_register_neon(&neon_set.fmath);
    lb__kvq_register_neon(&neon_set.kvq);
    neon_set.fmath.isa = neon_set.kvq.isa = "neon";
    neon_ok = true;
    if (lb_cpu()->neon_dotprod) {
        neon_dotprod_set = neon_set;
        neon_dotprod_set.isa = "neon-dotprod";
        lb__kernels_register_neon_dotprod_q32(&neon_dotprod_set);
        lb__kernels_register_neon_dotprod_k(&neon_dotprod_set);
        lb__kernels_register_neon_dotprod_lbq(&neon_dotprod_set);
        neon_dotprod_ok = true;
    }
#endif
    best_set = choose();
}

const lb_kernel_set *lb_kernels_scalar(void)
{
    lb_once_run(&sets_once, build);
    return &scalar_set;
}

const lb_kernel_set *lb_kernels_avx2(void)
{
    lb_once_run(&sets_once, build);
    return avx2_ok ? &avx2_set : NULL;
}

const lb_kernel_set *lb_kernels_avx512(void)
{
    lb_once_run(&sets_once, build);
    return avx512_ok ? &avx512_set : NULL;
}

const lb_kernel_set *lb_kernels_wasm(void)
{
    lb_once_run(&sets_once, build);
    return wasm_ok ? &wasm_set : NULL;
}

const lb_kernel_set *lb_kernels_neon(void)
{
    lb_once_run(&sets_once, build);
    return neon_ok ? &neon_set : NULL;
}

const lb_kernel_set *lb_kernels_neon_dotprod(void)
{
    lb_once_run(&sets_once, build);
    return neon_dotprod_ok ? &neon_dotprod_set : NULL;
}

int lb_kernels_variants(const lb_kernel_set **out, int max)
{
    const lb_kernel_set *all[5] = {lb_kernels_avx2(), lb_kernels_avx512(), lb_kernels_neon(),
                                   lb_kernels_neon_dotprod(), lb_kernels_wasm()};
    int n = 0;
    for (int i = 0; i < 5; i++)
        if (all[i] && n < max)
            out[n++] = all[i];
    return n;
}

const lb_kernel_set *lb_kernels(void)
{
    lb_once_run(&sets_once, build);
    return best_set;
}
