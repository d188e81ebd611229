/*
 * test_arena: the locked region that holds DEK bytes, and the cache on top of it.
 *
 * Zeroing is checked by reading through the pointer that held the DEK: arena
 * slots stay mapped after they are freed. Fatal checks (guard pages, canary)
 * run in a forked child; the arena is MADV_DONTFORK, so the child makes its own.
 */
#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "cache.h"
#include "digest.h"
#include "unit.h"

static const uint8_t zero[KB_SECRET_MAX];

/* three classes, small enough to fill by hand */
static const kb_arena_spec three[] = { { 32, 4 }, { 64, 2 }, { KB_SECRET_MAX, 1 } };

static void arena_new_classes(kb_arena *a, const kb_arena_spec *spec, int n)
{
	kb_err err = { 0 };

	if (kb_arena_init(a, spec, n, false, &err) != KB_OK)
		fail_msg("kb_arena_init: %s", err.msg);
}

/* arena_new makes an arena of one class */
static void arena_new(kb_arena *a, size_t nslots, size_t slot_bytes)
{
	kb_arena_spec one = { slot_bytes, nslots };

	arena_new_classes(a, &one, 1);
}

/* one_class inits an arena of one class in a child, where failing is exiting */
static void one_class(kb_arena *a, size_t nslots, size_t slot_bytes)
{
	kb_arena_spec one = { slot_bytes, nslots };
	kb_err err;

	if (kb_arena_init(a, &one, 1, true, &err) != KB_OK)
		_exit(3);
}

static bool in_class(const kb_arena *a, int k, const uint8_t *p)
{
	return p > a->cls[k].slots && p < a->cls[k].slots + a->cls[k].bytes;
}

/* in_child runs fn in a forked child and returns its wait status. */
static int in_child(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* no core files from the crashes we cause on purpose */
		static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGSYS };
		struct rlimit none = { 0, 0 };

		setrlimit(RLIMIT_CORE, &none);
		/* the child must die of the signal, not return into cmocka's handler */
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void expect_signal(int status, int sig)
{
	if (!WIFSIGNALED(status))
		fail_msg("child exited with %d instead of dying by signal %d",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1, sig);
	assert_int_equal(WTERMSIG(status), sig);
}

static void arena_alloc_gives_distinct_zeroed_slots_until_full(void **state)
{
	kb_arena a;
	uint8_t *p[8];

	arena_new(&a, 8, 100);
	assert_true(a.locked);
	assert_int_equal(a.locked_bytes, kb_arena_bytes_needed(&(kb_arena_spec){ 100, 8 }, 1));
	for (int i = 0; i < 8; i++) {
		p[i] = kb_arena_alloc(&a, 100);
		assert_non_null(p[i]);
		assert_memory_equal(p[i], zero, 100);
		memset(p[i], 0x5a, 100);
		for (int j = 0; j < i; j++)
			assert_true(p[i] >= p[j] + 100 || p[j] >= p[i] + 100);
	}
	assert_null(kb_arena_alloc(&a, 1));
	/* writing a whole slot left every other slot's bytes and canary intact */
	for (int i = 0; i < 8; i++)
		kb_arena_free(&a, p[i]);
	assert_non_null(kb_arena_alloc(&a, 100));
	kb_arena_destroy(&a);
}

static void arena_free_zeroes_the_slot(void **state)
{
	kb_arena a;
	uint8_t *p, *q;

	arena_new(&a, 4, KB_SECRET_MAX);
	p = kb_arena_alloc(&a, KB_SECRET_MAX);
	q = kb_arena_alloc(&a, KB_SECRET_MAX);
	memset(p, 0xa5, KB_SECRET_MAX);
	memset(q, 0x3c, KB_SECRET_MAX);
	kb_arena_free(&a, p);
	assert_memory_equal(p, zero, KB_SECRET_MAX);
	/* the neighbour is untouched */
	for (size_t i = 0; i < KB_SECRET_MAX; i++)
		assert_int_equal(q[i], 0x3c);
	/* and a slot handed out again comes zeroed */
	assert_ptr_equal(kb_arena_alloc(&a, 1), p);
	kb_arena_free(&a, q);
	assert_memory_equal(q, zero, KB_SECRET_MAX);
	kb_arena_destroy(&a);
}

