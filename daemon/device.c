/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "daemon.h"
#include "device.h"
#include "fleetd.h"
#include "install.h"
#include "log.h"
#include "reuse.h"
#include "swarm.h"

/* Threads. The installer's steps that run hooks (begin: pre-install;
 * finish: post-install and mark-trial), the slot write and the slot hash
 * run on libuv's thread pool, one step at a time (uv_queue_work); their
 * after-work callbacks, on the loop, do all that touches the daemon: the
 * swarm, dev->st, set_last, the daemon's database connection.
 *
 * SQLite: the installer has its own connection (installer_state), and
 * shoald its own (d->st, opened in device_open). While a step runs off the
 * loop (dev->working or dev->lo.working), the installer and its
 * connection are the worker's alone: the loop makes no installer_* call
 * then (every one is behind dev->st != DEV_INSTALLING, or behind
 * step_running() as in device_slot_size), and reads and writes the state
 * only through d->st. A connection is never used by two threads at once. */

enum dev_state {
	DEV_IDLE = 0,       /* nothing waits: fetch when a newer release is offered */
	DEV_FETCHED,        /* complete in the inactive slot; install = manual waits for the word */
	DEV_INSTALLING,     /* verify .. mark-trial, each step off the loop */
	DEV_REBOOT_PENDING, /* the trial is set; the reboot policy decides when */
	DEV_REBOOTING,      /* reboot-command ran */
};

static const char *const state_names[] = { "idle", "fetched", "installing", "reboot-pending", "rebooting" };

struct device {
	struct daemon *d;
	struct sysconf *sc;
	struct installer *in;
	struct conf_reboot reboot;
	bool reboot_set;       /* [device] reboot given; else [system] reboot */
	int booted;            /* -1: unknown (installs off) */
	char off[512];         /* why installs are off; "" when they are on */
	enum dev_state st;
	bool rollback_reboot;  /* running a rolled-back slot: the reboot into the good one is due */
	struct boot_check_result boot;

	/* the release fetched into the inactive slot */
	uint8_t id[HASH_SIZE];
	uint8_t *mbytes;
	size_t mlen;
	char version[MANIFEST_VERSION_MAX + 1];
	uint64_t counter;
	uint64_t image_size;
	int slot;

	/* the install of a fetched release, its steps off the loop */
	uv_work_t work;
	bool working;
	enum { FE_BEGIN, FE_HASH, FE_FINISH } step;
	int step_k;                 /* what the step off the loop returned */
	struct perr step_err;       /* ditto */
	struct install_result step_res;
	int hash_k;
	struct perr hash_err;
	uint8_t hash[HASH_SIZE];
	uint64_t hash_ms;

	/* the running install's phase and progress (atomics: written off the
	 * loop by the installer's callbacks, read by status) */
	unsigned phase;
	uint64_t bytes, total;

	uv_timer_t window;
	bool window_init;
	bool stopping;

	/* the last install, for status and reports */
	char last_result[32];
	char last_version[MANIFEST_VERSION_MAX + 1];
	char last_detail[4096];
	uint64_t last_verify_ms;

	/* a release installed from a directory or bundle (`shoal install PATH`):
	 * verified on the loop; begun, written, hashed and finished off it */
	struct {
		struct installer_job *job;
		struct install_result res; /* the worker's while a step runs */
		uv_work_t work;
		bool working;
		enum { LO_BEGIN, LO_WRITE, LO_HASH, LO_FINISH } step;
		int k;            /* of the step off the loop */
		struct perr err;  /* ditto */
		int reboot;       /* the request's --reboot, -1: [device] reboot */
		uint64_t seq;     /* the running (or last) install's number */
		char path[PATH_MAX];
		/* the outcome of install done_seq, for `shoal install` to hear */
		uint64_t done_seq;
		int done_k;
		struct perr done_err;
		struct install_result done_res;
	} lo;
};

static void set_phase(struct device *dev, enum install_phase phase, uint64_t done, uint64_t total)
{
	__atomic_store_n(&dev->phase, (unsigned)phase, __ATOMIC_RELAXED);
	__atomic_store_n(&dev->bytes, done, __ATOMIC_RELAXED);
	__atomic_store_n(&dev->total, total, __ATOMIC_RELAXED);
}

static enum install_phase get_phase(struct device *dev)
{
	return (enum install_phase)__atomic_load_n(&dev->phase, __ATOMIC_RELAXED);
}

/* The installer's callbacks: called off the loop while a step runs there. */
static void inst_progress(void *ud, enum install_phase phase, uint64_t done, uint64_t total)
{
	set_phase(ud, phase, done, total);
}

static void inst_phase(void *ud, enum install_phase phase)
{
	set_phase(ud, phase, 0, 0);
}

static void inst_log(void *ud, int level, const char *msg)
{
	(void)ud;
	log_msg(level, "installer: %s", msg); /* one write(2) per line */
}

/* Is an installer step running off the loop (the installer is its own)? */
static bool step_running(const struct device *dev)
{
	return dev->working || dev->lo.working;
}

static void set_last(struct device *dev, const char *result, const char *detail)
{
	snprintf(dev->last_result, sizeof(dev->last_result), "%s", result);
	snprintf(dev->last_version, sizeof(dev->last_version), "%s", dev->version);
	snprintf(dev->last_detail, sizeof(dev->last_detail), "%s", detail);
}

const char *device_slot_name(struct daemon *d, int slot)
{
	return slot >= 0 && slot < SYSCONF_SLOTS ? d->dev->sc->slots[slot].bootname : "?";
}

int device_inactive_slot(struct daemon *d)
{
	return d->dev->booted < 0 ? -1 : d->dev->booted ? 0 : 1;
}

static void log_report(const char *report, int level)
{
	const char *p = report;

	while (*p) {
		size_t n = strcspn(p, "\n");

		log_msg(level, "boot check: %.*s", (int)n, p);
		p += n + (p[n] == '\n');
	}
}

/* Is a reboot into the bootloader's primary slot due (we run the other)? */
static bool primary_elsewhere(struct device *dev)
{
	struct installer_status s;
	struct perr err = { "" };

	return installer_status(dev->in, &s, &err) == 0 && s.env_ok && s.env.primary >= 0 && s.booted >= 0 &&
	       s.env.primary != s.booted;
}

