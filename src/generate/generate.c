/* lb_generate: prompt in, tokens out through a callback, with timings; and
 * the same loop as steps (gen_step.h) for batched decoding. */
#include "gen_step.h"
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

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

/* The end of a generation that got past its setup: the held-back tail is
 * released with the flush event documented in lowbit.h. */
static void finish(lb__gen *g)
{
    if (!g->t1) {   /* ended while prefilling (cancelled between steps) */
        g->t1 = lb_time_ms();
        g->st.prompt_ms = g->t1 - g->t0;
    }
    if (!g->rc && !(g->rc = lb__text_stream_finish(&g->ts)) && g->ts.n_out && g->cb) {
        lb_token_event ev = {-1, g->ts.out, g->ts.n_out, g->st.n_gen, lb_time_ms() - g->prev};
        if (!g->cb(&ev, g->user))
            g->rc = LB_ERR_CANCELLED;
    }
    g->st.gen_ms = lb_time_ms() - g->t1;
    g->st.finish_reason = g->rc == LB_OK ? g->why : g->rc == LB_ERR_CANCELLED ? "cancelled" : "error";
    g->done = true;
}

/* Samples token g->i from logits and delivers it; decides whether another
 * token follows (then g->next is what to evaluate). */
static void deliver(lb__gen *g, float *logits)
{
    lb_session *s = g->s;
    const lb_model *m = s->model;
    if (g->i >= g->gp.max_tokens) {   /* max_tokens 0 */
        finish(g);
        return;
    }
    lb_token t = lb_sampler_sample(g->smp, logits);
    if (t < 0) {
        snprintf(s->err, sizeof s->err, "no finite logits to sample from at generated token %d", g->i);
        g->rc = LB_ERR_INTERNAL;
        finish(g);
        return;
    }
    if (g->gp.stop_at_eog && lb_token_is_eog(m, t)) {
        g->why = "stop";
        finish(g);
        return;
    }
    double now = lb_time_ms();
    lb_token_event ev = {t, NULL, 0, g->i, now - g->prev};
    g->prev = now;
    size_t plen = 0;
    const char *piece = lb_token_piece(m, t, &plen);
    if ((g->rc = lb__text_stream_push(&g->ts, piece, piece ? plen : 0))) {
        finish(g);
        return;
    }
    ev.piece = g->ts.out;
    ev.piece_len = g->ts.n_out;
    g->st.n_gen = ++g->i;
    if (g->cb && !g->cb(&ev, g->user)) {
        g->rc = LB_ERR_CANCELLED;
        finish(g);
        return;
    }
    if (g->ts.stopped) {
        g->why = "stop";
        finish(g);
        return;
    }
    if (g->i == g->gp.max_tokens) {
        finish(g);
        return;
    }
    if (s->n_past >= s->n_ctx) {
        snprintf(s->err, sizeof s->err, "the context of %d tokens is full", s->n_ctx);
        g->why = "context";   /* a full context ends the generation; it is not an error */
        finish(g);
        return;
    }
    g->next = t;
}

