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

static bool acl_allows(const kb_acl *a, const kb_conn *c)
{
	if (!a->uids.set && !a->gids.set)
		return true;
	return listed(&a->uids, c->uid) || listed(&a->gids, c->gid);
}

static bool is_admin(const kb_broker *b, const kb_conn *c)
{
	const kb_config *cfg = b->cfg;

	if (!cfg->admin_uids.set && !cfg->admin_gids.set)
		return c->uid == b->uid || c->uid == 0;
	return listed(&cfg->admin_uids, c->uid) || listed(&cfg->admin_gids, c->gid);
}

kb_code kb_policy_check(const kb_broker *b, const kb_conn *c, kb_op op, const kb_key *k,
			kb_err *err)
{
	kb_acl_class cls;

	switch (op) {
	case KB_OP_ROTATE:
	case KB_OP_FLUSH:
	case KB_OP_DOCTOR:
		if (!is_admin(b, c))
			return kb_err_set(err, KB_E_PERMISSION_DENIED,
					  "uid %u may not %s: it is an admin operation; list the uid in [broker] admin_uids or admin_gids",
					  (unsigned)c->uid, kb_op_name(op));
		if (op != KB_OP_ROTATE)
			return KB_OK;
		cls = KB_ACL_ROTATE;
		break;
	case KB_OP_UNWRAP: cls = KB_ACL_UNWRAP; break;
	case KB_OP_WRAP:
	case KB_OP_DATAKEY: cls = KB_ACL_WRAP; break;
	case KB_OP_REWRAP: cls = KB_ACL_REWRAP; break;
	case KB_OP_GET: cls = KB_ACL_GET; break;
	default: return KB_OK;
	}
	if (k == NULL || acl_allows(&k->acl[cls], c))
		return KB_OK;
	return kb_err_set(err, KB_E_PERMISSION_DENIED,
			  "uid %u (gid %u) may not %s with key %s: its allow_%s does not list it",
			  (unsigned)c->uid, (unsigned)c->gid, kb_op_name(op), k->conf->name,
			  cls == KB_ACL_WRAP ? "wrap" : kb_op_name(op));
}
