/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The client daemon's /metrics, rendered from what `list --json` reports
 * (client_list() and maps_describe()): one source of truth for both, and a
 * pure function of that JSON (unit-tested).
 */
#ifndef IBNBD_CLIENT_METRICS_H
#define IBNBD_CLIENT_METRICS_H

#include <json-c/json.h>

#include "metrics.h"

/* devices: the array `list --json` answers with; host_id: this host's. */
void client_metrics_render(json_object *devices, const char *host_id, struct prom *p);

#endif
