#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "arm.h"
#include "auth.h"
#include "buf.h"
#include "errors.h"
#include "faults.h"
#include "keys_api.h"
#include "log.h"
#include "parse.h"
#include "server.h"
#include "store.h"

/* One HTTP endpoint: the HTTPS front or the admin endpoint. */
struct endpoint {
	struct emu_world *w;
	emu_handler handler;
	const char *tag;
};

/* Per-request state while the body arrives. */
struct pending {
	kb_buf body;       /* NUL-terminated */
	bool too_big;
	struct timespec start;
};

/* how far over max_body a declared body may be and still be read (and dropped) */
#define DRAIN_MAX (1u << 20)

static struct MHD_Daemon *front;

/*
 * emu_listen_addr parses "ADDR:PORT" or "[V6]:PORT" (port 0 = any free one).
 * Returns 0, or -1 if malformed.
 */
static int emu_listen_addr(const char *s, struct sockaddr_storage *ss)
{
	char host[128];
	const char *colon;
	char *end;
	unsigned long port;
	size_t n;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -1;
		n = (size_t)(close - s - 1);
		colon = close + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -1;
		n = (size_t)(colon - s);
	}
	if (n == 0 || n >= sizeof(host))
		return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || port > 65535)
		return -1;
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		return 0;
	}
	return -1;
}

static void route_error(struct emu_reply *rep, enum emu_route_status st, const struct emu_route *rt,
			const char *host)
{
	switch (st) {
	case EMU_ROUTE_BAD_HOST:
		emu_error(rep, 400, "BadParameter", NULL,
			  "Host '%s' is not served here: use NAME.vault.localhost, NAME.managedhsm.localhost or localhost.",
			  host ? host : "");
		break;
	case EMU_ROUTE_BAD_METHOD:
		emu_error(rep, 405, "MethodNotAllowed", NULL, "The method is not allowed on this path.");
		break;
	case EMU_ROUTE_BAD_NAME:
		emu_error(rep, 400, "BadParameter", NULL,
			  "The key name is invalid: it must match ^[0-9a-zA-Z-]{1,127}$.");
		break;
	default:
		if (rt->kind == EMU_KIND_LOGIN)
			emu_oauth_error(rep, 404, "not_found", "No such endpoint on the emulator's token service.");
		else
			emu_error(rep, 404, "NotFound", NULL, "The requested path was not found.");
		break;
	}
}

/*
 * emu_dispatch answers one request: route, faults, token check, api-version,
 * throttle, then the keys API or the token service. Fills rep.
 */