static void boot_check(struct device *dev)
{
	struct boot_check_result *b = &dev->boot;
	struct perr err = { "" };
	int k = installer_boot_check(dev->in, REBOOT_NONE, b, &err);

	dev->booted = b->booted;
	if (k < 0) {
		snprintf(dev->off, sizeof(dev->off), "boot check failed: %s", err.msg);
		log_err("boot check failed: %s; no release is fetched or installed until this is fixed", err.msg);
		return;
	}
	snprintf(dev->version, sizeof(dev->version), "%s", b->version);
	switch (b->outcome) {
	case BOOT_CHECK_NOTHING:
		log_notice("boot check: running slot %s, no install pending", device_slot_name(dev->d, b->booted));
		break;
	case BOOT_CHECK_REBOOT_PENDING:
		log_notice("boot check: %s waits in slot %s for its trial boot (this boot is still slot %s)", b->version,
			   device_slot_name(dev->d, device_inactive_slot(dev->d)), device_slot_name(dev->d, b->booted));
		dev->st = DEV_REBOOT_PENDING;
		break;
	case BOOT_CHECK_COMMITTED:
		log_report(b->report, LOG_INFO);
		log_notice("boot check: %s (counter %" PRIu64 ") passed its health checks in slot %s: committed",
			   b->version, b->counter, device_slot_name(dev->d, b->booted));
		set_last(dev, "committed", "health checks passed");
		break;
	case BOOT_CHECK_ROLLED_BACK:
		log_report(b->report, LOG_WARNING);
		log_warn("boot check: %s (counter %" PRIu64 ") failed on slot %s and was rolled back; it is refused from "
			 "now on", b->version, b->counter, device_slot_name(dev->d, b->booted));
		set_last(dev, "rolled-back", b->report);
		break;
	case BOOT_CHECK_FELL_BACK:
		log_report(b->report, LOG_WARNING);
		log_warn("boot check: the bootloader fell back to slot %s: %s never completed a boot; it is refused from "
			 "now on", device_slot_name(dev->d, b->booted), b->version);
		set_last(dev, "fell-back", b->report);
		break;
	case BOOT_CHECK_ABANDONED:
		log_notice("boot check: the install of %s was cut short before its trial and is abandoned (%.*s)",
			   b->version, (int)strcspn(b->report, "\n"), b->report);
		set_last(dev, "abandoned", b->report);
		break;
	}
	/* running a rolled-back slot (now, or since a start before): the
	 * reboot into the good one is due, and nothing is fetched meanwhile */
	if (primary_elsewhere(dev)) {
		struct state_slot s = { 0 };

		dev->rollback_reboot = state_slot_get(dev->d->st, b->booted, &s) == 0 && !strcmp(s.state, "bad");
		free(s.manifest);
		if (dev->rollback_reboot && b->outcome != BOOT_CHECK_ROLLED_BACK)
			log_warn("slot %s runs a rolled-back release and slot %s boots next: a reboot is due",
				 device_slot_name(dev->d, b->booted), device_slot_name(dev->d, device_inactive_slot(dev->d)));
	}
}

int device_open(struct daemon *d, struct perr *err)
{
	struct installer_opts o = { .log = inst_log, .progress = inst_progress, .phase = inst_phase };
	struct device *dev = calloc(1, sizeof(*dev));
	int k;

	if (!dev)
		return perr_set(err, -ENOMEM, "out of memory");
	o.ud = dev;
	d->dev = dev; /* daemon_deinit frees it */
	dev->d = d;
	dev->booted = -1;
	dev->slot = -1;
	if (d->conf.reboot) {
		if (conf_parse_reboot(d->conf.reboot, &dev->reboot) < 0)
			return perr_set(err, -EINVAL, "[device] reboot '%s' is not now, none or window HH:MM-HH:MM",
					d->conf.reboot);
		dev->reboot_set = true;
	}
	if ((k = sysconf_load(d->conf.system_conf, &dev->sc, err)) < 0)
		return perr_prefix(err, k, "[device] system_conf: ");
	if (strcmp(dev->sc->product, d->conf.product) != 0)
		return perr_set(err, -EINVAL, "[fleet] product '%s' is not the product '%s' of %s", d->conf.product,
				dev->sc->product, dev->sc->path);
	if ((k = installer_open(dev->sc, &o, &dev->in, err)) < 0)
		return k;
	/* the slots are ours while we run: `shoal` goes through us */
	if ((k = installer_lock(dev->in, err)) < 0)
		return perr_prefix(err, k, "%s: ", dev->sc->path);
	/* the same database, our own connection: the installer's is used by
	 * its steps off the loop (see the top of this file) */
	if ((k = state_open(dev->sc->state_dir, &d->st, err)) < 0)
		return k;
	log_info("system config %s: product %s, %s bootloader, slots %s (%s) and %s (%s), state in %s",
		 dev->sc->path, dev->sc->product, bootloader_kind_name(dev->sc->bootloader), dev->sc->slots[0].bootname,
		 dev->sc->slots[0].device, dev->sc->slots[1].bootname, dev->sc->slots[1].device, dev->sc->state_dir);
	/* before the swarm: what the last boot left is settled first */
	boot_check(dev);
	return 0;
}

/* ---- rebooting ---- */

static enum conf_reboot_when reboot_when(struct device *dev)
{
	if (dev->reboot_set)
		return dev->reboot.when;
	return dev->sc->reboot == REBOOT_NOW ? DEV_REBOOT_NOW : DEV_REBOOT_NONE;
}

static int reboot_now(struct device *dev, struct perr *err)
{
	bool rebooting = false;
	int k = installer_reboot(dev->in, &rebooting, err);

	if (k < 0) {
		log_err("reboot failed: %s; the reboot stays pending", err->msg);
		return k;
	}
	dev->st = DEV_REBOOTING;
	dev->rollback_reboot = false;
	return 0;
}

