/* Tests of the sampler: greedy, reproducibility, the sampled distribution
 * against softmax computed here naively, each filter excluding exactly what
 * it should (also at a 150k vocabulary against a full-sort reference), the
 * repetition penalty, and non-finite logits. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "check.h"
#include "lowbit.h"

static uint64_t test_rng = 88172645463325252u;
static double urand(void)   /* xorshift64, only to make test logits */
{
    test_rng ^= test_rng << 13;
    test_rng ^= test_rng >> 7;
    test_rng ^= test_rng << 17;
    return (double)(test_rng >> 11) * 0x1.0p-53;
}

static lb_sampler_params plain(float temp)
{
    lb_sampler_params p = lb_sampler_default_params();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    return p;
}

static lb_sampler *make(const lb_sampler_params *p, int n_vocab)
{
    lb_sampler *s = NULL;
    lb_status st = lb_sampler_new(p, n_vocab, &s);
    CHECKF(st == LB_OK && s, "lb_sampler_new: %s", lb_status_str(st));
    return s;
}

/* Samples n times from a fresh copy of logits each time (the sampler may
 * modify them) and counts the results; returns how many were out of range. */
static int sample_counts(lb_sampler *s, const float *logits, int V, int n, long *counts)
{
    float *buf = malloc((size_t)V * sizeof *buf);
    int bad = 0;
    memset(counts, 0, (size_t)V * sizeof *counts);
    for (int i = 0; i < n; i++) {
        memcpy(buf, logits, (size_t)V * sizeof *buf);
        lb_token t = lb_sampler_sample(s, buf);
        if (t < 0 || t >= V)
            bad++;
        else
            counts[t]++;
    }
    free(buf);
    return bad;
}

/* Naive reference of the whole chain over V logits: expected probability of
 * every token after top-k, temperature, softmax, top-p, min-p, renormalise.
 * Uses a full sort, the thing the sampler avoids. */
typedef struct ref_entry { double x; int id; } ref_entry;
static int ref_cmp(const void *a, const void *b)
{
    const ref_entry *x = a, *y = b;
    if (x->x != y->x)
        return x->x > y->x ? -1 : 1;
    return x->id - y->id;
}

static void reference(const float *logits, int V, const lb_sampler_params *p, double *prob)
{
    ref_entry *e = malloc((size_t)V * sizeof *e);
    for (int i = 0; i < V; i++)
        e[i] = (ref_entry){logits[i], i};
    qsort(e, (size_t)V, sizeof *e, ref_cmp);
    int n = V;
    if (p->top_k > 0 && p->top_k < n)
        n = p->top_k;
    double *w = malloc((size_t)n * sizeof *w), z = 0;
    for (int i = 0; i < n; i++) {
        w[i] = exp((e[i].x - e[0].x) / p->temperature);
        z += w[i];
    }
    int keep = n;
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < n; i++) {
            cum += w[i] / z;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    int m = 1;
    while (m < keep && w[m] / z >= p->min_p * (w[0] / z))
        m++;
    keep = m;
    double s = 0;
    for (int i = 0; i < keep; i++)
        s += w[i];
    for (int i = 0; i < V; i++)
        prob[i] = 0;
    for (int i = 0; i < keep; i++)
        prob[e[i].id] = w[i] / s;
    free(w);
    free(e);
}

/* Max |observed - expected| over tokens, and whether any token with zero
 * expected probability was drawn. */
static double max_abs_diff(const long *counts, const double *prob, int V, long n, int *excluded_drawn)
{
    double d = 0;
    *excluded_drawn = 0;
    for (int i = 0; i < V; i++) {
        double f = (double)counts[i] / (double)n;
        if (fabs(f - prob[i]) > d)
            d = fabs(f - prob[i]);
        if (prob[i] == 0 && counts[i] > 0)
            (*excluded_drawn)++;
    }
    return d;
}

/* ----------------------------------------------------------------- tests */

