/* Chat formats recognized by their marker tokens, rendered without a Jinja engine. */
#include "chat_template.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

lb_chat_format lb_chat_detect(const char *t)
{
    if (!t)
        return LB_CHAT_PLAIN;
    /* Most specific markers first: llama-3 and gemma templates never contain chatml's, but some mention [INST]. */
    if (strstr(t, "<|start_header_id|>"))
        return LB_CHAT_LLAMA3;
    if (strstr(t, "<|im_start|>"))
        return LB_CHAT_CHATML;
    if (strstr(t, "<start_of_turn>"))
        return LB_CHAT_GEMMA;
    if (strstr(t, "<|user|>") && strstr(t, "<|end|>"))
        return LB_CHAT_PHI3;
    if (strstr(t, "[INST]"))
        return LB_CHAT_LLAMA2;
    return LB_CHAT_PLAIN;
}

const char *lb_chat_format_name(lb_chat_format f)
{
    switch (f) {
    case LB_CHAT_LLAMA2: return "llama2";
    case LB_CHAT_CHATML: return "chatml";
    case LB_CHAT_LLAMA3: return "llama3";
    case LB_CHAT_PHI3: return "phi3";
    case LB_CHAT_GEMMA: return "gemma";
    default: return "plain";
    }
}

const char *lb_chat_stop(lb_chat_format f)
{
    /* The plain format has no end-of-turn token, so the model's next "User:" line ends its turn. */
    return f == LB_CHAT_PLAIN ? "\nUser:" : NULL;
}

typedef lb_strbuf sbuf;

static void put(sbuf *b, const char *s) { lb_strbuf_add(b, s, strlen(s)); }

static bool is(const char *role, const char *want) { return role && !strcmp(role, want); }

static void render_llama2(sbuf *b, const lb_chat_msg *m, int n)
{
    /* The system prompt goes inside the first [INST]; each finished exchange closes with </s><s>. */
    const char *sys = NULL;
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (is(m[i].role, "system")) {
            sys = m[i].content;
        } else if (is(m[i].role, "user")) {
            put(b, first ? "[INST] " : "<s>[INST] ");
            if (sys) {
                put(b, "<<SYS>>\n");
                put(b, sys);
                put(b, "\n<</SYS>>\n\n");
                sys = NULL;
            }
            put(b, m[i].content);
            put(b, " [/INST]");
            first = false;
        } else {
            put(b, " ");
            put(b, m[i].content);
            put(b, " </s>");
            first = false;
        }
    }
}

static void render_gemma(sbuf *b, const lb_chat_msg *m, int n)
{
    /* Gemma has no system role: the system text opens the first user turn. */
    const char *sys = NULL;
    for (int i = 0; i < n; i++) {
        if (is(m[i].role, "system")) {
            sys = m[i].content;
            continue;
        }
        put(b, "<start_of_turn>");
        put(b, is(m[i].role, "assistant") ? "model" : "user");
        put(b, "\n");
        if (sys && is(m[i].role, "user")) {
            put(b, sys);
            put(b, "\n\n");
            sys = NULL;
        }
        put(b, m[i].content);
        put(b, "<end_of_turn>\n");
    }
    put(b, "<start_of_turn>model\n");
}

char *lb_chat_render(lb_chat_format f, const lb_chat_msg *m, int n)
{
    sbuf b = {0};
    put(&b, "");
    switch (f) {
    case LB_CHAT_LLAMA2:
        render_llama2(&b, m, n);
        break;
    case LB_CHAT_GEMMA:
        render_gemma(&b, m, n);
        break;
    case LB_CHAT_CHATML:
        for (int i = 0; i < n; i++) {
            put(&b, "<|im_start|>");
            put(&b, m[i].role);
            put(&b, "\n");
            put(&b, m[i].content);
            put(&b, "<|im_end|>\n");
        }
        put(&b, "<|im_start|>assistant\n");
        break;
    case LB_CHAT_LLAMA3:
        for (int i = 0; i < n; i++) {
            put(&b, "<|start_header_id|>");
            put(&b, m[i].role);
            put(&b, "<|end_header_id|>\n\n");
            put(&b, m[i].content);
            put(&b, "<|eot_id|>");
        }
        put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case LB_CHAT_PHI3:
        for (int i = 0; i < n; i++) {
            put(&b, "<|");
            put(&b, m[i].role);
            put(&b, "|>\n");
            put(&b, m[i].content);
            put(&b, "<|end|>\n");
        }
        put(&b, "<|assistant|>\n");
        break;
    default:
        for (int i = 0; i < n; i++) {
            put(&b, is(m[i].role, "system") ? "System: " : is(m[i].role, "assistant") ? "Assistant: " : "User: ");
            put(&b, m[i].content);
            put(&b, "\n");
        }
        put(&b, "Assistant:");
        break;
    }
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