/* Minutes from now (local time) until the window opens; 0 inside it. */
static unsigned window_wait_min(const struct conf_reboot *r)
{
	time_t t = time(NULL);
	struct tm tm;
	unsigned now;

	localtime_r(&t, &tm);
	now = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
	if (r->start_min < r->end_min ? now >= r->start_min && now < r->end_min
				      : now >= r->start_min || now < r->end_min)
		return 0;
	return (r->start_min + 1440 - now) % 1440;
}

static void apply_reboot(struct device *dev);

static void window_cb(uv_timer_t *t)
{
	apply_reboot(t->data);
}

/* A reboot is due (a trial is set, or we run a rolled-back slot): when? */
static void apply_reboot(struct device *dev)
{
	const char *what = dev->rollback_reboot ? "the rollback" : dev->version;
	struct perr err = { "" };
	unsigned wait;

	switch (reboot_when(dev)) {
	case DEV_REBOOT_NOW:
		log_notice("rebooting for %s (reboot = now)", what);
		reboot_now(dev, &err);
		break;
	case DEV_REBOOT_NONE:
		log_notice("reboot pending for %s: left to the operator or the gateway (reboot = none)", what);
		break;
	case DEV_REBOOT_WINDOW:
		wait = window_wait_min(&dev->reboot);
		if (!wait) {
			log_notice("rebooting for %s: the maintenance window is open", what);
			reboot_now(dev, &err);
			break;
		}
		if (!dev->window_init) {
			uv_timer_init(&dev->d->loop, &dev->window);
			dev->window.data = dev;
			dev->window_init = true;
		}
		log_notice("reboot pending for %s until the maintenance window %02u:%02u-%02u:%02u (in %u min)", what,
			   dev->reboot.start_min / 60, dev->reboot.start_min % 60, dev->reboot.end_min / 60,
			   dev->reboot.end_min % 60, wait);
		uv_timer_start(&dev->window, window_cb, (uint64_t)wait * 60000, 0);
		break;
	}
}

/* A reboot is due: as the request said (--reboot now or none), else as
 * the policy says. */
static void reboot_as(struct device *dev, int reboot)
{
	const char *what = dev->rollback_reboot ? "the rollback" : dev->version;
	struct perr err = { "" };

	if (reboot == REBOOT_NOW) {
		log_notice("rebooting for %s (--reboot now)", what);
		reboot_now(dev, &err);
	} else if (reboot == REBOOT_NONE) {
		log_notice("reboot pending for %s: left to the operator (--reboot none)", what);
	} else {
		apply_reboot(dev);
	}
}

int device_reboot_now(struct daemon *d, struct perr *err)
{
	struct device *dev = d->dev;

	if (!dev)
		return perr_set(err, -ENOENT, "this shoald has no [device] system_conf");
	if (dev->st != DEV_REBOOT_PENDING && !dev->rollback_reboot)
		return perr_set(err, -ENOENT, "no reboot is due");
	log_notice("rebooting on request");
	return reboot_now(dev, err);
}

/* ---- serving what the slots hold ---- */

/* Refused on its signed body, as the installer keys the refused list. */
static bool slot_refused(struct state *st, const struct state_slot *s)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;

	if (manifest_parse(s->manifest, s->manifest_len, &m, NULL) < 0)
		m = NULL;
	return state_refused(st, s->release, m, NULL, 0) != 0;
}

/* An install cut short before its switch (a crash, a power cut) left its
 * release whole in the inactive slot: it is fetched, and goes through the
 * install again as if it had just come (install = auto: now; manual: on
 * the operator's or the gateway's word). The install checks the slot
 * whole again before anything boots it. */
static void retry_interrupted(struct device *dev)
{
	struct daemon *d = dev->d;
	struct state_slot s = { 0 };
	int i = device_inactive_slot(d);

	if (i < 0 || state_slot_get(d->st, i, &s) < 0)
		return;
	if (s.has_release && s.manifest && !strcmp(s.state, "installed") && !slot_refused(d->st, &s)) {
		log_notice("the install of %s, cut short, starts again from what slot %s holds", s.version,
			   device_slot_name(d, i));
		device_fetched(d, s.release, s.manifest, s.manifest_len);
	}
	free(s.manifest);
}

