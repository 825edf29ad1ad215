// SPDX-License-Identifier: GPL-2.0-only
/*
 * Log lines on systemd's journal stream carry their syslog priority: only
 * when JOURNAL_STREAM names the very file stderr is, never otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

static char path[] = "/tmp/ibnbd-test-log.XXXXXX";

/* What the three messages logged under JOURNAL_STREAM=env look like. */
static void logged_under(const char *env, char *out, size_t len)
{
	FILE *f;
	size_t n;

	if (env)
		setenv("JOURNAL_STREAM", env, 1);
	else
		unsetenv("JOURNAL_STREAM");
	if (ftruncate(STDERR_FILENO, 0) || lseek(STDERR_FILENO, 0, SEEK_SET) < 0)
		exit(1);
	log_init("t");
	log_err("e %d", 1);
	log_warn("w");
	log_info("i");
	f = fopen(path, "r");
	n = f ? fread(out, 1, len - 1, f) : 0;
	out[n] = '\0';
	if (f)
		fclose(f);
}

int main(void)
{
	char buf[256], env[64];
	struct stat st;
	int fd = mkstemp(path);

	setvbuf(stdout, NULL, _IONBF, 0);
	if (fd < 0 || dup2(fd, STDERR_FILENO) < 0 || fstat(fd, &st)) {
		printf("Bail out! cannot put stderr on %s\n", path);
		return 1;
	}
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	logged_under(env, buf, sizeof(buf));
	ok(!strcmp(buf, "<3>t: error: e 1\n<4>t: warning: w\n<6>t: i\n"),
	   "on the journal stream each line starts with its priority (got '%s')", buf);

	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);
	logged_under(env, buf, sizeof(buf));
	ok(!strcmp(buf, "t: error: e 1\nt: warning: w\nt: i\n"),
	   "JOURNAL_STREAM of another file (stderr redirected): no prefix (got '%s')", buf);

	logged_under(NULL, buf, sizeof(buf));
	ok(!strcmp(buf, "t: error: e 1\nt: warning: w\nt: i\n"),
	   "without JOURNAL_STREAM: no prefix (got '%s')", buf);

	snprintf(env, sizeof(env), "%llu:%llux", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	logged_under(env, buf, sizeof(buf));
	ok(!strcmp(buf, "t: error: e 1\nt: warning: w\nt: i\n"),
	   "a malformed JOURNAL_STREAM: no prefix (got '%s')", buf);
	unlink(path);
	return tap_done();
}
