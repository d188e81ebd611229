/*
 * conn.c: the connection to keybrokerd. One request line out, response lines
 * in until the one with our id; everything that touched a response is zeroed
 * before it is freed, since unwrap responses carry plaintexts.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kbc.h"
#include "line.h"

struct kb_client {
	int fd;
	bool broken;            /* an I/O or framing error desynchronised the stream */
	int timeout_ms;
	struct timespec deadline;
	double next_id;         /* JSON numbers are doubles; exact up to 2^53 */
	char *rbuf;             /* bytes read but not yet consumed */
	size_t rlen, rcap;
	char *last;             /* the last response line of ours */
	bool reopen;            /* the broker refused a line it could not read: it closes; connect again */
	size_t refused_line;    /* the length of that line, 0 if the last answer was to a line read whole */
	size_t batch_items;     /* batch limits, learnt by ops.c from too_large answers (kbc.h) */
	size_t batch_bytes;
	char path[KB_SOCKET_PATH_MAX + 1];
};

kb_code kbc_error(kb_error *err, kb_code code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return code;
}

static void wipe_free(void *p, size_t n)
{
	if (p == NULL)
		return;
	explicit_bzero(p, n);
	free(p);
}

void kb_free(char *s)
{
	if (s != NULL)
		wipe_free(s, strlen(s));
}

static void json_wipe(cJSON *j)
{
	for (; j != NULL; j = j->next) {
		if (j->valuestring != NULL)
			explicit_bzero(j->valuestring, strlen(j->valuestring));
		json_wipe(j->child);
	}
}

void kbc_json_delete(cJSON *j)
{
	json_wipe(j);
	cJSON_Delete(j);
}

/*
 * connect_failure explains a failed connect(2) to path (errno e) by what is
 * there: connect says "Connection refused" for a directory or a regular file
 * as for a socket nobody listens on, and the fix differs.
 */
static kb_code connect_failure(kb_error *err, const char *path, int e)
{
	struct stat st;
	int se;

	if (stat(path, &st) != 0) {
		se = errno;
		if (se == ENOENT)
			return kbc_error(err, KB_E_IO, "cannot connect to %s: %s; is keybrokerd "
					 "running?", path, strerror(se));
		if (se == EACCES)
			return kbc_error(err, KB_E_IO, "cannot connect to %s: %s on a directory "
					 "above it; this user may not reach the socket", path,
					 strerror(se));
		return kbc_error(err, KB_E_IO, "cannot connect to %s: %s", path, strerror(se));
	}
	if (S_ISDIR(st.st_mode))
		return kbc_error(err, KB_E_IO, "cannot connect to %s: it is a directory, not a "
				 "socket; name keybrokerd's socket file ([broker] socket in its "
				 "config)", path);
	if (!S_ISSOCK(st.st_mode))
		return kbc_error(err, KB_E_IO, "cannot connect to %s: it is a %s, not a socket; "
				 "name keybrokerd's socket file ([broker] socket in its config)",
				 path, S_ISREG(st.st_mode) ? "regular file" : "special file");
	switch (e) {
	case ECONNREFUSED:
		return kbc_error(err, KB_E_IO, "cannot connect to %s: %s: no one listens on "
				 "this socket (left by a keybrokerd that stopped?); is keybrokerd "
				 "running?", path, strerror(e));
	case EACCES:
	case EPERM:
		return kbc_error(err, KB_E_IO, "cannot connect to %s: %s; this user may not "
				 "open the socket; check its mode and group ([broker] socket_mode)",
				 path, strerror(e));
	case EAGAIN:
		return kbc_error(err, KB_E_IO, "cannot connect to %s: %s; keybrokerd is not "
				 "accepting connections fast enough; retry", path, strerror(e));
	default:
		return kbc_error(err, KB_E_IO, "cannot connect to %s: %s", path, strerror(e));
	}
}

