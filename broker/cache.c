#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "looptoken.h"

static uint32_t bucket_of(const kb_cache *c, const uint8_t *digest)
{
	uint32_t h;

	memcpy(&h, digest, sizeof(h)); /* a SHA-256 is already uniform */
	return h & (c->nbuckets - 1);
}

/*
 * 256-bit DEKs are the common case, so their class has a slot per entry; the
 * larger classes together cost about 30 locked bytes per entry (see
 * docs/cache.md for the arithmetic against an 8 MiB RLIMIT_MEMLOCK).
 */
static const struct {
	size_t bytes; /* the largest DEK of the class */
	size_t share; /* the class has capacity / share slots, rounded up */
} classes[KB_CACHE_CLASSES] = {
	{ 32, 1 }, { 64, 16 }, { 128, 32 }, { 256, 64 }, { KB_SECRET_MAX, 64 },
};

static void cache_spec(int capacity, kb_arena_spec spec[KB_CACHE_CLASSES])
{
	for (int k = 0; k < KB_CACHE_CLASSES; k++) {
		spec[k].slot_bytes = classes[k].bytes;
		spec[k].nslots = ((size_t)capacity + classes[k].share - 1) / classes[k].share;
	}
}

kb_code kb_cache_init(kb_cache *c, int capacity, bool allow_unlocked, kb_err *err)
{
	kb_arena_spec spec[KB_CACHE_CLASSES];
	kb_code rc;

	memset(c, 0, sizeof(*c));
	if (capacity < 1)
		return kb_err_set(err, KB_E_INTERNAL, "cache capacity %d is not positive", capacity);
	cache_spec(capacity, spec);
	rc = kb_arena_init(&c->arena, spec, KB_CACHE_CLASSES, allow_unlocked, err);
	if (rc != KB_OK)
		return rc;
	c->capacity = capacity;
	c->nbuckets = 16;
	while (c->nbuckets < (uint32_t)capacity * 2)
		c->nbuckets *= 2;
	c->entries = calloc((size_t)capacity, sizeof(*c->entries));
	c->buckets = malloc(sizeof(*c->buckets) * c->nbuckets);
	if (c->entries == NULL || c->buckets == NULL) {
		kb_cache_destroy(c);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory for the cache index");
	}
	for (uint32_t i = 0; i < c->nbuckets; i++)
		c->buckets[i] = -1;
	for (int i = 0; i < capacity; i++)
		c->entries[i].hash_next = i + 1 < capacity ? i + 1 : -1;
	c->free_head = 0;
	for (int k = 0; k < KB_ARENA_MAX_CLASSES; k++)
		c->lru_head[k] = c->lru_tail[k] = -1;
	return KB_OK;
}

void kb_cache_destroy(kb_cache *c)
{
	if (c->entries)
		kb_cache_flush(c, -1);
	kb_arena_destroy(&c->arena);
	free(c->entries);
	free(c->buckets);
	c->entries = NULL;
	c->buckets = NULL;
}

static void lru_unlink(kb_cache *c, int32_t i)
{
	kb_cache_entry *e = &c->entries[i];

	if (e->lru_prev >= 0)
		c->entries[e->lru_prev].lru_next = e->lru_next;
	else
		c->lru_head[e->cls] = e->lru_next;
	if (e->lru_next >= 0)
		c->entries[e->lru_next].lru_prev = e->lru_prev;
	else
		c->lru_tail[e->cls] = e->lru_prev;
}

/* lru_push_front makes i the most recently used entry of its class. */
static void lru_push_front(kb_cache *c, int32_t i)
{
	kb_cache_entry *e = &c->entries[i];
	int k = e->cls;

	e->used_seq = ++c->seq;
	e->lru_prev = -1;
	e->lru_next = c->lru_head[k];
	if (c->lru_head[k] >= 0)
		c->entries[c->lru_head[k]].lru_prev = i;
	c->lru_head[k] = i;
	if (c->lru_tail[k] < 0)
		c->lru_tail[k] = i;
}

/* lru_oldest returns the least recently used entry of the whole cache, or -1. */
static int32_t lru_oldest(const kb_cache *c)
{
	int32_t best = -1;

	for (int k = 0; k < c->arena.nclasses; k++) {
		int32_t t = c->lru_tail[k];
		if (t >= 0 && (best < 0 || c->entries[t].used_seq < c->entries[best].used_seq))
			best = t;
	}
	return best;
}

static void evict(kb_cache *c, int32_t i, kb_evict_cause cause)
{
	kb_cache_entry *e = &c->entries[i];
	int32_t *pp = &c->buckets[bucket_of(c, e->digest)];

	while (*pp != i)
		pp = &c->entries[*pp].hash_next;
	*pp = e->hash_next;
	lru_unlink(c, i);
	kb_arena_free(&c->arena, e->dek); /* zeroes the DEK */
	memset(e, 0, sizeof(*e));
	e->hash_next = c->free_head;
	c->free_head = i;
	c->count--;
	c->evictions[cause]++;
}

