// SPDX-License-Identifier: GPL-2.0-only
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "hostid.h"

#define KEY_RAW_LEN (AUTH_SECRET_LEN + 4) /* secret and checksum */
#define KEY_B64_LEN 48                    /* 4 * KEY_RAW_LEN / 3 */

int auth_hmac_sha256(const unsigned char *key, size_t keylen, const void *msg, size_t msglen,
		     unsigned char out[32])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	size_t len = 0;
	int ret = -EIO;

	if (ctx && EVP_MAC_init(ctx, key, keylen, params) && EVP_MAC_update(ctx, msg, msglen) &&
	    EVP_MAC_final(ctx, out, &len, 32) && len == 32)
		ret = 0;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ret;
}

static int checksum(const unsigned char secret[AUTH_SECRET_LEN], unsigned char out[4])
{
	unsigned char md[32];
	unsigned int len = 0;

	if (!EVP_Digest(secret, AUTH_SECRET_LEN, md, &len, EVP_sha256(), NULL) || len != 32)
		return -EIO;
	memcpy(out, md, 4);
	return 0;
}

int auth_key_generate(char out[AUTH_KEY_TEXT_LEN], char *err, size_t errlen)
{
	unsigned char raw[KEY_RAW_LEN];
	char b64[KEY_B64_LEN + 1];
	int ret = 0;

	if (RAND_bytes(raw, AUTH_SECRET_LEN) != 1 || checksum(raw, raw + AUTH_SECRET_LEN) ||
	    EVP_EncodeBlock((unsigned char *)b64, raw, KEY_RAW_LEN) != KEY_B64_LEN) {
		snprintf(err, errlen, "cannot draw a key: libcrypto's random generator failed");
		ret = -EIO;
	} else {
		snprintf(out, AUTH_KEY_TEXT_LEN, "%s%s:", AUTH_KEY_PREFIX, b64);
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	return ret;
}

int auth_key_parse(const char *text, unsigned char secret[AUTH_SECRET_LEN], char *err,
		   size_t errlen)
{
	const size_t plen = strlen(AUTH_KEY_PREFIX);
	unsigned char raw[KEY_RAW_LEN + 2], sum[4];
	size_t n;
	int ret = 0;

	while (*text == ' ' || *text == '\t')
		text++;
	n = strcspn(text, " \t\r\n");
	if (n < 6 || strncmp(text, "IBNBD-", 6))
		return errmsg(err, errlen, "not an ibnbd key (it starts with %s; make one with `ibnbd-client gen-key`)",
			      AUTH_KEY_PREFIX);
	if (n < plen || strncmp(text, AUTH_KEY_PREFIX, plen))
		return errmsg(err, errlen, "a key of another format version (this ibnbd reads %s keys)",
			      AUTH_KEY_PREFIX);
	if (n != plen + KEY_B64_LEN + 1 || text[n - 1] != ':' ||
	    EVP_DecodeBlock(raw, (const unsigned char *)text + plen, KEY_B64_LEN) != KEY_RAW_LEN)
		return errmsg(err, errlen, "a damaged key: %s must be followed by %d base64 characters and ':'",
			      AUTH_KEY_PREFIX, KEY_B64_LEN);
	if (checksum(raw, sum) || CRYPTO_memcmp(sum, raw + AUTH_SECRET_LEN, 4))
		ret = errmsg(err, errlen, "a damaged key: its checksum does not match");
	else
		memcpy(secret, raw, AUTH_SECRET_LEN);
	OPENSSL_cleanse(raw, sizeof(raw));
	return ret;
}

int auth_secret_file_check(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st)) {
		snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
		return -errno;
	}
	if (st.st_uid != 0) {
		snprintf(err, errlen, "%s holds secrets but is owned by uid %u, not root (chown root %s)",
			 path, (unsigned int)st.st_uid, path);
		return -EPERM;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s holds secrets but others may access it (mode %03o; chmod 600 %s)",
			 path, (unsigned int)(st.st_mode & 0777), path);
		return -EPERM;
	}
	return 0;
}

