/*
 * finish.h: the loop's half of a job, once its backend work is done.
 *
 * Everything a job's end touches (the cache, the single-flight table, the
 * counters, the connections) belongs to the loop. A worker may still end its
 * own job, so that a PKCS#11 miss reaches its client without waking the loop:
 * the loop holds b->gate whenever it is not waiting for events, and a worker
 * that finds the gate free while the loop waits (kb_job_finish_here) does the
 * loop's work under it. The loop does not know or care which thread ended a
 * job: either way exactly one thread at a time touches its state.
 */
#ifndef KB_FINISH_H
#define KB_FINISH_H

#include "broker.h"

/*
 * kb_job_finish folds a finished job into the cache and counters, answers
 * every request that waited on it, and frees it. The loop thread, or the
 * thread kb_job_finish_here lets in.
 */
void kb_job_finish(kb_broker *b, kb_job *j);

/*
 * kb_job_finish_here ends j on the calling worker if the loop is waiting for
 * events, and returns true; false means the loop is busy (or gone), and j
 * goes back to it as before. Jobs a backend offloaded (j->work) always go
 * back: their callbacks may arm the loop's timers, which only the loop reads.
 */
bool kb_job_finish_here(kb_broker *b, kb_job *j);

/*
 * The loop's side of the gate: kb_loop_enter before it serves (it then holds
 * the gate), kb_loop_sleep and kb_loop_wake around each wait for events, and
 * kb_loop_leave once it stops serving (no worker ends a job after that).
 */
void kb_loop_enter(kb_broker *b);
void kb_loop_sleep(kb_broker *b);
void kb_loop_wake(kb_broker *b);
void kb_loop_leave(kb_broker *b);

#endif
