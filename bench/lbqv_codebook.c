/* Generates LBQV's codebook table (quant/lbqv.c) and measures how well it
 * codes Gaussian data: `cc -O2 -o /tmp/lbqv_codebook bench/lbqv_codebook.c -lm`,
 * then `/tmp/lbqv_codebook table` prints the C initializer and
 * `/tmp/lbqv_codebook mse` the relative mean squared error per scale.
 *
 * The rule (docs/quantization.md, "lbqv"): the 256 "absolute patterns" are
 * the vectors A in {1,3,5,7}^8 (twice the magnitudes of a point of the E8
 * lattice's half-integer coset) ordered by sum(A^2), then lexicographically
 * with A[0] most significant; the first 256 are all 227 of norm^2 <= 10 (in
 * lattice units, sum(A^2) <= 40) and the first 29 of norm^2 12.  A table
 * entry holds 2A (the codeword in the units of quarter-lattice steps the
 * format stores), with entry 7 negated when sum(A)/2 is odd: the parity of
 * the number of negative signs an E8 point needs, folded in so that the
 * decoder's 8th sign is just the parity of the 7 stored ones. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pat[4096][8], npat;   /* [candidates][8] A values */
static int8_t grid[256][8];      /* [256][8] the table */

static int cmp_pat(const void *pa, const void *pb)
{
    const int *a = pa, *b = pb;
    int na = 0, nb = 0;
    for (int j = 0; j < 8; j++)
        na += a[j] * a[j], nb += b[j] * b[j];
    if (na != nb)
        return na - nb;
    for (int j = 0; j < 8; j++)
        if (a[j] != b[j])
            return a[j] - b[j];
    return 0;
}

static void build(void)
{
    static const int odd[4] = {1, 3, 5, 7};
    npat = 0;
    for (int code = 0; code < 1 << 16; code++) {
        int a[8], n = 0;
        for (int j = 0; j < 8; j++)
            a[j] = odd[(code >> (2 * j)) & 3], n += a[j] * a[j];
        if (n <= 48)
            memcpy(pat[npat++], a, sizeof a);
    }
    qsort(pat, (size_t)npat, sizeof pat[0], cmp_pat);
    for (int p = 0; p < 256; p++) {
        int s = 0;
        for (int j = 0; j < 8; j++)
            s += pat[p][j], grid[p][j] = (int8_t)(2 * pat[p][j]);
        if ((s / 2) & 1)
            grid[p][7] = (int8_t)-grid[p][7];
    }
}

static uint64_t rs = 88172645463325252ull;
static double gauss(void)
{
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    double u1 = ((double)(rs >> 11) + 0.5) / 9007199254740992.0;
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    double u2 = (double)(rs >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* squared distance from t[8] (codeword units) to the nearest codeword */
static double nearest(const double *t)
{
    double best = INFINITY;
    for (int sh = -1; sh <= 1; sh += 2) {
        double y[8];
        int nneg = 0;
        for (int j = 0; j < 8; j++) {
            y[j] = t[j] - sh;
            nneg += y[j] < 0;
        }
        for (int p = 0; p < 256; p++) {
            double e = 0, mflip = INFINITY;
            int need = 0;
            for (int j = 0; j < 8; j++) {
                double a = abs(grid[p][j]), r = fabs(y[j]) - a;
                e += r * r;
                if (4 * fabs(y[j]) * a < mflip)
                    mflip = 4 * fabs(y[j]) * a;
            }
            need = grid[p][7] < 0;
            if ((nneg & 1) != need)
                e += mflip;
            if (e < best)
                best = e;
        }
    }
    return best;
}

int main(int argc, char **argv)
{
    build();
    if (argc > 1 && !strcmp(argv[1], "table")) {
        for (int p = 0; p < 256; p++) {
            printf("    {");
            for (int j = 0; j < 8; j++)
                printf("%d%s", grid[p][j], j < 7 ? ", " : "}");
            printf(",%s", p % 4 == 3 ? "\n" : " ");
        }
        return 0;
    }
    /* relative MSE of unit Gaussian 8-vectors at codeword step 1/k */
    int nv = 20000;
    double *x = malloc(sizeof(double) * 8 * (size_t)nv);
    for (int i = 0; i < 8 * nv; i++)
        x[i] = gauss();
    for (double k = 3.0; k <= 5.01; k += 0.25) {
        double e = 0;
        for (int v = 0; v < nv; v++) {
            double t[8];
            for (int j = 0; j < 8; j++)
                t[j] = x[8 * v + j] * k;
            e += nearest(t) / (k * k);
        }
        printf("codeword units per sigma %.2f: relative MSE %.4f (RMS %.4f)\n", k, e / (8.0 * nv),
               sqrt(e / (8.0 * nv)));
    }
    free(x);
    return 0;
}
