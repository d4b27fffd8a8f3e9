/* Token sampling: the repetition penalty, then either greedy argmax or the
 * chain top-k -> temperature -> softmax -> top-p -> min-p -> draw, with a
 * seeded xoshiro256** generator so that a seed reproduces a generation.
 *
 * Cost: O(V) for greedy and for the chain without top-k, O(V log k) with
 * top-k.  The vocabulary is never fully sorted: top-p without top-k finds
 * its cut with a histogram of the softmax mass and sorts only the tokens
 * near the cut.
 *
 * Non-finite logits: NaN and -inf are never sampled; tokens at +inf share all
 * the probability; when no token has a usable logit the result is -1. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "kernels/fmath.h"
#include "lowbit.h"

/* The default seed, fixed so that runs are reproducible; UINT64_MAX asks
 * for a seed taken from the clock instead. */
#define DEFAULT_SEED 42u
#define MAX_REPEAT_LAST_N (1 << 20)
/* Top-p without top-k buckets candidates by d = (max - logit) / temperature
 * (weight e^-d), 1/BUCKET_SCALE wide; d >= BUCKET_LIMIT (weights below
 * ~1e-14) share the last bucket. */
#define BUCKET_SCALE 64
#define BUCKET_LIMIT 32
#define N_BUCKETS (BUCKET_LIMIT * BUCKET_SCALE + 1)

typedef struct cand {
    float v;      /* a logit, a distance d from the maximum, or an unnormalised weight */
    int32_t id;
} cand;

struct lb_sampler {
    lb_sampler_params p;
    int n_vocab;
    uint64_t rng[4];        /* xoshiro256** state */
    lb_token *recent;       /* [p.repeat_last_n] ring of the last accepted tokens */
    lb_token *recent_sorted;/* [p.repeat_last_n] scratch: penalise each token once */
    int n_recent, head;
    cand *cand;             /* [n_vocab] candidates of the current draw */
    int *ids;               /* [n_vocab] scratch: the ids top-k looks at */
    double hist[N_BUCKETS]; /* softmax mass per distance bucket (top-p without top-k) */
};

lb_sampler_params lb_sampler_default_params(void)
{
    lb_sampler_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = DEFAULT_SEED,
    };
    return p;
}

/* ------------------------------------------------------------------ RNG */

/* splitmix64 expands the 64-bit seed into xoshiro's 256-bit state, as its
 * authors recommend (an all-zero state would be a fixed point). */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4])
{
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static void rng_seed(uint64_t s[4], uint64_t seed)
{
    if (seed == UINT64_MAX)
        seed = lb_time_ns() ^ (uint64_t)(uintptr_t)s;
    for (int i = 0; i < 4; i++)
        s[i] = splitmix64(&seed);
}

/* -------------------------------------------------------------- lifecycle */

lb_status lb_sampler_new(const lb_sampler_params *p, int n_vocab, lb_sampler **out)
{
    if (!p || !out || n_vocab < 1)
        return LB_ERR_INVALID_ARG;
    if (isnan(p->temperature) || isinf(p->temperature) || isnan(p->top_p) || isnan(p->min_p) ||
        !(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty) || p->repeat_last_n < 0 ||
        p->repeat_last_n > MAX_REPEAT_LAST_N)
        return LB_ERR_INVALID_ARG;
    lb_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return LB_ERR_NOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->ids = malloc((size_t)n_vocab * sizeof *s->ids);
    if (p->repeat_last_n > 0) {
        s->recent = malloc((size_t)p->repeat_last_n * sizeof *s->recent);
        s->recent_sorted = malloc((size_t)p->repeat_last_n * sizeof *s->recent_sorted);
    }
    if (!s->cand || !s->ids || (p->repeat_last_n > 0 && (!s->recent || !s->recent_sorted))) {
        lb_sampler_free(s);
        return LB_ERR_NOMEM;
    }
    rng_seed(s->rng, p->seed);
    *out = s;
    return LB_OK;
}

void lb_sampler_free(lb_sampler *s)
{
    if (!s)
        return;
    free(s->cand);
    free(s->ids);
    free(s->recent);
    free(s->recent_sorted);
    free(s);
}

void lb_sampler_accept(lb_sampler *s, lb_token t)
{
    if (!s || s->p.repeat_last_n == 0 || t < 0 || t >= s->n_vocab)
        return;
    s->recent[s->head] = t;
    s->head = (s->head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n)
        s->n_recent++;
}

/* ------------------------------------------------------------ the steps */

static int cmp_token(const void *a, const void *b)
{
    lb_token x = *(const lb_token *)a, y = *(const lb_token *)b;
    return (x > y) - (x < y);
}

/* Each distinct recent token once, whatever its count: a positive logit is
 * divided by the penalty and a negative one multiplied, so a penalty > 1
 * always makes the token less likely. */
static void apply_repeat_penalty(lb_sampler *s, float *logits)
{
    const float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->n_recent == 0)
        return;
    memcpy(s->recent_sorted, s->recent, (size_t)s->n_recent * sizeof *s->recent);
    qsort(s->recent_sorted, (size_t)s->n_recent, sizeof *s->recent_sorted, cmp_token);
    for (int i = 0; i < s->n_recent; i++) {
        lb_token t = s->recent_sorted[i];
        if (i > 0 && t == s->recent_sorted[i - 1])
            continue;
        float x = logits[t];
        logits[t] = x > 0.0f ? x / pen : x * pen;
    }
}

