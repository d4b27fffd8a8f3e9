/* Run-time CPU feature detection (never assume what the build machine had). */
#include "kernels.h"

#include "base/once.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)   /* the kernel's bit for SDOT/UDOT */
#endif
#endif

static lb_cpu_features feats;
static lb_once feats_once = LB_ONCE_INIT;

static void detect(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    feats.avx2 = __builtin_cpu_supports("avx2");
    feats.fma = __builtin_cpu_supports("fma");
    /* f16c has no __builtin_cpu_supports name in older compilers; every CPU
     * with AVX2 and FMA that exists also has F16C, and the check below
     * confirms it through CPUID leaf 1, ECX bit 29. */
    {
        unsigned a = 1, b = 0, c = 0, d = 0;
        __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d) : "c"(0));
        feats.f16c = (c >> 29) & 1;
    }
    feats.avx512f = __builtin_cpu_supports("avx512f");
    feats.avx512bw = __builtin_cpu_supports("avx512bw");
    feats.avx512vl = __builtin_cpu_supports("avx512vl");
    feats.avx512vnni = __builtin_cpu_supports("avx512vnni");
    feats.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
    feats.avx512bitalg = __builtin_cpu_supports("avx512bitalg");
    feats.gfni = __builtin_cpu_supports("gfni");
#endif
#if defined(__aarch64__) && defined(__linux__)
    feats.neon_dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
}

const lb_cpu_features *lb_cpu(void)
{
    lb_once_run(&feats_once, detect);
    return &feats;
}
