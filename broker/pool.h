/*
 * pool.h: the worker threads that make backend calls.
 *
 * The event loop submits jobs; each worker runs one at a time with its own
 * backend slot (its index), then ends the job itself if the loop is waiting
 * for events (kb_job_finish_here, finish.h), else hands it back: those are
 * picked up by the loop when kb_pool_fd() turns readable. Nothing a worker touches
 * besides its job and its backend slot is shared.
 */
#ifndef KB_POOL_H
#define KB_POOL_H

#include "broker.h"

typedef struct kb_pool kb_pool;

/* kb_pool_start starts nworkers threads running kb_job_run. */
kb_code kb_pool_start(kb_broker *b, int nworkers, kb_pool **out, kb_err *err);

/* kb_pool_fd is an eventfd that is readable while finished jobs wait. */
int kb_pool_fd(const kb_pool *p);

/* kb_pool_submit queues j for the next free worker. */
void kb_pool_submit(kb_pool *p, kb_job *j);

/* kb_pool_take_done returns the finished jobs as a list (next), oldest first. */
kb_job *kb_pool_take_done(kb_pool *p);

/*
 * kb_pool_should_spin tells the loop that a job it is waiting for may finish
 * within microseconds and a CPU is free, so polling beats sleeping.
 */
bool kb_pool_should_spin(const kb_pool *p);

/* kb_pool_may_spin says whether a CPU is free for the loop to poll on. */
bool kb_pool_may_spin(const kb_pool *p);

/*
 * kb_pool_fits_loop says whether the loop and the busy workers together
 * need no more than the CPUs there are: when the loop's one client waits
 * for an answer, its CPU is free and the loop may poll on it.
 */
bool kb_pool_fits_loop(const kb_pool *p);

/*
 * kb_pool_idle says whether no job is with the workers: none is queued,
 * running or being ended, so no worker is in any backend slot.
 */
bool kb_pool_idle(const kb_pool *p);

/*
 * kb_pool_stop lets the workers finish the queue, joins and frees them, and
 * returns the jobs they finished that the loop has not taken (a list).
 */
kb_job *kb_pool_stop(kb_pool *p);

#endif
