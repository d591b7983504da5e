/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "netwatch.h"

#define NETWATCH_IFS 32 /* interfaces remembered; more are ignored */

struct ifstate {
	int index;
	int running; /* IFF_RUNNING (carrier and administratively up) */
	uint64_t lost_ms; /* when the carrier went away (0: not seen) */
};

struct netwatch {
	uv_loop_t *loop;
	uv_poll_t poll;
	int fd;
	netwatch_up_fn up;
	void *ud;
	struct ifstate ifs[NETWATCH_IFS];
	size_t n_ifs;
	bool closing;
	union { /* netlink messages are read in place: aligned as they are */
		struct nlmsghdr h;
		uint8_t b[32768];
	} buf;
};

static void ifstate_forget(struct netwatch *nw, int index)
{
	for (size_t i = 0; i < nw->n_ifs; i++)
		if (nw->ifs[i].index == index) {
			nw->ifs[i] = nw->ifs[--nw->n_ifs];
			return;
		}
}

static struct ifstate *ifstate_of(struct netwatch *nw, int index, bool *fresh)
{
	*fresh = false;
	for (size_t i = 0; i < nw->n_ifs; i++)
		if (nw->ifs[i].index == index)
			return &nw->ifs[i];
	if (nw->n_ifs == NETWATCH_IFS)
		return NULL;
	*fresh = true;
	nw->ifs[nw->n_ifs] = (struct ifstate){ .index = index };
	return &nw->ifs[nw->n_ifs++];
}

static void on_link(struct netwatch *nw, const struct nlmsghdr *h)
{
	const struct ifinfomsg *ifi = NLMSG_DATA(h);
	char name[IF_NAMESIZE] = "?";
	struct ifstate *s;
	bool fresh;
	int running;
	uint64_t now = uv_now(nw->loop);

	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)) || (ifi->ifi_flags & IFF_LOOPBACK))
		return;
	if (h->nlmsg_type == RTM_DELLINK) { /* gone: a new one gets a new index */
		ifstate_forget(nw, ifi->ifi_index);
		return;
	}
	running = (ifi->ifi_flags & IFF_RUNNING) != 0;
	if (!(s = ifstate_of(nw, ifi->ifi_index, &fresh)))
		return;
	if (fresh) {
		s->running = running;
		return;
	}
	if (running == s->running)
		return;
	s->running = running;
	if_indextoname((unsigned)ifi->ifi_index, name);
	if (!running) {
		s->lost_ms = now;
		log_info("network: %s lost its carrier", name);
		return;
	}
	nw->up(nw->ud, name, s->lost_ms ? now - s->lost_ms : 0);
	s->lost_ms = 0;
}

static int request_dump(struct netwatch *nw)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = {
		.h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
		       .nlmsg_seq = 1 },
		.i = { .ifi_family = AF_UNSPEC },
	};

	return send(nw->fd, &req, sizeof(req), 0) < 0 ? -errno : 0;
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	struct netwatch *nw = p->data;
	struct sockaddr_nl from;
	socklen_t fromlen;
	ssize_t n;

	(void)events;
	if (status < 0) {
		/* the socket overran (ENOBUFS): libuv stopped the handle.
		 * Clear the error, ask for every link's state again and go on;
		 * what changed meanwhile shows as a change against the
		 * states remembered. */
		int e = 0;
		socklen_t el = sizeof(e);

		getsockopt(nw->fd, SOL_SOCKET, SO_ERROR, &e, &el);
		log_info("network: link events were lost (%s); reading every link's state again",
			 strerror(e ? e : ENOBUFS));
		if (request_dump(nw) < 0 || uv_poll_start(&nw->poll, UV_READABLE, poll_cb) < 0)
			log_warn("network: cannot watch link state any longer: TCP's own timers decide after an outage");
		return;
	}
	/* bounded: a burst of events is read 64 datagrams per wake-up */
	for (int round = 0; round < 64; round++) {
		fromlen = sizeof(from);
		n = recvfrom(nw->fd, nw->buf.b, sizeof(nw->buf.b), MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from,
			     &fromlen);
		if (n < 0) {
			if (errno == ENOBUFS) /* events were lost: the states stay as last seen */
				continue;
			return;
		}
		if ((size_t)n > sizeof(nw->buf.b)) {
			log_debug("network: a %zd-byte link message does not fit; skipped", n);
			continue;
		}
		if (fromlen < sizeof(from) || from.nl_pid != 0) /* only the kernel speaks here */
			continue;
		for (struct nlmsghdr *h = &nw->buf.h; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n))
			if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK)
				on_link(nw, h);
	}
}

struct netwatch *netwatch_new(uv_loop_t *loop, netwatch_up_fn up, void *ud)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK };
	struct netwatch *nw = calloc(1, sizeof(*nw));
	int rcvbuf = 256 << 10;
	int k;

	if (!nw)
		return NULL;
	nw->loop = loop;
	nw->up = up;
	nw->ud = ud;
	nw->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (nw->fd >= 0)
		(void)setsockopt(nw->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (nw->fd < 0 || bind(nw->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || (errno = -request_dump(nw)) != 0) {
		log_warn("network: cannot watch link state (rtnetlink: %s); after a link outage TCP's own timers "
			 "decide when peers are heard again", strerror(errno));
		goto fail;
	}
	if ((k = uv_poll_init_socket(loop, &nw->poll, nw->fd)) < 0) {
		log_warn("network: cannot watch link state: %s", uv_strerror(k));
		goto fail;
	}
	nw->poll.data = nw;
	uv_poll_start(&nw->poll, UV_READABLE, poll_cb);
	return nw;
fail:
	if (nw->fd >= 0)
		close(nw->fd);
	free(nw);
	return NULL;
}

static void close_cb(uv_handle_t *h)
{
	struct netwatch *nw = h->data;

	close(nw->fd);
	free(nw);
}

void netwatch_stop(struct netwatch *nw)
{
	if (!nw || nw->closing)
		return;
	nw->closing = true;
	uv_close((uv_handle_t *)&nw->poll, close_cb);
}
