/* Quality quantizers for the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
 *
 * One generic super-block optimiser serves all five: (1) each sub-block gets
 * its best float scale (and min) from the weighted searches of search.c;
 * (2) candidate super-scales d (and dmin) are scored by the true error of
 * the whole block after the sub-block scales are rounded to their integer
 * grid and every element is re-rounded; (3) the best candidate is refined by
 * alternating a +-1/+-2 search of each sub-block's integer scale and min
 * with a joint least-squares refit of (d, dmin), each step kept only if the
 * block's weighted error falls.  llama.cpp fits the integer scales to the
 * float ones (its make_qp_quants); scoring by the final error instead is
 * what makes this at least as good. */
#include "quant/quantize.h"

#include <math.h>
#include <string.h>

#include "format/tensor_type.h"
#include "quant/blocks.h"

/* sub-block of 16 or 32; quants in [qlo, qhi]; integer scales in [slo, shi]
 * (mins in [0, shi]); affine: y = d*sc*q - dmin*m, otherwise y = d*sc*q */
typedef lb__kspec kspec;

static const kspec SPEC_Q2 = {16, 0, 3, 0, 15, true};
static const kspec SPEC_Q3 = {16, -4, 3, -32, 31, false};
static const kspec SPEC_Q4 = {32, 0, 15, 0, 63, true};
static const kspec SPEC_Q5 = {32, 0, 31, 0, 63, true};
static const kspec SPEC_Q6 = {16, -32, 31, -128, 127, false};

typedef lb__kblock kblock;

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static inline float f16_round(float v)
{
    if (v > 65504.0f)
        v = 65504.0f;
    if (v < -65504.0f)
        v = -65504.0f;
    return lb_f16_to_f32(lb_f32_to_f16(v));
}

/* Error of one sub-block reconstructed as dl*q - ml with each q the nearest
 * level (the same float operations as the dequantizer); fills L when given. */
static double sub_err(const kspec *k, const float *x, const float *w, float dl, float ml, int8_t *L)
{
    float e = 0;
    float id = dl != 0 ? 1.0f / dl : 0.0f;
    for (int i = 0; i < k->sub; i++) {
        int q = dl != 0 ? clampi(lb__qround((x[i] + ml) * id), k->qlo, k->qhi) : clampi(0, k->qlo, k->qhi);
        float y = dl * (float)q - ml;
        float r = y - x[i];
        e += w[i] * r * r;
        if (L)
            L[i] = (int8_t)q;
    }
    return e;
}

static double block_err(const kspec *k, const float *x, const float *w, kblock *b, bool fill)
{
    double e = 0;
    for (int j = 0; j < LB_QK_K / k->sub; j++) {
        float dl = b->d * (float)b->sc[j];
        float ml = k->affine ? b->dmin * (float)b->mn[j] : 0.0f;
        e += sub_err(k, x + j * k->sub, w + j * k->sub, dl, ml, fill ? b->L + j * k->sub : NULL);
    }
    return e;
}

/* Integer scales (and mins) nearest to the float ones for super-scales d, dmin. */
static void set_scales(const kspec *k, const float *s, const float *m, kblock *b)
{
    for (int j = 0; j < LB_QK_K / k->sub; j++) {
        b->sc[j] = b->d != 0 ? clampi(lb__qround(s[j] / b->d), k->slo, k->shi) : 0;
        b->mn[j] = k->affine && b->dmin != 0 ? clampi(lb__qround(m[j] / b->dmin), 0, k->shi) : 0;
    }
}

/* Joint least-squares (d, dmin) for fixed quants and integer scales:
 * x ~= d * (sc*L) - dmin * mn.  Returns false when nothing positive fits. */
static bool refit_super(const kspec *k, const float *x, const float *w, const kblock *b, float *d, float *dmin)
{
    double saa = 0, sac = 0, scc = 0, sax = 0, scx = 0;
    for (int e = 0; e < LB_QK_K; e++) {
        int j = e / k->sub;
        double a = (double)b->sc[j] * b->L[e], c = k->affine ? b->mn[j] : 0;
        saa += w[e] * a * a;
        sac += w[e] * a * c;
        scc += w[e] * c * c;
        sax += w[e] * a * x[e];
        scx += w[e] * c * x[e];
    }
    if (!(saa > 0))
        return false;
    double dd = sax / saa, dm = 0;
    if (k->affine && !(dd > 0))
        return false;
    if (k->affine && scc > 0) {
        /* normal equations of [d, -dmin]: [saa sac; sac scc] [d; -dmin] = [sax; scx] */
        double det = saa * scc - sac * sac;
        if (det > 0) {
            double u = (sax * scc - sac * scx) / det, v = (saa * scx - sac * sax) / det;
            dd = u;
            dm = -v;
        }
        if (dm < 0 || !(dd > 0)) {
            dm = 0;
            dd = sax / saa;
        }
    }
    *d = f16_round((float)dd);
    *dmin = f16_round((float)dm);
    return true;
}

