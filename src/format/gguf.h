/* GGUF (versions 2 and 3): a fully validated, zero-copy view of a file's
 * metadata and tensors, and a writer.
 *
 * The reader never trusts the file: every count, length, offset, alignment,
 * shape and size is checked with overflow-safe arithmetic before use, and
 * duplicate keys or tensor names are rejected.  Each failure returns an
 * lb_status and fills err->msg with what was wrong and where (key name,
 * tensor name, byte offset). */
#ifndef LB_FORMAT_GGUF_H
#define LB_FORMAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/status.h"
#include "format/tensor_type.h"

/* Metadata value types, as numbered in the GGUF specification. */
typedef enum lb_gguf_vtype {
    LB_GGUF_U8 = 0, LB_GGUF_I8 = 1, LB_GGUF_U16 = 2, LB_GGUF_I16 = 3,
    LB_GGUF_U32 = 4, LB_GGUF_I32 = 5, LB_GGUF_F32 = 6, LB_GGUF_BOOL = 7,
    LB_GGUF_STRING = 8, LB_GGUF_ARRAY = 9, LB_GGUF_U64 = 10, LB_GGUF_I64 = 11,
    LB_GGUF_F64 = 12,
    LB_GGUF_VTYPE_COUNT
} lb_gguf_vtype;

#define LB_GGUF_MAX_DIMS 4
#define LB_GGUF_DEFAULT_ALIGNMENT 32

typedef struct lb_gguf_str { const char *ptr; uint64_t len; } lb_gguf_str; /* points into the file; not NUL-terminated */

typedef struct lb_gguf_tensor {
    lb_gguf_str name;
    uint32_t type;                     /* lb_type id */
    uint32_t n_dims;
    int64_t ne[LB_GGUF_MAX_DIMS];      /* elements per dimension, ne[0] innermost; unused dims are 1 */
    uint64_t offset;                   /* from the start of the data section */
    uint64_t nbytes;
    const void *data;                  /* points into the file's bytes */
} lb_gguf_tensor;

typedef struct lb_gguf lb_gguf;

/* Parses a GGUF image held in memory.  The bytes are NOT copied: they must
 * stay valid until lb_gguf_free.  The view holds no pointer into memory it
 * does not own except `data`. */
lb_status lb_gguf_open_memory(const void *data, size_t size, lb_gguf **out, lb_err *err);

/* Parses only the header (metadata and tensor infos) from data, the first
 * size bytes of a GGUF file (or all of it), for planning before the weights
 * are fetched.  Everything is validated as by lb_gguf_open_memory except that
 * tensor data may lie past the end of data: the tensors' `data` pointers are
 * NULL, and lb_gguf_implied_size gives the file size the header implies.
 * If data ends inside the header, returns LB_ERR_RANGE and, when need is
 * non-NULL, stores in *need a byte count > size that the parse needs to get
 * further (a lower bound: a long header may need several rounds).  data is
 * not copied and must outlive the view. */
lb_status lb_gguf_open_header(const void *data, size_t size, lb_gguf **out, uint64_t *need, lb_err *err);

/* Opens a file: mmap natively when use_mmap, otherwise reads it into memory
 * (always read under WebAssembly).  The view owns the mapping or buffer. */
lb_status lb_gguf_open_file(const char *path, bool use_mmap, lb_gguf **out, lb_err *err);

void lb_gguf_free(lb_gguf *g);

uint32_t lb_gguf_version(const lb_gguf *g);
uint64_t lb_gguf_alignment(const lb_gguf *g);
uint64_t lb_gguf_data_offset(const lb_gguf *g);  /* byte offset of the data section in the file */
size_t lb_gguf_file_size(const lb_gguf *g);       /* the bytes held (a prefix for lb_gguf_open_header) */
uint64_t lb_gguf_implied_size(const lb_gguf *g);  /* the end of the furthest tensor data, or the data offset */
const void *lb_gguf_bytes(const lb_gguf *g);      /* the whole file image */

/* ---- metadata */
int64_t lb_gguf_n_kv(const lb_gguf *g);
lb_gguf_str lb_gguf_kv_key(const lb_gguf *g, int64_t i);
lb_gguf_vtype lb_gguf_kv_type(const lb_gguf *g, int64_t i);
/* Index of a key (exact match), or -1. */
int64_t lb_gguf_find_key(const lb_gguf *g, const char *key);

/* Typed getters by key.  LB_ERR_NOT_FOUND if the key is absent, LB_ERR_TYPE
 * if its value has another type (message names the key and both types). */
