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

bool kb_loopcall_expect(kb_loopcall *lc, int64_t now_us, int64_t avg_us, int64_t max_us, bool pool)
{
	lc->wait_until_us = 0;
	if (lc->last_conn == NULL || now_us < lc->quiet_until_us || avg_us <= 0 || avg_us > max_us)
		return false;
	/* a quarter and 50 us over the average: a call that runs late is not waited for long */
	lc->wait_until_us = now_us + avg_us + avg_us / 4 + 50;
	lc->wait_pool = pool;
	return true;
}

bool kb_loopcall_waiting(const kb_loopcall *lc, int64_t now_us)
{
	return lc->wait_until_us != 0 && now_us < lc->wait_until_us;
}
