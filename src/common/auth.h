/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Pre-shared host keys and the proofs of the authentication handshake
 * (docs/protocol.md, "Authentication"). Every primitive is libcrypto's:
 * HKDF-SHA256 derives a per-host MAC key from the secret, HMAC-SHA256 makes
 * the proofs, RAND_bytes draws secrets and nonces, CRYPTO_memcmp compares.
 *
 * A key's text form, one line (like nvme gen-dhchap-key's DHHC-1):
 *   IBNBD-1:<base64 of the 32-byte secret and a 4-byte checksum>:
 * the checksum being the first 4 bytes of the secret's SHA-256, so a key
 * mangled in a copy is refused, not used.
 */
#ifndef IBNBD_AUTH_H
#define IBNBD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ibnbd/proto.h"

#define AUTH_SECRET_LEN 32
#define AUTH_NONCE_LEN 32
#define AUTH_MAC_LEN 32
#define AUTH_KEY_PREFIX "IBNBD-1:"
/* "IBNBD-1:" + 48 base64 characters + ":" + NUL */
#define AUTH_KEY_TEXT_LEN 58

/* HMAC-SHA256 of msg keyed with key into out; 0 or -EIO. */
int auth_hmac_sha256(const unsigned char *key, size_t keylen, const void *msg, size_t msglen,
		     unsigned char out[32]);

/* A new random key in text form. 0, or -EIO with a sentence. */
int auth_key_generate(char out[AUTH_KEY_TEXT_LEN], char *err, size_t errlen);
/* Parses a key's text form (surrounding blanks ignored). 0, or -EINVAL
 * with a sentence (not a key, another version, a bad checksum). */
int auth_key_parse(const char *text, unsigned char secret[AUTH_SECRET_LEN], char *err,
		   size_t errlen);

/* A file holding secrets must be owned by root and neither group nor
 * world accessible. 0, or -EPERM with a sentence naming the file and how
 * to fix it. */
int auth_secret_file_check(int fd, const char *path, char *err, size_t errlen);
/* Reads a key file: one key, '#' comment and blank lines ignored. 0, or
 * -errno with a sentence naming the file (and the line). */
int auth_key_file_load(const char *path, unsigned char secret[AUTH_SECRET_LEN], char *err,
		       size_t errlen);

struct auth_host {
	char id[IBNBD_HOST_ID_MAX];
	unsigned char secret[AUTH_SECRET_LEN];
};
struct auth_hosts {
	struct auth_host *v;
	size_t n;
};
/* Reads a hosts file: one "HOSTID KEY" per line, '#' comment and blank
 * lines ignored, a host at most once. 0, or -errno with a sentence naming
 * the file and the line; *out is untouched on failure. */
int auth_hosts_load(const char *path, struct auth_hosts *out, char *err, size_t errlen);
const struct auth_host *auth_hosts_find(const struct auth_hosts *h, const char *id);
/* Frees and wipes the secrets. */
void auth_hosts_free(struct auth_hosts *h);

/* What both proofs of one handshake cover. */
struct auth_transcript {
	uint16_t version;
	uint16_t conn_index;
	unsigned char session_uuid[16];
	unsigned char client_nonce[AUTH_NONCE_LEN];
	unsigned char server_nonce[AUTH_NONCE_LEN];
	const char *host_id;   /* the client's */
	const char *server_id; /* the server's */
};
enum auth_role {
	AUTH_PROOF_SERVER, /* the server's answer to the client's nonce */
	AUTH_PROOF_CLIENT, /* the client's answer to the server's nonce */
};
/* The proof the role makes for t with the host's secret: HMAC-SHA256,
 * keyed with HKDF-SHA256(secret, info: the host id), over the role's label
 * and every field of t. 0 or -EIO. */
int auth_proof(const unsigned char secret[AUTH_SECRET_LEN], enum auth_role role,
	       const struct auth_transcript *t, unsigned char out[AUTH_MAC_LEN]);
/*
 * The client's half of the exchange: checks the server's proof for t with
 * the host's secret, and makes the client's. 0, -EACCES when the server's
 * proof is not the one the secret gives, -EIO if libcrypto failed.
 */
int auth_answer(const unsigned char secret[AUTH_SECRET_LEN], const struct auth_transcript *t,
		const unsigned char server_proof[AUTH_MAC_LEN], unsigned char out[AUTH_MAC_LEN]);
/* Constant-time comparison of two proofs. */
bool auth_proof_equal(const unsigned char a[AUTH_MAC_LEN], const unsigned char b[AUTH_MAC_LEN]);
/* A fresh random nonce. 0 or -EIO. */
int auth_nonce(unsigned char out[AUTH_NONCE_LEN]);

#endif
