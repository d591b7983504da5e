/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <unistd.h>

#include "fileio.h"
#include "install-private.h"
#include "module.h"
#include "release-json.h"
#include "spawn.h"

#define PH_VERIFY "module-verify"
#define PH_PRE_INSTALL "module-pre-install"
#define PH_DOWNLOAD "module-download"
#define PH_INSTALL "module-install"
#define PH_REBOOT_PENDING "module-reboot-pending"
#define PH_HEALTH "module-health"
#define PH_COMMIT "module-commit"
#define PH_ROLLBACK "module-rollback"
#define PH_FAILURE "module-failure"

/* One module, one release: what every call needs. */
struct mod {
	struct installer *in;
	const struct sysconf *sc;
	char type[MANIFEST_PAYLOAD_MAX + 1];
	char path[PATH_MAX];    /* MODULES_DIR/<type> */
	char workdir[PATH_MAX - 64]; /* STATE_DIR/module, room for what lies in it */
	char floor[MANIFEST_PAYLOAD_MAX + 16];
	char e[7][PATH_MAX + 32];
	const char *env[8];
};

static int mod_init(struct installer *in, struct mod *md, const char *type, const uint8_t id[HASH_SIZE],
		    const char *version, uint64_t counter, struct perr *err)
{
	char hex[2 * HASH_SIZE + 1];
	size_t n = 0;

	memset(md, 0, sizeof(*md));
	md->in = in;
	md->sc = install_sysconf(in);
	/* the manifest allows '.' in a type: never let it name . or .. */
	if (!*type || type[0] == '.' || strchr(type, '/'))
		return perr_set(err, -EOPNOTSUPP, "payload type '%s' cannot name an update module", type);
	snprintf(md->type, sizeof(md->type), "%s", type);
	snprintf(md->floor, sizeof(md->floor), "counter:%s", type);
	if (snprintf(md->path, sizeof(md->path), "%s/%s", md->sc->modules_dir, type) >= (int)sizeof(md->path) ||
	    snprintf(md->workdir, sizeof(md->workdir), "%s/" MODULE_WORKDIR, md->sc->state_dir) >=
		    (int)sizeof(md->workdir))
		return perr_set(err, -ENAMETOOLONG, "modules-dir or state-dir is too long");
	snprintf(md->e[n++], sizeof(md->e[0]), "SHOAL_RELEASE=%s", hex_encode(id, HASH_SIZE, hex));
	snprintf(md->e[n++], sizeof(md->e[0]), "SHOAL_VERSION=%s", version);
	snprintf(md->e[n++], sizeof(md->e[0]), "SHOAL_COUNTER=%" PRIu64, counter);
	snprintf(md->e[n++], sizeof(md->e[0]), "SHOAL_PAYLOAD_TYPE=%s", type);
	snprintf(md->e[n++], sizeof(md->e[0]), "SHOAL_WORKDIR=%s", md->workdir);
	snprintf(md->e[n++], sizeof(md->e[0]), "SHOAL_PRODUCT=%s", md->sc->product);
	snprintf(md->e[n++], sizeof(md->e[0]), "SHOAL_SYSTEM_CONF=%s", md->sc->path ? md->sc->path : "");
	for (size_t i = 0; i < n; i++)
		md->env[i] = md->e[i];
	md->env[n] = NULL;
	return 0;
}

/* The payload type of a pending install's manifest. */
static int mod_from_pending(struct installer *in, struct mod *md, const struct state_install *p, struct perr *err)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	int k;

	if ((k = manifest_parse(p->manifest, p->manifest_len, &m, err)) < 0)
		return perr_prefix(err, k, "the pending install's manifest: ");
	return mod_init(in, md, m->payload_type, p->release, p->version, p->counter, err);
}

static int mod_find(const struct mod *md, struct perr *err)
{
	struct stat st;

	if (stat(md->path, &st) < 0)
		return perr_set(err, -EOPNOTSUPP, "no update module for payload type '%s': %s: %s", md->type, md->path,
				strerror(errno));
	if (!S_ISREG(st.st_mode) || access(md->path, X_OK) < 0)
		return perr_set(err, -EOPNOTSUPP, "no update module for payload type '%s': %s is not an executable file",
				md->type, md->path);
	return 0;
}

