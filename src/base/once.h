/* Run-once initialisation that is safe when several threads race to it. */
#ifndef LB_BASE_ONCE_H
#define LB_BASE_ONCE_H

#include <pthread.h>

typedef pthread_once_t lb_once;
#define LB_ONCE_INIT PTHREAD_ONCE_INIT

static inline void lb_once_run(lb_once *o, void (*fn)(void)) { pthread_once(o, fn); }

#endif
