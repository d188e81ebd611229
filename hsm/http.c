/*
 * http.c: HTTPS for the Azure backend. Each slot owns one curl easy handle,
 * so its connections stay alive between requests and no lock is needed.
 * TLS is always verified. A request is retried on 429, 5xx and connection
 * errors, with exponential backoff and full jitter, or after the wait the
 * service names, but never past the key's timeout.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "az.h"

#define BACKOFF_BASE_MS 250
#define BACKOFF_CAP_MS 8000
#define CONNECT_TIMEOUT_MS 5000

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

az_slot *az_slots_new(int n)
{
	az_slot *s;

	pthread_once(&curl_once, curl_init);
	s = calloc((size_t)n, sizeof(*s));
	if (s == NULL)
		return NULL;
	for (int i = 0; i < n; i++) {
		if ((s[i].h = curl_easy_init()) == NULL) {
			az_slots_free(s, n);
			return NULL;
		}
	}
	return s;
}

void az_slots_free(az_slot *s, int n)
{
	for (int i = 0; s && i < n; i++)
		if (s[i].h)
			curl_easy_cleanup(s[i].h);
	free(s);
}

/* az_resp_reset wipes and empties resp for another request; az_resp_free releases it. */
static void az_resp_reset(az_resp *r)
{
	kb_buf body = r->body;

	kb_buf_consume(&body, body.len);
	body.oom = false;
	memset(r, 0, sizeof(*r));
	r->body = body;
	r->retry_after_ms = -1;
}

void az_resp_free(az_resp *r)
{
	kb_buf_free(&r->body);
	memset(r, 0, sizeof(*r));
}

const char *az_resp_text(const az_resp *r)
{
	return r->body.data ? r->body.data : "";
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
	az_resp *r = user;
	size_t n = size * nmemb;

	if (r->body.len + n + 1 > AZ_BODY_MAX) {
		r->too_big = true;
		return 0;
	}
	return kb_buf_append_text(&r->body, data, n) ? n : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
	az_resp *r = user;
	size_t n = size * nmemb, nl;
	char line[600], *colon, *v;
	int64_t ms;

	if (n >= sizeof(line))
		return n;
	memcpy(line, data, n);
	line[n] = '\0';
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		line[--n] = '\0';
	if (strncmp(line, "HTTP/", 5) == 0) {
		/* a new answer (e.g. after 100 Continue): forget the last one's headers */
		r->www_auth[0] = '\0';
		r->retry_after_ms = -1;
		return size * nmemb;
	}
	colon = strchr(line, ':');
	if (colon == NULL)
		return size * nmemb;
	*colon = '\0';
	v = colon + 1;
	while (*v == ' ')
		v++;
	if (strcasecmp(line, "www-authenticate") == 0) {
		nl = strlen(v);
		if (nl < sizeof(r->www_auth))
			memcpy(r->www_auth, v, nl + 1);
	} else if ((ms = az_parse_retry_after(line, v, (int64_t)time(NULL))) >= 0) {
		/* the ms headers are more precise than Retry-After: they win */
		if (r->retry_after_ms < 0 || strcasecmp(line, "retry-after") != 0)
			r->retry_after_ms = ms;
	}
	return size * nmemb;
}

/* The ids are unique, not secret: 16 random bytes drawn once per process, the
 * request counter added to the last 8, so a miss does not pay for RAND_bytes
 * (its DRBG lock and fork check cost more than the rest of the headers). */
static uint8_t reqid_base[16];
static atomic_uint_fast64_t reqid_count;
static pthread_once_t reqid_once = PTHREAD_ONCE_INIT;

static void reqid_init(void)
{
	if (RAND_bytes(reqid_base, sizeof(reqid_base)) != 1)
		memset(reqid_base, 0, sizeof(reqid_base));
}

static void request_id(char out[AZ_REQID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	uint64_t n;
	char *o = out;

	pthread_once(&reqid_once, reqid_init);
	memcpy(b, reqid_base, sizeof(b));
	n = atomic_fetch_add_explicit(&reqid_count, 1, memory_order_relaxed);
	for (int i = 15; i >= 8; i--) { /* base + n, big-endian, carrying across the last 8 bytes */
		unsigned v = b[i] + (unsigned)(n & 0xff);

		b[i] = (uint8_t)v;
		n = (n >> 8) + (v >> 8);
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* a version-4 UUID's shape, as Azure's own SDKs send */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 0x0f];
	}
	*o = '\0';
}

/* net_retryable: may a failed attempt be sent again? */
static bool net_retryable(CURLcode cc, bool idempotent)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
		return true; /* nothing was sent */
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return idempotent;
	default:
		return false;
	}
}

static bool status_retryable(long status)
{
	return status == 408 || status == 429 || (status >= 500 && status != 501 && status != 505);
}

