/*
 * keys_api.h: the Key Vault keys REST API on vault and Managed HSM hosts.
 */
#ifndef EMU_KEYS_API_H
#define EMU_KEYS_API_H

#include "emu.h"
#include "parse.h"

/*
 * emu_keys_handle answers one authenticated, unthrottled keys request. The
 * caller has checked the token (rep->principal holds who) and api-version.
 */
void emu_keys_handle(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		     struct emu_reply *rep);


#endif
