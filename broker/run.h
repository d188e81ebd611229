/*
 * run.h: a job's backend work (see run.c).
 */
#ifndef KB_RUN_H
#define KB_RUN_H

#include "broker.h"

/*
 * kb_job_run does j's backend work on slot, filling j's results and j->err.
 * Called by a worker (pool.c); touches only j and the backend slot.
 */
void kb_job_run(kb_broker *b, kb_job *j, int slot);

/* kb_call_begin starts timing one backend call. */
int64_t kb_call_begin(void);

/*
 * kb_call_end records a backend call that began at t0 and returned rc, for
 * the counters, and makes j->err agree with rc: KB_OK clears it (a retry
 * inside the backend may have filled it), a failure always carries a code.
 * The request id stays, for the audit log. Returns rc.
 */
kb_code kb_call_end(kb_job *j, kb_bop op, int64_t t0, kb_code rc);

/* kb_unwrap_done takes an unwrap's result into j (plaintext length n, the blob's version). */
void kb_unwrap_done(kb_job *j, size_t n);

#endif
