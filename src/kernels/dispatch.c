/* Builds the kernel sets once: scalar references first, then each ISA's
 * variants on top where the CPU has the features. */
#include "kernels.h"

#include "base/once.h"

static lb_kernel_set scalar_set, avx2_set;
static bool avx2_ok;
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
        lb__fmath_register_avx2(&avx2_set.fmath);
        lb__kvq_register_avx2(&avx2_set.kvq);
        avx2_set.fmath.isa = avx2_set.kvq.isa = "avx2";
        avx2_ok = true;
    }
#endif
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

const lb_kernel_set *lb_kernels(void)
{
    lb_once_run(&sets_once, build);
    return avx2_ok ? &avx2_set : &scalar_set;
}
