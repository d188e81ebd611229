/*
 * kms_grpc.c: one gRPC server and the thread that drives it (see kms_grpc.h).
 *
 * The three methods are registered with gRPC, which reads each call's one
 * request message before it hands the call over, so a call takes two steps,
 * each coming back on the queue with the call as its tag: NEW (the call and
 * its message are in) and DONE (the answer and status are sent, the call is
 * closed). A call to any other method comes through the generic request
 * (step NEW with no method) and is answered UNIMPLEMENTED.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <openssl/crypto.h>

#include "kms_grpc.h"
#include "log.h"

enum { STEP_NEW, STEP_MSG, STEP_DONE };

#define REQUESTS_PER_METHOD 16

struct kb_kms_call {
	kb_inbox_item link;         /* first: the receiver's inbox holds the call by it */
	kb_kms_grpc *g;
	int step;
	grpc_call *call;
	grpc_call_details details;  /* the generic request: the unknown method's name */
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *in;
	grpc_byte_buffer *out;
	grpc_slice out_slice;       /* the packed answer: our own reference, so it is wiped (gRPC takes the buffer's) */
	bool have_out;
	grpc_slice status_details;
	bool have_details;
	int cancelled;
	kb_kms_method method;
	int fd;
	uint64_t ino;               /* of the socket at fd when the call came, 0: unknown */
	grpc_status_code failed;    /* GRPC_STATUS_OK, or why it cannot be answered by its method */
	const char *failed_msg;
	bool over;                  /* its connection passed a limit with it: the receiver closes it */
	bool tracked;               /* counted open in its connection's track */
	ProtobufCMessage *req;
};

struct kb_kms_grpc {
	grpc_server *server;
	grpc_completion_queue *cq;
	grpc_server_credentials *creds;
	pthread_t thread;
	bool thread_started;
	int shutdown_tag;
	void *methods[KB_KMS_METHODS]; /* grpc_server_register_method's handles */
	void (*post)(void *ctx, kb_kms_call *call);
	void *ctx;
	kb_kms_limits lim;
	int open;                      /* calls open on every connection */
	/* each connection's calls, by descriptor and checked by inode: this thread's alone */
	struct track {
		uint64_t ino;
		int open;              /* calls not yet done */
		int64_t window_ms;     /* the current second of failed calls */
		int failed;
		bool flagged;          /* a call already asked the receiver to close it */
	} *tracks;
	int ntracks;
};

static const char *const method_paths[KB_KMS_METHODS] = {
	"/v2.KeyManagementService/Status",
	"/v2.KeyManagementService/Encrypt",
	"/v2.KeyManagementService/Decrypt",
};

/* wipe_buffer zeroes a message's bytes: an Encrypt's request and a Decrypt's answer carry a plaintext */
static void wipe_buffer(grpc_byte_buffer *in)
{
	grpc_byte_buffer_reader r;
	grpc_slice s;

	if (!grpc_byte_buffer_reader_init(&r, in))
		return;
	while (grpc_byte_buffer_reader_next(&r, &s)) {
		OPENSSL_cleanse(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
		grpc_slice_unref(s);
	}
	grpc_byte_buffer_reader_destroy(&r);
}

static struct track *track_of(kb_kms_grpc *g, const kb_kms_call *c, bool make);

static void call_free(kb_kms_call *c)
{
	struct track *t;

	if (c->tracked) {
		c->g->open--;
		if ((t = track_of(c->g, c, false)) != NULL)
			t->open--;
	}
	if (c->req && c->method == KB_KMS_ENCRYPT) {
		const V2__EncryptRequest *e = (const V2__EncryptRequest *)c->req;
		if (e->plaintext.data)
			OPENSSL_cleanse(e->plaintext.data, e->plaintext.len);
	}
	if (c->req)
		protobuf_c_message_free_unpacked(c->req, NULL);
	if (c->in) {
		wipe_buffer(c->in);
		grpc_byte_buffer_destroy(c->in);
	}
	if (c->have_out) {
		/*
		 * sent by now (the call is done): the packed answer, a Decrypt's
		 * plaintext in it, is wiped; gRPC moved the slices out of c->out
		 * when it took the message, so it is wiped through our own reference
		 */
		OPENSSL_cleanse(GRPC_SLICE_START_PTR(c->out_slice), GRPC_SLICE_LENGTH(c->out_slice));
		grpc_slice_unref(c->out_slice);
	}
	if (c->out)
		grpc_byte_buffer_destroy(c->out);
	if (c->have_details)
		grpc_slice_unref(c->status_details);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	if (c->call)
		grpc_call_unref(c->call);
	free(c);
}

/*
 * request_next asks the server for the next call of method m (KB_KMS_METHODS:
 * of any other method); false once it is shutting down.
 */
static bool request_next(kb_kms_grpc *g, kb_kms_method m)
{
	kb_kms_call *c = calloc(1, sizeof(*c));
	grpc_call_error rc;

	if (c == NULL)
		return false;
	c->g = g;
	c->step = STEP_NEW;
	c->fd = -1;
	c->method = m;
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->md);
	if (m == KB_KMS_METHODS)
		rc = grpc_server_request_call(g->server, &c->call, &c->details, &c->md, g->cq, g->cq, c);
	else
		rc = grpc_server_request_registered_call(g->server, g->methods[m], &c->call, &c->deadline,
							 &c->md, NULL, g->cq, g->cq, c);
	if (rc != GRPC_CALL_OK) {
		call_free(c);
		return false;
	}
	return true;
}

