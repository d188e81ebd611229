/*
 * submit.h: where a job's backend work runs.
 *
 * A call to a backend that does not block (kb_async) starts on the loop and
 * finishes on it; a short blocking unwrap on an otherwise idle broker runs
 * on the loop (schedule.h); everything else goes to a worker. Either way the job ends
 * in kb_job_finish: on the loop thread, or on the worker in the loop's stead
 * while the loop sleeps (finish.h).
 */
#ifndef KB_SUBMIT_H
#define KB_SUBMIT_H

#include "broker.h"

/* kb_job_submit starts j's backend work. */
void kb_job_submit(kb_broker *b, kb_job *j);

#endif