void device_start(struct daemon *d)
{
	struct device *dev = d->dev;

	if (!dev)
		return;
	for (int i = 0; i < SYSCONF_SLOTS; i++) {
		struct state_slot s = { 0 };
		struct perr err = { "" };
		int fd;

		if (state_slot_get(d->st, i, &s) < 0)
			continue;
		if (s.has_release && s.manifest &&
		    (!strcmp(s.state, "good") || !strcmp(s.state, "installed") || !strcmp(s.state, "trial")) &&
		    !slot_refused(d->st, &s)) {
			fd = open(dev->sc->slots[i].device, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				log_warn("slot %s (%s): %s; its release is not served", dev->sc->slots[i].bootname,
					 dev->sc->slots[i].device, strerror(errno));
			else if (swarm_hold(d->swarm, s.manifest, s.manifest_len, fd, i, &err) < 0)
				log_warn("slot %s: %s", dev->sc->slots[i].bootname, err.msg);
			else
				log_info("serving %s (counter %" PRIu64 ") from slot %s (%s, %s)", s.version, s.counter,
					 dev->sc->slots[i].bootname, s.state, i == dev->booted ? "active" : "inactive");
		}
		free(s.manifest);
	}
	/* the gateway hears what the health checks said */
	if (dev->boot.report[0])
		fleet_set_boot_report(d->fleet, dev->boot.report);
	if (!dev->off[0] && (dev->st == DEV_REBOOT_PENDING || dev->rollback_reboot))
		apply_reboot(dev);
	else if (!dev->off[0] && dev->boot.outcome == BOOT_CHECK_ABANDONED && dev->boot.interrupted)
		retry_interrupted(dev);
}

void device_stop(struct daemon *d)
{
	if (d->dev)
		d->dev->stopping = true;
	if (d->dev && d->dev->window_init && !uv_is_closing((uv_handle_t *)&d->dev->window))
		uv_close((uv_handle_t *)&d->dev->window, NULL);
	if (d->dev && d->dev->working)
		uv_cancel((uv_req_t *)&d->dev->work);
	if (d->dev && d->dev->lo.working)
		uv_cancel((uv_req_t *)&d->dev->lo.work);
	/* a hook that runs now is not waited for: the step ends at once and
	 * the install stays in its phase (the after-work callback says so) */
	if (d->dev && step_running(d->dev))
		installer_cancel(d->dev->in);
}

void device_free(struct device *dev)
{
	if (!dev)
		return;
	installer_job_free(dev->lo.job);
	installer_free(dev->in);
	sysconf_free(dev->sc);
	free(dev->mbytes);
	free(dev);
}

/* ---- fetching into the inactive slot ---- */

bool device_busy(struct daemon *d)
{
	struct device *dev = d->dev;

	return dev->off[0] || dev->rollback_reboot || dev->st >= DEV_INSTALLING;
}

int device_slot_size(struct daemon *d, uint64_t *ret, struct perr *err)
{
	int slot, fd;

	if (d->dev->off[0])
		return perr_set(err, -EBUSY, "%s", d->dev->off);
	if (step_running(d->dev)) { /* the installer is the worker's: measured here */
		const char *path = d->dev->sc->slots[device_inactive_slot(d)].device;
		int k;

		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			return perr_set(err, -errno, "%s: %s", path, strerror(errno));
		k = fd_size(fd, ret);
		close(fd);
		return k < 0 ? perr_set(err, k, "%s: cannot read its size: %s", path, strerror(-k)) : 0;
	}
	fd = installer_fetch_target(d->dev->in, false, &slot, ret, err);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

bool device_slot_fetching(struct daemon *d)
{
	struct state_slot s = { 0 };
	int i = device_inactive_slot(d);
	bool yes;

	if (i < 0 || device_busy(d) || state_slot_get(d->st, i, &s) < 0)
		return false;
	yes = !strcmp(s.state, "writing");
	free(s.manifest);
	return yes;
}

int device_fetch_target(struct daemon *d, const struct manifest *m, int *ret_slot, struct perr *err)
{
	struct device *dev = d->dev;
	uint64_t size;
	int fd;

	if (device_busy(d))
		return perr_set(err, -EBUSY, "%s", dev->off[0] ? dev->off : "an install runs or waits for its reboot");
	if (dev->st == DEV_FETCHED) {
		log_notice("%s, fetched and waiting for its install, is replaced by %s", dev->version, m->version);
		dev->st = DEV_IDLE;
	}
	fd = installer_fetch_target(dev->in, true, ret_slot, &size, err);
	if (fd < 0)
		return fd;
	if (m->image_size > size) {
		close(fd);
		return perr_set(err, -EFBIG, "the image (%" PRIu64 " bytes) does not fit slot %s (%" PRIu64 " bytes)",
				m->image_size, dev->sc->slots[*ret_slot].bootname, size);
	}
	log_notice("fetching %s straight into slot %s (%s)", m->version, dev->sc->slots[*ret_slot].bootname,
		   dev->sc->slots[*ret_slot].device);
	return fd;
}

int device_active_source(struct daemon *d, struct manifest **ret_old, char *what, size_t size)
{
	struct device *dev = d->dev;
	struct state_slot s = { 0 };
	int fd;

	*ret_old = NULL;
	if (dev->booted < 0)
		return -ENOENT;
	snprintf(what, size, "slot %s (%s)", dev->sc->slots[dev->booted].bootname, dev->sc->slots[dev->booted].device);
	fd = open(dev->sc->slots[dev->booted].device, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_warn("reuse %s: %s", what, strerror(errno));
		return -errno;
	}
	if (state_slot_get(d->st, dev->booted, &s) == 0 && s.has_release && s.manifest &&
	    (!strcmp(s.state, "good") || !strcmp(s.state, "installed")) &&
	    manifest_parse(s.manifest, s.manifest_len, ret_old, NULL) < 0)
		*ret_old = NULL;
	free(s.manifest);
	return fd;
}

/* ---- installing ---- */

/* A whole-slot hash in a pool thread: timed (dev->hash_ms), and at the
 * lowest CPU priority while it runs, so that the loop serves peers. */
struct hash_timer {
	struct timespec a;
	int prio;
};

static void hash_timer_start(struct hash_timer *t)
{
	clock_gettime(CLOCK_MONOTONIC, &t->a);
	t->prio = daemon_thread_background();
}

static void hash_timer_stop(struct device *dev, const struct hash_timer *t)
{
	struct timespec b;

	daemon_thread_foreground(t->prio);
	clock_gettime(CLOCK_MONOTONIC, &b);
	dev->hash_ms = (uint64_t)(((int64_t)b.tv_sec - t->a.tv_sec) * 1000 + ((int64_t)b.tv_nsec - t->a.tv_nsec) / 1000000);
}

/* After a step off the loop: does the shutdown end the install here? It
 * stays in its phase then (the next start's boot check abandons it, and
 * installs the release again when the slot holds it whole), or it got to
 * its trial (last: the final step ended well) before a hook could be
 * stopped. */
static bool step_stopped(struct device *dev, int status, bool last, const char *what)
{
	if (status >= 0 && !dev->d->stopping && !dev->stopping)
		return false;
	if (status >= 0 && last)
		log_notice("%s%s installed in slot %s as shoald stops: the next start finds it waiting for its trial boot",
			   dev->version, what, dev->sc->slots[dev->slot].bootname);
	else
		log_notice("install of %s%s interrupted in phase %s by the shutdown", dev->version, what,
			   install_phase_name(get_phase(dev)));
	return true;
}

/* The slot hash ran off the loop (k: what it returned). */
static void hashed(struct device *dev, int k)
{
	dev->last_verify_ms = dev->hash_ms;
	if (k >= 0)
		log_info("verify-slot: %" PRIu64 " bytes of slot %s hashed in %" PRIu64 " ms off the event loop",
			 dev->image_size, dev->sc->slots[dev->slot].bootname, dev->hash_ms);
}

/* The end of a fetched release's install, on the loop. */
static void fetched_end(struct device *dev, int k, const struct install_result *res, const struct perr *err)
{
	struct daemon *d = dev->d;

	set_phase(dev, PHASE_NONE, 0, 0);
	if (k < 0) {
		log_err("install of %s failed in phase %s: %s", dev->version, install_phase_name(res->phase), err->msg);
		set_last(dev, k == -EPERM || k == -EFBIG ? "refused" : "failed", err->msg);
		dev->st = DEV_IDLE;
		if (k == -EILSEQ || dev->hash_k < 0) {
			log_notice("%s is fetched again", dev->version);
			swarm_forget(d->swarm, dev->id);
		}
		return;
	}
	set_last(dev, "installed", "waiting for the trial boot");
	dev->st = DEV_REBOOT_PENDING;
	log_notice("%s (counter %" PRIu64 ") installed in slot %s: it boots on trial at the next reboot", dev->version,
		   dev->counter, dev->sc->slots[dev->slot].bootname);
	apply_reboot(dev);
}

/* One step of the install, off the loop: the installer is ours. */
static void fetched_work(uv_work_t *w)
{
	struct device *dev = container_of(w, struct device, work);
	struct installer_fetched f = { .manifest = dev->mbytes, .manifest_len = dev->mlen, .source = "the swarm" };
	struct hash_timer t;

	switch (dev->step) {
	case FE_BEGIN: /* verify, the install recorded, pre-install hooks */
		dev->step_err.msg[0] = '\0';
		dev->step_k = installer_fetched_begin(dev->in, &f, &dev->step_res, &dev->step_err);
		break;
	case FE_HASH:
		dev->hash_err.msg[0] = '\0';
		hash_timer_start(&t);
		dev->hash_k = installer_slot_hash(dev->in, dev->slot, dev->image_size, dev->hash, &dev->hash_err);
		hash_timer_stop(dev, &t);
		break;
	case FE_FINISH: /* the hash against the manifest, post-install hooks, mark-trial */
		dev->step_k = installer_fetched_finish(dev->in, dev->hash_k < 0 ? NULL : dev->hash, REBOOT_NONE,
						       &dev->step_res, &dev->step_err);
		break;
	}
}

static void fetched_step(struct device *dev);

static void fetched_done(uv_work_t *w, int status)
{
	struct device *dev = container_of(w, struct device, work);

	dev->working = false;
	if (step_stopped(dev, status, dev->step == FE_FINISH && dev->step_k == 0, ""))
		return;
	switch (dev->step) {
	case FE_BEGIN:
		if (dev->step_k < 0)
			break;
		dev->slot = dev->step_res.slot;
		dev->image_size = dev->step_res.image_size;
		set_phase(dev, PHASE_VERIFY_SLOT, 0, dev->image_size);
		dev->step = FE_HASH;
		fetched_step(dev);
		return;
	case FE_HASH:
		dev->step_err = dev->hash_err;
		hashed(dev, dev->hash_k);
		dev->step = FE_FINISH;
		fetched_step(dev);
		return;
	case FE_FINISH:
		break;
	}
	fetched_end(dev, dev->step_k, &dev->step_res, &dev->step_err);
}

static void fetched_step(struct device *dev)
{
	struct install_result res = { .phase = get_phase(dev) };
	struct perr err = { "" };
	int k;

	dev->working = true;
	if ((k = uv_queue_work(&dev->d->loop, &dev->work, fetched_work, fetched_done)) == 0)
		return;
	dev->working = false;
	perr_set(&err, k, "cannot start the install's next step off the event loop: %s", uv_strerror(k));
	/* on the loop, no step running: what begin recorded is abandoned */
	if (dev->step != FE_BEGIN && (k = installer_fetched_finish(dev->in, NULL, REBOOT_NONE, &res, &err)) >= 0)
		k = -EIO;
	fetched_end(dev, k, &res, &err);
}

/* Starts the install of the fetched release: its steps run off the loop,
 * and what came of it is logged and shown by status. */
static int start_install(struct device *dev, struct perr *err)
{
	if (dev->off[0])
		return perr_set(err, -EBUSY, "%s", dev->off);
	if (dev->st != DEV_FETCHED)
		return perr_set(err, dev->st == DEV_IDLE ? -ENOENT : -EBUSY, "%s",
				dev->st == DEV_IDLE ? "no fetched release waits for its install"
						    : "an install runs or waits for its reboot");
	dev->st = DEV_INSTALLING;
	dev->hash_k = 0;
	dev->step = FE_BEGIN;
	set_phase(dev, PHASE_VERIFY, 0, 0);
	fetched_step(dev);
	return 0;
}

void device_fetched(struct daemon *d, const uint8_t id[HASH_SIZE], const uint8_t *mbytes, size_t mlen)
{
	struct device *dev = d->dev;
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	struct perr err = { "" };
	uint8_t *copy;

	if (manifest_parse(mbytes, mlen, &m, &err) < 0 || !(copy = malloc(mlen))) {
		log_err("fetched release: %s", err.msg[0] ? err.msg : "out of memory");
		return;
	}
	memcpy(copy, mbytes, mlen);
	free(dev->mbytes);
	dev->mbytes = copy;
	dev->mlen = mlen;
	memcpy(dev->id, id, HASH_SIZE);
	snprintf(dev->version, sizeof(dev->version), "%s", m->version);
	dev->counter = m->counter;
	dev->st = DEV_FETCHED;
	if (d->conf.install == INSTALL_MANUAL) {
		log_notice("%s is complete in slot %s; install = manual: waiting for 'shoal install --fetched' or the "
			   "gateway", m->version, device_slot_name(d, device_inactive_slot(d)));
		return;
	}
	log_notice("%s is complete in slot %s: installing (install = auto)", m->version,
		   device_slot_name(d, device_inactive_slot(d)));
	start_install(dev, &err);
}

int device_install_fetched(struct daemon *d, struct perr *err)
{
	if (!d->dev)
		return perr_set(err, -ENOENT, "this shoald has no [device] system_conf");
	return start_install(d->dev, err);
}

/* ---- installing a release shoald was handed (`shoal install PATH`) ---- */

/* Why nothing may be installed now; 0 when the device is free. */
static int device_free_for_install(struct device *dev, struct perr *err)
{
	struct daemon *d = dev->d;

	if (dev->off[0])
		return perr_set(err, -EBUSY, "installs are off: %s", dev->off);
	if (dev->rollback_reboot)
		return perr_set(err, -EBUSY, "a reboot into slot %s is due (a rollback): reboot first ('shoal status' "
				"shows it)", device_slot_name(d, device_inactive_slot(d)));
	if (dev->st == DEV_INSTALLING)
		return perr_set(err, -EBUSY, "shoald is installing %s: wait for it ('shoal status' shows its phase)",
				dev->version);
	if (dev->st == DEV_REBOOTING)
		return perr_set(err, -EBUSY, "reboot-command ran: the device is going down; install after the reboot");
	if (dev->st == DEV_REBOOT_PENDING)
		return perr_set(err, -EBUSY, "%s waits in slot %s for its trial boot: reboot (shoald runs the health "
				"checks after it) or cancel it with 'shoal rollback' first", dev->version,
				device_slot_name(d, device_inactive_slot(d)));
	return 0;
}

static void local_step(struct device *dev);

static void local_end(struct device *dev, int k, const struct perr *err)
{
	struct daemon *d = dev->d;

	dev->lo.done_seq = dev->lo.seq;
	dev->lo.done_k = k;
	dev->lo.done_err = *err;
	dev->lo.done_res = dev->lo.res;
	if (k == 0) /* known to the swarm's records like a fetched release */
		state_release_put(d->st, dev->id, installer_job_manifest(dev->lo.job, NULL, NULL), dev->mbytes, dev->mlen,
				  REL_COMPLETE);
	installer_job_free(dev->lo.job);
	dev->lo.job = NULL;
	set_phase(dev, PHASE_NONE, 0, 0);
	if (k < 0) {
		log_err("install of %s from %s failed in phase %s: %s", dev->version, dev->lo.path,
			install_phase_name(dev->lo.res.phase), err->msg);
		set_last(dev, "failed", err->msg);
		dev->st = DEV_IDLE;
		return;
	}
	set_last(dev, "installed", "waiting for the trial boot");
	dev->st = DEV_REBOOT_PENDING;
	log_notice("%s (counter %" PRIu64 ") from %s installed in slot %s: it boots on trial at the next reboot; "
		   "%" PRIu64 " bytes reused from the active slot, %" PRIu64 " read from the bundle", dev->version, dev->counter,
		   dev->lo.path, dev->sc->slots[dev->slot].bootname, dev->lo.res.bytes_reused, dev->lo.res.bytes_read);
	/* from now on it is served like a fetched release: a USB stick on one
	 * device seeds the LAN */
	{
		struct perr e = { "" };
		int fd = open(dev->sc->slots[dev->slot].device, O_RDONLY | O_CLOEXEC);

		swarm_keyring_reload(d->swarm);
		if (fd < 0)
			log_warn("slot %s: %s; %s is not served", dev->sc->slots[dev->slot].device, strerror(errno),
				 dev->version);
		else if (swarm_hold(d->swarm, dev->mbytes, dev->mlen, fd, dev->slot, &e) < 0)
			log_warn("slot %s: %s", dev->sc->slots[dev->slot].bootname, e.msg);
		else
			log_info("serving %s (counter %" PRIu64 ") from slot %s (installed, inactive)", dev->version,
				 dev->counter, dev->sc->slots[dev->slot].bootname);
	}
	reboot_as(dev, dev->lo.reboot);
}

static const char *const lo_step_names[] = { "begin", "write", "slot check", "finish" };

/* One step of the job, off the loop: the job (and the installer) is ours. */
static void local_work(uv_work_t *w)
{
	struct device *dev = container_of(w, struct device, lo.work);
	struct hash_timer t;

	switch (dev->lo.step) {
	case LO_BEGIN: /* the install recorded, pre-install hooks */
		dev->lo.err.msg[0] = '\0';
		dev->lo.k = installer_job_begin(dev->lo.job, &dev->lo.err);
		break;
	case LO_WRITE:
		dev->lo.err.msg[0] = '\0';
		dev->lo.k = installer_job_write(dev->lo.job, &dev->lo.err);
		dev->lo.k = installer_job_written(dev->lo.job, dev->lo.k, &dev->lo.err);
		break;
	case LO_HASH:
		dev->lo.err.msg[0] = '\0';
		hash_timer_start(&t);
		dev->lo.k = installer_job_hash(dev->lo.job, &dev->lo.err);
		hash_timer_stop(dev, &t);
		break;
	case LO_FINISH: /* k and err: the hash's; post-install hooks, mark-trial */
		dev->lo.k = installer_job_finish(dev->lo.job, dev->lo.k, REBOOT_NONE, &dev->lo.err);
		break;
	}
}

static void local_step_done(uv_work_t *w, int status)
{
	struct device *dev = container_of(w, struct device, lo.work);
	char what[PATH_MAX + 8];

	dev->lo.working = false;
	snprintf(what, sizeof(what), " from %s", dev->lo.path);
	if (step_stopped(dev, status, dev->lo.step == LO_FINISH && dev->lo.k == 0, what)) {
		installer_job_free(dev->lo.job);
		dev->lo.job = NULL;
		return;
	}
	/* a slot that could not be hashed is for finish to abandon */
	if ((dev->lo.k < 0 && dev->lo.step != LO_HASH) || dev->lo.step == LO_FINISH) {
		local_end(dev, dev->lo.k, &dev->lo.err);
		return;
	}
	switch (dev->lo.step) {
	case LO_BEGIN:
		swarm_drop_slot(dev->d->swarm, dev->slot, "is overwritten");
		dev->lo.step = LO_WRITE;
		break;
	case LO_WRITE:
		dev->lo.step = LO_HASH;
		break;
	case LO_HASH:
		hashed(dev, dev->lo.k);
		dev->lo.step = LO_FINISH;
		break;
	case LO_FINISH:
		break;
	}
	local_step(dev);
}

static void local_step(struct device *dev)
{
	struct perr err = { "" };
	int k;

	dev->lo.working = true;
	if ((k = uv_queue_work(&dev->d->loop, &dev->lo.work, local_work, local_step_done)) < 0) {
		dev->lo.working = false;
		perr_set(&err, k, "cannot start the %s off the event loop: %s", lo_step_names[dev->lo.step],
			 uv_strerror(k));
		/* on the loop, no step running: the install is abandoned */
		if (dev->lo.step == LO_WRITE)
			k = installer_job_written(dev->lo.job, k, &err);
		else if (dev->lo.step != LO_BEGIN)
			k = installer_job_finish(dev->lo.job, k, REBOOT_NONE, &err);
		local_end(dev, k < 0 ? k : -EIO, &err);
	}
}

int device_install_path(struct daemon *d, const char *path, int reboot, json_t **ret, struct perr *err)
{
	struct device *dev = d->dev;
	_cleanup_(installer_job_freep) struct installer_job *job = NULL;
	const struct manifest *m, *fm;
	const uint8_t *mb;
	uint8_t *copy;
	size_t ml;
	uint64_t newest;
	char hex[2 * HASH_SIZE + 1];
	int k;

	if (!dev)
		return perr_set(err, -ENOENT, "this shoald has no [device] system_conf: it installs nothing");
	if ((k = device_free_for_install(dev, err)) < 0)
		return k;
	/* checked as the installer checks any release: trust, product, the
	 * floors, expiry, the refused list, the slot size */
	if ((k = installer_job_open(dev->in, path, &dev->lo.res, &job, err)) < 0)
		goto refused;
	m = installer_job_manifest(job, &mb, &ml);
	if (installer_job_is_module(job)) {
		k = perr_set(err, -EOPNOTSUPP, "payload type '%s' is installed by an update module, which shoald does "
			     "not run: stop shoald and run 'shoal install --no-daemon'", m->payload_type);
		goto refused;
	}
	/* and as the swarm checks an offered one: newer than every release
	 * the device holds (the same release again is allowed: a resume, or
	 * a trial cancelled before its reboot) */
	newest = swarm_newest_counter(d->swarm);
	if (m->counter < newest || (m->counter == newest && !swarm_holds(d->swarm, dev->lo.res.release))) {
		k = perr_set(err, -EPERM, "release counter %" PRIu64 " is not above %" PRIu64 ", the newest this device "
			     "holds (rollback refused)", m->counter, newest);
		goto refused;
	}
	/* a fetch writes the same slot: a newer bundle replaces an older
	 * fetch; a fetch of a release as new or newer goes on */
	if ((fm = swarm_fetching(d->swarm))) {
		char why[256];

		if (fm->counter >= m->counter)
			return perr_set(err, -EBUSY, "shoald is fetching %s (counter %" PRIu64 ") into slot %s, not older "
					"than %s (counter %" PRIu64 "): it installs as [device] install says",
					fm->version, fm->counter, device_slot_name(d, device_inactive_slot(d)), m->version,
					m->counter);
		snprintf(why, sizeof(why), "%s (counter %" PRIu64 ") from %s is installed instead", m->version,
			 m->counter, path);
		swarm_fetch_abort(d->swarm, why);
	}
	if (!(copy = malloc(ml)))
		return perr_set(err, -ENOMEM, "out of memory");
	memcpy(copy, mb, ml);
	if (dev->st == DEV_FETCHED)
		log_notice("%s, fetched and waiting for its install, is replaced by %s from %s", dev->version, m->version,
			   path);
	free(dev->mbytes);
	dev->mbytes = copy;
	dev->mlen = ml;
	memcpy(dev->id, dev->lo.res.release, HASH_SIZE);
	snprintf(dev->version, sizeof(dev->version), "%s", m->version);
	dev->counter = m->counter;
	dev->slot = device_inactive_slot(d);
	dev->image_size = m->image_size;
	dev->st = DEV_INSTALLING;
	set_phase(dev, PHASE_VERIFY, 0, 0);
	log_notice("installing %s (counter %" PRIu64 ") from %s into slot %s (%s)", m->version, m->counter, path,
		   dev->sc->slots[dev->slot].bootname, dev->sc->slots[dev->slot].device);
	*ret = json_pack("{s:b, s:I, s:s, s:s, s:I, s:s, s:I}", "ok", 1, "id", (json_int_t)(dev->lo.seq + 1), "release",
			 hex_encode(dev->id, HASH_SIZE, hex), "version", m->version, "counter", (json_int_t)m->counter,
			 "slot", dev->sc->slots[dev->slot].bootname, "image_size", (json_int_t)m->image_size);
	dev->lo.job = TAKE_PTR(job);
	dev->lo.seq++;
	dev->lo.reboot = reboot;
	dev->lo.step = LO_BEGIN; /* pre-install hooks: off the loop too */
	snprintf(dev->lo.path, sizeof(dev->lo.path), "%s", path);
	local_step(dev);
	return 0;
refused:
	log_warn("install of %s refused: %s", path, err->msg);
	return k;
}

json_t *device_install_progress(struct daemon *d, uint64_t id)
{
	struct device *dev = d->dev;
	const struct install_result *r;

	if (!dev)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "this shoald has no [device] system_conf");
	if (id && id == dev->lo.seq && dev->lo.job)
		return json_pack("{s:b, s:b, s:s, s:I, s:I}", "ok", 1, "running", 1, "phase",
				 install_phase_name(get_phase(dev)), "done",
				 (json_int_t)__atomic_load_n(&dev->bytes, __ATOMIC_RELAXED), "total",
				 (json_int_t)__atomic_load_n(&dev->total, __ATOMIC_RELAXED));
	if (!id || id != dev->lo.done_seq)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "no such install (did shoald restart? 'shoal status' "
				 "shows what it knows)");
	r = &dev->lo.done_res;
	return json_pack("{s:b, s:b, s:b, s:s, s:s?, s:i, s:I, s:I, s:I, s:I, s:b}", "ok", 1, "running", 0, "installed",
			 dev->lo.done_k == 0, "phase", install_phase_name(r->phase), "error",
			 dev->lo.done_k < 0 ? dev->lo.done_err.msg : NULL, "errno", -dev->lo.done_k, "image_size",
			 (json_int_t)r->image_size, "bytes_reused", (json_int_t)r->bytes_reused, "bytes_in_slot",
			 (json_int_t)r->bytes_in_slot, "bytes_read", (json_int_t)r->bytes_read, "rebooting",
			 dev->st == DEV_REBOOTING);
}

