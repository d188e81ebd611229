/*
 * inbox.c: a mutex, a queue and an eventfd (see inbox.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "inbox.h"
#include "log.h"

struct kb_inbox {
	pthread_mutex_t mu;
	kb_inbox_item *head;    /* newest first; under mu */
	size_t count;           /* under mu */
	size_t max;
	bool closed;            /* under mu */
	int efd;
	const kb_io *io;
	kb_io_watch *watch;
	void (*take)(void *ctx, kb_inbox_item *item);
	void *ctx;
};

/* take_all empties the queue and returns its items oldest first */
static kb_inbox_item *take_all(kb_inbox *in)
{
	kb_inbox_item *list, *rev = NULL;

	pthread_mutex_lock(&in->mu);
	list = in->head;
	in->head = NULL;
	in->count = 0;
	pthread_mutex_unlock(&in->mu);
	while (list) {
		kb_inbox_item *next = list->next;
		list->next = rev;
		rev = list;
		list = next;
	}
	return rev;
}

static void on_ready(void *ctx, int fd, unsigned ready)
{
	kb_inbox *in = ctx;
	uint64_t n;

	(void)ready;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		kb_debug("inbox eventfd: %s", strerror(errno));
	for (kb_inbox_item *it = take_all(in), *next; it; it = next) {
		next = it->next;
		in->take(in->ctx, it);
	}
}

kb_code kb_inbox_new(const kb_io *io, size_t max, void (*take)(void *ctx, kb_inbox_item *item), void *ctx,
		     kb_inbox **out, kb_err *err)
{
	kb_inbox *in = calloc(1, sizeof(*in));

	if (in == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	pthread_mutex_init(&in->mu, NULL);
	in->max = max;
	in->io = io;
	in->take = take;
	in->ctx = ctx;
	if ((in->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		kb_err_set(err, KB_E_INTERNAL, "eventfd: %s", strerror(errno));
		kb_inbox_free(in);
		return err->code;
	}
	if (io->watch(io->loop, &in->watch, in->efd, KB_IO_IN, on_ready, in) != 0) {
		kb_inbox_free(in);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	*out = in;
	return KB_OK;
}

kb_inbox_rc kb_inbox_post(kb_inbox *in, kb_inbox_item *item)
{
	uint64_t one = 1;
	kb_inbox_rc rc = KB_INBOX_POSTED;
	bool wake;

	pthread_mutex_lock(&in->mu);
	if (in->closed)
		rc = KB_INBOX_CLOSED;
	else if (in->count >= in->max)
		rc = KB_INBOX_FULL;
	else {
		item->next = in->head;
		in->head = item;
		in->count++;
	}
	wake = rc == KB_INBOX_POSTED && in->count == 1; /* the first of a batch wakes the loop; it takes them all */
	pthread_mutex_unlock(&in->mu);
	if (wake && write(in->efd, &one, sizeof(one)) < 0)
		kb_debug("inbox eventfd: %s", strerror(errno)); /* it is readable already */
	return rc;
}

kb_inbox_item *kb_inbox_close(kb_inbox *in)
{
	pthread_mutex_lock(&in->mu);
	in->closed = true;
	pthread_mutex_unlock(&in->mu);
	return take_all(in);
}

void kb_inbox_free(kb_inbox *in)
{
	if (in == NULL)
		return;
	if (in->watch)
		in->io->watch(in->io->loop, &in->watch, in->efd, 0, NULL, NULL);
	if (in->efd >= 0)
		close(in->efd);
	pthread_mutex_destroy(&in->mu);
	free(in);
}
