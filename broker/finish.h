/*
 * finish.h: the loop's half of a job, once its backend work is done.
 *
 * Everything a job's end touches (the cache, the single-flight table, the
 * counters, the connections) belongs to the loop. The loop holds b->gate
 * whenever it is not waiting for events, so another thread that finds the
 * gate free while the loop waits may do the loop's work under it: the KMS
 * face answers a call on gRPC's thread that way (kms_face.c). Workers do not:
 * measured on an idle machine, a PKCS#11 miss answered by its worker took
 * longer (RSA 830 vs 700 us p50, docs/BENCHMARKS.md) than one handed back.
 */
#ifndef KB_FINISH_H
#define KB_FINISH_H

#include "broker.h"

/*
 * kb_job_finish folds a finished job into the cache and counters, answers
 * every request that waited on it, and frees it. The loop thread only.
 */
void kb_job_finish(kb_broker *b, kb_job *j);

/*
 * The loop's side of the gate: kb_loop_enter before it serves (it then holds
 * the gate), kb_loop_sleep and kb_loop_wake around each wait for events, and
 * kb_loop_leave once it stops serving (no other thread enters after that).
 */
void kb_loop_enter(kb_broker *b);
void kb_loop_sleep(kb_broker *b);
void kb_loop_wake(kb_broker *b);
void kb_loop_leave(kb_broker *b);

#endif
