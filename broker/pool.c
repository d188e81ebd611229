#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "finish.h"
#include "pool.h"
#include "run.h"

typedef struct worker {
	kb_pool *pool;
	int slot;
	pthread_t thread;
} worker;

struct kb_pool {
	kb_broker *broker;
	pthread_mutex_t lock;
	pthread_cond_t more;
	kb_job *queue_head, *queue_tail;
	kb_job *done_head, *done_tail;
	bool stopping;
	int efd;
	int nworkers;
	worker *workers;
	int ncpu;
	int busy;        /* workers running a job (atomic) */
	int spinning;    /* workers spinning for a job they have not taken yet (atomic) */
	int queued;      /* jobs in the queue (under lock) */
	int pending;     /* jobs submitted and not yet ended (atomic: a worker ends some itself) */
};

/*
 * Handing a job to a sleeping thread costs a futex wake-up, tens of
 * microseconds on a VM, twice per cache miss: more than an AES unwrap itself.
 * So a thread that expects work soon spins for a short while first, but only
 * while there is a CPU to spare, so that spinning never takes a core from a
 * thread with real work.
 */
#define SPIN_US 150

static bool cpu_to_spare(const kb_pool *p)
{
	/* the loop and the busy workers each hold a CPU */
	return __atomic_load_n(&p->busy, __ATOMIC_RELAXED) + 1 < p->ncpu;
}

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

static void *worker_main(void *arg)
{
	worker *w = arg;
	kb_pool *p = w->pool;
	uint64_t one = 1;

	int64_t spin_us = SPIN_US;

	for (;;) {
		kb_job *j;
		int64_t start = kb_now_us(), until = start + spin_us;

		__atomic_add_fetch(&p->spinning, 1, __ATOMIC_ACQ_REL);
		while (__atomic_load_n(&p->queue_head, __ATOMIC_ACQUIRE) == NULL && cpu_to_spare(p) &&
		       !__atomic_load_n(&p->stopping, __ATOMIC_RELAXED) && kb_now_us() < until)
			cpu_relax();
		/* before taking the lock: a counted spinner is one that will still look at the queue */
		__atomic_sub_fetch(&p->spinning, 1, __ATOMIC_ACQ_REL);
		pthread_mutex_lock(&p->lock);
		while (p->queue_head == NULL && !p->stopping)
			pthread_cond_wait(&p->more, &p->lock);
		if (p->queue_head == NULL) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		j = p->queue_head;
		p->queue_head = j->next;
		if (p->queue_head == NULL)
			p->queue_tail = NULL;
		p->queued--;
		pthread_mutex_unlock(&p->lock);
		/*
		 * Adaptive, as glibc's adaptive mutex: a spell that caught its job is
		 * worth its CPU, one that ran out is not, so spells shrink to an eighth
		 * when clients are slow to come back (a loaded machine, where the spin
		 * also takes their CPU). A job that came within a full spell of its
		 * start, caught or not, restores full spells: else a client that is
		 * back in 40 us would never meet an 18 us spell again.
		 */
		if (kb_now_us() - start <= SPIN_US)
			spin_us = SPIN_US;
		else if (spin_us > SPIN_US / 8)
			spin_us /= 2;

		__atomic_add_fetch(&p->busy, 1, __ATOMIC_RELAXED);
		kb_job_run(p->broker, j, w->slot);
		__atomic_sub_fetch(&p->busy, 1, __ATOMIC_RELAXED);

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
	p->ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->more, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->workers = calloc((size_t)nworkers, sizeof(*p->workers));
	if (p->efd < 0 || p->workers == NULL) {
		free(p->workers);
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

void kb_pool_submit(kb_pool *p, kb_job *j)
{
	__atomic_add_fetch(&p->pending, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->lock);
	push(&p->queue_head, &p->queue_tail, j);
	/*
	 * A spinning worker takes the job within a microsecond; waking a sleeping
	 * one as well only costs a futex call and a thread that finds nothing.
	 */
	if (++p->queued > __atomic_load_n(&p->spinning, __ATOMIC_ACQUIRE))
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

bool kb_pool_should_spin(const kb_pool *p)
{
	return __atomic_load_n(&p->pending, __ATOMIC_RELAXED) > 0 && cpu_to_spare(p);
}

bool kb_pool_may_spin(const kb_pool *p)
{
	return cpu_to_spare(p);
}

bool kb_pool_fits_loop(const kb_pool *p)
{
	return p->ncpu > 1 && __atomic_load_n(&p->busy, __ATOMIC_RELAXED) < p->ncpu;
}

bool kb_pool_idle(const kb_pool *p)
{
	return __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) == 0;
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
	free(p->workers);
	free(p);
	return left;
}
