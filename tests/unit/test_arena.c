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
#include "unit.h"

static const uint8_t zero[KB_SECRET_MAX];

static void arena_new(kb_arena *a, size_t nslots, size_t slot_bytes)
{
	kb_err err = { 0 };

	if (kb_arena_init(a, nslots, slot_bytes, false, &err) != KB_OK)
		fail_msg("kb_arena_init: %s", err.msg);
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
	assert_int_equal(a.locked_bytes, kb_arena_bytes_needed(8, 100));
	for (int i = 0; i < 8; i++) {
		p[i] = kb_arena_alloc(&a);
		assert_non_null(p[i]);
		assert_memory_equal(p[i], zero, 100);
		memset(p[i], 0x5a, 100);
		for (int j = 0; j < i; j++)
			assert_true(p[i] >= p[j] + 100 || p[j] >= p[i] + 100);
	}
	assert_null(kb_arena_alloc(&a));
	/* writing a whole slot left every other slot's bytes and canary intact */
	for (int i = 0; i < 8; i++)
		kb_arena_free(&a, p[i]);
	assert_non_null(kb_arena_alloc(&a));
	kb_arena_destroy(&a);
}

static void arena_free_zeroes_the_slot(void **state)
{
	kb_arena a;
	uint8_t *p, *q;

	arena_new(&a, 4, KB_SECRET_MAX);
	p = kb_arena_alloc(&a);
	q = kb_arena_alloc(&a);
	memset(p, 0xa5, KB_SECRET_MAX);
	memset(q, 0x3c, KB_SECRET_MAX);
	kb_arena_free(&a, p);
	assert_memory_equal(p, zero, KB_SECRET_MAX);
	/* the neighbour is untouched */
	for (size_t i = 0; i < KB_SECRET_MAX; i++)
		assert_int_equal(q[i], 0x3c);
	/* and a slot handed out again comes zeroed */
	assert_ptr_equal(kb_arena_alloc(&a), p);
	kb_arena_free(&a, q);
	assert_memory_equal(q, zero, KB_SECRET_MAX);
	kb_arena_destroy(&a);
}

static void arena_free_of_null_is_a_no_op(void **state)
{
	kb_arena a;

	arena_new(&a, 2, 64);
	kb_arena_free(&a, NULL);
	assert_int_equal(a.nfree, 2);
	kb_arena_destroy(&a);
}

static void arena_destroy_unmaps_everything(void **state)
{
	kb_arena a;
	uint8_t *slots;
	size_t len;
	unsigned char vec[64];

	arena_new(&a, 4, 64);
	slots = a.slots;
	len = kb_arena_bytes_needed(4, 64);
	memset(kb_arena_alloc(&a), 0x77, 64);
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
	kb_err err;

	if (kb_arena_init(&a, 4, 64, true, &err) != KB_OK)
		_exit(3);
	((volatile uint8_t *)a.slots)[-1] = 1;
}

static void write_after_last_page(void)
{
	kb_arena a;
	kb_err err;

	if (kb_arena_init(&a, 4, 64, true, &err) != KB_OK)
		_exit(3);
	((volatile uint8_t *)a.slots)[kb_arena_bytes_needed(4, 64)] = 1;
}

static void arena_write_to_the_leading_guard_page_is_fatal(void **state)
{
	expect_signal(in_child(write_before_first_slot), SIGSEGV);
}

static void arena_write_to_the_trailing_guard_page_is_fatal(void **state)
{
	expect_signal(in_child(write_after_last_page), SIGSEGV);
}

static void damage_canary_and_free(void)
{
	kb_arena a;
	kb_err err;
	uint8_t *p;

	if (kb_arena_init(&a, 4, 64, true, &err) != KB_OK)
		_exit(3);
	kb_arena_alloc(&a);
	p = kb_arena_alloc(&a);
	memset(p - 8, 0, 8);
	kb_arena_free(&a, p);
}