static void optimise_block(const kspec *k, const float *x, const float *w, kblock *out)
{
    const int nsub = LB_QK_K / k->sub;
    float s[16], m[16]; /* [nsub] float scale and min (min = -offset >= 0) of each sub-block */
    int8_t Ls[32];      /* [sub] scratch */
    uint8_t Lu[32];     /* [sub] scratch */
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * k->sub, *wj = w + j * k->sub;
        if (k->affine) {
            float bb;
            s[j] = lb__search_affine(k->sub, xj, wj, k->qhi, true, Lu, &bb);
            m[j] = -bb;
        } else {
            s[j] = lb__search_sym(k->sub, xj, wj, k->qlo, k->qhi, Ls);
            m[j] = 0;
        }
    }

    /* (2) candidate super-scales, scored by the whole block's error */
    float smax = 0, sbig = 0, mmax = 0;
    for (int j = 0; j < nsub; j++) {
        if (fabsf(s[j]) > fabsf(sbig))
            sbig = s[j];
        smax = fmaxf(smax, s[j]);
        mmax = fmaxf(mmax, m[j]);
    }
    kblock cur, best;
    double best_e = INFINITY;
    memset(&best, 0, sizeof best);
    static const float fd[] = {1.0f, 0.95f, 0.90f, 0.85f, 1.05f};
    static const float fm[] = {1.0f, 0.92f, 1.08f};
    const int nfd = (int)(sizeof fd / sizeof fd[0]), nfm = k->affine ? 3 : 1;
    for (int side = 0; side < (k->affine ? 1 : 2); side++) {
        /* affine: the largest scale maps to shi; symmetric: the largest
         * magnitude maps to slo or shi, whichever sign fits better */
        float base = k->affine ? smax / (float)k->shi : side == 0 ? sbig / (float)k->slo : sbig / (float)k->shi;
        for (int a = 0; a < nfd; a++) {
            for (int c = 0; c < nfm; c++) {
                cur.d = f16_round(base * fd[a]);
                cur.dmin = k->affine ? f16_round(mmax / (float)k->shi * fm[c]) : 0.0f;
                set_scales(k, s, m, &cur);
                double e = block_err(k, x, w, &cur, false);
                if (e < best_e) {
                    best_e = e;
                    best = cur;
                }
            }
        }
    }
    block_err(k, x, w, &best, true);

    /* (3) refinement */
    const int rs = k->affine ? 1 : 2, rm = k->affine ? 1 : 0;
    for (int it = 0; it < 3; it++) {
        bool changed = false;
        for (int j = 0; j < nsub; j++) {
            const float *xj = x + j * k->sub, *wj = w + j * k->sub;
            float ml0 = k->affine ? best.dmin * (float)best.mn[j] : 0.0f;
            double e0 = sub_err(k, xj, wj, best.d * (float)best.sc[j], ml0, NULL);
            int bs = best.sc[j], bm = best.mn[j];
            for (int ds = -rs; ds <= rs; ds++) {
                for (int dm = -rm; dm <= rm; dm++) {
                    int sc = best.sc[j] + ds, mn = best.mn[j] + dm;
                    if ((ds == 0 && dm == 0) || sc < k->slo || sc > k->shi || mn < 0 || mn > k->shi)
                        continue;
                    float ml = k->affine ? best.dmin * (float)mn : 0.0f;
                    double e = sub_err(k, xj, wj, best.d * (float)sc, ml, NULL);
                    if (e < e0) {
                        e0 = e;
                        bs = sc;
                        bm = mn;
                    }
                }
            }
            if (bs != best.sc[j] || bm != best.mn[j]) {
                best.sc[j] = bs;
                best.mn[j] = bm;
                changed = true;
            }
        }
        best_e = block_err(k, x, w, &best, true);
        cur = best;
        if (refit_super(k, x, w, &best, &cur.d, &cur.dmin) && (cur.d != best.d || cur.dmin != best.dmin)) {
            double e = block_err(k, x, w, &cur, true);
            if (e < best_e) {
                best_e = e;
                best = cur;
                changed = true;
            }
        }
        if (!changed)
            break;
    }
    *out = best;
}

