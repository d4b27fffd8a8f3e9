/* lb_quantize_row: dispatch from a type id to its quality quantizer, plus
 * the float types (plain conversions) and the weighted error measure. */
#include "quant/quantize.h"

#include "quant/blocks.h"
#include "quant/lbq.h"
#include "quant/lbqv.h"
#include "quant/quant.h"

bool lb_quantize_supported(uint32_t type)
{
    switch (type) {
    case LB_TYPE_F32: case LB_TYPE_F16: case LB_TYPE_BF16:
    case LB_TYPE_Q4_0: case LB_TYPE_Q4_1: case LB_TYPE_Q5_0: case LB_TYPE_Q5_1: case LB_TYPE_Q8_0:
    case LB_TYPE_Q2_K: case LB_TYPE_Q3_K: case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: case LB_TYPE_Q6_K:
    case LB_TYPE_LBQ2: case LB_TYPE_LBQ3: case LB_TYPE_LBQ4: case LB_TYPE_LBQV:
        return true;
    default:
        return false;
    }
}

void lb_quantize_row(uint32_t type, const float *x, void *out, int64_t n, const float *importance)
{
    switch (type) {
    case LB_TYPE_F32: {
        float *y = out;
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i];
        break;
    }
    case LB_TYPE_F16: {
        lb_f16 *y = out;
        for (int64_t i = 0; i < n; i++)
            y[i] = lb_f32_to_f16(x[i]);
        break;
    }
    case LB_TYPE_BF16: {
        lb_bf16 *y = out;
        for (int64_t i = 0; i < n; i++)
            y[i] = lb_f32_to_bf16(x[i]);
        break;
    }
    case LB_TYPE_Q4_0: case LB_TYPE_Q4_1: case LB_TYPE_Q5_0: case LB_TYPE_Q5_1: case LB_TYPE_Q8_0:
        lb__quantize_row_q32(type, x, out, n, importance);
        break;
    case LB_TYPE_Q2_K: case LB_TYPE_Q3_K: case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: case LB_TYPE_Q6_K:
        lb__quantize_row_k(type, x, out, n, importance);
        break;
    case LB_TYPE_LBQ2: case LB_TYPE_LBQ3: case LB_TYPE_LBQ4:
        lb__quantize_row_lbq(type, x, out, n, importance);
        break;
    case LB_TYPE_LBQV:
        lb__quantize_row_lbqv(x, out, n, importance);
        break;
    default:
        break;
    }
}

double lb_quantize_weighted_err(const float *x, const float *y, int64_t n, int block, const float *importance)
{
    float w[LB_QK_K]; /* [block], block <= 256 */
    if (block <= 0 || block > LB_QK_K)
        block = LB_QK_K;
    double e = 0;
    for (int64_t i = 0; i + block <= n; i += block) {
        lb__quant_weights(x + i, importance ? importance + i : NULL, block, w);
        for (int j = 0; j < block; j++) {
            double r = (double)y[i + j] - x[i + j];
            e += w[j] * r * r;
        }
    }
    return e;
}
