/* Chat templates: recognize the common formats in a GGUF's tokenizer.chat_template
 * (a Jinja text we do not execute) and render messages in that format. */
#ifndef LB_SERVER_CHAT_TEMPLATE_H
#define LB_SERVER_CHAT_TEMPLATE_H

typedef enum lb_chat_format {
    LB_CHAT_PLAIN,    /* "User: ...\nAssistant:" — the fallback when nothing is recognized */
    LB_CHAT_LLAMA2,   /* [INST] ... [/INST] */
    LB_CHAT_CHATML,   /* <|im_start|>role ... <|im_end|> */
    LB_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|> ... <|eot_id|> */
    LB_CHAT_PHI3,     /* <|user|> ... <|end|> */
    LB_CHAT_GEMMA     /* <start_of_turn>user ... <end_of_turn> */
} lb_chat_format;

typedef struct lb_chat_msg {
    const char *role;      /* "system", "user" or "assistant" */
    const char *content;
} lb_chat_msg;

/* The format a template text uses; LB_CHAT_PLAIN for NULL or an unknown one. */
lb_chat_format lb_chat_detect(const char *tmpl);

/* "plain", "llama2", "chatml", "llama3", "phi3", "gemma". */
const char *lb_chat_format_name(lb_chat_format f);

/* The prompt for msgs followed by the opening of the assistant's turn; the
 * model's BOS is left to the tokenizer.  malloc'd; NULL on allocation failure. */
char *lb_chat_render(lb_chat_format f, const lb_chat_msg *msgs, int n);

/* A stop string the format needs beyond the model's end-of-generation tokens, or NULL. */
const char *lb_chat_stop(lb_chat_format f);

#endif
