/* lb_generate: prompt in, tokens out through a callback, with timings. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "utf8_stream.h"

lb_gen_params lb_gen_default_params(void)
{
    lb_gen_params g;
    memset(&g, 0, sizeof g);
    g.max_tokens = 128;
    g.add_special = true;
    g.stop_at_eog = true;
    g.sampler = lb_sampler_default_params();
    return g;
}

lb_status lb_generate(lb_session *s, const char *prompt, const lb_gen_params *gp, lb_token_cb cb, void *user,
                      lb_gen_stats *stats)
{
    if (!s || !prompt)
        return LB_ERR_INVALID_ARG;
    lb_gen_params def = lb_gen_default_params();
    if (!gp)
        gp = &def;
    const lb_model *m = s->model;
    const int V = m->hp.n_vocab;
    lb_gen_stats st_local = {0};
    lb_gen_stats *st = stats ? stats : &st_local;
    memset(st, 0, sizeof *st);
    st->finish_reason = "error";
    lb__text_stream ts;
    lb__text_stream_init(&ts, gp->stop, gp->n_stop);

    size_t len = strlen(prompt), n_tok = 0;
    size_t cap = len + 8;
    lb_token *toks = malloc(cap * sizeof *toks);
    float *logits = malloc((size_t)V * sizeof *logits);
    lb_sampler *smp = NULL;
    lb_status rc = (!toks || !logits) ? LB_ERR_NOMEM : LB_OK;
    if (!rc)
        rc = lb_tokenize(m, prompt, len, gp->add_special, true, toks, cap, &n_tok);
    if (!rc && n_tok == 0) {
        snprintf(s->err, sizeof s->err, "the prompt is empty and the model adds no BOS token");
        rc = LB_ERR_INVALID_ARG;
    }
    if (!rc && (int)n_tok + 1 > s->n_ctx) {
        snprintf(s->err, sizeof s->err, "the prompt has %zu tokens; the context holds %d", n_tok, s->n_ctx);
        rc = LB_ERR_RANGE;
    }
    if (!rc)
        rc = lb_sampler_new(&gp->sampler, V, &smp);
    if (rc)
        goto done;
    for (size_t i = 0; i < n_tok; i++)
        lb_sampler_accept(smp, toks[i]);

    lb_session_reset(s);
    double t0 = lb_time_ms();
    rc = lb_session_eval(s, toks, (int)n_tok, logits, true);
    double t1 = lb_time_ms();
    st->n_prompt = (int)n_tok;
    st->prompt_ms = t1 - t0;
    double prev = t0;
    const char *why = "length";   /* also when max_tokens is 0 */
    for (int i = 0; !rc && i < gp->max_tokens; i++) {
        lb_token t = lb_sampler_sample(smp, logits);
        if (t < 0) {
            snprintf(s->err, sizeof s->err, "no finite logits to sample from at generated token %d", i);
            rc = LB_ERR_INTERNAL;
            break;
        }
        if (gp->stop_at_eog && lb_token_is_eog(m, t)) {
            why = "stop";
            break;
        }
        double now = lb_time_ms();
        lb_token_event ev = {t, NULL, 0, i, now - prev};
        prev = now;
        size_t plen = 0;
        const char *piece = lb_token_piece(m, t, &plen);
        if ((rc = lb__text_stream_push(&ts, piece, piece ? plen : 0)))
            break;
        ev.piece = ts.out;
        ev.piece_len = ts.n_out;
        st->n_gen = i + 1;
        if (cb && !cb(&ev, user)) {
            rc = LB_ERR_CANCELLED;
            break;
        }
        if (ts.stopped) {
            why = "stop";
            break;
        }
        if (i + 1 == gp->max_tokens)
            break;
        if (s->n_past >= s->n_ctx) {
            snprintf(s->err, sizeof s->err, "the context of %d tokens is full", s->n_ctx);
            why = "context";
            break;   /* a full context ends the generation; it is not an error */
        }
        rc = lb_session_eval(s, &t, 1, logits, true);
    }
    if (!rc && !(rc = lb__text_stream_finish(&ts)) && ts.n_out && cb) {
        /* The held-back tail is released with the flush event documented in lowbit.h. */
        lb_token_event ev = {-1, ts.out, ts.n_out, st->n_gen, lb_time_ms() - prev};
        if (!cb(&ev, user))
            rc = LB_ERR_CANCELLED;
    }
    st->gen_ms = lb_time_ms() - t1;
    st->finish_reason = rc == LB_OK ? why : rc == LB_ERR_CANCELLED ? "cancelled" : "error";
done:
    lb__text_stream_free(&ts);
    lb_sampler_free(smp);
    free(toks);
    free(logits);
    return rc;
}
