#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "arena.h"
#include "log.h"

#define CANARY_BYTES 8

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

/* a stride of 8 keeps every canary aligned; a 32-byte DEK takes 40 bytes */
static size_t stride_of(size_t slot_bytes)
{
	return round_up(CANARY_BYTES + slot_bytes, CANARY_BYTES);
}

static size_t class_bytes(const kb_arena_spec *s)
{
	return round_up(stride_of(s->slot_bytes) * s->nslots, page_size());
}

size_t kb_arena_bytes_needed(const kb_arena_spec *spec, int nclasses)
{
	size_t n = 0;

	for (int k = 0; k < nclasses; k++)
		n += class_bytes(&spec[k]);
	return n;
}

static uint64_t canary_of(const kb_arena *a, int k, size_t i)
{
	/* per-slot value: an overrun from slot i-1 cannot copy a valid canary */
	return a->canary ^ ((((uint64_t)k << 40) + i + 1) * 0x9e3779b97f4a7c15ULL);
}

static void memlock_advice(size_t need, kb_err *err)
{
	struct rlimit rl;
	char cur[32];

	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		snprintf(cur, sizeof(cur), "%llu bytes", (unsigned long long)rl.rlim_cur);
	else
		snprintf(cur, sizeof(cur), "unlimited");
	kb_err_set(err, KB_E_INTERNAL,
		   "cannot lock %zu bytes of memory for the DEK cache (RLIMIT_MEMLOCK is %s): raise the "
		   "limit with `ulimit -l %zu` (KiB), systemd's LimitMEMLOCK=%zu, or grant CAP_IPC_LOCK; "
		   "or lower cache_capacity; or set allow_unlocked_memory = yes to run with DEKs that may "
		   "be swapped out",
		   need, cur, (need + 1023) / 1024 + 64, need + 65536);
}

static bool spec_valid(const kb_arena_spec *spec, int nclasses)
{
	if (nclasses < 1 || nclasses > KB_ARENA_MAX_CLASSES)
		return false;
	for (int k = 0; k < nclasses; k++)
		if (spec[k].nslots == 0 || spec[k].nslots > UINT32_MAX || spec[k].slot_bytes == 0 ||
		    (k > 0 && spec[k].slot_bytes <= spec[k - 1].slot_bytes))
			return false;
	return true;
}

/* lock_classes mlocks each class; guard pages stay unlocked, as they hold nothing. */
static bool lock_classes(kb_arena *a)
{
	for (int k = 0; k < a->nclasses; k++) {
		if (mlock(a->cls[k].slots, a->cls[k].bytes) != 0) {
			while (k-- > 0)
				munlock(a->cls[k].slots, a->cls[k].bytes);
			return false;
		}
	}
	return true;
}

/* fill_class writes every slot's canary and stacks the slots, lowest on top. */
static bool fill_class(kb_arena *a, int k)
{
	kb_arena_class *c = &a->cls[k];

	c->free_list = malloc(sizeof(*c->free_list) * c->nslots);
	if (c->free_list == NULL)
		return false;
	for (size_t i = 0; i < c->nslots; i++) {
		uint64_t v = canary_of(a, k, i);
		memcpy(c->slots + i * c->stride, &v, CANARY_BYTES);
		c->free_list[c->nfree++] = (uint32_t)(c->nslots - 1 - i);
	}
	return true;
}

