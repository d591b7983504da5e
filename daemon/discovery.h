/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mDNS discovery through avahi-daemon (avahi-client over D-Bus), driven by
 * the daemon's libuv loop. It publishes `_shoal._tcp` on the port shoald
 * listens on, with the TXT record of proto/txt.h; browses for the same
 * type; and hands every peer of our fleet tag (not ourselves) to the swarm
 * as a candidate, taking it back when its announcement goes away. What it
 * learns is a hint: the handshake decides who a peer is.
 *
 * avahi-daemon may be missing at start, stop, or restart: the client then
 * waits for it and publishes and browses again when it is back, saying so
 * in the log. Static peers work all the while. */
#pragma once

#include "util.h"

struct daemon;
struct discovery;

/* With [discovery] mdns = no, creates nothing: *ret = NULL and every call
 * below accepts that. Otherwise starts publishing and browsing (when
 * avahi-daemon is not reachable yet, keeps trying). Fails only on a
 * configuration it cannot announce (a fleet tag that does not fit the TXT
 * record) or out of memory. Must come after the swarm and d->port are set.
 * The caller owns *ret: discovery_stop, run the loop, discovery_free. */
int discovery_new(struct daemon *d, struct discovery **ret, struct perr *err);

/* Withdraws our announcement, drops the avahi client and closes every
 * libuv handle; the loop then runs their close callbacks. Idempotent. */
void discovery_stop(struct discovery *disc);

/* Frees what is left; call after the loop has finished the close callbacks. */
void discovery_free(struct discovery *disc);
