/* The weighted scale (and min) searches every quality quantizer starts from:
 * a dense grid of candidate scales, each refitted by weighted least squares,
 * then alternating re-rounding / refitting (Lloyd steps) until the error
 * stops falling. */
#include "quant/quantize.h"

#include <math.h>
#include <string.h>

/* The candidate grid: the extreme element maps to level (edge + t) for t in
 * [T_LO, T_HI] in steps of T_STEP.  llama.cpp's searches cover about
 * [-0.9, 0.9] in 0.05-0.1 steps; going further up (t > 0 clips the extreme
 * element) pays off on heavy-tailed rows. */
#define T_LO (-0.6f)
#define T_HI 1.2f
#define T_STEP 0.1f
#define LLOYD_MAX 6

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void lb__quant_weights(const float *x, const float *importance, int n, float *w)
{
    double s2 = 0;
    for (int i = 0; i < n; i++)
        s2 += (double)x[i] * x[i];
    /* A floor of a fraction of the mean square: pure x^2 would let the
     * search ignore small elements entirely, which costs accuracy on the
     * many near-zero weights of a real matrix. */
    float floor_ = (float)(0.25 * s2 / n), sigma2 = (float)(s2 / n);
    for (int i = 0; i < n; i++) {
        /* With an importance vector (the mean x^2 of the activations of
         * this column) the weight magnitude enters only softly: squaring it
         * again would stress large weights twice.  Measured on techdocs-28M
         * q2_K, 80 chunks: PPL 4.8384 with importance * sqrt(sigma^2 + x^2)
         * against 4.9011 with importance * (x^2 + floor). */
        w[i] = importance ? importance[i] * sqrtf(sigma2 + x[i] * x[i]) : x[i] * x[i] + floor_;
    }
}

/* ---- symmetric */

/* Rounds x * iscale into [lo, hi]; returns the weighted sums that decide the
 * least-squares scale: *sxl = sum w x L, *sll = sum w L^2. */
static void round_sym(int n, const float *x, const float *w, float iscale, int lo, int hi, int8_t *L,
                      double *sxl, double *sll)
{
    float a = 0, b = 0; /* float: n <= 256 terms of one sign pattern, ample precision */
    for (int i = 0; i < n; i++) {
        int l = clampi(lb__qround(x[i] * iscale), lo, hi);
        L[i] = (int8_t)l;
        float wl = w[i] * (float)l;
        a += wl * x[i];
        b += wl * (float)l;
    }
    *sxl = a;
    *sll = b;
}

float lb__search_sym(int n, const float *x, const float *w, int lo, int hi, int8_t *L)
{
    float amax = 0, xmax = 0;
    if (n <= 0 || n > 256)
        return 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            xmax = x[i];
        }
    }
    memset(L, 0, (size_t)n);
    if (!(amax > 0))
        return 0.0f;
    int8_t tmp[256]; /* [n], n <= 256 */
    /* With the least-squares scale for a rounding, the error is
     * sum w x^2 - sxl^2 / sll: maximise sxl^2 / sll. */
    double best = -1, best_d = 0;
    /* The extreme element may map to the negative edge (lo) or the positive
     * one (hi): with an asymmetric range the two differ. */
    for (int side = 0; side < 2; side++) {
        float edge = side == 0 ? (float)lo : (float)hi;
        if (edge == 0)
            continue;
        for (float t = T_LO; t <= T_HI + 1e-4f; t += T_STEP) {
            float target = edge + (edge < 0 ? -t : t);
            if (target * edge <= 0)
                continue;
            float iscale = target / xmax;
            double sxl, sll;
            round_sym(n, x, w, iscale, lo, hi, tmp, &sxl, &sll);
            if (sll > 0 && sxl * sxl / sll > best) {
                best = sxl * sxl / sll;
                best_d = sxl / sll;
                memcpy(L, tmp, (size_t)n);
            }
        }
    }
    if (best <= 0)
        return 0.0f;
    /* Lloyd steps: re-round with the fitted scale, refit, keep if better. */
    for (int it = 0; it < LLOYD_MAX; it++) {
        double sxl, sll;
        round_sym(n, x, w, (float)(1.0 / best_d), lo, hi, tmp, &sxl, &sll);
        if (!(sll > 0) || sxl * sxl / sll <= best * (1 + 1e-9))
            break;
        best = sxl * sxl / sll;
        best_d = sxl / sll;
        memcpy(L, tmp, (size_t)n);
    }
    return (float)best_d;
}

