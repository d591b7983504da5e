/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The swarm: peer connections (session + wire codec over libuv TCP), the
 * releases this node holds and serves, and the one release it is fetching
 * (the scheduler decides what to ask whom). */
#pragma once

#include <jansson.h>
#include <uv.h>

struct daemon;
struct swarm;

int swarm_new(struct daemon *d, struct swarm **ret, struct perr *err);
/* Closes every connection; the loop then finishes the close callbacks. */
void swarm_stop(struct swarm *sw);
void swarm_free(struct swarm *sw);

/* A connection arrived on the listener. */
void swarm_accept(struct swarm *sw, uv_stream_t *server);

/* For the control socket. */
json_t *swarm_peers_json(struct swarm *sw);
json_t *swarm_fetch_json(struct swarm *sw);
