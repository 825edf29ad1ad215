// SPDX-License-Identifier: GPL-2.0-only
/* Host keys: their text form, key and hosts files, and the handshake's
 * proofs (against values computed independently with Python's hmac and
 * hashlib, HKDF written out by hand there). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "tap.h"

#define KEY0 "IBNBD-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9jDc0p:"

static char path[64];

static const char *write_file(const char *text, mode_t mode)
{
	int fd;

	strcpy(path, "/tmp/ibnbd-test-auth.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    fchmod(fd, mode))
		return NULL;
	close(fd);
	return path;
}

static void test_key_text(void)
{
	unsigned char secret[AUTH_SECRET_LEN], s2[AUTH_SECRET_LEN];
	char key[AUTH_KEY_TEXT_LEN], key2[AUTH_KEY_TEXT_LEN], bad[80], err[256];
	int i, same = 1;

	ok(auth_key_parse(KEY0, secret, err, sizeof(err)) == 0, "a known key parses");
	for (i = 0; i < AUTH_SECRET_LEN; i++)
		same &= secret[i] == i;
	ok(same, "... into its secret");
	ok(auth_key_parse("  " KEY0 "\n", secret, err, sizeof(err)) == 0,
	   "surrounding blanks are ignored");
	ok(auth_key_generate(key, err, sizeof(err)) == 0 && strlen(key) == AUTH_KEY_TEXT_LEN - 1 &&
	   !strncmp(key, "IBNBD-1:", 8) && key[strlen(key) - 1] == ':',
	   "a generated key has the documented form: %s", key);
	ok(auth_key_parse(key, secret, err, sizeof(err)) == 0, "... and parses");
	ok(auth_key_generate(key2, err, sizeof(err)) == 0 && strcmp(key, key2) &&
	   auth_key_parse(key2, s2, err, sizeof(err)) == 0 && memcmp(secret, s2, sizeof(s2)),
	   "two generated keys differ");
	strcpy(bad, KEY0);
	bad[20] = bad[20] == 'A' ? 'B' : 'A';
	ok(auth_key_parse(bad, secret, err, sizeof(err)) == -EINVAL && strstr(err, "checksum"),
	   "one character changed: refused (%s)", err);
	ok(auth_key_parse("IBNBD-2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9jDc0p:", secret, err,
			  sizeof(err)) == -EINVAL && strstr(err, "version"),
	   "another version: refused (%s)", err);
	ok(auth_key_parse("DHHC-1:00:abc:", secret, err, sizeof(err)) == -EINVAL &&
	   strstr(err, "not an ibnbd key"), "not a key: refused (%s)", err);
	ok(auth_key_parse("IBNBD-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9jDc0:", secret, err,
			  sizeof(err)) == -EINVAL && strstr(err, "damaged"),
	   "a character short: refused (%s)", err);
	ok(auth_key_parse("IBNBD-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9jDc0p", secret, err,
			  sizeof(err)) == -EINVAL, "the closing ':' missing: refused");
}

static void test_files(void)
{
	unsigned char secret[AUTH_SECRET_LEN];
	struct auth_hosts h = { 0 };
	const struct auth_host *e;
	char err[256];
	const char *p;

	p = write_file("# this host's key\n\n" KEY0 "\n", 0600);
	ok(p && auth_key_file_load(p, secret, err, sizeof(err)) == 0 && secret[31] == 31,
	   "a key file with a comment");
	unlink(path);
	p = write_file(KEY0 "\n", 0644);
	ok(p && auth_key_file_load(p, secret, err, sizeof(err)) == -EPERM &&
	   strstr(err, "chmod 600"), "a world-readable key file is refused: %s", err);
	unlink(path);
	p = write_file(KEY0 "\n", 0640);
	ok(p && auth_key_file_load(p, secret, err, sizeof(err)) == -EPERM,
	   "a group-readable key file is refused");
	unlink(path);
	p = write_file("\n", 0600);
	ok(p && auth_key_file_load(p, secret, err, sizeof(err)) == -EINVAL &&
	   strstr(err, "no key"), "an empty key file is refused: %s", err);
	unlink(path);
	p = write_file(KEY0 "\n" KEY0 "\n", 0600);
	ok(p && auth_key_file_load(p, secret, err, sizeof(err)) == -EINVAL && strstr(err, ":2:"),
	   "two keys are refused, with the line: %s", err);
	unlink(path);
	ok(auth_key_file_load("/nonexistent/client.key", secret, err, sizeof(err)) == -ENOENT &&
	   strstr(err, "/nonexistent/client.key"), "a missing key file is named: %s", err);

	p = write_file("# hosts\nhost-a " KEY0 "\n  host-b\t" KEY0 "  # ignored? no\n", 0600);
	ok(p && auth_hosts_load(p, &h, err, sizeof(err)) == -EINVAL && strstr(err, ":3:"),
	   "a trailing word is refused, with the line: %s", err);
	unlink(path);
	p = write_file("# hosts\nhost-a " KEY0 "\n\n  host-b\t" KEY0 "\n", 0600);
	ok(p && auth_hosts_load(p, &h, err, sizeof(err)) == 0 && h.n == 2,
	   "a hosts file of two hosts");
	e = auth_hosts_find(&h, "host-b");
	ok(e && e->secret[0] == 0 && e->secret[31] == 31, "... host-b's secret");
	ok(!auth_hosts_find(&h, "host-c") && !auth_hosts_find(&h, "host-"),
	   "an unlisted host is not found");
	auth_hosts_free(&h);
	unlink(path);
	p = write_file("host-a " KEY0 "\nhost-a " KEY0 "\n", 0600);
	ok(p && auth_hosts_load(p, &h, err, sizeof(err)) == -EINVAL && strstr(err, "twice") &&
	   strstr(err, ":2:"), "a host listed twice: %s", err);
	unlink(path);
	p = write_file("host-a\n", 0600);
	ok(p && auth_hosts_load(p, &h, err, sizeof(err)) == -EINVAL && strstr(err, "no key"),
	   "a host without a key: %s", err);
	unlink(path);
	p = write_file("host-a IBNBD-1:xyz:\n", 0600);
	ok(p && auth_hosts_load(p, &h, err, sizeof(err)) == -EINVAL && strstr(err, ":1:"),
	   "a damaged key, with the line: %s", err);
	unlink(path);
	p = write_file("host-a " KEY0 "\n", 0604);
	ok(p && auth_hosts_load(p, &h, err, sizeof(err)) == -EPERM,
	   "a world-readable hosts file is refused: %s", err);
	unlink(path);
}

/* Whether the server proof for t differs from mac. */
static bool other_proof(const unsigned char secret[AUTH_SECRET_LEN],
			const struct auth_transcript *t, const unsigned char mac[AUTH_MAC_LEN])
{
	unsigned char m[AUTH_MAC_LEN];

	return auth_proof(secret, AUTH_PROOF_SERVER, t, m) == 0 && !auth_proof_equal(mac, m);
}

