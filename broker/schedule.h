/*
 * schedule.h: every rule for when a thread of keybrokerd spins, polls or stays
 * awake instead of sleeping, and the CPU budget those rules spend.
 *
 * Sleeping costs a futex wake-up and, on a VM, a halted vCPU that comes
 * back 30-50 us late; spinning costs a CPU that another thread may need. So
 * each rule spins only while the CPU budget (the CPUs this process may run
 * on and its cgroup's cpu.max, whichever is fewer) has a CPU left beside
 * the threads doing real work: the loop and the workers in a backend call.
 * The constants below are each named once, with the measurement they come
 * from (docs/BENCHMARKS.md, "Done"). The predicates are pure functions of
 * the numbers they are given, so tests/unit/test_schedule.c checks them alone.
 *
 * The loop's own-call and wait-awake rules (loop_call_max, loop_wait_max)
 * stay options: a token behind a network (p11-kit remoting, a network HSM)
 * must never hold the loop, and an operator of a shared host may not want
 * the loop to spend a CPU polling for a lone client; the daemon cannot tell
 * either from inside.
 */
#ifndef KB_SCHED_H
#define KB_SCHED_H

#include <stdbool.h>
#include <stdint.h>

/*
 * KB_SCHED_ROUND_TRIP_US: a client that sends one request at a time is back
 * with the next within this (a cache hit's round trip is 40-100 us on the
 * reference VM). A worker polls its queue this long for the next job, and
 * the loop polls epoll this long after it answered, before either sleeps:
 * spinning a worker before it sleeps took the AES miss ratio from 1.73 to
 * 1.36 and RSA's from 1.186 to 1.157; staying awake after an Azure answer,
 * p50 462 against 491 us over 9 A/B pairs.
 */
#define KB_SCHED_ROUND_TRIP_US 150

/*
 * KB_SCHED_SPELL_MIN_US: a worker's spell that ran out halves the next,
 * down to this (an eighth), as glibc's adaptive mutex does: on a loaded
 * host the spin takes the client's CPU (AES miss p50 434 against 248 us
 * with and without spinning on 2 busy CPUs).
 */
#define KB_SCHED_SPELL_MIN_US (KB_SCHED_ROUND_TRIP_US / 8)

/*
 * KB_SCHED_TOKEN_HOLD_US: about the longest a worker holds the loop token to
 * answer its own job (a cache insert, an audit line and a send: 10-30 us);
 * the loop waits that long awake for the token before it sleeps on it.
 */
#define KB_SCHED_TOKEN_HOLD_US 50

/*
 * KB_SCHED_QUIET_US: how long a second connection's request keeps the
 * loop's own calls and awake waits off: two clients that take turns send
 * within a few milliseconds of each other (20 ms leaves no gap to misjudge).
 */
#define KB_SCHED_QUIET_US 20000

/*
 * KB_SCHED_LATE_US and KB_SCHED_LATE_DIV: a call the loop waits awake for
 * is given its key's average, a quarter more and 50 us (RSA-2048 in SoftHSM
 * spreads 570-650 us), then the loop sleeps.
 */
#define KB_SCHED_LATE_US 50
#define KB_SCHED_LATE_DIV 4

/*
 * KB_SCHED_AVG_CALLS: a key's call time is an exponential average over about
 * this many calls, so one slow call does not flip a choice, and a token that
 * turns slow flips it within one call.
 */
#define KB_SCHED_AVG_CALLS 8

/* the CPUs and the threads that use them: what every rule below reads */
typedef struct kb_sched {
	int cpus;   /* the budget: kb_sched_cpu_budget() */
	int busy;   /* workers in a backend call (atomic) */
} kb_sched;

/*
 * kb_sched_cpu_budget returns how many CPUs keybrokerd may use at once: the
 * CPUs of its affinity mask (taskset, systemd's CPUAffinity=), cut to its
 * cgroup's cpu.max quota (cgroup v2; a pod's CPU limit), at least 1. In
 * builds with asserts on, KB_SCHED_CPU_MAX names a file read instead of the
 * cgroup's cpu.max, for tests.
 */
int kb_sched_cpu_budget(void);

/*
 * kb_sched_affinity_cpus returns the number of CPUs in the calling thread's
 * affinity mask (the online CPUs if it cannot be read).
 */
int kb_sched_affinity_cpus(void);

/*
 * kb_sched_cpu_max_cpus returns the whole CPUs a cgroup v2 cpu.max file at
 * path allows ("QUOTA PERIOD": QUOTA/PERIOD, rounded down, at least 1), or
 * 0 when it sets no limit ("max ..."), cannot be read or makes no sense.
 */
int kb_sched_cpu_max_cpus(const char *path);

/*
 * kb_sched_cgroup_cpus returns the tightest cpu.max limit on the cgroup
 * named in the /proc/PID/cgroup text at proc_cgroup ("0::/a/b") and its
 * ancestors, under the cgroup v2 mount at root, or 0 for none.
 */
int kb_sched_cgroup_cpus(const char *proc_cgroup, const char *root);

