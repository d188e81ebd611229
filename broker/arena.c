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

size_t kb_arena_bytes_needed(size_t nslots, size_t slot_bytes)
{
	size_t stride = round_up(CANARY_BYTES + slot_bytes, 16);
	return round_up(stride * nslots, page_size());
}

static uint64_t canary_of(const kb_arena *a, size_t i)
{
	/* per-slot value: an overrun from slot i-1 cannot copy a valid canary */
	return a->canary ^ ((uint64_t)i * 0x9e3779b97f4a7c15ULL);
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

kb_code kb_arena_init(kb_arena *a, size_t nslots, size_t slot_bytes, bool allow_unlocked,
		      kb_err *err)
{
	size_t pg = page_size(), body;

	memset(a, 0, sizeof(*a));
	a->slot_bytes = slot_bytes;
	a->stride = round_up(CANARY_BYTES + slot_bytes, 16);
	a->nslots = nslots;
	body = kb_arena_bytes_needed(nslots, slot_bytes);
	a->map_len = body + 2 * pg;
	a->map = mmap(NULL, a->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a->map == MAP_FAILED) {
		a->map = NULL;
		return kb_err_set(err, KB_E_INTERNAL, "cannot map %zu bytes for the DEK cache: %s",
				  a->map_len, strerror(errno));
	}
	a->slots = a->map + pg;
	if (mprotect(a->slots, body, PROT_READ | PROT_WRITE) != 0) {
		kb_err_set(err, KB_E_INTERNAL, "cannot open the DEK cache pages: %s", strerror(errno));
		goto fail;
	}
	/* keep DEKs out of core dumps and out of a forked child */
	if (madvise(a->slots, body, MADV_DONTDUMP) != 0 || madvise(a->slots, body, MADV_DONTFORK) != 0) {
		kb_err_set(err, KB_E_INTERNAL, "cannot exclude the DEK cache from core dumps: %s",
			   strerror(errno));
		goto fail;
	}
	if (mlock(a->slots, body) == 0) {
		a->locked = true;
		a->locked_bytes = body;
	} else if (!allow_unlocked) {
		memlock_advice(body, err);
		goto fail;
	} else {
		kb_warn("the DEK cache runs in UNLOCKED memory (allow_unlocked_memory = yes): DEKs may "
			"be written to swap");
	}
	if (RAND_bytes((unsigned char *)&a->canary, sizeof(a->canary)) != 1) {
		kb_err_set(err, KB_E_INTERNAL, "cannot draw a random canary");
		goto fail;
	}
	a->free_list = malloc(sizeof(*a->free_list) * nslots);
	if (a->free_list == NULL) {
		kb_err_set(err, KB_E_INTERNAL, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < nslots; i++) {
		uint64_t c = canary_of(a, i);
		memcpy(a->slots + i * a->stride, &c, CANARY_BYTES);
		a->free_list[a->nfree++] = (uint32_t)(nslots - 1 - i);
	}
	return KB_OK;
fail:
	munmap(a->map, a->map_len);
	a->map = NULL;
	return err ? err->code : KB_E_INTERNAL;
}

uint8_t *kb_arena_alloc(kb_arena *a)
{
	if (a->nfree == 0)
		return NULL;
	return a->slots + a->free_list[--a->nfree] * a->stride + CANARY_BYTES;
}

void kb_arena_free(kb_arena *a, uint8_t *p)
{
	size_t off, i;
	uint64_t c;

	if (p == NULL)
		return;
	off = (size_t)(p - CANARY_BYTES - a->slots);
	i = off / a->stride;
	if (off % a->stride != 0 || i >= a->nslots)
		abort(); /* not a slot of ours: a bug that must not go on */
	OPENSSL_cleanse(p, a->slot_bytes);
	memcpy(&c, p - CANARY_BYTES, CANARY_BYTES);
	if (c != canary_of(a, i)) {
		kb_error("DEK arena canary of slot %zu is damaged: memory corruption, aborting", i);
		abort();
	}
	a->free_list[a->nfree++] = (uint32_t)i;
}

void kb_arena_destroy(kb_arena *a)
{
	size_t body;

	if (a->map == NULL)
		return;
	body = a->map_len - 2 * page_size();
	OPENSSL_cleanse(a->slots, body);
	if (a->locked)
		munlock(a->slots, body);
	munmap(a->map, a->map_len);
	free(a->free_list);
	memset(a, 0, sizeof(*a));
}
