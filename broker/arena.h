/*
 * arena.h: the one region of memory that holds DEK bytes.
 *
 * One pre-sized mmap, split into equal slots, with a PROT_NONE guard page on
 * each side, mlock'd and excluded from core dumps (MADV_DONTDUMP). Each slot
 * starts with a canary derived from a random secret and the slot's index; it
 * is checked when the slot is freed, and a damaged canary aborts the process,
 * since something wrote where it must not. Slots are zeroed when freed and the
 * whole region when it is destroyed.
 *
 * Not thread-safe: the event loop owns the arena.
 */
#ifndef KB_ARENA_H
#define KB_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct kb_arena {
	uint8_t *map;        /* whole mapping, guards included */
	size_t map_len;
	uint8_t *slots;      /* first slot, just past the leading guard */
	size_t slot_bytes;   /* usable bytes per slot */
	size_t stride;       /* canary + usable, rounded to 16 */
	size_t nslots;
	size_t locked_bytes; /* 0 when running unlocked */
	bool locked;
	uint64_t canary;
	uint32_t *free_list; /* stack of free slot indexes */
	size_t nfree;
} kb_arena;

/*
 * kb_arena_bytes_needed returns the bytes that must be locked for nslots slots
 * of slot_bytes each (guards not included, as they are never locked).
 */
size_t kb_arena_bytes_needed(size_t nslots, size_t slot_bytes);

/*
 * kb_arena_init maps and locks the arena. If mlock fails and allow_unlocked
 * is false it fails with a message naming RLIMIT_MEMLOCK, the bytes needed and
 * the fixes; if allow_unlocked is true it keeps the memory unlocked and sets
 * a->locked = false.
 */
kb_code kb_arena_init(kb_arena *a, size_t nslots, size_t slot_bytes, bool allow_unlocked,
		      kb_err *err);

/* kb_arena_alloc returns a zeroed slot of a->slot_bytes, or NULL if all are used. */
uint8_t *kb_arena_alloc(kb_arena *a);

/* kb_arena_free zeroes p's slot, checks its canary, and returns it to the pool. */
void kb_arena_free(kb_arena *a, uint8_t *p);

/* kb_arena_destroy zeroes every slot, unlocks and unmaps. */
void kb_arena_destroy(kb_arena *a);

#endif
