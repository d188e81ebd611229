/*
 * log.h: the emulator's one logging facility, on stderr.
 *
 * A request line carries method, path (never the query), status, principal
 * and latency. Nothing here ever prints a token, a secret or key material.
 */
#ifndef EMU_LOG_H
#define EMU_LOG_H

#include <stdbool.h>

void emu_log_quiet(bool quiet);
void emu_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void emu_log_request(const char *where, const char *method, const char *host, const char *path,
		     unsigned status, const char *principal, double ms);

#endif
