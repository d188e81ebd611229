/*
 * echo.c: kb-bench-echo, floor A of the comparison. A single-threaded epoll
 * server on a Unix socket, built like keybrokerd's I/O loop: it reads a
 * request line "LEN xxxx...\n" and answers LEN bytes ending in a newline,
 * so the floor carries exactly the broker's request and response sizes and
 * does nothing else.
 *
 * usage: kb-bench-echo SOCKET   (runs until SIGTERM or SIGINT)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define USAGE "usage: kb-bench-echo SOCKET\n" \
	"Floor A of bench/compare: answers each line \"LEN ...\" on the Unix socket\n" \
	"SOCKET with LEN bytes, until SIGTERM or SIGINT. A stale socket at SOCKET is\n" \
	"replaced; any other file there is left alone and refused.\n"

#define BUF_CAP 65536

typedef struct conn {
	int fd;
	size_t len;              /* bytes read and not yet answered */
	const char *out;         /* what is left to write */
	size_t out_len;
	char in[BUF_CAP];
} conn;

static char reply[BUF_CAP];
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = sig;
}

static void drop(int ep, conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* flush_out writes what is pending; 1 when done, 0 when the socket is full, -1 on error. */
static int flush_out(conn *c)
{
	while (c->out_len > 0) {
		ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return 0;
		if (w <= 0)
			return -1;
		c->out += w;
		c->out_len -= (size_t)w;
	}
	return 1;
}

/* serve answers every complete line in c->in; -1 to close the connection. */
static int serve(int ep, conn *c)
{
	char *nl;

	while (c->out_len == 0 && (nl = memchr(c->in, '\n', c->len)) != NULL) {
		size_t line = (size_t)(nl - c->in) + 1;
		unsigned long want = strtoul(c->in, NULL, 10);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		int r;

		if (want == 0 || want > BUF_CAP)
			return -1;
		memmove(c->in, c->in + line, c->len - line);
		c->len -= line;
		c->out = reply + BUF_CAP - want;   /* the tail of reply ends in '\n' */
		c->out_len = want;
		r = flush_out(c);
		if (r < 0)
			return -1;
		if (r == 0) {
			ev.events = EPOLLOUT;
			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN }, evs[64];
	struct sigaction act = { .sa_handler = on_signal };
	struct stat st;
	int lfd, ep;

	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		fputs(USAGE, stdout);
		return 0;
	}
	if (argc == 2 && argv[1][0] == '-') {
		fprintf(stderr, "kb-bench-echo: unknown option %s\n" USAGE, argv[1]);
		return 2;
	}
	if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "kb-bench-echo: %s\n" USAGE,
			argc != 2 ? "give one SOCKET path" : "SOCKET path is too long for a Unix socket");
		return 2;
	}
	memset(reply, 'x', sizeof(reply));
	reply[BUF_CAP - 1] = '\n';
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	memcpy(sa.sun_path, argv[1], strlen(argv[1]) + 1);
	/* only a socket (a previous run's) is ours to replace */
	if (lstat(argv[1], &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(argv[1]);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, SOMAXCONN) != 0) {
		fprintf(stderr, "kb-bench-echo: cannot listen on %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	while (!stop) {
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			conn *c = evs[i].data.ptr;

			if (c == NULL) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct epoll_event cev = { .events = EPOLLIN };

					c = calloc(1, sizeof(*c));
					if (c == NULL) {
						close(fd);
						continue;
					}
					c->fd = fd;
					cev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
				}
				continue;
			}
			if (evs[i].events & EPOLLOUT) {
				struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
				int r = flush_out(c);

				if (r < 0) {
					drop(ep, c);
					continue;
				}
				if (r == 0)
					continue;
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
				if (serve(ep, c) != 0)
					drop(ep, c);
				continue;
			}
			for (;;) {
				ssize_t r = recv(c->fd, c->in + c->len, BUF_CAP - c->len, 0);

				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0 && errno == EAGAIN)
					break;
				if (r <= 0 || (c->len += (size_t)r) == BUF_CAP) {
					drop(ep, c);
					c = NULL;
					break;
				}
				if (serve(ep, c) != 0) {
					drop(ep, c);
					c = NULL;
					break;
				}
			}
		}
	}
	if (lstat(argv[1], &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(argv[1]);
	return 0;
}
