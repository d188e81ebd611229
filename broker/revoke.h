/*
 * revoke.h: a reload's re-check of the connections already open.
 *
 * [broker] allow_uids and allow_gids are checked when a peer connects (the
 * one listener, listen.h). A reload that removes a peer must also end what
 * that peer holds open, on every face: kb_revoke_recheck closes each
 * connection of the loop's set (NDJSON and KMS v2 alike) whose peer the new
 * policy refuses. Each gets one audit line (op "disconnect", result
 * permission_denied) and one log line; an NDJSON one is first told why in a
 * permission_denied line. Loop thread only.
 */
#ifndef KB_REVOKE_H
#define KB_REVOKE_H

#include "broker.h"

/* kb_revoke_recheck closes the connections the current policy refuses (above); after a reload. */
void kb_revoke_recheck(kb_broker *b);

#endif