static void arena_alloc_takes_the_smallest_class_that_holds_the_dek(void **state)
{
	kb_arena a;
	uint8_t *p;

	arena_new_classes(&a, three, 3);
	assert_int_equal(a.nclasses, 3);
	assert_int_equal(a.locked_bytes, kb_arena_bytes_needed(three, 3));
	assert_int_equal(a.locked_bytes, a.cls[0].bytes + a.cls[1].bytes + a.cls[2].bytes);
	/* each class is its own run of pages: a 32-byte slot costs 40 bytes, not 1032 */
	assert_int_equal(a.cls[0].stride, 40);
	assert_int_equal(a.cls[1].stride, 72);
	assert_int_equal(a.cls[2].stride, 8 + KB_SECRET_MAX);
	assert_int_equal(kb_arena_class_of(&a, 0), 0);
	assert_int_equal(kb_arena_class_of(&a, 32), 0);
	assert_int_equal(kb_arena_class_of(&a, 33), 1);
	assert_int_equal(kb_arena_class_of(&a, 64), 1);
	assert_int_equal(kb_arena_class_of(&a, 65), 2);
	assert_int_equal(kb_arena_class_of(&a, KB_SECRET_MAX), 2);
	assert_int_equal(kb_arena_class_of(&a, KB_SECRET_MAX + 1), -1);
	assert_null(kb_arena_alloc(&a, KB_SECRET_MAX + 1));
	assert_true(in_class(&a, 0, p = kb_arena_alloc(&a, 16)));
	assert_memory_equal(p, zero, 32);
	assert_true(in_class(&a, 0, kb_arena_alloc(&a, 32)));
	assert_true(in_class(&a, 1, p = kb_arena_alloc(&a, 33)));
	assert_memory_equal(p, zero, 64);
	assert_true(in_class(&a, 2, p = kb_arena_alloc(&a, 100)));
	assert_memory_equal(p, zero, KB_SECRET_MAX);
	assert_int_equal(a.cls[0].nfree, 2);
	assert_int_equal(a.cls[1].nfree, 1);
	assert_int_equal(a.cls[2].nfree, 0);
	kb_arena_destroy(&a);
}

static void arena_full_class_refuses_while_the_others_still_give(void **state)
{
	kb_arena a;
	uint8_t *p, *q;

	arena_new_classes(&a, three, 3);
	p = kb_arena_alloc(&a, 64);
	q = kb_arena_alloc(&a, 40);
	assert_true(in_class(&a, 1, p) && in_class(&a, 1, q) && p != q);
	/* the 64-byte class is exhausted: no DEK of 33..64 bytes fits, and none spills over */
	assert_null(kb_arena_alloc(&a, 64));
	assert_null(kb_arena_alloc(&a, 33));
	assert_int_equal(a.cls[2].nfree, 1);
	for (int i = 0; i < 4; i++)
		assert_true(in_class(&a, 0, kb_arena_alloc(&a, 32)));
	assert_true(in_class(&a, 2, kb_arena_alloc(&a, 65)));
	assert_null(kb_arena_alloc(&a, 1));
	/* a freed slot is handed out again, zeroed, to the next DEK of its class */
	memset(q, 0x66, 64);
	kb_arena_free(&a, q);
	assert_ptr_equal(kb_arena_alloc(&a, 50), q);
	assert_memory_equal(q, zero, 64);
	assert_null(kb_arena_alloc(&a, 50));
	kb_arena_destroy(&a);
}

static void arena_free_zeroes_the_slot_in_every_class(void **state)
{
	kb_arena a;
	uint8_t *p[3], *nb;

	arena_new_classes(&a, three, 3);
	p[0] = kb_arena_alloc(&a, 32);
	p[1] = kb_arena_alloc(&a, 64);
	p[2] = kb_arena_alloc(&a, KB_SECRET_MAX);
	nb = kb_arena_alloc(&a, 32);
	memset(nb, 0x3c, 32);
	for (int k = 0; k < 3; k++) {
		memset(p[k], 0xa5, a.cls[k].slot_bytes);
		kb_arena_free(&a, p[k]);
		assert_memory_equal(p[k], zero, a.cls[k].slot_bytes);
		assert_int_equal(a.cls[k].nfree, a.cls[k].nslots - (k == 0 ? 1 : 0));
	}
	/* the neighbouring slot of the 32-byte class is untouched */
	for (int i = 0; i < 32; i++)
		assert_int_equal(nb[i], 0x3c);
	kb_arena_destroy(&a);
}

