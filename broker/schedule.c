/*
 * schedule.c: the CPU budget and the spin, poll and awake rules (schedule.h).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schedule.h"

int kb_sched_affinity_cpus(void)
{
	cpu_set_t set;
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	return online > 0 ? (int)online : 1;
}

int kb_sched_cpu_max_cpus(const char *path)
{
	char text[64];
	long long quota, period;
	size_t n;
	FILE *f = fopen(path, "re");

	if (f == NULL)
		return 0;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	/* "max 100000" is no limit; a period of 0 or a quota below 0 is nothing we know */
	if (sscanf(text, "%lld %lld", &quota, &period) != 2 || quota <= 0 || period <= 0)
		return 0;
	return quota < period ? 1 : (int)(quota / period);
}

int kb_sched_cgroup_cpus(const char *proc_cgroup, const char *root)
{
	char line[4096], path[4096 + 64];
	int best = 0;
	FILE *f = fopen(proc_cgroup, "re");
	char *cg = NULL;

	if (f == NULL)
		return 0;
	/* cgroup v2 has the one line "0::/path" */
	while (cg == NULL && fgets(line, sizeof(line), f))
		if (strncmp(line, "0::", 3) == 0)
			cg = line + 3;
	fclose(f);
	if (cg == NULL)
		return 0;
	cg[strcspn(cg, "\n")] = '\0';
	/* each ancestor's limit holds too: the tightest wins */
	for (;;) {
		int n;
		char *slash;

		snprintf(path, sizeof(path), "%s%s/cpu.max", root, strcmp(cg, "/") ? cg : "");
		n = kb_sched_cpu_max_cpus(path);
		if (n > 0 && (best == 0 || n < best))
			best = n;
		if ((slash = strrchr(cg, '/')) == NULL || slash == cg)
			break;
		*slash = '\0';
	}
	return best;
}

int kb_sched_cpu_budget(void)
{
	int cpus = kb_sched_affinity_cpus(), quota;
#ifndef NDEBUG
	const char *fake = getenv("KB_SCHED_CPU_MAX");

	if (fake != NULL && fake[0] != '\0')
		quota = kb_sched_cpu_max_cpus(fake);
	else
#endif
		quota = kb_sched_cgroup_cpus("/proc/self/cgroup", "/sys/fs/cgroup");
	if (quota > 0 && quota < cpus)
		cpus = quota;
	return cpus > 0 ? cpus : 1;
}

bool kb_sched_spare_cpu(int cpus, int busy)
{
	/* the loop holds one CPU, each busy worker one */
	return busy + 1 < cpus;
}

bool kb_sched_loop_fits(int cpus, int busy)
{
	return cpus > 1 && busy < cpus;
}

int64_t kb_sched_next_spell(int64_t spell_us, int64_t waited_us)
{
	/*
	 * A job that came within a full spell of its start, caught or not,
	 * restores full spells: else a client back in 40 us would never meet an
	 * 18 us spell again. One that did not come halves the next.
	 */
	if (waited_us <= KB_SCHED_ROUND_TRIP_US)
		return KB_SCHED_ROUND_TRIP_US;
	return spell_us > KB_SCHED_SPELL_MIN_US ? spell_us / 2 : spell_us;
}

int64_t kb_sched_avg(int64_t avg, int64_t us)
{
	if (us <= 0)
		us = 1;
	return avg <= 0 ? us : avg + (us - avg) / KB_SCHED_AVG_CALLS;
}

int64_t kb_sched_wait_deadline(int64_t now_us, int64_t avg_us)
{
	return now_us + avg_us + avg_us / KB_SCHED_LATE_DIV + KB_SCHED_LATE_US;
}

void kb_sched_init(kb_sched *s)
{
	s->cpus = kb_sched_cpu_budget();
	s->busy = 0;
}

void kb_sched_busy(kb_sched *s, int delta)
{
	__atomic_add_fetch(&s->busy, delta, __ATOMIC_RELAXED);
}

bool kb_sched_spare(const kb_sched *s, bool counted)
{
	return kb_sched_spare_cpu(s->cpus, __atomic_load_n(&s->busy, __ATOMIC_RELAXED) - (counted ? 1 : 0));
}

bool kb_sched_fits(const kb_sched *s)
{
	return kb_sched_loop_fits(s->cpus, __atomic_load_n(&s->busy, __ATOMIC_RELAXED));
}

void kb_loopcall_note(kb_loopcall *lc, const void *conn, int64_t now_us)
{
	if (lc->last_conn != NULL && conn != lc->last_conn)
		lc->quiet_until_us = now_us + KB_SCHED_QUIET_US;
	lc->last_conn = conn;
}

bool kb_loopcall_ok(const kb_loopcall *lc, int64_t now_us, int64_t avg_us, int64_t max_us, bool pool_idle)
{
	return lc->turn_ok && pool_idle && max_us > 0 && avg_us > 0 && avg_us <= max_us &&
	       now_us >= lc->quiet_until_us;
}

bool kb_loopcall_awake(const kb_loopcall *lc, int64_t now_us)
{
	return lc->ran_at_us != 0 && now_us - lc->ran_at_us < KB_SCHED_ROUND_TRIP_US;
}

bool kb_loopcall_expect(kb_loopcall *lc, int64_t now_us, int64_t avg_us, int64_t max_us, bool pool)
{
	lc->wait_until_us = 0;
	if (lc->last_conn == NULL || now_us < lc->quiet_until_us || avg_us <= 0 || avg_us > max_us)
		return false;
	lc->wait_until_us = kb_sched_wait_deadline(now_us, avg_us);
	lc->wait_pool = pool;
	return true;
}

bool kb_loopcall_waiting(const kb_loopcall *lc, int64_t now_us)
{
	return lc->wait_until_us != 0 && now_us < lc->wait_until_us;
}