/* ---- the operator's word: mark-good, mark-bad, rollback ---- */

bool device_rebooting(struct daemon *d)
{
	return d->dev && d->dev->st == DEV_REBOOTING;
}

int device_judge(struct daemon *d, const char *verb, int reboot, struct boot_check_result *res, struct perr *err)
{
	struct device *dev = d->dev;
	int k;

	*res = (struct boot_check_result){ .booted = -1 };
	if (!dev)
		return perr_set(err, -ENOENT, "this shoald has no [device] system_conf");
	if (dev->st == DEV_INSTALLING)
		return perr_set(err, -EBUSY, "shoald is installing %s: wait for it ('shoal status' shows its phase)",
				dev->version);
	if (!strcmp(verb, "mark-good"))
		k = installer_mark_good(dev->in, res, err);
	else if (!strcmp(verb, "mark-bad"))
		k = installer_mark_bad(dev->in, REBOOT_NONE, res, err);
	else
		k = installer_rollback(dev->in, REBOOT_NONE, res, err);
	if (k < 0) {
		log_warn("%s: %s", verb, err->msg);
		return k;
	}
	snprintf(dev->version, sizeof(dev->version), "%s", res->version);
	switch (res->outcome) {
	case BOOT_CHECK_COMMITTED:
		log_notice("%s: %s (counter %" PRIu64 ") committed in slot %s", verb, res->version, res->counter,
			   device_slot_name(d, res->booted));
		set_last(dev, "committed", "marked good by the operator");
		break;
	case BOOT_CHECK_ROLLED_BACK:
	case BOOT_CHECK_FELL_BACK:
		log_warn("%s: %s (counter %" PRIu64 ") rolled back: slot %s boots next", verb, res->version, res->counter,
			 device_slot_name(d, device_inactive_slot(d)));
		set_last(dev, "rolled-back", res->report[0] ? res->report : "by the operator");
		break;
	case BOOT_CHECK_ABANDONED:
		log_notice("%s: the trial of %s is cancelled before its reboot; it stays installable", verb, res->version);
		set_last(dev, "cancelled", "by the operator before the reboot");
		if (dev->window_init)
			uv_timer_stop(&dev->window);
		break;
	case BOOT_CHECK_NOTHING:
	case BOOT_CHECK_REBOOT_PENDING:
		break;
	}
	if (dev->st == DEV_REBOOT_PENDING || dev->st == DEV_FETCHED)
		dev->st = DEV_IDLE;
	/* what is refused now is served no more */
	for (int i = 0; i < SYSCONF_SLOTS; i++) {
		struct state_slot s = { 0 };

		if (state_slot_get(d->st, i, &s) == 0 && s.has_release && s.manifest &&
		    (!strcmp(s.state, "bad") || slot_refused(d->st, &s)))
			swarm_drop_slot(d->swarm, i, "was refused");
		free(s.manifest);
	}
	/* another slot boots next: nothing is written into it before that
	 * reboot, which follows [device] reboot (or the request's --reboot) */
	if (primary_elsewhere(dev)) {
		dev->rollback_reboot = true;
		reboot_as(dev, reboot);
	}
	return 0;
}

