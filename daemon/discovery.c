/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/watch.h>
#include <stdio.h>
#include <sys/time.h>

#include "daemon.h"
#include "discovery.h"
#include "keys.h"
#include "log.h"
#include "swarm.h"
#include "txt.h"
#include "wire.h"

#define SERVICE_TYPE "_shoal._tcp"
#define TICK_MS 3000u           /* re-publish the TXT, retry what failed */
#define LOAD_REPUBLISH_MS 15000u /* a change of load alone is announced at most this often */
#define RESOLVE_RETRY_MIN_MS 2000u
#define RESOLVE_RETRY_MAX_MS 60000u
#define TXT_STRINGS_MAX 64u     /* a record with more strings is not one of ours */

/* ---- an AvahiPoll on libuv ----
 *
 * libuv allows one uv_poll_t per file descriptor, while libdbus (through
 * avahi's glue) may watch one socket twice, for reading and for writing.
 * So each descriptor gets one uv_poll_t (struct fdpoll) polling for the
 * union of what its AvahiWatches want, and an event is handed to each
 * watch that asked for it. Avahi may free a watch from inside a watch
 * callback: it is then only marked dead and swept after the dispatch.
 * Every handle is freed in its close callback. */

struct fdpoll {
	struct fdpoll *next;
	struct discovery *disc;
	uv_poll_t poll;
	int fd;
	int events; /* what uv_poll is started with, 0: stopped */
	bool dispatching;
	AvahiWatch *watches;
};

struct AvahiWatch {
	AvahiWatch *next;
	struct fdpoll *fp;
	AvahiWatchEvent want, got;
	AvahiWatchCallback cb;
	void *ud;
	bool dead;
};

struct AvahiTimeout {
	AvahiTimeout *next, *prev;
	struct discovery *disc;
	uv_timer_t timer;
	AvahiTimeoutCallback cb;
	void *ud;
};

/* ---- the services we follow ---- */

enum svc_state {
	SVC_RESOLVING,
	SVC_PEER,    /* handed to the swarm */
	SVC_IGNORED, /* ours, another fleet, another protocol, a bad record */
};

struct svc {
	struct discovery *disc;
	bool used;
	AvahiIfIndex iface;
	AvahiProtocol proto;
	char name[AVAHI_LABEL_MAX];
	char *domain;
	AvahiServiceResolver *r;
	enum svc_state st;
	unsigned failures;
	uint64_t retry_ms; /* resolver to be made again (r == NULL) */
	struct sockaddr_in addr;
	bool added;
	struct txt_info txt;
	char why[128]; /* why it is ignored, said once */
};

struct discovery {
	struct daemon *d;
	uv_loop_t *loop;
	AvahiPoll api;
	struct fdpoll *fds;
	AvahiTimeout *timeouts;

	AvahiClient *client;
	AvahiClientState state;
	AvahiEntryGroup *group;
	AvahiServiceBrowser *browser;
	bool browser_failed;
	bool restart;   /* the client failed: make a new one at the next tick */
	bool stopping;
	bool had_daemon; /* avahi-daemon was there once: say "back" when it returns */
	bool dbus_warned;
	bool full_warned;
	bool established; /* our service is up */
	unsigned n_established;

	uv_timer_t tick;
	char name[AVAHI_LABEL_MAX]; /* service instance name; changes on collision */
	struct txt_info txt;        /* what we announce */
	uint64_t txt_load_ms;       /* when load was last announced */

	struct svc *svc;
	size_t cap_svc;
};

static void tick_cb(uv_timer_t *t);

static void fdpoll_close_cb(uv_handle_t *h)
{
	free(container_of((uv_poll_t *)h, struct fdpoll, poll));
}

static void fdpoll_cb(uv_poll_t *h, int status, int events);

/* Starts, changes or stops the uv_poll to what the live watches want, and
 * closes it when none is left. */