kb_code kb_arena_init(kb_arena *a, const kb_arena_spec *spec, int nclasses, bool allow_unlocked,
		      kb_err *err)
{
	size_t pg = page_size();
	uint8_t *at;

	memset(a, 0, sizeof(*a));
	if (!spec_valid(spec, nclasses))
		return kb_err_set(err, KB_E_INTERNAL, "invalid size classes for the DEK cache");
	a->nclasses = nclasses;
	a->bytes = kb_arena_bytes_needed(spec, nclasses);
	a->map_len = a->bytes + (size_t)(nclasses + 1) * pg;
	a->map = mmap(NULL, a->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a->map == MAP_FAILED) {
		a->map = NULL;
		return kb_err_set(err, KB_E_INTERNAL, "cannot map %zu bytes for the DEK cache: %s",
				  a->map_len, strerror(errno));
	}
	/* [guard][class 0][guard][class 1][guard] ... [class n-1][guard] */
	at = a->map + pg;
	for (int k = 0; k < nclasses; k++) {
		kb_arena_class *c = &a->cls[k];

		c->slot_bytes = spec[k].slot_bytes;
		c->stride = stride_of(spec[k].slot_bytes);
		c->nslots = spec[k].nslots;
		c->bytes = class_bytes(&spec[k]);
		c->slots = at;
		if (mprotect(c->slots, c->bytes, PROT_READ | PROT_WRITE) != 0) {
			kb_err_set(err, KB_E_INTERNAL, "cannot open the DEK cache pages: %s", strerror(errno));
			goto fail;
		}
		at += c->bytes + pg;
	}
	/* keep DEKs out of core dumps and out of a forked child */
	if (madvise(a->map, a->map_len, MADV_DONTDUMP) != 0 ||
	    madvise(a->map, a->map_len, MADV_DONTFORK) != 0) {
		kb_err_set(err, KB_E_INTERNAL, "cannot exclude the DEK cache from core dumps: %s",
			   strerror(errno));
		goto fail;
	}
	if (lock_classes(a)) {
		a->locked = true;
		a->locked_bytes = a->bytes;
	} else if (!allow_unlocked) {
		memlock_advice(a->bytes, err);
		goto fail;
	} else {
		kb_warn("the DEK cache runs in UNLOCKED memory (allow_unlocked_memory = yes): DEKs may "
			"be written to swap");
	}
	if (RAND_bytes((unsigned char *)&a->canary, sizeof(a->canary)) != 1) {
		kb_err_set(err, KB_E_INTERNAL, "cannot draw a random canary");
		goto fail;
	}
	for (int k = 0; k < nclasses; k++) {
		if (!fill_class(a, k)) {
			kb_err_set(err, KB_E_INTERNAL, "out of memory");
			goto fail;
		}
	}
	return KB_OK;
fail:
	kb_arena_destroy(a);
	return err ? err->code : KB_E_INTERNAL;
}

int kb_arena_class_of(const kb_arena *a, size_t len)
{
	for (int k = 0; k < a->nclasses; k++)
		if (len <= a->cls[k].slot_bytes)
			return k;
	return -1;
}

uint8_t *kb_arena_alloc(kb_arena *a, size_t len)
{
	int k = kb_arena_class_of(a, len);
	kb_arena_class *c;

	if (k < 0)
		return NULL;
	c = &a->cls[k];
	if (c->nfree == 0)
		return NULL;
	return c->slots + c->free_list[--c->nfree] * c->stride + CANARY_BYTES;
}

void kb_arena_free(kb_arena *a, uint8_t *p)
{
	kb_arena_class *c = NULL;
	size_t off, i;
	uint64_t v;
	int k;

	if (p == NULL)
		return;
	for (k = 0; k < a->nclasses; k++) {
		if (p >= a->cls[k].slots + CANARY_BYTES && p < a->cls[k].slots + a->cls[k].bytes) {
			c = &a->cls[k];
			break;
		}
	}
	if (c == NULL)
		abort(); /* not in any class: a bug that must not go on */
	off = (size_t)(p - CANARY_BYTES - c->slots);
	i = off / c->stride;
	if (off % c->stride != 0 || i >= c->nslots)
		abort(); /* not a slot of ours: a bug that must not go on */
	if (c->nfree == c->nslots)
		abort(); /* every slot is already free: p was freed twice */
	OPENSSL_cleanse(p, c->slot_bytes);
	memcpy(&v, p - CANARY_BYTES, CANARY_BYTES);
	if (v != canary_of(a, k, i)) {
		kb_log_err("DEK arena canary of slot %zu of the %zu-byte class is damaged: memory "
			 "corruption, aborting", i, c->slot_bytes);
		abort();
	}
	c->free_list[c->nfree++] = (uint32_t)i;
}

void kb_arena_destroy(kb_arena *a)
{
	if (a->map == NULL)
		return;
	for (int k = 0; k < a->nclasses; k++) {
		kb_arena_class *c = &a->cls[k];

		if (c->slots == NULL)
			continue;
		/* a class whose mprotect failed is still PROT_NONE: nothing was written there */
		if (c->free_list != NULL)
			OPENSSL_cleanse(c->slots, c->bytes);
		if (a->locked)
			munlock(c->slots, c->bytes);
		free(c->free_list);
	}
	munmap(a->map, a->map_len);
	memset(a, 0, sizeof(*a));
}