/* Runs `MODULE STATE WORKDIR`. 0 on exit status 0; -ECANCELED (err quotes
 * the first line it printed) on another status or the time limit. out
 * (may be NULL) gets what it printed. */
static int mod_call(struct mod *md, const char *state, struct spawn_result *out, struct perr *err)
{
	const char *argv[] = { md->path, state, md->workdir, NULL };
	struct spawn_result r;
	char first[200];
	int k;

	if ((k = spawn_run(argv, md->env, md->sc->module_timeout_ms, NULL, &r, err)) < 0)
		return perr_prefix(err, k, "update module %s: %s: ", md->type, state);
	snprintf(first, sizeof(first), "%.*s", (int)sizeof(first) - 1, r.output);
	first[strcspn(first, "\n")] = '\0';
	if (out)
		*out = r;
	if (r.timed_out)
		return perr_set(err, -ECANCELED, "update module %s: %s ran out of its %" PRIu64 " ms%s%s", md->type, state,
				md->sc->module_timeout_ms, *first ? ": " : "", first);
	if (r.status != 0)
		return perr_set(err, -ECANCELED, "update module %s: %s failed (exit status %d)%s%s", md->type, state,
				r.status, *first ? ": " : "", first);
	install_say(md->in, LOG_INFO, "update module %s: %s done%s%s", md->type, state, *first ? ": " : "", first);
	return 0;
}

/* A query: the first line printed, matched against answers. Returns the
 * index of the answer. */
static int mod_query(struct mod *md, const char *query, const char *const *answers, struct perr *err)
{
	struct spawn_result r;
	int k;

	if ((k = mod_call(md, query, &r, err)) < 0)
		return k;
	r.output[strcspn(r.output, "\r\n")] = '\0';
	for (int i = 0; answers[i]; i++)
		if (!strcmp(r.output, answers[i]))
			return i;
	return perr_set(err, -EPROTO, "update module %s: %s answered '%.40s', not one of %s%s%s%s%s", md->type, query,
			r.output, answers[0], answers[1] ? "/" : "", answers[1] ? answers[1] : "", answers[2] ? "/" : "",
			answers[2] ? answers[2] : "");
}

static int supports_rollback(struct mod *md, struct perr *err)
{
	static const char *const yn[] = { "No", "Yes", NULL };

	return mod_query(md, "SupportsRollback", yn, err);
}

/* A state whose failure changes nothing more: logged, not returned. */
static void mod_call_quiet(struct mod *md, const char *state)
{
	struct perr e = { "" };

	if (mod_call(md, state, NULL, &e) < 0)
		install_say(md->in, LOG_WARNING, "%s (ignored)", e.msg);
}

/* ---- the work directory ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

static int workdir_remove(const struct mod *md, struct perr *err)
{
	if (nftw(md->workdir, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		return perr_set(err, -errno, "removing %s: %s", md->workdir, strerror(errno));
	return 0;
}

static int write_text(const char *dir, const char *name, const char *text, struct perr *err)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return perr_set(err, -ENAMETOOLONG, "%s/%s: name too long", dir, name);
	return write_file_atomic(path, text, strlen(text), 0600, err);
}

/* WORKDIR/header/manifest.json, header/meta/KEY (one file per metadata
 * key, the value without a newline: easy for a shell module), version,
 * tmp/. */
static int workdir_prepare(const struct mod *md, const struct release *r, struct perr *err)
{
	char header[PATH_MAX], meta[PATH_MAX], tmp[PATH_MAX];
	_cleanup_(freep) char *json = NULL;
	json_t *j;
	int k;

	if ((k = workdir_remove(md, err)) < 0)
		return k;
	snprintf(header, sizeof(header), "%s/header", md->workdir);
	snprintf(meta, sizeof(meta), "%s/header/meta", md->workdir);
	snprintf(tmp, sizeof(tmp), "%s/tmp", md->workdir);
	if ((k = mkdir_p(meta, 0700)) < 0 || (k = mkdir_p(tmp, 0700)) < 0)
		return perr_set(err, k, "%s: %s", md->workdir, strerror(-k));
	j = release_json(r);
	json = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!json)
		return perr_set(err, -ENOMEM, "out of memory");
	if ((k = write_text(header, "manifest.json", json, err)) < 0 ||
	    (k = write_text(md->workdir, "version", r->manifest->version, err)) < 0)
		return k;
	for (size_t i = 0; i < r->manifest->n_meta; i++) {
		const struct manifest_meta *mm = &r->manifest->meta[i];

		if (!strcmp(mm->key, ".") || !strcmp(mm->key, ".."))
			continue; /* the manifest allows them; a file cannot be called that */
		if ((k = write_text(meta, mm->key, mm->value, err)) < 0)
			return k;
	}
	return 0;
}

