/*
 * auth.h: the token service and bearer-token checks.
 *
 * Tokens are signed JWTs (token.h) bound to one principal, one audience
 * (a vault, a Managed HSM or Resource Manager), the tenant and an expiry.
 * They verify as long as the world's token key does: with --state the key
 * is kept, so a client's cached token outlives a restart; without it every
 * restart is a new service that has forgotten its keys and its tokens alike.
 * The token endpoints answer under /{tenant}/... and, for az and other MSAL
 * clients that accept only Microsoft's hosts or AD FS, under /adfs/....
 */
#ifndef EMU_AUTH_H
#define EMU_AUTH_H

#include "emu.h"
#include "parse.h"

/*
 * emu_auth_init makes the token key unless --state brought one (before the
 * server starts); 0 or -1.
 */
int emu_auth_init(struct emu_world *w);

/* POST /{tenant}/oauth2/v2.0/token (and the v1 /oauth2/token, and /adfs/oauth2/token). */
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

/* GET /{tenant}/v2.0/.well-known/openid-configuration and /adfs/.well-known/openid-configuration. */
void emu_auth_openid(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		     struct emu_reply *rep);

/*
 * emu_auth_check verifies the bearer token of a vault or Managed HSM request,
 * or of a Resource Manager request on the login host. Returns 0 with the
 * principal's id in rep->principal, or -1 with rep set to 401 and the
 * challenge header.
 */
int emu_auth_check(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		   struct emu_reply *rep);

/*
 * emu_auth_revoke ends every token issued so far to principal (NULL: to
 * everyone) by moving on its token generation, and returns how many live
 * ones this run had issued. world->lock held; the caller saves the state.
 */
unsigned emu_auth_revoke(struct emu_world *w, const char *principal);


#endif
