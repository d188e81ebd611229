/*
 * report.h: the status and metrics answers, both built from the loop's own
 * state without asking any backend, so they answer even when a key service
 * hangs.
 */
#ifndef KB_REPORT_H
#define KB_REPORT_H

#include "broker.h"

/* kb_report_status appends the status fields to a response being written in o. */
void kb_report_status(kb_broker *b, kb_buf *o);

/* kb_report_metrics appends the metrics field (Prometheus text) to a response in o. */
void kb_report_metrics(kb_broker *b, kb_buf *o);

/*
 * kb_report_prometheus appends the same metrics as Prometheus text (0.0.4) to
 * t; without peers, leaving out the series that name a peer's uid and pid
 * (for the HTTP port, which any local user reaches).
 */
void kb_report_prometheus(kb_broker *b, kb_buf *t, bool peers);

#endif
