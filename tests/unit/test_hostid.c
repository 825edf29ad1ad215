// SPDX-License-Identifier: GPL-2.0-only
/* The host id from /etc/machine-id: an HMAC-SHA256 of ibnbd's application
 * id keyed with the machine id, as a UUID; operator-given ids. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostid.h"
#include "tap.h"

static const char *write_file(const char *text)
{
	static char path[] = "/tmp/ibnbd-test-machine-id.XXXXXX";
	int fd;

	strcpy(path, "/tmp/ibnbd-test-machine-id.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		return NULL;
	close(fd);
	return path;
}

int main(void)
{
	char id[HOST_ID_LEN], id2[HOST_ID_LEN], err[256];
	const char *p;

	p = write_file("0123456789abcdef0123456789abcdef\n");
	/* Expected: python3 hmac.new(bytes.fromhex(machine id), app id, sha256),
	 * first 16 bytes with the UUID version and variant bits set. */
	ok(p && host_id_from_machine_id(p, id, err, sizeof(err)) == 0 &&
	   !strcmp(id, "a336dea7-512a-4c44-a21f-d046cab1ac2b"),
	   "the id of a known machine id (%s)", id);
	unlink(p);
	p = write_file("0123456789ABCDEF0123456789ABCDEF");
	ok(p && host_id_from_machine_id(p, id2, err, sizeof(err)) == 0 && !strcmp(id, id2),
	   "upper case and no newline give the same id");
	unlink(p);
	p = write_file("0123456789abcdef0123456789abcde0\n");
	ok(p && host_id_from_machine_id(p, id2, err, sizeof(err)) == 0 && strcmp(id, id2),
	   "another machine id gives another id");
	unlink(p);
	p = write_file("hostname\n");
	ok(p && host_id_from_machine_id(p, id2, err, sizeof(err)) == -EINVAL &&
	   strstr(err, "32 hex digits"), "garbage is refused with a sentence: %s", err);
	unlink(p);
	p = write_file("0123456789abcdef0123456789abcdef0\n");
	ok(p && host_id_from_machine_id(p, id2, err, sizeof(err)) == -EINVAL,
	   "33 digits are refused");
	unlink(p);
	ok(host_id_from_machine_id("/nonexistent/machine-id", id2, err, sizeof(err)) == -ENOENT &&
	   strstr(err, "/nonexistent/machine-id"), "a missing file is named: %s", err);
	ok(host_id_check("rack4-node17", err, sizeof(err)) == 0, "an operator's id");
	ok(host_id_check("", err, sizeof(err)) == -EINVAL, "an empty id is refused");
	ok(host_id_check("two words", err, sizeof(err)) == -EINVAL, "a blank is refused");
	ok(host_id_check("0123456789012345678901234567890123456789012345678901234567890123",
			 err, sizeof(err)) == -EINVAL, "64 characters are refused");
	return tap_done();
}
