/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon object: one libuv loop owns the listener, the control
 * socket, the signals and (as they come) the peers and discovery. */
#pragma once

#include <uv.h>

#include "conf.h"
#include "sig.h"
#include "state.h"

struct daemon {
	uv_loop_t loop;
	struct conf conf;
	struct state *st;
	uint8_t *device_sk; /* sodium_malloc'ed */
	uint8_t device_pk[PUBKEY_SIZE];
	uint8_t *fleet_key; /* sodium_malloc'ed */

	uv_tcp_t listener;
	uint16_t port; /* the port we really listen on */
	uv_pipe_t control;
	uv_signal_t sigterm, sigint;
	uv_timer_t watchdog; /* only under a systemd watchdog */
	bool control_open;
	uint64_t started_ms;
	struct swarm *swarm;
	struct origin *origin;  /* a gateway's HTTP origins and store */
	struct fleet *fleet;    /* reports, devices and campaigns */
	struct http *http;      /* a gateway's API, dashboard and /metrics (NULL: no http_listen) */
	struct discovery *disc; /* NULL with [discovery] mdns = no */
	struct netwatch *netwatch; /* link state (NULL: not available) */
	struct device *dev;     /* with [device] system_conf: the installer (and d->st is its database) */
	bool stopping;
	bool loop_ready;
};

/* Loads keys and state, binds the listener and the control socket. */
int daemon_init(struct daemon *d, struct perr *err);
/* Runs until SIGTERM/SIGINT, then closes every handle. */
int daemon_run(struct daemon *d);
void daemon_deinit(struct daemon *d);

/* For work in the thread pool that may wait while the loop may not (a
 * whole image read back and hashed after a fetch or an install): the
 * calling thread runs at the lowest CPU priority until
 * daemon_thread_foreground() gives back the one returned here. On a
 * device's one or two cores the loop then goes on serving its peers
 * while the read-back takes what is left. Where the old priority could
 * not be had back (no root, RLIMIT_NICE too low) nothing changes: other
 * pool work (hooks, inventory) must not inherit nice 19. */
int daemon_thread_background(void);
void daemon_thread_foreground(int old);