/* ---- packing, one function per type (layouts as in ref_k.c's unpackers) */

static void pack_q2_K(const kblock *b, lb_block_q2_K *y)
{
    memset(y, 0, sizeof *y);
    y->d = lb_f32_to_f16(b->d);
    y->dmin = lb_f32_to_f16(b->dmin);
    for (int s = 0; s < 16; s++)
        y->scales[s] = (uint8_t)(b->sc[s] | (b->mn[s] << 4));
    for (int e = 0; e < LB_QK_K; e++)
        y->qs[32 * (e / 128) + e % 32] |= (uint8_t)(b->L[e] << (2 * ((e % 128) / 32)));
}

static void pack_q3_K(const kblock *b, lb_block_q3_K *y)
{
    memset(y, 0, sizeof *y);
    y->d = lb_f32_to_f16(b->d);
    for (int s = 0; s < 16; s++) {
        int v = b->sc[s] + 32;
        y->scales[s % 8] |= (uint8_t)((v & 0xF) << (4 * (s / 8)));
        y->scales[8 + s % 4] |= (uint8_t)((v >> 4) << (2 * (s / 4)));
    }
    for (int e = 0; e < LB_QK_K; e++) {
        int u = b->L[e] + 4; /* 0..7; a set high bit means "no -4" */
        y->qs[32 * (e / 128) + e % 32] |= (uint8_t)((u & 3) << (2 * ((e % 128) / 32)));
        y->hmask[e % 32] |= (uint8_t)((u >> 2) << (e / 32));
    }
}

static void pack_k4_scales(uint8_t *out, const int *sc, const int *m)
{
    memset(out, 0, LB_K_SCALE_SIZE);
    for (int s = 0; s < 8; s++) {
        if (s < 4) {
            out[s] |= (uint8_t)sc[s];
            out[s + 4] |= (uint8_t)m[s];
        } else {
            out[s + 4] = (uint8_t)((sc[s] & 0xF) | ((m[s] & 0xF) << 4));
            out[s - 4] |= (uint8_t)((sc[s] >> 4) << 6);
            out[s] |= (uint8_t)((m[s] >> 4) << 6);
        }
    }
}

static void pack_q4_K(const kblock *b, lb_block_q4_K *y)
{
    memset(y, 0, sizeof *y);
    y->d = lb_f32_to_f16(b->d);
    y->dmin = lb_f32_to_f16(b->dmin);
    pack_k4_scales(y->scales, b->sc, b->mn);
    for (int e = 0; e < LB_QK_K; e++)
        y->qs[32 * (e / 64) + e % 32] |= (uint8_t)(b->L[e] << (4 * ((e % 64) / 32)));
}

static void pack_q5_K(const kblock *b, lb_block_q5_K *y)
{
    memset(y, 0, sizeof *y);
    y->d = lb_f32_to_f16(b->d);
    y->dmin = lb_f32_to_f16(b->dmin);
    pack_k4_scales(y->scales, b->sc, b->mn);
    for (int e = 0; e < LB_QK_K; e++) {
        y->qs[32 * (e / 64) + e % 32] |= (uint8_t)((b->L[e] & 0xF) << (4 * ((e % 64) / 32)));
        y->qh[e % 32] |= (uint8_t)((b->L[e] >> 4) << (e / 32));
    }
}

static void pack_q6_K(const kblock *b, lb_block_q6_K *y)
{
    memset(y, 0, sizeof *y);
    y->d = lb_f32_to_f16(b->d);
    for (int s = 0; s < 16; s++)
        y->scales[s] = (int8_t)b->sc[s];
    for (int e = 0; e < LB_QK_K; e++) {
        int u = b->L[e] + 32, nn = e / 128, k = (e % 128) / 32, l = e % 32;
        y->ql[64 * nn + 32 * (k % 2) + l] |= (uint8_t)((u & 0xF) << (4 * (k / 2)));
        y->qh[32 * nn + l] |= (uint8_t)((u >> 4) << (2 * k));
    }
}