static void arena_refuses_classes_out_of_order_or_empty(void **state)
{
	static const kb_arena_spec shrinking[] = { { 64, 2 }, { 32, 2 } };
	static const kb_arena_spec empty[] = { { 32, 2 }, { 64, 0 } };
	kb_arena a;
	kb_err err = { 0 };

	assert_int_not_equal(kb_arena_init(&a, shrinking, 2, false, &err), KB_OK);
	assert_null(a.map);
	assert_int_not_equal(kb_arena_init(&a, empty, 2, false, &err), KB_OK);
	assert_int_not_equal(kb_arena_init(&a, three, 0, false, &err), KB_OK);
	assert_int_not_equal(kb_arena_init(&a, three, KB_ARENA_MAX_CLASSES + 1, false, &err), KB_OK);
}

static void arena_free_of_null_is_a_no_op(void **state)
{
	kb_arena a;

	arena_new(&a, 2, 64);
	kb_arena_free(&a, NULL);
	assert_int_equal(a.cls[0].nfree, 2);
	kb_arena_destroy(&a);
}

static void arena_destroy_unmaps_everything(void **state)
{
	kb_arena a;
	uint8_t *slots;
	size_t len;
	unsigned char vec[64];

	arena_new_classes(&a, three, 3);
	slots = a.cls[0].slots;
	len = a.cls[2].slots + a.cls[2].bytes - slots;
	memset(kb_arena_alloc(&a, 64), 0x77, 64);
	kb_arena_destroy(&a);
	assert_null(a.map);
	assert_false(a.locked);
	/* the pages are gone (mincore says ENOMEM for unmapped memory); reading them would fault */
	assert_int_equal(mincore(slots, len, vec), -1);
	assert_int_equal(errno, ENOMEM);
	kb_arena_destroy(&a); /* twice is harmless */
}

static void write_before_first_slot(void)
{
	kb_arena a;

	one_class(&a, 4, 64);
	((volatile uint8_t *)a.cls[0].slots)[-1] = 1;
}

static void write_after_last_page(void)
{
	kb_arena a;

	one_class(&a, 4, 64);
	((volatile uint8_t *)a.cls[0].slots)[kb_arena_bytes_needed(&(kb_arena_spec){ 64, 4 }, 1)] = 1;
}

/* an overrun off the end of the 32-byte class's pages, toward the 64-byte class */
static void write_past_the_small_class(void)
{
	kb_arena a;
	kb_err err;

	if (kb_arena_init(&a, three, 3, true, &err) != KB_OK)
		_exit(3);
	((volatile uint8_t *)a.cls[0].slots)[a.cls[0].bytes] = 1;
}

static void arena_write_to_the_leading_guard_page_is_fatal(void **state)
{
	expect_signal(in_child(write_before_first_slot), SIGSEGV);
}

static void arena_write_to_the_trailing_guard_page_is_fatal(void **state)
{
	expect_signal(in_child(write_after_last_page), SIGSEGV);
}

static void arena_write_to_the_guard_page_between_two_classes_is_fatal(void **state)
{
	expect_signal(in_child(write_past_the_small_class), SIGSEGV);
}

static void damage_canary_and_free(void)
{
	kb_arena a;
	uint8_t *p;

	one_class(&a, 4, 64);
	kb_arena_alloc(&a, 64);
	p = kb_arena_alloc(&a, 64);
	memset(p - 8, 0, 8);
	kb_arena_free(&a, p);
}

/* overrun_and_free writes from one slot of len's class up to the next, then frees that one */
static void overrun_and_free(kb_arena *a, size_t len)
{
	uint8_t *p, *q;

	p = kb_arena_alloc(a, len);
	q = kb_arena_alloc(a, len);
	if (q < p) {
		uint8_t *t = p;
		p = q;
		q = t;
	}
	/* a write past the end of the lower slot reaches the next one's canary */
	memset(p, 0x41, (size_t)(q - p));
	kb_arena_free(a, q);
}

