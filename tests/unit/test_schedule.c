/*
 * test_schedule: the CPU budget read from a cgroup's cpu.max (files written
 * here, as the kernel writes them), the spin and poll predicates, a worker's
 * spells; and the loop's own calls: made only for a short call on an idle
 * broker serving one connection, handed back to the workers for a while
 * once a second connection speaks (broker/schedule.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "schedule.h"
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
	kb_loopcall_note(&lc, &a, t + KB_SCHED_QUIET_US);
	assert_false(kb_loopcall_ok(&lc, t + KB_SCHED_QUIET_US, 60, 1000, true));
	/* once only one has spoken for QUIET_US, the loop may call again */
	t += 2 * KB_SCHED_QUIET_US + 10;
	kb_loopcall_note(&lc, &a, t);
	assert_true(kb_loopcall_ok(&lc, t, 60, 1000, true));
}

static void loopcall_loop_stays_awake_only_briefly_after_a_call(void **state)
{
	kb_loopcall lc = { 0 };

	assert_false(kb_loopcall_awake(&lc, 5000));
	lc.ran_at_us = 5000;
	assert_true(kb_loopcall_awake(&lc, 5000 + KB_SCHED_ROUND_TRIP_US - 1));
	assert_false(kb_loopcall_awake(&lc, 5000 + KB_SCHED_ROUND_TRIP_US));
}

static void loopcall_average_follows_calls_without_jumping_on_one(void **state)
{
	int64_t avg = kb_sched_avg(0, 50);

	assert_int_equal(avg, 50);
	for (int i = 0; i < 8; i++)
		avg = kb_sched_avg(avg, 50);
	/* one 20 ms stall moves the average by an eighth, not to 20 ms */
	avg = kb_sched_avg(avg, 20000);
	assert_true(avg > 2000 && avg < 3000);
	/* a token that turns slow for good is noticed within a few dozen calls */
	for (int i = 0; i < 40; i++)
		avg = kb_sched_avg(avg, 20000);
	assert_true(avg > 19000);
	assert_int_equal(kb_sched_avg(0, 0), 1);
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
	t += KB_SCHED_QUIET_US + 20;
	assert_true(kb_loopcall_expect(&lc, t, 600, 2000, false));
	assert_false(lc.wait_pool);
}


/* write_file writes text to dir/name, making dir's folders as needed */
static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512], cmd[600];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