/* The payload, chunk by chunk from the release, into WORKDIR/payload,
 * checked against the manifest's whole-image hash and synced. */
static int assemble(const struct mod *md, struct release *r, struct perr *err)
{
	const struct manifest *m = r->manifest;
	char path[PATH_MAX];
	_cleanup_(freep) uint8_t *buf = NULL;
	_cleanup_(closep) int fd = -1;
	crypto_generichash_state hs;
	uint8_t got[HASH_SIZE];
	struct statvfs vfs;
	uint32_t max = 0;
	uint64_t done = 0;
	int k;

	snprintf(path, sizeof(path), "%s/payload", md->workdir);
	if (statvfs(md->workdir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < m->image_size)
		return perr_set(err, -ENOSPC, "%s has %" PRIu64 " bytes free, the payload needs %" PRIu64, md->workdir,
				(uint64_t)vfs.f_bavail * vfs.f_frsize, m->image_size);
	for (size_t i = 0; i < m->n_chunks; i++)
		max = m->chunks[i].len > max ? m->chunks[i].len : max;
	if (!(buf = malloc(max ? max : 1)))
		return perr_set(err, -ENOMEM, "out of memory");
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	crypto_generichash_init(&hs, NULL, 0, HASH_SIZE);
	for (size_t i = 0; i < m->n_chunks; i++) {
		const struct manifest_chunk *c = &m->chunks[i];

		if ((k = release_read_chunk(r, c->id, c->len, buf, err)) < 0)
			return k;
		if ((k = pwrite_full(fd, buf, c->len, (off_t)c->offset)) < 0)
			return perr_set(err, k, "writing %s: %s", path, strerror(-k));
		crypto_generichash_update(&hs, buf, c->len);
		done += c->len;
		install_progress(md->in, PHASE_WRITE, done, m->image_size);
	}
	crypto_generichash_final(&hs, got, HASH_SIZE);
	if (file_datasync(fd) < 0)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	if (sodium_memcmp(got, m->image_hash, HASH_SIZE) != 0)
		return perr_set(err, -EILSEQ, "%s does not hash to the manifest's image hash: the release source is faulty",
				path);
	return 0;
}

/* ---- ends ---- */

/* Cleanup, the work directory removed, the install ended with result. */
static int finish(struct mod *md, const char *result, const char *detail, struct perr *err)
{
	struct perr e = { "" };
	int k;

	if (access(md->workdir, F_OK) == 0 && mod_find(md, NULL) == 0)
		mod_call_quiet(md, "Cleanup");
	if (workdir_remove(md, &e) < 0)
		install_say(md->in, LOG_WARNING, "%s (a later install removes it)", e.msg);
	if ((k = state_install_end(installer_state(md->in), result, detail)) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	return 0;
}

/* Not the release's fault, nothing changed on the system: the release
 * stays installable. Returns k with err as it was. */
static int abandon(struct mod *md, int k, struct perr *err)
{
	install_say(md->in, LOG_WARNING, "install abandoned: %s", err->msg);
	finish(md, "abandoned", err->msg, NULL);
	return k;
}

/* Undoes Install: Rollback when the module supports it, else (or when
 * Rollback fails) Failure. refuse: the release failed its health checks
 * or commit and is refused from then on (durably, before anything). */
static int undo(struct mod *md, const struct state_install *p, const char *why, bool refuse,
		struct boot_check_result *res, struct perr *err)
{
	struct hook_ctx h;
	struct perr e = { "" };
	bool rolled = false;
	int k;

	install_say(md->in, LOG_WARNING, "undoing %s %s: %s", md->type, p->version, why);
	install_report(res, "%s\n", why);
	if (refuse && (k = install_refuse(md->in, p, why, err)) < 0)
		return k;
	if (strcmp(p->phase, PH_FAILURE) != 0) {
		if (strcmp(p->phase, PH_ROLLBACK) != 0 && (k = install_enter(md->in, PH_ROLLBACK, NULL, err)) < 0)
			return k;
		if ((k = mod_find(md, &e)) == 0 && (k = supports_rollback(md, &e)) == 1)
			rolled = mod_call(md, "Rollback", NULL, &e) == 0;
		else if (k == 0)
			snprintf(e.msg, sizeof(e.msg), "update module %s does not support rollback", md->type);
		if (!rolled) {
			install_report(res, "rollback: %s\n", e.msg);
			if ((k = install_enter(md->in, PH_FAILURE, NULL, err)) < 0)
				return k;
		}
	}
	if (!rolled && mod_find(md, NULL) == 0)
		mod_call_quiet(md, "Failure");
	install_hook_env(md->in, &h, p->release, p->version, p->counter, PHASE_ROLLBACK, p->source);
	if (install_run_hooks(md->in, "rollback", &h, res->report + strlen(res->report),
			      sizeof(res->report) - strlen(res->report), &e) < 0)
		install_say(md->in, LOG_WARNING, "rollback hook: %s (the rollback goes on)", e.msg);
	install_report(res, rolled ? "update module %s: rolled back\n" : "update module %s: NOT rolled back (Failure ran)\n",
		       md->type);
	if ((k = finish(md, rolled ? "rolled-back" : "failed", why, err)) < 0)
		return k;
	res->outcome = BOOT_CHECK_ROLLED_BACK;
	return 0;
}

/* health (unless the operator said good) -> commit hooks -> Commit -> the
 * floors -> Cleanup. */
static int commit(struct mod *md, const struct state_install *p, bool run_health, struct boot_check_result *res,
		  struct perr *err)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	struct hook_ctx h;
	struct perr e = { "" };
	char why[STATE_DETAIL_MAX];
	int k;

	install_hook_env(md->in, &h, p->release, p->version, p->counter, PHASE_HEALTH, p->source);
	if (run_health) {
		if ((k = install_enter(md->in, PH_HEALTH, NULL, err)) < 0)
			return k;
		if (install_health(md->in, &h, res, &e) < 0) {
			snprintf(why, sizeof(why), "health check: %s", e.msg);
			return undo(md, p, why, true, res, err);
		}
	}
	if ((k = install_enter(md->in, PH_COMMIT, NULL, err)) < 0)
		return k;
	install_hook_env(md->in, &h, p->release, p->version, p->counter, PHASE_COMMIT, p->source);
	if (install_run_hooks(md->in, "commit", &h, res->report + strlen(res->report),
			      sizeof(res->report) - strlen(res->report), &e) < 0) {
		snprintf(why, sizeof(why), "commit hook: %s", e.msg);
		return undo(md, p, why, true, res, err);
	}
	if ((k = manifest_parse(p->manifest, p->manifest_len, &m, err)) < 0)
		return k;
	/* Commit first, the floors after it: a Commit that fails is rolled
	 * back (when the module can) and refused with the floor where it was,
	 * so the release it rolls back to is not below it. Interrupted
	 * between the two, the next boot-check runs Commit again (it is
	 * idempotent) and then raises the floors. */
	if ((k = mod_find(md, &e)) < 0 || (k = mod_call(md, "Commit", NULL, &e)) < 0) {
		snprintf(why, sizeof(why), "%s", e.msg);
		return undo(md, p, why, true, res, err);
	}
	if ((k = install_commit_floors(md->in, md->floor, p->counter, m, err)) < 0)
		return k;
	if ((k = finish(md, "committed", "", err)) < 0)
		return k;
	res->outcome = BOOT_CHECK_COMMITTED;
	install_report(res, "update module %s: committed %s\n", md->type, p->version);
	install_say(md->in, LOG_NOTICE, "committed %s %s (update module %s)", p->version, md->type, md->type);
	return 0;
}

/* ---- the entry points ---- */

/* A pending install found by a new one: an A/B install before its trial
 * and a module install before Install are abandoned; the rest must be
 * finished by boot-check first. */
static int clear_pending(struct installer *in, struct perr *err)
{
	struct state_install old = { 0 };
	struct boot_check_result dummy;
	int k = state_install_get(installer_state(in), &old);

	if (k == -ENOENT)
		return 0;
	if (k < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	if (old.slot >= 0 && install_phase_from_name(old.phase) < PHASE_MARK_TRIAL) {
		install_say(in, LOG_NOTICE, "an interrupted install of %s (phase %s) is abandoned", old.version, old.phase);
		k = state_install_end(installer_state(in), "abandoned", "replaced by a new install");
	} else if (old.slot < 0 && (!strcmp(old.phase, PH_VERIFY) || !strcmp(old.phase, PH_PRE_INSTALL) ||
				    !strcmp(old.phase, PH_DOWNLOAD))) {
		memset(&dummy, 0, sizeof(dummy));
		k = module_resume(in, &old, "", REBOOT_NONE, &dummy, err);
	} else {
		k = perr_set(err, -EBUSY, "the install of %s is pending (phase %s): run 'shoal boot-check' to finish it "
			     "first", old.version, old.phase);
	}
	free(old.manifest);
	return k;
}

int module_install(struct installer *in, struct release *r, const uint8_t id[HASH_SIZE], const uint8_t *mbytes,
		   size_t mlen, const char *source, const char *boot_id, int reboot, struct install_result *res,
		   struct perr *err)
{
	static const char *const reboots[] = { "No", "Yes", "Automatic", NULL };
	const struct manifest *m = r->manifest;
	struct state *st = installer_state(in);
	struct state_install pend = { .counter = m->counter, .slot = -1 };
	struct boot_check_result bres = { .booted = -1 };
	struct hook_ctx h;
	struct mod md;
	char abs[PATH_MAX];
	int k;

	res->slot = -1;
	if ((k = clear_pending(in, err)) < 0)
		return k;
	if ((k = mod_init(in, &md, m->payload_type, id, m->version, m->counter, err)) < 0 ||
	    (k = install_verify(in, r, id, 0, md.floor, err)) < 0 || (k = mod_find(&md, err)) < 0) {
		state_event_add(st, id, m->version, -1, "verify", "refused", err->msg);
		return k;
	}

	/* from here on the install is pending */
	memcpy(pend.release, id, HASH_SIZE);
	snprintf(pend.version, sizeof(pend.version), "%s", m->version);
	snprintf(pend.phase, sizeof(pend.phase), "%s", PH_VERIFY);
	pend.manifest = (uint8_t *)mbytes;
	pend.manifest_len = mlen;
	/* realpath writes up to PATH_MAX: not into the record's field */
	snprintf(pend.source, sizeof(pend.source), "%.*s", (int)sizeof(pend.source) - 1,
		 realpath(source, abs) ? abs : source);
	if ((k = state_install_begin(st, &pend)) < 0)
		return perr_set(err, k, "state: %s", strerror(-k));
	install_crash_point(PH_VERIFY);
	install_say(in, LOG_INFO, "installing %s %s (counter %" PRIu64 ") with update module %s", m->product,
		    m->version, m->counter, md.path);

	res->phase = PHASE_PRE_INSTALL;
	if ((k = install_enter(in, PH_PRE_INSTALL, NULL, err)) < 0)
		return k;
	install_hook_env(in, &h, id, m->version, m->counter, PHASE_PRE_INSTALL, source);
	if ((k = install_run_hooks(in, "pre-install", &h, NULL, 0, err)) < 0) {
		perr_prefix(err, k, "pre-install hook: ");
		return abandon(&md, k, err);
	}

	/* Download: the module stages the verified payload; nothing else changes */
	res->phase = PHASE_WRITE;
	if ((k = install_enter(in, PH_DOWNLOAD, NULL, err)) < 0)
		return k;
	if ((k = workdir_prepare(&md, r, err)) < 0 || (k = assemble(&md, r, err)) < 0)
		return abandon(&md, k, err);
	res->bytes_read = m->image_size;
	if ((k = mod_call(&md, "Download", NULL, err)) < 0)
		return abandon(&md, k, err);

	/* Install changes the system: from here a failure is undone */
	if ((k = install_enter(in, PH_INSTALL, NULL, err)) < 0)
		return k;
	snprintf(pend.phase, sizeof(pend.phase), "%s", PH_INSTALL);
	if ((k = mod_call(&md, "Install", NULL, err)) < 0 || (k = mod_query(&md, "NeedsReboot", reboots, err)) < 0) {
		char why[STATE_DETAIL_MAX];

		snprintf(why, sizeof(why), "%s", err->msg);
		res->phase = PHASE_ROLLBACK;
		if (undo(&md, &pend, why, false, &bres, err) < 0)
			return k;
		return perr_set(err, k, "%s; %s", why, strstr(bres.report, "NOT rolled back") ? "not rolled back" : "rolled back");
	}
	if (k > 0) {
		res->phase = PHASE_REBOOT_PENDING;
		if ((k = install_enter(in, PH_REBOOT_PENDING, boot_id, err)) < 0)
			return k;
		install_say(in, LOG_NOTICE, "%s %s is installed and waits for a reboot; 'shoal boot-check' after it "
			    "commits or rolls back", md.type, m->version);
		return install_reboot(in, reboot, &res->rebooting, err);
	}
	res->phase = PHASE_HEALTH;
	if ((k = commit(&md, &pend, true, &bres, err)) < 0)
		return k;
	if (bres.outcome != BOOT_CHECK_COMMITTED) {
		res->phase = PHASE_ROLLBACK;
		bres.report[strcspn(bres.report, "\n")] = '\0';
		return perr_set(err, -ECANCELED, "%s", bres.report);
	}
	res->phase = PHASE_COMMIT;
	return 0;
}

int module_resume(struct installer *in, const struct state_install *p, const char *boot_id, int reboot,
		  struct boot_check_result *res, struct perr *err)
{
	const char *ph = p->phase;
	char why[STATE_DETAIL_MAX];
	struct mod md;
	int k;

	(void)reboot;
	if ((k = mod_from_pending(in, &md, p, err)) < 0)
		return k;
	if (!strcmp(ph, PH_REBOOT_PENDING)) {
		if (!strcmp(boot_id, p->boot_id)) {
			res->outcome = BOOT_CHECK_REBOOT_PENDING;
			return 0;
		}
		return commit(&md, p, true, res, err);
	}
	if (!strcmp(ph, PH_COMMIT))
		return commit(&md, p, false, res, err); /* Commit is idempotent */
	if (!strcmp(ph, PH_ROLLBACK) || !strcmp(ph, PH_FAILURE))
		return undo(&md, p, "rollback resumed after an interruption", false, res, err);
	snprintf(why, sizeof(why), "interrupted in phase %s", ph);
	if (!strcmp(ph, PH_INSTALL) || !strcmp(ph, PH_HEALTH))
		return undo(&md, p, why, false, res, err);
	/* before Install: nothing on the system changed */
	install_say(in, LOG_NOTICE, "install of %s %s: abandoned", p->version, why);
	install_report(res, "%s\n", why);
	res->outcome = BOOT_CHECK_ABANDONED;
	return finish(&md, "abandoned", why, err);
}

int module_judge(struct installer *in, const struct state_install *p, bool good, const char *boot_id, int reboot,
		 const char *why, struct boot_check_result *res, struct perr *err)
{
	bool rebooted = strcmp(boot_id, p->boot_id) != 0;
	struct mod md;
	int k;

	(void)reboot;
	if (strcmp(p->phase, PH_REBOOT_PENDING) != 0 || (good && !rebooted))
		return perr_set(err, -ENOENT, "the update module install of %s is in phase %s, not waiting for its "
				"judgement after a reboot: nothing to mark (see 'shoal boot-check')", p->version, p->phase);
	if ((k = mod_from_pending(in, &md, p, err)) < 0)
		return k;
	if (good)
		return commit(&md, p, false, res, err);
	/* cancelled before the reboot: the release did nothing wrong */
	return undo(&md, p, why, rebooted, res, err);
}