static void overrun_into_next_slot_and_free_it(void)
{
	kb_arena a;

	one_class(&a, 4, 64);
	overrun_and_free(&a, 64);
}

/* in the densest class a 33rd byte already lands on the neighbour's canary */
static void overrun_a_32_byte_slot_by_one_byte(void)
{
	kb_arena a;
	kb_err err;
	uint8_t *p, *q;

	if (kb_arena_init(&a, three, 3, true, &err) != KB_OK)
		_exit(3);
	p = kb_arena_alloc(&a, 32);
	q = kb_arena_alloc(&a, 32);
	if (q < p) {
		uint8_t *t = p;
		p = q;
		q = t;
	}
	if (q - p != 40)
		_exit(6); /* the stride is 8 of canary and 32 of DEK */
	p[32] ^= 1;
	kb_arena_free(&a, q);
}

static void overrun_in_class_of_three(size_t len)
{
	kb_arena a;
	kb_err err;

	if (kb_arena_init(&a, three, 3, true, &err) != KB_OK)
		_exit(3);
	overrun_and_free(&a, len);
}

static void overrun_in_the_32_byte_class(void)
{
	overrun_in_class_of_three(32);
}

static void overrun_in_the_64_byte_class(void)
{
	overrun_in_class_of_three(64);
}

static void free_foreign_pointer(void)
{
	kb_arena a;

	one_class(&a, 4, 64);
	kb_arena_free(&a, kb_arena_alloc(&a, 64) + 1);
}

static void arena_damaged_canary_aborts_on_free(void **state)
{
	expect_signal(in_child(damage_canary_and_free), SIGABRT);
	expect_signal(in_child(overrun_into_next_slot_and_free_it), SIGABRT);
}

static void arena_canary_of_each_class_detects_an_overwrite(void **state)
{
	expect_signal(in_child(overrun_a_32_byte_slot_by_one_byte), SIGABRT);
	expect_signal(in_child(overrun_in_the_32_byte_class), SIGABRT);
	expect_signal(in_child(overrun_in_the_64_byte_class), SIGABRT);
}

static void arena_free_of_a_pointer_that_is_no_slot_aborts(void **state)
{
	expect_signal(in_child(free_foreign_pointer), SIGABRT);
}

/* lose_ipc_lock drops CAP_IPC_LOCK, which lets root lock past RLIMIT_MEMLOCK. */
static void lose_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) != 0)
		_exit(4);
	data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	data[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
	data[CAP_IPC_LOCK / 32].inheritable &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &hdr, data) != 0)
		_exit(4);
}

static void lock_under_zero_memlock(bool allow_unlocked)
{
	struct rlimit zero_lim = { 0, 0 };
	kb_arena a;
	kb_err err = { 0 };
	kb_code rc;

	lose_ipc_lock();
	if (setrlimit(RLIMIT_MEMLOCK, &zero_lim) != 0)
		_exit(5);
	rc = kb_arena_init(&a, three, 3, allow_unlocked, &err);
	if (!allow_unlocked) {
		if (rc == KB_OK) {
			fprintf(stderr, "kb_arena_init succeeded under RLIMIT_MEMLOCK=0\n");
			_exit(10);
		}
		fprintf(stderr, "refusal: %s\n", err.msg);
		if (!strstr(err.msg, "RLIMIT_MEMLOCK") || !strstr(err.msg, "ulimit -l") ||
		    !strstr(err.msg, "allow_unlocked_memory") || a.map != NULL)
			_exit(11);
		_exit(0);
	}
	if (rc != KB_OK) {
		fprintf(stderr, "allow_unlocked init failed: %s\n", err.msg);
		_exit(12);
	}
	if (a.locked || a.locked_bytes != 0)
		_exit(13);
	/* and it works */
	memset(kb_arena_alloc(&a, KB_SECRET_MAX), 1, KB_SECRET_MAX);
	kb_arena_destroy(&a);
	_exit(0);
}

static void refuse_unlocked(void)
{
	lock_under_zero_memlock(false);
}

static void allow_unlocked(void)
{
	lock_under_zero_memlock(true);
}