/* Opens a secrets file and checks who may read it. */
static FILE *open_secret_file(const char *path, int *ret, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	FILE *f;

	if (fd < 0) {
		*ret = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	*ret = auth_secret_file_check(fd, path, err, errlen);
	if (*ret) {
		close(fd);
		return NULL;
	}
	f = fdopen(fd, "r");
	if (!f) {
		*ret = -errno;
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		close(fd);
	}
	return f;
}

/* The first word of line (blanks skipped), or NULL for a blank or comment
 * line; *len is its length. */
static const char *first_word(const char *line, size_t *len)
{
	line += strspn(line, " \t");
	if (!*line || *line == '#' || *line == '\n' || *line == '\r')
		return NULL;
	*len = strcspn(line, " \t\r\n");
	return line;
}

int auth_key_file_load(const char *path, unsigned char secret[AUTH_SECRET_LEN], char *err,
		       size_t errlen)
{
	char line[256], why[160];
	unsigned int lineno = 0;
	bool found = false;
	int ret;
	FILE *f = open_secret_file(path, &ret, err, errlen);

	if (!f)
		return ret;
	while (fgets(line, sizeof(line), f)) {
		const char *w, *rest;
		size_t n;

		lineno++;
		w = first_word(line, &n);
		if (!w)
			continue;
		rest = w + n + strspn(w + n, " \t\r\n");
		if (found || *rest) {
			ret = errmsg(err, errlen, "%s:%u: a key file holds one key, nothing else", path,
				     lineno);
			break;
		}
		ret = auth_key_parse(w, secret, why, sizeof(why));
		if (ret) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			break;
		}
		found = true;
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	if (!ret && !found)
		ret = errmsg(err, errlen, "%s holds no key (make one with `ibnbd-client gen-key`)", path);
	if (ret)
		OPENSSL_cleanse(secret, AUTH_SECRET_LEN);
	return ret;
}

const struct auth_host *auth_hosts_find(const struct auth_hosts *h, const char *id)
{
	for (size_t i = 0; i < h->n; i++)
		if (!strcmp(h->v[i].id, id))
			return &h->v[i];
	return NULL;
}

void auth_hosts_free(struct auth_hosts *h)
{
	if (h->v)
		OPENSSL_cleanse(h->v, h->n * sizeof(*h->v));
	free(h->v);
	h->v = NULL;
	h->n = 0;
}

/* One "HOSTID KEY" line into *e. 0, or -EINVAL with a sentence. */
static int parse_host_line(const char *w, size_t n, struct auth_host *e, char *err, size_t errlen)
{
	const char *key;
	size_t kn;

	if (n >= sizeof(e->id))
		return errmsg(err, errlen, "a host id has at most %zu characters", sizeof(e->id) - 1);
	memcpy(e->id, w, n);
	e->id[n] = '\0';
	if (host_id_check(e->id, err, errlen))
		return -EINVAL;
	key = first_word(w + n, &kn);
	if (!key)
		return errmsg(err, errlen, "host '%s' has no key (write HOSTID KEY)", e->id);
	if (*(key + kn + strspn(key + kn, " \t\r\n")))
		return errmsg(err, errlen, "more than HOSTID KEY on the line");
	return auth_key_parse(key, e->secret, err, errlen);
}

int auth_hosts_load(const char *path, struct auth_hosts *out, char *err, size_t errlen)
{
	struct auth_hosts h = { 0 };
	char line[512], why[200];
	unsigned int lineno = 0;
	int ret;
	FILE *f = open_secret_file(path, &ret, err, errlen);

	if (!f)
		return ret;
	while (!ret && fgets(line, sizeof(line), f)) {
		struct auth_host e, *v;
		const char *w;
		size_t n;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			ret = errmsg(err, errlen, "%s:%u: the line is too long", path, lineno);
			break;
		}
		w = first_word(line, &n);
		if (!w)
			continue;
		ret = parse_host_line(w, n, &e, why, sizeof(why));
		if (!ret && auth_hosts_find(&h, e.id))
			ret = errmsg(why, sizeof(why), "host '%s' is listed twice", e.id);
		if (ret) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			break;
		}
		v = realloc(h.v, (h.n + 1) * sizeof(*v));
		if (!v) {
			ret = -ENOMEM;
			snprintf(err, errlen, "%s: out of memory", path);
			break;
		}
		h.v = v;
		h.v[h.n++] = e;
		OPENSSL_cleanse(&e, sizeof(e));
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	if (ret) {
		auth_hosts_free(&h);
		return ret;
	}
	*out = h;
	return 0;
}

