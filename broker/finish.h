/*
 * finish.h: the loop's half of a job, once its backend work is done.
 */
#ifndef KB_FINISH_H
#define KB_FINISH_H

#include "broker.h"

/*
 * kb_job_finish folds a finished job into the cache and counters, answers
 * every request that waited on it, and frees it. Loop thread only.
 */
void kb_job_finish(kb_broker *b, kb_job *j);

#endif