/* open_socket connects a new socket to path; returns it, or -1 with errno set. */
static int open_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r, e;

	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0 && errno == EINTR) {
		/* The connect goes on in the background; wait for its outcome. */
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		socklen_t len = sizeof(r);

		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &len) == 0 && r != 0) {
			errno = r;
			r = -1;
		}
	}
	if (r < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

kb_code kb_client_connect(const char *socket_path, kb_client **out, kb_error *err)
{
	char def[KB_SOCKET_PATH_MAX + 1];
	const char *path = socket_path;
	kb_client *c;
	int r;

	if (out == NULL)
		return kbc_error(err, KB_E_BAD_REQUEST, "kb_client_connect: out is NULL");
	*out = NULL;
	if (path == NULL) {
		path = getenv(KB_SOCKET_ENV);
		if (path == NULL || path[0] == '\0') {
			if (kb_default_socket(def, sizeof(def)) < 0)
				return kbc_error(err, KB_E_IO, "the default socket path "
						 KB_DEFAULT_SOCKET " is too long; set "
						 KB_SOCKET_ENV " or pass a path to kb_client_connect()");
			path = def;
		}
	}
	if (path[0] == '\0' || strlen(path) > KB_SOCKET_PATH_MAX)
		return kbc_error(err, KB_E_IO, "socket path \"%s\" is empty or over %d bytes",
				 path, KB_SOCKET_PATH_MAX);

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return kbc_error(err, KB_E_IO, "out of memory");
	c->next_id = 1;
	c->batch_items = KBC_BATCH_ITEMS;
	c->batch_bytes = KBC_BATCH_BYTES;
	memcpy(c->path, path, strlen(path) + 1);

	c->fd = open_socket(path);
	if (c->fd < 0) {
		r = errno;
		free(c);
		connect_failure(err, path, r);
		/* a path the caller did not give: say where it came from */
		if (err != NULL && socket_path == NULL) {
			size_t m = strlen(err->message);

			snprintf(err->message + m, sizeof(err->message) - m, " (%s)",
				 path == def ? "the default socket; " KB_SOCKET_ENV " names another"
					     : "from $" KB_SOCKET_ENV);
		}
		return KB_E_IO;
	}
	*out = c;
	kbc_error(err, KB_OK, "%s", "");
	return KB_OK;
}

void kb_client_close(kb_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	wipe_free(c->rbuf, c->rcap);
	kb_free(c->last);
	free(c);
}

void kb_client_set_timeout(kb_client *c, int timeout_ms)
{
	if (c != NULL)
		c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

const char *kb_client_socket(const kb_client *c)
{
	return c != NULL ? c->path : NULL;
}

const char *kb_client_last_response(const kb_client *c)
{
	return c != NULL ? c->last : NULL;
}

/* fail_io marks c unusable (the stream position is unknown) and records why. */
static kb_code fail_io(kb_client *c, kb_error *err, kb_code code, const char *what)
{
	c->broken = true;
	return kbc_error(err, code, "%s on %s", what, c->path);
}

static kb_code fail_closed(kb_client *c, kb_error *err)
{
	c->broken = true;
	return kbc_error(err, KB_E_IO, "keybrokerd closed the connection on %s before "
			 "answering; is keybrokerd running? Its log says why it hung up",
			 c->path);
}

/* wait_ready waits until c->fd is ready for events, up to the call's deadline. */
static kb_code wait_ready(kb_client *c, short events, kb_error *err)
{
	struct pollfd p = { .fd = c->fd, .events = events };
	struct timespec now;
	long ms;
	int r;

	for (;;) {
		ms = -1;
		if (c->timeout_ms > 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			ms = (c->deadline.tv_sec - now.tv_sec) * 1000 +
			     (c->deadline.tv_nsec - now.tv_nsec) / 1000000;
			if (ms <= 0)
				return fail_io(c, err, KB_E_IO, "timed out waiting for keybrokerd");
		}
		r = poll(&p, 1, (int)ms);
		if (r > 0)
			return KB_OK;
		if (r < 0 && errno != EINTR)
			return fail_io(c, err, KB_E_IO, strerror(errno));
	}
}

/* line_wait is wait_ready for line.c: it waits only when c has a timeout. */
struct line_ctx {
	kb_client *c;
	kb_error *err;
};

static int line_wait(void *ctx, short events)
{
	struct line_ctx *x = ctx;

	return x->c->timeout_ms > 0 && wait_ready(x->c, events, x->err) != KB_OK;
}

/* line_failed turns what line.c reports into the client's error. */
static kb_code line_failed(kb_client *c, kb_line_rc rc, kb_error *err)
{
	switch (rc) {
	case KB_LINE_OK:
		return KB_OK;
	case KB_LINE_CLOSED:
		return fail_closed(c, err);
	case KB_LINE_TOO_LONG:
		c->broken = true;
		return kbc_error(err, KB_E_PROTOCOL, "keybrokerd sent a response over "
				 "%d bytes on %s; refused", KB_MAX_RESPONSE, c->path);
	case KB_LINE_NOMEM:
		return fail_io(c, err, KB_E_IO, "out of memory reading a response");
	case KB_LINE_STOPPED:
		return KB_E_IO; /* wait_ready said why */
	case KB_LINE_ERRNO:
		break;
	}
	return fail_io(c, err, KB_E_IO, strerror(errno));
}

static kb_code send_all(kb_client *c, const char *buf, size_t n, kb_error *err)
{
	struct line_ctx x = { c, err };

	return line_failed(c, kb_line_send(c->fd, buf, n, line_wait, &x), err);
}

/*
 * read_line reads until c->rbuf holds a whole line and sets *len to its
 * length without the newline. The caller consumes it with drop_line().
 */
static kb_code read_line(kb_client *c, size_t *len, kb_error *err)
{
	struct line_ctx x = { c, err };

	return line_failed(c, kb_line_read(c->fd, &c->rbuf, &c->rlen, &c->rcap, KB_MAX_RESPONSE, len,
					   line_wait, &x), err);
}

/* drop_line consumes the first len bytes and the newline, zeroing what moved. */
static void drop_line(kb_client *c, size_t len)
{
	kb_line_drop(c->rbuf, &c->rlen, len);
}

/*
 * is_ours says whether response r answers request id. A response with a null
 * id that reports an error also counts: the broker could not read our request
 * far enough to learn its id (too_large, bad_request), and we have only one
 * request outstanding.
 */
static bool is_ours(const cJSON *r, double id)
{
	const cJSON *rid = cJSON_GetObjectItemCaseSensitive(r, "id");

	if (cJSON_IsNumber(rid))
		return rid->valuedouble == id;
	return (rid == NULL || cJSON_IsNull(rid)) &&
	       cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "ok"));
}

