/*
 * reload.h: SIGHUP. Reopens the audit log (for logrotate) and reloads keys
 * and policy from the config file without dropping connections. A config that
 * does not parse, or whose keys do not open, is refused and the running one
 * stays in force.
 */
#ifndef KB_RELOAD_H
#define KB_RELOAD_H

#include "broker.h"

/* kb_reload does the above, logging what it did or why it refused. */
void kb_reload(kb_broker *b);

#endif
