/*
 * arm.h: the slice of Azure Resource Manager that `az login` reads on the
 * login host: GET /subscriptions and GET /tenants, both empty lists (the
 * emulator has no subscriptions; az logs in with --allow-no-subscriptions).
 * The caller has checked the bearer token (audience https://management.*).
 */
#ifndef EMU_ARM_H
#define EMU_ARM_H

#include "emu.h"
#include "parse.h"

/* emu_arm_list answers GET /subscriptions or GET /tenants: {"value": []}, or 400 without api-version. */
void emu_arm_list(const struct emu_req *rq, const struct emu_route *rt, struct emu_reply *rep);

#endif