/*
 * peer_of reads N from the call's peer "fd:N" (the name gRPC gives a
 * connection from an fd) and the inode of the socket there now: gRPC still
 * holds the connection the call came on, so the pair names it even if the
 * number is reused later (the receiver keeps its own descriptor of the
 * socket, so the inode cannot be reused meanwhile).
 */
static void peer_of(kb_kms_call *c)
{
	char *peer = grpc_call_get_peer(c->call);
	struct stat st;

	c->fd = -1;
	c->ino = 0;
	if (peer && strncmp(peer, "fd:", 3) == 0)
		c->fd = atoi(peer + 3);
	gpr_free(peer);
	if (c->fd >= 0 && fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode))
		c->ino = (uint64_t)st.st_ino;
}

/* decode unpacks the request message; false if it is not one of the method's type */
static bool decode(kb_kms_call *c)
{
	static const ProtobufCMessageDescriptor *const types[KB_KMS_METHODS] = {
		&v2__status_request__descriptor,
		&v2__encrypt_request__descriptor,
		&v2__decrypt_request__descriptor,
	};
	grpc_byte_buffer_reader r;
	grpc_slice s;

	if (c->in == NULL || !grpc_byte_buffer_reader_init(&r, c->in))
		return false;
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	c->req = protobuf_c_message_unpack(types[c->method], NULL, GRPC_SLICE_LENGTH(s),
					   GRPC_SLICE_START_PTR(s));
	/* an Encrypt's plaintext was in there */
	OPENSSL_cleanse(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
	grpc_slice_unref(s);
	return c->req != NULL;
}

/*
 * track_of is the track of c's connection (make: a new connection's is
 * made, a reused descriptor's reset), or NULL.
 */
static struct track *track_of(kb_kms_grpc *g, const kb_kms_call *c, bool make)
{
	struct track *t;

	if (c->fd < 0 || c->ino == 0)
		return NULL;
	if (c->fd >= g->ntracks) {
		int n = c->fd + 64;
		struct track *grown;

		if (!make || (grown = realloc(g->tracks, (size_t)n * sizeof(*grown))) == NULL)
			return NULL;
		memset(grown + g->ntracks, 0, (size_t)(n - g->ntracks) * sizeof(*grown));
		g->tracks = grown;
		g->ntracks = n;
	}
	t = &g->tracks[c->fd];
	if (t->ino != c->ino) {
		if (!make)
			return NULL;
		memset(t, 0, sizeof(*t));
		t->ino = c->ino;
	}
	return t;
}

/* flag marks c as the call that asks the receiver to close its connection (once per connection) */
static bool flag(struct track *t, kb_kms_call *c)
{
	if (t == NULL || t->flagged)
		return false;
	t->flagged = c->over = true;
	return true;
}

/*
 * failed answers a call that cannot be answered by its method, here,
 * counting it against its connection (rapid reset: HEADERS then
 * RST_STREAM, each a call that did nothing); the one that passes
 * max_failed_per_s in a second goes to the receiver instead, marked.
 */
static void failed(kb_kms_grpc *g, kb_kms_call *c)
{
	struct track *t = track_of(g, c, true);
	gpr_timespec ts = gpr_now(GPR_CLOCK_MONOTONIC);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

	if (t && now - t->window_ms >= 1000) {
		t->window_ms = now;
		t->failed = 0;
	}
	if (t && ++t->failed > g->lim.max_failed_per_s && flag(t, c)) {
		g->post(g->ctx, c);
		return;
	}
	kb_kms_call_reply(c, c->failed, c->failed_msg, NULL);
}

static void fail_with(kb_kms_call *c, grpc_status_code status, const char *msg)
{
	c->failed = status;
	c->failed_msg = msg;
}

/*
 * on_new takes a call as soon as its headers are in (gRPC hands over every
 * stream: GRPC_SRM_PAYLOAD_NONE), counts it open on its connection, and
 * reads its message. A connection with more calls open than the
 * SETTINGS_MAX_CONCURRENT_STREAMS it was told (a peer that never
 * acknowledged them) is closed; beyond max_open on the whole server a new
 * call is refused busy at once.
 */
static void on_new(kb_kms_grpc *g, kb_kms_call *c)
{
	struct track *t;
	grpc_op op;

	request_next(g, c->method);
	peer_of(c);
	t = track_of(g, c, true);
	c->tracked = true;
	g->open++;
	if (t)
		t->open++;
	if (c->method == KB_KMS_METHODS) {
		fail_with(c, GRPC_STATUS_UNIMPLEMENTED,
			  "keybroker serves only v2.KeyManagementService Status, Encrypt and Decrypt");
	} else if (t && t->open > g->lim.max_streams) {
		fail_with(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			  "busy: more calls open on this connection than SETTINGS_MAX_CONCURRENT_STREAMS (max_inflight)");
		if (flag(t, c)) {
			g->post(g->ctx, c);
			return;
		}
		kb_kms_call_reply(c, c->failed, c->failed_msg, NULL);
		return;
	} else if (g->open > g->lim.max_open) {
		kb_kms_call_reply(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "busy: the broker has too many KMS calls open; retry",
				  NULL);
		return;
	}
	if (c->failed != GRPC_STATUS_OK) {
		failed(g, c);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->in;
	c->step = STEP_MSG;
	if (grpc_call_start_batch(c->call, &op, 1, c, NULL) != GRPC_CALL_OK) {
		kb_kms_call_reply(c, GRPC_STATUS_INTERNAL, "could not read the request", NULL);
		return;
	}
}

/* on_message takes a call whose message is in (or never came: the peer reset the stream) */
static void on_message(kb_kms_grpc *g, kb_kms_call *c, bool ok)
{
	if (!ok || c->in == NULL)
		fail_with(c, GRPC_STATUS_CANCELLED, "the request message did not come");
	else if (!decode(c))
		fail_with(c, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a KMS v2 message of this method");
	if (c->failed != GRPC_STATUS_OK) {
		failed(g, c);
		return;
	}
	g->post(g->ctx, c);
}

static void *run(void *arg)
{
	kb_kms_grpc *g = arg;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		kb_kms_call *c;
		int step;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == &g->shutdown_tag) {
			grpc_completion_queue_shutdown(g->cq);
			continue;
		}
		c = ev.tag;
		/* acquire: the thread that answered c wrote it before its release of step (kb_kms_call_reply) */
		step = __atomic_load_n(&c->step, __ATOMIC_ACQUIRE);
		if (step == STEP_NEW && !ev.success)
			call_free(c); /* the server is shutting down */
		else if (step == STEP_NEW)
			on_new(g, c);
		else if (c->step == STEP_MSG)
			on_message(g, c, ev.success);
		else
			call_free(c);
	}
	return NULL;
}

kb_code kb_kms_grpc_start(const kb_kms_limits *lim, void (*post)(void *ctx, kb_kms_call *call), void *ctx,
			  kb_kms_grpc **out, kb_err *err)
{
	kb_kms_grpc *g = calloc(1, sizeof(*g));
	grpc_resource_quota *quota = NULL;
	grpc_arg arg[5] = {
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = (int)lim->max_msg },
		/* advertised; a peer that never acknowledges it is bounded by the receiver instead (kms_face.c) */
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_CONCURRENT_STREAMS, .value.integer = lim->max_streams },
		/* also ends a connection that never speaks HTTP/2: gRPC has no handshake to time on an fd it is given */
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_CONNECTION_IDLE_MS,
		  .value.integer = (int)(lim->idle_ms > INT32_MAX ? INT32_MAX : lim->idle_ms) },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_METADATA_SIZE, .value.integer = (int)lim->max_metadata },
		{ .type = GRPC_ARG_POINTER, .key = GRPC_ARG_RESOURCE_QUOTA,
		  .value.pointer = { .p = NULL, .vtable = NULL } },
	};
	/*
	 * Not GRPC_ARG_MINIMAL_STACK: it saves ~5 us a call here but drops the
	 * max_age filter, so the idle limit above would no longer apply. Turning
	 * off BDP probing and channelz measured no difference (docs/kubernetes.md).
	 */
	grpc_channel_args args = { .num_args = 5, .args = arg };
	bool break_start = false;

	if (g == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	grpc_init();
	/* the memory gRPC may hold for this server's connections and calls, whatever the peers send */
	quota = grpc_resource_quota_create("keybroker-kms");
	grpc_resource_quota_resize(quota, lim->quota_bytes);
	arg[4].value.pointer.p = quota;
	arg[4].value.pointer.vtable = grpc_resource_quota_arg_vtable();
	g->post = post;
	g->ctx = ctx;
	g->lim = *lim;
	g->cq = grpc_completion_queue_create_for_next(NULL);
	g->server = grpc_server_create(&args, NULL);
	grpc_resource_quota_unref(quota); /* the server holds its own reference */
	g->creds = grpc_insecure_server_credentials_create();
	grpc_server_register_completion_queue(g->server, g->cq, NULL);
	for (int m = 0; m < KB_KMS_METHODS; m++)
		g->methods[m] = grpc_server_register_method(g->server, method_paths[m], NULL,
							    GRPC_SRM_PAYLOAD_NONE, 0);
	grpc_server_start(g->server);
	/* several calls asked for at once per method: gRPC's queue of calls not yet handed over drains faster */
	for (int m = 0; m <= KB_KMS_METHODS; m++)
		for (int i = 0; i < REQUESTS_PER_METHOD; i++)
			if (!request_next(g, (kb_kms_method)m))
				break_start = true;
	if (break_start || pthread_create(&g->thread, NULL, run, g) != 0) {
		kb_kms_grpc_stop(g);
		return kb_err_set(err, KB_E_INTERNAL, "cannot start the KMS gRPC server");
	}
	g->thread_started = true;
	*out = g;
	return KB_OK;
}

