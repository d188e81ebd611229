/*
 * config.h: the INI configuration and the zero-config defaults.
 *
 *   [emulator]         listen, admin, tls_dir, state, tenant, token_lifetime,
 *                      max_body, imds_principal, identity_header, quiet
 *   [vault:NAME]       throttle (operations per window, 0 = off),
 *                      throttle_window_ms (default 10000), retry_after (the
 *                      429's header: Retry-After, retry-after-ms,
 *                      x-ms-retry-after-ms or none; yes/no as before),
 *                      purge_protection, soft_delete_retention_days (7..90)
 *   [mhsm:NAME]        the same, for a Managed HSM
 *   [principal:ID]     secret, assertion, assertion_file, permissions (the
 *                      default), vault.NAME = ..., mhsm.NAME = ...,
 *                      vault.NAME.KEY = ... (permission lists)
 *   [key:vault.NAME.KEY] or [key:mhsm.NAME.KEY]   kty, size, ops, enabled
 *   [faults]           latency_ms, jitter_ms, error500_rate, error503_rate,
 *                      drop_rate
 * docs/emulator.md is the user-facing description.
 */
#ifndef EMU_CONFIG_H
#define EMU_CONFIG_H

#include "emu.h"

/* emu_config_defaults fills cfg with the built-in defaults (listen 127.0.0.1:8443, ...). */
void emu_config_defaults(struct emu_config *cfg);

/* emu_config_zero adds vault dev, Managed HSM dev and principal dev-client. 0 or -1. */
int emu_config_zero(struct emu_world *w);

/* emu_config_load reads an INI file into w. 0, or -1 with "FILE:LINE: reason" in err. */
int emu_config_load(struct emu_world *w, const char *path, char *err, size_t errlen);

#endif
