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

/*
 * kb_answer_cached answers w from cache entry e of key k: "cached":true, and
 * "stale":true when the entry is past its TTL and served only because the
 * key service cannot be reached (outage grace; audited as cache "stale").
 */
void kb_answer_cached(kb_broker *b, const kb_waiter *w, const kb_key *k, const kb_cache_entry *e, bool stale);

#endif
