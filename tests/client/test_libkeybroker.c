/*
 * test_libkeybroker.c: libkeybroker's framing, response matching and error
 * handling, driven over a real Unix socket.
 *
 * The other end of the socket is a peer thread that reads each request line
 * and answers it with a canned protocol line ("$ID" is replaced by the
 * request's id). It checks the client's parser, not the broker: the broker is
 * exercised by the integration tests.
 *
 * Usage: test_libkeybroker [TEST_NAME] runs one test (all without argument).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <unistd.h>

#include "../cases.h"
#include <cjson/cJSON.h>

#include "keybroker.h"

#define MAX_REPLIES 4

typedef struct peer {
	char dir[64];
	char path[108];
	int lfd;
	pthread_t thread;
	const char *replies[MAX_REPLIES]; /* one per request, in order; NULL ends */
	bool oversize;          /* after the replies, send a line over KB_MAX_RESPONSE */
	bool dribble;           /* send each reply a few bytes at a time */
	bool hang_up;           /* close right after the replies, else wait for EOF */
	char request[MAX_REPLIES][8192];
	int nrequests;
} peer;

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;  /* the client gave up on us: fine */
		p += w;
		n -= (size_t)w;
	}
}

/* read_request reads one line into buf; false at EOF. */
static bool read_request(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		ssize_t r = recv(fd, buf + n, 1, 0);

		if (r <= 0)
			return false;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	return true;
}

/* expand replaces every "$ID" in tmpl by id. */
static char *expand(const char *tmpl, const char *id)
{
	size_t cap = strlen(tmpl) * 2 + 64 + strlen(id) * 8, o = 0;
	char *s = malloc(cap);

	assert_non_null(s);
	for (const char *p = tmpl; *p; ) {
		if (strncmp(p, "$ID", 3) == 0) {
			o += (size_t)snprintf(s + o, cap - o, "%s", id);
			p += 3;
		} else {
			s[o++] = *p++;
		}
	}
	s[o] = '\0';
	return s;
}

static void *peer_main(void *arg)
{
	peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	char dummy[256];

	if (fd < 0)
		return NULL;
	for (int i = 0; i < MAX_REPLIES && p->replies[i] != NULL; i++) {
		cJSON *req;
		char *id, *line;

		if (!read_request(fd, p->request[i], sizeof(p->request[i])))
			break;
		p->nrequests++;
		req = cJSON_Parse(p->request[i]);
		id = cJSON_PrintUnformatted(cJSON_GetObjectItem(req, "id"));
		line = expand(p->replies[i], id ? id : "null");
		if (p->dribble) {
			for (size_t k = 0; line[k]; k += 3) {
				send_all(fd, line + k, strnlen(line + k, 3));
				usleep(2000);
			}
		} else {
			send_all(fd, line, strlen(line));
		}
		free(line);
		free(id);
		cJSON_Delete(req);
	}
	if (p->oversize) {
		size_t n = KB_MAX_RESPONSE + 4096;
		char *big = malloc(n);

		if (read_request(fd, p->request[p->nrequests], sizeof(p->request[0])))
			p->nrequests++;
		memset(big, 'x', n);
		send_all(fd, big, n);
		free(big);
	}
	if (!p->hang_up) {
		while (recv(fd, dummy, sizeof(dummy), 0) > 0)
			;
	}
	close(fd);
	return NULL;
}

