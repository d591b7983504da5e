/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Link state from the kernel (rtnetlink), on the daemon's loop, so that
 * the swarm can tell a dead TCP connection from a slow one when a cable is
 * pulled and plugged in again. Without it a connection that had data in
 * flight during the outage waits for TCP's next retransmission, whose
 * timer doubles at every try (0.2, 0.4, 0.8, 1.6, 3.2 s...): a 3 s outage
 * can cost 3 more seconds after the link is back. With it, shoald hears the
 * carrier come back and dials its peers again at once.
 *
 * Watches every interface but loopback: the first time an interface is
 * seen (the dump at start, or its first event) only records its state; a
 * later change from "no carrier" to "running" is reported with how long the
 * carrier was gone. Linux only; where the socket cannot be opened, shoald
 * goes on without it (TCP's own timers then decide) and says so. */
#pragma once

#include <stdint.h>
#include <uv.h>

struct netwatch;

/* ifname: the interface whose carrier came back; down_ms: how long it was
 * gone (0 when the loss was not seen). */
typedef void (*netwatch_up_fn)(void *ud, const char *ifname, uint64_t down_ms);

/* Returns NULL (after a log line) when rtnetlink is not available. */
struct netwatch *netwatch_new(uv_loop_t *loop, netwatch_up_fn up, void *ud);
/* Closes the socket's handle; the loop then runs its close callback, which
 * frees what is left. Idempotent; NULL is fine. */
void netwatch_stop(struct netwatch *nw);
