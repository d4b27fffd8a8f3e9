/* lb_generate cut into steps (start, then one step per evaluated token) so
 * that several generations can share one batched decode step: the server's
 * scheduler evaluates every active generation's next token with
 * lb_batch_eval, then hands each its row of logits. */
#ifndef LB_GENERATE_GEN_STEP_H
#define LB_GENERATE_GEN_STEP_H

#include <stdbool.h>

#include "lowbit.h"
#include "utf8_stream.h"

typedef struct lb__gen {
    lb_session *s;
    lb_gen_params gp;          /* a copy; gp.stop stays borrowed from the caller */
    lb_token_cb cb;
    void *user;
    lb_sampler *smp;
    lb__text_stream ts;
    float *logits;             /* [n_vocab] the prefill's last row, or the caller's row in lb__gen_step */
    lb_token *prompt;          /* [n_prompt] the prompt's tokens */
    int n_prompt, n_fed;       /* of which n_fed are evaluated: prefilling while n_fed < n_prompt */
    lb_token next;             /* the token to evaluate next (valid while !done and the prompt is in) */
    int i;                     /* tokens generated so far */
    double t0, t1, prev;       /* start, end of prefill, previous token (lb_time_ms) */
    const char *why;           /* finish reason if the generation ends without error */
    bool done;
    lb_status rc;
    lb_gen_stats st;
} lb__gen;

/* Tokenizes the prompt and resets the session; the caller then evaluates
 * the prompt (g->prompt, in one piece or several) and reports each piece
 * with lb__gen_prompt_fed.  Returns g->rc (on error g->done is set).  g must
 * be ended with lb__gen_end whatever happens. */
lb_status lb__gen_begin(lb__gen *g, lb_session *s, const char *prompt, const lb_gen_params *gp, lb_token_cb cb,
                        void *user);

/* lb__gen_begin with a prompt already tokenized (as lb__gen_begin would:
 * gp->add_special, special tokens parsed): tokens [n], copied. */
lb_status lb__gen_begin_tokens(lb__gen *g, lb_session *s, const lb_token *tokens, int n, const lb_gen_params *gp,
                               lb_token_cb cb, void *user);

/* The session already holds the prompt's first n tokens (a shared prefix,
 * lb__session_share_prefix): its evaluation starts after them.  n is cut to
 * n_prompt - 1, since the last prompt token's row gives the first sample. */
void lb__gen_prompt_cached(lb__gen *g, int n);

/* n more prompt tokens were evaluated with status eval_rc; logits: [n_vocab]
 * the row after the last of them (needed only when the prompt is then
 * complete: the first token is sampled and delivered from it). */
void lb__gen_prompt_fed(lb__gen *g, int n, lb_status eval_rc, float *logits);

/* lb__gen_begin, then the whole prompt in the session's own batches, then
 * lb__gen_prompt_fed.  Afterwards, while !g->done, the caller evaluates
 * g->next in g->s (alone or in a batch) and passes the resulting logits to
 * lb__gen_step.  The return value is g->rc so far. */
lb_status lb__gen_start(lb__gen *g, lb_session *s, const char *prompt, const lb_gen_params *gp, lb_token_cb cb,
                        void *user);

/* eval_rc: how evaluating g->next went; logits: [n_vocab], the row it gave
 * (may be modified).  Samples and delivers one token, or ends the generation
 * (eval_rc != LB_OK ends it with that status; LB_ERR_CANCELLED is how a
 * caller cancels a generation between steps). */
void lb__gen_step(lb__gen *g, lb_status eval_rc, float *logits);

/* Releases g's buffers, copies the statistics into stats (may be NULL) and
 * returns the generation's final status. */
lb_status lb__gen_end(lb__gen *g, lb_gen_stats *stats);

#endif
