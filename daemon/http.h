/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A gateway's HTTP side ([gateway] http_listen): the JSON API under
 * /api/v1/, the dashboard at / and Prometheus metrics at /metrics.
 * libmicrohttpd runs without a thread of its own: its epoll descriptor is
 * watched by a uv_poll on the daemon's loop and MHD_run() is called from
 * there, so every request is answered on the loop that owns the state
 * (docs/architecture.md). Every /api/ path and /metrics need
 * "Authorization: Bearer TOKEN" (http_token_file). */
#pragma once

#include "util.h"

struct daemon;
struct http;

/* NULL *ret (and 0) when http_listen is not set. */
int http_new(struct daemon *d, struct http **ret, struct perr *err);
void http_stop(struct http *h);
void http_free(struct http *h);
