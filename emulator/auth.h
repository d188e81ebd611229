/*
 * auth.h: the token service and bearer-token checks.
 *
 * Tokens are opaque random strings bound to one principal, one audience
 * (vault or Managed HSM) and an expiry. They live only in memory: a restart
 * invalidates them, as a real token service rotating keys would.
 */
#ifndef EMU_AUTH_H
#define EMU_AUTH_H

#include "emu.h"
#include "parse.h"

/* POST /{tenant}/oauth2/v2.0/token (and the v1 /oauth2/token). */
void emu_auth_token(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		    struct emu_reply *rep);

/* GET /metadata/identity/oauth2/token with Metadata: true (IMDS). */
void emu_auth_imds(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		   struct emu_reply *rep);

/*
 * GET /msi/token?api-version=2019-08-01&resource=...[&client_id=...] with
 * X-IDENTITY-HEADER: the App Service flavour of managed identity, which
 * clients find through IDENTITY_ENDPOINT and IDENTITY_HEADER.
 */
void emu_auth_app_service(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
			  struct emu_reply *rep);

/* GET /{tenant}/v2.0/.well-known/openid-configuration. */
void emu_auth_openid(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		     struct emu_reply *rep);

/*
 * emu_auth_check verifies the bearer token of a vault or Managed HSM request.
 * Returns 0 with the principal's id in rep->principal, or -1 with rep set to
 * 401 and the challenge header.
 */
int emu_auth_check(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		   struct emu_reply *rep);

/* emu_auth_revoke forgets every token of principal (NULL: of everyone); returns how many. */
unsigned emu_auth_revoke(const char *principal);


#endif