/* peer_start listens on a fresh socket in a temp dir and answers one connection. */
static void peer_start(peer *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(p->dir, sizeof(p->dir), "/tmp/kbclient-XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	snprintf(p->path, sizeof(p->path), "%s/kb.sock", p->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->path);
	p->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(p->lfd >= 0);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(p->lfd, 4), 0);
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_stop(peer *p)
{
	pthread_join(p->thread, NULL);
	close(p->lfd);
	unlink(p->path);
	rmdir(p->dir);
}

static kb_client *connect_to(peer *p)
{
	kb_client *c = NULL;
	kb_error err;

	peer_start(p);
	assert_int_equal(kb_client_connect(p->path, &c, &err), KB_OK);
	assert_int_equal(err.code, KB_OK);
	assert_non_null(c);
	return c;
}

static void finish(peer *p, kb_client *c)
{
	kb_client_close(c);
	peer_stop(p);
}

static void response_with_our_id_is_chosen_among_out_of_order_lines(void **state)
{
	peer p = { .replies = {
		"{\"id\":4242,\"ok\":true,\"blob\":\"stale\"}\n"
		"{\"id\":\"other\",\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"m\"}}\n"
		"{\"id\":$ID,\"ok\":true,\"blob\":\"kb1:aes:01:AES-KWP:AAAA:BBBB\",\"key\":\"aes\","
		"\"version\":\"01\"}\n"
		"{\"id\":7777,\"ok\":true}\n",
		"{\"id\":$ID,\"ok\":true,\"key\":\"aes\",\"version\":\"02\"}\n" } };
	kb_client *c = connect_to(&p);
	kb_result r;
	kb_error err;
	const uint8_t pt[] = "0123456789abcdef";

	(void)state;
	assert_int_equal(kb_wrap(c, "aes", NULL, pt, 16, &r, &err), KB_OK);
	assert_string_equal(r.blob, "kb1:aes:01:AES-KWP:AAAA:BBBB");
	assert_string_equal(r.key, "aes");
	assert_string_equal(r.version, "01");
	kb_result_clear(&r);
	/* The line with id 7777 left in the buffer must be skipped too. */
	assert_int_equal(kb_rotate(c, "aes", &r, &err), KB_OK);
	assert_string_equal(r.version, "02");
	kb_result_clear(&r);
	finish(&p, c);
}

static void wrap_sends_op_key_alg_base64_plaintext_and_numeric_id(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":true,\"blob\":\"b\"}\n" } };
	kb_client *c = connect_to(&p);
	const uint8_t pt[] = { 0, 1, 2, 0xfe, 0xff };
	kb_result r;
	kb_error err;
	cJSON *req;

	(void)state;
	assert_int_equal(kb_wrap(c, "rsa", "RSA-OAEP", pt, sizeof(pt), &r, &err), KB_OK);
	kb_result_clear(&r);
	finish(&p, c);
	req = cJSON_Parse(p.request[0]);
	assert_non_null(req);
	assert_string_equal(cJSON_GetObjectItem(req, "op")->valuestring, "wrap");
	assert_string_equal(cJSON_GetObjectItem(req, "key")->valuestring, "rsa");
	assert_string_equal(cJSON_GetObjectItem(req, "alg")->valuestring, "RSA-OAEP");
	assert_string_equal(cJSON_GetObjectItem(req, "plaintext")->valuestring, "AAEC/v8=");
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(req, "id")));
	cJSON_Delete(req);
}

static void unwrap_returns_plaintext_bytes_key_version_and_cached(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":true,\"plaintext\":\"aGVsbG8=\","
				"\"key\":\"aes\",\"version\":\"01\",\"cached\":true}\n" } };
	kb_client *c = connect_to(&p);
	kb_result r;
	kb_error err;

	(void)state;
	assert_int_equal(kb_unwrap(c, "kb1:aes:01:AES-KWP:AAAA:BBBB", &r, &err), KB_OK);
	assert_int_equal(r.plaintext_len, 5);
	assert_memory_equal(r.plaintext, "hello", 5);
	assert_string_equal(r.key, "aes");
	assert_string_equal(r.version, "01");
	assert_true(r.cached);
	assert_false(r.reused);
	assert_null(r.blob);
	kb_result_clear(&r);
	assert_null(r.plaintext);
	assert_int_equal(r.plaintext_len, 0);
	finish(&p, c);
}

static void datakey_sends_bits_and_returns_blob_and_plaintext(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":true,\"plaintext\":\"AAAAAAAAAAAAAAAAAAAAAA==\","
				"\"blob\":\"kb1:x\",\"key\":\"aes\",\"version\":\"01\","
				"\"reused\":true}\n" } };
	kb_client *c = connect_to(&p);
	kb_result r;
	kb_error err;

	(void)state;
	assert_int_equal(kb_datakey(c, "aes", 128, &r, &err), KB_OK);
	assert_int_equal(r.plaintext_len, 16);
	assert_string_equal(r.blob, "kb1:x");
	assert_true(r.reused);
	kb_result_clear(&r);
	finish(&p, c);
	assert_non_null(strstr(p.request[0], "\"bits\":128"));
}

