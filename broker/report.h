/*
 * report.h: the status and metrics answers, both built from the loop's own
 * state without asking any backend, so they answer even when a key service
 * hangs.
 */
#ifndef KB_REPORT_H
#define KB_REPORT_H

#include "broker.h"

/* kb_report_status queues the status response for c. */
void kb_report_status(kb_broker *b, kb_conn *c, const char *id_json);

/* kb_report_metrics queues the metrics response (Prometheus text) for c. */
void kb_report_metrics(kb_broker *b, kb_conn *c, const char *id_json);

#endif