static void expect_exit_0(int status)
{
	if (!WIFEXITED(status))
		fail_msg("child died by signal %d", WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("child exited %d", WEXITSTATUS(status));
}

static void arena_refuses_to_start_unlocked_naming_rlimit_memlock_and_ulimit(void **state)
{
	expect_exit_0(in_child(refuse_unlocked));
}

static void arena_runs_unlocked_when_allowed(void **state)
{
	expect_exit_0(in_child(allow_unlocked));
}

/* ---- the cache ---- */

static kb_cache cache;

static void digest_of(int n, uint8_t d[KB_DIGEST_LEN])
{
	/* spread over buckets like a real SHA-256, but reproducible */
	for (int i = 0; i < KB_DIGEST_LEN; i++)
		d[i] = (uint8_t)(n * 131 + i * 7 + (n >> 3));
	memcpy(d + KB_DIGEST_LEN - sizeof(n), &n, sizeof(n));
}

static void dek_of(int n, uint8_t dek[32])
{
	memset(dek, 0x10 + n, 32);
}

static kb_cache_entry *put(int n, int key, int64_t ttl, int64_t now)
{
	uint8_t d[KB_DIGEST_LEN], dek[32];

	digest_of(n, d);
	dek_of(n, dek);
	return kb_cache_put(&cache, d, key, "v1", dek, sizeof(dek), ttl, now);
}

static kb_cache_entry *get(int n, int64_t now)
{
	uint8_t d[KB_DIGEST_LEN];

	digest_of(n, d);
	return kb_cache_get(&cache, d, now);
}

static int cache_setup(void **state)
{
	kb_err err = { 0 };

	if (kb_cache_init(&cache, 4, false, &err) != KB_OK) {
		fprintf(stderr, "kb_cache_init: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int cache_teardown(void **state)
{
	kb_cache_destroy(&cache);
	return 0;
}

static void cache_get_after_put_returns_the_dek(void **state)
{
	kb_cache_entry *e = put(1, 0, 1000, 5000), *g;
	uint8_t dek[32];

	assert_non_null(e);
	g = get(1, 5001);
	assert_ptr_equal(g, e);
	dek_of(1, dek);
	assert_int_equal(g->deklen, 32);
	assert_memory_equal(g->dek, dek, 32);
	assert_string_equal(g->version, "v1");
	assert_int_equal(g->key_index, 0);
	assert_int_equal(g->expires_ms, 6000);
	assert_int_equal(cache.count, 1);
	assert_null(get(2, 5001));
}

static void cache_entry_expires_exactly_at_its_ttl(void **state)
{
	kb_cache_entry *e = put(1, 0, 2000, 10000);
	uint8_t *dek = e->dek;

	assert_non_null(get(1, 11999));
	/* a hit does not extend the entry's life */
	assert_non_null(get(1, 11999));
	assert_null(get(1, 12000));
	assert_int_equal(cache.count, 0);
	assert_int_equal(cache.evictions[KB_EVICT_TTL], 1);
	assert_memory_equal(dek, zero, 32);
	/* peek still sees an expired entry, and leaves it */
	{
		uint8_t d[KB_DIGEST_LEN];

		put(2, 0, 100, 0);
		digest_of(2, d);
		assert_non_null(kb_cache_peek(&cache, d));
		assert_non_null(kb_cache_peek(&cache, d));
		assert_int_equal(cache.count, 1);
	}
}

static void cache_over_capacity_drops_the_least_recently_used(void **state)
{
	for (int n = 0; n < 4; n++)
		assert_non_null(put(n, 0, 60000, 0));
	assert_non_null(get(0, 1)); /* 0 is now the most recent; 1 the least */
	assert_non_null(put(4, 0, 60000, 2));
	assert_int_equal(cache.count, 4);
	assert_null(get(1, 3));
	assert_non_null(get(0, 3));
	assert_non_null(get(2, 3));
	assert_non_null(get(3, 3));
	assert_non_null(get(4, 3));
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 1);
	assert_int_equal(cache.evictions[KB_EVICT_TTL], 0);
	/* now 0 is least recent again after 2, 3, 4 were read */
	assert_non_null(put(5, 0, 60000, 4));
	assert_null(get(0, 5));
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 2);
}

static void cache_lru_eviction_zeroes_the_dek(void **state)
{
	kb_cache_entry *e;
	uint8_t *dek;
	uint8_t d[KB_DIGEST_LEN];
	static const uint8_t small[3] = { 1, 2, 3 };

	for (int n = 0; n < 4; n++)
		put(n, 0, 60000, 0);
	e = kb_cache_peek(&cache, (digest_of(0, d), d));
	dek = e->dek;
	/* the new DEK is shorter than the old: nothing of the old may remain */
	digest_of(9, d);
	e = kb_cache_put(&cache, d, 0, "v1", small, sizeof(small), 60000, 1);
	assert_ptr_equal(e->dek, dek); /* the freed slot is the one handed out again */
	assert_memory_equal(dek, small, 3);
	assert_memory_equal(dek + 3, zero, 32 - 3);
}

static void cache_flush_zeroes_every_dek(void **state)
{
	uint8_t *deks[4];

	for (int n = 0; n < 4; n++)
		deks[n] = put(n, n % 2, 60000, 0)->dek;
	assert_int_equal(kb_cache_flush(&cache, -1), 4);
	assert_int_equal(cache.count, 0);
	for (int n = 0; n < 4; n++)
		assert_memory_equal(deks[n], zero, 32);
}

static void cache_flush_by_key_evicts_only_that_keys_entries(void **state)
{
	uint8_t *deks[4];

	for (int n = 0; n < 4; n++)
		deks[n] = put(n, n % 2, 60000, 0)->dek;
	assert_int_equal(kb_cache_flush(&cache, 1), 2);
	assert_int_equal(cache.count, 2);
	assert_non_null(get(0, 1));
	assert_null(get(1, 1));
	assert_non_null(get(2, 1));
	assert_null(get(3, 1));
	assert_memory_equal(deks[1], zero, 32);
	assert_memory_equal(deks[3], zero, 32);
	assert_int_equal(deks[0][0], 0x10);
	assert_int_equal(kb_cache_flush(&cache, 7), 0);
	assert_int_equal(kb_cache_flush(&cache, -1), 2);
	assert_int_equal(cache.evictions[KB_EVICT_FLUSH], 4);
}

static void cache_put_of_the_same_blob_replaces_its_entry(void **state)
{
	uint8_t d[KB_DIGEST_LEN];
	static const uint8_t fresh[16] = { 0xee, 0xee };
	kb_cache_entry *e;

	put(1, 0, 1000, 0);
	put(2, 0, 1000, 0);
	digest_of(1, d);
	e = kb_cache_put(&cache, d, 0, "v2", fresh, sizeof(fresh), 5000, 500);
	assert_non_null(e);
	assert_int_equal(cache.count, 2);
	assert_int_equal(cache.evictions[KB_EVICT_REPLACE], 1);
	e = get(1, 4000);
	assert_non_null(e);
	assert_string_equal(e->version, "v2");
	assert_int_equal(e->deklen, 16);
	assert_memory_equal(e->dek, fresh, 16);
	assert_memory_equal(e->dek + 16, zero, 16); /* nothing left of the 32-byte one */
	assert_int_equal(e->expires_ms, 5500);
}

static void cache_sweep_evicts_only_expired_entries(void **state)
{
	uint8_t *dek1;

	put(0, 0, 1000, 0);
	dek1 = put(1, 0, 2000, 0)->dek;
	put(2, 0, 3000, 0);
	assert_int_equal(kb_cache_sweep(&cache, 999), 0);
	assert_int_equal(kb_cache_sweep(&cache, 2000), 2);
	assert_int_equal(cache.count, 1);
	assert_memory_equal(dek1, zero, 32);
	assert_non_null(get(2, 2500));
	assert_int_equal(cache.evictions[KB_EVICT_TTL], 2);
}

static void cache_eviction_counters_count_each_cause(void **state)
{
	uint8_t d[KB_DIGEST_LEN];

	for (int n = 0; n < 5; n++)   /* 1 lru */
		put(n, 0, 1000, 0);
	put(4, 0, 1000, 0);           /* 1 replace */
	assert_null(get(2, 1000));    /* 1 ttl */
	kb_cache_sweep(&cache, 1000); /* 3 ttl: 1, 3 and 4 */
	put(7, 3, 1000, 2000);
	kb_cache_flush(&cache, -1);   /* 1 flush */
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 1);
	assert_int_equal(cache.evictions[KB_EVICT_REPLACE], 1);
	assert_int_equal(cache.evictions[KB_EVICT_TTL], 4);
	assert_int_equal(cache.evictions[KB_EVICT_FLUSH], 1);
	assert_int_equal(cache.count, 0);
	digest_of(4, d);
	assert_null(kb_cache_peek(&cache, d));
}

static void cache_refuses_a_dek_over_1024_bytes(void **state)
{
	uint8_t d[KB_DIGEST_LEN];
	static const uint8_t big[KB_SECRET_MAX + 1];

	digest_of(1, d);
	assert_null(kb_cache_put(&cache, d, 0, "v1", big, sizeof(big), 1000, 0));
	assert_int_equal(cache.count, 0);
	assert_non_null(kb_cache_put(&cache, d, 0, "v1", big, KB_SECRET_MAX, 1000, 0));
}

static void cache_survives_many_puts_gets_and_evictions(void **state)
{
	/* every entry that get returns is the DEK that was put under that digest */
	for (int i = 0; i < 5000; i++) {
		int n = (i * 7919) % 11;
		kb_cache_entry *e = get(n, i);

		if (e) {
			uint8_t dek[32];
			dek_of(n, dek);
			assert_memory_equal(e->dek, dek, 32);
		} else {
			put(n, n % 3, 50, i);
		}
		if (i % 97 == 0)
			kb_cache_flush(&cache, i % 3);
		assert_true(cache.count <= 4);
	}
}

/* put_len puts a DEK of len bytes, all 0x10 + n, under n's digest */
static kb_cache_entry *put_len(int n, size_t len, int64_t now)
{
	uint8_t d[KB_DIGEST_LEN], dek[KB_SECRET_MAX];

	digest_of(n, d);
	memset(dek, 0x10 + n, len);
	return kb_cache_put(&cache, d, 0, "v1", dek, len, 60000, now);
}

static void cache_full_class_evicts_its_own_least_recently_used(void **state)
{
	kb_cache_entry *e;
	uint8_t *big;

	/* capacity 4: four 32-byte slots, one slot in each larger class */
	assert_int_equal(cache.arena.cls[0].nslots, 4);
	assert_int_equal(cache.arena.cls[KB_CACHE_CLASSES - 1].nslots, 1);
	put_len(0, 32, 0);
	big = put_len(1, KB_SECRET_MAX, 1)->dek;
	put_len(2, 32, 2);
	/* a second DEK for the one 1024-byte slot: the older big one goes, not the older small one */
	e = put_len(3, 500, 3);
	assert_non_null(e);
	assert_ptr_equal(e->dek, big);
	assert_int_equal(cache.count, 3);
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 1);
	assert_null(get(1, 4));
	assert_non_null(get(0, 4));
	assert_non_null(get(2, 4));
	e = get(3, 4);
	assert_int_equal(e->deklen, 500);
	assert_int_equal(e->dek[499], 0x13);
	/* nothing of the 1024-byte DEK is left past the 500 new bytes */
	assert_memory_equal(big + 500, zero, KB_SECRET_MAX - 500);
}

