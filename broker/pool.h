/*
 * pool.h: the worker threads that make backend calls.
 *
 * The loop submits jobs; each worker runs one at a time with its own
 * backend slot (its index), then ends the job itself if it can take the
 * loop token (kb_job_finish_here, finish.h), else hands it back: those are
 * picked up by the loop when kb_pool_fd() turns readable. Outside the token
 * a worker touches only its job and its backend slot.
 *
 * Jobs queue per uid and workers take them by turns between uids, so one
 * uid's flood of misses delays another uid's by at most one call each.
 * When a worker spins and the loop polls is schedule.h's rule.
 */
#ifndef KB_POOL_H
#define KB_POOL_H

#include "broker.h"

typedef struct kb_pool kb_pool;

/* kb_pool_start starts nworkers threads running kb_job_run. */
kb_code kb_pool_start(kb_broker *b, int nworkers, kb_pool **out, kb_err *err);

/* kb_pool_fd is an eventfd that is readable while finished jobs wait. */
int kb_pool_fd(const kb_pool *p);

/*
 * kb_pool_submit queues j for the next free worker, in uid's turn (the peer
 * that waits for it; the broker's own uid for work no peer waits for). The
 * time it waited in the queue is j->wait_us once a worker has it.
 */
void kb_pool_submit(kb_pool *p, kb_job *j, uid_t uid);

/* kb_pool_take_done returns the finished jobs as a list (next), oldest first. */
kb_job *kb_pool_take_done(kb_pool *p);

/*
 * kb_pool_job_may_end_soon: a job is with the workers and the CPU budget
 * has a CPU beside the busy threads, so the loop may poll for it for a
 * round trip (schedule.h) rather than sleep.
 */
bool kb_pool_job_may_end_soon(const kb_pool *p);

/*
 * kb_pool_loop_may_poll: the CPU budget has a CPU beside the busy threads
 * for the loop to poll on (kb_sched_spare_cpu).
 */
bool kb_pool_loop_may_poll(const kb_pool *p);

/*
 * kb_pool_loop_fits: the loop has a CPU of its own beside the busy workers,
 * counting the one its waiting client left idle (kb_sched_loop_fits).
 */
bool kb_pool_loop_fits(const kb_pool *p);

/*
 * kb_pool_idle says whether no job is with the workers: none is queued,
 * running or being ended, so no worker is in any backend slot.
 */
bool kb_pool_idle(const kb_pool *p);

/* kb_pool_cpus is the CPU budget the pool's rules spend (kb_sched_cpu_budget). */
int kb_pool_cpus(const kb_pool *p);

/*
 * kb_pool_stop lets the workers finish the queue, joins and frees them, and
 * returns the jobs they finished that the loop has not taken (a list).
 */
kb_job *kb_pool_stop(kb_pool *p);

#endif