static void test_defaults_and_args(void)
{
    lb_sampler_params p = lb_sampler_default_params();
    CHECK(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f);
    CHECK(p.repeat_penalty == 1.0f && p.repeat_last_n == 64 && p.seed == 42);

    lb_sampler *s = (lb_sampler *)&p;   /* must stay untouched on failure */
    CHECK(lb_sampler_new(&p, 0, &s) == LB_ERR_INVALID_ARG && s == (lb_sampler *)&p);
    CHECK(lb_sampler_new(NULL, 10, &s) == LB_ERR_INVALID_ARG);
    CHECK(lb_sampler_new(&p, 10, NULL) == LB_ERR_INVALID_ARG);
    lb_sampler_params q = p;
    q.temperature = NAN;
    CHECK(lb_sampler_new(&q, 10, &s) == LB_ERR_INVALID_ARG);
    q = p;
    q.repeat_penalty = 0.0f;
    CHECK(lb_sampler_new(&q, 10, &s) == LB_ERR_INVALID_ARG);
    q = p;
    q.repeat_last_n = -1;
    CHECK(lb_sampler_new(&q, 10, &s) == LB_ERR_INVALID_ARG);
    q = p;
    q.top_p = NAN;
    CHECK(lb_sampler_new(&q, 10, &s) == LB_ERR_INVALID_ARG);
    q = p;
    q.repeat_last_n = 0;   /* valid: no penalty window */
    s = make(&q, 10);
    lb_sampler_accept(s, 3);
    lb_sampler_free(s);
    lb_sampler_free(NULL);
    CHECK(lb_sampler_sample(NULL, NULL) == -1);
}

static void test_greedy(void)
{
    enum { V = 1000 };
    float x[V];
    for (int trial = 0; trial < 50; trial++) {
        lb_sampler_params p = lb_sampler_default_params();
        p.temperature = trial % 2 ? 0.0f : -1.0f;
        lb_sampler *s = make(&p, V);
        int best = 0;
        for (int i = 0; i < V; i++) {
            x[i] = (float)(urand() * 20 - 10);
            if (x[i] > x[best])
                best = i;
        }
        CHECK(lb_sampler_sample(s, x) == best);
        lb_sampler_free(s);
    }
    lb_sampler_params p = plain(0.0f);
    lb_sampler *s = make(&p, 5);
    float ties[5] = {1, 3, 2, 3, 3};
    CHECK(lb_sampler_sample(s, ties) == 1);
    lb_sampler_free(s);
}

static void test_seed_reproducible(void)
{
    enum { V = 300, N = 500 };
    float x[V], buf[V];
    for (int i = 0; i < V; i++)
        x[i] = (float)(urand() * 6);
    for (int variant = 0; variant < 2; variant++) {
        lb_sampler_params p = lb_sampler_default_params();
        p.top_k = variant ? 0 : 100;
        p.temperature = 1.5f;
        lb_token a[N], b[N], c[N];
        lb_token *seqs[3] = {a, b, c};
        uint64_t seeds[3] = {7, 7, 8};
        for (int k = 0; k < 3; k++) {
            p.seed = seeds[k];
            lb_sampler *s = make(&p, V);
            for (int i = 0; i < N; i++) {
                memcpy(buf, x, sizeof buf);
                seqs[k][i] = lb_sampler_sample(s, buf);
            }
            lb_sampler_free(s);
        }
        CHECK(memcmp(a, b, sizeof a) == 0);
        int differ = 0;
        for (int i = 0; i < N; i++)
            differ += a[i] != c[i];
        CHECKF(differ > N / 2, "seeds 7 and 8 agree on %d of %d draws", N - differ, N);
    }
}

static void check_distribution(const float *x, int V, lb_sampler_params p, long n, double tol, const char *what)
{
    long *counts = malloc((size_t)V * sizeof *counts);
    double *prob = malloc((size_t)V * sizeof *prob);
    lb_sampler *s = make(&p, V);
    CHECK(sample_counts(s, x, V, (int)n, counts) == 0);
    reference(x, V, &p, prob);
    int excluded = 0;
    double d = max_abs_diff(counts, prob, V, n, &excluded);
    /* Pearson chi-square over the kept tokens, against a loose bound:
     * mean = dof, sd = sqrt(2 dof); 6 sd is never reached by chance. */
    double chi = 0;
    int dof = -1;
    for (int i = 0; i < V; i++) {
        if (prob[i] > 0) {
            double e = prob[i] * (double)n;
            chi += (counts[i] - e) * (counts[i] - e) / e;
            dof++;
        }
    }
    CHECKF(d < tol, "%s: max |freq - p| = %.5f", what, d);
    CHECKF(excluded == 0, "%s: %d excluded tokens drawn", what, excluded);
    if (dof > 0 && dof < 1000)
        CHECKF(chi < dof + 6 * sqrt(2.0 * dof) + 10, "%s: chi2 %.1f with %d dof", what, chi, dof);
    lb_sampler_free(s);
    free(counts);
    free(prob);
}

