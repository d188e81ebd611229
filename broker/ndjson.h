/*
 * ndjson.h: the NDJSON face (protocol v1, docs/protocol.md).
 *
 * It parses each request line of a connection into a kb_request (proto.h),
 * submits it to the core (dispatch.h), and renders each answer (render.h)
 * into the connection's output (conn.h). Loop thread only.
 */
#ifndef KB_NDJSON_H
#define KB_NDJSON_H

#include "broker.h"

/* kb_ndjson_line serves one request line (without its newline) of c. */
void kb_ndjson_line(kb_broker *b, kb_conn *c, const char *line, size_t n);

/* kb_ndjson_reply is where the answers to c's lines go: rendered into c->out and sent. */
kb_reply kb_ndjson_reply(kb_conn *c);

/*
 * kb_ndjson_too_large answers a line of c that grew past max_request_bytes
 * with too_large, and closes c once the answer is out: the rest of the
 * stream cannot be framed.
 */
void kb_ndjson_too_large(kb_broker *b, kb_conn *c);

#endif
