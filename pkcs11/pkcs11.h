/*
 * pkcs11.h: the PKCS#11 backend (SoftHSMv2 or any token with a PKCS#11
 * module), behind the interface of broker/backend.h.
 *
 * A [key:NAME] section with backend = pkcs11 takes these options:
 *   module    path of the PKCS#11 library (required)
 *   uri       RFC 7512 URI naming the token and the key's label, e.g.
 *             pkcs11:token=keybroker;object=rsa-kek (required; no PIN in it)
 *   pin_file  file holding the user PIN (one trailing newline is ignored)
 *   pin_env   environment variable holding the user PIN
 * with exactly one of pin_file and pin_env. The PIN is read at each login
 * and wiped right after it.
 *
 * Every object labelled object= is a version of the key, named by the
 * lowercase hex of its CKA_ID ("0" for an empty CKA_ID). The latest version
 * has the greatest CKA_ID read as an unsigned big-endian integer; rotate
 * creates latest + 1. RSA keys wrap with RSA-OAEP (default) or RSA-OAEP-256
 * where the token can reverse it; AES keys with AES-KWP (RFC 5649).
 */
#ifndef KB_PKCS11_H
#define KB_PKCS11_H

#include "backend.h"

extern const kb_backend_ops kb_pkcs11_backend;

#endif