void lb__quantize_row_k(uint32_t type, const float *x, void *out, int64_t n, const float *importance)
{
    float w[LB_QK_K]; /* [256] element weights of the current super-block */
    kblock b;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const float *xb = x + i * LB_QK_K;
        lb__quant_weights(xb, importance ? importance + i * LB_QK_K : NULL, LB_QK_K, w);
        switch (type) {
        case LB_TYPE_Q2_K:
            optimise_block(&SPEC_Q2, xb, w, &b);
            pack_q2_K(&b, (lb_block_q2_K *)out + i);
            break;
        case LB_TYPE_Q3_K:
            optimise_block(&SPEC_Q3, xb, w, &b);
            pack_q3_K(&b, (lb_block_q3_K *)out + i);
            break;
        case LB_TYPE_Q4_K:
            optimise_block(&SPEC_Q4, xb, w, &b);
            pack_q4_K(&b, (lb_block_q4_K *)out + i);
            break;
        case LB_TYPE_Q5_K:
            optimise_block(&SPEC_Q5, xb, w, &b);
            pack_q5_K(&b, (lb_block_q5_K *)out + i);
            break;
        case LB_TYPE_Q6_K:
            optimise_block(&SPEC_Q6, xb, w, &b);
            pack_q6_K(&b, (lb_block_q6_K *)out + i);
            break;
        default:
            return;
        }
    }
}

/* ---- single super-blocks, for quantizers that move the weights between
 * blocks (quant/gptq_k.c) */

const lb__kspec *lb__kquant_spec(uint32_t type)
{
    switch (type) {
    case LB_TYPE_Q2_K: return &SPEC_Q2;
    case LB_TYPE_Q3_K: return &SPEC_Q3;
    case LB_TYPE_Q4_K: return &SPEC_Q4;
    case LB_TYPE_Q5_K: return &SPEC_Q5;
    case LB_TYPE_Q6_K: return &SPEC_Q6;
    default: return NULL;
    }
}

void lb__kquant_fit_block(const lb__kspec *k, const float *x, const float *w, lb__kblock *b)
{
    optimise_block(k, x, w, b);
}

void lb__kquant_fit_sub(const lb__kspec *k, const float *x, const float *w, lb__kblock *b, int j)
{
    /* The float fit of the sub-block alone, rounded onto the block's fixed
     * (d, dmin), then its integer neighbours and the old pair, scored by
     * the true error. */
    float s, m = 0;
    if (k->affine) {
        uint8_t Lu[32]; /* [sub] */
        float bb;
        s = lb__search_affine(k->sub, x, w, k->qhi, true, Lu, &bb);
        m = -bb;
    } else {
        int8_t Ls[32]; /* [sub] */
        s = lb__search_sym(k->sub, x, w, k->qlo, k->qhi, Ls);
    }
    int s0 = b->d != 0 ? clampi(lb__qround(s / b->d), k->slo, k->shi) : 0;
    int m0 = k->affine && b->dmin != 0 ? clampi(lb__qround(m / b->dmin), 0, k->shi) : 0;
    int bs = b->sc[j], bm = b->mn[j];
    double best = sub_err(k, x, w, b->d * (float)bs, k->affine ? b->dmin * (float)bm : 0.0f, NULL);
    const int rs = 2, rm = k->affine ? 1 : 0;
    for (int ds = -rs; ds <= rs; ds++) {
        for (int dm = -rm; dm <= rm; dm++) {
            int sc = s0 + ds, mn = m0 + dm;
            if (sc < k->slo || sc > k->shi || mn < 0 || mn > k->shi)
                continue;
            double e = sub_err(k, x, w, b->d * (float)sc, k->affine ? b->dmin * (float)mn : 0.0f, NULL);
            if (e < best) {
                best = e;
                bs = sc;
                bm = mn;
            }
        }
    }
    b->sc[j] = bs;
    b->mn[j] = bm;
    sub_err(k, x, w, b->d * (float)bs, k->affine ? b->dmin * (float)bm : 0.0f, b->L + j * k->sub);
}

void lb__kquant_pack(uint32_t type, const lb__kblock *b, void *out)
{
    switch (type) {
    case LB_TYPE_Q2_K: pack_q2_K(b, out); break;
    case LB_TYPE_Q3_K: pack_q3_K(b, out); break;
    case LB_TYPE_Q4_K: pack_q4_K(b, out); break;
    case LB_TYPE_Q5_K: pack_q5_K(b, out); break;
    case LB_TYPE_Q6_K: pack_q6_K(b, out); break;
    default: break;
    }
}
