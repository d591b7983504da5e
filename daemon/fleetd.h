/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fleet on the daemon's loop. On a device: REPORTs to the gateway
 * (on connect, on change, every report_interval) with the output of the
 * inventory programs, and what the gateway's COMMANDs asked for. On a
 * gateway: the latest report of every device and a bounded history in
 * SQLite, online/offline, and the campaigns (proto/campaign.h decides,
 * this module stores and sends). Everything runs on the loop; the
 * control socket and the HTTP API call the functions below from it. */
#pragma once

#include <jansson.h>

#include "wire.h"

struct daemon;
struct fleet;

int fleet_new(struct daemon *d, struct fleet **ret, struct perr *err);
void fleet_stop(struct fleet *f);
void fleet_free(struct fleet *f);

/* From the swarm. */
void fleet_gateway_hello(struct fleet *f);
void fleet_on_report(struct fleet *f, const uint8_t device[PUBKEY_SIZE], const struct msg_report *r,
		     const uint8_t *payload, size_t len);
void fleet_on_command(struct fleet *f, const char *peer, const struct msg_command *c);

/* A device: what the last boot check said ("health NAME: ok|failed|timed
 * out[: first line]" lines, as installer_boot_check writes them); the
 * checks go into the following reports. */
void fleet_set_boot_report(struct fleet *f, const char *report);
/* A device: the release the gateway last asked it to install (false:
 * none). The device still verifies it like any other. */
bool fleet_wanted_release(struct fleet *f, uint8_t id[HASH_SIZE], uint64_t *counter);

/* Results for the control socket and the HTTP API: a JSON object, or
 * NULL with *status an HTTP status (400, 404, 409) and err the reason. */
json_t *fleet_devices_json(struct fleet *f);
json_t *fleet_device_json(struct fleet *f, const char *id, int *status, struct perr *err);
json_t *fleet_releases_json(struct fleet *f);
json_t *fleet_campaigns_json(struct fleet *f);
json_t *fleet_campaign_json(struct fleet *f, uint64_t id, int *status, struct perr *err);
json_t *fleet_campaign_create(struct fleet *f, json_t *req, int *status, struct perr *err);
/* action: "pause", "resume", "abort". */
json_t *fleet_campaign_act(struct fleet *f, uint64_t id, const char *action, int *status, struct perr *err);
/* The Prometheus text exposition (malloc'ed, NUL-terminated). */
char *fleet_metrics(struct fleet *f);
