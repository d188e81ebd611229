/*
 * looptoken.c: the loop token (looptoken.h).
 */
#include "clock.h"
#include "looptoken.h"
#include "schedule.h"

/* a loop serves: from then on only the token's holder may touch its state (atomic) */
static int serving;
/* the calling thread holds the token */
static __thread bool holding;

void kb_loop_token_enter(kb_loop_token *t)
{
	pthread_mutexattr_t a;

	/*
	 * The loop often wakes for the client's next request while the worker
	 * that answered the last one still holds the token for a microsecond or
	 * two: an adaptive mutex spins that out instead of sleeping on a futex.
	 */
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&t->lock, &a);
	pthread_mutexattr_destroy(&a);
	pthread_mutex_lock(&t->lock);
	t->asleep = false;
	holding = true;
	__atomic_store_n(&serving, 1, __ATOMIC_RELEASE);
}

void kb_loop_token_sleep(kb_loop_token *t)
{
	t->asleep = true;
	holding = false;
	pthread_mutex_unlock(&t->lock);
}

void kb_loop_token_wake(kb_loop_token *t)
{
	int64_t until = 0;

	/* a guest that holds the token is answering: wait it out awake, not on a futex */
	while (pthread_mutex_trylock(&t->lock) != 0) {
		if (until == 0)
			until = kb_now_us() + KB_SCHED_TOKEN_HOLD_US;
		else if (kb_now_us() >= until) {
			pthread_mutex_lock(&t->lock);
			break;
		}
	}
	t->asleep = false;
	holding = true;
}

void kb_loop_token_leave(kb_loop_token *t)
{
	__atomic_store_n(&serving, 0, __ATOMIC_RELEASE);
	t->asleep = false;
	holding = false;
	pthread_mutex_unlock(&t->lock);
}

bool kb_loop_token_try(kb_loop_token *t)
{
	if (pthread_mutex_trylock(&t->lock) != 0)
		return false;
	if (!t->asleep) {
		/* between two of the loop's turns, or after it stopped */
		pthread_mutex_unlock(&t->lock);
		return false;
	}
	holding = true;
	return true;
}

void kb_loop_token_give(kb_loop_token *t)
{
	holding = false;
	pthread_mutex_unlock(&t->lock);
}

bool kb_loop_token_held(void)
{
	return holding || !__atomic_load_n(&serving, __ATOMIC_ACQUIRE);
}