static void overrun_into_next_slot_and_free_it(void)
{
	kb_arena a;
	kb_err err;
	uint8_t *p, *q;

	if (kb_arena_init(&a, 4, 64, true, &err) != KB_OK)
		_exit(3);
	p = kb_arena_alloc(&a);
	q = kb_arena_alloc(&a);
	if (q < p) {
		uint8_t *t = p;
		p = q;
		q = t;
	}
	/* a write past the end of the lower slot reaches the next one's canary */
	memset(p, 0x41, (size_t)(q - p));
	kb_arena_free(&a, q);
}

static void free_foreign_pointer(void)
{
	kb_arena a;
	kb_err err;

	if (kb_arena_init(&a, 4, 64, true, &err) != KB_OK)
		_exit(3);
	kb_arena_free(&a, kb_arena_alloc(&a) + 1);
}

static void arena_damaged_canary_aborts_on_free(void **state)
{
	expect_signal(in_child(damage_canary_and_free), SIGABRT);
	expect_signal(in_child(overrun_into_next_slot_and_free_it), SIGABRT);
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
	rc = kb_arena_init(&a, 16, KB_SECRET_MAX, allow_unlocked, &err);
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
	memset(kb_arena_alloc(&a), 1, KB_SECRET_MAX);
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
	assert_memory_equal(dek, zero, KB_SECRET_MAX);
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
	assert_memory_equal(dek + 3, zero, KB_SECRET_MAX - 3);
}

static void cache_flush_zeroes_every_dek(void **state)
{
	uint8_t *deks[4];

	for (int n = 0; n < 4; n++)
		deks[n] = put(n, n % 2, 60000, 0)->dek;
	assert_int_equal(kb_cache_flush(&cache, -1), 4);
	assert_int_equal(cache.count, 0);
	for (int n = 0; n < 4; n++)
		assert_memory_equal(deks[n], zero, KB_SECRET_MAX);
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
	assert_memory_equal(deks[1], zero, KB_SECRET_MAX);
	assert_memory_equal(deks[3], zero, KB_SECRET_MAX);
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
	assert_memory_equal(dek1, zero, KB_SECRET_MAX);
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

#define C(f) cmocka_unit_test_setup_teardown(f, cache_setup, cache_teardown)
static const struct CMUnitTest tests[] = {
	cmocka_unit_test(arena_alloc_gives_distinct_zeroed_slots_until_full),
	cmocka_unit_test(arena_free_zeroes_the_slot),
	cmocka_unit_test(arena_free_of_null_is_a_no_op),
	cmocka_unit_test(arena_destroy_unmaps_everything),
	cmocka_unit_test(arena_write_to_the_leading_guard_page_is_fatal),
	cmocka_unit_test(arena_write_to_the_trailing_guard_page_is_fatal),
	cmocka_unit_test(arena_damaged_canary_aborts_on_free),
	cmocka_unit_test(arena_free_of_a_pointer_that_is_no_slot_aborts),
	cmocka_unit_test(arena_refuses_to_start_unlocked_naming_rlimit_memlock_and_ulimit),
	cmocka_unit_test(arena_runs_unlocked_when_allowed),
	C(cache_get_after_put_returns_the_dek),
	C(cache_entry_expires_exactly_at_its_ttl),
	C(cache_over_capacity_drops_the_least_recently_used),
	C(cache_lru_eviction_zeroes_the_dek),
	C(cache_flush_zeroes_every_dek),
	C(cache_flush_by_key_evicts_only_that_keys_entries),
	C(cache_put_of_the_same_blob_replaces_its_entry),
	C(cache_sweep_evicts_only_expired_entries),
	C(cache_eviction_counters_count_each_cause),
	C(cache_refuses_a_dek_over_1024_bytes),
	C(cache_survives_many_puts_gets_and_evictions),
};

UNIT_MAIN("arena", tests)
