/* Float matrix products for the trainer: C = A . B in the one "broadcast A,
 * stream rows of B" form, which covers x . W^T (with W^T stored), dY . W and
 * dY^T . X through A's strides, so every product of training vectorizes
 * along the contiguous rows of B and C. */
#include <stdatomic.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tune/tune.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* A register tile of MR x NR: 4 rows x 2 AVX vectors = 8 accumulators, as
 * many as two FMA pipes of latency 4 need.  KC x NR floats of B (16 KiB)
 * stay in L1 while the MC rows of A are swept. */
#define MR 4
#define NR 16
#define KC 256
#define MC 64
#define NC 128

typedef struct gemm_job {
    int64_t M, N, K;
    const float *A;
    int64_t sam, sak;
    const float *B;
    int64_t ldb;
    float *C;
    int64_t ldc;
    bool acc;
    bool simd;
    int64_t n_mb, n_nb;    /* MC x NC items */
    atomic_long next;
} gemm_job;

static void tile_ref(int64_t mr, int64_t nr, int64_t kc, const float *A, int64_t sam, int64_t sak, const float *B,
                     int64_t ldb, float *C, int64_t ldc, bool acc)
{
    for (int64_t i = 0; i < mr; i++) {
        float row[NR];   /* [nr] */
        for (int64_t j = 0; j < nr; j++)
            row[j] = acc ? C[i * ldc + j] : 0.0f;
        for (int64_t k = 0; k < kc; k++) {
            float a = A[i * sam + k * sak];
            const float *b = B + k * ldb;
            for (int64_t j = 0; j < nr; j++)
                row[j] += a * b[j];
        }
        memcpy(C + i * ldc, row, (size_t)nr * sizeof(float));
    }
}

#ifdef HAVE_X86
__attribute__((target("avx2,fma"))) static void tile_avx2(int64_t kc, const float *A, int64_t sam, int64_t sak,
                                                          const float *B, int64_t ldb, float *C, int64_t ldc,
                                                          bool acc)
{
    __m256 c00, c01, c10, c11, c20, c21, c30, c31;
    if (acc) {
        c00 = _mm256_loadu_ps(C), c01 = _mm256_loadu_ps(C + 8);
        c10 = _mm256_loadu_ps(C + ldc), c11 = _mm256_loadu_ps(C + ldc + 8);
        c20 = _mm256_loadu_ps(C + 2 * ldc), c21 = _mm256_loadu_ps(C + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(C + 3 * ldc), c31 = _mm256_loadu_ps(C + 3 * ldc + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm256_setzero_ps();
    }
    const float *a0 = A, *a1 = A + sam, *a2 = A + 2 * sam, *a3 = A + 3 * sam;
    for (int64_t k = 0; k < kc; k++, B += ldb) {
        __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8);
        int64_t o = k * sak;
        __m256 x = _mm256_broadcast_ss(a0 + o);
        c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a1 + o);
        c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a2 + o);
        c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a3 + o);
        c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
    }
    _mm256_storeu_ps(C, c00), _mm256_storeu_ps(C + 8, c01);
    _mm256_storeu_ps(C + ldc, c10), _mm256_storeu_ps(C + ldc + 8, c11);
    _mm256_storeu_ps(C + 2 * ldc, c20), _mm256_storeu_ps(C + 2 * ldc + 8, c21);
    _mm256_storeu_ps(C + 3 * ldc, c30), _mm256_storeu_ps(C + 3 * ldc + 8, c31);
}
#endif

static void do_item(const gemm_job *j, int64_t item)
{
    int64_t mb = item % j->n_mb, nb = item / j->n_mb;
    int64_t m0 = mb * MC, m1 = m0 + MC < j->M ? m0 + MC : j->M;
    int64_t n0 = nb * NC, n1 = n0 + NC < j->N ? n0 + NC : j->N;
    if (j->K == 0 && !j->acc) {
        for (int64_t m = m0; m < m1; m++)
            memset(j->C + m * j->ldc + n0, 0, (size_t)(n1 - n0) * sizeof(float));
        return;
    }
    for (int64_t k0 = 0; k0 < j->K; k0 += KC) {
        int64_t kc = j->K - k0 < KC ? j->K - k0 : KC;
        bool acc = j->acc || k0 > 0;
        for (int64_t n = n0; n < n1; n += NR) {
            int64_t nr = n1 - n < NR ? n1 - n : NR;
            for (int64_t m = m0; m < m1; m += MR) {
                int64_t mr = m1 - m < MR ? m1 - m : MR;
                const float *Ap = j->A + m * j->sam + k0 * j->sak;
                const float *Bp = j->B + k0 * j->ldb + n;
                float *Cp = j->C + m * j->ldc + n;
#ifdef HAVE_X86
                if (j->simd && mr == MR && nr == NR) {
                    tile_avx2(kc, Ap, j->sam, j->sak, Bp, j->ldb, Cp, j->ldc, acc);
                    continue;
                }
#endif
                tile_ref(mr, nr, kc, Ap, j->sam, j->sak, Bp, j->ldb, Cp, j->ldc, acc);
            }
        }
    }
}

static void gemm_worker(void *ctx, int ith, int nth)
{
    gemm_job *j = ctx;
    (void)ith;
    (void)nth;
    int64_t n_items = j->n_mb * j->n_nb;
    for (int64_t it; (it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < n_items;)
        do_item(j, it);
}

void lb__sgemm(lb_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t sam, int64_t sak,
               const float *B, int64_t ldb, float *C, int64_t ldc, bool accumulate)
{
    if (M <= 0 || N <= 0)
        return;
    gemm_job j = {M, N, K, A, sam, sak, B, ldb, C, ldc, accumulate, false, (M + MC - 1) / MC, (N + NC - 1) / NC, 0};
#ifdef HAVE_X86
    /* LB_ISA=scalar (which caps lb_kernels()) selects the plain C path here too. */
    const lb_cpu_features *cf = lb_cpu();
    j.simd = cf->avx2 && cf->fma && strcmp(lb_kernels()->isa, "scalar") != 0;
#endif
    atomic_init(&j.next, 0);
    if (!pool || j.n_mb * j.n_nb == 1)
        gemm_worker(&j, 0, 1);
    else
        lb_pool_run_claimed(pool, gemm_worker, &j);
}