void kb_kms_grpc_add_fd(kb_kms_grpc *g, int fd)
{
	grpc_server_add_channel_from_fd(g->server, fd, g->creds);
}

void kb_kms_grpc_stop(kb_kms_grpc *g)
{
	if (g == NULL)
		return;
	grpc_server_shutdown_and_notify(g->server, g->cq, &g->shutdown_tag);
	grpc_server_cancel_all_calls(g->server);
	if (g->thread_started) {
		pthread_join(g->thread, NULL);
	} else {
		/* the queue never ran: drain it here */
		grpc_completion_queue_shutdown(g->cq);
		while (grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
	}
	grpc_server_destroy(g->server);
	grpc_completion_queue_destroy(g->cq);
	grpc_server_credentials_release(g->creds);
	free(g->tracks);
	free(g);
	grpc_shutdown();
}

kb_kms_method kb_kms_call_method(const kb_kms_call *c)
{
	return c->method;
}

void kb_kms_call_peer(const kb_kms_call *c, int *fd, uint64_t *ino)
{
	*fd = c->fd;
	*ino = c->ino;
}

bool kb_kms_call_over(const kb_kms_call *c)
{
	return c->over;
}

grpc_status_code kb_kms_call_failed(const kb_kms_call *c, const char **msg)
{
	*msg = c->failed_msg;
	return c->failed;
}

const V2__EncryptRequest *kb_kms_call_encrypt(const kb_kms_call *c)
{
	return c->method == KB_KMS_ENCRYPT ? (const V2__EncryptRequest *)c->req : NULL;
}

const V2__DecryptRequest *kb_kms_call_decrypt(const kb_kms_call *c)
{
	return c->method == KB_KMS_DECRYPT ? (const V2__DecryptRequest *)c->req : NULL;
}

kb_inbox_item *kb_kms_call_item(kb_kms_call *c)
{
	return &c->link;
}

kb_kms_call *kb_kms_call_of(kb_inbox_item *it)
{
	return (kb_kms_call *)(void *)it; /* the link is the call's first member */
}

void kb_kms_call_reply(kb_kms_call *c, grpc_status_code status, const char *msg,
		       const ProtobufCMessage *resp)
{
	grpc_op ops[4];
	grpc_call *call;
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (resp && status == GRPC_STATUS_OK) {
		size_t len = protobuf_c_message_get_packed_size(resp);
		grpc_slice s = grpc_slice_malloc(len);

		protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(s)); /* wiped in call_free */
		c->out = grpc_raw_byte_buffer_create(&s, 1); /* shares s: it is sent, not copied */
		c->out_slice = s; /* our reference, let go in call_free */
		c->have_out = true;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->out;
	}
	c->status_details = grpc_slice_from_copied_string(msg ? msg : "");
	c->have_details = true;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = status;
	ops[n++].data.send_status_from_server.status_details = &c->status_details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
	/* release: once the batch is started, gRPC's thread may end and free c (run); c is not read after */
	call = c->call;
	__atomic_store_n(&c->step, STEP_DONE, __ATOMIC_RELEASE);
	if (grpc_call_start_batch(call, ops, n, c, NULL) != GRPC_CALL_OK) {
		kb_warn("could not answer a KMS call");
		call_free(c);
	}
}
