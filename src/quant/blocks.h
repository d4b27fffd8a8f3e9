/* Block layouts of the quantized types, bit-compatible with GGUF files made by
 * llama.cpp, and lowbit's int8 activation blocks.  Sizes are checked at
 * compile time against the layout table in format/tensor_type.c. */
#ifndef LB_QUANT_BLOCKS_H
#define LB_QUANT_BLOCKS_H

#include <assert.h>
#include <stdint.h>

#include "base/fp16.h"

#define LB_QK 32          /* elements per block of the 32-element families */
#define LB_QK_K 256       /* elements per super-block of the K-quants */
#define LB_K_SCALE_SIZE 12

/* x = (q - 8) * d; qs[j] low nibble = element j, high nibble = element j + 16 */
typedef struct { lb_f16 d; uint8_t qs[LB_QK / 2]; } lb_block_q4_0;
/* x = q * d + m */
typedef struct { lb_f16 d, m; uint8_t qs[LB_QK / 2]; } lb_block_q4_1;
/* 5th bit of element j in bit j of qh (little-endian 32-bit); x = (q - 16) * d */
typedef struct { lb_f16 d; uint8_t qh[4]; uint8_t qs[LB_QK / 2]; } lb_block_q5_0;
typedef struct { lb_f16 d, m; uint8_t qh[4]; uint8_t qs[LB_QK / 2]; } lb_block_q5_1;
typedef struct { lb_f16 d; int8_t qs[LB_QK]; } lb_block_q8_0;

typedef struct { uint8_t scales[LB_QK_K / 16]; uint8_t qs[LB_QK_K / 4]; lb_f16 d, dmin; } lb_block_q2_K;
typedef struct { uint8_t hmask[LB_QK_K / 8]; uint8_t qs[LB_QK_K / 4]; uint8_t scales[12]; lb_f16 d; } lb_block_q3_K;
typedef struct { lb_f16 d, dmin; uint8_t scales[LB_K_SCALE_SIZE]; uint8_t qs[LB_QK_K / 2]; } lb_block_q4_K;
typedef struct { lb_f16 d, dmin; uint8_t scales[LB_K_SCALE_SIZE]; uint8_t qh[LB_QK_K / 8]; uint8_t qs[LB_QK_K / 2]; } lb_block_q5_K;
typedef struct { uint8_t ql[LB_QK_K / 2]; uint8_t qh[LB_QK_K / 4]; int8_t scales[LB_QK_K / 16]; lb_f16 d; } lb_block_q6_K;

/* Activations for the 32-element families: x ~= qs * d; sum = sum of qs
 * (lets Q4_1/Q5_1 add their offset m without touching qs again). */
typedef struct { float d; int32_t sum; int8_t qs[LB_QK]; } lb_block_a8_32;
/* Activations for the K-quants: x ~= qs * d; bsums[i] = sum of qs[16i .. 16i+15]. */
typedef struct { float d; int8_t qs[LB_QK_K]; int16_t bsums[LB_QK_K / 16]; } lb_block_a8_K;

static_assert(sizeof(lb_block_q4_0) == 18, "q4_0 block");
static_assert(sizeof(lb_block_q4_1) == 20, "q4_1 block");
static_assert(sizeof(lb_block_q5_0) == 22, "q5_0 block");
static_assert(sizeof(lb_block_q5_1) == 24, "q5_1 block");
static_assert(sizeof(lb_block_q8_0) == 34, "q8_0 block");
static_assert(sizeof(lb_block_q2_K) == 84, "q2_K block");
static_assert(sizeof(lb_block_q3_K) == 110, "q3_K block");
static_assert(sizeof(lb_block_q4_K) == 144, "q4_K block");
static_assert(sizeof(lb_block_q5_K) == 176, "q5_K block");
static_assert(sizeof(lb_block_q6_K) == 210, "q6_K block");
static_assert(sizeof(lb_block_a8_32) == 40, "a8_32 block");
static_assert(sizeof(lb_block_a8_K) == 292, "a8_K block");

#endif
