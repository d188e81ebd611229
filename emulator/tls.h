/*
 * tls.h: the emulator's own CA and server certificate.
 *
 * --init-tls DIR writes ca.pem (the file clients trust), ca-key.pem,
 * server.pem and server-key.pem. The server certificate covers localhost,
 * *.vault.localhost, *.managedhsm.localhost, 127.0.0.1 and ::1. Keys are
 * ECDSA P-256, so this takes milliseconds.
 */
#ifndef EMU_TLS_H
#define EMU_TLS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * emu_tls_init creates dir (mode 0700) and writes the four files unless
 * ca.pem and server.pem are already there (a CA users trust is kept).
 * *created says whether it wrote them. 0, or -1 with a reason in err.
 */
int emu_tls_init(const char *dir, bool *created, char *err, size_t errlen);

/* emu_tls_load reads server.pem and server-key.pem as NUL-terminated PEM. */
int emu_tls_load(const char *dir, char **cert, char **key, char *err, size_t errlen);

#endif
