/*
 * test_looptoken: the loop token lets one thread at a time touch loop state,
 * and kb_loop_assert_owner() aborts a thread that touches it without the
 * token while a loop serves (broker/looptoken.h). The asserts are live in
 * every build but release (b_ndebug=if-release), the test builds among them.
 */
#include <pthread.h>
#include <stdbool.h>

#include "looptoken.h"
#include "unit.h"

static kb_loop_token token;
static bool got;

static void *guest(void *arg)
{
	(void)arg;
	got = kb_loop_token_try(&token);
	if (got) {
		kb_loop_assert_owner();
		kb_loop_token_give(&token);
	}
	return NULL;
}

static void *stranger(void *arg)
{
	(void)arg;
	kb_loop_assert_owner(); /* no token: aborts the process */
	return NULL;
}

static void run_thread(void *(*fn)(void *))
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, fn, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static void looptoken_guest_takes_it_only_while_the_loop_sleeps(void **state)
{
	kb_loop_assert_owner(); /* no loop serves yet: any thread may */
	kb_loop_token_enter(&token);
	kb_loop_assert_owner();
	run_thread(guest);
	assert_false(got); /* the loop works: the guest hands its work over */
	kb_loop_token_sleep(&token);
	assert_false(kb_loop_token_held());
	run_thread(guest);
	assert_true(got);
	kb_loop_token_wake(&token);
	assert_true(kb_loop_token_held());
	kb_loop_token_leave(&token);
	run_thread(guest);
	assert_false(got); /* the loop stopped serving */
}

static void serve_and_let_a_stranger_in(void)
{
	kb_loop_token_enter(&token);
	run_thread(stranger);
}

static void looptoken_a_thread_without_it_aborts_while_the_loop_serves(void **state)
{
	int status = unit_in_child(serve_and_let_a_stranger_in);

	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

static const struct CMUnitTest tests[] = {
	CASE(looptoken_guest_takes_it_only_while_the_loop_sleeps, "looptoken - a guest takes it only while the loop sleeps"),
	CASE(looptoken_a_thread_without_it_aborts_while_the_loop_serves, "looptoken - a thread without it aborts when it touches loop state while the loop serves"),
};

CASES_MAIN("looptoken", tests, NULL, NULL)
