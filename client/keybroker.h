/*
 * keybroker.h: libkeybroker, the C client of keybrokerd.
 *
 * One kb_client is one connection to the broker's Unix socket, speaking the
 * line-delimited JSON protocol of docs/protocol.md. Every call sends one
 * request and waits for the response that carries its id; responses with
 * other ids (left over from an earlier call that timed out) are skipped.
 *
 * Conventions, true of every function below unless it says otherwise:
 *  - Fallible functions return a kb_code: KB_OK, a broker code (the "code" of
 *    {"ok":false,"error":{...}}), or a client-side code: KB_E_IO (cannot reach
 *    or talk to the socket), KB_E_PROTOCOL (the answer is unreadable or over
 *    KB_MAX_RESPONSE), KB_E_BAD_REQUEST (an argument is invalid, detected
 *    before anything is sent).
 *  - err may be NULL. Otherwise it is always written: KB_OK and "" on success,
 *    else the same code and a message saying what happened and what to do.
 *  - Strings returned through char ** are NUL-terminated, owned by the caller
 *    and released with kb_free(), which zeroes them first. On failure the
 *    char * is set to NULL.
 *  - After KB_E_IO or KB_E_PROTOCOL the connection is unusable: every later
 *    call fails with KB_E_IO. Close it and connect again. A broker error
 *    leaves the connection usable.
 *
 * Installed as <keybroker.h>, with the headers it includes under
 * <keybroker/>. libkeybroker exports the functions marked KB_API in them and
 * nothing else; the values of kb_code never change (kb_codes.h).
 *
 * Thread safety: a kb_client is not thread-safe. Use one kb_client per
 * thread (connections are cheap), or serialise calls on a shared one. The
 * functions that take no kb_client are thread-safe.
 *
 * Secrets: plaintext key bytes are held only in kb_result.plaintext and in
 * buffers the library zeroes before freeing. Call kb_result_clear() as soon
 * as you are done with a plaintext.
 */
#ifndef KEYBROKER_H
#define KEYBROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <keybroker/kb_codes.h>
#include <keybroker/kb_socket.h>
#include <keybroker/kb_version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The environment variable that names the socket for clients. */
#define KB_SOCKET_ENV "KEYBROKER_SOCKET"

/* A response line longer than this is refused with KB_E_PROTOCOL. */
#define KB_MAX_RESPONSE (1024 * 1024)

#define KB_ERROR_MESSAGE_MAX 512

typedef struct kb_client kb_client;

/* The outcome of a failed call: the broker's code and message, or ours. */
typedef struct kb_error {
	kb_code code;
	char message[KB_ERROR_MESSAGE_MAX];
} kb_error;

/*
 * The fields of a wrap, unwrap, datakey, rewrap or rotate response. A field
 * the response does not carry is NULL (or 0, or false). Release with
 * kb_result_clear().
 */
typedef struct kb_result {
	char *blob;             /* the wrapped DEK: wrap, datakey, rewrap */
	char *key;              /* logical key name */
	char *version;          /* key version: the one used, or the new latest (rotate) */
	uint8_t *plaintext;     /* the DEK: unwrap, datakey */
	size_t plaintext_len;
	bool cached;            /* unwrap: answered from the broker's DEK cache */
	bool reused;            /* datakey: the broker handed out a cached data key again */
} kb_result;

/* kb_default_socket, KB_DEFAULT_SOCKET, KB_FALLBACK_SOCKET and
 * KB_SOCKET_PATH_MAX are in kb_socket.h, which the daemon shares; the
 * KB_VERSION_* macros, the version compiled against, in kb_version.h. */

/*
 * kb_version returns the version of the libkeybroker the program runs
 * against, "MAJOR.MINOR.PATCH" (compare with KB_VERSION_STRING). Static.
 */
KB_API const char *kb_version(void);

/*
 * kb_client_connect connects to the broker at socket_path. When socket_path
 * is NULL, it uses $KEYBROKER_SOCKET if set and non-empty, else
 * kb_default_socket(). On KB_OK, *out is a new client for kb_client_close();
 * on failure *out is NULL and the code is KB_E_IO, with a message that names
 * the path and says whether keybrokerd seems not to be running. A connection
 * keybrokerd closed between calls (idle_timeout) is opened again by the next
 * call, transparently.
 */
KB_API kb_code kb_client_connect(const char *socket_path, kb_client **out, kb_error *err);

/* kb_client_close closes the connection and frees c, zeroing its buffers. c may be NULL. */
KB_API void kb_client_close(kb_client *c);

/*
 * kb_client_set_timeout bounds every later call on c to timeout_ms
 * milliseconds of waiting for the socket (0, the default, waits forever).
 * A call that times out fails with KB_E_IO and leaves c unusable.
 */
