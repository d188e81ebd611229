/*
 * test_arena: the locked region that holds DEK bytes (the cache on top of it
 * is tests/unit/test_cache.c).
 *
 * Zeroing is checked by reading through the pointer that held the DEK: arena
 * slots stay mapped after they are freed. Fatal checks (guard pages, canary)
 * run in a forked child; the arena is MADV_DONTFORK, so the child makes its own.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
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
	expect_signal(unit_in_child(write_before_first_slot), SIGSEGV);
}

static void arena_write_to_the_trailing_guard_page_is_fatal(void **state)
{
	expect_signal(unit_in_child(write_after_last_page), SIGSEGV);
}

static void arena_write_to_the_guard_page_between_two_classes_is_fatal(void **state)
{
	expect_signal(unit_in_child(write_past_the_small_class), SIGSEGV);
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
	expect_signal(unit_in_child(damage_canary_and_free), SIGABRT);
	expect_signal(unit_in_child(overrun_into_next_slot_and_free_it), SIGABRT);
}

static void arena_canary_of_each_class_detects_an_overwrite(void **state)
{
	expect_signal(unit_in_child(overrun_a_32_byte_slot_by_one_byte), SIGABRT);
	expect_signal(unit_in_child(overrun_in_the_32_byte_class), SIGABRT);
	expect_signal(unit_in_child(overrun_in_the_64_byte_class), SIGABRT);
}

static void arena_free_of_a_pointer_that_is_no_slot_aborts(void **state)
{
	expect_signal(unit_in_child(free_foreign_pointer), SIGABRT);
}

static void lock_under_zero_memlock(bool allow_unlocked)
{
	struct rlimit zero_lim = { 0, 0 };
	kb_arena a;
	kb_err err = { 0 };
	kb_code rc;

	unit_lose_ipc_lock();
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

static void arena_refuses_to_start_unlocked_naming_rlimit_memlock_and_ulimit(void **state)
{
	unit_expect_exit_0(unit_in_child(refuse_unlocked));
}

static void arena_runs_unlocked_when_allowed(void **state)
{
	unit_expect_exit_0(unit_in_child(allow_unlocked));
}

static const struct CMUnitTest tests[] = {
	CASE(arena_alloc_gives_distinct_zeroed_slots_until_full, "arena - alloc gives distinct zeroed slots until full"),
	CASE(arena_free_zeroes_the_slot, "arena - free zeroes the slot"),
	CASE(arena_alloc_takes_the_smallest_class_that_holds_the_dek, "arena - alloc takes the smallest class that holds the DEK"),
	CASE(arena_full_class_refuses_while_the_others_still_give, "arena - full class refuses while the others still give"),
	CASE(arena_free_zeroes_the_slot_in_every_class, "arena - free zeroes the slot in every class"),
	CASE(arena_refuses_classes_out_of_order_or_empty, "arena - refuses classes out of order or empty"),
	CASE(arena_free_of_null_is_a_no_op, "arena - freeing NULL is a no-op"),
	CASE(arena_destroy_unmaps_everything, "arena - destroy unmaps everything"),
	CASE(arena_write_to_the_leading_guard_page_is_fatal, "arena - write to the leading guard page is fatal"),
	CASE(arena_write_to_the_trailing_guard_page_is_fatal, "arena - write to the trailing guard page is fatal"),
	CASE(arena_write_to_the_guard_page_between_two_classes_is_fatal, "arena - write to the guard page between two classes is fatal"),
	CASE(arena_damaged_canary_aborts_on_free, "arena - damaged canary aborts on free"),
	CASE(arena_canary_of_each_class_detects_an_overwrite, "arena - canary of each class detects an overwrite"),
	CASE(arena_free_of_a_pointer_that_is_no_slot_aborts, "arena - free of a pointer that is no slot aborts"),
	CASE(arena_refuses_to_start_unlocked_naming_rlimit_memlock_and_ulimit, "arena - refuses to start unlocked naming RLIMIT_MEMLOCK and ulimit"),
	CASE(arena_runs_unlocked_when_allowed, "arena - runs unlocked when allowed"),
};

CASES_MAIN("arena", tests, NULL, NULL)
