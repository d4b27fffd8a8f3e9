/* The reference type table, filled once from the per-family files. */
#include "quant.h"

#include "base/once.h"
#include "quant/lbq.h"
#include "quant/lbqv.h"

static lb_quant_traits table[LB_TYPE_COUNT];
static lb_once table_once = LB_ONCE_INIT;

static void fill(void)
{
    lb__quant_ref_register_float(table);
    lb__quant_ref_register_q32(table);
    lb__quant_ref_register_k(table);
    lb__quant_ref_register_lbq(table);   /* after K: A8_H reuses A8_K's quantizer */
    lb__quant_ref_register_lbqv(table);
}

const lb_quant_traits *lb_quant_ref(uint32_t type)
{
    if (type >= LB_TYPE_COUNT)
        return NULL;
    lb_once_run(&table_once, fill);
    if (!table[type].dequant && !table[type].vec_dot && !table[type].quantize)
        return NULL;
    return &table[type];
}