static void fdpoll_update(struct fdpoll *fp)
{
	int want = 0;
	bool any = false;

	for (AvahiWatch *w = fp->watches; w; w = w->next) {
		if (w->dead)
			continue;
		any = true;
		if (w->want & AVAHI_WATCH_IN)
			want |= UV_READABLE;
		if (w->want & AVAHI_WATCH_OUT)
			want |= UV_WRITABLE;
		if (w->want & AVAHI_WATCH_HUP)
			want |= UV_DISCONNECT;
	}
	if (!any && !fp->dispatching) {
		struct fdpoll **pp;

		for (pp = &fp->disc->fds; *pp && *pp != fp; pp = &(*pp)->next)
			;
		if (*pp)
			*pp = fp->next;
		uv_close((uv_handle_t *)&fp->poll, fdpoll_close_cb);
		return;
	}
	if (want == UV_DISCONNECT)
		want = 0; /* a hangup alone cannot be polled for */
	if (want == fp->events)
		return;
	if (want == 0 || uv_poll_start(&fp->poll, want, fdpoll_cb) < 0) {
		uv_poll_stop(&fp->poll);
		want = 0;
	}
	fp->events = want;
}

static void fdpoll_cb(uv_poll_t *h, int status, int events)
{
	struct fdpoll *fp = container_of(h, struct fdpoll, poll);
	AvahiWatchEvent got = 0;
	AvahiWatch **pp;
	size_t n = 0;

	if (status < 0) {
		got = AVAHI_WATCH_ERR;
		fp->events = 0; /* libuv stopped the handle */
	} else {
		if (events & UV_READABLE)
			got |= AVAHI_WATCH_IN;
		if (events & UV_WRITABLE)
			got |= AVAHI_WATCH_OUT;
		if (events & UV_DISCONNECT)
			got |= AVAHI_WATCH_HUP;
	}
	/* only the watches that exist now: one made by a callback waits for
	 * the next event */
	for (AvahiWatch *w = fp->watches; w; w = w->next)
		n++;
	fp->dispatching = true;
	for (AvahiWatch *w = fp->watches; w && n > 0; w = w->next, n--) {
		AvahiWatchEvent mine = got & (w->want | AVAHI_WATCH_ERR | AVAHI_WATCH_HUP);

		if (w->dead || !mine)
			continue;
		w->got = mine;
		w->cb(w, fp->fd, mine, w->ud);
		w->got = 0;
	}
	fp->dispatching = false;
	for (pp = &fp->watches; *pp;) {
		AvahiWatch *w = *pp;

		if (w->dead) {
			*pp = w->next;
			free(w);
		} else {
			pp = &w->next;
		}
	}
	fdpoll_update(fp);
}

static AvahiWatch *watch_new(const AvahiPoll *api, int fd, AvahiWatchEvent event, AvahiWatchCallback cb, void *ud)
{
	struct discovery *disc = api->userdata;
	struct fdpoll *fp;
	AvahiWatch *w = calloc(1, sizeof(*w)), **tail;

	if (!w)
		return NULL;
	for (fp = disc->fds; fp && fp->fd != fd; fp = fp->next)
		;
	if (!fp) {
		int k;

		fp = calloc(1, sizeof(*fp));
		if (!fp) {
			free(w);
			return NULL;
		}
		if ((k = uv_poll_init(disc->loop, &fp->poll, fd)) < 0) {
			log_warn("mdns: cannot watch descriptor %d: %s", fd, uv_strerror(k));
			free(fp);
			free(w);
			return NULL;
		}
		fp->disc = disc;
		fp->fd = fd;
		fp->next = disc->fds;
		disc->fds = fp;
	}
	*w = (AvahiWatch){ .fp = fp, .want = event, .cb = cb, .ud = ud };
	for (tail = &fp->watches; *tail; tail = &(*tail)->next)
		;
	*tail = w;
	fdpoll_update(fp);
	return w;
}

static void watch_update(AvahiWatch *w, AvahiWatchEvent event)
{
	w->want = event;
	fdpoll_update(w->fp);
}

static AvahiWatchEvent watch_get_events(AvahiWatch *w)
{
	return w->got;
}

static void watch_free(AvahiWatch *w)
{
	struct fdpoll *fp = w->fp;

	w->dead = true;
	w->want = 0;
	if (!fp->dispatching) {
		AvahiWatch **pp;

		for (pp = &fp->watches; *pp != w; pp = &(*pp)->next)
			;
		*pp = w->next;
		free(w);
	}
	fdpoll_update(fp);
}