/* ---- status ---- */

json_t *device_status_json(struct daemon *d)
{
	struct device *dev = d->dev;
	char hex[2 * HASH_SIZE + 1];
	struct state_install p = { 0 };
	json_t *o;
	const char *rb = !dev->reboot_set ? (dev->sc->reboot == REBOOT_NOW ? "now" : "none") : d->conf.reboot;

	o = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s}", "system_conf", dev->sc->path, "install",
		      d->conf.install == INSTALL_MANUAL ? "manual" : "auto", "reboot", rb, "booted",
		      dev->booted >= 0 ? dev->sc->slots[dev->booted].bootname : NULL, "inactive",
		      dev->booted >= 0 ? dev->sc->slots[device_inactive_slot(d)].bootname : NULL, "state",
		      dev->off[0] ? "off" : state_names[dev->st]);
	if (!o)
		return json_null();
	if (dev->off[0])
		json_object_set_new(o, "error", json_string(dev->off));
	if (dev->rollback_reboot)
		json_object_set_new(o, "reboot_due", json_string("rollback"));
	/* the phase as the installer reports it from its thread: the state
	 * database below says the same, once the phase is recorded */
	if (dev->st == DEV_INSTALLING)
		json_object_set_new(o, "progress",
				    json_pack("{s:s, s:s, s:I, s:I}", "source", dev->lo.job ? dev->lo.path : "the swarm",
					      "phase", install_phase_name(get_phase(dev)), "done",
					      (json_int_t)__atomic_load_n(&dev->bytes, __ATOMIC_RELAXED), "total",
					      (json_int_t)__atomic_load_n(&dev->total, __ATOMIC_RELAXED)));
	if (state_install_get(d->st, &p) == 0) {
		json_object_set_new(o, "phase", json_string(p.phase));
		json_object_set_new(o, "release", json_string(hex_encode(p.release, HASH_SIZE, hex)));
		json_object_set_new(o, "version", json_string(p.version));
		json_object_set_new(o, "counter", json_integer((json_int_t)p.counter));
		free(p.manifest);
	} else if (dev->st == DEV_FETCHED) {
		json_object_set_new(o, "release", json_string(hex_encode(dev->id, HASH_SIZE, hex)));
		json_object_set_new(o, "version", json_string(dev->version));
		json_object_set_new(o, "counter", json_integer((json_int_t)dev->counter));
	}
	json_object_set_new(o, "boot_check",
			    json_pack("{s:s, s:s, s:s}", "outcome", boot_check_outcome_name(dev->boot.outcome), "version",
				      dev->boot.version, "report", dev->boot.report));
	if (dev->last_result[0])
		json_object_set_new(o, "last",
				    json_pack("{s:s, s:s, s:s, s:I}", "result", dev->last_result, "version",
					      dev->last_version, "detail", dev->last_detail, "verify_ms",
					      (json_int_t)dev->last_verify_ms));
	return o;
}