static int32_t find(const kb_cache *c, const uint8_t *digest)
{
	for (int32_t i = c->buckets[bucket_of(c, digest)]; i >= 0; i = c->entries[i].hash_next)
		if (memcmp(c->entries[i].digest, digest, KB_DIGEST_LEN) == 0)
			return i;
	return -1;
}

kb_cache_entry *kb_cache_get(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN], int64_t now_ms)
{
	int32_t i = find(c, digest);

	kb_loop_assert_owner();
	if (i < 0)
		return NULL;
	if (now_ms >= c->entries[i].expires_ms) {
		if (now_ms >= c->entries[i].expires_ms + c->entries[i].grace_ms)
			evict(c, i, KB_EVICT_TTL);
		return NULL;
	}
	if (c->lru_head[c->entries[i].cls] != i) {
		lru_unlink(c, i);
		lru_push_front(c, i);
	} else {
		c->entries[i].used_seq = ++c->seq;
	}
	return &c->entries[i];
}

kb_cache_entry *kb_cache_stale(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN], int64_t now_ms)
{
	int32_t i = find(c, digest);
	kb_cache_entry *e = i < 0 ? NULL : &c->entries[i];

	kb_loop_assert_owner();
	if (e == NULL || now_ms < e->expires_ms)
		return NULL;
	if (now_ms >= e->expires_ms + e->grace_ms) {
		evict(c, i, KB_EVICT_TTL);
		return NULL;
	}
	return e;
}

void kb_cache_drop(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN])
{
	int32_t i = find(c, digest);

	kb_loop_assert_owner();
	if (i >= 0)
		evict(c, i, KB_EVICT_TTL);
}

int64_t kb_cache_jitter_ttl(int64_t ttl_ms, double jitter, uint64_t *rng)
{
	uint64_t x = *rng ? *rng : 1;

	if (jitter <= 0)
		return ttl_ms;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*rng = x;
	return ttl_ms - (int64_t)((double)(x >> 11) / 9007199254740992.0 * jitter * (double)ttl_ms);
}

kb_cache_entry *kb_cache_peek(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN])
{
	int32_t i = find(c, digest);

	kb_loop_assert_owner();
	return i < 0 ? NULL : &c->entries[i];
}

kb_cache_entry *kb_cache_put(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN], int key_index,
			     const char *version, const uint8_t *dek, size_t deklen, int64_t ttl_ms,
			     int64_t now_ms)
{
	int32_t i = find(c, digest);
	int k = kb_arena_class_of(&c->arena, deklen);
	kb_cache_entry *e;
	uint8_t *slot;
	uint32_t b;

	kb_loop_assert_owner();
	if (deklen > KB_SECRET_MAX || k < 0)
		return NULL;
	if (i >= 0)
		evict(c, i, KB_EVICT_REPLACE);
	slot = kb_arena_alloc(&c->arena, deklen);
	if (slot == NULL) {
		/* the class is full, so every one of its slots is an entry on its list */
		evict(c, c->lru_tail[k], KB_EVICT_LRU);
		slot = kb_arena_alloc(&c->arena, deklen);
		if (slot == NULL)
			abort();
	}
	if (c->free_head < 0)
		evict(c, lru_oldest(c), KB_EVICT_LRU);
	i = c->free_head;
	e = &c->entries[i];
	c->free_head = e->hash_next;
	e->dek = slot;
	e->cls = (int8_t)k;
	memcpy(e->dek, dek, deklen);
	e->deklen = (uint32_t)deklen;
	memcpy(e->digest, digest, KB_DIGEST_LEN);
	e->key_index = key_index;
	snprintf(e->version, sizeof(e->version), "%s", version);
	e->ttl_ms = ttl_ms;
	e->expires_ms = now_ms + ttl_ms;
	e->refreshing = false;
	e->stale = false;
	e->grace_ms = 0;
	e->used = true;
	b = bucket_of(c, digest);
	e->hash_next = c->buckets[b];
	c->buckets[b] = i;
	lru_push_front(c, i);
	c->count++;
	return e;
}

int kb_cache_flush(kb_cache *c, int key_index)
{
	int n = 0;

	kb_loop_assert_owner();
	for (int32_t i = 0; i < c->capacity; i++) {
		if (c->entries[i].used && (key_index < 0 || c->entries[i].key_index == key_index)) {
			evict(c, i, KB_EVICT_FLUSH);
			n++;
		}
	}
	return n;
}

void kb_cache_remap(kb_cache *c, const int *map, int n)
{
	kb_loop_assert_owner();
	for (int32_t i = 0; i < c->capacity; i++) {
		kb_cache_entry *e = &c->entries[i];
		int to;

		if (!e->used)
			continue;
		to = e->key_index >= 0 && e->key_index < n ? map[e->key_index] : -1;
		if (to < 0)
			evict(c, i, KB_EVICT_FLUSH);
		else
			e->key_index = to;
	}
}

int kb_cache_sweep(kb_cache *c, int64_t now_ms)
{
	int n = 0;

	kb_loop_assert_owner();
	for (int32_t i = 0; i < c->capacity; i++) {
		if (c->entries[i].used && now_ms >= c->entries[i].expires_ms + c->entries[i].grace_ms) {
			evict(c, i, KB_EVICT_TTL);
			n++;
		}
	}
	return n;
}
