/*
 * bench_kms.h: the KMS v2 driver of `keybroker bench` (--op kms-decrypt,
 * kms-encrypt): each client is a gRPC channel of its own to a [kms:NAME]
 * socket, made with gRPC's C core as kube-apiserver's Go client would make
 * its calls, one call in flight. kms-decrypt cycles through ciphertexts that
 * Encrypt made and one Decrypt each put in the broker's cache, so it
 * measures the cached path beside unwrap-hit; kms-encrypt beside wrap;
 * kms-status the floor: a call the broker's loop answers from what it holds.
 */
#ifndef KB_BENCH_KMS_H
#define KB_BENCH_KMS_H

#include "bench.h"

typedef struct bench_kms bench_kms;

/*
 * bench_kms_new makes the driver of op (kms-decrypt, kms-encrypt or
 * kms-status) and checks the socket with a Status call (it must say "ok").
 * Returns the driver's state, or NULL with err filled.
 */
bench_kms *bench_kms_new(const char *socket, const char *op, size_t size, char *err, size_t errlen);

bench_driver *bench_kms_driver(bench_kms *k);

/* bench_kms_key_id is the key_id Status named (for the report). */
const char *bench_kms_key_id(const bench_kms *k);

void bench_kms_free(bench_kms *k);

#endif
