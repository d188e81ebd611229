#include <stdio.h>
#include <string.h>

#include "lifecycle.h"
#include "log.h"
#include "rotation.h"
#include "store.h"

void emu_lifecycle_stamp(const struct emu_key *k, struct emu_version *v, int64_t at)
{
	v->created = v->updated = at;
	if (k->policy.set && k->policy.expiry_secs)
		v->exp = at + k->policy.expiry_secs;
}

/* rotate_due adds every version k's policy asked for up to now; true if it added one. */
static bool rotate_due(const struct emu_vault *vault, struct emu_key *k, int64_t now)
{
	bool changed = false;

	for (unsigned n = 0; n < EMU_CATCH_UP_MAX; n++) {
		const struct emu_version *last = emu_store_latest(k);
		int64_t due = emu_policy_rotate_due(&k->policy, last->created, last->exp);
		struct emu_version *v;

		if (!due || due > now)
			break;
		/* a due time before the newest version's creation would rotate at once, forever */
		if (due < last->created)
			due = last->created;
		v = emu_version_generate(last->kty, last->bits, 65537, last->ops);
		if (!v || emu_store_attach(k, v)) {
			emu_log("rotation policy: cannot rotate %s/%s now; will retry", vault->name, k->name);
			emu_version_free(v);
			break;
		}
		emu_lifecycle_stamp(k, v, due);
		emu_log("rotation policy: rotated %s/%s to version %s (due %lld)", vault->name, k->name, v->id,
			(long long)due);
		changed = true;
	}
	return changed;
}

/* notify_due logs the Notify action once per version (Event Grid is out of reach here). */
static bool notify_due(const struct emu_vault *vault, struct emu_key *k, int64_t now)
{
	const struct emu_version *last = emu_store_latest(k);
	int64_t due = emu_policy_notify_due(&k->policy, last->exp);

	if (!due || due > now || strcmp(k->policy.notified, last->id) == 0)
		return false;
	snprintf(k->policy.notified, sizeof(k->policy.notified), "%s", last->id);
	emu_log("rotation policy: notify: %s/%s version %s expires at %lld", vault->name, k->name, last->id,
		(long long)last->exp);
	return true;
}

bool emu_lifecycle_tick(struct emu_world *w)
{
	int64_t now = emu_now();
	bool changed = false;

	for (size_t i = 0; i < w->nvaults; i++) {
		struct emu_vault *v = w->vaults[i];

		for (size_t j = 0; j < v->nkeys;) {
			struct emu_key *k = v->keys[j];

			if (k->deleted && k->purge_at && k->purge_at <= now) {
				/* the service purges at scheduledPurgeDate, purge protection or not */
				emu_log("retention: purged %s/%s (scheduled %lld)", v->name, k->name, (long long)k->purge_at);
				emu_store_remove_key(v, k);
				changed = true;
				continue;
			}
			j++;
			if (k->deleted || !k->nv || !k->policy.set)
				continue;
			changed |= rotate_due(v, k, now);
			changed |= notify_due(v, k, now);
		}
	}
	return changed;
}
