/* Writes a few small valid GGUF files into a directory as the fuzzer's seed
 * corpus, so no binary seeds live in the repository. */
#include <stdio.h>
#include <string.h>

#include "format/gguf.h"

static int emit(lb_gguf_writer *w, const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    lb_err err;
    lb_status st = lb_gguf_writer_write(w, path, &err);
    if (st)
        fprintf(stderr, "gguf_seeds: %s\n", err.msg);
    lb_gguf_writer_free(w);
    return st != LB_OK;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gguf_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    int bad = 0;

    bad |= emit(lb_gguf_writer_new(), dir, "empty.gguf");

    /* Every value type, a string array and tensors of several block sizes. */
    lb_gguf_writer *w = lb_gguf_writer_new();
    lb_gguf_writer_set_str(w, "general.architecture", "llama");
    lb_gguf_writer_set_u32(w, "llama.block_count", 1);
    lb_gguf_writer_set_i32(w, "x.i32", -1);
    lb_gguf_writer_set_u64(w, "x.u64", 1ull << 40);
    lb_gguf_writer_set_f32(w, "x.f32", 1e-5f);
    lb_gguf_writer_set_bool(w, "x.bool", true);
    const uint8_t u8s[4] = {1, 2, 3, 4};
    const int16_t i16s[2] = {-1, 1};
    const double f64s[2] = {0.5, 2};
    const int64_t i64s[1] = {-9};
    lb_gguf_writer_set_arr(w, "x.u8", LB_GGUF_U8, u8s, 4);
    lb_gguf_writer_set_arr(w, "x.i8", LB_GGUF_I8, u8s, 2);
    lb_gguf_writer_set_arr(w, "x.u16", LB_GGUF_U16, i16s, 2);
    lb_gguf_writer_set_arr(w, "x.i16", LB_GGUF_I16, i16s, 2);
    lb_gguf_writer_set_arr(w, "x.f64", LB_GGUF_F64, f64s, 2);
    lb_gguf_writer_set_arr(w, "x.i64", LB_GGUF_I64, i64s, 1);
    const lb_gguf_str toks[4] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"\xe2\x96\x81the", 6}};
    lb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    const float scores[4] = {0, 0, 0, -1};
    lb_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LB_GGUF_F32, scores, 4);
    static uint8_t blob[34 * 2 + 144];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i * 31);
    lb_gguf_writer_add_tensor(w, "token_embd.weight", LB_TYPE_F16, 2, (int64_t[]){4, 4}, blob);
    lb_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", LB_TYPE_Q8_0, 2, (int64_t[]){32, 2}, blob);
    lb_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", LB_TYPE_Q4_K, 1, (int64_t[]){256}, blob);
    lb_gguf_writer_add_tensor(w, "output_norm.weight", LB_TYPE_F32, 1, (int64_t[]){4}, blob);
    lb_gguf_writer_add_tensor(w, "empty", LB_TYPE_F32, 3, (int64_t[]){4, 0, 2}, NULL);
    bad |= emit(w, dir, "model.gguf");

    /* A non-default alignment and a 4-D tensor. */
    w = lb_gguf_writer_new();
    lb_gguf_writer_set_u32(w, "general.alignment", 64);
    lb_gguf_writer_add_tensor(w, "t", LB_TYPE_I8, 4, (int64_t[]){2, 2, 2, 2}, blob);
    lb_gguf_writer_add_tensor(w, "u", LB_TYPE_BF16, 1, (int64_t[]){3}, blob);
    bad |= emit(w, dir, "align64.gguf");

    /* Metadata only, like llama.cpp's vocabulary files. */
    w = lb_gguf_writer_new();
    lb_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    const lb_gguf_str merges[2] = {{"a b", 3}, {"ab c", 4}};
    lb_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 2);
    bad |= emit(w, dir, "vocab.gguf");
    return bad;
}
