/*
 * arena.h: the one region of memory that holds DEK bytes.
 *
 * One pre-sized mmap, split into size classes: each class is a run of equal
 * slots with a PROT_NONE guard page on each side (between two classes, one
 * guard serves both), so an overrun out of a class faults instead of reaching
 * the next. The classes are mlock'd and excluded from core dumps
 * (MADV_DONTDUMP) and forked children (MADV_DONTFORK). Each slot starts with
 * a canary derived from a random secret, the class and the slot's index; it
 * is checked when the slot is freed, and a damaged canary aborts the process,
 * since something wrote where it must not. Slots are zeroed when freed and the
 * whole region when it is destroyed.
 *
 * A class holds DEKs up to its slot_bytes, so a 32-byte DEK costs 40 locked
 * bytes (8 of canary) instead of the 1,032 of a slot sized for the largest.
 * Classes fill independently: when one is full, kb_arena_alloc fails for its
 * sizes while the others still have room.
 *
 * Not thread-safe: the event loop owns the arena.
 */
#ifndef KB_ARENA_H
#define KB_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define KB_ARENA_MAX_CLASSES 8

/* one class as the caller asks for it: slots of slot_bytes usable bytes each */
typedef struct kb_arena_spec {
	size_t slot_bytes;
	size_t nslots;
} kb_arena_spec;

typedef struct kb_arena_class {
	uint8_t *slots;      /* first slot, just past its leading guard page */
	size_t slot_bytes;   /* usable bytes per slot */
	size_t stride;       /* canary + usable, rounded to 8 */
	size_t nslots;
	size_t bytes;        /* the class's pages (slots rounded up to a page) */
	uint32_t *free_list; /* stack of free slot indexes */
	size_t nfree;
} kb_arena_class;

typedef struct kb_arena {
	uint8_t *map;        /* whole mapping, guards included */
	size_t map_len;
	kb_arena_class cls[KB_ARENA_MAX_CLASSES]; /* by growing slot_bytes */
	int nclasses;
	size_t bytes;        /* sum of the classes' bytes, locked or not */
	size_t locked_bytes; /* 0 when running unlocked */
	bool locked;
	uint64_t canary;
} kb_arena;

/*
 * kb_arena_bytes_needed returns the bytes that must be locked for these
 * classes (guards not included, as they are never locked).
 */
size_t kb_arena_bytes_needed(const kb_arena_spec *spec, int nclasses);

/*
 * kb_arena_init maps and locks an arena of nclasses (1..KB_ARENA_MAX_CLASSES)
 * classes, given by strictly growing slot_bytes, each with at least one slot.
 * If mlock fails and allow_unlocked is false it fails with a message naming
 * RLIMIT_MEMLOCK, the bytes needed and the fixes; if allow_unlocked is true it
 * keeps the memory unlocked and sets a->locked = false.
 */
kb_code kb_arena_init(kb_arena *a, const kb_arena_spec *spec, int nclasses, bool allow_unlocked,
		      kb_err *err);

/* kb_arena_class_of returns the smallest class whose slots hold len bytes, or -1. */
int kb_arena_class_of(const kb_arena *a, size_t len);

/*
 * kb_arena_alloc returns a zeroed slot of the class kb_arena_class_of(len),
 * or NULL if len fits no class or that class has no free slot.
 */
uint8_t *kb_arena_alloc(kb_arena *a, size_t len);

/*
 * kb_arena_free zeroes p's slot, checks its canary, and returns it to its
 * class. NULL is a no-op; a pointer that is no slot of a aborts.
 */
void kb_arena_free(kb_arena *a, uint8_t *p);

/* kb_arena_destroy zeroes every slot, unlocks and unmaps. */
void kb_arena_destroy(kb_arena *a);

#endif