static void timeout_fire_cb(uv_timer_t *t)
{
	AvahiTimeout *to = container_of(t, AvahiTimeout, timer);

	to->cb(to, to->ud); /* may free to: uv_close is fine here */
}

/* Avahi's times are absolute, on gettimeofday's clock. */
static void timeout_arm(AvahiTimeout *to, const struct timeval *tv)
{
	struct timeval now;
	int64_t us;

	gettimeofday(&now, NULL);
	us = (int64_t)(tv->tv_sec - now.tv_sec) * 1000000 + (tv->tv_usec - now.tv_usec);
	uv_timer_start(&to->timer, timeout_fire_cb, us <= 0 ? 0 : (uint64_t)(us + 999) / 1000, 0);
}

static AvahiTimeout *timeout_new(const AvahiPoll *api, const struct timeval *tv, AvahiTimeoutCallback cb, void *ud)
{
	struct discovery *disc = api->userdata;
	AvahiTimeout *to = calloc(1, sizeof(*to));

	if (!to)
		return NULL;
	to->disc = disc;
	to->cb = cb;
	to->ud = ud;
	uv_timer_init(disc->loop, &to->timer);
	to->next = disc->timeouts;
	if (disc->timeouts)
		disc->timeouts->prev = to;
	disc->timeouts = to;
	if (tv)
		timeout_arm(to, tv);
	return to;
}

static void timeout_update(AvahiTimeout *to, const struct timeval *tv)
{
	uv_timer_stop(&to->timer);
	if (tv)
		timeout_arm(to, tv);
}

static void timeout_close_cb(uv_handle_t *h)
{
	free(container_of((uv_timer_t *)h, AvahiTimeout, timer));
}

static void timeout_free(AvahiTimeout *to)
{
	struct discovery *disc = to->disc;

	if (to->prev)
		to->prev->next = to->next;
	else
		disc->timeouts = to->next;
	if (to->next)
		to->next->prev = to->prev;
	uv_timer_stop(&to->timer);
	uv_close((uv_handle_t *)&to->timer, timeout_close_cb);
}

/* ---- the record we announce ---- */

static bool current_txt(struct discovery *disc, struct txt_info *ret)
{
	struct txt_info t = disc->txt;

	t.rel = swarm_newest_counter(disc->d->swarm);
	t.load = swarm_load(disc->d->swarm);
	*ret = t;
	return t.rel != disc->txt.rel || t.load != disc->txt.load;
}

/* The record in Avahi's form. Avahi keeps string lists last string first,
 * so adding them in record order puts txtvers first on the wire. */
static AvahiStringList *txt_list(const struct txt_info *t)
{
	struct txt_string v[TXT_N_STRINGS];
	AvahiStringList *l = NULL;
	struct txt_wire w;
	size_t n;

	if (txt_format(t, &w, NULL) < 0 || txt_split(w.buf, w.len, v, ELEMENTSOF(v), &n) < 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		AvahiStringList *m = avahi_string_list_add_arbitrary(l, v[i].p, v[i].len);

		if (!m) {
			avahi_string_list_free(l);
			return NULL;
		}
		l = m;
	}
	return l;
}

/* "NAME (DEVICE-ID)", cut to the 63 bytes of a DNS label at a UTF-8
 * boundary, control characters replaced. */
