/*
 * policy.h: who may talk to the broker, and who may do what.
 *
 * A peer is identified by SO_PEERCRED when it connects. [broker] allow_uids
 * and allow_gids say who may connect at all (default: the daemon's own uid).
 * admin_uids and admin_gids say who may run the admin operations rotate,
 * flush and doctor (default: the daemon's own uid and root). Each key may
 * narrow each operation class further with allow_unwrap, allow_wrap (also
 * datakey), allow_rewrap, allow_rotate and allow_get.
 */
#ifndef KB_POLICY_H
#define KB_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "broker.h"

/*
 * kb_policy_peer_allowed tells whether uid/gid may connect. When not, why
 * receives a message for the peer that says what to change.
 */
bool kb_policy_peer_allowed(const kb_broker *b, uid_t uid, gid_t gid, char *why, size_t whylen);

/*
 * kb_policy_check tells whether peer c may do op on key k (NULL for ops
 * without a key). Returns KB_OK, or KB_E_PERMISSION_DENIED with a message
 * naming the operation and the key.
 */
kb_code kb_policy_check(const kb_broker *b, const kb_conn *c, kb_op op, const kb_key *k,
			kb_err *err);

#endif
