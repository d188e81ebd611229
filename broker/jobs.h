/*
 * jobs.h: a job is the backend work for one or more requests.
 *
 * The loop creates a job, the worker runs it (kb_job_run, without touching
 * anything but the job and its backend slot), and the loop finishes it
 * (kb_job_finish in finish.h), or the worker does, holding the loop token.
 * Jobs carry plaintext DEKs, so freeing one
 * wipes it.
 */
#ifndef KB_JOBS_H
#define KB_JOBS_H

#include "broker.h"

/*
 * kb_job_new returns a zeroed job for op on key (of b's current keyset, which
 * the job holds a reference to), or NULL without memory.
 */
kb_job *kb_job_new(kb_broker *b, kb_op op, kb_key *key);

/* kb_job_free wipes and frees j (NULL is fine). */
void kb_job_free(kb_job *j);

/*
 * kb_job_add_waiter makes request w wait for j; j holds a reference to
 * w->conn until it is answered. Returns KB_OK or KB_E_INTERNAL without memory.
 */
kb_code kb_job_add_waiter(kb_job *j, const kb_waiter *w);

/* kb_flight_find returns the in-flight unwrap job for digest, or NULL. */
kb_job *kb_flight_find(kb_broker *b, const uint8_t *digest);

/* kb_flight_add makes j the in-flight job for j->digest. */
void kb_flight_add(kb_broker *b, kb_job *j);

/* kb_flight_remove takes j out of the single-flight table, if it is there. */
void kb_flight_remove(kb_broker *b, kb_job *j);

#endif