KB_API void kb_client_set_timeout(kb_client *c, int timeout_ms);

/* kb_client_socket returns the path c is connected to, valid until kb_client_close(). */
KB_API const char *kb_client_socket(const kb_client *c);

/*
 * kb_client_last_response returns the last response line read for a call on
 * c, without its newline, whether it said ok or not; NULL if no call got a
 * response. Valid until the next call on c or kb_client_close(). It may hold
 * a base64 plaintext: do not log it. (The CLI's --json prints it.)
 */
KB_API const char *kb_client_last_response(const kb_client *c);

/*
 * kb_call sends request_json, one JSON object with at least "op", after
 * setting its "id" to the next id of c (any "id" in it is replaced), and sets
 * *response_json to the response line as is. Returns KB_OK if the response
 * says "ok":true, else the broker's code (err filled, *response_json still
 * set and to be freed). On KB_E_IO, KB_E_PROTOCOL or KB_E_BAD_REQUEST (the
 * request is not a JSON object) no response was read: *response_json is NULL.
 */
KB_API kb_code kb_call(kb_client *c, const char *request_json, char **response_json,
		       kb_error *err);

/* kb_status sets *json_out to the status response object (version, uptime_s, cache, keys, counters). */
KB_API kb_code kb_status(kb_client *c, char **json_out, kb_error *err);

/* kb_get sets *json_out to the response describing key (versions, alg, kty, bits, ...). */
KB_API kb_code kb_get(kb_client *c, const char *key, char **json_out, kb_error *err);

/*
 * kb_wrap wraps pt[0..n) under the latest version of key, with alg, or the
 * key's own algorithm when alg is NULL. Fills out->blob, key and version.
 * The broker takes 1 to 1024 bytes (less for RSA keys).
 */
KB_API kb_code kb_wrap(kb_client *c, const char *key, const char *alg, const uint8_t *pt,
		       size_t n, kb_result *out, kb_error *err);

/* kb_unwrap unwraps blob. Fills out->plaintext, plaintext_len, key, version and cached. */
KB_API kb_code kb_unwrap(kb_client *c, const char *blob, kb_result *out, kb_error *err);

/*
 * kb_datakey asks for a fresh data key of bits bits (0 means the broker's
 * default, 256) wrapped under key. Fills out->plaintext, plaintext_len, blob,
 * key, version and reused.
 */
KB_API kb_code kb_datakey(kb_client *c, const char *key, unsigned bits, kb_result *out,
			  kb_error *err);

/*
 * kb_rewrap wraps the DEK inside blob again under the latest version of key
 * (NULL: the blob's own key); the DEK never leaves the broker. Fills out->blob,
 * key and version.
 */
KB_API kb_code kb_rewrap(kb_client *c, const char *blob, const char *key, kb_result *out,
			 kb_error *err);

/* kb_rotate makes a new latest version of key. Fills out->key and out->version (the new one). */
KB_API kb_code kb_rotate(kb_client *c, const char *key, kb_result *out, kb_error *err);

/*
 * kb_flush evicts every cached DEK of key (NULL: of every key) from the
 * broker's cache. *flushed (may be NULL) gets the number evicted.
 */
KB_API kb_code kb_flush(kb_client *c, const char *key, unsigned *flushed, kb_error *err);

/* kb_metrics sets *text to the broker's counters in Prometheus text format. */
KB_API kb_code kb_metrics(kb_client *c, char **text, kb_error *err);

/*
 * The kb_result functions overwrite *out without freeing what it held: clear
 * a result before reusing it. On failure *out is all zero, so kb_result_clear
 * is safe after any call.
 */

/* kb_result_clear zeroes the plaintext, frees every field and zeroes *r. r may be NULL. */
KB_API void kb_result_clear(kb_result *r);

/*
 * kb_unwrap_many unwraps n blobs in one request (a batch of at most the
 * broker's max_batch, within its max_request_bytes). For each i, codes[i] is
 * KB_OK with out[i] filled as kb_unwrap fills it, or item i's own error code
 * with out[i] empty. Returns KB_OK when the broker answered the batch (some
 * items may have failed), or the failure of the request as a whole. Release
 * each out[i] with kb_result_clear.
 */
KB_API kb_code kb_unwrap_many(kb_client *c, const char *const *blobs, size_t n, kb_result *out,
			      kb_code *codes, kb_error *err);

/* kb_rewrap_many is kb_rewrap for n blobs in one request, reported as kb_unwrap_many does. */
KB_API kb_code kb_rewrap_many(kb_client *c, const char *const *blobs, size_t n, const char *key,
			      kb_result *out, kb_code *codes, kb_error *err);

/* kb_free zeroes and frees a string returned by this library. s may be NULL. */
KB_API void kb_free(char *s);

#ifdef __cplusplus
}
#endif

#endif
