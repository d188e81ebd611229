/*
 * finish.h: the loop's half of a job, once its backend work is done.
 *
 * Everything a job's end touches (the cache, the single-flight table, the
 * counters, the connections) is loop state: its toucher holds the loop token
 * (looptoken.h). A worker may still end its own job, so that a PKCS#11 miss
 * reaches its client without waking the loop: when it can take the token
 * while the loop waits for events (kb_job_finish_here), it does the loop's
 * work under it. The loop does not know or care which thread ended a job.
 */
#ifndef KB_FINISH_H
#define KB_FINISH_H

#include "broker.h"

/*
 * kb_job_finish folds a finished job into the cache and counters, answers
 * every request that waited on it, and frees it. The caller holds the loop
 * token.
 */
void kb_job_finish(kb_broker *b, kb_job *j);

/*
 * kb_job_finish_here ends j on the calling worker if it can take the loop
 * token (the loop waits for events), and returns true; false means the loop
 * is busy (or gone), and j goes back to it as before. Jobs a backend
 * offloaded (j->work) always go back: their callbacks may arm the loop's
 * timers, and the loop computes its wait from those before it sleeps.
 */
bool kb_job_finish_here(kb_broker *b, kb_job *j);

#endif
