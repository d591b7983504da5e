/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "chunk.h"
#include "chunker.h"
#include "fileio.h"
#include "hooks.h"
#include "install-private.h"
#include "keyfile.h"
#include "module.h"
#include "release.h"
#include "reuse.h"
#include "trust.h"

#define IO_BUF (1u << 20)

static const char *const phase_names[PHASE__MAX] = {
	[PHASE_NONE] = "none",
	[PHASE_VERIFY] = "verify",
	[PHASE_PRE_INSTALL] = "pre-install",
	[PHASE_WRITE] = "write",
	[PHASE_VERIFY_SLOT] = "verify-slot",
	[PHASE_POST_INSTALL] = "post-install",
	[PHASE_MARK_TRIAL] = "mark-trial",
	[PHASE_REBOOT_PENDING] = "reboot-pending",
	[PHASE_HEALTH] = "health",
	[PHASE_COMMIT] = "commit",
	[PHASE_ROLLBACK] = "rollback",
};

const char *install_phase_name(enum install_phase p)
{
	return p < PHASE__MAX ? phase_names[p] : "?";
}

enum install_phase install_phase_from_name(const char *s)
{
	for (int i = 1; i < PHASE__MAX; i++)
		if (!strcmp(s, phase_names[i]))
			return (enum install_phase)i;
	return PHASE_NONE;
}

const char *boot_check_outcome_name(enum boot_check_outcome o)
{
	static const char *const n[] = { "nothing", "reboot-pending", "committed", "rolled-back", "fell-back", "abandoned" };

	return o <= BOOT_CHECK_ABANDONED ? n[o] : "?";
}

struct installer {
	const struct sysconf *sc;
	struct installer_opts o;
	struct state *st;
	struct bootloader *bl;
	int lock_fd;
	int cancel; /* installer_cancel: atomic, set by another thread */
};

static void vsay(struct installer *in, int level, const char *fmt, va_list ap) _printf_(3, 0);
static void vsay(struct installer *in, int level, const char *fmt, va_list ap)
{
	char msg[1024];

	if (!in->o.log)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	in->o.log(in->o.ud, level, msg);
}

static void say(struct installer *in, int level, const char *fmt, ...) _printf_(3, 4);
static void say(struct installer *in, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(in, level, fmt, ap);
	va_end(ap);
}

static void progress(struct installer *in, enum install_phase p, uint64_t done, uint64_t total)
{
	if (in->o.progress)
		in->o.progress(in->o.ud, p, done, total);
}

/* A state record that could not be written is said, not dropped: the
 * flow goes on, the phase record decides what the next run does. */
static void noted(struct installer *in, int k, const char *what)
{
	if (k < 0)
		say(in, LOG_WARNING, "state: %s failed: %s", what, strerror(-k));
}

/* The kill sweep's hook: die right after the phase is on disk. */
void install_crash_point(const char *phase)
{
	const char *at = getenv("SHOAL_INSTALLER_CRASH_AT");

	if (at && !strcmp(at, phase))
		_exit(137);
}

static void crash_point(enum install_phase p)
{
	install_crash_point(install_phase_name(p));
}

int install_enter(struct installer *in, const char *phase, const char *boot_id, struct perr *err)
{
	int k = state_install_set_phase(in->st, phase, boot_id);
	enum install_phase p = install_phase_from_name(phase);

	if (k < 0)
		return perr_set(err, k, "state: recording phase %s failed: %s", phase, strerror(-k));
	install_crash_point(phase);
	if (in->o.phase && p != PHASE_NONE)
		in->o.phase(in->o.ud, p);
	return 0;
}

static int enter(struct installer *in, enum install_phase p, const char *boot_id, struct perr *err)
{
	return install_enter(in, install_phase_name(p), boot_id, err);
}

int installer_open(const struct sysconf *sc, const struct installer_opts *o, struct installer **ret,
		   struct perr *err)
{
	_cleanup_(installer_freep) struct installer *in = calloc(1, sizeof(*in));
	int k;

	if (!in)
		return perr_set(err, -ENOMEM, "out of memory");
	in->sc = sc;
	in->lock_fd = -1;
	if (o)
		in->o = *o;
	if ((k = mkdir_p(sc->state_dir, 0700)) < 0)
		return perr_set(err, k, "%s: %s", sc->state_dir, strerror(-k));
	if ((k = state_open(sc->state_dir, &in->st, err)) < 0 || (k = bootloader_open(sc, &in->bl, err)) < 0)
		return k;
	*ret = TAKE_PTR(in);
	return 0;
}

void installer_free(struct installer *in)
{
	if (!in)
		return;
	state_close(in->st);
	bootloader_free(in->bl);
	if (in->lock_fd >= 0)
		close(in->lock_fd);
	free(in);
}

struct state *installer_state(struct installer *in)
{
	return in->st;
}

void installer_cancel(struct installer *in)
{
	__atomic_store_n(&in->cancel, 1, __ATOMIC_RELAXED);
}

/* A step cut short by installer_cancel stays in its phase, recorded as it
 * is: the next boot check abandons it as cut short, as after a power cut. */
static bool cancelled(struct installer *in)
{
	return __atomic_load_n(&in->cancel, __ATOMIC_RELAXED) != 0;
}