static void broker_error_returns_its_code_and_message_and_keeps_connection(void **state)
{
	peer p = { .replies = {
		"{\"id\":$ID,\"ok\":false,\"error\":{\"code\":\"key_disabled\","
		"\"message\":\"key aes version 01 is disabled; enable it\"}}\n",
		"{\"id\":$ID,\"ok\":true,\"flushed\":3}\n" } };
	kb_client *c = connect_to(&p);
	kb_result r;
	kb_error err;
	unsigned n = 99;

	(void)state;
	assert_int_equal(kb_unwrap(c, "kb1:aes:01:AES-KWP:AAAA:BBBB", &r, &err),
			 KB_E_KEY_DISABLED);
	assert_int_equal(err.code, KB_E_KEY_DISABLED);
	assert_string_equal(err.message, "key aes version 01 is disabled; enable it");
	assert_null(r.plaintext);
	kb_result_clear(&r);
	assert_non_null(strstr(kb_client_last_response(c), "key_disabled"));
	assert_int_equal(kb_flush(c, "aes", &n, &err), KB_OK);
	assert_int_equal(n, 3);
	finish(&p, c);
	assert_non_null(strstr(p.request[1], "\"op\":\"flush\""));
	assert_non_null(strstr(p.request[1], "\"key\":\"aes\""));
}

static void unknown_error_code_maps_to_internal_and_names_the_code(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":false,\"error\":{\"code\":\"brand_new\","
				"\"message\":\"m\"}}\n" } };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *json;

	(void)state;
	assert_int_equal(kb_status(c, &json, &err), KB_E_INTERNAL);
	assert_null(json);
	assert_non_null(strstr(err.message, "brand_new"));
	finish(&p, c);
}

static void error_with_null_id_answers_the_pending_request(void **state)
{
	peer p = { .replies = { "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"too_large\","
				"\"message\":\"request line over 65536 bytes\"}}\n" } };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *json;

	(void)state;
	assert_int_equal(kb_get(c, "aes", &json, &err), KB_E_TOO_LARGE);
	assert_string_equal(err.message, "request line over 65536 bytes");
	finish(&p, c);
}

static void oversize_response_is_protocol_error(void **state)
{
	peer p = { .oversize = true };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *text;

	(void)state;
	assert_int_equal(kb_metrics(c, &text, &err), KB_E_PROTOCOL);
	assert_null(text);
	assert_non_null(strstr(err.message, "1048576"));
	/* The stream is out of step now: later calls fail at once. */
	assert_int_equal(kb_metrics(c, &text, &err), KB_E_IO);
	finish(&p, c);
}

static void closed_connection_is_io_error_naming_socket_and_keybrokerd(void **state)
{
	peer p = { .hang_up = true };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *json;

	(void)state;
	assert_int_equal(kb_status(c, &json, &err), KB_E_IO);
	assert_non_null(strstr(err.message, p.path));
	assert_non_null(strstr(err.message, "keybrokerd"));
	assert_int_equal(kb_status(c, &json, &err), KB_E_IO);
	assert_non_null(strstr(err.message, "failed earlier"));
	finish(&p, c);
}

static void connection_closed_mid_line_is_io_error(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":tr" }, .hang_up = true };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *json;

	(void)state;
	assert_int_equal(kb_status(c, &json, &err), KB_E_IO);
	assert_non_null(strstr(err.message, p.path));
	finish(&p, c);
}

static void missing_socket_is_io_error_suggesting_keybrokerd(void **state)
{
	kb_client *c = (kb_client *)&c;
	kb_error err;

	(void)state;
	assert_int_equal(kb_client_connect("/nonexistent/keybroker.sock", &c, &err), KB_E_IO);
	assert_null(c);
	assert_int_equal(err.code, KB_E_IO);
	assert_non_null(strstr(err.message, "/nonexistent/keybroker.sock"));
	assert_non_null(strstr(err.message, "is keybrokerd running?"));
}

/* connect_error connects to path and returns the error's message (a static copy). */
static const char *connect_error(const char *path)
{
	static kb_error err;
	kb_client *c = (kb_client *)&c;

	assert_int_equal(kb_client_connect(path, &c, &err), KB_E_IO);
	assert_null(c);
	return err.message;
}

static void socket_path_that_is_a_directory_says_so(void **state)
{
	char dir[] = "/tmp/kbtest-XXXXXX";
	const char *m;

	(void)state;
	assert_non_null(mkdtemp(dir));
	m = connect_error(dir);
	rmdir(dir);
	assert_non_null(strstr(m, dir));
	assert_non_null(strstr(m, "is a directory, not a socket"));
	assert_null(strstr(m, "refused"));
}