/* broker_error turns {"ok":false,"error":{"code","message"}} into a kb_code and err. */
static kb_code broker_error(kb_client *c, const cJSON *r, kb_error *err)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
	const char *m = cJSON_IsString(msg) ? msg->valuestring : "(no message)";
	kb_code k;

	if (!cJSON_IsString(code))
		return kbc_error(err, KB_E_PROTOCOL, "keybrokerd on %s sent an error without "
				 "a code: %s", c->path, m);
	k = kb_code_from_name(code->valuestring);
	if (k == KB_OK)
		return kbc_error(err, KB_E_PROTOCOL, "keybrokerd on %s sent an error with "
				 "code \"ok\"", c->path);
	if (k == KB_E_INTERNAL && strcmp(code->valuestring, "internal") != 0)
		return kbc_error(err, k, "unknown code \"%.64s\" (this library is older "
				 "than keybrokerd): %s", code->valuestring, m);
	return kbc_error(err, k, "%s", m);
}

/* keep_last makes line[0..len) the last response of c. */
static kb_code keep_last(kb_client *c, size_t len, kb_error *err)
{
	kb_free(c->last);
	c->last = malloc(len + 1);
	if (c->last == NULL)
		return fail_io(c, err, KB_E_IO, "out of memory reading a response");
	memcpy(c->last, c->rbuf, len);
	c->last[len] = '\0';
	return KB_OK;
}

/* json_bound is an upper bound on the unformatted printed size of the items from j on. */
static size_t json_bound(const cJSON *j)
{
	size_t n = 2;

	for (; j != NULL; j = j->next) {
		if (j->string != NULL)
			n += 6 * strlen(j->string) + 3;  /* every byte may become \uXXXX */
		if (j->valuestring != NULL)
			n += 6 * strlen(j->valuestring) + 2;
		n += 64 + json_bound(j->child);    /* a number or literal, a comma */
	}
	return n;
}

/*
 * print_request prints req on one line ending in "\n", in one buffer of ours
 * that the caller wipes: cJSON's own printer grows its output with realloc,
 * which would leave copies of a plaintext in freed memory.
 */
static char *print_request(cJSON *req, size_t *len)
{
	size_t cap = json_bound(req) + 8;
	char *line;

	if (cap > (size_t)INT32_MAX || (line = malloc(cap)) == NULL)
		return NULL;
	if (!cJSON_PrintPreallocated(req, line, (int)cap - 2, false)) {
		wipe_free(line, cap);
		return NULL;
	}
	*len = strlen(line);
	line[(*len)++] = '\n';
	line[*len] = '\0';
	return line;
}

/*
 * reopen_if_closed connects c again when keybrokerd closed it between calls
 * (idle_timeout): nothing is owed on it and it reads as ended, so no request
 * is lost or sent twice. A failed reconnect leaves c as it was; the call
 * then fails as on any closed connection.
 */
static void reopen_if_closed(kb_client *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	char byte;
	ssize_t n;
	int fd;

	if (c->rlen > 0 || poll(&p, 1, 0) != 1)
		return;
	n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0 || (n < 0 && errno != ECONNRESET))
		return;
	if ((fd = open_socket(c->path)) < 0)
		return;
	close(c->fd);
	c->fd = fd;
}

/*
 * reopen connects c again after the broker refused a line it could not read
 * (too_large): it closes the connection after that answer, and what it had
 * not read of the line is gone with it.
 */
