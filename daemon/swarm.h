/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The swarm: peer connections (session + wire codec over libuv TCP), the
 * releases this node holds and serves, and the one release it is fetching
 * (the scheduler decides what to ask whom). */
#pragma once

#include <jansson.h>
#include <uv.h>

#include "keyring.h"
#include "manifest.h"

struct daemon;
struct swarm;

int swarm_new(struct daemon *d, struct swarm **ret, struct perr *err);
/* Closes every connection; the loop then finishes the close callbacks. */
void swarm_stop(struct swarm *sw);
void swarm_free(struct swarm *sw);

/* A connection arrived on the listener. */
void swarm_accept(struct swarm *sw, uv_stream_t *server);

/* A peer address learnt at run time (mDNS): dialled like a static peer
 * until it goes away. device_id (hex of its first 8 bytes, from the TXT
 * record; may be NULL) is a hint only: the handshake decides who it is.
 * Returns 0, -EEXIST when known, -ENOSPC when the peer table is full. */
int swarm_add_candidate(struct swarm *sw, const struct sockaddr_in *addr, const char *device_id);
/* The address is gone (mDNS said so); an open connection stays. */
void swarm_remove_candidate(struct swarm *sw, const struct sockaddr_in *addr);
/* An interface has its carrier back after down_ms (netwatch.h): drops the
 * connections that heard nothing since (their data died in the outage)
 * and dials every known peer at once. */
void swarm_link_up(struct swarm *sw, const char *ifname, uint64_t down_ms);

/* For the TXT record: the newest release counter this node holds (0:
 * none) and its load (connected peers). */
uint64_t swarm_newest_counter(struct swarm *sw);
/* A gateway: seeds the release directory or bundle at path (its
 * signatures checked first) and tells the peers. Holding it already is
 * not an error. */
int swarm_import(struct swarm *sw, const char *path, struct perr *err);
/* Checks a release's signatures (with its own keyring when that is newer
 * than the one the swarm holds) before anything of it is fetched. */
int swarm_check_release(struct swarm *sw, const struct manifest *m, const struct keyring *own,
			struct perr *err);
bool swarm_holds(struct swarm *sw, const uint8_t id[HASH_SIZE]);
/* Serves a release whose every chunk fd holds at its offset (an installed
 * slot: slot is its index, or -1). Takes fd, copies mbytes. Holding it
 * already is not an error. */
int swarm_hold(struct swarm *sw, const uint8_t *mbytes, size_t mlen, int fd, int slot, struct perr *err);
/* Forgets what was fetched of a release (its slot failed the whole-image
 * check): it is no longer served and is fetched again when offered. */
void swarm_forget(struct swarm *sw, const uint8_t id[HASH_SIZE]);
unsigned swarm_load(struct swarm *sw);

/* ---- for a device installing a release it was handed (device.c) ---- */

/* The release being fetched, or NULL. */
const struct manifest *swarm_fetching(struct swarm *sw);
/* Stops the fetch: what it wrote into the slot is forgotten (the slot is
 * about to be written by an install). why ends "the fetch of V stops: ". */
void swarm_fetch_abort(struct swarm *sw, const char *why);
/* The releases held in slot (a slot index) are no longer served: it is
 * overwritten, or its release was refused. why follows "release V in slot
 * X ". */
void swarm_drop_slot(struct swarm *sw, int slot, const char *why);
/* The installer stored a newer keyring: peers get it from now on. */
void swarm_keyring_reload(struct swarm *sw);

/* The fleet's messages: REPORT to every connected gateway (returns how
 * many), COMMAND to one device (-ENOTCONN when it is not connected). */
struct msg;
int swarm_send_gateways(struct swarm *sw, const struct msg *m);
int swarm_send_to(struct swarm *sw, const uint8_t pub[PUBKEY_SIZE], const struct msg *m);

/* For the control socket. */
json_t *swarm_peers_json(struct swarm *sw);
json_t *swarm_fetch_json(struct swarm *sw);
/* The device's cache of compressed chunks it forwards: hits, misses
 * (read and compressed again), what it holds. */
json_t *swarm_cache_json(struct swarm *sw);
/* Bytes counted since the counter was last written to the database (once
 * a second): "rx_peers", "rx_seed" or "tx". */
uint64_t swarm_unsaved(const struct swarm *sw, const char *counter);