lb_status lb_gguf_get_str(const lb_gguf *g, const char *key, lb_gguf_str *out, lb_err *err);
lb_status lb_gguf_get_bool(const lb_gguf *g, const char *key, bool *out, lb_err *err);
lb_status lb_gguf_get_f32(const lb_gguf *g, const char *key, float *out, lb_err *err); /* F32 or F64 */
/* Any integer type (u8..i64, and bool), range-checked into int64. */
lb_status lb_gguf_get_int(const lb_gguf *g, const char *key, int64_t *out, lb_err *err);

/* Arrays: element type and count; arrays of arrays are rejected at parse time. */
lb_status lb_gguf_get_arr(const lb_gguf *g, const char *key, lb_gguf_vtype *elem_type,
                          uint64_t *n, lb_err *err);
/* Raw pointer to the elements of a numeric array (little-endian, may be unaligned). */
const void *lb_gguf_arr_data(const lb_gguf *g, int64_t kv_index);
/* Element i of a string array (i < n, checked: returns {NULL,0} when out of range). */
lb_gguf_str lb_gguf_arr_str(const lb_gguf *g, int64_t kv_index, uint64_t i);

/* The serialized value of key index i exactly as stored after its type field
 * (for arrays: element type, count and elements).  *len gets its byte count.
 * lb_gguf_writer_copy_kv uses it to copy metadata byte for byte. */
const void *lb_gguf_kv_raw(const lb_gguf *g, int64_t i, uint64_t *len);
/* Array element type and count of key index i (LB_GGUF_VTYPE_COUNT / 0 if not an array). */
lb_gguf_vtype lb_gguf_kv_arr_type(const lb_gguf *g, int64_t i);
uint64_t lb_gguf_kv_arr_n(const lb_gguf *g, int64_t i);

/* Scalar value of key index i as text, for `lowbit info` ("[array of 4096 string]" for arrays). */
void lb_gguf_kv_format(const lb_gguf *g, int64_t i, char *buf, size_t cap);

/* ---- tensors */
int64_t lb_gguf_n_tensors(const lb_gguf *g);
const lb_gguf_tensor *lb_gguf_tensor_at(const lb_gguf *g, int64_t i);
const lb_gguf_tensor *lb_gguf_find_tensor(const lb_gguf *g, const char *name);

const char *lb_gguf_vtype_name(lb_gguf_vtype t);

/* ---- writer
 * Collects metadata and tensor descriptions, then streams the file out.
 * Tensor data is not copied: the pointers given must stay valid until
 * lb_gguf_writer_write returns.  Keys and names are copied. */
typedef struct lb_gguf_writer lb_gguf_writer;

lb_gguf_writer *lb_gguf_writer_new(void);   /* NULL on allocation failure */
void lb_gguf_writer_free(lb_gguf_writer *w);
/* Setting a key that exists replaces its value. */
lb_status lb_gguf_writer_set_u32(lb_gguf_writer *w, const char *key, uint32_t v);
lb_status lb_gguf_writer_set_i32(lb_gguf_writer *w, const char *key, int32_t v);
lb_status lb_gguf_writer_set_u64(lb_gguf_writer *w, const char *key, uint64_t v);
lb_status lb_gguf_writer_set_f32(lb_gguf_writer *w, const char *key, float v);
lb_status lb_gguf_writer_set_bool(lb_gguf_writer *w, const char *key, bool v);
lb_status lb_gguf_writer_set_str(lb_gguf_writer *w, const char *key, const char *v);
/* A numeric array: n elements of elem_type copied from data. */
lb_status lb_gguf_writer_set_arr(lb_gguf_writer *w, const char *key, lb_gguf_vtype elem_type,
                                 const void *data, uint64_t n);
lb_status lb_gguf_writer_set_arr_str(lb_gguf_writer *w, const char *key, const lb_gguf_str *v, uint64_t n);
/* Copies every key of g (the quantizer keeps the source's metadata). */
lb_status lb_gguf_writer_copy_kv(lb_gguf_writer *w, const lb_gguf *g);
/* Removes a key if present (LB_OK either way). */
lb_status lb_gguf_writer_remove(lb_gguf_writer *w, const char *key);
lb_status lb_gguf_writer_add_tensor(lb_gguf_writer *w, const char *name, uint32_t type,
                                    uint32_t n_dims, const int64_t *ne, const void *data);
/* Adding a tensor whose name exists is LB_ERR_INVALID_ARG, as is an unknown
 * type, n_dims outside 1..4, a negative ne or ne[0] not a multiple of the block.
 * Writes version 3 with alignment general.alignment (default 32); the
 * alignment key, if set, must be a u32 power of two. */
lb_status lb_gguf_writer_write(lb_gguf_writer *w, const char *path, lb_err *err);
lb_status lb_gguf_writer_write_fp(lb_gguf_writer *w, FILE *f, lb_err *err);

#endif
