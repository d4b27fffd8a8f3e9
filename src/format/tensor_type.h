/* The storage layout of every tensor type a GGUF file can name: how many
 * elements a block holds and how many bytes it takes.  Ids are the GGUF/ggml
 * type ids, so a file written by llama.cpp means the same here.  This table
 * knows layouts only; what lowbit can compute with is in quant/quant.h. */
#ifndef LB_FORMAT_TENSOR_TYPE_H
#define LB_FORMAT_TENSOR_TYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum lb_type {
    LB_TYPE_F32 = 0,
    LB_TYPE_F16 = 1,
    LB_TYPE_Q4_0 = 2,
    LB_TYPE_Q4_1 = 3,
    LB_TYPE_Q5_0 = 6,
    LB_TYPE_Q5_1 = 7,
    LB_TYPE_Q8_0 = 8,
    LB_TYPE_Q8_1 = 9,
    LB_TYPE_Q2_K = 10,
    LB_TYPE_Q3_K = 11,
    LB_TYPE_Q4_K = 12,
    LB_TYPE_Q5_K = 13,
    LB_TYPE_Q6_K = 14,
    LB_TYPE_Q8_K = 15,
    LB_TYPE_IQ2_XXS = 16,
    LB_TYPE_IQ2_XS = 17,
    LB_TYPE_IQ3_XXS = 18,
    LB_TYPE_IQ1_S = 19,
    LB_TYPE_IQ4_NL = 20,
    LB_TYPE_IQ3_S = 21,
    LB_TYPE_IQ2_S = 22,
    LB_TYPE_IQ4_XS = 23,
    LB_TYPE_I8 = 24,
    LB_TYPE_I16 = 25,
    LB_TYPE_I32 = 26,
    LB_TYPE_I64 = 27,
    LB_TYPE_F64 = 28,
    LB_TYPE_IQ1_M = 29,
    LB_TYPE_BF16 = 30,
    LB_TYPE_TQ1_0 = 34,
    LB_TYPE_TQ2_0 = 35,
    LB_TYPE_MXFP4 = 39,

    /* lowbit's own weight formats (quant/lbq.h, docs/quantization.md); ids far
     * above llama.cpp's range so that other readers reject such files cleanly. */
    LB_TYPE_LBQ2 = 100,    /* 2-bit, Hadamard-rotated blocks of 256, 2.1875 bpw */
    LB_TYPE_LBQ3 = 101,    /* 3-bit, Hadamard-rotated blocks of 256, 3.1875 bpw */
    LB_TYPE_LBQ4 = 102,    /* 4-bit, Hadamard-rotated blocks of 256, 4.1875 bpw */
    LB_TYPE_LBQV = 103,    /* 2-bit E8-lattice codewords of 8, Hadamard-rotated blocks of 256, 2.1875 bpw */

    /* lowbit-internal activation formats (never stored in a file): int8
     * activations that the weight dot products consume. */
    LB_TYPE_A8_32 = 200,   /* 32 int8 + float scale + int sum; pairs with 32-element weight blocks */
    LB_TYPE_A8_K = 201,    /* 256 int8 + float scale + 16 partial sums; pairs with K-quants */
    LB_TYPE_A8_H = 202,    /* A8_K of Hadamard-rotated activations; pairs with LBQ2/LBQ3 */

    LB_TYPE_COUNT = 256
} lb_type;

typedef struct lb_type_layout {
    const char *name;   /* "q4_K", as llama.cpp prints it; NULL for unknown ids */
    int blck;           /* elements per block */
    int bytes;          /* bytes per block */
} lb_type_layout;

/* Layout of a type id, or NULL when the id names no type lowbit knows the layout of. */
const lb_type_layout *lb_type_layout_of(uint32_t type);

/* Bytes of a row of n elements; 0 if n is not a multiple of the block size or the type is unknown. */
size_t lb_type_row_bytes(uint32_t type, int64_t n);

/* Type id by name (case-insensitive, "q4_k" or "Q4_K"); -1 if unknown. */
int lb_type_from_name(const char *name);

#endif
