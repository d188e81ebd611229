/*
 * uidwaits.h: how long each uid's jobs waited in the worker pool's queue,
 * for /metrics (keybroker_queue_wait_seconds).
 *
 * The pool takes jobs by turns between uids (pool.h); these sums show that
 * it does. The first KB_UID_WAITS_MAX uids seen have a series each, and
 * every later uid shares the one labelled "other", so a host with many
 * users cannot grow the exposition without bound. Loop state: the loop
 * token's holder folds each job in when it ends it (finish.c).
 */
#ifndef KB_UIDWAITS_H
#define KB_UIDWAITS_H

#include <stdint.h>
#include <sys/types.h>

#define KB_UID_WAITS_MAX 16

typedef struct kb_uid_wait {
	uid_t uid;
	uint64_t count;
	int64_t sum_us;
	int64_t max_us;
} kb_uid_wait;

typedef struct kb_uid_waits {
	kb_uid_wait uids[KB_UID_WAITS_MAX];
	int n;
	kb_uid_wait other;       /* every uid after the first KB_UID_WAITS_MAX */
} kb_uid_waits;

/* kb_uid_waits_add counts one job of uid that waited us microseconds. */
void kb_uid_waits_add(kb_uid_waits *w, uid_t uid, int64_t us);

#endif
