/*
 * loopcall.h: when the event loop makes a short blocking backend call itself.
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
 * sent a request in the last QUIET_US. A broker with more than one client
 * busy therefore hands every call to the workers as before: the loop is
 * held up at most once, for one short call, before it notices.
 */
#ifndef KB_LOOPCALL_H
#define KB_LOOPCALL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kb_loopcall {
	const void *last_conn;  /* the connection of the last request line */
	int64_t quiet_until_us; /* another connection spoke lately: no loop calls before this */
	int64_t ran_at_us;      /* the end of the last loop call or answered Azure miss, or 0 */
	bool turn_ok;           /* the loop serves only this line this turn (set around kb_dispatch) */
	int64_t wait_until_us;  /* the one client's job out now is expected to end before this, or 0 */
	bool wait_pool;         /* that job is with the workers (else on the loop's own I/O) */
} kb_loopcall;

/* QUIET_US: how long a second busy connection keeps calls off the loop */
#define KB_LOOPCALL_QUIET_US 20000
/* how long after a loop call the loop polls instead of sleeping */
#define KB_LOOPCALL_AWAKE_US 150

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

/* kb_loopcall_avg folds a call of us microseconds into a key's running average avg. */
int64_t kb_loopcall_avg(int64_t avg, int64_t us);

#endif
