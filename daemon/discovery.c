/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/domain.h>
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
	char name[AVAHI_LABEL_MAX];  /* as announced: what avahi is asked about */
	char shown[AVAHI_LABEL_MAX]; /* the same, safe for the log */
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
	bool lost;      /* the client failed: say "back" when avahi-daemon returns */
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

/* The record in Avahi's form. Avahi keeps the lists one builds last
 * string first, so adding them in record order puts txtvers first on the
 * wire (checked with a capture). */
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

/* A copy of in safe for a log line or a D-Bus string: as it is when it is
 * clean UTF-8 text, else with every control or non-ASCII byte as '?'
 * (names come from the configuration, or from anyone on the LAN). */
static void clean_copy(char *out, size_t size, const char *in)
{
	size_t n = strnlen(in, size - 1);
	bool clean = text_is_clean(in, strlen(in));

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		out[i] = !clean && (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	/* a cut inside a UTF-8 character drops the rest of it */
	if (clean && in[n])
		while (n > 0 && ((unsigned char)in[n] & 0xc0) == 0x80)
			n--;
	out[n] = '\0';
}

/* "NAME (DEVICE-ID)", within the 63 bytes of a DNS label. */
static void make_name(char out[AVAHI_LABEL_MAX], const char *name, const char *id)
{
	char suffix[TXT_ID_LEN + 4], head[AVAHI_LABEL_MAX];

	snprintf(suffix, sizeof(suffix), " (%s)", id);
	clean_copy(head, AVAHI_LABEL_MAX - strlen(suffix), name);
	snprintf(out, AVAHI_LABEL_MAX, "%s%s", head[0] ? head : "shoald", suffix);
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
			log_info("mdns: %s '%s' at %s went away (an open connection stays)", role_word(&s->txt), s->shown,
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
		log_info("mdns: forgetting %zu discovered peer%s until avahi-daemon browses again; open connections stay",
			 n, n == 1 ? "" : "s");
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
		log_debug("mdns: cannot resolve '%s': %s", s->shown, avahi_strerror(avahi_client_errno(disc->client)));
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
		log_msg(level, "mdns: ignoring '%s': %s", s->shown, why);
	snprintf(s->why, sizeof(s->why), "%s", why);
	s->st = SVC_IGNORED;
}

/* Hands a peer of our fleet to the swarm. */
static void svc_add(struct discovery *disc, struct svc *s, bool quiet)
{
	char where[64];
	int k;

	svc_text(s, where, sizeof(where));
	k = swarm_add_candidate(disc->d->swarm, &s->addr, s->txt.id);
	switch (k) {
	case 0:
		log_info("mdns: discovered %s '%s' at %s (device %s, newest release %" PRIu64 ", load %" PRIu32 ")",
			 role_word(&s->txt), s->shown, where, s->txt.id, s->txt.rel, s->txt.load);
		s->added = true;
		break;
	case -EEXIST:
		log_info("mdns: %s '%s' at %s announced again (device %s, already known)", role_word(&s->txt), s->shown,
			 where, s->txt.id);
		s->added = true;
		break;
	case -ELOOP:
		svc_ignore(s, LOG_DEBUG, "it is us");
		break;
	case -ENOSPC: /* the tick tries again */
		if (!quiet)
			log_warn("mdns: peer table full ([discovery] max_peers = %" PRIu32 "): not dialling '%s' at %s for now",
				 disc->d->conf.max_peers, s->shown, where);
		break;
	default:
		log_warn("mdns: cannot add '%s' at %s: %s", s->shown, where, strerror(-k));
		svc_ignore(s, LOG_DEBUG, "the swarm refused it");
		break;
	}
}

static void on_found(struct discovery *disc, struct svc *s, const AvahiAddress *a, uint16_t port,
		     AvahiStringList *txt)
{
	struct txt_string strs[TXT_STRINGS_MAX];
	struct sockaddr_in addr = { .sin_family = AF_INET };
	unsigned n = avahi_string_list_length(txt), i;
	struct txt_info t;
	struct perr err = { "" };

	if (!a || a->proto != AVAHI_PROTO_INET)
		return;
	if (n > TXT_STRINGS_MAX) {
		svc_ignore(s, LOG_INFO, "its TXT record has %u strings", n);
		goto unadd;
	}
	/* A resolver's list runs in record order (unlike the lists one
	 * builds, which run last string first): seen on the wire, and it
	 * matters, the first of two equal keys wins. */
	i = 0;
	for (AvahiStringList *l = txt; l && i < n; l = avahi_string_list_get_next(l))
		strs[i++] = (struct txt_string){ .p = avahi_string_list_get_text(l), .len = avahi_string_list_get_size(l) };
	if (txt_parse(strs, n, &t, &err) < 0) {
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
	s->st = SVC_PEER;
	if (s->added && s->addr.sin_addr.s_addr == addr.sin_addr.s_addr && s->addr.sin_port == addr.sin_port) {
		/* the same peer with a new TXT record */
		if (t.rel != s->txt.rel || t.load != s->txt.load)
			log_debug("mdns: '%s' now announces newest release %" PRIu64 ", load %" PRIu32, s->shown, t.rel,
				  t.load);
		s->txt = t;
		return;
	}
	if (s->added) {
		swarm_remove_candidate(disc->d->swarm, &s->addr);
		s->added = false;
	}
	s->addr = addr;
	s->txt = t;
	svc_add(disc, s, false);
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
		log_debug("mdns: resolving '%s' failed: %s; again in %" PRIu64 " s", s->shown,
			  avahi_strerror(avahi_client_errno(disc->client)), wait / 1000);
		avahi_service_resolver_free(r);
		s->r = NULL;
		s->retry_ms = uv_now(disc->loop) + wait;
		break;
	}
	}
}

static struct svc *svc_find(struct discovery *disc, AvahiIfIndex iface, AvahiProtocol proto, const char *name,
			    const char *domain)
{
	for (size_t i = 0; i < disc->cap_svc; i++) {
		struct svc *s = &disc->svc[i];

		if (s->used && s->iface == iface && s->proto == proto && !strcmp(s->name, name) &&
		    !strcmp(s->domain, domain))
			return s;
	}
	return NULL;
}

static void browse_cb(AvahiServiceBrowser *b, AvahiIfIndex iface, AvahiProtocol proto, AvahiBrowserEvent event,
		      const char *name, const char *type, const char *domain, AvahiLookupResultFlags flags, void *ud)
{
	struct discovery *disc = ud;
	struct svc *s;

	(void)b;
	(void)type;
	if (disc->stopping)
		return;
	if (!domain)
		domain = "local";
	switch (event) {
	case AVAHI_BROWSER_NEW:
		if (flags & AVAHI_LOOKUP_RESULT_OUR_OWN)
			return; /* published by this very client */
		if (!name || strlen(name) >= AVAHI_LABEL_MAX || svc_find(disc, iface, proto, name, domain))
			return;
		for (s = disc->svc; s < disc->svc + disc->cap_svc && s->used; s++)
			;
		if (s == disc->svc + disc->cap_svc) {
			if (!disc->full_warned)
				log_warn("mdns: following %zu services already; ignoring '%s' and any more until some go away",
					 disc->cap_svc, name);
			disc->full_warned = true;
			return;
		}
		*s = (struct svc){ .disc = disc, .used = true, .iface = iface, .proto = proto, .st = SVC_RESOLVING };
		snprintf(s->name, sizeof(s->name), "%s", name);
		clean_copy(s->shown, sizeof(s->shown), name);
		if (!(s->domain = strdup(domain))) {
			s->used = false;
			return;
		}
		log_debug("mdns: '%s' appeared; resolving it", s->shown);
		resolve(disc, s);
		break;
	case AVAHI_BROWSER_REMOVE:
		if (name && (s = svc_find(disc, iface, proto, name, domain))) {
			svc_drop(disc, s, true);
			disc->full_warned = false;
		}
		break;
	case AVAHI_BROWSER_FAILURE:
		log_warn("mdns: browsing failed: %s; browsing again in %u s",
			 avahi_strerror(avahi_client_errno(disc->client)), TICK_MS / 1000);
		disc->browser_failed = true;
		break;
	case AVAHI_BROWSER_CACHE_EXHAUSTED:
	case AVAHI_BROWSER_ALL_FOR_NOW:
		break;
	}
}

static void browse(struct discovery *disc)
{
	if (disc->browser || !disc->client || disc->state != AVAHI_CLIENT_S_RUNNING || disc->stopping)
		return;
	/* IPv4 is what the swarm dials */
	disc->browser = avahi_service_browser_new(disc->client, AVAHI_IF_UNSPEC, AVAHI_PROTO_INET, SERVICE_TYPE, NULL, 0,
						  browse_cb, disc);
	if (!disc->browser)
		log_warn("mdns: cannot browse for %s: %s; retrying in %u s", SERVICE_TYPE,
			 avahi_strerror(avahi_client_errno(disc->client)), TICK_MS / 1000);
}

/* ---- the client ---- */

static void client_cb(AvahiClient *c, AvahiClientState state, void *ud)
{
	struct discovery *disc = ud;

	if (disc->stopping)
		return;
	disc->client = c; /* the first call comes before avahi_client_new returns */
	disc->state = state;
	switch (state) {
	case AVAHI_CLIENT_S_RUNNING:
		if (disc->lost)
			log_notice("mdns: avahi-daemon is back; publishing and browsing again");
		disc->lost = false;
		publish(disc);
		browse(disc);
		break;
	case AVAHI_CLIENT_S_COLLISION:
		log_notice("mdns: avahi-daemon's host name is taken on the LAN; publishing again once it has a new one");
		disc->established = false;
		if (disc->group)
			avahi_entry_group_reset(disc->group);
		break;
	case AVAHI_CLIENT_S_REGISTERING:
		log_info("mdns: avahi-daemon is registering its host name; publishing when it is done");
		disc->established = false;
		if (disc->group)
			avahi_entry_group_reset(disc->group);
		break;
	case AVAHI_CLIENT_FAILURE:
		/* the daemon went away, or D-Bus did: the client is dead. Make
		 * a new one from the loop, not from inside avahi's callback. */
		log_warn("mdns: lost avahi-daemon (%s); reconnecting", avahi_strerror(avahi_client_errno(c)));
		disc->lost = true;
		disc->established = false;
		disc->restart = true;
		uv_timer_start(&disc->tick, tick_cb, 0, TICK_MS);
		break;
	case AVAHI_CLIENT_CONNECTING:
		log_notice("mdns: waiting for avahi-daemon to appear (static peers work meanwhile)");
		break;
	}
}

static void client_start(struct discovery *disc)
{
	AvahiClient *c;
	int error = 0;

	disc->restart = false;
	disc->client = NULL;
	disc->state = AVAHI_CLIENT_CONNECTING;
	/* NO_FAIL: wait for a missing avahi-daemon instead of failing. The
	 * user configuration only adds browse domains, none of which we use. */
	c = avahi_client_new(&disc->api, AVAHI_CLIENT_NO_FAIL | AVAHI_CLIENT_IGNORE_USER_CONFIG, client_cb, disc,
			     &error);
	if (!c) {
		disc->client = NULL; /* a failing constructor may have called back with it */
		if (!disc->dbus_warned)
			log_warn("mdns: cannot reach the system D-Bus (%s): no discovery until it is there; "
				 "trying again every %u s",
				 avahi_strerror(error), TICK_MS / 1000);
		disc->dbus_warned = true;
		disc->restart = true;
		return;
	}
	if (disc->dbus_warned)
		log_notice("mdns: reached the system D-Bus");
	disc->dbus_warned = false;
	disc->client = c;
}

/* Drops the dead client with everything it made (avahi frees those) and
 * makes a new one. */
static void client_restart(struct discovery *disc)
{
	forget_all(disc);
	disc->group = NULL;
	disc->browser = NULL;
	disc->browser_failed = false;
	disc->established = false;
	if (disc->client)
		avahi_client_free(disc->client);
	disc->client = NULL;
	client_start(disc);
}

static void tick_cb(uv_timer_t *t)
{
	struct discovery *disc = container_of(t, struct discovery, tick);
	uint64_t now = uv_now(disc->loop);

	if (disc->stopping)
		return;
	if (disc->restart)
		client_restart(disc);
	if (!disc->client || disc->state != AVAHI_CLIENT_S_RUNNING)
		return;
	if (disc->browser_failed) {
		for (size_t i = 0; i < disc->cap_svc; i++)
			if (disc->svc[i].used)
				svc_drop(disc, &disc->svc[i], false);
		if (disc->browser)
			avahi_service_browser_free(disc->browser);
		disc->browser = NULL;
		disc->browser_failed = false;
	}
	publish(disc);
	browse(disc);
	for (size_t i = 0; i < disc->cap_svc; i++) {
		struct svc *s = &disc->svc[i];

		if (!s->used)
			continue;
		/* a peer's resolver that failed is made again too: it follows
		 * the peer's address and record */
		if (!s->r && s->st != SVC_IGNORED && now >= s->retry_ms)
			resolve(disc, s);
		if (s->st == SVC_PEER && !s->added)
			svc_add(disc, s, true);
	}
	refresh_txt(disc);
}

/* ---- life cycle ---- */

int discovery_new(struct daemon *d, struct discovery **ret, struct perr *err)
{
	struct txt_info t = {
		.proto = WIRE_VERSION,
		.role = d->conf.role == ROLE_GATEWAY ? TXT_ROLE_GATEWAY : TXT_ROLE_DEVICE,
	};
	struct discovery *disc;
	struct txt_wire w;
	int k;

	if (!d->conf.mdns) {
		log_info("mdns: off ([discovery] mdns = no): only static peers and the gateway address are dialled");
		*ret = NULL;
		return 0;
	}
	key_short_id(d->device_pk, t.id);
	if (strlen(d->conf.fleet_tag) > TXT_FLEET_MAX)
		return perr_set(err, -EINVAL, "[fleet] tag is %zu bytes; mDNS announces at most %u",
				strlen(d->conf.fleet_tag), TXT_FLEET_MAX);
	snprintf(t.fleet, sizeof(t.fleet), "%s", d->conf.fleet_tag);
	if ((k = txt_format(&t, &w, err)) < 0)
		return perr_prefix(err, k, "[fleet] tag cannot be announced over mDNS: ");

	disc = calloc(1, sizeof(*disc));
	if (!disc)
		return perr_set(err, -ENOMEM, "out of memory");
	disc->cap_svc = 2 * (size_t)d->conf.max_peers + 8;
	disc->svc = calloc(disc->cap_svc, sizeof(*disc->svc));
	if (!disc->svc) {
		free(disc);
		return perr_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < disc->cap_svc; i++)
		disc->svc[i].disc = disc;
	disc->d = d;
	disc->loop = &d->loop;
	disc->txt = t;
	disc->api = (AvahiPoll){
		.userdata = disc,
		.watch_new = watch_new,
		.watch_update = watch_update,
		.watch_get_events = watch_get_events,
		.watch_free = watch_free,
		.timeout_new = timeout_new,
		.timeout_update = timeout_update,
		.timeout_free = timeout_free,
	};
	make_name(disc->name, d->conf.name, t.id);
	/* nothing fails from here on */
	uv_timer_init(disc->loop, &disc->tick);
	uv_timer_start(&disc->tick, tick_cb, TICK_MS, TICK_MS);
	log_info("mdns: announcing '%s' as %s on port %u, fleet '%s', and browsing for the fleet", disc->name,
		 SERVICE_TYPE, d->port, t.fleet);
	client_start(disc);
	*ret = disc;
	return 0;
}

void discovery_stop(struct discovery *disc)
{
	if (!disc || disc->stopping)
		return;
	disc->stopping = true;
	/* the client frees its groups, browsers and resolvers, and through
	 * them our announcement goes (avahi-daemon sends the goodbyes) */
	for (size_t i = 0; i < disc->cap_svc; i++) {
		free(disc->svc[i].domain);
		disc->svc[i] = (struct svc){ .disc = disc };
	}
	disc->group = NULL;
	disc->browser = NULL;
	if (disc->client)
		avahi_client_free(disc->client);
	disc->client = NULL;
	/* whatever avahi did not free (it should have freed it all) */
	while (disc->fds) {
		struct fdpoll *fp = disc->fds;

		disc->fds = fp->next;
		while (fp->watches) {
			AvahiWatch *w = fp->watches;

			fp->watches = w->next;
			free(w);
		}
		uv_close((uv_handle_t *)&fp->poll, fdpoll_close_cb);
	}
	while (disc->timeouts)
		timeout_free(disc->timeouts);
	uv_timer_stop(&disc->tick);
	uv_close((uv_handle_t *)&disc->tick, NULL);
}

void discovery_free(struct discovery *disc)
{
	if (!disc)
		return;
	for (size_t i = 0; i < disc->cap_svc; i++)
		free(disc->svc[i].domain);
	free(disc->svc);
	free(disc);
}