/* The highest logit, ties to the lowest id; NaN never wins (x > best is false). */
static lb_token argmax(const float *x, int n)
{
    lb_token best = -1;
    float bv = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    }
    return best;
}

/* The total order the selections use: larger value first, then lower id,
 * so that equal logits resolve the same way greedy does. */
static inline int better(cand a, cand b) { return a.v > b.v || (a.v == b.v && a.id < b.id); }

static int cmp_better(const void *a, const void *b)
{
    cand x = *(const cand *)a, y = *(const cand *)b;
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

/* Restores the heap property of h[0..n) below i; the root is the worst entry. */
static void sift_down(cand *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(h[w], h[l]))
            w = l;
        if (r < n && better(h[w], h[r]))
            w = r;
        if (w == i)
            return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void heapify(cand *h, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift_down(h, n, i);
}

/* A logit usable for sampling: +inf becomes FLT_MAX so that differences to
 * the maximum stay finite; NaN and -inf return false. */
static inline int usable(float *v)
{
    if (!(*v > -INFINITY))
        return 0;
    if (*v == INFINITY)
        *v = FLT_MAX;
    return 1;
}

/* The k best usable logits among ids[0..n) (all ids when ids is NULL)
 * into out[0..return), unsorted, with a k-entry heap. */
static int heap_select(const float *x, const int *ids, int n, int k, cand *out)
{
    int m = 0;
    for (int j = 0; j < n; j++) {
        const int i = ids ? ids[j] : j;
        float v = x[i];
        if (!usable(&v))
            continue;
        cand c = {v, i};
        if (m < k) {
            out[m++] = c;
            if (m == k)
                heapify(out, k);
        } else if (v >= out[0].v && better(c, out[0])) {
            out[0] = c;
            sift_down(out, k, 0);
        }
    }
    return m;
}

/* How far below the largest logit the first try looks for the k best. */
#define TOP_K_MARGIN 8.0f

/* The k best usable logits into out[0..return), sorted best first.  The
 * heap pass over the whole vocabulary replaced its root thousands of times
 * per token (11 us for 4096 logits, most of a decode step's sampling): so
 * first the largest logit, then the ids within TOP_K_MARGIN of it, and the
 * heap only over those; if they are fewer than k, over everything.  Either
 * way the k best in the total order `better`, so the same list. */
static int top_k_logits(lb_sampler *s, const float *x, int n_vocab, int k, cand *out)
{
    const float top = lb_max_f32(n_vocab, x);   /* NaN never wins */
    int i, n = -1;
    for (float margin = TOP_K_MARGIN; n < 0 && margin <= 64.0f && top > -INFINITY && top < INFINITY; margin *= 2) {
        const float cut = top - margin;
        int m = 0;
        for (i = 0; i < n_vocab; i++)
            if (x[i] >= cut)
                s->ids[m++] = i;
        if (m >= k)
            n = heap_select(x, s->ids, m, k, out);
    }
    if (n < 0)
        n = heap_select(x, NULL, n_vocab, k, out);
    qsort(out, (size_t)n, sizeof *out, cmp_better);
    return n;
}

/* Draws from c[0..n) in proportion to the weights c[].v (not all zero). */
static lb_token draw(lb_sampler *s, const cand *c, int n)
{
    double total = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        total += c[i].v;
        if (c[i].v > 0.0f)
            last = i;
    }
    double u = rng_uniform(s->rng) * total, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += c[i].v;
        if (u < acc)
            return c[i].id;
    }
    return c[last].id;   /* u rounded up to the total */
}

