/*
 * https.c: a minimal HTTP/1.1 keep-alive client over OpenSSL for the Azure
 * floor. It reads the response head to its blank line and then
 * Content-Length bytes; anything else (chunked bodies) counts as an error.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "b64.h"
#include "https.h"

struct https_bench {
	bench_driver d;
	SSL_CTX *ctx;
	char host[256], port[8];
	char *req;
	size_t req_len;
};

typedef struct https_conn {
	https_bench *h;
	int fd;
	SSL *ssl;
	char buf[65536];
} https_conn;

static int is_localhost(const char *host)
{
	size_t n = strlen(host);

	return strcmp(host, "localhost") == 0 || (n > 10 && strcmp(host + n - 10, ".localhost") == 0);
}

static int https_open(void *arg, int client, void **conn, char *err, size_t errlen)
{
	https_bench *h = arg;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	https_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -1;
	c->h = h;
	c->fd = -1;
	/* names under .localhost are loopback (RFC 6761), as curl and the broker's libcurl treat them */
	if (getaddrinfo(is_localhost(h->host) ? "127.0.0.1" : h->host, h->port, &hints, &ai) != 0 ||
	    (c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		snprintf(err, errlen, "cannot connect to %s:%s", h->host, h->port);
		goto fail;
	}
	c->ssl = SSL_new(h->ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_tlsext_host_name(c->ssl, h->host) ||
	    !SSL_set1_host(c->ssl, h->host) || SSL_connect(c->ssl) != 1) {
		snprintf(err, errlen, "TLS to %s:%s failed: %s", h->host, h->port,
			 ERR_reason_error_string(ERR_get_error()));
		goto fail;
	}
	freeaddrinfo(ai);
	*conn = c;
	/* one request first: an endpoint that refuses is skipped, not measured failing */
	if (c->h->d.op(c) != BENCH_OK) {
		snprintf(err, errlen, "the first unwrapkey request failed: %s", h->d.first_error);
		h->d.close(c);
		return -1;
	}
	return 0;
fail:
	if (ai != NULL)
		freeaddrinfo(ai);
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return -1;
}

static int https_op(void *conn)
{
	https_conn *c = conn;
	size_t len = 0, want = 0;
	char *end = NULL, *cl;

	if (SSL_write(c->ssl, c->h->req, (int)c->h->req_len) != (int)c->h->req_len)
		return BENCH_ERR;
	for (;;) {
		int r;

		if (end != NULL && len >= want)
			break;
		if (len >= sizeof(c->buf) - 1)
			return BENCH_ERR;
		r = SSL_read(c->ssl, c->buf + len, (int)(sizeof(c->buf) - 1 - len));
		if (r <= 0)
			return BENCH_ERR;
		len += (size_t)r;
		c->buf[len] = '\0';
		if (end == NULL && (end = strstr(c->buf, "\r\n\r\n")) != NULL) {
			cl = strcasestr(c->buf, "\r\ncontent-length:");
			if (cl == NULL || cl > end)
				return BENCH_ERR;
			want = (size_t)(end + 4 - c->buf) + strtoul(cl + 17, NULL, 10);
		}
	}
	if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0) {
		snprintf(c->h->d.first_error, sizeof(c->h->d.first_error), "%.100s", c->buf);
		return BENCH_ERR;
	}
	return BENCH_OK;
}

static void https_close(void *conn)
{
	https_conn *c = conn;

	SSL_free(c->ssl);
	close(c->fd);
	explicit_bzero(c->buf, sizeof(c->buf));
	free(c);
}

https_bench *https_bench_new(const char *key_url, const char *token_file, const char *ca_file,
			     const char *alg, const uint8_t *ct, size_t ctlen, char *err, size_t errlen)
{
	https_bench *h = calloc(1, sizeof(*h));
	char token[8192] = "", body[2048], ct64[1400], path[1024];
	const char *p = key_url + 8, *slash, *colon;
	FILE *f;
	int n;

	if (h == NULL || strncmp(key_url, "https://", 8) != 0 || ctlen > 1024) {
		snprintf(err, errlen, "the Azure key URL must start with https://");
		free(h);
		return NULL;
	}
	slash = strchr(p, '/');
	colon = memchr(p, ':', slash ? (size_t)(slash - p) : strlen(p));
	if (slash == NULL || (size_t)((colon ? colon : slash) - p) >= sizeof(h->host)) {
		snprintf(err, errlen, "cannot read host and path from %s", key_url);
		free(h);
		return NULL;
	}
	snprintf(h->host, sizeof(h->host), "%.*s", (int)((colon ? colon : slash) - p), p);
	snprintf(h->port, sizeof(h->port), "%.*s", colon ? (int)(slash - colon - 1) : 3, colon ? colon + 1 : "443");
	snprintf(path, sizeof(path), "%s", slash);
	f = token_file ? fopen(token_file, "r") : NULL;
	if (f == NULL || fgets(token, sizeof(token), f) == NULL) {
		snprintf(err, errlen, "cannot read the bearer token from %s", token_file ? token_file : "(none)");
		if (f)
			fclose(f);
		free(h);
		return NULL;
	}
	fclose(f);
	token[strcspn(token, "\r\n")] = '\0';
	ct64[kb_b64_encode(ct, ctlen, ct64, KB_B64_URL)] = '\0';
	n = snprintf(body, sizeof(body), "{\"alg\":\"%s\",\"value\":\"%s\"}", alg, ct64);
	if (asprintf(&h->req, "POST %s/unwrapkey?api-version=7.4 HTTP/1.1\r\nHost: %s%s%s\r\n"
		     "Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
		     "Connection: keep-alive\r\n\r\n%s", path, h->host, strcmp(h->port, "443") ? ":" : "",
		     strcmp(h->port, "443") ? h->port : "", token, n, body) < 0) {
		free(h);
		return NULL;
	}
	explicit_bzero(token, sizeof(token));
	h->req_len = strlen(h->req);
	h->ctx = SSL_CTX_new(TLS_client_method());
	if (h->ctx == NULL || (ca_file ? SSL_CTX_load_verify_locations(h->ctx, ca_file, NULL)
				       : SSL_CTX_set_default_verify_paths(h->ctx)) != 1) {
		snprintf(err, errlen, "cannot load the CA file %s", ca_file ? ca_file : "(system)");
		https_bench_free(h);
		return NULL;
	}
	SSL_CTX_set_verify(h->ctx, SSL_VERIFY_PEER, NULL);
	h->d = (bench_driver){ .arg = h, .open = https_open, .op = https_op, .close = https_close };
	return h;
}

bench_driver *https_bench_driver(https_bench *h)
{
	return &h->d;
}

void https_bench_free(https_bench *h)
{
	if (h == NULL)
		return;
	SSL_CTX_free(h->ctx);
	if (h->req != NULL) {
		explicit_bzero(h->req, h->req_len);
		free(h->req);
	}
	free(h);
}
