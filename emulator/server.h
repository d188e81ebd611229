/*
 * server.h: the HTTPS front (libmicrohttpd over GnuTLS) and the dispatch of
 * a request to the token service or the keys API, with faults, auth and
 * throttling applied in the order Azure clients meet them.
 */
#ifndef EMU_SERVER_H
#define EMU_SERVER_H

#include <sys/socket.h>

#include "emu.h"


/*
 * emu_server_start serves HTTPS with the PEM cert and key on cfg.listen.
 * Sets w->port to the bound port. 0, or -1 with a reason in err.
 */
int emu_server_start(struct emu_world *w, const char *cert, const char *key, char *err, size_t errlen);
void emu_server_stop(void);

/*
 * emu_http_serve starts a libmicrohttpd daemon for handler on addr (TLS if
 * cert is not NULL). The admin endpoint uses it too. Returns the daemon or
 * NULL; *port receives the bound port.
 */
struct MHD_Daemon;
typedef void (*emu_handler)(struct emu_world *w, const struct emu_req *rq, struct emu_reply *rep);
struct MHD_Daemon *emu_http_serve(struct emu_world *w, const char *addr, const char *cert,
				  const char *key, emu_handler handler, const char *log_tag,
				  unsigned *port, char *err, size_t errlen);

/* emu_http_stop stops a daemon started by emu_http_serve and frees what it held. */
void emu_http_stop(struct MHD_Daemon *d);

#endif