/* lb__gen_begin with the prompt as text (tokens NULL) or as n_tok tokens. */
static lb_status begin(lb__gen *g, lb_session *s, const char *prompt, const lb_token *tokens, size_t n_tok,
                       const lb_gen_params *gp, lb_token_cb cb, void *user)
{
    memset(g, 0, sizeof *g);
    g->done = true;
    g->st.finish_reason = "error";
    g->why = "length";   /* also when max_tokens is 0 */
    if (!s || (!prompt && !tokens))
        return g->rc = LB_ERR_INVALID_ARG;
    g->s = s;
    g->gp = gp ? *gp : lb_gen_default_params();
    g->cb = cb;
    g->user = user;
    lb__text_stream_init(&g->ts, g->gp.stop, g->gp.n_stop);
    const lb_model *m = s->model;
    const int V = m->hp.n_vocab;

    size_t len = tokens ? 0 : strlen(prompt);
    size_t cap = tokens ? n_tok + 1 : len + 8;
    g->prompt = malloc(cap * sizeof *g->prompt);
    g->logits = malloc((size_t)V * sizeof *g->logits);
    lb_status rc = (!g->prompt || !g->logits) ? LB_ERR_NOMEM : LB_OK;
    if (!rc && tokens)
        memcpy(g->prompt, tokens, n_tok * sizeof *g->prompt);
    else if (!rc)
        rc = lb_tokenize(m, prompt, len, g->gp.add_special, true, g->prompt, cap, &n_tok);
    if (!rc && n_tok == 0) {
        snprintf(s->err, sizeof s->err, "the prompt is empty and the model adds no BOS token");
        rc = LB_ERR_INVALID_ARG;
    }
    if (!rc && (int)n_tok + 1 > s->n_ctx) {
        snprintf(s->err, sizeof s->err, "the prompt has %zu tokens; the context holds %d", n_tok, s->n_ctx);
        rc = LB_ERR_RANGE;
    }
    for (size_t i = 0; !rc && i < n_tok; i++)
        if (g->prompt[i] < 0 || g->prompt[i] >= V) {
            snprintf(s->err, sizeof s->err, "prompt token %zu is %d, outside the vocabulary (0..%d)", i,
                     g->prompt[i], V - 1);
            rc = LB_ERR_RANGE;
        }
    if (!rc)
        rc = lb_sampler_new(&g->gp.sampler, V, &g->smp);
    if (rc)
        return g->rc = rc;
    for (size_t i = 0; i < n_tok; i++)
        lb_sampler_accept(g->smp, g->prompt[i]);
    g->n_prompt = (int)n_tok;
    g->st.n_prompt = (int)n_tok;
    g->done = false;
    lb_session_reset(s);
    g->t0 = lb_time_ms();
    return LB_OK;
}

lb_status lb__gen_begin(lb__gen *g, lb_session *s, const char *prompt, const lb_gen_params *gp, lb_token_cb cb,
                        void *user)
{
    return begin(g, s, prompt, NULL, 0, gp, cb, user);
}

lb_status lb__gen_begin_tokens(lb__gen *g, lb_session *s, const lb_token *tokens, int n, const lb_gen_params *gp,
                               lb_token_cb cb, void *user)
{
    return begin(g, s, NULL, n < 0 ? NULL : tokens, n < 0 ? 0 : (size_t)n, gp, cb, user);   /* NULL: refused */
}

void lb__gen_prompt_cached(lb__gen *g, int n)
{
    if (!g->done && g->n_fed == 0 && n > 0)
        g->n_fed = n < g->n_prompt ? n : g->n_prompt - 1;
}

void lb__gen_prompt_fed(lb__gen *g, int n, lb_status eval_rc, float *logits)
{
    if (g->done)
        return;
    g->n_fed += n;
    if (!eval_rc && g->n_fed < g->n_prompt)
        return;
    g->t1 = lb_time_ms();
    g->st.prompt_ms = g->t1 - g->t0;
    g->prev = g->t0;
    if ((g->rc = eval_rc))
        finish(g);
    else
        deliver(g, logits);
}

lb_status lb__gen_start(lb__gen *g, lb_session *s, const char *prompt, const lb_gen_params *gp, lb_token_cb cb,
                        void *user)
{
    if (lb__gen_begin(g, s, prompt, gp, cb, user))
        return g->rc;
    lb_status rc = lb_session_eval(s, g->prompt, g->n_prompt, g->logits, true);
    lb__gen_prompt_fed(g, g->n_prompt, rc, g->logits);
    return g->rc;
}

void lb__gen_step(lb__gen *g, lb_status eval_rc, float *logits)
{
    if (g->done)
        return;
    if (eval_rc) {
        g->rc = eval_rc;
        finish(g);
        return;
    }
    deliver(g, logits);
}

lb_status lb__gen_end(lb__gen *g, lb_gen_stats *stats)
{
    lb__text_stream_free(&g->ts);
    lb_sampler_free(g->smp);
    free(g->logits);
    free(g->prompt);
    g->smp = NULL;
    g->logits = NULL;
    g->prompt = NULL;
    g->done = true;
    if (stats)
        *stats = g->st;
    return g->rc;
}

lb_status lb_generate(lb_session *s, const char *prompt, const lb_gen_params *gp, lb_token_cb cb, void *user,
                      lb_gen_stats *stats)
{
    lb__gen g;
    lb__gen_start(&g, s, prompt, gp, cb, user);
    while (!g.done) {
        lb_status rc = lb_session_eval(s, &g.next, 1, g.logits, true);
        lb__gen_step(&g, rc, g.logits);
    }
    return lb__gen_end(&g, stats);
}
