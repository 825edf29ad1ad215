/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef IBNBD_DAEMON_H
#define IBNBD_DAEMON_H

/* ibnbd-client daemon ...: argv[0] is "daemon". Returns the exit status. */
int daemon_main(int argc, char **argv);

#endif
