/* Hyper-parameters from GGUF metadata ("<arch>.embedding_length", ...), with
 * each architecture's defaults and range checks, so the forward pass can
 * trust them. */
#include "model.h"

#include <stdio.h>
#include <string.h>

typedef struct arch_desc {
    const char *name;
    lb_arch arch;
    lb_rope_kind rope;
} arch_desc;

static const arch_desc archs[] = {
    {"llama", LB_ARCH_LLAMA, LB_ROPE_NORM},
    {"qwen2", LB_ARCH_QWEN2, LB_ROPE_NEOX},
};

/* Reads "<arch>.<suffix>" as an int; a missing key gives def (or an error when def < 0). */
static lb_status arch_int(const lb_gguf *g, const char *arch, const char *suffix, int64_t def,
                          int64_t lo, int64_t hi, int *out, lb_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    lb_status st = lb_gguf_get_int(g, key, &v, err);
    if (st == LB_ERR_NOT_FOUND) {
        if (def < 0)
            return lb__errf(err, LB_ERR_NOT_FOUND, "required key '%s' is missing", key);
        v = def;
    } else if (st != LB_OK) {
        return st;
    }
    if (v < lo || v > hi)
        return lb__errf(err, LB_ERR_FORMAT, "key '%s' = %lld is outside [%lld, %lld]", key,
                        (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return LB_OK;
}

static lb_status arch_f32(const lb_gguf *g, const char *arch, const char *suffix, float def,
                          float *out, lb_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    lb_status st = lb_gguf_get_f32(g, key, out, err);
    if (st == LB_ERR_NOT_FOUND) {
        *out = def;
        return LB_OK;
    }
    return st;
}

lb_status lb__hparams_read(const lb_gguf *g, lb_arch *arch_out, lb_hparams *hp, lb_err *err)
{
    lb_gguf_str s;
    lb_status st = lb_gguf_get_str(g, "general.architecture", &s, err);
    if (st != LB_OK)
        return st;
    const arch_desc *ad = NULL;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strlen(archs[i].name) == s.len && memcmp(archs[i].name, s.ptr, s.len) == 0)
            ad = &archs[i];
    if (!ad)
        return lb__errf(err, LB_ERR_UNSUPPORTED,
                        "architecture '%.*s' is not supported (supported: llama, qwen2)",
                        (int)(s.len > 64 ? 64 : s.len), s.ptr);
    const char *a = ad->name;
    memset(hp, 0, sizeof *hp);
    const int64_t big = 1 << 20;
    if ((st = arch_int(g, a, "embedding_length", -1, 1, big, &hp->n_embd, err)) ||
        (st = arch_int(g, a, "block_count", -1, 1, 4096, &hp->n_layer, err)) ||
        (st = arch_int(g, a, "feed_forward_length", -1, 1, big, &hp->n_ff, err)) ||
        (st = arch_int(g, a, "attention.head_count", -1, 1, 4096, &hp->n_head, err)) ||
        (st = arch_int(g, a, "context_length", 2048, 1, 1 << 24, &hp->n_ctx_train, err)))
        return st;
    if ((st = arch_int(g, a, "attention.head_count_kv", hp->n_head, 1, hp->n_head, &hp->n_head_kv, err)))
        return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return lb__errf(err, LB_ERR_FORMAT, "%s.attention.head_count (%d) is not a multiple of head_count_kv (%d)",
                        a, hp->n_head, hp->n_head_kv);
    int def_hd = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : -1;
    if ((st = arch_int(g, a, "attention.key_length", def_hd, 2, 4096, &hp->head_dim, err)))
        return st;
    int vlen;
    if ((st = arch_int(g, a, "attention.value_length", hp->head_dim, 2, 4096, &vlen, err)))
        return st;
    if (vlen != hp->head_dim)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "key_length %d != value_length %d is not supported",
                        hp->head_dim, vlen);
    if ((st = arch_int(g, a, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->n_rot, err)))
        return st;
    if (hp->n_rot % 2)
        return lb__errf(err, LB_ERR_FORMAT, "%s.rope.dimension_count %d is odd", a, hp->n_rot);
    if ((st = arch_f32(g, a, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps, err)) ||
        (st = arch_f32(g, a, "rope.freq_base", 10000.0f, &hp->rope_base, err)))
        return st;
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1) || !(hp->rope_base > 1))
        return lb__errf(err, LB_ERR_FORMAT, "rms epsilon %g or rope base %g out of range", hp->norm_eps, hp->rope_base);

    hp->rope_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    lb_gguf_str stype = {0};
    st = lb_gguf_get_str(g, key, &stype, err);
    if (st == LB_OK && !(stype.len == 4 && memcmp(stype.ptr, "none", 4) == 0)) {
        if (!(stype.len == 6 && memcmp(stype.ptr, "linear", 6) == 0))
            return lb__errf(err, LB_ERR_UNSUPPORTED, "rope scaling '%.*s' is not supported (none, linear)",
                            (int)(stype.len > 32 ? 32 : stype.len), stype.ptr);
        float factor = 1.0f;
        if ((st = arch_f32(g, a, "rope.scaling.factor", 1.0f, &factor, err)))
            return st;
        if (!(factor >= 1.0f && factor < 1024.0f))
            return lb__errf(err, LB_ERR_FORMAT, "rope.scaling.factor %g out of range", factor);
        hp->rope_scale = 1.0f / factor;
    } else if (st != LB_OK && st != LB_ERR_NOT_FOUND) {
        return st;
    } else {
        /* Older files give only the factor. */
        float factor = 1.0f;
        if ((st = arch_f32(g, a, "rope.scale_linear", 1.0f, &factor, err)))
            return st;
        if (factor >= 1.0f && factor < 1024.0f)
            hp->rope_scale = 1.0f / factor;
    }
    lb__err_clear(err);
    hp->rope = ad->rope;
    *arch_out = ad->arch;
    return LB_OK;
}