static kb_code reopen(kb_client *c, kb_error *err)
{
	int fd = open_socket(c->path);

	if (fd < 0)
		return fail_io(c, err, KB_E_IO, strerror(errno));
	close(c->fd);
	c->fd = fd;
	if (c->rbuf != NULL)
		explicit_bzero(c->rbuf, c->rlen);
	c->rlen = 0;
	c->reopen = false;
	return KB_OK;
}

/*
 * answered_early says whether the broker answered a request it had not read
 * whole: it refuses a line as soon as it grows past max_request_bytes, and
 * closes, so the rest of the send fails while the answer (too_large) waits to
 * be read. Then the call goes on to read it.
 */
static bool answered_early(kb_client *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	char byte;

	if (c->rlen == 0 && (poll(&p, 1, 0) != 1 || recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 1))
		return false;
	c->broken = false;
	return true;
}

void kbc_batch_limits(const kb_client *c, size_t *items, size_t *bytes)
{
	*items = c->batch_items;
	*bytes = c->batch_bytes;
}

void kbc_batch_refused(kb_client *c, size_t items)
{
	if (c->refused_line > 0)
		c->batch_bytes = c->refused_line / 2;
	else if (items > 1)
		c->batch_items = items / 2;
}

kb_code kbc_roundtrip(kb_client *c, cJSON *req, cJSON **resp, kb_error *err)
{
	double id;
	size_t n, len = 0;
	char *line;
	cJSON *r;
	kb_code code;

	*resp = NULL;
	kb_free(c->last);
	c->last = NULL;
	if (c->broken)
		return kbc_error(err, KB_E_IO, "the connection to %s failed earlier; close "
				 "it and connect again", c->path);
	if (c->reopen && (code = reopen(c, err)) != KB_OK)
		return code;
	reopen_if_closed(c);
	if (c->timeout_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &c->deadline);
		c->deadline.tv_sec += c->timeout_ms / 1000;
		c->deadline.tv_nsec += (c->timeout_ms % 1000) * 1000000L;
		if (c->deadline.tv_nsec >= 1000000000L) {
			c->deadline.tv_sec++;
			c->deadline.tv_nsec -= 1000000000L;
		}
	}

	id = c->next_id++;
	cJSON_DeleteItemFromObjectCaseSensitive(req, "id");
	if (!cJSON_AddNumberToObject(req, "id", id))
		return kbc_error(err, KB_E_IO, "out of memory building a request");
	line = print_request(req, &n);
	if (line == NULL)
		return kbc_error(err, KB_E_IO, "out of memory building a request");
	code = send_all(c, line, n, err);
	wipe_free(line, n);
	if (code != KB_OK && !answered_early(c))
		return code;
	c->refused_line = 0;

	for (;;) {
		if ((code = read_line(c, &len, err)) != KB_OK)
			return code;
		r = cJSON_ParseWithLength(c->rbuf, len);
		if (!cJSON_IsObject(r)) {
			kbc_json_delete(r);
			c->broken = true;
			return kbc_error(err, KB_E_PROTOCOL, "keybrokerd on %s sent a line that "
					 "is not a JSON object", c->path);
		}
		if (is_ours(r, id))
			break;
		kbc_json_delete(r);     /* an answer to an earlier, abandoned call */
		drop_line(c, len);
	}
	if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r, "id"))) {
		c->reopen = true;
		c->refused_line = n - 1;
	}
	code = keep_last(c, len, err);
	drop_line(c, len);
	if (code != KB_OK) {
		kbc_json_delete(r);
		return code;
	}

	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"))) {
		*resp = r;
		kbc_error(err, KB_OK, "%s", "");
		return KB_OK;
	}
	if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "ok")))
		code = broker_error(c, r, err);
	else
		code = kbc_error(err, KB_E_PROTOCOL, "keybrokerd on %s sent a response "
				 "without \"ok\"", c->path);
	kbc_json_delete(r);
	return code;
}

kb_code kb_call(kb_client *c, const char *request_json, char **response_json, kb_error *err)
{
	cJSON *req, *resp = NULL;
	kb_code code;

	if (response_json != NULL)
		*response_json = NULL;
	if (c == NULL || request_json == NULL || response_json == NULL)
		return kbc_error(err, KB_E_BAD_REQUEST, "kb_call: c, request_json and "
				 "response_json must not be NULL");
	req = cJSON_Parse(request_json);
	if (!cJSON_IsObject(req)) {
		kbc_json_delete(req);
		return kbc_error(err, KB_E_BAD_REQUEST, "kb_call: the request is not a "
				 "JSON object");
	}
	code = kbc_roundtrip(c, req, &resp, err);
	kbc_json_delete(req);
	kbc_json_delete(resp);
	if (c->last != NULL) {
		*response_json = strdup(c->last);
		if (*response_json == NULL)
			return kbc_error(err, KB_E_IO, "out of memory");
	}
	return code;
}
