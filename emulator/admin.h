/*
 * admin.h: the admin endpoint, plain HTTP on its own (loopback) port, off
 * unless --admin or [emulator] admin is set. A JSON API that changes key
 * state, permissions, throttling and faults while clients run; the full
 * description is in docs/emulator.md.
 */
#ifndef EMU_ADMIN_H
#define EMU_ADMIN_H

#include "emu.h"


/* emu_admin_start serves the admin API on addr; *port gets the bound port. 0 or -1. */
int emu_admin_start(struct emu_world *w, const char *addr, unsigned *port, char *err, size_t errlen);
void emu_admin_stop(void);

#endif
