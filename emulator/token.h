/*
 * token.h: the emulator's access tokens: JWTs signed with HMAC-SHA256 (JWS
 * HS256) under the world's token key.
 *
 * A token carries who it is for (appid), its audience (aud: the resource the
 * client asked for), its tenant (tid), its expiry (exp, real unix seconds)
 * and the principal's token generation at issue (gen), which a revocation
 * bumps. Nothing about a token is kept on the emulator's side, so a token
 * verifies as long as the key does: the key lives in --state, so a cached
 * token outlives a restart there, as an Entra ID token outlives a Key Vault
 * restart. Pure functions: no lock, no global state (the fuzz harness
 * calls them).
 */
#ifndef EMU_TOKEN_H
#define EMU_TOKEN_H

#include <stdint.h>

#include "emu.h"

#define EMU_TOKEN_KEY_LEN 32
#define EMU_TOKEN_AUD_MAX 256
#define EMU_TOKEN_MAX 2048 /* the longest token emu_token_verify looks at */

struct emu_token_claims {
	char principal[EMU_NAME_MAX];
	char tenant[EMU_NAME_MAX];
	char aud[EMU_TOKEN_AUD_MAX];
	int64_t iat, exp;
	uint32_t gen;
};

/* emu_token_mint returns a fresh malloc'd token for c, or NULL (no memory, no randomness). */
char *emu_token_mint(const uint8_t key[EMU_TOKEN_KEY_LEN], const struct emu_token_claims *c);

/*
 * emu_token_verify checks that token is one emu_token_mint made under key
 * (its exact header and signature, checked before anything is parsed) and
 * fills c. 0, or -1 if it is malformed or forged. Expiry, tenant and
 * generation are the caller's to judge.
 */
int emu_token_verify(const uint8_t key[EMU_TOKEN_KEY_LEN], const char *token, struct emu_token_claims *c);

#endif
