/*
 * errors.h: Key Vault error bodies, {"error":{"code","message","innererror"}}.
 */
#ifndef EMU_ERRORS_H
#define EMU_ERRORS_H

#include "emu.h"

/*
 * emu_error sets rep to status with the Key Vault error body. inner may be
 * NULL; fmt is a printf format for the message.
 */
void emu_error(struct emu_reply *rep, unsigned status, const char *code, const char *inner,
	       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* emu_oauth_error sets rep to an AAD-style token error {"error","error_description"}. */
void emu_oauth_error(struct emu_reply *rep, unsigned status, const char *error,
		     const char *description);

/*
 * emu_error_purge_protected sets rep to Azure's answer to a purge in a vault
 * with purge protection: 403 Forbidden, naming the retention period.
 */
void emu_error_purge_protected(struct emu_reply *rep, const struct emu_vault *v);

#endif
