/*
 * policy.h: who may talk to the broker.
 *
 * A peer is identified by SO_PEERCRED when it connects. [broker] allow_uids
 * and allow_gids say who may connect at all (default: the daemon's own uid).
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

#endif
