/*
 * uidwaits.c: per-uid queue waits (uidwaits.h).
 */
#include "looptoken.h"
#include "uidwaits.h"

void kb_uid_waits_add(kb_uid_waits *w, uid_t uid, int64_t us)
{
	kb_uid_wait *u = NULL;

	kb_loop_assert_owner();
	for (int i = 0; i < w->n && u == NULL; i++)
		if (w->uids[i].uid == uid)
			u = &w->uids[i];
	if (u == NULL && w->n < KB_UID_WAITS_MAX) {
		u = &w->uids[w->n++];
		u->uid = uid;
	}
	if (u == NULL)
		u = &w->other;
	u->count++;
	u->sum_us += us;
	if (us > u->max_us)
		u->max_us = us;
}
