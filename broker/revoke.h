/*
 * revoke.h: a reload's re-check of the connections already open.
 *
 * [broker] allow_uids and allow_gids are checked when a peer connects. A
 * reload that removes a peer must also end what that peer holds open, on
 * every face: kb_revoke_recheck closes each client connection of the loop
 * whose peer the new policy refuses, then runs each face's hook, which checks
 * its own connections with kb_revoke_may_stay. Each closed connection gets
 * one audit line (op "disconnect", result permission_denied) and one log
 * line. Loop thread only.
 */
#ifndef KB_REVOKE_H
#define KB_REVOKE_H

#include "broker.h"

/*
 * A face's re-check: recheck(ctx, b) runs after each reload and closes the
 * face's connections for which kb_revoke_may_stay says false. The face owns
 * the hook's storage; it stays added until kb_revoke_hook_remove.
 */
typedef struct kb_revoke_hook {
	void (*recheck)(void *ctx, kb_broker *b);
	void *ctx;
	struct kb_revoke_hook *next;
} kb_revoke_hook;

void kb_revoke_hook_add(kb_broker *b, kb_revoke_hook *h);
void kb_revoke_hook_remove(kb_broker *b, kb_revoke_hook *h);

/* kb_revoke_recheck closes the connections the current policy refuses (above); after a reload. */
void kb_revoke_recheck(kb_broker *b);

/*
 * kb_revoke_may_stay tells whether a connection of face ("kms:NAME") from
 * uid/gid/pid (exe: its executable, or "") may stay under the current
 * policy. On false it has written the audit and log lines, and the face
 * closes the connection.
 */
bool kb_revoke_may_stay(kb_broker *b, const char *face, uid_t uid, gid_t gid, pid_t pid, const char *exe);

#endif