/*
 * kb_sched_spare_cpu says whether a CPU is left over once the loop and
 * the busy workers have one each: only then may a thread spin or poll for
 * work that has not come yet (a worker for its next job, the loop for a
 * job in flight or a client coming back).
 */
bool kb_sched_spare_cpu(int cpus, int busy);

/*
 * kb_sched_loop_fits says whether the loop still has a CPU of its own
 * beside the busy workers, counting the CPU its one waiting client left
 * idle: only then may the loop poll for that client's answer.
 */
bool kb_sched_loop_fits(int cpus, int busy);

/*
 * kb_sched_next_spell returns a worker's next spin in microseconds after a
 * spell of spell_us in which its job came waited_us after the spell began
 * (the job may have come after the spell ran out).
 */
int64_t kb_sched_next_spell(int64_t spell_us, int64_t waited_us);

/* kb_sched_avg folds a call of us microseconds into a running average avg (0: none yet). */
int64_t kb_sched_avg(int64_t avg, int64_t us);

/* kb_sched_wait_deadline is when the loop stops polling for a call of average avg_us begun at now_us. */
int64_t kb_sched_wait_deadline(int64_t now_us, int64_t avg_us);

/* the live counters: kb_sched_init fills cpus from kb_sched_cpu_budget */
void kb_sched_init(kb_sched *s);
void kb_sched_busy(kb_sched *s, int delta);
/*
 * kb_sched_spare and kb_sched_fits: the predicates above on s's live
 * numbers; counted says the caller is itself one of s->busy (a spinning
 * worker), and so not one of the others it must leave a CPU to.
 */
bool kb_sched_spare(const kb_sched *s, bool counted);
bool kb_sched_fits(const kb_sched *s);

/*
 * ---- the loop's own calls and awake waits ----
 *
 * A PKCS#11 miss handed to a worker wakes one thread and leaves the loop's
 * CPU idle while the token works. On a VM an idle CPU costs more than the
 * wake-up: the next call on it runs 15-25 us slower (SoftHSM's AES unwrap,
 * 49 us back to back, takes 64-73 us after each short sleep; docs/BENCHMARKS.md).
 * So when the broker serves one client at a time, the loop makes a call it
 * has measured as short itself and then stays awake for the next request.
 *
 * It does so only while nothing else can be waiting for it: the call is an
 * unwrap for one request (not a batch item, not a refresh), the key's calls
 * have averaged at most loop_call_max, no job is with the workers, this line
 * is the only thing the loop has to do this turn, and no other connection
 * sent a request in the last KB_SCHED_QUIET_US. A broker with more than one client
 * busy therefore hands every call to the workers as before: the loop is
 * held up at most once, for one short call, before it notices.
 */
typedef struct kb_loopcall {
	const void *last_conn;  /* the connection of the last request line */
	int64_t quiet_until_us; /* another connection spoke lately: no loop calls before this */
	int64_t ran_at_us;      /* the end of the last loop call or answered Azure miss, or 0 */
	bool turn_ok;           /* the loop serves only this line this turn (set around kb_dispatch) */
	int64_t wait_until_us;  /* the one client's job out now is expected to end before this, or 0 */
	bool wait_pool;         /* that job is with the workers (else on the loop's own I/O) */
} kb_loopcall;

/* kb_loopcall_note records a request line from conn (the loop, before dispatching it). */
void kb_loopcall_note(kb_loopcall *lc, const void *conn, int64_t now_us);

/*
 * kb_loopcall_ok says whether the loop may make a call itself now: the
 * key's average call time is avg_us (0: never measured), the limit max_us
 * (0: never), and pool_idle whether no job is with the workers.
 */
bool kb_loopcall_ok(const kb_loopcall *lc, int64_t now_us, int64_t avg_us, int64_t max_us, bool pool_idle);

/*
 * kb_loopcall_awake says whether the loop should poll rather than sleep: a
 * loop call, or a miss of a backend that does not block (Azure), was just
 * answered, and a client that sends one request at a time will be back
 * within a round trip. Measured against akv-emulator at 0 ms, 9 A/B pairs:
 * p50 462 against 491 us at the median (docs/BENCHMARKS.md).
 */
bool kb_loopcall_awake(const kb_loopcall *lc, int64_t now_us);

/*
 * kb_loopcall_expect notes a job handed out (to a worker if pool) for the
 * loop's one client, on a key whose calls average avg_us. If the broker
 * serves that client alone and the call averages at most max_us (option
 * loop_wait_max; 0: never), the loop polls until it ends instead of
 * sleeping: the client's CPU is free while it waits, and a CPU that halts
 * for the call takes 30-50 us to wake for the answer on a VM, more than the
 * thread hand-offs (docs/BENCHMARKS.md). Returns whether it will.
 */
bool kb_loopcall_expect(kb_loopcall *lc, int64_t now_us, int64_t avg_us, int64_t max_us, bool pool);

/* kb_loopcall_waiting says whether the loop should still poll for the job kb_loopcall_expect noted. */
bool kb_loopcall_waiting(const kb_loopcall *lc, int64_t now_us);

#endif