/* The host's MAC key: HKDF-SHA256 of its secret, bound to its id. */
static int derive_key(const unsigned char secret[AUTH_SECRET_LEN], const char *host_id,
		      unsigned char out[32])
{
	static const char salt[] = "ibnbd authentication v1";
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret,
						  AUTH_SECRET_LEN),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
						  sizeof(salt) - 1),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)host_id,
						  strlen(host_id)),
		OSSL_PARAM_construct_end(),
	};
	int ret = ctx && EVP_KDF_derive(ctx, out, 32, params) == 1 ? 0 : -EIO;

	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ret;
}

static void put_le16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

int auth_proof(const unsigned char secret[AUTH_SECRET_LEN], enum auth_role role,
	       const struct auth_transcript *t, unsigned char out[AUTH_MAC_LEN])
{
	/* Fixed-size fields, ids NUL-padded: no two transcripts encode alike. */
	struct {
		char label[24];
		unsigned char version[2], conn_index[2];
		unsigned char uuid[16];
		unsigned char client_nonce[AUTH_NONCE_LEN], server_nonce[AUTH_NONCE_LEN];
		char host_id[IBNBD_HOST_ID_MAX], server_id[IBNBD_HOST_ID_MAX];
	} m;
	unsigned char key[32];
	int ret;

	memset(&m, 0, sizeof(m));
	snprintf(m.label, sizeof(m.label), "%s",
		 role == AUTH_PROOF_SERVER ? "ibnbd server proof" : "ibnbd client proof");
	put_le16(m.version, t->version);
	put_le16(m.conn_index, t->conn_index);
	memcpy(m.uuid, t->session_uuid, sizeof(m.uuid));
	memcpy(m.client_nonce, t->client_nonce, AUTH_NONCE_LEN);
	memcpy(m.server_nonce, t->server_nonce, AUTH_NONCE_LEN);
	snprintf(m.host_id, sizeof(m.host_id), "%s", t->host_id);
	snprintf(m.server_id, sizeof(m.server_id), "%s", t->server_id);
	ret = derive_key(secret, t->host_id, key);
	if (!ret)
		ret = auth_hmac_sha256(key, sizeof(key), &m, sizeof(m), out);
	OPENSSL_cleanse(key, sizeof(key));
	return ret;
}

int auth_answer(const unsigned char secret[AUTH_SECRET_LEN], const struct auth_transcript *t,
		const unsigned char server_proof[AUTH_MAC_LEN], unsigned char out[AUTH_MAC_LEN])
{
	unsigned char want[AUTH_MAC_LEN];
	int ret = auth_proof(secret, AUTH_PROOF_SERVER, t, want);

	if (!ret && !auth_proof_equal(want, server_proof))
		ret = -EACCES;
	if (!ret)
		ret = auth_proof(secret, AUTH_PROOF_CLIENT, t, out);
	OPENSSL_cleanse(want, sizeof(want));
	return ret;
}

bool auth_proof_equal(const unsigned char a[AUTH_MAC_LEN], const unsigned char b[AUTH_MAC_LEN])
{
	return CRYPTO_memcmp(a, b, AUTH_MAC_LEN) == 0;
}

int auth_nonce(unsigned char out[AUTH_NONCE_LEN])
{
	return RAND_bytes(out, AUTH_NONCE_LEN) == 1 ? 0 : -EIO;
}