static void cache_over_capacity_evicts_the_oldest_entry_of_any_class(void **state)
{
	put_len(0, 64, 0);
	for (int n = 1; n < 4; n++)
		put_len(n, 32, n);
	/* full at 4 entries; the 32-byte class still has a slot, yet the oldest entry (64 bytes) goes */
	assert_non_null(put_len(4, 32, 4));
	assert_int_equal(cache.count, 4);
	assert_null(get(0, 5));
	assert_non_null(get(1, 5)); /* 2 is now the oldest */
	assert_non_null(put_len(5, 200, 6));
	assert_null(get(2, 7));
	for (int n = 3; n < 6; n++)
		assert_non_null(get(n, 7));
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 2);
	assert_int_equal(cache.arena.cls[0].nslots - cache.arena.cls[0].nfree, 3);
}

/* fill_100000_under_8_mib: the default RLIMIT_MEMLOCK holds a cache of 100,000 256-bit DEKs */
static void fill_100000_under_8_mib(void)
{
	struct rlimit lim = { 8388608, 8388608 };
	kb_cache c;
	kb_err err = { 0 };
	uint8_t d[KB_DIGEST_LEN], dek[32];
	const int n = 100000;

	lose_ipc_lock();
	if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0)
		_exit(5);
	if (kb_cache_init(&c, n, false, &err) != KB_OK) {
		fprintf(stderr, "kb_cache_init: %s\n", err.msg);
		_exit(10);
	}
	fprintf(stderr, "100000 entries: %zu bytes locked\n", c.arena.locked_bytes);
	if (!c.arena.locked || c.arena.locked_bytes > 8388608)
		_exit(11);
	for (int i = 0; i < n; i++) {
		kb_sha256(&i, sizeof(i), d);
		memset(dek, 0, sizeof(dek));
		memcpy(dek, &i, sizeof(i));
		if (kb_cache_put(&c, d, 0, "v1", dek, sizeof(dek), 60000, 0) == NULL)
			_exit(12);
	}
	if (c.count != n || c.evictions[KB_EVICT_LRU] != 0)
		_exit(13);
	for (int i = 0; i < n; i++) {
		kb_cache_entry *e;

		kb_sha256(&i, sizeof(i), d);
		e = kb_cache_get(&c, d, 1);
		if (e == NULL || e->deklen != 32 || memcmp(e->dek, &i, sizeof(i)) != 0)
			_exit(14);
	}
	kb_cache_destroy(&c);
	_exit(0);
}

