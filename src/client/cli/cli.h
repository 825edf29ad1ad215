/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef IBNBD_CLI_H
#define IBNBD_CLI_H

/* Runs the verb argv[0] (map, unmap, list); returns the exit status. */
int cli_main(int argc, char **argv);

#endif
