/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A gateway's HTTP(S) origins: static servers (nginx, a CDN, another
 * gateway's store directory) that hold a release directory
 * (manifest.shoal, keyring.shoal, chunks/ab/<id>.zst). The gateway polls
 * each origin URL, checks the manifest's signatures before it fetches
 * anything else, downloads only the chunks its store lacks (libcurl on
 * the daemon's loop), verifies every chunk against its id, and then
 * seeds the release from its store:
 *
 *   STORE/chunks/ab/<id>.zst          shared by every release
 *   STORE/releases/<release id>/      manifest.shoal, keyring.shoal,
 *                                     chunks -> ../../chunks
 *
 * An interrupted import (restart, lost link, corrupt chunk) resumes: the
 * chunks already stored are verified and kept. Releases in the store are
 * seeded again at every start. */
#pragma once

#include <jansson.h>

#include "daemon.h"

struct origin;

/* Seeds the releases already in the store and starts polling the
 * configured origins. *ret stays NULL on a device. */
int origin_new(struct daemon *d, struct origin **ret, struct perr *err);
/* Aborts the transfers and closes every handle (the loop must run once
 * more before origin_free). */
void origin_stop(struct origin *o);
void origin_free(struct origin *o);
/* What each origin did last: for `shoal status --json`. */
json_t *origin_json(struct origin *o);