static void cache_of_100000_entries_holds_100000_256_bit_deks_in_8_mib(void **state)
{
	expect_exit_0(in_child(fill_100000_under_8_mib));
}

static const struct CMUnitTest tests[] = {
	CASE(arena_alloc_gives_distinct_zeroed_slots_until_full),
	CASE(arena_free_zeroes_the_slot),
	CASE(arena_alloc_takes_the_smallest_class_that_holds_the_dek),
	CASE(arena_full_class_refuses_while_the_others_still_give),
	CASE(arena_free_zeroes_the_slot_in_every_class),
	CASE(arena_refuses_classes_out_of_order_or_empty),
	CASE(arena_free_of_null_is_a_no_op),
	CASE(arena_destroy_unmaps_everything),
	CASE(arena_write_to_the_leading_guard_page_is_fatal),
	CASE(arena_write_to_the_trailing_guard_page_is_fatal),
	CASE(arena_write_to_the_guard_page_between_two_classes_is_fatal),
	CASE(arena_damaged_canary_aborts_on_free),
	CASE(arena_canary_of_each_class_detects_an_overwrite),
	CASE(arena_free_of_a_pointer_that_is_no_slot_aborts),
	CASE(arena_refuses_to_start_unlocked_naming_rlimit_memlock_and_ulimit),
	CASE(arena_runs_unlocked_when_allowed),
	CASE_WITH(cache_get_after_put_returns_the_dek, cache_setup, cache_teardown),
	CASE_WITH(cache_entry_expires_exactly_at_its_ttl, cache_setup, cache_teardown),
	CASE_WITH(cache_over_capacity_drops_the_least_recently_used, cache_setup, cache_teardown),
	CASE_WITH(cache_lru_eviction_zeroes_the_dek, cache_setup, cache_teardown),
	CASE_WITH(cache_flush_zeroes_every_dek, cache_setup, cache_teardown),
	CASE_WITH(cache_flush_by_key_evicts_only_that_keys_entries, cache_setup, cache_teardown),
	CASE_WITH(cache_put_of_the_same_blob_replaces_its_entry, cache_setup, cache_teardown),
	CASE_WITH(cache_sweep_evicts_only_expired_entries, cache_setup, cache_teardown),
	CASE_WITH(cache_eviction_counters_count_each_cause, cache_setup, cache_teardown),
	CASE_WITH(cache_refuses_a_dek_over_1024_bytes, cache_setup, cache_teardown),
	CASE_WITH(cache_survives_many_puts_gets_and_evictions, cache_setup, cache_teardown),
	CASE_WITH(cache_full_class_evicts_its_own_least_recently_used, cache_setup, cache_teardown),
	CASE_WITH(cache_over_capacity_evicts_the_oldest_entry_of_any_class, cache_setup, cache_teardown),
	CASE(cache_of_100000_entries_holds_100000_256_bit_deks_in_8_mib),
};

CASES_MAIN("arena", tests, NULL, NULL)
