/* Tests of the Hessian files (quant/hessian.h): collection through the
 * observer against a direct sum, shared inputs, the round trip through the
 * file, and rejection of hostile files with a message naming the problem. */
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "format/gguf.h"
#include "format/tensor_type.h"
#include "quant/hessian.h"

enum { C = 40, C2 = 24 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

static void tmp_path(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/tmp/lb_test_hessian_%s_%ld.gguf", tag, (long)getpid());
}

static void test_collect_and_round_trip(void)
{
    char src[256], out[256];
    tmp_path(src, sizeof src, "src");
    tmp_path(out, sizeof out, "out");
    static float wa[3][C], wb[2][C], wc[5][C2], wn[C]; /* three weights and a norm */
    lb_gguf_writer *w = lb_gguf_writer_new();
    int64_t nea[2] = {C, 3}, neb[2] = {C, 2}, nec[2] = {C2, 5}, nen[1] = {C};
    lb_gguf_writer_add_tensor(w, "a.weight", LB_TYPE_F32, 2, nea, wa);
    lb_gguf_writer_add_tensor(w, "b.weight", LB_TYPE_F32, 2, neb, wb);
    lb_gguf_writer_add_tensor(w, "c.weight", LB_TYPE_F32, 2, nec, wc);
    lb_gguf_writer_add_tensor(w, "n.weight", LB_TYPE_F32, 1, nen, wn);
    CHECK(lb_gguf_writer_write(w, src, NULL) == LB_OK);
    lb_gguf_writer_free(w);
    lb_gguf *g = NULL;
    CHECK(lb_gguf_open_file(src, true, &g, NULL) == LB_OK);
    if (!g)
        return;
    lb_hessian *h = lb_hessian_new();
    CHECK(lb_hessian_track_gguf(h, g, 0, NULL) == LB_OK);
    CHECK(lb_hessian_n_entries(h) == 3);
    const void *pa = lb_gguf_find_tensor(g, "a.weight")->data, *pb = lb_gguf_find_tensor(g, "b.weight")->data;
    const void *pc = lb_gguf_find_tensor(g, "c.weight")->data;
    static float x1[7][C], x2[3][C], x3[4][C2];
    for (int t = 0; t < 7; t++)
        for (int c = 0; c < C; c++)
            x1[t][c] = frand();
    for (int t = 0; t < 3; t++)
        for (int c = 0; c < C; c++)
            x2[t][c] = frand() * 3;
    for (int t = 0; t < 4; t++)
        for (int c = 0; c < C2; c++)
            x3[t][c] = frand();
    /* a and b share x1 (as q/k/v do); then a alone sees x2; a product with wrong cols is ignored */
    lb_hessian_observe(h, pa, 3, C, &x1[0][0], 7);
    lb_hessian_observe(h, pb, 2, C, &x1[0][0], 7);
    x1[0][0] += 1; /* same pointer right after, new values: must not reuse the product */
    lb_hessian_observe(h, pa, 3, C, &x1[0][0], 7);
    x1[0][0] -= 1;
    lb_hessian_observe(h, pc, 5, C2, &x3[0][0], 4);
    lb_hessian_observe(h, pa, 3, C, &x2[0][0], 3);
    lb_hessian_observe(h, pa, 3, C + 1, &x2[0][0], 1);
    lb_hessian_meta meta = {3, 21, "calib.txt"};
    CHECK(lb_hessian_write(h, out, &meta, NULL) == LB_OK);
    lb_hessian_free(h);
    lb_gguf_free(g);

    lb_hessian *l = NULL;
    lb_err err = {0};
    CHECKF(lb_hessian_load_err(out, &l, &err) == LB_OK, "%s", err.msg);
    if (!l)
        return;
    CHECK(lb_hessian_get_meta(l).chunks == 3 && lb_hessian_get_meta(l).tokens == 21);
    CHECK(!strcmp(lb_hessian_get_meta(l).dataset, "calib.txt"));
    int64_t cols = 0;
    const float *ha = lb_hessian_find(l, "a.weight", &cols);
    CHECK(ha && cols == C);
    const float *hb = lb_hessian_find(l, "b.weight", NULL), *hc = lb_hessian_find(l, "c.weight", &cols);
    CHECK(hb && hc && cols == C2);
    CHECK(lb_hessian_find(l, "n.weight", NULL) == NULL && lb_hessian_find(l, "zz", NULL) == NULL);
    double maxd = 0;
    for (int i = 0; ha && hb && i < C; i++)
        for (int k = 0; k < C; k++) {
            double sa = 0, sb = 0;
            for (int t = 0; t < 7; t++) {
                sa += 2.0 * x1[t][i] * x1[t][k];
                sb += (double)x1[t][i] * x1[t][k];
            }
            sa += (double)(x1[0][i] + (i == 0)) * (x1[0][k] + (k == 0)) - (double)x1[0][i] * x1[0][k];
            for (int t = 0; t < 3; t++)
                sa += (double)x2[t][i] * x2[t][k];
            maxd = fmax(maxd, fabs(ha[i * C + k] - sa / 17));
            maxd = fmax(maxd, fabs(hb[i * C + k] - sb / 7));
        }
    for (int i = 0; hc && i < C2; i++)
        for (int k = 0; k < C2; k++) {
            double s = 0;
            for (int t = 0; t < 4; t++)
                s += (double)x3[t][i] * x3[t][k];
            maxd = fmax(maxd, fabs(hc[i * C2 + k] - s / 4));
        }
    CHECKF(maxd < 1e-5, "largest difference from the direct mean %g", maxd);
    lb_hessian_free(l);
    remove(src);
    remove(out);
}

/* One bad file per failure class; each is refused with LB_ERR_FORMAT and a
 * message naming the tensor. */
static void test_load_rejects(void)
{
    char path[256];
    tmp_path(path, sizeof path, "bad");
    static float m[8][8];
    for (int kind = 0; kind < 7; kind++) {
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < 8; k++)
                m[i][k] = (i == k) ? 2.0f : 0.25f;
        lb_gguf_writer *w = lb_gguf_writer_new();
        lb_gguf_writer_set_str(w, "general.type", kind == 0 ? "imatrix" : "hessian");
        int64_t ne[2] = {8, 8}, ne1[1] = {64}, ne_rect[2] = {8, 4};
        if (kind == 1)
            lb_gguf_writer_add_tensor(w, "x.weight", LB_TYPE_F32, 1, ne1, m);
        else if (kind == 2)
            lb_gguf_writer_add_tensor(w, "x.weight", LB_TYPE_F32, 2, ne_rect, m);
        else if (kind == 3)
            lb_gguf_writer_add_tensor(w, "x.weight", LB_TYPE_F16, 2, ne, m);
        else {
            if (kind == 4)
                m[2][5] = NAN;
            if (kind == 5)
                m[1][6] = 1.0f; /* not symmetric */
            if (kind == 6)
                m[3][3] = -1.0f;
            lb_gguf_writer_add_tensor(w, "x.weight", LB_TYPE_F32, 2, ne, m);
        }
        CHECK(lb_gguf_writer_write(w, path, NULL) == LB_OK);
        lb_gguf_writer_free(w);
        lb_hessian *h = (lb_hessian *)&m; /* must stay untouched */
        lb_err err = {0};
        lb_status st = lb_hessian_load_err(path, &h, &err);
        CHECKF(st == LB_ERR_FORMAT, "kind %d: status %d", kind, (int)st);
        CHECK(h == (lb_hessian *)&m);
        CHECKF(kind == 0 || strstr(err.msg, "x.weight"), "kind %d: message '%s'", kind, err.msg);
        CHECK(lb_hessian_load(path, &h) == LB_ERR_FORMAT);
    }
    /* a valid one loads */
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 8; k++)
            m[i][k] = (i == k) ? 2.0f : 0.25f;
    lb_gguf_writer *w = lb_gguf_writer_new();
    lb_gguf_writer_set_str(w, "general.type", "hessian");
    int64_t ne[2] = {8, 8};
    lb_gguf_writer_add_tensor(w, "x.weight", LB_TYPE_F32, 2, ne, m);
    CHECK(lb_gguf_writer_write(w, path, NULL) == LB_OK);
    lb_gguf_writer_free(w);
    lb_hessian *h = NULL;
    CHECK(lb_hessian_load(path, &h) == LB_OK && h && lb_hessian_find(h, "x.weight", NULL)[9] == 2.0f);
    lb_hessian_free(h);
    lb_hessian_free(NULL);
    CHECK(lb_hessian_load("/nonexistent/h.gguf", &h) != LB_OK);
    remove(path);
}

int main(void)
{
    RUN(test_collect_and_round_trip);
    RUN(test_load_rejects);
    return check_done();
}
