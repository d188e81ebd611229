#include <stdio.h>

#include "policy.h"

static bool listed(const kb_idlist *l, uint32_t id)
{
	for (int i = 0; i < l->n; i++)
		if (l->ids[i] == id)
			return true;
	return false;
}

bool kb_policy_peer_allowed(const kb_broker *b, uid_t uid, gid_t gid, char *why, size_t whylen)
{
	const kb_config *c = b->cfg;

	if (!c->allow_uids.set && !c->allow_gids.set) {
		if (uid == b->uid)
			return true;
		snprintf(why, whylen,
			 "uid %u may not use this broker: only its own uid %u may, unless [broker] "
			 "allow_uids or allow_gids lists others",
			 (unsigned)uid, (unsigned)b->uid);
		return false;
	}
	if (listed(&c->allow_uids, uid) || listed(&c->allow_gids, gid))
		return true;
	snprintf(why, whylen,
		 "uid %u (gid %u) may not use this broker: it is in neither [broker] allow_uids nor allow_gids",
		 (unsigned)uid, (unsigned)gid);
	return false;
}