/* The top-k path: candidates sorted, so min-p and top-p are prefixes. */
static lb_token sample_top_k(lb_sampler *s, const float *logits)
{
    const lb_sampler_params *p = &s->p;
    cand *c = s->cand;
    int n = top_k_logits(s, logits, s->n_vocab, p->top_k, c);
    if (n == 0)
        return -1;
    const float x0 = c[0].v, t = p->temperature;
    double z = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].v = expf((c[i].v - x0) / t);   /* the best has weight 1 */
        z += c[i].v;
    }
    int keep = n;
    if (p->top_p < 1.0f) {
        double cum = 0.0, target = (double)p->top_p * z;
        for (int i = 0; i < n; i++) {
            cum += c[i].v;
            if (cum >= target) {
                keep = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        const float thr = p->min_p < 1.0f ? p->min_p : 1.0f;
        int m = 1;
        while (m < keep && c[m].v >= thr)
            m++;
        keep = m;
    }
    return draw(s, c, keep);
}

/* Buckets are in logit order, so the nucleus is every bucket before the one
 * where the cumulative mass crosses top_p, plus a sorted prefix of that one. */
static inline int bucket_of(float d)
{
    return d < (float)BUCKET_LIMIT ? (int)(d * BUCKET_SCALE) : N_BUCKETS - 1;
}

static int cmp_distance(const void *a, const void *b)
{
    cand x = *(const cand *)a, y = *(const cand *)b;
    if (x.v != y.v)
        return x.v < y.v ? -1 : 1;
    return (x.id > y.id) - (x.id < y.id);
}

/* Cuts c[0..n) (distances, unordered) to the top-p nucleus measured against
 * the total weight z of the whole distribution; returns the new count. */
static int nucleus(lb_sampler *s, cand *c, int n, double target)
{
    const double *hist = s->hist;
    double cum = 0.0;
    int b = 0;
    while (b < N_BUCKETS && cum + hist[b] < target)
        cum += hist[b++];
    if (b == N_BUCKETS)
        return n;   /* rounding: everything is needed */
    int before = 0;
    for (int i = 0; i < n; i++)      /* buckets < b first, dropping those > b */
        if (bucket_of(c[i].v) < b) {
            cand t = c[before];
            c[before++] = c[i];
            c[i] = t;
        }
    int in = before;
    for (int i = before; i < n; i++)
        if (bucket_of(c[i].v) == b) {
            cand t = c[in];
            c[in++] = c[i];
            c[i] = t;
        }
    qsort(c + before, (size_t)(in - before), sizeof *c, cmp_distance);
    for (int i = before; i < in; i++) {
        cum += expf(-c[i].v);
        if (cum >= target)
            return i + 1;
    }
    return in;
}

/* Without top-k: one pass computes the softmax mass and keeps what min-p
 * keeps (its threshold only needs the maximum), also filling the bucket
 * histogram top-p needs.  Both cuts are measured against the full softmax,
 * so their order does not matter: each keeps a prefix of the sorted
 * distribution. */
static lb_token sample_full(lb_sampler *s, const float *logits)
{
    const lb_sampler_params *p = &s->p;
    cand *c = s->cand;
    float mx = lb_max_f32(s->n_vocab, logits);
    if (!usable(&mx))
        return -1;
    const float t = p->temperature;
    const float thr = p->min_p <= 0.0f ? 0.0f : p->min_p < 1.0f ? p->min_p : 1.0f;
    const bool top_p = p->top_p < 1.0f;
    if (top_p)
        memset(s->hist, 0, sizeof s->hist);
    double z = 0.0;
    int n = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        float v = logits[i];
        if (!usable(&v))
            continue;
        float d = (mx - v) / t;
        float w = expf(-d);
        z += w;
        if (w > 0.0f && w >= thr) {
            c[n++] = (cand){d, i};
            if (top_p)
                s->hist[bucket_of(d)] += w;
        }
    }
    if (top_p)
        n = nucleus(s, c, n, (double)p->top_p * z);
    for (int i = 0; i < n; i++)
        c[i].v = expf(-c[i].v);
    return draw(s, c, n);
}

lb_token lb_sampler_sample(lb_sampler *s, float *logits)
{
    if (!s || !logits)
        return -1;
    apply_repeat_penalty(s, logits);
    lb_token t;
    if (!(s->p.temperature > 0.0f))
        t = argmax(logits, s->n_vocab);
    else if (s->p.top_k > 0 && s->p.top_k < s->n_vocab)
        t = sample_top_k(s, logits);
    else
        t = sample_full(s, logits);
    if (t >= 0)
        lb_sampler_accept(s, t);
    return t;
}