static void emu_dispatch(struct emu_world *w, const struct emu_req *rq, struct emu_reply *rep)
{
	struct emu_route rt;
	enum emu_route_status st = emu_route_parse(rq->method, rq->host, rq->path, &rt);
	unsigned status = 0;
	bool known, allowed;
	int64_t wait_ms = 0;

	if (st == EMU_ROUTE_BAD_HOST) {
		route_error(rep, st, &rt, rq->host);
		return;
	}
	if (rt.kind == EMU_KIND_LOGIN) {
		if (st != EMU_ROUTE_OK)
			route_error(rep, st, &rt, rq->host);
		else if (rt.op == EMU_OP_ARM_SUBSCRIPTIONS || rt.op == EMU_OP_ARM_TENANTS) {
			if (emu_auth_check(w, rq, &rt, rep) == 0)
				emu_arm_list(rq, &rt, rep);
		}
		else if (rt.op == EMU_OP_TOKEN)
			emu_auth_token(w, rq, &rt, rep);
		else if (rt.op == EMU_OP_OPENID)
			emu_auth_openid(w, rq, &rt, rep);
		else if (rt.op == EMU_OP_APP_SERVICE)
			emu_auth_app_service(w, rq, &rt, rep);
		else
			emu_auth_imds(w, rq, &rt, rep);
		return;
	}
	switch (emu_faults_roll(&status)) {
	case EMU_FAULT_DROP:
		rep->drop = true;
		return;
	case EMU_FAULT_STATUS:
		if (status == 500)
			emu_error(rep, 500, "InternalServerError", NULL, "Injected fault: internal server error.");
		else
			emu_error(rep, status, "ServiceUnavailable", NULL, "Injected fault: the service is unavailable.");
		return;
	case EMU_FAULT_NONE:
		break;
	}
	pthread_mutex_lock(&w->lock);
	known = emu_store_vault(w, rt.kind == EMU_KIND_MHSM, rt.vault) != NULL;
	pthread_mutex_unlock(&w->lock);
	if (!known) {
		emu_error(rep, 404, "NotFound", NULL, "No %s named '%s' is served here.",
			  rt.kind == EMU_KIND_MHSM ? "managed HSM" : "vault", rt.vault);
		return;
	}
	if (emu_auth_check(w, rq, &rt, rep))
		return;
	if (!rq->api_version) {
		emu_error(rep, 400, "BadParameter", NULL, "The 'api-version' query parameter is missing.");
		return;
	}
	if (!emu_api_version_ok(rq->api_version)) {
		emu_error(rep, 400, "BadParameter", NULL,
			  "The specified version (%.40s) is not recognized. Consider using the latest supported version (7.6).",
			  rq->api_version);
		return;
	}
	if (st != EMU_ROUTE_OK) {
		route_error(rep, st, &rt, rq->host);
		return;
	}
	pthread_mutex_lock(&w->lock);
	struct emu_vault *v = emu_store_vault(w, rt.kind == EMU_KIND_MHSM, rt.vault);
	allowed = !v || emu_throttle_take(v, emu_now_ms(), &wait_ms);
	enum emu_retry_style style = v ? v->retry_style : EMU_RETRY_NONE;
	unsigned limit = v ? v->throttle : 0, window_ms = v ? v->window_ms : 0;
	pthread_mutex_unlock(&w->lock);
	if (!allowed) {
		emu_error(rep, 429, "Throttled", NULL,
			  "Request was not processed because too many requests were received. Reason: a maximum of %u requests per %u ms is allowed for '%s'.",
			  limit, window_ms, rt.vault);
		rep->retry_after_ms = wait_ms;
		rep->retry_style = style;
		return;
	}
	emu_keys_handle(w, rq, &rt, rep);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct emu_reply *rep)
{
	size_t len = rep->body ? strlen(rep->body) : 0;
	struct MHD_Response *r;
	enum MHD_Result ret;
	char num[32];

	r = MHD_create_response_from_buffer(len, rep->body, MHD_RESPMEM_MUST_FREE);
	if (!r)
		return MHD_NO;
	rep->body = NULL;
	if (len)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
	if (rep->www_authenticate)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, rep->www_authenticate);
	if (rep->retry_after_ms >= 0 && rep->retry_style != EMU_RETRY_NONE) {
		/* Retry-After counts whole seconds, so a partial one rounds up */
		int64_t v = rep->retry_style == EMU_RETRY_SECONDS ? (rep->retry_after_ms + 999) / 1000 :
			    rep->retry_after_ms;

		snprintf(num, sizeof(num), "%lld", (long long)v);
		MHD_add_response_header(r, emu_retry_style_name(rep->retry_style), num);
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	ret = MHD_queue_response(c, rep->status ? rep->status : 500, r);
	MHD_destroy_response(r);
	return ret;
}

static const char *arg(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

static const char *hdr(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct endpoint *ep = cls;
	struct pending *pd = *con_cls;
	struct emu_reply rep;
	enum MHD_Result ret;

	if (!pd) {
		const char *cl = hdr(c, MHD_HTTP_HEADER_CONTENT_LENGTH);

		pd = calloc(1, sizeof(*pd));
		if (!pd)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &pd->start);
		*con_cls = pd;
		if (cl && strtoull(cl, NULL, 10) > ep->w->cfg.max_body + DRAIN_MAX) {
			/*
			 * answer before reading a body we would throw away; a body
			 * at most DRAIN_MAX over the limit is read and dropped
			 * instead, so a client still sending it reads the 413
			 * rather than a reset
			 */
			emu_reply_init(&rep);
			emu_error(&rep, 413, "RequestEntityTooLarge", NULL,
				  "The request body is larger than %zu bytes.", ep->w->cfg.max_body);
			emu_log_request(ep->tag, method, hdr(c, MHD_HTTP_HEADER_HOST), url, 413, NULL, ms_since(&pd->start));
			ret = send_reply(c, &rep);
			emu_reply_free(&rep);
			pd->too_big = true;
			return ret;
		}
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;

		*upload_size = 0;
		if (pd->too_big || pd->body.len + n > ep->w->cfg.max_body) {
			pd->too_big = true;
			return MHD_YES;
		}
		return kb_buf_append_text(&pd->body, upload, n) ? MHD_YES : MHD_NO;
	}
	emu_reply_init(&rep);
	if (pd->too_big) {
		emu_error(&rep, 413, "RequestEntityTooLarge", NULL, "The request body is larger than %zu bytes.",
			  ep->w->cfg.max_body);
	} else {
		struct emu_req rq = {
			.method = method,
			.host = hdr(c, MHD_HTTP_HEADER_HOST),
			.path = url,
			.api_version = arg(c, "api-version"),
			.maxresults = arg(c, "maxresults"),
			.skiptoken = arg(c, "$skiptoken"),
			.resource = arg(c, "resource"),
			.client_id = arg(c, "client_id"),
			.authorization = hdr(c, MHD_HTTP_HEADER_AUTHORIZATION),
			.metadata = hdr(c, "Metadata"),
			.identity_header = hdr(c, "X-IDENTITY-HEADER"),
			.body = pd->body.data,
			.body_len = pd->body.len,
		};

		ep->handler(ep->w, &rq, &rep);
	}
	emu_log_request(ep->tag, method, hdr(c, MHD_HTTP_HEADER_HOST), url, rep.drop ? 0 : rep.status,
			rep.principal, ms_since(&pd->start));
	ret = rep.drop ? MHD_NO : send_reply(c, &rep);
	emu_reply_free(&rep);
	(void)version;
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct pending *pd = *con_cls;

	if (pd) {
		kb_buf_free(&pd->body);
		free(pd);
		*con_cls = NULL;
	}
}