/* ---- affine */

typedef struct fit2 {
    double d, b, err;
} fit2;

/* Least-squares (d, b) for fixed L, and its weighted error; b forced <= 0
 * when b_nonpos.  err is INFINITY when no positive scale fits. */
static fit2 lsq_affine(int n, const float *x, const float *w, const uint8_t *L, bool b_nonpos)
{
    float fw = 0, fl = 0, fll = 0, fx = 0, fxl = 0, fxx = 0;
    for (int i = 0; i < n; i++) {
        float wi = w[i], l = (float)L[i], wx = wi * x[i];
        fw += wi;
        fl += wi * l;
        fll += wi * l * l;
        fx += wx;
        fxl += wx * l;
        fxx += wx * x[i];
    }
    /* the solve in double: the determinant below cancels */
    double sw = fw, sl = fl, sll = fll, sx = fx, sxl = fxl, sxx = fxx;
    fit2 f = {0, 0, INFINITY};
    double det = sw * sll - sl * sl;
    if (det > 0) {
        f.d = (sw * sxl - sx * sl) / det;
        f.b = (sll * sx - sl * sxl) / det;
    }
    if (det <= 0 || (b_nonpos && f.b > 0)) {
        f.b = 0;
        f.d = sll > 0 ? sxl / sll : 0;
    }
    if (!(f.d > 0))
        return f;
    /* sum w (d L + b - x)^2 expanded; clamped at 0 against rounding. */
    double e = sxx + f.d * f.d * sll + f.b * f.b * sw + 2 * f.d * f.b * sl - 2 * f.d * sxl - 2 * f.b * sx;
    f.err = e > 0 ? e : 0;
    return f;
}

float lb__search_affine(int n, const float *x, const float *w, int nmax, bool b_nonpos, uint8_t *L, float *b)
{
    *b = 0;
    if (n <= 0 || n > 256)
        return 0.0f;
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    if (b_nonpos && mn > 0)
        mn = 0;
    memset(L, 0, (size_t)n);
    if (!(mx > mn)) {
        *b = b_nonpos && mn > 0 ? 0 : mn;
        return 0.0f;
    }
    uint8_t tmp[256]; /* [n], n <= 256 */
    fit2 best = {0, mn, INFINITY};
    for (float t = T_LO; t <= T_HI + 1e-4f; t += T_STEP) {
        float iscale = ((float)nmax + t) / (mx - mn);
        if (!(iscale > 0))
            continue;
        for (int i = 0; i < n; i++)
            tmp[i] = (uint8_t)clampi(lb__qround((x[i] - mn) * iscale), 0, nmax);
        fit2 f = lsq_affine(n, x, w, tmp, b_nonpos);
        if (f.err < best.err) {
            best = f;
            memcpy(L, tmp, (size_t)n);
        }
    }
    if (best.err == INFINITY) {
        /* No grid point fitted (a degenerate block): plain min-max. */
        float d = (mx - mn) / (float)nmax;
        for (int i = 0; i < n; i++)
            L[i] = (uint8_t)clampi(lb__qround((x[i] - mn) / d), 0, nmax);
        *b = mn;
        return d;
    }
    for (int it = 0; it < LLOYD_MAX; it++) {
        float id = (float)(1.0 / best.d), bb = (float)best.b;
        for (int i = 0; i < n; i++)
            tmp[i] = (uint8_t)clampi(lb__qround((x[i] - bb) * id), 0, nmax);
        fit2 f = lsq_affine(n, x, w, tmp, b_nonpos);
        if (!(f.err < best.err * (1 - 1e-9)))
            break;
        best = f;
        memcpy(L, tmp, (size_t)n);
    }
    *b = (float)best.b;
    return (float)best.d;
}
