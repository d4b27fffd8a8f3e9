/* The file quantizer behind `lowbit quantize`: reads an F32/F16/BF16 GGUF,
 * picks a type per tensor (one type, or one of llama.cpp's familiar mixes),
 * quantizes with the quality quantizers of quantize.h on a thread pool,
 * writes a GGUF that llama.cpp loads, and reports size and error per tensor. */
#ifndef LB_QUANT_QUANTIZER_H
#define LB_QUANT_QUANTIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "quant/hessian.h"
#include "quant/imatrix.h"

/* A per-tensor type: every quantizable tensor whose name contains pattern
 * (or equals it, when pattern starts with '=') gets type (the first
 * matching entry wins), whatever the mix says. */
typedef struct lb_quantize_override {
    const char *pattern;
    uint32_t type;
} lb_quantize_override;

typedef struct lb_quantize_params {
    const char *type;    /* "q4_K_M", "q8_0", "f16", ... (lb_quantize_mix_names) */
    bool pure;           /* every quantizable tensor gets the base type: no mix rules */
    int n_threads;       /* 0 = all CPUs */
    /* progress: fraction 0..1 of the parameters done, called from the calling thread */
    void (*progress)(float frac, void *user);
    void *progress_user;
    /* Per-column importance (quant/imatrix.h) for the rows of each quantized
     * tensor, looked up by name; NULL = weigh by x^2 alone.  A tensor the
     * matrix lacks is quantized without it and marked imatrix_missing. */
    const lb_imatrix *imatrix;
    /* Full input covariances (quant/hessian.h), looked up by name: tensors of
     * the types lb_quantize_hessian_supported (quant/ldlq.h) are rounded with
     * GPTQ/LDLQ error feedback; NULL = row by row as above. */
    const lb_hessian *hessian;
    const lb_quantize_override *overrides;  /* [n_overrides], may be NULL; see --tensor-type, --bpw */
    int n_overrides;
} lb_quantize_params;

lb_quantize_params lb_quantize_default_params(void);

typedef struct lb_quantize_tensor {
    char name[96];
    uint32_t n_dims;
    int64_t ne[4];
    uint32_t src_type, type;
    uint64_t bytes;
    double bpw;          /* bits per weight of this tensor's data */
    double rel_rms;      /* sqrt(sum (x - q)^2 / sum x^2); 0 for exact copies */
    bool fallback;       /* the wanted type did not fit the row length */
    uint32_t wanted;     /* the type the policy asked for (differs when fallback) */
    bool imatrix_used;   /* quantized with the importance matrix's vector */
    bool imatrix_missing;/* quantized, an importance matrix was given, but it has no entry */
    bool hessian_used;   /* rounded with the Hessian's error feedback (params.hessian) */
} lb_quantize_tensor;

typedef struct lb_quantize_report {
    lb_quantize_tensor *tensors;  /* [n_tensors], owned; lb_quantize_report_free */
    int64_t n_tensors;
    uint64_t n_params;            /* elements of all tensors */
    uint64_t file_bytes;          /* size of the written file */
    uint64_t src_bytes;           /* size of the source file */
    double bpw;                   /* file_bytes * 8 / n_params */
    double seconds;
    int n_fallback;
    int n_imatrix_missing;
    bool requantized;             /* the source held quantized tensors (quality lost) */
    uint32_t file_type;           /* general.file_type written (llama_ftype numbering) */
} lb_quantize_report;

/* Names accepted for params.type, space-separated, for help texts. */
const char *lb_quantize_mix_names(void);

/* Quantizes in_path into out_path.  On success fills *rep (may be NULL);
 * free it with lb_quantize_report_free.  Errors (unreadable or invalid
 * input, unknown type name, write failure) return a status with err->msg
 * naming the file or tensor; no partial output is left behind on failure. */
lb_status lb_quantize_file(const char *in_path, const char *out_path, const lb_quantize_params *p,
                           lb_quantize_report *rep, lb_err *err);

void lb_quantize_report_free(lb_quantize_report *rep);

#endif
