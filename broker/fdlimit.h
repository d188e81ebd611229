/*
 * fdlimit.h: running out of file descriptors without spinning or going silent.
 *
 * When the process is at RLIMIT_NOFILE, accept() fails with EMFILE and the
 * waiting connection stays in the backlog: a level-triggered listener is then
 * readable forever, and a loop that only logs the failure spins at 100% CPU
 * and floods the log (it wrote 1.4 million lines in 3 s). So the broker keeps
 * one descriptor in reserve (/dev/null): at EMFILE it lets it go, takes the
 * waiting connection, tells it why (busy) and closes it, then takes the
 * reserve back; if even that fails, the listener is left alone for a moment.
 * The refusals are logged once a minute with their count, and at startup the
 * soft limit is raised to what max_connections needs (within the hard limit).
 */
#ifndef KB_FDLIMIT_H
#define KB_FDLIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kb_fdlimit {
	int spare;          /* the reserve descriptor, or -1 */
	int64_t logged_ms;  /* when a refusal was last logged, or 0 */
	uint64_t unlogged;  /* refusals since */
} kb_fdlimit;

/* why, for kb_fdlimit_refusal, of a connection past kb_fdlimit_over */
#define KB_FDLIMIT_MARGIN_WHY "the open-file limit is nearly reached, and the rest is kept for the key services"

/* how long a listener rests when not even the reserve freed a descriptor */
#define KB_FDLIMIT_REST_MS 100
#define KB_FDLIMIT_LOG_INTERVAL_MS 60000

/*
 * kb_fdlimit_raise lifts RLIMIT_NOFILE's soft limit to 65536 or need, within
 * the hard limit, and warns when the hard limit is below need. Called once
 * at startup.
 */
void kb_fdlimit_raise(uint64_t need);

/*
 * kb_fdlimit_over says whether a connection just accepted as fd eats into
 * the descriptors kept for the backends: a quarter of the soft limit, at
 * most 64. A token library that cannot open its files at EMFILE may decide
 * its keys are gone (SoftHSM does, and does not find them again), so clients
 * are refused busy before the backends run short.
 */
bool kb_fdlimit_over(int fd);

/* kb_fdlimit_init takes the reserve descriptor. */
void kb_fdlimit_init(kb_fdlimit *f);
void kb_fdlimit_close(kb_fdlimit *f);

/*
 * kb_fdlimit_accept is called when accept4 on lfd failed with EMFILE or
 * ENFILE: it frees the reserve, accepts one waiting connection and returns
 * its descriptor for the caller to refuse and close (then call
 * kb_fdlimit_restore), or returns -1 if that was not possible: the caller
 * then rests its listener for KB_FDLIMIT_REST_MS.
 */
int kb_fdlimit_accept(kb_fdlimit *f, int lfd);

/* kb_fdlimit_restore takes the reserve back after the refused connection is closed. */
void kb_fdlimit_restore(kb_fdlimit *f);

/*
 * kb_fdlimit_refusal records a connection refused for want of descriptors
 * and warns once per KB_FDLIMIT_LOG_INTERVAL_MS with the count since: face
 * names the listener ("" for the main socket), why what ran short.
 */
void kb_fdlimit_refusal(kb_fdlimit *f, const char *face, const char *why);

#endif
