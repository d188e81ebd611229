/*
 * render.h: a kb_answer (request.h) as protocol v1 JSON (docs/protocol.md).
 *
 * The NDJSON face's half of an answer; the field order is the protocol's.
 * Loop thread only (status and metrics read the broker).
 */
#ifndef KB_RENDER_H
#define KB_RENDER_H

#include "broker.h"

/* kb_render_line appends a's answer line, {"id":...,"ok":...}\n, to o. */
void kb_render_line(kb_buf *o, const kb_answer *a);

/* kb_render_item appends a as one item of a batch's "results", {"ok":...}, to o. */
void kb_render_item(kb_buf *o, const kb_answer *a);

#endif
