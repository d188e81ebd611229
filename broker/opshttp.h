/*
 * opshttp.h: the operator endpoints over HTTP, as kubernetes-kms offers them.
 *
 * With [broker] metrics_listen = HOST:PORT (or just PORT, on 127.0.0.1) the
 * daemon serves, through libmicrohttpd on a thread of this face's own:
 *   GET /metrics  the Prometheus text of the `metrics` operation, without the
 *                 per-peer series (uid, pid): those stay on the socket;
 *   GET /healthz  200 "ok" while the loop serves ("stopping" 503 while it drains);
 *   GET /readyz   200 "ok" when every configured key's last real health
 *                 check passed (health.h), else 503 naming the key, the step
 *                 and the error code (the message stays in status and the logs).
 * The loop renders what they answer at most once per KB_OPSHTTP_FRESH_MS,
 * when asked, so a scrape shows the state of at most that long ago and a flood
 * of scrapes cannot hold the loop.
 *
 * Bounds, whatever a client does: KB_OPSHTTP_CONNS connections, at most
 * KB_OPSHTTP_PER_ADDR from one address, KB_OPSHTTP_REQUEST_MS for each whole
 * request (from the connection, or from its previous request). A newcomer
 * past a limit is taken and the oldest connection of the address holding the
 * most is closed, so a probe always gets in.
 *
 * There is no peer check on a TCP port: keep it on loopback, or behind the
 * node's firewall; nothing it serves is secret. kb_opshttp_start and
 * kb_opshttp_stop: loop thread only.
 */
#ifndef KB_OPSHTTP_H
#define KB_OPSHTTP_H

#include "broker.h"
#include "health.h"

#define KB_OPSHTTP_FRESH_MS 250
#define KB_OPSHTTP_CONNS 64u
#define KB_OPSHTTP_PER_ADDR 16u
#define KB_OPSHTTP_REQUEST_MS 5000

typedef struct kb_opshttp kb_opshttp;

/*
 * kb_opshttp_start listens on b's metrics_listen and starts the face's thread
 * (none set: *out is NULL, KB_OK). It logs the address and port it got (a
 * port 0 is the kernel's pick) and warns when it listens on every interface.
 */
kb_code kb_opshttp_start(kb_broker *b, const kb_io *io, kb_health *health, kb_opshttp **out,
			 kb_err *err);

/* kb_opshttp_stop ends the face's thread, closes the endpoint and frees h (NULL is fine). */
void kb_opshttp_stop(kb_opshttp *h);

#endif