/* jitter_ms is uniform in [0, min(cap, base * 2^attempt)]: "full jitter". */
static int64_t jitter_ms(int attempt)
{
	int64_t ceiling = BACKOFF_BASE_MS;
	uint32_t r;

	for (int i = 0; i < attempt && ceiling < BACKOFF_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > BACKOFF_CAP_MS)
		ceiling = BACKOFF_CAP_MS;
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		r = (uint32_t)kb_now_ms();
	return (int64_t)(r % (uint32_t)(ceiling + 1));
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* append_secret appends the header prefix + value to h through a buffer it wipes; h is kept on failure. */
static struct curl_slist *append_secret(struct curl_slist *h, const char *prefix, const char *value)
{
	size_t n = strlen(prefix) + strlen(value) + 1;
	char *line = malloc(n);
	struct curl_slist *t = NULL;

	if (line) {
		snprintf(line, n, "%s%s", prefix, value);
		t = curl_slist_append(h, line);
		OPENSSL_cleanse(line, n);
		free(line);
	}
	return t ? t : h;
}

/* headers builds the request's header list; the caller wipes and frees it (it holds the token). */
static struct curl_slist *headers(const az_req *rq, const char *rid)
{
	struct curl_slist *h = NULL, *t;
	char line[AZ_REQID_LEN + 64];

	snprintf(line, sizeof(line), "x-ms-client-request-id: %s", rid);
	h = curl_slist_append(h, line);
	if (h && (t = curl_slist_append(h, "x-ms-return-client-request-id: true")))
		h = t;
	if (h && (t = curl_slist_append(h, "Accept: application/json")))
		h = t;
	/* no "Expect: 100-continue" (libcurl adds it to larger POST bodies, such as a
	 * token request with a client assertion): it costs a round trip, or a 1 s wait
	 * on a server that does not answer it */
	if (h && (t = curl_slist_append(h, "Expect:")))
		h = t;
	if (h && rq->content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s", rq->content_type);
		if ((t = curl_slist_append(h, line)))
			h = t;
	}
	if (h && rq->metadata && (t = curl_slist_append(h, "Metadata: true")))
		h = t;
	if (h && rq->identity_header)
		h = append_secret(h, "X-IDENTITY-HEADER: ", rq->identity_header);
	if (h && rq->bearer)
		h = append_secret(h, "Authorization: Bearer ", rq->bearer);
	return h;
}

void az_http_headers_free(struct curl_slist *h)
{
	for (struct curl_slist *p = h; p; p = p->next)
		if (p->data)
			OPENSSL_cleanse(p->data, strlen(p->data));
	curl_slist_free_all(h);
}

void az_http_prepare(const az_conf *conf, CURL *h, bool set_up, char *errbuf, const az_req *rq,
		     struct curl_slist *hdrs, int64_t remaining_ms, az_resp *r)
{
	kb_buf_consume(&r->body, r->body.len);
	if (r->body.data)
		r->body.data[0] = '\0';
	r->status = 0;
	r->www_auth[0] = '\0';
	r->retry_after_ms = -1;
	r->too_big = false;
	errbuf[0] = '\0';
	if (!set_up) {
		/* what is the same for every request of conf: set once per handle where the
		 * caller keeps handles per key (multi.c), not reset and set again per miss */
		curl_easy_reset(h); /* keeps the connections alive; forgets the last request's options */
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		if (conf->ca_file)
			curl_easy_setopt(h, CURLOPT_CAINFO, conf->ca_file);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(h, CURLOPT_USERAGENT, "keybroker/" KB_VERSION);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	}
	curl_easy_setopt(h, CURLOPT_URL, rq->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, rq->plain_http ? "http,https" : "https");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)remaining_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(remaining_ms < CONNECT_TIMEOUT_MS ? remaining_ms : CONNECT_TIMEOUT_MS));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	if (strcmp(rq->method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(rq->body ? rq->body_len : 0));
	}
	r->attempts++;
}

void az_http_collect(CURL *h, const char *errbuf, CURLcode cc, az_resp *r)
{
	r->cc = cc;
	if (r->cc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
		r->neterr[0] = '\0';
	} else {
		snprintf(r->neterr, sizeof(r->neterr), "%s", errbuf[0] ? errbuf : curl_easy_strerror(r->cc));
		if (r->too_big)
			snprintf(r->neterr, sizeof(r->neterr), "the answer is larger than %d bytes", AZ_BODY_MAX);
	}
	/* the request body may hold a secret or a DEK: curl keeps no copy of POSTFIELDS */
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
}

int64_t az_http_next_wait(const az_conf *conf, bool idempotent, az_resp *r, int n, int64_t deadline_ms)
{
	int64_t wait;

	if (r->cc == CURLE_OK ? !status_retryable(r->status) : !net_retryable(r->cc, idempotent))
		return -1;
	if (r->cc == CURLE_OK && r->status != 429 && r->status != 503 && !idempotent)
		return -1;
	if (n >= conf->max_retries)
		return -1;
	wait = r->cc == CURLE_OK && r->retry_after_ms >= 0 ? r->retry_after_ms : jitter_ms(n);
	if (kb_now_ms() + wait >= deadline_ms) {
		r->gave_up_early = true;
		return -1;
	}
	return wait;
}

struct curl_slist *az_http_headers(const az_req *rq, az_resp *resp)
{
	az_resp_reset(resp);
	request_id(resp->request_id);
	return headers(rq, resp->request_id);
}

void az_http_do(const az_conf *conf, az_slot *s, const az_req *rq, az_resp *resp)
{
	int64_t start = kb_now_ms(), deadline = start + conf->timeout_ms, now, wait;
	struct curl_slist *hdrs = az_http_headers(rq, resp);

	if (hdrs == NULL) {
		resp->cc = CURLE_OUT_OF_MEMORY;
		snprintf(resp->neterr, sizeof(resp->neterr), "out of memory");
		return;
	}
	for (int n = 0;; n++) {
		now = kb_now_ms();
		if (now >= deadline)
			break;
		az_http_prepare(conf, s->h, false, s->errbuf, rq, hdrs, deadline - now, resp);
		az_http_collect(s->h, s->errbuf, curl_easy_perform(s->h), resp);
		if ((wait = az_http_next_wait(conf, rq->idempotent, resp, n, deadline)) < 0)
			break;
		sleep_ms(wait);
	}
	resp->elapsed_ms = kb_now_ms() - start;
	az_http_headers_free(hdrs);
}

bool az_urlencode(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = strlen(out);

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			if (o + 2 > cap)
				return false;
			out[o++] = (char)c;
		} else {
			if (o + 4 > cap)
				return false;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
		out[o] = '\0';
	}
	return true;
}
