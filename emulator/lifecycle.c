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

/*
 * rotate_due adds every version k's policy asked for up to now, at most
 * EMU_CATCH_UP_MAX, making each with the lock released; true if it added
 * one. k may be gone when it returns: the caller finds its keys again.
 */
static bool rotate_due(struct emu_world *w, struct emu_vault *vault, struct emu_key *k, int64_t now)
{
	char name[EMU_NAME_MAX], last_id[EMU_VERSION_LEN + 1];
	bool changed = false;

	snprintf(name, sizeof(name), "%s", k->name);
	for (unsigned n = 0; n < EMU_CATCH_UP_MAX; n++) {
		const struct emu_version *last;
		struct emu_version *v;
		enum emu_kty kty;
		unsigned ops;
		int64_t due;
		int bits;

		if (!(k = emu_store_key(vault, name)) || k->deleted || !k->nv || !k->policy.set)
			break;
		last = emu_store_latest(k);
		due = emu_policy_rotate_due(&k->policy, last->created, last->exp);
		if (!due || due > now)
			break;
		/* a due time before the newest version's creation would rotate at once, forever */
		if (due < last->created)
			due = last->created;
		snprintf(last_id, sizeof(last_id), "%s", last->id);
		kty = last->kty;
		bits = last->bits;
		ops = last->ops;
		w->rotating = true;
		pthread_mutex_unlock(&w->lock);
		v = emu_version_generate(kty, bits, 65537, ops);
		pthread_mutex_lock(&w->lock);
		w->rotating = false;
		/* while the lock was free the key may have been rotated, deleted or purged */
		k = emu_store_key(vault, name);
		if (!v || !k || k->deleted || !k->nv || strcmp(emu_store_latest(k)->id, last_id) != 0 ||
		    emu_store_attach(k, v)) {
			if (!v)
				emu_log("rotation policy: cannot rotate %s/%s now; will retry", vault->name, name);
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
	char name[EMU_NAME_MAX];
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
			/*
			 * a rotation releases the lock: k is found again by name, and the
			 * next key by index (one moved meanwhile waits for the next tick)
			 */
			snprintf(name, sizeof(name), "%s", k->name);
			if (!w->rotating)
				changed |= rotate_due(w, v, k, now);
			if ((k = emu_store_key(v, name)) && !k->deleted && k->nv)
				changed |= notify_due(v, k, now);
		}
	}
	return changed;
}
