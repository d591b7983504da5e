/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A simulator scenario: the fleet, the image and how version 2 differs
 * from version 1, the links, the rollout, the faults and the final states
 * the run must end in. docs/simulator.md describes the file (INI, read with
 * inih); this module parses it and resolves every name, so that both modes
 * (model mode now, process mode later) get plain per-node values: a node's
 * own link, whether it is a canary, which faults hit it, what it must end as.
 *
 * Nothing here simulates anything. Errors name FILE:LINE and the reason;
 * unknown sections and keys are errors. */
#pragma once

#include "util.h"

#define SCN_NAME_MAX 32
#define SCN_MAX_DEVICES 100000u
#define SCN_MAX_GROUPS 64u
#define SCN_MAX_FAULTS 256u
/* Node number of the gateway in fault targets (devices are 0..n_devices-1). */
#define SCN_GATEWAY UINT32_MAX

enum scn_rollout {
	SCN_ROLLOUT_AUTO = 0,     /* every device fetches at once and installs when complete */
	SCN_ROLLOUT_CAMPAIGN = 1, /* canaries first; the rest once every canary committed */
};

enum scn_seed_policy {
	SCN_SEED_STRICT = 0,  /* shoald's default: the seed serves what no peer holds */
	SCN_SEED_OFFLOAD = 1, /* plus idle assist (SHOAL_SEED_POLICY=offload) */
	SCN_SEED_PEER = 2,    /* the seed is an ordinary peer */
};

enum scn_fault_kind {
	SCN_FAULT_KILL = 0,              /* the node's daemon dies, restarts after duration */
	SCN_FAULT_POWER_CUT_INSTALL = 1, /* power lost `at` into the install; off for duration */
	SCN_FAULT_HEALTH_FAIL = 2,       /* the health check after the trial boot fails */
	SCN_FAULT_MALICIOUS = 3,         /* from `at` on the node serves corrupted chunks */
	SCN_FAULT_GATEWAY_DOWN = 4,      /* the gateway leaves at `at` (for duration; 0: for good) */
	SCN_FAULT_LINK_CUT = 5,          /* the node's link is down from `at` for duration */
};

/* The states a device ends in (results.json's final_state). */
enum scn_state {
	SCN_STATE_COMMITTED = 0,
	SCN_STATE_ROLLED_BACK = 1,
	SCN_STATE_FAILED = 2, /* did not get there: no image, or still busy at time_limit */
};
#define SCN_N_STATES 3

/* A link as seen from its node: what it can send and receive, one-way
 * latency to the LAN, and packet loss. Rates are bytes per second. */
struct scn_link {
	uint64_t up_bps;
	uint64_t down_bps;
	uint32_t latency_us;
	uint32_t loss_ppm; /* lost packets per million */
};

struct scn_node {
	char name[SCN_NAME_MAX];
	uint32_t group; /* index into groups; 0 is "default" (devices named in no group) */
	struct scn_link link;
	bool canary;
	bool has_expect;
	enum scn_state expect;
};

struct scn_group {
	char name[SCN_NAME_MAX];
	uint32_t n_members;
};

struct scn_fault {
	char name[SCN_NAME_MAX]; /* from [fault.NAME] */
	enum scn_fault_kind kind;
	uint32_t node;           /* device index, or SCN_GATEWAY */
	uint64_t at_ms;          /* from the start; POWER_CUT_INSTALL: from the node's install start */
	uint64_t duration_ms;    /* 0 with GATEWAY_DOWN: it does not come back */
	unsigned line;           /* of its kind= key, for messages */
};

struct scenario {
	char *path;
	/* [fleet] */
	uint32_t n_devices;
	uint32_t max_connections; /* per device, the gateway included */
	struct scn_node *nodes;   /* n_devices */
	struct scn_group *groups; /* n_groups, [0] = "default" */
	uint32_t n_groups;
	/* [image] */
	uint64_t image_size;
	uint32_t chunk_avg;
	uint32_t changed_ppm;     /* of version 2's chunks, new to version 1 */
	bool base_v1;             /* devices start on version 1 (else on nothing: every byte is fetched) */
	uint64_t image_seed;
	char version[SCN_NAME_MAX];      /* version 2's name */
	char from_version[SCN_NAME_MAX]; /* version 1's name */
	/* [links] */
	struct scn_link gateway;
	/* [rollout] */
	enum scn_rollout rollout;
	uint32_t n_canaries;
	uint64_t install_ms, reboot_ms, health_ms;
	uint32_t max_installing; /* 0: no limit */
	enum scn_seed_policy seed_policy;
	uint32_t upload_slots;
	uint64_t request_timeout_ms;
	uint64_t ban_ms;
	/* [sim] */
	uint64_t seed;
	uint64_t time_limit_ms;
	/* [fault.*] */
	struct scn_fault *faults;
	uint32_t n_faults;
	/* [expect] */
	bool has_expect;
};

/* Reads and checks the scenario file at path. *ret (scenario_free) is
 * written only on success; -EINVAL with "FILE:LINE: reason" in err, -errno
 * when the file cannot be read, -ENOMEM. */
int scenario_load(const char *path, struct scenario **ret, struct perr *err);

/* The same from text in memory; name stands for the file in messages. */
int scenario_parse(const char *text, const char *name, struct scenario **ret, struct perr *err);

void scenario_free(struct scenario *s);
static inline void scenario_freep(struct scenario **s)
{
	scenario_free(*s);
}

/* Device index by name, or -ENOENT. */
int scenario_node_find(const struct scenario *s, const char *name);

/* Bytes one device has to fetch from the network: the chunks of version 2
 * that it does not hold already (all of them without base_v1). An
 * estimate from changed_ppm; the model counts exactly. */
uint64_t scenario_fetch_bytes(const struct scenario *s);

/* The Kumar-Ross lower bound on the time until every device holds the
 * image, in seconds: F * max(1/u_s, 1/d_min, N/(u_s + sum u_i)), with F =
 * scenario_fetch_bytes(), u_s the gateway's upload, d_min the smallest
 * device download, u_i the devices' uploads. */
double scenario_kumar_ross_s(const struct scenario *s, uint64_t fetch_bytes);

const char *scn_state_name(enum scn_state st);
const char *scn_fault_kind_name(enum scn_fault_kind k);
