/*
 * fdlimit.c: see fdlimit.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "fdlimit.h"
#include "log.h"

void kb_fdlimit_raise(uint64_t need)
{
	struct rlimit rl;
	rlim_t target = need > 65536 ? need : 65536;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		kb_warn("the open-file limit (RLIMIT_NOFILE) is %llu, below the %llu descriptors max_connections "
			"and the backends may need: connections past it are answered busy; raise LimitNOFILE= "
			"(systemd) or `ulimit -Hn`, or lower max_connections",
			(unsigned long long)rl.rlim_max, (unsigned long long)need);
	/* as Go's runtime does: the soft limit up to the hard one (here to 65536, or need) */
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < target)
		target = rl.rlim_max;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < target) {
		rl.rlim_cur = target;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			kb_warn("cannot raise the open-file limit to %llu: %s", (unsigned long long)target,
				strerror(errno));
	}
}

bool kb_fdlimit_over(int fd)
{
	struct rlimit rl;
	rlim_t keep;

	/* read each time: an operator may change it under the running daemon (prlimit) */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return false;
	keep = rl.rlim_cur / 4 < 64 ? rl.rlim_cur / 4 : 64;
	return (rlim_t)fd >= rl.rlim_cur - keep;
}

void kb_fdlimit_init(kb_fdlimit *f)
{
	*f = (kb_fdlimit){ .spare = open("/dev/null", O_RDONLY | O_CLOEXEC) };
}

void kb_fdlimit_close(kb_fdlimit *f)
{
	if (f->spare >= 0)
		close(f->spare);
	f->spare = -1;
}

int kb_fdlimit_accept(kb_fdlimit *f, int lfd)
{
	int fd;

	if (f->spare < 0)
		return -1;
	close(f->spare);
	f->spare = -1;
	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		kb_fdlimit_restore(f);
	return fd;
}

void kb_fdlimit_restore(kb_fdlimit *f)
{
	if (f->spare < 0)
		f->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void kb_fdlimit_refusal(kb_fdlimit *f, const char *face, const char *why)
{
	int64_t now = kb_now_ms();

	f->unlogged++;
	if (f->logged_ms != 0 && now - f->logged_ms < KB_FDLIMIT_LOG_INTERVAL_MS)
		return;
	kb_warn("%s%srefused %llu connection%s since the last such warning (one a minute at most): %s; raise "
		"LimitNOFILE= or lower max_connections", face, face[0] ? ": " : "", (unsigned long long)f->unlogged,
		f->unlogged == 1 ? "" : "s", why);
	f->unlogged = 0;
	f->logged_ms = now;
}
