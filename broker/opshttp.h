/*
 * opshttp.h: the operator endpoints over HTTP, as kubernetes-kms offers them.
 *
 * With [broker] metrics_listen = HOST:PORT (or just PORT, on 127.0.0.1) the
 * loop serves, through libmicrohttpd driven by the loop's own epoll:
 *   GET /metrics  the Prometheus text of the `metrics` operation;
 *   GET /healthz  200 "ok" while the process serves;
 *   GET /readyz   200 "ok" when every configured key's last real health
 *                 check passed (health.h), else 503 and which key failed.
 * There is no peer check on a TCP port: keep it on loopback, or behind the
 * node's firewall; nothing it serves is secret. Loop thread only.
 */
#ifndef KB_OPSHTTP_H
#define KB_OPSHTTP_H

#include "broker.h"
#include "health.h"

typedef struct kb_opshttp kb_opshttp;

/* kb_opshttp_start listens on b's metrics_listen (none set: *out is NULL, KB_OK). */
kb_code kb_opshttp_start(kb_broker *b, const kb_io *io, kb_health *health, kb_opshttp **out,
			 kb_err *err);

/* kb_opshttp_stop closes the endpoint and frees h (NULL is fine). */
void kb_opshttp_stop(kb_opshttp *h);

#endif
