/*
 * cache.h: the DEK cache, keyed by the SHA-256 of a blob.
 *
 * Entries live for a TTL from the moment the key service last answered for
 * them, and the TTL is the revocation point: once it passes, the next use asks
 * the key service again. A lookup never returns an expired entry. The cache
 * holds at most `capacity` entries and evicts the least recently used one to
 * make room. DEK bytes live in the arena (arena.h), in the smallest size
 * class that holds them; everything else here (digest, key, version, expiry,
 * LRU links) is not secret and lives in ordinary memory.
 *
 * Size classes (KB_CACHE_CLASSES): the 32-byte class has a slot for every
 * entry, so a cache of 256-bit DEKs fills to capacity; the larger classes get
 * a share of it (capacity / share slots). When a DEK's class is full, the
 * least recently used entry of that class makes room (cause lru), even if the
 * cache as a whole is not. Each class keeps its own LRU list; the cache's
 * least recently used entry is the oldest of the lists' tails.
 *
 * Not thread-safe: the event loop owns the cache, so a hit never takes a lock.
 */
#ifndef KB_CACHE_H
#define KB_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "backend.h"
#include "digest.h"

#define KB_DIGEST_LEN KB_SHA256_LEN

typedef enum kb_evict_cause {
	KB_EVICT_TTL = 0,
	KB_EVICT_LRU,
	KB_EVICT_FLUSH,
	KB_EVICT_REPLACE,
	KB_EVICT_CAUSES
} kb_evict_cause;

typedef struct kb_cache_entry {
	/* a lookup walks digest and hash_next, so they share the first cache line with the LRU links */
	uint8_t digest[KB_DIGEST_LEN];
	int64_t expires_ms;                /* monotonic */
	int32_t hash_next;                 /* -1 ends; free list when unused */
	int32_t lru_prev, lru_next;        /* -1 ends; within its class */
	uint32_t deklen;
	uint8_t *dek;                      /* arena slot */
	uint64_t used_seq;                 /* the cache's use counter at its last put or hit */
	int64_t ttl_ms;
	int key_index;                     /* the blob's key, for flush {key} */
	int8_t cls;                        /* arena class of dek */
	bool refreshing;                   /* a refresh-ahead call is out */
	bool stale;                        /* past the TTL, and the key service was found unreachable */
	int64_t grace_ms;                  /* outage_grace: how long past the TTL it may serve, stale */
	bool used;
	char version[KB_VERSION_MAX + 1];
} kb_cache_entry;

typedef struct kb_cache {
	kb_arena arena;
	kb_cache_entry *entries;
	int32_t *buckets;
	uint32_t nbuckets;                 /* power of two */
	int capacity;
	int count;
	int32_t lru_head[KB_ARENA_MAX_CLASSES]; /* per class; head: most recent */
	int32_t lru_tail[KB_ARENA_MAX_CLASSES];
	uint64_t seq;                      /* bumped by every put and hit */
	int32_t free_head;
	uint64_t evictions[KB_EVICT_CAUSES];
} kb_cache;

#define KB_CACHE_CLASSES 5 /* 32, 64, 128, 256 and 1024-byte DEKs (cache.c) */

/*
 * kb_cache_init sizes the cache for capacity entries of up to KB_SECRET_MAX
 * bytes and maps its arena (see kb_arena_init for allow_unlocked).
 */
kb_code kb_cache_init(kb_cache *c, int capacity, bool allow_unlocked, kb_err *err);

/* kb_cache_destroy zeroes every DEK and releases everything. */
void kb_cache_destroy(kb_cache *c);

/*
 * kb_cache_get returns the live entry for digest and marks it most recently
 * used, or NULL. An entry found expired is evicted (cause ttl) first.
 */
kb_cache_entry *kb_cache_get(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN], int64_t now_ms);

/*
 * Outage grace (docs/cache.md). An entry given a grace_ms > 0 is kept, not
 * evicted, for up to grace_ms past its TTL, but kb_cache_get still treats it
 * as expired: only the key service's failure to answer (it cannot be
 * reached) lets it be served, and only as stale. kb_cache_stale returns such
 * an entry (past its TTL, within its grace), or NULL; kb_cache_drop evicts
 * the entry for digest at once (cause ttl): after a definite refusal, which
 * ends a DEK whatever its grace.
 */
kb_cache_entry *kb_cache_stale(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN], int64_t now_ms);
void kb_cache_drop(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN]);

/*
 * kb_cache_jitter_ttl returns ttl_ms cut at random by up to jitter (0..0.5)
 * of it, from the xorshift state *rng (not a secret): cache_ttl_jitter,
 * which spreads the expiries (and refreshes) of DEKs cached at once and
 * never makes one live longer than ttl_ms.
 */
int64_t kb_cache_jitter_ttl(int64_t ttl_ms, double jitter, uint64_t *rng);

/* kb_cache_peek returns the entry for digest, live or not, without touching it. */
kb_cache_entry *kb_cache_peek(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN]);

/*
 * kb_cache_put stores dek under digest for ttl_ms, replacing (and zeroing)
 * any entry already there, evicting the least recently used entry when the
 * cache is full and the least recently used of the DEK's class when that
 * class is. Returns the entry, or NULL if deklen is over KB_SECRET_MAX.
 */
kb_cache_entry *kb_cache_put(kb_cache *c, const uint8_t digest[KB_DIGEST_LEN], int key_index,
			     const char *version, const uint8_t *dek, size_t deklen, int64_t ttl_ms,
			     int64_t now_ms);

/* kb_cache_flush evicts every entry of key_index (-1: all); returns how many. */
int kb_cache_flush(kb_cache *c, int key_index);

/*
 * kb_cache_remap moves every entry of key index i to map[i] (0 <= i < n), and
 * evicts (cause flush) entries whose key maps to -1.
 */
void kb_cache_remap(kb_cache *c, const int *map, int n);

/* kb_cache_sweep evicts every expired entry past its grace; returns how many. */
int kb_cache_sweep(kb_cache *c, int64_t now_ms);

#endif