static void socket_path_that_is_a_file_says_it_is_not_a_socket(void **state)
{
	char dir[] = "/tmp/kbtest-XXXXXX", file[64], fifo[64];
	const char *m;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/file", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_non_null(f = fopen(file, "w"));
	fclose(f);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	m = connect_error(file);
	assert_non_null(strstr(m, "is a regular file, not a socket"));
	m = connect_error(fifo);
	assert_non_null(strstr(m, "is a special file, not a socket"));
	unlink(file);
	unlink(fifo);
	rmdir(dir);
}

static void socket_no_one_listens_on_says_so(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/kbtest-XXXXXX";
	const char *m;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/kb.sock", dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);  /* bound, never listening */
	m = connect_error(sa.sun_path);
	close(fd);
	unlink(sa.sun_path);
	rmdir(dir);
	assert_non_null(strstr(m, "no one listens on this socket"));
	assert_non_null(strstr(m, "is keybrokerd running?"));
}

static void socket_under_an_unsearchable_directory_is_permission_denied(void **state)
{
	char dir[] = "/tmp/kbtest-XXXXXX", path[64], m[KB_ERROR_MESSAGE_MAX] = "";
	int fds[2], st;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/kb.sock", dir);
	assert_int_equal(chmod(dir, 0600), 0);
	assert_int_equal(pipe(fds), 0);
	/* root searches any directory: as root, connect from a child that is nobody */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kb_client *c = NULL;
		kb_error err = { 0 };

		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		kb_client_connect(path, &c, &err);
		_exit(write(fds[1], err.message, strlen(err.message)) > 0 ? 0 : 4);
	}
	close(fds[1]);
	assert_true(read(fds[0], m, sizeof(m) - 1) > 0);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	rmdir(dir);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_non_null(strstr(m, strerror(EACCES)));
	assert_non_null(strstr(m, "may not reach the socket"));
}

static void library_messages_name_the_env_var_not_cli_flags(void **state)
{
	char dir[] = "/tmp/kbtest-XXXXXX";
	kb_client *c = NULL;
	kb_error err;

	(void)state;
	assert_non_null(mkdtemp(dir));
	setenv("XDG_RUNTIME_DIR", dir, 1);
	unsetenv(KB_SOCKET_ENV);
	assert_int_equal(kb_client_connect(NULL, &c, &err), KB_E_IO);
	assert_non_null(strstr(err.message, "the default socket; " KB_SOCKET_ENV " names another"));
	assert_null(strstr(err.message, "-s"));
	setenv(KB_SOCKET_ENV, dir, 1);
	assert_int_equal(kb_client_connect(NULL, &c, &err), KB_E_IO);
	unsetenv(KB_SOCKET_ENV);
	rmdir(dir);
	assert_non_null(strstr(err.message, "from $" KB_SOCKET_ENV));
	assert_null(strstr(err.message, "-s"));
}

static void line_that_is_not_json_is_protocol_error(void **state)
{
	peer p = { .replies = { "hello, I am not the broker\n" } };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *json;

	(void)state;
	assert_int_equal(kb_status(c, &json, &err), KB_E_PROTOCOL);
	finish(&p, c);
}

static void bad_base64_plaintext_is_protocol_error(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":true,\"plaintext\":\"a*b=\"}\n" } };
	kb_client *c = connect_to(&p);
	kb_result r;
	kb_error err;

	(void)state;
	assert_int_equal(kb_unwrap(c, "kb1:x", &r, &err), KB_E_PROTOCOL);
	assert_null(r.plaintext);
	assert_int_equal(r.plaintext_len, 0);
	assert_non_null(strstr(err.message, "plaintext"));
	finish(&p, c);
}

static void wrap_response_without_blob_is_protocol_error(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":true,\"key\":\"aes\"}\n" } };
	kb_client *c = connect_to(&p);
	kb_result r;
	kb_error err;

	(void)state;
	assert_int_equal(kb_wrap(c, "aes", NULL, (const uint8_t *)"k", 1, &r, &err),
			 KB_E_PROTOCOL);
	assert_null(r.key);
	assert_non_null(strstr(err.message, "blob"));
	finish(&p, c);
}

static void response_arriving_in_pieces_is_read_whole(void **state)
{
	peer p = { .dribble = true, .replies = {
		"{\"id\":$ID,\"ok\":true,\"text\":\"# HELP keybroker_cache_hits_total x\\n\"}\n" } };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *text;

	(void)state;
	assert_int_equal(kb_metrics(c, &text, &err), KB_OK);
	assert_string_equal(text, "# HELP keybroker_cache_hits_total x\n");
	kb_free(text);
	finish(&p, c);
}

