/*
 * test_loopcall: the loop makes a call itself only for a short call on an
 * idle broker serving one connection, and hands calls back to the workers
 * for a while once a second connection speaks (broker/loopcall.h).
 */
#include <stdbool.h>

#include "loopcall.h"
#include "unit.h"

static const int a = 1, b = 2; /* two connections: only their addresses matter */

static void loopcall_short_call_of_one_client_runs_on_the_loop(void **state)
{
	kb_loopcall lc = { 0 };

	kb_loopcall_note(&lc, &a, 1000);
	lc.turn_ok = true;
	assert_true(kb_loopcall_ok(&lc, 1000, 60, 1000, true));
	kb_loopcall_note(&lc, &a, 1200);
	assert_true(kb_loopcall_ok(&lc, 1200, 600, 1000, true));
}

static void loopcall_each_condition_alone_keeps_the_call_off_the_loop(void **state)
{
	kb_loopcall lc = { 0 };

	kb_loopcall_note(&lc, &a, 1000);
	lc.turn_ok = true;
	assert_false(kb_loopcall_ok(&lc, 1000, 60, 1000, false));  /* a job is with the workers */
	assert_false(kb_loopcall_ok(&lc, 1000, 0, 1000, true));    /* never measured */
	assert_false(kb_loopcall_ok(&lc, 1000, 1001, 1000, true)); /* too long on average */
	assert_false(kb_loopcall_ok(&lc, 1000, 60, 0, true));      /* loop_call_max = 0 */
	lc.turn_ok = false;                                        /* more to do this turn */
	assert_false(kb_loopcall_ok(&lc, 1000, 60, 1000, true));
}

static void loopcall_a_second_connection_sends_calls_to_the_workers_for_a_while(void **state)
{
	kb_loopcall lc = { 0 };
	int64_t t = 1000;

	kb_loopcall_note(&lc, &a, t);
	kb_loopcall_note(&lc, &b, t + 10);
	lc.turn_ok = true;
	assert_false(kb_loopcall_ok(&lc, t + 10, 60, 1000, true));
	/* still quiet-listed while the two keep taking turns */
	kb_loopcall_note(&lc, &a, t + KB_LOOPCALL_QUIET_US);
	assert_false(kb_loopcall_ok(&lc, t + KB_LOOPCALL_QUIET_US, 60, 1000, true));
	/* once only one has spoken for QUIET_US, the loop may call again */
	t += 2 * KB_LOOPCALL_QUIET_US + 10;
	kb_loopcall_note(&lc, &a, t);
	assert_true(kb_loopcall_ok(&lc, t, 60, 1000, true));
}

static void loopcall_loop_stays_awake_only_briefly_after_a_call(void **state)
{
	kb_loopcall lc = { 0 };

	assert_false(kb_loopcall_awake(&lc, 5000));
	lc.ran_at_us = 5000;
	assert_true(kb_loopcall_awake(&lc, 5000 + KB_LOOPCALL_AWAKE_US - 1));
	assert_false(kb_loopcall_awake(&lc, 5000 + KB_LOOPCALL_AWAKE_US));
}

static void loopcall_average_follows_calls_without_jumping_on_one(void **state)
{
	int64_t avg = kb_loopcall_avg(0, 50);

	assert_int_equal(avg, 50);
	for (int i = 0; i < 8; i++)
		avg = kb_loopcall_avg(avg, 50);
	/* one 20 ms stall moves the average by an eighth, not to 20 ms */
	avg = kb_loopcall_avg(avg, 20000);
	assert_true(avg > 2000 && avg < 3000);
	/* a token that turns slow for good is noticed within a few dozen calls */
	for (int i = 0; i < 40; i++)
		avg = kb_loopcall_avg(avg, 20000);
	assert_true(avg > 19000);
	assert_int_equal(kb_loopcall_avg(0, 0), 1);
}

static void loopcall_loop_waits_awake_for_one_clients_short_job_only(void **state)
{
	kb_loopcall lc = { 0 };
	int64_t t = 1000;

	/* no client spoke yet, or the call was never measured: no wait */
	assert_false(kb_loopcall_expect(&lc, t, 600, 2000, true));
	kb_loopcall_note(&lc, &a, t);
	assert_false(kb_loopcall_expect(&lc, t, 0, 2000, true));
	assert_false(kb_loopcall_waiting(&lc, t));

	/* a 600 us call of the one client: awake until a quarter and 50 us past its average */
	assert_true(kb_loopcall_expect(&lc, t, 600, 2000, true));
	assert_true(lc.wait_pool);
	assert_true(kb_loopcall_waiting(&lc, t + 799));
	assert_false(kb_loopcall_waiting(&lc, t + 800));

	/* a call longer than loop_wait_max is slept through, and clears the last wait */
	assert_false(kb_loopcall_expect(&lc, t, 2001, 2000, false));
	assert_false(kb_loopcall_waiting(&lc, t));
	assert_true(kb_loopcall_expect(&lc, t, 2000, 2000, false));
	assert_false(kb_loopcall_expect(&lc, t, 600, 0, false)); /* loop_wait_max = 0 */
	assert_false(kb_loopcall_waiting(&lc, t));

	/* a second connection speaking: its CPU is not free, so no wait */
	kb_loopcall_note(&lc, &b, t + 10);
	assert_false(kb_loopcall_expect(&lc, t + 10, 600, 2000, false));
	assert_false(kb_loopcall_waiting(&lc, t + 10));
	t += KB_LOOPCALL_QUIET_US + 20;
	assert_true(kb_loopcall_expect(&lc, t, 600, 2000, false));
	assert_false(lc.wait_pool);
}

static const struct CMUnitTest tests[] = {
	CASE(loopcall_short_call_of_one_client_runs_on_the_loop, "loopcall - a short call of one client runs on the loop"),
	CASE(loopcall_each_condition_alone_keeps_the_call_off_the_loop, "loopcall - each condition alone keeps the call off the loop"),
	CASE(loopcall_a_second_connection_sends_calls_to_the_workers_for_a_while, "loopcall - a second connection sends calls to the workers for a while"),
	CASE(loopcall_loop_stays_awake_only_briefly_after_a_call, "loopcall - the loop stays awake only briefly after a call"),
	CASE(loopcall_loop_waits_awake_for_one_clients_short_job_only, "loopcall - the loop waits awake only for its one client's short job"),
	CASE(loopcall_average_follows_calls_without_jumping_on_one, "loopcall - the average follows calls without jumping on one"),
};

CASES_MAIN("loopcall", tests, NULL, NULL)
