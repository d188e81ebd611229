/*
 * loopcall.c: the rules of loopcall.h, kept apart so they are tested alone.
 */
#include <stddef.h>

#include "loopcall.h"

void kb_loopcall_note(kb_loopcall *lc, const void *conn, int64_t now_us)
{
	if (lc->last_conn != NULL && conn != lc->last_conn)
		lc->quiet_until_us = now_us + KB_LOOPCALL_QUIET_US;
	lc->last_conn = conn;
}

bool kb_loopcall_ok(const kb_loopcall *lc, int64_t now_us, int64_t avg_us, int64_t max_us, bool pool_idle)
{
	return lc->turn_ok && pool_idle && max_us > 0 && avg_us > 0 && avg_us <= max_us &&
	       now_us >= lc->quiet_until_us;
}

bool kb_loopcall_awake(const kb_loopcall *lc, int64_t now_us)
{
	return lc->ran_at_us != 0 && now_us - lc->ran_at_us < KB_LOOPCALL_AWAKE_US;
}

int64_t kb_loopcall_avg(int64_t avg, int64_t us)
{
	if (us <= 0)
		us = 1;
	/* an exponential average over about 8 calls: one slow call does not flip the choice */
	return avg <= 0 ? us : avg + (us - avg) / 8;
}