static void make_name(char out[AVAHI_LABEL_MAX], const char *name, const char *id)
{
	char suffix[TXT_ID_LEN + 4];
	size_t max, n = 0;

	snprintf(suffix, sizeof(suffix), " (%s)", id);
	max = AVAHI_LABEL_MAX - 1 - strlen(suffix);
	for (const unsigned char *p = (const unsigned char *)name; *p && n < max; p++)
		out[n++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
	while (n > 0 && ((unsigned char)out[n] & 0xc0) == 0x80 && name[n]) /* cut inside a character */
		n--;
	if (n == 0)
		out[n++] = '?';
	memcpy(out + n, suffix, strlen(suffix) + 1);
}

/* ---- publishing ---- */

static void publish(struct discovery *disc);

static void rename_service(struct discovery *disc)
{
	char *alt = avahi_alternative_service_name(disc->name);

	if (!alt)
		return;
	log_notice("mdns: service name '%s' is taken on the LAN; renaming to '%s'", disc->name, alt);
	snprintf(disc->name, sizeof(disc->name), "%s", alt);
	avahi_free(alt);
}

static void group_cb(AvahiEntryGroup *g, AvahiEntryGroupState state, void *ud)
{
	struct discovery *disc = ud;

	if (disc->stopping)
		return;
	disc->group = g;
	switch (state) {
	case AVAHI_ENTRY_GROUP_ESTABLISHED:
		disc->established = true;
		if (disc->n_established++ == 0)
			log_notice("mdns: published '%s' (%s, port %u, fleet '%s')", disc->name, SERVICE_TYPE, disc->d->port,
				   disc->txt.fleet);
		else
			log_notice("mdns: re-published '%s' (%s, port %u)", disc->name, SERVICE_TYPE, disc->d->port);
		break;
	case AVAHI_ENTRY_GROUP_COLLISION:
		disc->established = false;
		rename_service(disc);
		avahi_entry_group_reset(g);
		publish(disc);
		break;
	case AVAHI_ENTRY_GROUP_FAILURE:
		disc->established = false;
		log_warn("mdns: publishing '%s' failed: %s; retrying in %u s", disc->name,
			 avahi_strerror(avahi_client_errno(avahi_entry_group_get_client(g))), TICK_MS / 1000);
		avahi_entry_group_reset(g);
		break;
	case AVAHI_ENTRY_GROUP_UNCOMMITED:
	case AVAHI_ENTRY_GROUP_REGISTERING:
		break;
	}
}

/* Adds our service to the (empty) entry group and commits it. A failure
 * leaves the group empty; the tick tries again. */
static void publish(struct discovery *disc)
{
	if (!disc->client || disc->state != AVAHI_CLIENT_S_RUNNING || disc->stopping)
		return;
	if (!disc->group && !(disc->group = avahi_entry_group_new(disc->client, group_cb, disc))) {
		log_warn("mdns: cannot create an entry group: %s; retrying in %u s",
			 avahi_strerror(avahi_client_errno(disc->client)), TICK_MS / 1000);
		return;
	}
	if (!avahi_entry_group_is_empty(disc->group))
		return;
	current_txt(disc, &disc->txt);
	disc->txt_load_ms = uv_now(disc->loop);
	for (int tries = 0; tries < 16; tries++) {
		AvahiStringList *l = txt_list(&disc->txt);
		int r;

		if (!l) {
			log_err("mdns: out of memory building the TXT record");
			return;
		}
		r = avahi_entry_group_add_service_strlst(disc->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0, disc->name,
							 SERVICE_TYPE, NULL, NULL, disc->d->port, l);
		avahi_string_list_free(l);
		if (r == AVAHI_ERR_COLLISION) { /* the same name on this host */
			rename_service(disc);
			continue;
		}
		if (r >= 0)
			r = avahi_entry_group_commit(disc->group);
		if (r < 0) {
			log_warn("mdns: cannot publish '%s': %s; retrying in %u s", disc->name, avahi_strerror(r),
				 TICK_MS / 1000);
			avahi_entry_group_reset(disc->group);
		}
		return;
	}
	log_warn("mdns: no free service name after 16 tries; retrying in %u s", TICK_MS / 1000);
}

/* Announces a new release counter at once, a new load now and then. */
static void refresh_txt(struct discovery *disc)
{
	struct txt_info now;
	AvahiStringList *l;
	uint64_t t = uv_now(disc->loop);
	int r;

	if (!disc->group || !disc->established || !current_txt(disc, &now))
		return;
	if (now.rel == disc->txt.rel && t - disc->txt_load_ms < LOAD_REPUBLISH_MS)
		return;
	if (!(l = txt_list(&now)))
		return;
	r = avahi_entry_group_update_service_txt_strlst(disc->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0, disc->name,
							SERVICE_TYPE, NULL, l);
	avahi_string_list_free(l);
	if (r < 0) {
		log_debug("mdns: updating the TXT record: %s", avahi_strerror(r));
		return;
	}
	log_debug("mdns: TXT record now rel=%" PRIu64 " load=%" PRIu32, now.rel, now.load);
	disc->txt = now;
	disc->txt_load_ms = t;
}

/* ---- browsing ---- */

static const char *role_word(const struct txt_info *t)
{
	return t->role == TXT_ROLE_GATEWAY ? "gateway" : "device";
}

static void svc_text(const struct svc *s, char *out, size_t n)
{
	char ip[INET_ADDRSTRLEN] = "?";

	inet_ntop(AF_INET, &s->addr.sin_addr, ip, sizeof(ip));
	snprintf(out, n, "%s:%u", ip, ntohs(s->addr.sin_port));
}

/* Takes the peer back from the swarm and forgets the service. */
static void svc_drop(struct discovery *disc, struct svc *s, bool say)
{
	if (s->added) {
		char where[64];

		svc_text(s, where, sizeof(where));
		if (say)
			log_info("mdns: %s '%s' at %s went away (an open connection stays)", role_word(&s->txt), s->name,
				 where);
		swarm_remove_candidate(disc->d->swarm, &s->addr);
	}
	if (s->r)
		avahi_service_resolver_free(s->r);
	free(s->domain);
	*s = (struct svc){ .disc = disc, .used = false };
}

/* Forgets every service without touching avahi objects (the client that
 * made them is gone or going). */
static void forget_all(struct discovery *disc)
{
	size_t n = 0;

	for (size_t i = 0; i < disc->cap_svc; i++) {
		struct svc *s = &disc->svc[i];

		if (!s->used)
			continue;
		n += s->added;
		s->r = NULL;
		svc_drop(disc, s, false);
	}
	if (n)
		log_info("mdns: forgetting %zu discovered peers until avahi-daemon browses again; open connections stay", n);
	disc->full_warned = false;
}

static void resolve_cb(AvahiServiceResolver *r, AvahiIfIndex iface, AvahiProtocol proto, AvahiResolverEvent event,
		       const char *name, const char *type, const char *domain, const char *host, const AvahiAddress *a,
		       uint16_t port, AvahiStringList *txt, AvahiLookupResultFlags flags, void *ud);

static void resolve(struct discovery *disc, struct svc *s)
{
	s->r = avahi_service_resolver_new(disc->client, s->iface, s->proto, s->name, SERVICE_TYPE, s->domain,
					  AVAHI_PROTO_INET, 0, resolve_cb, s);
	if (!s->r) {
		s->retry_ms = uv_now(disc->loop) + RESOLVE_RETRY_MIN_MS;
		log_debug("mdns: cannot resolve '%s': %s", s->name, avahi_strerror(avahi_client_errno(disc->client)));
	}
}

/* Says once why a service is not dialled. */
static void svc_ignore(struct svc *s, int level, const char *fmt, ...) _printf_(3, 4);
static void svc_ignore(struct svc *s, int level, const char *fmt, ...)
{
	char why[sizeof(s->why)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (s->st != SVC_IGNORED || strcmp(why, s->why))
		log_msg(level, "mdns: ignoring '%s': %s", s->name, why);
	snprintf(s->why, sizeof(s->why), "%s", why);
	s->st = SVC_IGNORED;
}

static void on_found(struct discovery *disc, struct svc *s, const AvahiAddress *a, uint16_t port,
		     AvahiStringList *txt)
{
	struct txt_string strs[TXT_STRINGS_MAX];
	struct sockaddr_in addr = { .sin_family = AF_INET };
	unsigned n = avahi_string_list_length(txt), i;
	struct txt_info t;
	struct perr err = { "" };
	char where[64];
	int k;

	if (!a || a->proto != AVAHI_PROTO_INET)
		return;
	if (n > TXT_STRINGS_MAX) {
		svc_ignore(s, LOG_INFO, "its TXT record has %u strings", n);
		goto unadd;
	}
	/* Avahi's lists run last string first */
	i = n;
	for (AvahiStringList *l = txt; l && i > 0; l = avahi_string_list_get_next(l))
		strs[--i] = (struct txt_string){ .p = avahi_string_list_get_text(l), .len = avahi_string_list_get_size(l) };
	if ((k = txt_parse(strs, n, &t, &err)) < 0) {
		svc_ignore(s, LOG_INFO, "%s", err.msg);
		goto unadd;
	}
	if (!strcmp(t.id, disc->txt.id)) {
		svc_ignore(s, LOG_DEBUG, "it is us");
		goto unadd;
	}
	if (strcmp(t.fleet, disc->txt.fleet)) {
		svc_ignore(s, LOG_DEBUG, "fleet '%s' is not ours ('%s')", t.fleet, disc->txt.fleet);
		goto unadd;
	}
	if (t.proto != WIRE_VERSION) {
		svc_ignore(s, LOG_INFO, "it speaks peer protocol %" PRIu32 ", we speak %u", t.proto, WIRE_VERSION);
		goto unadd;
	}
	addr.sin_addr.s_addr = a->data.ipv4.address; /* network order already */
	addr.sin_port = htons(port);
	if (s->added && (s->addr.sin_addr.s_addr != addr.sin_addr.s_addr || s->addr.sin_port != addr.sin_port)) {
		swarm_remove_candidate(disc->d->swarm, &s->addr);
		s->added = false;
	}
	s->txt = t;
	s->st = SVC_PEER;
	if (s->added)
		return; /* the same peer announcing a new TXT record */
	s->addr = addr;
	svc_text(s, where, sizeof(where));
	k = swarm_add_candidate(disc->d->swarm, &addr, t.id);
	switch (k) {
	case 0:
		log_info("mdns: discovered %s '%s' at %s (device %s, newest release %" PRIu64 ", load %" PRIu32 ")",
			 role_word(&t), s->name, where, t.id, t.rel, t.load);
		s->added = true;
		break;
	case -EEXIST:
		log_info("mdns: %s '%s' at %s announced again (device %s, already known)", role_word(&t), s->name, where,
			 t.id);
		s->added = true;
		break;
	case -ELOOP:
		svc_ignore(s, LOG_DEBUG, "it is us");
		break;
	case -ENOSPC:
		log_warn("mdns: peer table full ([discovery] max_peers = %" PRIu32 "): not dialling '%s' at %s",
			 disc->d->conf.max_peers, s->name, where);
		s->st = SVC_RESOLVING; /* tried again when it announces anew */
		break;
	default:
		log_warn("mdns: cannot add '%s' at %s: %s", s->name, where, strerror(-k));
		break;
	}
	return;
unadd:
	if (s->added) {
		swarm_remove_candidate(disc->d->swarm, &s->addr);
		s->added = false;
	}
}

static void resolve_cb(AvahiServiceResolver *r, AvahiIfIndex iface, AvahiProtocol proto, AvahiResolverEvent event,
		       const char *name, const char *type, const char *domain, const char *host, const AvahiAddress *a,
		       uint16_t port, AvahiStringList *txt, AvahiLookupResultFlags flags, void *ud)
{
	struct svc *s = ud;
	struct discovery *disc = s->disc;

	(void)iface;
	(void)proto;
	(void)name;
	(void)type;
	(void)domain;
	(void)host;
	(void)flags;
	if (disc->stopping || s->r != r)
		return;
	switch (event) {
	case AVAHI_RESOLVER_FOUND:
		s->failures = 0;
		on_found(disc, s, a, port, txt);
		break;
	case AVAHI_RESOLVER_FAILURE: {
		uint64_t wait = RESOLVE_RETRY_MIN_MS << (s->failures < 5 ? s->failures : 5);

		if (wait > RESOLVE_RETRY_MAX_MS)
			wait = RESOLVE_RETRY_MAX_MS;
		s->failures++;
		log_debug("mdns: resolving '%s' failed: %s; again in %" PRIu64 " s", s->name,
			  avahi_strerror(avahi_client_errno(disc->client)), wait / 1000);
		avahi_service_resolver_free(r);
		s->r = NULL;
		s->retry_ms = uv_now(disc->loop) + wait;
		break;
	}
	}
}