static void temp_dir(char *out, size_t cap)
{
	snprintf(out, cap, "%s/kbsched-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(out));
}

static void remove_dir(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void sched_cpu_max_gives_whole_cpus_and_max_is_no_limit(void **state)
{
	char dir[256], path[300];

	temp_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/cpu.max", dir);
	write_file(dir, "cpu.max", "max 100000\n");
	assert_int_equal(kb_sched_cpu_max_cpus(path), 0);
	write_file(dir, "cpu.max", "100000 100000\n");
	assert_int_equal(kb_sched_cpu_max_cpus(path), 1);
	write_file(dir, "cpu.max", "250000 100000\n");  /* 2.5 CPUs: 2 whole ones */
	assert_int_equal(kb_sched_cpu_max_cpus(path), 2);
	write_file(dir, "cpu.max", "50000 100000\n");   /* half a CPU is still one to run on */
	assert_int_equal(kb_sched_cpu_max_cpus(path), 1);
	write_file(dir, "cpu.max", "garbage\n");
	assert_int_equal(kb_sched_cpu_max_cpus(path), 0);
	write_file(dir, "cpu.max", "100000 0\n");
	assert_int_equal(kb_sched_cpu_max_cpus(path), 0);
	assert_int_equal(kb_sched_cpu_max_cpus("/nonexistent/cpu.max"), 0);
	remove_dir(dir);
}

static void sched_cgroup_limit_is_the_tightest_of_the_cgroup_and_its_parents(void **state)
{
	char dir[256], root[300], pod[400], ctr[500], proc[300];

	temp_dir(dir, sizeof(dir));
	snprintf(root, sizeof(root), "%s/sys", dir);
	snprintf(pod, sizeof(pod), "%s/kubepods/pod1", root);
	snprintf(ctr, sizeof(ctr), "%s/ctr", pod);
	snprintf(proc, sizeof(proc), "%s/proc-cgroup", dir);
	/* a pod limited to 1 CPU on a big node, its container unlimited */
	write_file(root, "cpu.max", "max 100000\n");
	write_file(pod, "cpu.max", "100000 100000\n");
	write_file(ctr, "cpu.max", "max 100000\n");
	write_file(dir, "proc-cgroup", "0::/kubepods/pod1/ctr\n");
	assert_int_equal(kb_sched_cgroup_cpus(proc, root), 1);
	/* the container's own limit, tighter than the pod's 3 */
	write_file(pod, "cpu.max", "300000 100000\n");
	write_file(ctr, "cpu.max", "200000 100000\n");
	assert_int_equal(kb_sched_cgroup_cpus(proc, root), 2);
	/* cgroup v1 only (no "0::" line), or no limit anywhere: none */
	write_file(dir, "proc-cgroup", "4:cpu,cpuacct:/x\n");
	assert_int_equal(kb_sched_cgroup_cpus(proc, root), 0);
	write_file(dir, "proc-cgroup", "0::/\n");
	assert_int_equal(kb_sched_cgroup_cpus(proc, root), 0);
	remove_dir(dir);
}

static void sched_budget_is_the_affinity_cut_to_a_fake_cpu_max(void **state)
{
	char dir[256], path[300];
	int aff = kb_sched_affinity_cpus();

	assert_true(aff >= 1);
	temp_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/cpu.max", dir);
	write_file(dir, "cpu.max", "100000 100000\n");
	setenv("KB_SCHED_CPU_MAX", path, 1);
	assert_int_equal(kb_sched_cpu_budget(), 1);
	write_file(dir, "cpu.max", "6400000 100000\n"); /* 64 CPUs: the affinity mask is fewer */
	assert_int_equal(kb_sched_cpu_budget(), aff < 64 ? aff : 64);
	write_file(dir, "cpu.max", "max 100000\n");
	assert_int_equal(kb_sched_cpu_budget(), aff);
	unsetenv("KB_SCHED_CPU_MAX");
	remove_dir(dir);
}

static void sched_spinning_needs_a_cpu_beside_the_loop_and_the_busy(void **state)
{
	kb_sched s = { .cpus = 2 };

	/* 1 CPU: the loop has it; nobody spins, and the loop does not poll for its client */
	assert_false(kb_sched_spare_cpu(1, 0));
	assert_false(kb_sched_loop_fits(1, 0));
	/* 2 CPUs: one spinner beside the loop, not two */
	assert_true(kb_sched_spare_cpu(2, 0));
	assert_false(kb_sched_spare_cpu(2, 1));
	/* the loop may poll for its waiting client's job while the one worker runs it */
	assert_true(kb_sched_loop_fits(2, 1));
	assert_false(kb_sched_loop_fits(2, 2));
	/* the live numbers: a spinning worker counts itself as busy, and leaves no CPU to the loop */
	kb_sched_busy(&s, 1);
	assert_true(kb_sched_spare(&s, true));
	assert_false(kb_sched_spare(&s, false));
	kb_sched_busy(&s, 1);
	assert_false(kb_sched_spare(&s, true));
	kb_sched_busy(&s, -2);
	assert_int_equal(s.busy, 0);
}

static void sched_spells_halve_when_no_job_comes_and_restore_when_one_does(void **state)
{
	int64_t spell = KB_SCHED_ROUND_TRIP_US;

	for (int i = 0; i < 10; i++)
		spell = kb_sched_next_spell(spell, 10000);
	assert_int_equal(spell, KB_SCHED_SPELL_MIN_US);
	/* a job within a full spell of its start restores it, though this spell ran out earlier */
	assert_int_equal(kb_sched_next_spell(spell, KB_SCHED_ROUND_TRIP_US), KB_SCHED_ROUND_TRIP_US);
	assert_int_equal(kb_sched_next_spell(KB_SCHED_ROUND_TRIP_US, KB_SCHED_ROUND_TRIP_US + 1),
			 KB_SCHED_ROUND_TRIP_US / 2);
}

static const struct CMUnitTest tests[] = {
	CASE(sched_cpu_max_gives_whole_cpus_and_max_is_no_limit, "schedule - cpu.max gives whole CPUs, max is no limit"),
	CASE(sched_cgroup_limit_is_the_tightest_of_the_cgroup_and_its_parents, "schedule - the cgroup limit is the tightest of the cgroup and its parents"),
	CASE(sched_budget_is_the_affinity_cut_to_a_fake_cpu_max, "schedule - the CPU budget is the affinity mask cut to cpu.max"),
	CASE(sched_spinning_needs_a_cpu_beside_the_loop_and_the_busy, "schedule - spinning needs a CPU beside the loop and the busy threads"),
	CASE(sched_spells_halve_when_no_job_comes_and_restore_when_one_does, "schedule - spells halve when no job comes and restore when one does"),
	CASE(loopcall_short_call_of_one_client_runs_on_the_loop, "loopcall - a short call of one client runs on the loop"),
	CASE(loopcall_each_condition_alone_keeps_the_call_off_the_loop, "loopcall - each condition alone keeps the call off the loop"),
	CASE(loopcall_a_second_connection_sends_calls_to_the_workers_for_a_while, "loopcall - a second connection sends calls to the workers for a while"),
	CASE(loopcall_loop_stays_awake_only_briefly_after_a_call, "loopcall - the loop stays awake only briefly after a call"),
	CASE(loopcall_loop_waits_awake_for_one_clients_short_job_only, "loopcall - the loop waits awake only for its one client's short job"),
	CASE(loopcall_average_follows_calls_without_jumping_on_one, "loopcall - the average follows calls without jumping on one"),
};

CASES_MAIN("sched", tests, NULL, NULL)