/* One installer at a time per state directory (shoald and shoal alike). */
static int lock(struct installer *in, struct perr *err)
{
	char path[PATH_MAX];

	if (in->lock_fd >= 0)
		return 0;
	snprintf(path, sizeof(path), "%s/install.lock", in->sc->state_dir);
	in->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (in->lock_fd < 0)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	if (flock(in->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int k = errno == EWOULDBLOCK ? -EBUSY : -errno;

		close(in->lock_fd);
		in->lock_fd = -1;
		return perr_set(err, k, "another installer holds %s (a running shoald holds it: 'shoal' goes through "
				"it unless told --no-daemon)", path);
	}
	return 0;
}

int installer_lock(struct installer *in, struct perr *err)
{
	return lock(in, err);
}

/* ---- slots ---- */

/* A slot to be written must not be what runs: a block device is opened
 * with O_EXCL (the kernel refuses it while mounted) and is refused
 * outright when it is the device of the root file system. */
static int slot_open(struct installer *in, int slot, int flags, uint64_t *ret_size, struct perr *err)
{
	const char *dev = in->sc->slots[slot].device, *name = in->sc->slots[slot].bootname;
	bool writing = (flags & O_ACCMODE) != O_RDONLY;
	struct stat st, root;
	int fd, k;

	if (writing && stat(dev, &st) == 0 && S_ISBLK(st.st_mode)) {
		if (stat("/", &root) == 0 && st.st_rdev == root.st_dev)
			return perr_set(err, -EBUSY, "slot %s (%s) is the device of the running root file system: "
					"refusing to write it (is the booted slot detected right?)", name, dev);
		flags |= O_EXCL;
	}
	fd = open(dev, flags | O_CLOEXEC);
	if (fd < 0 && errno == EBUSY)
		return perr_set(err, -EBUSY, "slot %s (%s) is in use (mounted?): refusing to write it", name, dev);
	if (fd < 0)
		return perr_set(err, -errno, "slot %s (%s): %s", name, dev, strerror(errno));
	if (writing && !(flags & O_EXCL) && fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
		/* it became a block device between stat and open */
		close(fd);
		return perr_set(err, -EBUSY, "slot %s (%s) changed while it was opened", name, dev);
	}
	if ((k = fd_size(fd, ret_size)) < 0) {
		close(fd);
		if (k == -EINVAL)
			return perr_set(err, k, "slot %s (%s) is neither a block device nor a file", name, dev);
		return perr_set(err, k, "%s: cannot read its size: %s", dev, strerror(-k));
	}
	return fd;
}

static void hash_progress(void *ud, uint64_t done, uint64_t total)
{
	progress(ud, PHASE_VERIFY_SLOT, done, total);
}

static int hash_slot(struct installer *in, int fd, uint64_t size, uint8_t out[HASH_SIZE], struct perr *err)
{
	int k = image_hash_fd(fd, size, out, hash_progress, in, err);

	return k < 0 ? perr_prefix(err, k, "slot: ") : 0;
}

/* ---- writing: local reuse first, then the release source ---- */

struct want {
	uint8_t id[HASH_SIZE];
	uint32_t idx; /* chunk index in the new manifest */
};

struct writer {
	struct installer *in;
	const struct manifest *m;
	int fd;                  /* target slot */
	struct want *want;       /* sorted by id: the chunks with one id are adjacent */
	size_t n_want;
	uint8_t *done;           /* bitmap over want[] groups (by first index of a group) */
	uint64_t settled;        /* image bytes written or found right */
	struct install_result *res;
};

static int want_cmp(const void *a, const void *b)
{
	const struct want *x = a, *y = b;
	int c = memcmp(x->id, y->id, HASH_SIZE);

	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* The first want[] entry with this id, or -1. */
static ssize_t want_find(const struct writer *w, const uint8_t id[HASH_SIZE])
{
	size_t lo = 0, hi = w->n_want;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(w->want[mid].id, id, HASH_SIZE) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < w->n_want && !memcmp(w->want[lo].id, id, HASH_SIZE) ? (ssize_t)lo : -1;
}

static bool group_done(const struct writer *w, size_t g)
{
	return w->done[g / 8] & (1u << (g % 8));
}

/* Writes the bytes of the chunk group starting at want[g] wherever the new
 * image has them. */
static int write_group(struct writer *w, size_t g, const uint8_t *buf, uint32_t len, struct perr *err)
{
	for (size_t i = g; i < w->n_want && !memcmp(w->want[i].id, w->want[g].id, HASH_SIZE); i++) {
		const struct manifest_chunk *c = &w->m->chunks[w->want[i].idx];
		int k = pwrite_full(w->fd, buf, len, (off_t)c->offset);

		if (k < 0)
			return perr_set(err, k, "writing slot %s at offset %" PRIu64 " failed: %s",
					w->in->sc->slots[w->res->slot].bootname, c->offset, strerror(-k));
		w->settled += len;
	}
	w->done[g / 8] |= (uint8_t)(1u << (g % 8));
	progress(w->in, PHASE_WRITE, w->settled, w->m->image_size);
	return 0;
}

/* A chunk found locally (reuse.c hashed it): still wanted? */
static bool writer_wanted(void *ud, const uint8_t id[HASH_SIZE], uint32_t len)
{
	struct writer *w = ud;
	ssize_t g = want_find(w, id);

	return g >= 0 && !group_done(w, (size_t)g) && w->m->chunks[w->want[g].idx].len == len;
}

static int writer_offer(void *ud, const uint8_t id[HASH_SIZE], const uint8_t *buf, uint32_t len, struct perr *err)
{
	struct writer *w = ud;
	ssize_t g = want_find(w, id);
	int k;

	if ((k = write_group(w, (size_t)g, buf, len, err)) < 0)
		return k;
	w->res->bytes_reused += len;
	return 0;
}

/* A resumed install: chunks already right in the target stay. */
static int keep_written(struct writer *w, uint8_t *buf, struct perr *err)
{
	for (size_t g = 0; g < w->n_want;) {
		size_t end = g;
		bool all = true;
		uint32_t len = w->m->chunks[w->want[g].idx].len;

		while (end < w->n_want && !memcmp(w->want[end].id, w->want[g].id, HASH_SIZE))
			end++;
		for (size_t i = g; i < end && all; i++) {
			const struct manifest_chunk *c = &w->m->chunks[w->want[i].idx];
			uint8_t id[HASH_SIZE];
			int k = pread_full(w->fd, buf, len, (off_t)c->offset);

			if (k < 0)
				return perr_set(err, k, "reading the target slot failed: %s", strerror(-k));
			chunk_id(buf, len, id);
			all = !memcmp(id, c->id, HASH_SIZE);
		}
		if (all) {
			w->done[g / 8] |= (uint8_t)(1u << (g % 8));
			w->settled += (uint64_t)len * (end - g);
			w->res->bytes_in_slot += (uint64_t)len * (end - g);
		}
		g = end;
	}
	return 0;
}

/* Touches no state (it may run on any thread): om is the active slot's
 * release when known (NULL: its content is chunked to find reuse). */
static int write_slot(struct installer *in, struct release *r, int fd, int active, const struct manifest *om,
		      bool resume, struct install_result *res, struct perr *err)
{
	const struct manifest *m = r->manifest;
	struct writer w = { .in = in, .m = m, .fd = fd, .res = res };
	size_t cap = IO_BUF + m->chunking.max;
	_cleanup_(freep) struct want *want = calloc(m->n_chunks ? m->n_chunks : 1, sizeof(*want));
	_cleanup_(freep) uint8_t *done = calloc(m->n_chunks / 8 + 1, 1);
	_cleanup_(freep) uint8_t *buf = malloc(cap);
	uint64_t asize;
	int afd, k;

	if (!want || !done || !buf)
		return perr_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_chunks; i++) {
		memcpy(want[i].id, m->chunks[i].id, HASH_SIZE);
		want[i].idx = (uint32_t)i;
	}
	qsort(want, m->n_chunks, sizeof(*want), want_cmp);
	w.want = want;
	w.n_want = m->n_chunks;
	w.done = done;

	if (resume && (k = keep_written(&w, buf, err)) < 0)
		return k;

	/* local reuse: the active slot holds most of the next release */
	afd = slot_open(in, active, O_RDONLY, &asize, err);
	if (afd >= 0) {
		struct reuse_ops ops = { writer_wanted, writer_offer, &w };

		if (om)
			k = reuse_known(afd, asize, om, &ops, err);
		else
			k = reuse_scan(afd, asize, &m->chunking, &ops, err);
		if (k < 0)
			perr_prefix(err, k, "the active slot: ");
		close(afd);
		if (k < 0)
			return k;
	} else {
		say(in, LOG_WARNING, "no local reuse: %s", err->msg);
	}

	/* the rest from the release source, each distinct chunk read once */
	for (size_t g = 0; g < w.n_want;) {
		size_t end = g;
		uint32_t len = m->chunks[want[g].idx].len;

		while (end < w.n_want && !memcmp(want[end].id, want[g].id, HASH_SIZE))
			end++;
		if (!group_done(&w, g)) {
			if ((k = release_read_chunk(r, want[g].id, len, buf, err)) < 0)
				return perr_prefix(err, k, "%s: ", r->path);
			res->bytes_read += len;
			if ((k = write_group(&w, g, buf, len, err)) < 0)
				return k;
		}
		g = end;
	}
	if ((k = file_datasync(fd)) < 0)
		return perr_set(err, k, "syncing slot %s failed: %s", in->sc->slots[res->slot].bootname, strerror(-k));
	return 0;
}

/* ---- verification ---- */

/* [system] trust, plus the caller's extra roots (--trust) when extra. */
static int load_roots(struct installer *in, bool extra, uint8_t (*keys)[PUBKEY_SIZE], size_t max, size_t *n,
		      struct perr *err)
{
	const struct sysconf *sc = in->sc;
	int k;

	*n = 0;
	for (size_t i = 0; i < sc->trust.n + (extra ? in->o.n_extra_trust : 0); i++) {
		const char *path = i < sc->trust.n ? sc->trust.v[i] : in->o.extra_trust[i - sc->trust.n];

		if (*n >= max)
			return perr_set(err, -E2BIG, "more than %zu trusted root keys", max);
		if ((k = key_read_public(path, keys[*n], err)) < 0)
			return k;
		(*n)++;
	}
	if (*n == 0)
		return perr_set(err, -ENOKEY, "no trusted root key: set [system] trust in %s", sc->path);
	return 0;
}

/* Signatures, keyring, product, floors, refused list, slot size. On
 * success a newer keyring that [system] trust alone vouches for has been
 * stored (its floor moves only at a commit, install_commit_floors); one
 * that only an extra --trust root signed serves this install and is
 * never kept.
 * counter_floor: NULL for an A/B image ("counter"), else the module
 * payload type's own floor. */
int install_verify(struct installer *in, struct release *r, const uint8_t id[HASH_SIZE], uint64_t slot_size,
		   const char *counter_floor, struct perr *err)
{
	uint8_t roots[SIGSET_MAX][PUBKEY_SIZE];
	struct trust_roots tr = { .keys = (const uint8_t(*)[PUBKEY_SIZE])roots };
	_cleanup_(keyring_freep) struct keyring *held = NULL;
	_cleanup_(freep) uint8_t *kb = NULL;
	uint64_t fcounter = 0, fkeyring = 0, ftime = 0, now = (uint64_t)time(NULL);
	struct keyring *kr;
	char reason[256];
	size_t kl;
	int k;

	if ((k = load_roots(in, true, roots, SIGSET_MAX, &tr.n, err)) < 0)
		return k;
	if ((k = state_floor_get(in->st, counter_floor ? counter_floor : "counter", &fcounter)) < 0 ||
	    (k = state_floor_get(in->st, "keyring", &fkeyring)) < 0 || (k = state_floor_get(in->st, "time", &ftime)) < 0)
		return perr_set(err, k, "state: reading the floors failed: %s", strerror(-k));
	if (ftime > now)
		now = ftime; /* a clock set back does not revive an expired release */
	if (state_keyring_get(in->st, &kb, &kl) == 0 && keyring_parse(kb, kl, &held, NULL) < 0)
		held = NULL;
	if (r->keyring && (k = trust_check_keyring(&tr, r->keyring, now, err)) < 0)
		return perr_prefix(err, k, "release keyring: ");
	if (held && trust_check_keyring(&tr, held, now, NULL) < 0)
		keyring_free(TAKE_PTR(held)); /* expired since: the release's must do */
	kr = held && (!r->keyring || held->version > r->keyring->version) ? held : r->keyring;
	if ((k = trust_check_manifest(&tr, kr, r->manifest, now, NULL, err)) < 0)
		return k;
	{
		struct trust_policy pol = {
			.product = in->sc->product,
			.min_counter = fcounter,
			.min_keyring = fkeyring,
			.max_image_size = slot_size,
		};

		if ((k = trust_check_policy(&pol, r->manifest, kr, err)) < 0)
			return k;
	}
	if (!counter_floor && strcmp(r->manifest->payload_type, PAYLOAD_AB_IMAGE) != 0)
		return perr_set(err, -EPERM, "payload type '%s' is not an A/B image (it needs an update module)",
				r->manifest->payload_type);
	if ((k = state_refused(in->st, id, r->manifest, reason, sizeof(reason))) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	if (k == 1)
		return perr_set(err, -EPERM, "release %s (counter %" PRIu64 ") is refused on this device: %s",
				r->manifest->version, r->manifest->counter, reason);
	if (!r->keyring || r->keyring != kr)
		return 0;
	{
		uint8_t sroots[SIGSET_MAX][PUBKEY_SIZE];
		struct trust_roots str = { .keys = (const uint8_t(*)[PUBKEY_SIZE])sroots };
		_cleanup_(freep) uint8_t *bytes = NULL;
		size_t len;

		/* kept for later installs only when the device's own roots
		 * vouch for it: an operator's --trust is for this install */
		if (load_roots(in, false, sroots, SIGSET_MAX, &str.n, NULL) < 0 ||
		    trust_check_keyring(&str, r->keyring, now, NULL) < 0) {
			say(in, LOG_NOTICE, "keyring v%" PRIu64 " is vouched for only by an extra --trust root: used for "
			    "this install, not kept", r->keyring->version);
			return 0;
		}
		if ((k = keyring_format(r->keyring, &bytes, &len, err)) < 0)
			return k;
		if ((k = state_keyring_put(in->st, r->keyring->version, bytes, len)) < 0)
			return perr_set(err, k, "state: storing the keyring failed: %s", strerror(-k));
	}
	return 0;
}

int install_commit_floors(struct installer *in, const char *counter_floor, uint64_t counter, const struct manifest *m,
			  struct perr *err)
{
	uint8_t roots[SIGSET_MAX][PUBKEY_SIZE];
	struct trust_roots tr = { .keys = (const uint8_t(*)[PUBKEY_SIZE])roots };
	_cleanup_(keyring_freep) struct keyring *held = NULL;
	_cleanup_(freep) uint8_t *kb = NULL;
	struct trust_result tres = { 0 };
	uint64_t ftime = 0, now = (uint64_t)time(NULL);
	size_t kl;
	int k;

	/* the time floor never runs ahead of this clock: a release stamped in
	 * the future must not expire every later one */
	if ((k = state_floor_raise(in->st, counter_floor, counter)) < 0 ||
	    (k = state_floor_raise(in->st, "time", m->created < now ? m->created : now)) < 0)
		return perr_set(err, k, "state: raising the floors failed: %s", strerror(-k));
	/* the keyring floor: the newest stored keyring, when it is the one
	 * (checked against [system] trust alone) whose keys signed m */
	if (state_floor_get(in->st, "time", &ftime) == 0 && ftime > now)
		now = ftime;
	if (state_keyring_get(in->st, &kb, &kl) < 0 || keyring_parse(kb, kl, &held, NULL) < 0 ||
	    load_roots(in, false, roots, SIGSET_MAX, &tr.n, NULL) < 0 || trust_check_keyring(&tr, held, now, NULL) < 0 ||
	    trust_check_manifest(&tr, held, m, now, &tres, NULL) < 0 || tres.release_signers == 0)
		return 0;
	if ((k = state_floor_raise(in->st, "keyring", held->version)) < 0)
		return perr_set(err, k, "state: raising the keyring floor failed: %s", strerror(-k));
	return 0;
}

static int verify_release(struct installer *in, struct release *r, const uint8_t id[HASH_SIZE], uint64_t slot_size,
			  struct perr *err)
{
	return install_verify(in, r, id, slot_size, NULL, err);
}

/* ---- hooks ---- */

static void hook_env(struct installer *in, struct hook_ctx *h, const uint8_t id[HASH_SIZE], const char *version,
		     uint64_t counter, int slot, enum install_phase phase, const char *source)
{
	int active = slot >= 0 ? (slot ? 0 : 1) : -1;
	size_t n = 0;

	hex_encode(id, HASH_SIZE, h->release);
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_RELEASE=%s", h->release);
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_VERSION=%s", version);
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_COUNTER=%" PRIu64, counter);
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_SLOT=%s", slot >= 0 ? in->sc->slots[slot].bootname : "");
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_SLOT_DEVICE=%s", slot >= 0 ? in->sc->slots[slot].device : "");
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_ACTIVE_SLOT=%s", active >= 0 ? in->sc->slots[active].bootname : "");
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_PHASE=%s", install_phase_name(phase));
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_SOURCE=%s", source ? source : "");
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_PRODUCT=%s", in->sc->product);
	snprintf(h->e[n++], sizeof(h->e[0]), "SHOAL_SYSTEM_CONF=%s", in->sc->path ? in->sc->path : "");
	for (size_t i = 0; i < n; i++)
		h->env[i] = h->e[i];
	h->env[n] = NULL;
}

struct report_buf {
	struct installer *in;
	const char *what;
	char *buf;
	size_t size;
};

static void on_report(void *ud, const char *name, const struct spawn_result *r)
{
	struct report_buf *rb = ud;
	size_t len = rb->buf ? strlen(rb->buf) : 0;
	char first[200];

	snprintf(first, sizeof(first), "%.*s", (int)sizeof(first) - 1, r->output);
	first[strcspn(first, "\n")] = '\0';
	if (r->timed_out)
		say(rb->in, LOG_WARNING, "%s %s: ran out of time%s%s", rb->what, name, *first ? ": " : "", first);
	else
		say(rb->in, r->status ? LOG_WARNING : LOG_INFO, "%s %s: exit %d%s%s", rb->what, name, r->status,
		    *first ? ": " : "", first);
	if (rb->buf && len + 1 < rb->size)
		snprintf(rb->buf + len, rb->size - len, "%s %s: %s%s%s\n", rb->what, name,
			 r->timed_out ? "timed out" : r->status ? "failed" : "ok", *first ? ": " : "", first);
}

/* cancellable: installer_cancel stops them (pre- and post-install only:
 * a commit or rollback hook cut short would decide the release's fate). */
static int run_hooks_c(struct installer *in, const char *state_name, bool cancellable, const struct hook_ctx *h,
		       char *report, size_t report_size, struct perr *err)
{
	char dir[PATH_MAX];
	struct report_buf rb = { in, "hook", report, report_size };
	int k;

	snprintf(dir, sizeof(dir), "%s/%s.d", in->sc->hooks_dir, state_name);
	k = hooks_run(dir, h->env, in->sc->hook_timeout_ms, true, cancellable ? &in->cancel : NULL, on_report, &rb, err);
	return k < 0 ? k : 0;
}

static int run_hooks(struct installer *in, const char *state_name, const struct hook_ctx *h, char *report,
		     size_t report_size, struct perr *err)
{
	return run_hooks_c(in, state_name, false, h, report, report_size, err);
}

/* ---- install ---- */

static int release_id(const struct manifest *m, uint8_t **ret_bytes, size_t *ret_len, uint8_t id[HASH_SIZE],
		      struct perr *err)
{
	int k;

	if ((k = manifest_format(m, ret_bytes, ret_len, err)) < 0)
		return k;
	crypto_generichash(id, HASH_SIZE, *ret_bytes, *ret_len, NULL, 0);
	return 0;
}

static void fill_res(struct install_result *res, const uint8_t id[HASH_SIZE], const struct manifest *m, int slot)
{
	memcpy(res->release, id, HASH_SIZE);
	snprintf(res->version, sizeof(res->version), "%s", m->version);
	res->counter = m->counter;
	res->slot = slot;
	res->image_size = m->image_size;
}

static int do_reboot(struct installer *in, bool *rebooting, struct perr *err)
{
	const char *argv[] = { "/bin/sh", "-c", in->sc->reboot_command, NULL };
	struct spawn_result r;
	int k;

	say(in, LOG_NOTICE, "rebooting: %s", in->sc->reboot_command);
	if ((k = spawn_run(argv, NULL, 120000, NULL, &r, err)) < 0)
		return k;
	if (r.status != 0 || r.timed_out)
		return perr_set(err, -EIO, "reboot-command '%s' failed (status %d): %s", in->sc->reboot_command, r.status,
				r.output);
	*rebooting = true;
	return 0;
}

/* Ends an install that was not the release's fault. */
static int abandon(struct installer *in, int k, struct perr *err)
{
	say(in, LOG_WARNING, "install abandoned: %s", err->msg);
	noted(in, state_install_end(in->st, "abandoned", err->msg), "ending the install");
	return k;
}

/* Never write into the slot the bootloader boots next: after a rollback
 * or a cancelled trial not yet rebooted, the target is primary, and a cut
 * write would leave nothing to boot. */
static int keep_running_primary(struct installer *in, int active, int target, const uint8_t *id, const char *version,
				struct perr *err)
{
	struct boot_env env;
	int k;

	if ((k = bootloader_read(in->bl, &env, err)) < 0)
		return k;
	if (env.primary == active)
		return 0;
	if ((k = bootloader_commit(in->bl, active, err)) < 0)
		return k;
	say(in, LOG_NOTICE, "the bootloader booted slot %s next; slot %s (running) is primary again before slot %s is "
	    "written", env.primary >= 0 ? in->sc->slots[env.primary].bootname : "(none)", in->sc->slots[active].bootname,
	    in->sc->slots[target].bootname);
	state_event_add(in->st, id, version, active, "pre-install", "primary",
			"the running slot made primary again before writing the other");
	return 0;
}

static int pre_install(struct installer *in, const struct hook_ctx *h, struct install_result *res, struct perr *err)
{
	int k;

	res->phase = PHASE_PRE_INSTALL;
	if ((k = enter(in, PHASE_PRE_INSTALL, NULL, err)) < 0)
		return k;
	if ((k = run_hooks_c(in, "pre-install", true, h, NULL, 0, err)) < 0) {
		perr_prefix(err, k, "pre-install hook: ");
		return cancelled(in) ? k : abandon(in, k, err);
	}
	return 0;
}

/* The slot holds the verified image: post-install hooks, then the
 * bootloader, then the reboot the policy asks for. */
static int switch_to(struct installer *in, const uint8_t id[HASH_SIZE], const struct manifest *m, int target,
		     const char *source, const char *boot_id, unsigned bootlimit, int reboot, struct install_result *res,
		     struct perr *err)
{
	struct hook_ctx h;
	int k;

	res->phase = PHASE_POST_INSTALL;
	if ((k = enter(in, PHASE_POST_INSTALL, NULL, err)) < 0)
		return k;
	hook_env(in, &h, id, m->version, m->counter, target, PHASE_POST_INSTALL, source);
	if ((k = run_hooks_c(in, "post-install", true, &h, NULL, 0, err)) < 0) {
		perr_prefix(err, k, "post-install hook: ");
		return cancelled(in) ? k : abandon(in, k, err);
	}

	/* the slot is written, synced and verified: only now the bootloader */
	res->phase = PHASE_MARK_TRIAL;
	if ((k = enter(in, PHASE_MARK_TRIAL, boot_id, err)) < 0)
		return k;
	if ((k = bootloader_set_trial(in->bl, target, err)) < 0) {
		struct perr e = { "" };

		/* the environment may have changed before the error: the running
		 * slot primary again, or the install stays in mark-trial and
		 * boot-check reads the environment to settle it */
		if (bootloader_commit(in->bl, target ? 0 : 1, &e) == 0)
			return abandon(in, k, err);
		say(in, LOG_WARNING, "the bootloader could not be put back either (%s): the install stays in phase "
		    "mark-trial; 'shoal boot-check' settles it", e.msg);
		return k;
	}
	noted(in, state_slot_set_state(in->st, target, "trial"), "marking slot trial");

	res->phase = PHASE_REBOOT_PENDING;
	if ((k = enter(in, PHASE_REBOOT_PENDING, NULL, err)) < 0)
		return k;
	say(in, LOG_NOTICE, "slot %s holds %s and boots on trial next (%u boot(s) allowed)", in->sc->slots[target].bootname,
	    m->version, bootlimit ? bootlimit : 1);
	if ((reboot < 0 ? in->sc->reboot : reboot) == REBOOT_NOW)
		return do_reboot(in, &res->rebooting, err);
	return 0;
}

/* ---- a release from a directory or bundle, in steps ---- */

struct installer_job {
	struct installer *in;
	struct install_result *res;
	struct release *r;
	uint8_t *mbytes;
	size_t mlen;
	uint8_t id[HASH_SIZE];
	char source[PATH_MAX];
	char boot_id[64];
	struct boot_env env;
	int active, target, fd;
	bool module, resume;
	/* an interrupted install of another release, ended at begin */
	bool abandon_old;
	char old_version[MANIFEST_VERSION_MAX + 1];
	char old_phase[32];
	struct manifest *om; /* the active slot's release, for reuse */
	uint8_t got[HASH_SIZE];
};

void installer_job_free(struct installer_job *j)
{
	if (!j)
		return;
	release_close(j->r);
	free(j->mbytes);
	manifest_free(j->om);
	if (j->fd >= 0)
		close(j->fd);
	free(j);
}

bool installer_job_is_module(const struct installer_job *j)
{
	return j->module;
}

const struct manifest *installer_job_manifest(const struct installer_job *j, const uint8_t **ret_bytes,
					      size_t *ret_len)
{
	if (ret_bytes)
		*ret_bytes = j->mbytes;
	if (ret_len)
		*ret_len = j->mlen;
	return j->r->manifest;
}

int installer_job_open(struct installer *in, const char *source, struct install_result *res,
		       struct installer_job **ret, struct perr *err)
{
	_cleanup_(installer_job_freep) struct installer_job *j = calloc(1, sizeof(*j));
	struct state_install old = { 0 };
	struct state_slot s = { 0 };
	uint64_t tsize = 0;
	int k;

	memset(res, 0, sizeof(*res));
	res->slot = -1;
	if (!j)
		return perr_set(err, -ENOMEM, "out of memory");
	j->in = in;
	j->res = res;
	j->fd = -1;
	snprintf(j->source, sizeof(j->source), "%s", source);
	if ((k = lock(in, err)) < 0)
		return k;
	if ((k = boot_booted_slot(in->sc, &j->active, j->boot_id, sizeof(j->boot_id), err)) < 0)
		return k;
	j->target = j->active ? 0 : 1;
	/* the environment must be sound before anything is touched */
	if ((k = bootloader_read(in->bl, &j->env, err)) < 0)
		return k;
	if ((k = release_open(source, &j->r, err)) < 0 || (k = release_id(j->r->manifest, &j->mbytes, &j->mlen, j->id, err)) < 0)
		return k;
	fill_res(res, j->id, j->r->manifest, j->target);
	res->phase = PHASE_VERIFY;
	if (strcmp(j->r->manifest->payload_type, PAYLOAD_AB_IMAGE) != 0) {
		j->module = true; /* module_install checks it its own way */
		*ret = TAKE_PTR(j);
		return 0;
	}

	k = state_install_get(in->st, &old);
	if (k == 0) {
		enum install_phase op = install_phase_from_name(old.phase);

		free(old.manifest);
		if (old.slot < 0)
			return perr_set(err, -EBUSY, "an update module install of %s is pending (phase %s): run 'shoal "
					"boot-check' to finish it first", old.version, old.phase);
		if (op >= PHASE_MARK_TRIAL)
			return perr_set(err, -EBUSY, "release %s is already on trial (phase %s): run 'shoal boot-check' after "
					"the reboot, or 'shoal rollback' to cancel it", old.version, old.phase);
		j->resume = !memcmp(old.release, j->id, HASH_SIZE) && old.slot == j->target && op >= PHASE_WRITE;
		if (!j->resume) {
			j->abandon_old = true;
			snprintf(j->old_version, sizeof(j->old_version), "%s", old.version);
			snprintf(j->old_phase, sizeof(j->old_phase), "%s", old.phase);
		}
	} else if (k != -ENOENT) {
		return perr_set(err, k, "state: %s", strerror(-k));
	}
	if (j->resume && state_slot_get(in->st, j->target, &s) == 0) {
		j->resume = !strcmp(s.state, "writing");
		free(s.manifest);
		s = (struct state_slot){ 0 };
	}

	/* verify: nothing is written (or ended) before the release passes */
	{
		_cleanup_(closep) int fd = slot_open(in, j->target, O_RDONLY, &tsize, err);

		if (fd < 0)
			return fd;
	}
	if ((k = verify_release(in, j->r, j->id, tsize, err)) < 0) {
		state_event_add(in->st, j->id, j->r->manifest->version, j->target, "verify", "refused", err->msg);
		return k;
	}
	/* what the active slot holds, known by its manifest: reused by it */
	if (state_slot_get(in->st, j->active, &s) == 0 && s.manifest &&
	    manifest_parse(s.manifest, s.manifest_len, &j->om, NULL) < 0)
		j->om = NULL;
	free(s.manifest);
	*ret = TAKE_PTR(j);
	return 0;
}

int installer_job_begin(struct installer_job *j, struct perr *err)
{
	struct installer *in = j->in;
	const struct manifest *m = j->r->manifest;
	struct state_install pend = { 0 };
	struct hook_ctx h;
	char abs[PATH_MAX];
	uint64_t tsize;
	int k;

	if (j->abandon_old) {
		say(in, LOG_NOTICE, "an interrupted install of %s (phase %s) is abandoned", j->old_version, j->old_phase);
		noted(in, state_install_end(in->st, "abandoned", "replaced by a new install"), "ending the install");
		j->abandon_old = false;
	}
	if ((j->fd = slot_open(in, j->target, O_RDWR, &tsize, err)) < 0)
		return j->fd;
	if (!j->resume) {
		pend = (struct state_install){ .counter = m->counter, .slot = j->target, .manifest = j->mbytes,
					       .manifest_len = j->mlen };
		memcpy(pend.release, j->id, HASH_SIZE);
		snprintf(pend.version, sizeof(pend.version), "%s", m->version);
		snprintf(pend.phase, sizeof(pend.phase), "%s", install_phase_name(PHASE_VERIFY));
		/* realpath writes up to PATH_MAX: not into the record's field */
		snprintf(pend.source, sizeof(pend.source), "%.*s", (int)sizeof(pend.source) - 1,
			 realpath(j->source, abs) ? abs : j->source);
		if ((k = state_install_begin(in->st, &pend)) < 0)
			return perr_set(err, k, "state: %s", strerror(-k));
		crash_point(PHASE_VERIFY);
	}
	say(in, LOG_INFO, "installing %s %s (counter %" PRIu64 ") into slot %s (%s)%s", m->product, m->version, m->counter,
	    in->sc->slots[j->target].bootname, in->sc->slots[j->target].device, j->resume ? ", resuming" : "");
	hook_env(in, &h, j->id, m->version, m->counter, j->target, PHASE_PRE_INSTALL, j->source);
	if ((k = pre_install(in, &h, j->res, err)) < 0)
		return k;
	if ((k = keep_running_primary(in, j->active, j->target, j->id, m->version, err)) < 0)
		return abandon(in, k, err);
	j->res->phase = PHASE_WRITE;
	if ((k = enter(in, PHASE_WRITE, NULL, err)) < 0)
		return k;
	if (!j->resume && (k = state_slot_set(in->st, j->target, "writing", NULL, NULL, NULL, 0)) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	return 0;
}

int installer_job_write(struct installer_job *j, struct perr *err)
{
	return write_slot(j->in, j->r, j->fd, j->active, j->om, j->resume, j->res, err);
}

int installer_job_written(struct installer_job *j, int k, struct perr *err)
{
	if (k < 0)
		return abandon(j->in, k, err);
	j->res->phase = PHASE_VERIFY_SLOT;
	return enter(j->in, PHASE_VERIFY_SLOT, NULL, err);
}

int installer_job_hash(struct installer_job *j, struct perr *err)
{
	return hash_slot(j->in, j->fd, j->r->manifest->image_size, j->got, err);
}

int installer_job_finish(struct installer_job *j, int k, int reboot, struct perr *err)
{
	struct installer *in = j->in;
	const struct manifest *m = j->r->manifest;

	if (k < 0)
		return abandon(in, k, err);
	if (sodium_memcmp(j->got, m->image_hash, HASH_SIZE) != 0) {
		perr_set(err, -EILSEQ, "slot %s does not read back as the image (hash mismatch): the device or the "
			 "release source is faulty", in->sc->slots[j->target].bootname);
		return abandon(in, -EILSEQ, err);
	}
	if ((k = state_slot_set(in->st, j->target, "installed", j->id, m, j->mbytes, j->mlen)) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	return switch_to(in, j->id, m, j->target, j->source, j->boot_id, j->env.bootlimit, reboot, j->res, err);
}

int installer_install(struct installer *in, const char *source, int reboot, struct install_result *res,
		      struct perr *err)
{
	_cleanup_(installer_job_freep) struct installer_job *j = NULL;
	struct install_result dummy;
	int k;

	if (!res)
		res = &dummy;
	if ((k = installer_job_open(in, source, res, &j, err)) < 0)
		return k;
	if (j->module)
		return module_install(in, j->r, j->id, j->mbytes, j->mlen, source, j->boot_id, reboot, res, err);
	if ((k = installer_job_begin(j, err)) < 0)
		return k;
	k = installer_job_write(j, err);
	if ((k = installer_job_written(j, k, err)) < 0)
		return k;
	k = installer_job_hash(j, err);
	return installer_job_finish(j, k, reboot, err);
}

/* ---- a release fetched by shoald into the inactive slot ---- */

int installer_fetch_target(struct installer *in, bool claim, int *ret_slot, uint64_t *ret_size, struct perr *err)
{
	struct state_install p = { 0 };
	struct state_slot ts = { 0 };
	char boot_id[64];
	int active, target, fd, k;

	if ((k = lock(in, err)) < 0)
		return k;
	if ((k = boot_booted_slot(in->sc, &active, boot_id, sizeof(boot_id), err)) < 0)
		return k;
	target = active ? 0 : 1;
	k = state_install_get(in->st, &p);
	free(p.manifest);
	if (k < 0 && k != -ENOENT)
		return perr_set(err, k, "state: %s", strerror(-k));
	if (k == 0 && p.slot < 0)
		return perr_set(err, -EBUSY, "an update module install of %s is pending (phase %s)", p.version, p.phase);
	if (k == 0 && install_phase_from_name(p.phase) >= PHASE_MARK_TRIAL)
		return perr_set(err, -EBUSY, "%s waits in slot %s for its trial boot (phase %s)", p.version,
				in->sc->slots[p.slot].bootname, p.phase);
	/* only a claim opens it for writing (O_EXCL on a block device) */
	fd = slot_open(in, target, claim ? O_RDWR : O_RDONLY, ret_size, err);
	if (fd < 0 || !claim)
		goto out;
	if (k == 0) {
		say(in, LOG_NOTICE, "an interrupted install of %s (phase %s) is abandoned: slot %s is fetched into",
		    p.version, p.phase, in->sc->slots[target].bootname);
		noted(in, state_install_end(in->st, "abandoned", "its slot is fetched into"), "ending the install");
	}
	/* a rolled-back slot is not made primary again: reboot out of it first */
	if (state_slot_get(in->st, active, &ts) == 0 && !strcmp(ts.state, "bad")) {
		free(ts.manifest);
		close(fd);
		return perr_set(err, -EBUSY, "running slot %s was rolled back: reboot into slot %s before anything is "
				"written there", in->sc->slots[active].bootname, in->sc->slots[target].bootname);
	}
	free(ts.manifest);
	ts = (struct state_slot){ 0 };
	if ((k = keep_running_primary(in, active, target, NULL, "", err)) < 0) {
		close(fd);
		return k;
	}
	/* from the first byte written, the slot's old release is gone */
	if (state_slot_get(in->st, target, &ts) < 0 || strcmp(ts.state, "writing") != 0) {
		if ((k = state_slot_set(in->st, target, "writing", NULL, NULL, NULL, 0)) < 0) {
			close(fd);
			return perr_set(err, k, "state: %s", strerror(-k));
		}
	}
	free(ts.manifest);
out:
	if (fd >= 0)
		*ret_slot = target;
	return fd;
}

/* What both halves need: the lock, the booted slot, a sound environment. */
static int fetched_prep(struct installer *in, struct install_result *res, int *active, char *boot_id, size_t size,
			struct boot_env *env, struct perr *err)
{
	int k;

	memset(res, 0, sizeof(*res));
	res->slot = -1;
	if ((k = lock(in, err)) < 0 || (k = boot_booted_slot(in->sc, active, boot_id, size, err)) < 0)
		return k;
	return bootloader_read(in->bl, env, err);
}

int installer_fetched_begin(struct installer *in, const struct installer_fetched *f, struct install_result *res,
			    struct perr *err)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	_cleanup_(keyring_freep) struct keyring *kr = NULL;
	struct release r = { .path = (char *)(f->source ? f->source : "fetched") };
	struct install_result dummy;
	struct state_install pend = { 0 }, old = { 0 };
	struct boot_env env;
	struct hook_ctx h;
	uint8_t id[HASH_SIZE];
	uint64_t tsize;
	char boot_id[64];
	int active, target, k;

	if (!res)
		res = &dummy;
	if ((k = fetched_prep(in, res, &active, boot_id, sizeof(boot_id), &env, err)) < 0)
		return k;
	target = active ? 0 : 1;
	if ((k = manifest_parse(f->manifest, f->manifest_len, &m, err)) < 0)
		return perr_prefix(err, k, "fetched manifest: ");
	if (f->keyring && (k = keyring_parse(f->keyring, f->keyring_len, &kr, err)) < 0)
		return perr_prefix(err, k, "fetched keyring: ");
	crypto_generichash(id, HASH_SIZE, f->manifest, f->manifest_len, NULL, 0);
	fill_res(res, id, m, target);
	res->phase = PHASE_VERIFY;
	k = state_install_get(in->st, &old);
	free(old.manifest);
	if (k == 0 && (old.slot < 0 || install_phase_from_name(old.phase) >= PHASE_MARK_TRIAL))
		return perr_set(err, -EBUSY, "the install of %s is pending (phase %s)", old.version, old.phase);
	if (k == 0 && memcmp(old.release, id, HASH_SIZE) != 0) {
		say(in, LOG_NOTICE, "an interrupted install of %s (phase %s) is abandoned", old.version, old.phase);
		noted(in, state_install_end(in->st, "abandoned", "replaced by a new install"), "ending the install");
	} else if (k < 0 && k != -ENOENT) {
		return perr_set(err, k, "state: %s", strerror(-k));
	}
	{
		_cleanup_(closep) int fd = slot_open(in, target, O_RDONLY, &tsize, err);

		if (fd < 0)
			return fd;
	}
	r.manifest = m;
	r.keyring = kr;
	if ((k = verify_release(in, &r, id, tsize, err)) < 0) {
		state_event_add(in->st, id, m->version, target, "verify", "refused", err->msg);
		return k;
	}
	pend = (struct state_install){ .counter = m->counter, .slot = target, .manifest = (uint8_t *)f->manifest,
				       .manifest_len = f->manifest_len };
	memcpy(pend.release, id, HASH_SIZE);
	snprintf(pend.version, sizeof(pend.version), "%s", m->version);
	snprintf(pend.phase, sizeof(pend.phase), "%s", install_phase_name(PHASE_VERIFY));
	snprintf(pend.source, sizeof(pend.source), "%s", r.path);
	if ((k = state_install_begin(in->st, &pend)) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	crash_point(PHASE_VERIFY);
	say(in, LOG_INFO, "installing %s %s (counter %" PRIu64 ") fetched into slot %s (%s)", m->product, m->version,
	    m->counter, in->sc->slots[target].bootname, in->sc->slots[target].device);

	/* the bytes are in the slot already; the hooks still may say no
	 * before it is checked and switched to */
	hook_env(in, &h, id, m->version, m->counter, target, PHASE_PRE_INSTALL, r.path);
	if ((k = pre_install(in, &h, res, err)) < 0)
		return k;
	res->phase = PHASE_VERIFY_SLOT;
	return enter(in, PHASE_VERIFY_SLOT, NULL, err);
}

int installer_slot_hash(struct installer *in, int slot, uint64_t size, uint8_t out[HASH_SIZE], struct perr *err)
{
	uint64_t ssize;
	_cleanup_(closep) int fd = slot_open(in, slot, O_RDONLY, &ssize, err);

	if (fd < 0)
		return fd;
	if (size > ssize)
		return perr_set(err, -EFBIG, "slot %s holds %" PRIu64 " bytes, fewer than the image's %" PRIu64,
				in->sc->slots[slot].bootname, ssize, size);
	return image_hash_fd(fd, size, out, NULL, NULL, err);
}

int installer_fetched_finish(struct installer *in, const uint8_t hash[HASH_SIZE], int reboot, struct install_result *res,
			     struct perr *err)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	struct install_result dummy;
	struct state_install p = { 0 };
	struct boot_env env;
	char boot_id[64];
	int active, k;

	if (!res)
		res = &dummy;
	if ((k = fetched_prep(in, res, &active, boot_id, sizeof(boot_id), &env, err)) < 0)
		return k;
	k = state_install_get(in->st, &p);
	if (k == -ENOENT || (k == 0 && install_phase_from_name(p.phase) != PHASE_VERIFY_SLOT)) {
		k = perr_set(err, -ENOENT, "no fetched install waits for its slot check%s%s", k == 0 ? ": phase is " : "",
			     k == 0 ? p.phase : "");
		goto out;
	}
	if (k < 0) {
		k = perr_set(err, k, "state: %s", strerror(-k));
		goto out;
	}
	if ((k = manifest_parse(p.manifest, p.manifest_len, &m, err)) < 0)
		goto out;
	fill_res(res, p.release, m, p.slot);
	res->phase = PHASE_VERIFY_SLOT;
	if (!hash) { /* the caller could not read the slot; err says why */
		k = abandon(in, -EIO, err);
		goto out;
	}
	if (sodium_memcmp(hash, m->image_hash, HASH_SIZE) != 0) {
		perr_set(err, -EILSEQ, "slot %s does not read back as the image (hash mismatch)",
			 in->sc->slots[p.slot].bootname);
		k = abandon(in, -EILSEQ, err);
		goto out;
	}
	if ((k = state_slot_set(in->st, p.slot, "installed", p.release, m, p.manifest, p.manifest_len)) < 0) {
		k = perr_set(err, k, "state: %s", strerror(-k));
		goto out;
	}
	k = switch_to(in, p.release, m, p.slot, p.source, boot_id, env.bootlimit, reboot, res, err);
out:
	free(p.manifest);
	return k;
}

int installer_install_fetched(struct installer *in, const struct installer_fetched *f, int reboot,
			      struct install_result *res, struct perr *err)
{
	struct install_result dummy;
	uint8_t got[HASH_SIZE];
	int k;

	if (!res)
		res = &dummy;
	if ((k = installer_fetched_begin(in, f, res, err)) < 0)
		return k;
	{
		uint64_t size;
		_cleanup_(closep) int fd = slot_open(in, res->slot, O_RDONLY, &size, err);

		if (fd < 0 || (k = hash_slot(in, fd, res->image_size, got, err)) < 0)
			return abandon(in, fd < 0 ? fd : k, err);
	}
	return installer_fetched_finish(in, got, reboot, res, err);
}

int installer_reboot(struct installer *in, bool *rebooting, struct perr *err)
{
	bool dummy;

	return do_reboot(in, rebooting ? rebooting : &dummy, err);
}

/* ---- after the reboot ---- */

static void result_from(struct boot_check_result *res, const struct state_install *p, int booted)
{
	snprintf(res->version, sizeof(res->version), "%s", p->version);
	res->counter = p->counter;
	res->booted = booted;
}

void install_report(struct boot_check_result *res, const char *fmt, ...)
{
	size_t len = strlen(res->report);
	va_list ap;

	if (len + 1 >= sizeof(res->report))
		return;
	va_start(ap, fmt);
	vsnprintf(res->report + len, sizeof(res->report) - len, fmt, ap);
	va_end(ap);
}

/* Built in: the state database is sound, the store (if any) readable;
 * then every executable of health-dir. */
static int health_checks(struct installer *in, const struct hook_ctx *h, struct boot_check_result *res,
			 struct perr *err)
{
	struct report_buf rb = { in, "health", NULL, 0 };
	struct perr e = { "" };
	size_t len;
	int k;

	if ((k = state_quick_check(in->st, &e)) < 0) {
		install_report(res, "health state-db: failed: %s\n", e.msg);
		return perr_set(err, -ECANCELED, "built-in health check: %s", e.msg);
	}
	install_report(res, "health state-db: ok\n");
	if (in->sc->store_dir) {
		DIR *d = opendir(in->sc->store_dir);

		if (!d) {
			install_report(res, "health store: failed: %s: %s\n", in->sc->store_dir, strerror(errno));
			return perr_set(err, -ECANCELED, "built-in health check: store %s: %s", in->sc->store_dir,
					strerror(errno));
		}
		closedir(d);
		install_report(res, "health store: ok\n");
	}
	len = strlen(res->report);
	rb.buf = res->report + len;
	rb.size = sizeof(res->report) - len;
	k = hooks_run(in->sc->health_dir, h->env, in->sc->health_timeout_ms, false, NULL, on_report, &rb, err);
	return k < 0 ? k : 0;
}

int install_refuse(struct installer *in, const struct state_install *p, const char *why, struct perr *err)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	int k;

	if (manifest_parse(p->manifest, p->manifest_len, &m, NULL) < 0)
		m = NULL; /* keyed on the id then: still refused as it is */
	if ((k = state_refuse(in->st, p->release, m, p->version, p->counter, why)) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	return 0;
}

/* Switches back to the other slot and refuses the release. */
static int roll_back(struct installer *in, const struct state_install *p, int reboot, const char *why,
		     struct boot_check_result *res, struct perr *err)
{
	struct hook_ctx h;
	struct perr e = { "" };
	int k;

	say(in, LOG_WARNING, "rolling back %s: %s", p->version, why);
	if (strcmp(p->phase, install_phase_name(PHASE_ROLLBACK)) != 0 && (k = enter(in, PHASE_ROLLBACK, NULL, err)) < 0)
		return k;
	if ((k = install_refuse(in, p, why, err)) < 0)
		return k;
	if ((k = bootloader_mark_bad(in->bl, p->slot, err)) < 0)
		return k;
	noted(in, state_slot_set_state(in->st, p->slot, "bad"), "marking slot bad");
	hook_env(in, &h, p->release, p->version, p->counter, p->slot, PHASE_ROLLBACK, p->source);
	if (run_hooks(in, "rollback", &h, res->report + strlen(res->report), sizeof(res->report) - strlen(res->report),
		      &e) < 0)
		say(in, LOG_WARNING, "rollback hook: %s (the rollback goes on)", e.msg);
	if ((k = state_install_end(in->st, "rolled-back", why)) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	res->outcome = BOOT_CHECK_ROLLED_BACK;
	if (res->booted == p->slot && (reboot < 0 ? in->sc->reboot : reboot) == REBOOT_NOW)
		return do_reboot(in, &res->rebooting, err);
	return 0;
}

/* Health checks and commit hooks, then the point of no return: the phase
 * commit is recorded only once they agreed. An install found in phase
 * commit is only finished (floors, bootloader, slot good), whatever the
 * checks would say now: its floors may be raised already, and a rollback
 * then would leave a slot below them. */
static int commit(struct installer *in, const struct state_install *p, int reboot, bool run_health,
		  struct boot_check_result *res, struct perr *err)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	struct hook_ctx h;
	struct perr e = { "" };
	int k;

	if (install_phase_from_name(p->phase) != PHASE_COMMIT) {
		hook_env(in, &h, p->release, p->version, p->counter, p->slot, PHASE_HEALTH, p->source);
		if (run_health) {
			if ((k = enter(in, PHASE_HEALTH, NULL, err)) < 0)
				return k;
			if ((k = health_checks(in, &h, res, &e)) < 0)
				return roll_back(in, p, reboot, e.msg, res, err);
		}
		hook_env(in, &h, p->release, p->version, p->counter, p->slot, PHASE_COMMIT, p->source);
		if ((k = run_hooks(in, "commit", &h, res->report + strlen(res->report),
				   sizeof(res->report) - strlen(res->report), &e)) < 0) {
			char why[300];

			snprintf(why, sizeof(why), "commit hook: %s", e.msg);
			return roll_back(in, p, reboot, why, res, err);
		}
		if ((k = enter(in, PHASE_COMMIT, NULL, err)) < 0)
			return k;
	} else {
		install_report(res, "commit of %s resumed: checks and hooks had agreed\n", p->version);
	}
	if ((k = manifest_parse(p->manifest, p->manifest_len, &m, err)) < 0)
		return k;
	/* the floors first: once committed, nothing older may come back */
	if ((k = install_commit_floors(in, "counter", p->counter, m, err)) < 0)
		return k;
	if ((k = bootloader_commit(in->bl, p->slot, err)) < 0)
		return k;
	if ((k = state_slot_set(in->st, p->slot, "good", p->release, m, p->manifest, p->manifest_len)) < 0 ||
	    (k = state_install_end(in->st, "committed", "")) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	res->outcome = BOOT_CHECK_COMMITTED;
	say(in, LOG_NOTICE, "committed %s in slot %s", p->version, in->sc->slots[p->slot].bootname);
	return 0;
}

/* The operator asked to go back while a commit was under way: finish it. */
static int commit_instead(struct installer *in, const struct state_install *p, struct boot_check_result *res,
			  struct perr *err)
{
	int k = commit(in, p, REBOOT_NONE, false, res, err);

	if (k < 0)
		return k;
	return perr_set(err, -EBUSY, "the commit of %s had begun (its floors may be raised): it was finished, not "
			"rolled back; 'shoal rollback' again goes back to the other slot if it holds a good release",
			p->version);
}

/* The bootloader went back to the old slot without our word. */
static int fell_back(struct installer *in, const struct state_install *p, struct boot_check_result *res,
		     struct perr *err)
{
	struct hook_ctx h;
	struct perr e = { "" };
	char why[256];
	int k;

	snprintf(why, sizeof(why), "slot %s did not complete a boot: the bootloader fell back to slot %s",
		 in->sc->slots[p->slot].bootname, in->sc->slots[res->booted].bootname);
	say(in, LOG_WARNING, "%s %s", p->version, why);
	if ((k = install_refuse(in, p, why, err)) < 0)
		return k;
	/* leave no trial behind, whatever the bootloader did */
	if ((k = bootloader_mark_bad(in->bl, p->slot, err)) < 0)
		return k;
	noted(in, state_slot_set_state(in->st, p->slot, "bad"), "marking slot bad");
	hook_env(in, &h, p->release, p->version, p->counter, p->slot, PHASE_ROLLBACK, p->source);
	if (run_hooks(in, "rollback", &h, res->report, sizeof(res->report), &e) < 0)
		say(in, LOG_WARNING, "rollback hook: %s", e.msg);
	if ((k = state_install_end(in->st, "fell-back", why)) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	res->outcome = BOOT_CHECK_FELL_BACK;
	install_report(res, "%s\n", why);
	return 0;
}

/* Loads the pending install and the booted slot. 0, or -ENOENT when none. */
static int pending(struct installer *in, struct state_install *p, int *booted, char *boot_id, size_t size,
		   struct boot_check_result *res, struct perr *err)
{
	int k;

	memset(res, 0, sizeof(*res));
	res->booted = -1;
	if ((k = lock(in, err)) < 0)
		return k;
	if ((k = boot_booted_slot(in->sc, booted, boot_id, size, err)) < 0)
		return k;
	res->booted = *booted;
	k = state_install_get(in->st, p);
	if (k < 0 && k != -ENOENT)
		return perr_set(err, k, "state: %s", strerror(-k));
	if (k == 0)
		result_from(res, p, *booted);
	return k;
}

/* No install pending, but the bootloader has a trial set (an install that
 * ended while the environment switched): a trial of the other slot is
 * cancelled; a trial of the running slot is committed only when that slot
 * passed its health checks before ("good"), else the other slot becomes
 * primary again, as the bootloader itself would do after bootlimit boots. */
static int stray_trial(struct installer *in, int booted, int reboot, struct boot_check_result *res, struct perr *err)
{
	struct state_slot s = { 0 };
	struct boot_env env;
	struct perr e = { "" };
	bool good;
	int k;

	if (booted < 0 || bootloader_read(in->bl, &env, &e) < 0 || !env.trial || env.primary < 0)
		return 0;
	good = state_slot_get(in->st, env.primary, &s) == 0 && !strcmp(s.state, "good");
	snprintf(res->version, sizeof(res->version), "%s", s.has_release ? s.version : "(not recorded)");
	free(s.manifest);
	if (env.primary != booted) {
		if ((k = bootloader_commit(in->bl, booted, err)) < 0)
			return k;
		install_report(res, "a trial of slot %s that no install records was cancelled\n",
			       in->sc->slots[env.primary].bootname);
		res->outcome = BOOT_CHECK_ABANDONED;
		return 0;
	}
	if (good) {
		if ((k = bootloader_commit(in->bl, booted, err)) < 0)
			return k;
		install_report(res, "slot %s (good) had a trial set that no install records: cleared\n",
			       in->sc->slots[booted].bootname);
		return 0;
	}
	if ((k = bootloader_mark_bad(in->bl, booted, err)) < 0)
		return k;
	say(in, LOG_WARNING, "slot %s runs on a trial that no install records: slot %s boots next",
	    in->sc->slots[booted].bootname, in->sc->slots[booted ? 0 : 1].bootname);
	install_report(res, "slot %s runs on a trial that no install records (it never passed its health checks): "
		       "slot %s boots next\n", in->sc->slots[booted].bootname, in->sc->slots[booted ? 0 : 1].bootname);
	res->outcome = BOOT_CHECK_ROLLED_BACK;
	return install_reboot(in, reboot, &res->rebooting, err);
}

int installer_boot_check(struct installer *in, int reboot, struct boot_check_result *res, struct perr *err)
{
	struct boot_check_result dummy;
	struct state_install p = { 0 };
	struct boot_env env;
	enum install_phase ph;
	char boot_id[64];
	int booted, k;

	if (!res)
		res = &dummy;
	k = pending(in, &p, &booted, boot_id, sizeof(boot_id), res, err);
	if (k == -ENOENT) {
		res->outcome = BOOT_CHECK_NOTHING;
		return stray_trial(in, res->booted, reboot, res, err);
	}
	if (k < 0)
		return k;
	if (p.slot < 0) {
		k = module_resume(in, &p, boot_id, reboot, res, err);
		goto out;
	}
	ph = install_phase_from_name(p.phase);
	if (ph == PHASE_MARK_TRIAL) {
		/* cut short while switching: the environment says whether it happened */
		if ((k = bootloader_read(in->bl, &env, err)) < 0)
			goto out;
		if (env.primary == p.slot && env.trial) {
			if ((k = enter(in, PHASE_REBOOT_PENDING, NULL, err)) < 0)
				goto out;
			ph = PHASE_REBOOT_PENDING;
		}
	}
	if (ph < PHASE_REBOOT_PENDING) {
		char why[128];

		snprintf(why, sizeof(why), "interrupted in phase %s, before the bootloader was switched", p.phase);
		say(in, LOG_NOTICE, "install of %s %s: abandoned", p.version, why);
		k = state_install_end(in->st, "abandoned", why);
		res->outcome = BOOT_CHECK_ABANDONED;
		res->interrupted = true;
		install_report(res, "%s\n", why);
		goto out;
	}
	if (ph == PHASE_ROLLBACK) {
		k = roll_back(in, &p, reboot, "rollback resumed after an interruption", res, err);
		goto out;
	}
	if (ph == PHASE_COMMIT) {
		k = commit(in, &p, reboot, false, res, err);
		goto out;
	}
	if (!strcmp(boot_id, p.boot_id) && booted != p.slot) {
		res->outcome = BOOT_CHECK_REBOOT_PENDING;
		k = 0;
		goto out;
	}
	if (booted == p.slot)
		k = commit(in, &p, reboot, true, res, err);
	else
		k = fell_back(in, &p, res, err);
out:
	free(p.manifest);
	return k;
}

/* The operator's word on the trial of the booted slot. */
static int judge_trial(struct installer *in, bool good, int reboot, struct boot_check_result *res, struct perr *err)
{
	struct state_install p = { 0 };
	char boot_id[64];
	int booted, k;

	k = pending(in, &p, &booted, boot_id, sizeof(boot_id), res, err);
	if (k == 0 && p.slot < 0)
		k = module_judge(in, &p, good, boot_id, reboot, good ? "marked good by the operator" : "marked bad by the operator", res, err);
	else if (k == -ENOENT || (k == 0 && (booted != p.slot || install_phase_from_name(p.phase) < PHASE_REBOOT_PENDING)))
		k = perr_set(err, -ENOENT, "no trial of the booted slot is pending: nothing to mark %s%s",
			     good ? "good" : "bad", good ? "" : " (see 'shoal rollback')");
	else if (k == 0 && good)
		k = commit(in, &p, REBOOT_NONE, false, res, err);
	else if (k == 0 && install_phase_from_name(p.phase) == PHASE_COMMIT)
		k = commit_instead(in, &p, res, err);
	else if (k == 0)
		k = roll_back(in, &p, reboot, "marked bad by the operator", res, err);
	free(p.manifest);
	return k;
}

int installer_mark_good(struct installer *in, struct boot_check_result *res, struct perr *err)
{
	return judge_trial(in, true, REBOOT_NONE, res, err);
}

int installer_mark_bad(struct installer *in, int reboot, struct boot_check_result *res, struct perr *err)
{
	return judge_trial(in, false, reboot, res, err);
}

int installer_rollback(struct installer *in, int reboot, struct boot_check_result *res, struct perr *err)
{
	struct state_install p = { 0 };
	struct state_slot other = { 0 };
	char boot_id[64];
	int booted, k;

	k = pending(in, &p, &booted, boot_id, sizeof(boot_id), res, err);
	if (k == 0 && p.slot < 0) {
		k = module_judge(in, &p, false, boot_id, reboot, "rolled back by the operator", res, err);
		goto out;
	}
	if (k == 0) {
		enum install_phase ph = install_phase_from_name(p.phase);

		if (ph == PHASE_COMMIT) {
			k = commit_instead(in, &p, res, err);
		} else if (ph == PHASE_ROLLBACK) {
			k = roll_back(in, &p, reboot, "rollback resumed after an interruption", res, err);
		} else if (booted == p.slot && ph >= PHASE_REBOOT_PENDING) {
			k = roll_back(in, &p, reboot, "rolled back by the operator", res, err);
		} else if (ph >= PHASE_REBOOT_PENDING && strcmp(boot_id, p.boot_id) != 0) {
			/* a boot since the trial was set, and not into its slot:
			 * the bootloader gave up on it, as boot-check would say */
			k = fell_back(in, &p, res, err);
		} else {
			/* not booted yet: cancel the trial; the release did nothing wrong */
			if (ph >= PHASE_MARK_TRIAL && (k = bootloader_commit(in->bl, booted, err)) < 0)
				goto out;
			noted(in, state_slot_set_state(in->st, p.slot, "installed"), "marking slot installed");
			k = state_install_end(in->st, "cancelled", "cancelled by the operator before the reboot");
			res->outcome = BOOT_CHECK_ABANDONED;
		}
		goto out;
	}
	if (k != -ENOENT)
		goto out;
	/* nothing pending: back to what the other slot holds */
	{
		int o = booted ? 0 : 1;

		k = state_slot_get(in->st, o, &other);
		free(other.manifest);
		/* only a slot that booted and passed its health checks: a release
		 * that was merely written never proved it boots, and committing it
		 * would leave no fallback */
		if (k < 0 || !other.has_release || strcmp(other.state, "good") != 0) {
			k = perr_set(err, -ENOENT, "slot %s holds no verified release that passed its health checks "
				     "to go back to (slot state: %s)", in->sc->slots[o].bootname,
				     k < 0 ? "never written by shoal" : other.state);
			goto out;
		}
		if ((k = bootloader_commit(in->bl, o, err)) < 0)
			goto out;
		state_event_add(in->st, other.release, other.version, o, "rollback", "switched",
				"the operator went back to the other slot");
		snprintf(res->version, sizeof(res->version), "%s", other.version);
		res->counter = other.counter;
		res->outcome = BOOT_CHECK_ROLLED_BACK;
		say(in, LOG_NOTICE, "slot %s (%s) boots next", in->sc->slots[o].bootname, other.version);
		if ((reboot < 0 ? in->sc->reboot : reboot) == REBOOT_NOW)
			k = do_reboot(in, &res->rebooting, err);
	}
out:
	free(p.manifest);
	return k;
}

int installer_status(struct installer *in, struct installer_status *ret, struct perr *err)
{
	struct perr e = { "" };
	char boot_id[64];
	int k;

	memset(ret, 0, sizeof(*ret));
	if (boot_booted_slot(in->sc, &ret->booted, boot_id, sizeof(boot_id), &e) < 0) {
		ret->booted = -1;
		snprintf(ret->booted_error, sizeof(ret->booted_error), "%s", e.msg);
	}
	if (bootloader_read(in->bl, &ret->env, &e) == 0)
		ret->env_ok = true;
	else
		snprintf(ret->env_error, sizeof(ret->env_error), "%s", e.msg);
	for (int i = 0; i < SYSCONF_SLOTS; i++) {
		if (state_slot_get(in->st, i, &ret->slots[i]) == 0) {
			ret->slot_known[i] = true;
			free(ret->slots[i].manifest);
			ret->slots[i].manifest = NULL;
		}
	}
	k = state_install_get(in->st, &ret->install);
	if (k == 0) {
		ret->pending = true;
		free(ret->install.manifest);
		ret->install.manifest = NULL;
	} else if (k != -ENOENT) {
		return perr_set(err, k, "state: %s", strerror(-k));
	}
	state_floor_get(in->st, "counter", &ret->floor_counter);
	state_floor_get(in->st, "keyring", &ret->floor_keyring);
	state_floor_get(in->st, "time", &ret->floor_time);
	return 0;
}

/* ---- lent to module.c (install-private.h) ---- */

const struct sysconf *install_sysconf(const struct installer *in)
{
	return in->sc;
}

void install_say(struct installer *in, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(in, level, fmt, ap);
	va_end(ap);
}

void install_progress(struct installer *in, enum install_phase p, uint64_t done, uint64_t total)
{
	progress(in, p, done, total);
}

void install_hook_env(struct installer *in, struct hook_ctx *h, const uint8_t id[HASH_SIZE], const char *version,
		      uint64_t counter, enum install_phase phase, const char *source)
{
	hook_env(in, h, id, version, counter, -1, phase, source);
}

int install_run_hooks(struct installer *in, const char *state_name, const struct hook_ctx *h, char *report,
		      size_t report_size, struct perr *err)
{
	return run_hooks(in, state_name, h, report, report_size, err);
}

int install_health(struct installer *in, const struct hook_ctx *h, struct boot_check_result *res, struct perr *err)
{
	return health_checks(in, h, res, err);
}

int install_reboot(struct installer *in, int reboot, bool *rebooting, struct perr *err)
{
	if ((reboot < 0 ? in->sc->reboot : reboot) != REBOOT_NOW)
		return 0;
	return do_reboot(in, rebooting, err);
}