static void test_proofs(void)
{
	static const char want[] =
		"4189cf3d29aaf768da3b72f41f03dca72232a05446a102d776e80516900571d6";
	unsigned char secret[AUTH_SECRET_LEN], mac[AUTH_MAC_LEN], mac2[AUTH_MAC_LEN];
	unsigned char n1[AUTH_NONCE_LEN], n2[AUTH_NONCE_LEN], answer[AUTH_MAC_LEN];
	struct auth_transcript t = { .version = 3, .conn_index = 1, .host_id = "host-a",
				     .server_id = "srv-1" }, u;
	char hex[2 * AUTH_MAC_LEN + 1], err[256];
	int i;

	auth_key_parse(KEY0, secret, err, sizeof(err));
	memset(t.session_uuid, 0x11, sizeof(t.session_uuid));
	memset(t.client_nonce, 0xc1, sizeof(t.client_nonce));
	memset(t.server_nonce, 0x5e, sizeof(t.server_nonce));
	ok(auth_proof(secret, AUTH_PROOF_SERVER, &t, mac) == 0, "a server proof");
	for (i = 0; i < AUTH_MAC_LEN; i++)
		sprintf(hex + 2 * i, "%02x", mac[i]);
	ok(!strcmp(hex, want), "... equals the one computed independently (%s)", hex);
	ok(auth_proof(secret, AUTH_PROOF_SERVER, &t, mac2) == 0 && auth_proof_equal(mac, mac2),
	   "the same transcript gives the same proof");
	auth_proof(secret, AUTH_PROOF_CLIENT, &t, mac2);
	ok(!auth_proof_equal(mac, mac2), "the client's proof is not the server's (no reflection)");
	u = t;
	u.server_nonce[5] ^= 1;
	ok(other_proof(secret, &u, mac), "another server nonce, another proof (no replay)");
	u = t;
	u.client_nonce[31] ^= 1;
	ok(other_proof(secret, &u, mac), "another client nonce, another proof");
	u = t;
	u.conn_index = 0;
	ok(other_proof(secret, &u, mac), "another connection, another proof");
	u = t;
	u.session_uuid[0] ^= 1;
	ok(other_proof(secret, &u, mac), "another session, another proof");
	u = t;
	u.version = 4;
	ok(other_proof(secret, &u, mac), "another version, another proof");
	u = t;
	u.host_id = "host-b";
	ok(other_proof(secret, &u, mac), "another host id, another proof");
	u = t;
	u.server_id = "srv-2";
	ok(other_proof(secret, &u, mac), "another server id, another proof");
	auth_proof(secret, AUTH_PROOF_CLIENT, &t, mac2);
	ok(auth_answer(secret, &t, mac, answer) == 0 && auth_proof_equal(answer, mac2),
	   "the client's answer to the right server proof is its proof");
	ok(auth_answer(secret, &t, mac2, answer) == -EACCES, "a wrong server proof gets no answer");
	secret[0] ^= 1;
	ok(other_proof(secret, &t, mac), "another key, another proof");
	ok(auth_nonce(n1) == 0 && auth_nonce(n2) == 0 && memcmp(n1, n2, sizeof(n1)),
	   "two nonces differ");
}

int main(void)
{
	test_key_text();
	test_files();
	test_proofs();
	return tap_done();
}
