/*
 * looptoken.h: the loop token, which a thread holds to touch loop state.
 *
 * Loop state is everything the event loop serves from: the connections and
 * their sends, the DEK cache, the jobs' single-flight table and keyset
 * references, the counters, the health checks, and the kb_io watches and
 * timers (broker.h lists its owners). Exactly one thread holds the token
 * at a time. The loop holds it while it works and lets it go only inside
 * its wait for events (kb_loop_token_sleep .. _wake); while the loop sleeps,
 * one other thread (a worker ending its own job, the gRPC thread answering
 * a call) may take it with kb_loop_token_try, do the loop's work in its
 * stead, and give it back. A thread without the token touches only what it
 * owns: a worker its job and its backend slot (pool.h).
 *
 * kb_loop_assert_owner() states it at each entry to loop state: with asserts
 * on (meson's debug and sanitizer builds; b_ndebug=if-release turns them off
 * in release builds) it aborts when the calling thread does not hold the
 * token while a loop serves. Before the loop starts and after it stops, the
 * daemon has one thread that may touch the state, and tests of a module
 * alone have no loop: the assert then holds.
 */
#ifndef KB_LOOPTOKEN_H
#define KB_LOOPTOKEN_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>

typedef struct kb_loop_token {
	pthread_mutex_t lock;
	bool asleep;   /* the loop waits for events: a guest may take the token (under lock) */
} kb_loop_token;

/*
 * The loop's side: kb_loop_token_enter before it serves (it then holds the
 * token), kb_loop_token_sleep and kb_loop_token_wake around each wait for
 * events, and kb_loop_token_leave once it stops serving (no guest takes the
 * token after that).
 */
void kb_loop_token_enter(kb_loop_token *t);
void kb_loop_token_sleep(kb_loop_token *t);
void kb_loop_token_wake(kb_loop_token *t);
void kb_loop_token_leave(kb_loop_token *t);

/*
 * kb_loop_token_try gives the calling thread the token if the loop sleeps
 * and no one else holds it, and returns true; false: the loop is busy, or
 * not serving, and the caller hands its work to the loop instead.
 * kb_loop_token_give gives the token back.
 */
bool kb_loop_token_try(kb_loop_token *t);
void kb_loop_token_give(kb_loop_token *t);

/* kb_loop_token_held says whether the calling thread may touch loop state now. */
bool kb_loop_token_held(void);

#define kb_loop_assert_owner() assert(kb_loop_token_held())

#endif
