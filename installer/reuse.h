/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Local reuse: finding the chunks of a new release in what the device
 * already holds (its active slot, a seed file), so that only the rest
 * travels. Shared by the installer (bundle installs) and shoald (fetches
 * into the inactive slot). Every chunk offered was hashed here: its id is
 * the BLAKE2b of the bytes handed over. Reads only the fd it is given: no
 * state, no callbacks other than ops, so it may run on any thread. */
#pragma once

#include "manifest.h"

struct reuse_ops {
	/* Does the new release still need a chunk with this id and length? */
	bool (*wanted)(void *ud, const uint8_t id[HASH_SIZE], uint32_t len);
	/* The verified bytes of a wanted chunk; a negative return stops. */
	int (*offer)(void *ud, const uint8_t id[HASH_SIZE], const uint8_t *buf, uint32_t len, struct perr *err);
	void *ud;
};

/* The chunks old's table says fd holds (an installed slot): each is read
 * at its offset and checked against its id; one that does not match is
 * skipped (the slot is not what its record says). size bounds the reads. */
int reuse_known(int fd, uint64_t size, const struct manifest *old, const struct reuse_ops *ops, struct perr *err);

/* The first size bytes of fd chunked with the new release's parameters
 * (a slot or file with no known manifest). */
int reuse_scan(int fd, uint64_t size, const struct chunker_params *p, const struct reuse_ops *ops, struct perr *err);

/* The size of a regular file or a block device. */
int fd_size(int fd, uint64_t *ret);

/* BLAKE2b-256 over the first size bytes of fd: the manifest's image hash.
 * progress (may be NULL) hears of every MiB; it runs on the caller's
 * thread. */
int image_hash_fd(int fd, uint64_t size, uint8_t out[HASH_SIZE], void (*progress)(void *ud, uint64_t done, uint64_t total),
		  void *ud, struct perr *err);