/* the endpoint of each running daemon, freed when it stops (front and admin) */
static struct {
	struct MHD_Daemon *d;
	struct endpoint *ep;
} running[4];

void emu_http_stop(struct MHD_Daemon *d)
{
	MHD_stop_daemon(d);
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
		if (running[i].d == d) {
			free(running[i].ep);
			running[i].d = NULL;
			running[i].ep = NULL;
		}
	}
}

/*
 * bind_listen binds and listens on ss itself, so a failure names the port
 * and errno (libmicrohttpd reports "Failed to bind to port 0" for an
 * address it was handed); -1 with err set.
 */
static int bind_listen(const struct sockaddr_storage *ss, const char *addr, const char *log_tag, char *err,
		       size_t errlen)
{
	socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, e;
	unsigned port = ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port :
			      ((const struct sockaddr_in *)ss)->sin_port);
	const char *opt = strcmp(log_tag, "admin") == 0 ? "--admin" : "--listen";

	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
	    bind(fd, (const struct sockaddr *)ss, len) == 0 && listen(fd, 128) == 0)
		return fd;
	e = errno;
	if (fd >= 0)
		close(fd);
	if (e == EADDRINUSE)
		snprintf(err, errlen,
			 "cannot listen on %s: port %u is in use (another akv-emulator?): stop that one, or pick a free port with %s 127.0.0.1:PORT (port 0 picks one and the banner names it)",
			 addr, port, opt);
	else if (e == EADDRNOTAVAIL)
		snprintf(err, errlen, "cannot listen on %s: not an address of this machine: use %s 127.0.0.1:%u", addr,
			 opt, port);
	else
		snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(e));
	return -1;
}

struct MHD_Daemon *emu_http_serve(struct emu_world *w, const char *addr, const char *cert,
				  const char *key, emu_handler handler, const char *log_tag,
				  unsigned *port, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct endpoint *ep;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	int fd;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_ERROR_LOG;

	if (emu_listen_addr(addr, &ss)) {
		snprintf(err, errlen, "bad listen address '%s' (want ADDR:PORT)", addr);
		return NULL;
	}
	if ((fd = bind_listen(&ss, addr, log_tag, err, errlen)) < 0)
		return NULL;
	ep = calloc(1, sizeof(*ep));
	if (!ep) {
		close(fd);
		return NULL;
	}
	ep->w = w;
	ep->handler = handler;
	ep->tag = log_tag;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cert)
		flags |= MHD_USE_TLS;
	d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, ep,
			     MHD_OPTION_LISTEN_SOCKET, fd,
			     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
			     cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
			     MHD_OPTION_HTTPS_MEM_KEY, key,
			     MHD_OPTION_END);
	if (!d) {
		snprintf(err, errlen, "cannot serve on %s: libmicrohttpd did not start (see the line above)", addr);
		close(fd);
		free(ep);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
		if (running[i].d == NULL) {
			running[i].d = d;
			running[i].ep = ep;
			break;
		}
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	*port = info ? info->port : 0;
	return d;
}

int emu_server_start(struct emu_world *w, const char *cert, const char *key, char *err, size_t errlen)
{
	front = emu_http_serve(w, w->cfg.listen, cert, key, emu_dispatch, "https", &w->port, err, errlen);
	return front ? 0 : -1;
}

void emu_server_stop(void)
{
	if (front) {
		emu_http_stop(front);
		front = NULL;
	}
}
