/* Server counters and latency histograms, rendered as Prometheus text for GET /metrics. */
#ifndef LB_SERVER_METRICS_H
#define LB_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* The routes requests are counted under (a fixed set, so labels stay bounded). */
typedef enum lb_srv_route {
    LB_ROUTE_HEALTH, LB_ROUTE_METRICS, LB_ROUTE_MODELS, LB_ROUTE_COMPLETIONS, LB_ROUTE_CHAT,
    LB_ROUTE_STATIC, LB_ROUTE_OTHER, LB_ROUTE_COUNT
} lb_srv_route;

typedef struct lb_srv_metrics lb_srv_metrics;

/* NULL on allocation failure. Every function below is thread-safe. */
lb_srv_metrics *lb_srv_metrics_new(void);
void lb_srv_metrics_free(lb_srv_metrics *m);

void lb_srv_metrics_request(lb_srv_metrics *m, lb_srv_route route, int status);
void lb_srv_metrics_tokens(lb_srv_metrics *m, int n_prompt, int n_cached, int n_gen);
void lb_srv_metrics_active(lb_srv_metrics *m, int delta);
void lb_srv_metrics_ttft(lb_srv_metrics *m, double seconds);          /* request arrival to first token */
void lb_srv_metrics_token_latency(lb_srv_metrics *m, double seconds); /* between consecutive tokens */
/* One batched step: its decode rows (one per generating stream) and prompt rows, the seconds of its forward
 * pass and of sampling and handing out its tokens. */
void lb_srv_metrics_step(lb_srv_metrics *m, int decode_rows, int prompt_rows, double forward_s, double deliver_s);

/* The Prometheus text exposition (format 0.0.4); malloc'd, NULL on allocation failure. */
char *lb_srv_metrics_render(lb_srv_metrics *m, int queue_depth, int queue_cap, int slots_busy, int slots,
                            int store_entries, size_t store_bytes);

#endif
