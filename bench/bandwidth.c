/* lowbit-bandwidth: sequential read bandwidth of main memory with 1..T threads, the ceiling for decode speed (bench/roofline.sh).
 *
 *   lowbit-bandwidth [-s MIB] [-t THREADS] [-r PASSES] [-o md|csv] [--scalar]
 *
 * Each pass reads the whole buffer once (every thread its own contiguous
 * slice) and times from a common start to the last thread's end.  The buffer
 * (default 1 GiB) is far larger than any cache, so this is DRAM bandwidth.
 * Loads are AVX2 when the CPU has it (checked at run time; the loop is
 * compiled for AVX2 with a target attribute, so the binary runs anywhere),
 * else 64-bit scalar.  GB/s are 10^9 bytes per second; the median of the
 * passes is the figure to use, after one warm-up pass. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#define MAX_THREADS 64

typedef uint64_t (*read_fn)(const uint8_t *p, size_t n);

/* The sums are returned and folded into a volatile so the loads cannot be
 * optimised away; four independent accumulators keep several loads in flight. */
static uint64_t read_scalar(const uint8_t *p, size_t n)
{
    const uint64_t *q = (const uint64_t *)(const void *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 8 <= n / 8; i += 8) {
        a ^= q[i] + q[i + 4];
        b ^= q[i + 1] + q[i + 5];
        c ^= q[i + 2] + q[i + 6];
        d ^= q[i + 3] + q[i + 7];
    }
    return a ^ b ^ c ^ d;
}

#ifdef HAVE_X86
__attribute__((target("avx2")))
static uint64_t read_avx2(const uint8_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(const void *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(const void *)(p + i + 32)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(const void *)(p + i + 64)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(const void *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)(void *)out, a);
    return out[0] ^ out[1] ^ out[2] ^ out[3];
}
#endif

typedef struct worker {
    pthread_t th;
    const uint8_t *p;         /* this thread's slice of the buffer */
    size_t n;                 /* bytes, a multiple of 128 */
    int passes;
    read_fn fn;
    pthread_barrier_t *start, *end;
    uint64_t sink;
} worker;

static void *run_worker(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->passes; i++) {
        pthread_barrier_wait(w->start);
        w->sink ^= w->fn(w->p, w->n);
        pthread_barrier_wait(w->end);
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static volatile uint64_t g_sink;

/* Runs passes+1 passes with nt threads (the first is a warm-up); gbs gets [passes] GB/s, sorted. */
static int measure(const uint8_t *buf, size_t size, int nt, int passes, read_fn fn, double *gbs)
{
    worker w[MAX_THREADS];
    pthread_barrier_t start, end;
    int total = passes + 1;
    pthread_barrier_init(&start, NULL, (unsigned)nt + 1);
    pthread_barrier_init(&end, NULL, (unsigned)nt + 1);
    size_t slice = size / (size_t)nt / 128 * 128;
    for (int i = 0; i < nt; i++) {
        w[i] = (worker){.p = buf + (size_t)i * slice, .n = slice, .passes = total, .fn = fn,
                        .start = &start, .end = &end};
        if (pthread_create(&w[i].th, NULL, run_worker, &w[i]) != 0) {
            fprintf(stderr, "lowbit-bandwidth: pthread_create failed\n");
            exit(1);   /* a benchmark tool, not the library: nothing to unwind */
        }
    }
    for (int k = 0; k < total; k++) {
        pthread_barrier_wait(&start);
        double t0 = now_s();
        pthread_barrier_wait(&end);
        double dt = now_s() - t0;
        if (k > 0)
            gbs[k - 1] = (double)slice * (double)nt / dt / 1e9;
    }
    for (int i = 0; i < nt; i++) {
        pthread_join(w[i].th, NULL);
        g_sink ^= w[i].sink;
    }
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&end);
    qsort(gbs, (size_t)passes, sizeof *gbs, cmp_double);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lowbit-bandwidth [-s MIB] [-t THREADS] [-r PASSES] [-o md|csv] [--scalar]\n"
               "  -s MIB      buffer size (default 1024)\n"
               "  -t THREADS  measure 1..THREADS threads (default 2)\n"
               "  -r PASSES   timed passes per thread count, after one warm-up (default 7)\n"
               "  -o FORMAT   md (default) or csv: threads,median_gbs,min_gbs,max_gbs,loads\n"
               "  --scalar    64-bit scalar loads even where AVX2 is available\n");
}

int main(int argc, char **argv)
{
    long mib = 1024, max_t = 2, passes = 7;
    int csv = 0, scalar = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long *dst = !strcmp(a, "-s") ? &mib : !strcmp(a, "-t") ? &max_t : !strcmp(a, "-r") ? &passes : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (dst && v) {
            *dst = strtol(v, &end, 10);
            if (*end || *dst < 1) {
                fprintf(stderr, "lowbit-bandwidth: %s takes a positive integer, not '%s'\n", a, v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--scalar")) {
            scalar = 1;
        } else if (!strcmp(a, "-o") && v && (!strcmp(v, "csv") || !strcmp(v, "md"))) {
            csv = !strcmp(v, "csv");
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (max_t > MAX_THREADS || passes > 1000 || mib > (1L << 20)) {
        fprintf(stderr, "lowbit-bandwidth: at most %d threads, 1000 passes, 1 TiB\n", MAX_THREADS);
        return 2;
    }

    size_t size = (size_t)mib << 20;
    uint8_t *buf = NULL;   /* [size] bytes, 64-byte aligned */
    if (posix_memalign((void **)&buf, 64, size) != 0) {
        fprintf(stderr, "lowbit-bandwidth: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    /* Touch every page with nonzero bytes so no pass reads the shared zero page. */
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)(i * 131u + 7u);

    read_fn fn = read_scalar;
    const char *loads = "scalar";
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (!scalar && __builtin_cpu_supports("avx2")) {
        fn = read_avx2;
        loads = "avx2";
    }
#endif
    double *gbs = malloc((size_t)passes * sizeof *gbs);   /* [passes] GB/s of each timed pass */
    if (!gbs)
        return 1;
    if (csv)
        printf("threads,median_gbs,min_gbs,max_gbs,loads\n");
    else
        printf("sequential read, %ld MiB buffer, %s loads, median of %ld passes (GB/s = 1e9 B/s)\n\n"
               "| threads | median GB/s | min | max |\n|---:|---:|---:|---:|\n", mib, loads, passes);
    for (int nt = 1; nt <= max_t; nt++) {
        measure(buf, size, nt, (int)passes, fn, gbs);
        double med = passes % 2 ? gbs[passes / 2] : 0.5 * (gbs[passes / 2 - 1] + gbs[passes / 2]);
        if (csv)
            printf("%d,%.2f,%.2f,%.2f,%s\n", nt, med, gbs[0], gbs[passes - 1], loads);
        else
            printf("| %d | %.2f | %.2f | %.2f |\n", nt, med, gbs[0], gbs[passes - 1]);
        fflush(stdout);
    }
    free(gbs);
    free(buf);
    return 0;
}