static void call_replaces_id_and_returns_response_line_as_is(void **state)
{
	static const char line[] = "{\"id\":$ID,\"ok\":true,\"checks\":[],  \"extra\":1}";
	peer p = { .replies = { "{\"id\":$ID,\"ok\":true,\"checks\":[],  \"extra\":1}\n" } };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *resp, *want, *id;
	cJSON *req;

	(void)state;
	assert_int_equal(kb_call(c, "{\"op\":\"doctor\",\"key\":\"aes\",\"id\":\"mine\"}", &resp,
				 &err), KB_OK);
	finish(&p, c);
	req = cJSON_Parse(p.request[0]);
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(req, "id")));
	assert_string_equal(cJSON_GetObjectItem(req, "op")->valuestring, "doctor");
	id = cJSON_PrintUnformatted(cJSON_GetObjectItem(req, "id"));
	want = expand(line, id);
	assert_string_equal(resp, want);
	free(want);
	free(id);
	kb_free(resp);
	cJSON_Delete(req);
}

static void call_returns_error_response_line_with_the_code(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":false,\"error\":{\"code\":\"unknown_op\","
				"\"message\":\"no op frob\"}}\n" } };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *resp;

	(void)state;
	assert_int_equal(kb_call(c, "{\"op\":\"frob\"}", &resp, &err), KB_E_UNKNOWN_OP);
	assert_non_null(resp);
	assert_non_null(strstr(resp, "unknown_op"));
	kb_free(resp);
	assert_int_equal(kb_call(c, "[1,2]", &resp, &err), KB_E_BAD_REQUEST);
	assert_null(resp);
	finish(&p, c);
}

static void call_times_out_with_io_error_when_broker_is_silent(void **state)
{
	peer p = { 0 };
	kb_client *c = connect_to(&p);
	kb_error err;
	char *json;

	(void)state;
	kb_client_set_timeout(c, 100);
	assert_int_equal(kb_status(c, &json, &err), KB_E_IO);
	assert_non_null(strstr(err.message, "timed out"));
	finish(&p, c);
}

static void null_arguments_are_bad_request_without_io(void **state)
{
	kb_result r;
	kb_error err;

	(void)state;
	assert_int_equal(kb_unwrap(NULL, "b", &r, &err), KB_E_BAD_REQUEST);
	assert_int_equal(kb_wrap(NULL, NULL, NULL, NULL, 0, &r, &err), KB_E_BAD_REQUEST);
	assert_null(r.blob);
	assert_int_equal(kb_status(NULL, NULL, NULL), KB_E_BAD_REQUEST);
	kb_result_clear(NULL);
	kb_free(NULL);
	kb_client_close(NULL);
}

static void default_socket_is_in_xdg_runtime_dir(void **state)
{
	char buf[KB_SOCKET_PATH_MAX + 1];

	(void)state;
	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	assert_int_equal(kb_default_socket(buf, sizeof(buf)), strlen("/run/user/1000/keybroker.sock"));
	assert_string_equal(buf, "/run/user/1000/keybroker.sock");
}

static void default_socket_falls_back_without_xdg_runtime_dir(void **state)
{
	char buf[KB_SOCKET_PATH_MAX + 1];

	(void)state;
	unsetenv("XDG_RUNTIME_DIR");
	assert_true(kb_default_socket(buf, sizeof(buf)) > 0);
	assert_string_equal(buf, KB_FALLBACK_SOCKET);
	setenv("XDG_RUNTIME_DIR", "", 1);
	assert_true(kb_default_socket(buf, sizeof(buf)) > 0);
	assert_string_equal(buf, KB_FALLBACK_SOCKET);
}

static void default_socket_refuses_path_too_long_for_a_socket(void **state)
{
	char buf[512], dir[200];

	(void)state;
	memset(dir, 'd', sizeof(dir) - 1);
	dir[0] = '/';
	dir[sizeof(dir) - 1] = '\0';
	setenv("XDG_RUNTIME_DIR", dir, 1);
	assert_int_equal(kb_default_socket(buf, sizeof(buf)), -1);
	assert_string_equal(buf, "");
}

