/* Layouts of the GGUF tensor types (element and byte counts per block). */
#include "tensor_type.h"

#include <strings.h>

#define QK_K 256

static const lb_type_layout layouts[LB_TYPE_COUNT] = {
    [LB_TYPE_F32] = {"f32", 1, 4},
    [LB_TYPE_F16] = {"f16", 1, 2},
    [LB_TYPE_Q4_0] = {"q4_0", 32, 2 + 16},
    [LB_TYPE_Q4_1] = {"q4_1", 32, 2 + 2 + 16},
    [LB_TYPE_Q5_0] = {"q5_0", 32, 2 + 4 + 16},
    [LB_TYPE_Q5_1] = {"q5_1", 32, 2 + 2 + 4 + 16},
    [LB_TYPE_Q8_0] = {"q8_0", 32, 2 + 32},
    [LB_TYPE_Q8_1] = {"q8_1", 32, 2 + 2 + 32},
    [LB_TYPE_Q2_K] = {"q2_K", QK_K, QK_K / 16 + QK_K / 4 + 2 + 2},
    [LB_TYPE_Q3_K] = {"q3_K", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2},
    [LB_TYPE_Q4_K] = {"q4_K", QK_K, 2 + 2 + 12 + QK_K / 2},
    [LB_TYPE_Q5_K] = {"q5_K", QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2},
    [LB_TYPE_Q6_K] = {"q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2},
    [LB_TYPE_Q8_K] = {"q8_K", QK_K, 4 + QK_K + QK_K / 16 * 2},
    [LB_TYPE_IQ2_XXS] = {"iq2_xxs", QK_K, 2 + QK_K / 8 * 2},
    [LB_TYPE_IQ2_XS] = {"iq2_xs", QK_K, 2 + QK_K / 8 * 2 + QK_K / 32},
    [LB_TYPE_IQ3_XXS] = {"iq3_xxs", QK_K, 2 + QK_K / 4 + QK_K / 8},
    [LB_TYPE_IQ1_S] = {"iq1_s", QK_K, 2 + QK_K / 8 + QK_K / 16},
    [LB_TYPE_IQ4_NL] = {"iq4_nl", 32, 2 + 16},
    [LB_TYPE_IQ3_S] = {"iq3_s", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4},
    [LB_TYPE_IQ2_S] = {"iq2_s", QK_K, 2 + QK_K / 4 + QK_K / 16},
    [LB_TYPE_IQ4_XS] = {"iq4_xs", QK_K, 2 + 2 + QK_K / 64 + QK_K / 2},
    [LB_TYPE_I8] = {"i8", 1, 1},
    [LB_TYPE_I16] = {"i16", 1, 2},
    [LB_TYPE_I32] = {"i32", 1, 4},
    [LB_TYPE_I64] = {"i64", 1, 8},
    [LB_TYPE_F64] = {"f64", 1, 8},
    [LB_TYPE_IQ1_M] = {"iq1_m", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32},
    [LB_TYPE_BF16] = {"bf16", 1, 2},
    [LB_TYPE_TQ1_0] = {"tq1_0", QK_K, (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2},
    [LB_TYPE_TQ2_0] = {"tq2_0", QK_K, QK_K / 4 + 2},
    [LB_TYPE_MXFP4] = {"mxfp4", 32, 1 + 16},
    [LB_TYPE_LBQ2] = {"lbq2", QK_K, 2 + 4 + QK_K / 4},
    [LB_TYPE_LBQ3] = {"lbq3", QK_K, 2 + 4 + QK_K / 4 + QK_K / 8},
    [LB_TYPE_LBQ4] = {"lbq4", QK_K, 2 + 4 + QK_K / 2},
    [LB_TYPE_LBQV] = {"lbqv", QK_K, 2 + 4 + QK_K / 8 * 2},
    [LB_TYPE_A8_32] = {"a8_32", 32, 4 + 4 + 32},
    [LB_TYPE_A8_K] = {"a8_K", QK_K, 4 + QK_K + QK_K / 16 * 2},
    [LB_TYPE_A8_H] = {"a8_H", QK_K, 4 + QK_K + QK_K / 16 * 2},
};

const lb_type_layout *lb_type_layout_of(uint32_t type)
{
    if (type >= LB_TYPE_COUNT || layouts[type].name == NULL)
        return NULL;
    return &layouts[type];
}

size_t lb_type_row_bytes(uint32_t type, int64_t n)
{
    const lb_type_layout *l = lb_type_layout_of(type);
    if (!l || n < 0 || n % l->blck != 0)
        return 0;
    return (size_t)(n / l->blck) * (size_t)l->bytes;
}

int lb_type_from_name(const char *name)
{
    for (int i = 0; i < LB_TYPE_COUNT; i++)
        if (layouts[i].name && strcasecmp(layouts[i].name, name) == 0)
            return i;
    return -1;
}