static void test_distribution(void)
{
    const float x[8] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f, 1.5f, 0.2f};
    const long n = 200000;
    check_distribution(x, 8, plain(1.0f), n, 0.005, "softmax t=1");
    check_distribution(x, 8, plain(0.7f), n, 0.005, "softmax t=0.7");
    check_distribution(x, 8, plain(2.5f), n, 0.005, "softmax t=2.5");
    lb_sampler_params p = plain(1.0f);
    p.top_k = 3;
    check_distribution(x, 8, p, n, 0.005, "top_k=3");
    p = plain(0.9f);
    p.top_p = 0.8f;
    check_distribution(x, 8, p, n, 0.005, "top_p=0.8");
    p.top_k = 5;
    check_distribution(x, 8, p, n, 0.005, "top_k=5 top_p=0.8");
    p = plain(1.0f);
    p.min_p = 0.3f;
    check_distribution(x, 8, p, n, 0.005, "min_p=0.3");
    p.top_k = 6;
    check_distribution(x, 8, p, n, 0.005, "top_k=6 min_p=0.3");
}

static void test_top_k_1_is_greedy(void)
{
    enum { V = 2000 };
    float x[V];
    lb_sampler_params p = plain(1.0f);
    p.top_k = 1;
    lb_sampler *s = make(&p, V);
    int bad = 0;
    for (int trial = 0; trial < 100; trial++) {
        int best = 0;
        for (int i = 0; i < V; i++) {
            x[i] = (float)(urand() * 4);
            if (x[i] > x[best])
                best = i;
        }
        if (trial % 10 == 0)   /* a tie with a later id must not win */
            x[V - 1] = x[best];
        bad += lb_sampler_sample(s, x) != best;
    }
    CHECK(bad == 0);
    lb_sampler_free(s);
}

/* Probabilities 0.5, 0.3, 0.15, 0.05 at t = 1, shuffled over the ids. */
static void test_filters_exclude(void)
{
    const int V = 4;
    float x[4] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    long counts[4];
    const int n = 20000;
    int top_ks[3] = {0, 3, 4};
    for (int k = 0; k < 3; k++) {
        lb_sampler_params p = plain(1.0f);
        p.top_k = top_ks[k];
        p.top_p = 0.75f;   /* 0.5 + 0.3 >= 0.75: {1, 3} */
        lb_sampler *s = make(&p, V);
        sample_counts(s, x, V, n, counts);
        CHECKF(counts[0] == 0 && counts[2] == 0 && counts[1] > 0 && counts[3] > 0,
               "top_k=%d top_p: %ld %ld %ld %ld", p.top_k, counts[0], counts[1], counts[2], counts[3]);
        CHECK(fabs(counts[1] / (double)n - 0.625) < 0.02);
        lb_sampler_free(s);

        p.top_p = 0.0f;   /* keeps at least one token */
        s = make(&p, V);
        sample_counts(s, x, V, 200, counts);
        CHECK(counts[1] == 200);
        lb_sampler_free(s);

        p.top_p = 1.0f;
        p.min_p = 0.2f;   /* drops p < 0.1: only id 2 */
        s = make(&p, V);
        sample_counts(s, x, V, n, counts);
        CHECKF(counts[2] == 0 && counts[0] > 0 && counts[1] > 0 && counts[3] > 0, "top_k=%d min_p: %ld %ld %ld %ld",
               p.top_k, counts[0], counts[1], counts[2], counts[3]);
        lb_sampler_free(s);

        p.min_p = 5.0f;   /* above 1: only the maximum survives */
        s = make(&p, V);
        sample_counts(s, x, V, 200, counts);
        CHECK(counts[1] == 200);
        lb_sampler_free(s);
    }
}