static void connect_without_path_uses_keybroker_socket_env(void **state)
{
	peer p = { .replies = { "{\"id\":$ID,\"ok\":true,\"version\":\"0.1.0\"}\n" } };
	kb_client *c = NULL;
	kb_error err;
	char *json;

	(void)state;
	peer_start(&p);
	setenv(KB_SOCKET_ENV, p.path, 1);
	assert_int_equal(kb_client_connect(NULL, &c, &err), KB_OK);
	unsetenv(KB_SOCKET_ENV);
	assert_string_equal(kb_client_socket(c), p.path);
	assert_int_equal(kb_status(c, &json, &err), KB_OK);
	assert_non_null(strstr(json, "\"version\":\"0.1.0\""));
	kb_free(json);
	finish(&p, c);
}

static const struct CMUnitTest tests[] = {
	CASE(response_with_our_id_is_chosen_among_out_of_order_lines, "libkeybroker - the response with our id is chosen among out-of-order lines"),
	CASE(wrap_sends_op_key_alg_base64_plaintext_and_numeric_id, "libkeybroker - wrap sends op, key, alg, base64 plaintext and a numeric id"),
	CASE(unwrap_returns_plaintext_bytes_key_version_and_cached, "libkeybroker - unwrap returns the plaintext bytes, key, version and cached"),
	CASE(datakey_sends_bits_and_returns_blob_and_plaintext, "libkeybroker - datakey sends bits and returns blob and plaintext"),
	CASE(broker_error_returns_its_code_and_message_and_keeps_connection, "libkeybroker - broker error returns its code and message and keeps connection"),
	CASE(unknown_error_code_maps_to_internal_and_names_the_code, "libkeybroker - unknown error code maps to internal and names the code"),
	CASE(error_with_null_id_answers_the_pending_request, "libkeybroker - error with null id answers the pending request"),
	CASE(oversize_response_is_protocol_error, "libkeybroker - oversize response is protocol_error"),
	CASE(closed_connection_is_io_error_naming_socket_and_keybrokerd, "libkeybroker - closed connection is io_error naming socket and keybrokerd"),
	CASE(connection_closed_mid_line_is_io_error, "libkeybroker - a connection closed mid-line is io_error"),
	CASE(missing_socket_is_io_error_suggesting_keybrokerd, "libkeybroker - missing socket is io_error suggesting keybrokerd"),
	CASE(socket_path_that_is_a_directory_says_so, "libkeybroker - socket path that is a directory says so"),
	CASE(socket_path_that_is_a_file_says_it_is_not_a_socket, "libkeybroker - socket path that is a file says it is not a socket"),
	CASE(socket_no_one_listens_on_says_so, "libkeybroker - socket no one listens on says so"),
	CASE(socket_under_an_unsearchable_directory_is_permission_denied, "libkeybroker - socket under an unsearchable directory is permission_denied"),
	CASE(library_messages_name_the_env_var_not_cli_flags, "libkeybroker - library messages name the env var not CLI flags"),
	CASE(line_that_is_not_json_is_protocol_error, "libkeybroker - line that is not JSON is protocol_error"),
	CASE(bad_base64_plaintext_is_protocol_error, "libkeybroker - bad base64 plaintext is protocol_error"),
	CASE(wrap_response_without_blob_is_protocol_error, "libkeybroker - wrap response without blob is protocol_error"),
	CASE(response_arriving_in_pieces_is_read_whole, "libkeybroker - response arriving in pieces is read whole"),
	CASE(call_replaces_id_and_returns_response_line_as_is, "libkeybroker - call replaces id and returns response line as is"),
	CASE(call_returns_error_response_line_with_the_code, "libkeybroker - call returns error response line with the code"),
	CASE(call_times_out_with_io_error_when_broker_is_silent, "libkeybroker - call times out with io_error when broker is silent"),
	CASE(null_arguments_are_bad_request_without_io, "libkeybroker - null arguments are bad_request without io"),
	CASE(default_socket_is_in_xdg_runtime_dir, "libkeybroker - default socket is in XDG_RUNTIME_DIR"),
	CASE(default_socket_falls_back_without_xdg_runtime_dir, "libkeybroker - default socket falls back without XDG_RUNTIME_DIR"),
	CASE(default_socket_refuses_path_too_long_for_a_socket, "libkeybroker - default socket refuses path too long for a socket"),
	CASE(connect_without_path_uses_keybroker_socket_env, "libkeybroker - connect without a path uses KEYBROKER_SOCKET from the environment"),
};

CASES_MAIN("libkeybroker", tests, NULL, NULL)
