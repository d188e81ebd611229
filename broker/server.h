/*
 * server.h: the Unix socket, the event loop and the connections.
 */
#ifndef KB_SERVER_H
#define KB_SERVER_H

#include "broker.h"

/*
 * kb_server_run listens on the configured socket (replacing a stale socket
 * file, refusing a live one), serves until SIGTERM or SIGINT, then stops
 * accepting, lets in-flight requests finish, removes the socket and returns
 * KB_OK. Startup failures return an error.
 */
kb_code kb_server_run(kb_broker *b, kb_err *err);

/*
 * kb_server_block_signals blocks SIGTERM, SIGINT and SIGHUP (which the loop
 * reads from a signalfd) and ignores SIGPIPE. Call it before any thread starts,
 * so every thread inherits the mask.
 */
void kb_server_block_signals(void);

#endif
