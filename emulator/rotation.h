/*
 * rotation.h: key rotation policies, as Azure shapes and validates them
 * (GET/PUT /keys/{name}/rotationpolicy), and the times they name.
 *
 * Pure functions over struct emu_policy (emu.h): no lock, no I/O. The
 * lifecycle (lifecycle.h) carries the policies out on the emulator's clock.
 */
#ifndef EMU_ROTATION_H
#define EMU_ROTATION_H

#include "emu.h"

/* Azure's floors: a rotation at least 7 days after creation and before expiry, an expiry of at least 28 days. */
#define EMU_ROTATE_MIN_S (7LL * 86400)
#define EMU_NOTIFY_MIN_S (7LL * 86400)
#define EMU_EXPIRY_MIN_S (28LL * 86400)

/*
 * emu_duration_parse reads an ISO 8601 duration (PnYnMnWnDTnHnMnS) into
 * seconds. A year counts 365 days and a month 30, as no calendar is at hand.
 * 0, or -1 if malformed or zero.
 */
int emu_duration_parse(const char *s, int64_t *secs);

/*
 * emu_policy_parse validates a PUT body and fills *out (created/updated
 * untouched). Returns 0, or -1 with Azure-style reason text in err.
 */
int emu_policy_parse(const cJSON *body, struct emu_policy *out, char *err, size_t errlen);

/*
 * emu_policy_json renders the policy as Azure answers it, with id; an unset
 * policy renders as Azure's default (Notify 30 days before expiry).
 */
cJSON *emu_policy_json(const struct emu_policy *p, const char *id);

/*
 * emu_policy_rotate_due returns when a key whose newest version was created
 * at created (and expires at exp, 0 = never) is due to rotate under p, or 0
 * if p never rotates it.
 */
int64_t emu_policy_rotate_due(const struct emu_policy *p, int64_t created, int64_t exp);

/* emu_policy_notify_due is the same for the Notify action. */
int64_t emu_policy_notify_due(const struct emu_policy *p, int64_t exp);

/* emu_policy_state / emu_policy_from_state: the policy in the --state file and backups. */
cJSON *emu_policy_state(const struct emu_policy *p);
void emu_policy_from_state(const cJSON *o, struct emu_policy *p);

#endif