/* A 150k vocabulary: the sampler's partial selections against the
 * full-sort reference, and the cost of one draw. */
static void test_large_vocab(void)
{
    enum { V = 150000 };
    float *x = malloc(V * sizeof *x);
    for (int i = 0; i < V; i++)
        x[i] = (float)(urand() * 8 - 4);
    for (int i = 0; i < 30; i++)   /* a few strong tokens scattered around */
        x[(int)(urand() * V)] = (float)(8 + urand() * 4);
    double *prob = malloc(V * sizeof *prob);
    long *counts = malloc(V * sizeof *counts);
    struct { int top_k; float top_p, min_p, temp; } cases[] = {
        {0, 0.9f, 0.0f, 1.0f},  {0, 0.95f, 0.05f, 0.8f},
        {40, 0.95f, 0.05f, 0.8f}, {1000, 0.99f, 0.0f, 1.3f}, {0, 1.0f, 0.02f, 1.0f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lb_sampler_params p = plain(cases[c].temp);
        p.top_k = cases[c].top_k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        reference(x, V, &p, prob);
        int kept = 0;
        for (int i = 0; i < V; i++)
            kept += prob[i] > 0;
        lb_sampler *s = make(&p, V);
        const int n = 1500;
        clock_t t0 = clock();   /* CPU time: the machine is shared */
        CHECK(sample_counts(s, x, V, n, counts) == 0);
        double us = (double)(clock() - t0) * 1e6 / CLOCKS_PER_SEC / n;
        int excluded = 0;
        double d = max_abs_diff(counts, prob, V, n, &excluded);
        printf("V=150k top_k=%d top_p=%.2f min_p=%.2f t=%.1f: %d kept, %.0f us CPU/draw (incl. a 600 KB copy), max diff %.4f\n", p.top_k,
               p.top_p, p.min_p, p.temperature, kept, us, d);
        CHECKF(excluded == 0, "case %zu: %d excluded tokens drawn", c, excluded);
        CHECKF(d < 0.045, "case %zu: max diff %.4f", c, d);
        lb_sampler_free(s);
    }
    free(x);
    free(prob);
    free(counts);
}

static void test_repeat_penalty(void)
{
    lb_sampler_params p = plain(0.0f);
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 3;
    lb_sampler *s = make(&p, 6);
    float pos[6] = {2.0f, 1.9f, -5, -5, -5, -5};
    lb_sampler_accept(s, 0);
    lb_sampler_accept(s, 0);
    lb_sampler_accept(s, 0);   /* penalised once, not three times */
    CHECK(lb_sampler_sample(s, pos) == 1);
    CHECKF(fabsf(pos[0] - 2.0f / 1.1f) < 1e-6f, "logit 0 became %f", pos[0]);
    CHECK(pos[1] == 1.9f);
    lb_sampler_free(s);

    s = make(&p, 6);
    float neg[6] = {-1.0f, -1.05f, -5, -5, -5, -5};
    lb_sampler_accept(s, 0);
    CHECK(lb_sampler_sample(s, neg) == 1);   /* -1.1 < -1.05 */
    /* The window is 3: after 0, 1 (its own pick), 4, 5 token 0 is out again. */
    lb_sampler_accept(s, 4);
    lb_sampler_accept(s, 5);
    float neg2[6] = {-1.0f, -1.05f, -5, -5, -5, -5};
    CHECK(lb_sampler_sample(s, neg2) == 0);
    /* Invalid ids are ignored by accept. */
    lb_sampler_accept(s, -3);
    lb_sampler_accept(s, 6);
    lb_sampler_free(s);

    p.repeat_penalty = 1.0f;
    s = make(&p, 6);
    lb_sampler_accept(s, 0);
    float same[6] = {2.0f, 1.9f, -5, -5, -5, -5};
    CHECK(lb_sampler_sample(s, same) == 0 && same[0] == 2.0f);
    lb_sampler_free(s);
}

static void test_non_finite(void)
{
    const int V = 6;
    float x[6] = {NAN, 1.0f, -INFINITY, 0.5f, NAN, 0.9f};
    long counts[6];
    lb_sampler_params p = plain(1.0f);
    lb_sampler *s = make(&p, V);
    CHECK(sample_counts(s, x, V, 5000, counts) == 0);
    CHECK(counts[0] == 0 && counts[2] == 0 && counts[4] == 0 && counts[1] > 0 && counts[3] > 0 && counts[5] > 0);
    lb_sampler_free(s);
    p.top_k = 2;
    s = make(&p, V);
    CHECK(sample_counts(s, x, V, 5000, counts) == 0);
    CHECK(counts[1] > 0 && counts[5] > 0 && counts[1] + counts[5] == 5000);
    lb_sampler_free(s);

    p = plain(0.0f);
    s = make(&p, V);
    float g[6] = {NAN, 1.0f, -INFINITY, 0.5f, NAN, 0.9f};
    CHECK(lb_sampler_sample(s, g) == 1);
    lb_sampler_free(s);

    /* +inf tokens share all the probability. */
    float inf[6] = {1.0f, INFINITY, 3.0f, INFINITY, NAN, -INFINITY};
    for (int k = 0; k < 3; k++) {
        p = plain(k == 0 ? 0.0f : 0.7f);
        p.top_k = k == 2 ? 3 : 0;
        p.top_p = 0.9f;
        s = make(&p, V);
        CHECK(sample_counts(s, inf, V, 4000, counts) == 0);
        if (k == 0)
            CHECK(counts[1] == 4000);
        else
            CHECKF(counts[1] + counts[3] == 4000 && counts[1] > 1000 && counts[3] > 1000, "%ld %ld", counts[1],
                   counts[3]);
        lb_sampler_free(s);
    }

    /* Nothing usable: -1, for every path, and no crash. */
    float none[6] = {NAN, -INFINITY, NAN, NAN, -INFINITY, NAN};
    for (int k = 0; k < 3; k++) {
        p = plain(k == 0 ? 0.0f : 1.0f);
        p.top_k = k == 2 ? 3 : 0;
        p.repeat_penalty = 1.3f;
        s = make(&p, V);
        lb_sampler_accept(s, 1);
        float buf[6];
        memcpy(buf, none, sizeof buf);
        CHECK(lb_sampler_sample(s, buf) == -1);
        lb_sampler_free(s);
    }
}

/* Top-k first looks for the k best within a margin of the largest logit
 * (8, then 16, 32, 64), and over everything when fewer than k are there:
 * the k best must come out either way, ties at the margin's edge included.
 * 3000 logits: the best at 10, k-1 more within 8 of it, 50 exactly 8 below
 * (the edge), the rest from 8 to 100 below; top_k from 1 to 300 so that
 * every margin succeeds for some k and fails for others. */
static void test_top_k_margins(void)
{
    enum { V = 3000 };
    static float x[V];
    const int ks[] = {1, 2, 7, 20, 40, 41, 60, 150, 300};
    for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
        const int k = ks[c];
        for (int i = 0; i < V; i++)
            x[i] = (float)(10.0 - 8.0 - urand() * 92.0);   /* from 8 to 100 below the best */
        for (int j = 0; j < 50; j++)
            x[(int)(urand() * V)] = 2.0f;              /* exactly 8 below: the first margin's edge */
        int best = (int)(urand() * V);
        x[best] = 10.0f;
        for (int j = 1; j < k && j < 10; j++)          /* a few clearly inside the margin */
            x[(best + 97 * j) % V] = (float)(10.0 - urand() * 7.9);
        lb_sampler_params p = plain(4.0f);   /* flat enough that every kept token is drawn now and then */
        p.top_k = k;
        char what[64];
        snprintf(what, sizeof what, "top_k=%d around the margins", k);
        check_distribution(x, V, p, 60000, 0.01, what);
    }
}

int main(void)
{
    RUN(test_defaults_and_args);
    RUN(test_greedy);
    RUN(test_seed_reproducible);
    RUN(test_distribution);
    RUN(test_top_k_1_is_greedy);
    RUN(test_filters_exclude);
    RUN(test_large_vocab);
    RUN(test_top_k_margins);
    RUN(test_repeat_penalty);
    RUN(test_non_finite);
    return check_done();
}
