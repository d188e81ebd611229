/*
 * pool.c: the worker threads, their queue, and its fairness between uids
 * (pool.h). The spin rules are schedule.h's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "finish.h"
#include "pool.h"
#include "run.h"
#include "schedule.h"

typedef struct worker {
	kb_pool *pool;
	int slot;
	pthread_t thread;
} worker;

/* one uid's queued jobs, oldest first */
typedef struct uid_queue {
	uid_t uid;
	kb_job *head, *tail;
} uid_queue;

/* room for this many uids with jobs queued before the turn table grows */
#define UID_QUEUES_START 8

struct kb_pool {
	kb_broker *broker;
	kb_sched sched;
	pthread_mutex_t lock;
	pthread_cond_t more;
	/*
	 * The uids with jobs queued, in turn order: a worker takes the oldest
	 * job of the uid whose turn it is (turn), and the turn passes on. A uid
	 * that had nothing queued joins just before the turn, so its one job is
	 * next: however many jobs one uid queues, another's waits for at most
	 * one of them (issue 24 item 7).
	 */
	uid_queue *uids;
	int nuids, capuids, turn;
	kb_job *done_head, *done_tail;
	bool stopping;   /* (atomic; set under lock) */
	int efd;
	int nworkers;
	worker *workers;
	int spinning;    /* workers spinning for a job they have not taken yet (atomic) */
	int queued;      /* jobs in the queue (atomic; changed under lock) */
	int pending;     /* jobs submitted and not yet ended (atomic: a worker ends some itself) */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void push(kb_job **head, kb_job **tail, kb_job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

/* enqueue queues j under its uid (p->lock held). */
static void enqueue(kb_pool *p, kb_job *j)
{
	int i = 0;

	while (i < p->nuids && p->uids[i].uid != j->uid)
		i++;
	if (i == p->nuids) {
		if (p->nuids == p->capuids) {
			uid_queue *more = realloc(p->uids, (size_t)p->capuids * 2 * sizeof(*more));

			if (more == NULL) {
				/* out of memory: the job queues behind the last uid's, unfairly but not lost */
				push(&p->uids[p->nuids - 1].head, &p->uids[p->nuids - 1].tail, j);
				goto queued;
			}
			p->uids = more;
			p->capuids *= 2;
		}
		/* a uid new to the queue goes just before the turn: it is served next */
		memmove(&p->uids[p->turn + 1], &p->uids[p->turn], (size_t)(p->nuids - p->turn) * sizeof(*p->uids));
		p->uids[p->turn] = (uid_queue){ .uid = j->uid };
		p->nuids++;
		i = p->turn;
	}
	push(&p->uids[i].head, &p->uids[i].tail, j);
queued:
	__atomic_add_fetch(&p->queued, 1, __ATOMIC_RELEASE);
}

/* dequeue takes the next job by turn, or returns NULL (p->lock held). */
static kb_job *dequeue(kb_pool *p)
{
	uid_queue *q;
	kb_job *j;

	if (p->nuids == 0)
		return NULL;
	q = &p->uids[p->turn];
	j = q->head;
	q->head = j->next;
	if (q->head == NULL) {
		memmove(q, q + 1, (size_t)(p->nuids - p->turn - 1) * sizeof(*q));
		p->nuids--;
	} else {
		p->turn++;
	}
	if (p->turn >= p->nuids)
		p->turn = 0;
	__atomic_sub_fetch(&p->queued, 1, __ATOMIC_RELAXED);
	return j;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	kb_pool *p = w->pool;
	uint64_t one = 1;
	int64_t spell_us = KB_SCHED_ROUND_TRIP_US;

	for (;;) {
		kb_job *j;
		int64_t start = kb_now_us(), until = start + spell_us;

		/*
		 * Handing a job to a sleeping thread costs a futex wake-up, tens of
		 * microseconds on a VM, twice per cache miss: more than an AES unwrap.
		 * So a worker polls for its next job for a spell first, counted as a
		 * busy thread, while the budget has a CPU to spare for it (schedule.h).
		 */
		__atomic_add_fetch(&p->spinning, 1, __ATOMIC_ACQ_REL);
		kb_sched_busy(&p->sched, 1);
		while (__atomic_load_n(&p->queued, __ATOMIC_ACQUIRE) == 0 && kb_sched_spare(&p->sched, true) &&
		       !__atomic_load_n(&p->stopping, __ATOMIC_RELAXED) && kb_now_us() < until)
			cpu_relax();
		kb_sched_busy(&p->sched, -1);
		/* before taking the lock: a counted spinner is one that will still look at the queue */
		__atomic_sub_fetch(&p->spinning, 1, __ATOMIC_ACQ_REL);
		pthread_mutex_lock(&p->lock);
		while (p->nuids == 0 && !__atomic_load_n(&p->stopping, __ATOMIC_RELAXED))
			pthread_cond_wait(&p->more, &p->lock);
		j = dequeue(p);
		pthread_mutex_unlock(&p->lock);
		if (j == NULL)
			return NULL;
		j->wait_us = kb_now_us() - j->queued_us;
		spell_us = kb_sched_next_spell(spell_us, kb_now_us() - start);

		kb_sched_busy(&p->sched, 1);
		kb_job_run(p->broker, j, w->slot);
		kb_sched_busy(&p->sched, -1);

		/* answer it here if the loop sleeps: waking it would cost a thread hand-off */
		if (kb_job_finish_here(p->broker, j)) {
			__atomic_sub_fetch(&p->pending, 1, __ATOMIC_RELAXED);
			continue;
		}

		pthread_mutex_lock(&p->lock);
		push(&p->done_head, &p->done_tail, j);
		pthread_mutex_unlock(&p->lock);
		/* an eventfd counter cannot overflow here; a failed write is harmless */
		if (write(p->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			abort();
	}
}

kb_code kb_pool_start(kb_broker *b, int nworkers, kb_pool **out, kb_err *err)
{
	kb_pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	p->broker = b;
	kb_sched_init(&p->sched);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->more, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->workers = calloc((size_t)nworkers, sizeof(*p->workers));
	p->uids = calloc(UID_QUEUES_START, sizeof(*p->uids));
	p->capuids = UID_QUEUES_START;
	if (p->efd < 0 || p->workers == NULL || p->uids == NULL) {
		free(p->workers);
		free(p->uids);
		if (p->efd >= 0)
			close(p->efd);
		free(p);
		return kb_err_set(err, KB_E_INTERNAL, "cannot start the worker pool: %s", strerror(errno));
	}
	for (int i = 0; i < nworkers; i++) {
		p->workers[i].pool = p;
		p->workers[i].slot = i;
		if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
			p->nworkers = i;
			(void)kb_pool_stop(p);
			return kb_err_set(err, KB_E_INTERNAL, "cannot start worker thread %d", i);
		}
		p->nworkers = i + 1;
	}
	*out = p;
	return KB_OK;
}

int kb_pool_fd(const kb_pool *p)
{
	return p->efd;
}

void kb_pool_submit(kb_pool *p, kb_job *j, uid_t uid)
{
	j->uid = uid;
	j->queued_us = kb_now_us();
	__atomic_add_fetch(&p->pending, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->lock);
	enqueue(p, j);
	/*
	 * A spinning worker takes the job within a microsecond; waking a sleeping
	 * one as well only costs a futex call and a thread that finds nothing.
	 */
	if (__atomic_load_n(&p->queued, __ATOMIC_RELAXED) > __atomic_load_n(&p->spinning, __ATOMIC_ACQUIRE))
		pthread_cond_signal(&p->more);
	pthread_mutex_unlock(&p->lock);
}

kb_job *kb_pool_take_done(kb_pool *p)
{
	uint64_t n;
	kb_job *j;

	if (read(p->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return NULL;
	pthread_mutex_lock(&p->lock);
	j = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	for (kb_job *k = j; k; k = k->next)
		__atomic_sub_fetch(&p->pending, 1, __ATOMIC_RELAXED);
	return j;
}

bool kb_pool_loop_may_poll(const kb_pool *p)
{
	return kb_sched_spare(&p->sched, false);
}

bool kb_pool_job_may_end_soon(const kb_pool *p)
{
	return __atomic_load_n(&p->pending, __ATOMIC_RELAXED) > 0 && kb_sched_spare(&p->sched, false);
}

bool kb_pool_loop_fits(const kb_pool *p)
{
	return kb_sched_fits(&p->sched);
}

bool kb_pool_idle(const kb_pool *p)
{
	return __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) == 0;
}

int kb_pool_cpus(const kb_pool *p)
{
	return p->sched.cpus;
}

kb_job *kb_pool_stop(kb_pool *p)
{
	kb_job *left;

	if (p == NULL)
		return NULL;
	pthread_mutex_lock(&p->lock);
	__atomic_store_n(&p->stopping, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&p->more);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i].thread, NULL);
	left = p->done_head;
	close(p->efd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->more);
	free(p->uids);
	free(p->workers);
	free(p);
	return left;
}
