/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Process mode (process.h). The namespaces are made here rather than with
 * `ip netns add`, as tests/lib/netns.sh does it, for the same reasons:
 *
 * - every namespace is held by a child of ours (a "holder") that unshared it
 *   and then only waits. Nothing is named under /run/netns, so nothing can be
 *   forgotten there: when the holder and the daemons started inside are
 *   gone, the kernel removes the namespace with its veths and addresses.
 *   Every child (holders, daemons, tools) has PR_SET_PDEATHSIG = SIGKILL, so
 *   even a shoal-sim killed with -9 leaves nothing running.
 * - the bridge has a namespace of its own with no link to the machine's:
 *   nothing a node sends can leave the simulated LAN.
 * - a node's holder also has its own mount namespace with a tmpfs on /run,
 *   so its dbus-daemon and avahi-daemon use their default paths without
 *   meeting the other nodes'; the rest of the file system is shared, which
 *   is how the control sockets and logs in the work directory are reached
 *   from here.
 * - a command enters a node with setns() in the forked child before exec:
 *   the pid we hold is the daemon's own, and it is ended by that pid.
 *
 * In loopback mode (no root) there are no namespaces at all: every shoald
 * runs on 127.0.0.1 with a port of its own, and holder is 0 everywhere.
 *
 * The run is a loop every 250 ms: reap children, fire the faults that are
 * due, ask every shoald for `status` over its control socket, move each
 * device through its phases, follow the gateway's campaign, redraw the
 * live view. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "process.h"

#define PORT 7000
#define POLL_MS 250
/* A power cut "during the install" must meet an install that takes about a
 * second here, whatever the scenario's modelled install time says. */
#define POWER_CUT_MAX_S 0.3
#define STOP_GRACE_S 5.0

enum phase {
	PH_RUN,      /* shoald runs: fetching, or back after a reboot */
	PH_INSTALL,  /* `shoal install` runs (while shoald does not install by itself) */
	PH_STOP,     /* shoald was told to stop for a reboot */
	PH_BOOTSIM,  /* the boot simulator's power-on runs */
	PH_BOOTCHK,  /* `shoal boot-check` runs (while shoald does not run it at start) */
	PH_OFF,      /* powered off (a power cut) until t_due */
	PH_SETTLED,  /* committed or rolled back; shoald keeps serving */
};

static const char *phase_name[] = { "fetching", "installing", "rebooting", "rebooting", "boot-check", "power off",
				    "settled" };

struct pnode {
	char name[SCN_NAME_MAX];
	bool gw;
	uint32_t idx; /* device index; unused for the gateway */
	char dir[PATH_MAX];
	char ip[20];
	uint16_t port;
	pid_t holder, dbus, avahi, shoald, job;
	bool shoald_stopping;
	bool frozen;        /* SIGSTOPped while the gateway meets the canaries first */
	double stop_sent;
	enum phase ph;
	double t_due;       /* PH_OFF: power on; shoald killed: restart */
	bool restart_due;   /* shoald is down (kill fault, gateway-down) until t_due */
	bool installed;     /* v2 was installed since the last power cut */
	bool booted_new;    /* rebooted after the install: the settle check applies */
	int reboots;
	bool malicious;
	char target; /* 'a' or 'b': the slot shoald assembles into, fixed at its first start */
	const struct scn_fault *fault; /* the one fault on this node, or NULL */
	bool fault_fired, fault_ended;
	double cut_at;      /* power cut: when (-1: not armed) */
	/* from its status */
	uint64_t held, total, local, peers, seed, sent;
	uint32_t bans;      /* peers it banned, from its status's "banned" */
	char cphase[12], ctarget[12]; /* rollout = campaign: its phase and target state */
	double complete_s, settled_s;
	enum scn_state final;
	char release[SCN_NAME_MAX];
	const char *what; /* for the live view */
};

struct proc {
	const struct scenario *s;
	const struct proc_opts *o;
	char work[PATH_MAX];
	bool work_is_tmp;
	char shoald[PATH_MAX], shoal[PATH_MAX], gen[PATH_MAX];
	pid_t bridge;
	struct pnode *n; /* [0] the gateway, [1..] the devices */
	uint32_t nn;
	bool daemon_installs; /* shoald has [device] system_conf: it installs and boot-checks itself */
	bool netem;
	double t0;            /* monotonic seconds when the gateway publishes version 2 */
	double t0_real;       /* the same moment in CLOCK_REALTIME seconds, as shoald's log stamps */
	bool published;       /* the gateway seeds version 2 (also after a restart) */
	double wall0;
	uint64_t image_size;
	char v2_version[SCN_NAME_MAX];
	uint64_t last_rx;
	double last_rx_t, rate;
	/* rollout = campaign: the gateway's campaign */
	uint64_t campaign_id;
	char campaign_state[12];
	char campaign_reason[160];
	uint32_t campaign_failures;
	double campaign_polled;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_s(const struct proc *p)
{
	return p->t0 > 0 ? mono() - p->t0 : 0;
}

static void say(const struct proc *p, const char *fmt, ...) _printf_(2, 3);
static void say(const struct proc *p, const char *fmt, ...)
{
	va_list ap;

	if (!p->o->log)
		return;
	va_start(ap, fmt);
	fprintf(p->o->log, "shoal-sim: ");
	vfprintf(p->o->log, fmt, ap);
	fputc('\n', p->o->log);
	va_end(ap);
	fflush(p->o->log);
}

/* ---- processes ---- */

static void enter_ns(pid_t holder, const char *ns, int type)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)holder, ns);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || setns(fd, type) < 0) {
		dprintf(2, "shoal-sim: entering %s: %s\n", path, strerror(errno));
		_exit(126);
	}
	close(fd);
}

/* In a child of ours, first thing: it dies with us (even with a SIGKILL
 * of shoal-sim), has default signals, and a process group of its own, so
 * that Ctrl-C goes to shoal-sim alone, which ends everything in order. */
static void child_init(pid_t parent)
{
	sigset_t none;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	setpgid(0, 0);
}

/* Starts argv[0] (found in PATH) in the namespaces of holder (0: ours;
 * host: net, mount and uts, else net only), output appended to log
 * (NULL: /dev/null), with env1 ("NAME=VALUE") added. The pid, or -errno. */
static pid_t spawn(pid_t holder, bool host, const char *log, const char *env1, char *const argv[])
{
	pid_t parent = getpid(), pid = fork();
	int fd;

	if (pid != 0)
		return pid < 0 ? -errno : pid;
	child_init(parent);
	if (holder > 0) {
		enter_ns(holder, "net", CLONE_NEWNET);
		if (host) {
			enter_ns(holder, "uts", CLONE_NEWUTS);
			enter_ns(holder, "mnt", CLONE_NEWNS);
		}
	}
	if (env1)
		putenv((char *)env1);
	if ((fd = open("/dev/null", O_RDONLY)) >= 0)
		dup2(fd, 0);
	fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : open("/dev/null", O_WRONLY);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	execvp(argv[0], argv);
	dprintf(2, "shoal-sim: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Waits for pid; its exit code, 128 + signal, or -errno. */
static int reap(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* pid ended: its exit code (>= 0); still running: -EAGAIN. */
static int reaped(pid_t pid)
{
	int st;
	pid_t r = waitpid(pid, &st, WNOHANG);

	if (r == 0)
		return -EAGAIN;
	if (r < 0)
		return 255;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs a command to its end; its exit code or -errno. */
static int run(pid_t holder, bool host, const char *log, char *const argv[])
{
	pid_t pid = spawn(holder, host, log, NULL, argv);

	return pid < 0 ? pid : reap(pid);
}

#define RUN(err, holder, host, log, ...)                                                                        \
	({                                                                                                      \
		char *const argv_[] = { __VA_ARGS__, NULL };                                                    \
		const char *log_ = (log);                                                                       \
		int r_ = run(holder, host, log_, argv_);                                                        \
		r_ == 0 ? 0                                                                                     \
			: perr_set(err, r_ < 0 ? r_ : -EIO, "%s %s failed (%s%d)%s%s", argv_[0], argv_[1] ?: "", \
				   r_ < 0 ? "error " : "exit ", r_ < 0 ? -r_ : r_, log_ ? ": see " : "", log_ ?: ""); \
	})

/* Ends one process of ours: SIGTERM, up to STOP_GRACE_S, then SIGKILL. */
static void end_pid(pid_t *pid)
{
	double until = mono() + STOP_GRACE_S;

	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	while (reaped(*pid) == -EAGAIN) {
		if (mono() > until) {
			kill(*pid, SIGKILL);
			reap(*pid);
			break;
		}
		usleep(20000);
	}
	*pid = 0;
}

static void kill_pid(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGKILL);
	reap(*pid);
	*pid = 0;
}

/* A holder: a child that unshares the namespaces (host: net, mount, uts
 * with its own /run and host name; else net only), says so on a pipe and
 * waits to be killed. */
static int holder_new(bool host, const char *hostname, pid_t *ret, struct perr *err)
{
	int fds[2];
	pid_t parent = getpid(), pid;
	char ok = 0;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return perr_set(err, -errno, "pipe: %s", strerror(errno));
	if ((pid = fork()) < 0) {
		close(fds[0]);
		close(fds[1]);
		return perr_set(err, -errno, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		child_init(parent);
		close(fds[0]);
		if (unshare(CLONE_NEWNET | (host ? CLONE_NEWNS | CLONE_NEWUTS : 0)) < 0)
			_exit(2);
		if (host) {
			if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
			    mount("shoal-sim-run", "/run", "tmpfs", 0, "mode=0755,size=16m") < 0 ||
			    mkdir("/run/dbus", 0755) < 0 || mkdir("/run/avahi-daemon", 0755) < 0 ||
			    sethostname(hostname, strlen(hostname)) < 0)
				_exit(3);
		}
		ok = 1;
		if (write(fds[1], &ok, 1) != 1)
			_exit(4);
		close(fds[1]);
		for (;;)
			pause();
	}
	close(fds[1]);
	if (read(fds[0], &ok, 1) != 1 || !ok) {
		close(fds[0]);
		int code = reap(pid);
		return perr_set(err, -EPERM, "cannot make %s namespaces (step %d): need root and unshare(2)",
				host ? "a node's" : "the bridge's", code);
	}
	close(fds[0]);
	*ret = pid;
	return 0;
}

/* ---- files ---- */

static int write_file(const char *path, struct perr *err, const char *fmt, ...) _printf_(3, 4);
static int write_file(const char *path, struct perr *err, const char *fmt, ...)
{
	FILE *f = fopen(path, "we");
	va_list ap;
	bool bad;

	if (!f)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	bad = ferror(f) != 0;
	if (fclose(f) != 0 || bad)
		return perr_set(err, -EIO, "%s: write failed", path);
	return 0;
}

/* dir/name in buf (PATH_MAX); the work directory is checked to be short
 * enough for every name, so a cut path is a bug, and it ends the run. */
static char *path_of(char *buf, const char *dir, const char *name)
{
	if ((size_t)snprintf(buf, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		abort();
	return buf;
}

/* Finds a program: $ENV, then the build tree next to us (BUILD_REL from
 * simulator/), then our own directory, then PATH (name as is). */
static void find_tool(char *out, const char *env, const char *build_rel, const char *name)
{
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	if (getenv(env) && *getenv(env)) {
		snprintf(out, PATH_MAX, "%s", getenv(env));
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')))
			*slash = '\0';
		if (access(path_of(out, self, build_rel), X_OK) == 0)
			return;
		if (access(path_of(out, self, name), X_OK) == 0)
			return;
	}
	snprintf(out, PATH_MAX, "%s", name);
}

static bool in_path(const char *name)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	while (path && *path) {
		size_t len = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, name);
		if (access(buf, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

static void path_add_sbin(void)
{
	const char *path = getenv("PATH");
	char buf[8192];

	if (path && strstr(path, "/usr/sbin"))
		return;
	snprintf(buf, sizeof(buf), "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
	setenv("PATH", buf, 1);
}

int proc_usable(bool loopback, struct perr *err)
{
	static const char *tools[] = { "ip", "tc", "dbus-daemon", "avahi-daemon" };

	if (loopback)
		return 0; /* shoald, shoal and gen-image only; failures to start them say so */
	if (geteuid() != 0)
		return perr_set(err, -EPERM, "process mode needs root (network namespaces, tc): run it with sudo");
	path_add_sbin();
	for (size_t i = 0; i < ELEMENTSOF(tools); i++)
		if (!in_path(tools[i]))
			return perr_set(err, -ENOENT, "process mode needs %s (scripts/setup-deps installs it)", tools[i]);
	return 0;
}

/* ---- the LAN ---- */

static int probe_qdisc(const char *kind_args)
{
	char cmd[256];
	pid_t h;
	struct perr e;
	int r;

	if (holder_new(false, NULL, &h, &e) < 0)
		return 0;
	snprintf(cmd, sizeof(cmd), "ip link set lo up && tc qdisc replace dev lo root %s", kind_args);
	{
		char *const argv[] = { "sh", "-c", cmd, NULL };

		r = run(h, false, NULL, argv);
	}
	kill_pid(&h);
	return r == 0;
}

/* tc arguments: "tbf rate ..." for rate bytes/s */
static void tbf_args(char *buf, size_t size, uint64_t bps)
{
	uint64_t burst = bps / 100 > 16384 ? bps / 100 : 16384; /* 10 ms, and a few frames at least */

	snprintf(buf, size, "tbf rate %" PRIu64 "bit burst %" PRIu64 " latency 100ms", bps * 8, burst);
}

/* Shapes what leaves dev (in holder's namespace) to bps, with netem for
 * latency and loss when the kernel has it. */
static int shape(struct proc *p, pid_t holder, const char *dev, uint64_t bps, const struct scn_link *l, struct perr *err)
{
	char tbf[160], cmd[512], log[PATH_MAX];

	tbf_args(tbf, sizeof(tbf), bps);
	if (p->netem && (l->latency_us || l->loss_ppm))
		snprintf(cmd, sizeof(cmd),
			 "tc qdisc replace dev %s root handle 1: netem delay %uus loss %u.%04u%% && "
			 "tc qdisc replace dev %s parent 1:1 handle 10: %s",
			 dev, l->latency_us, l->loss_ppm / 10000, l->loss_ppm % 10000, dev, tbf);
	else
		snprintf(cmd, sizeof(cmd), "tc qdisc replace dev %s root %s", dev, tbf);
	path_of(log, p->work, "tc.log");
	return RUN(err, holder, false, log, "sh", "-c", cmd);
}

/* Loopback mode: a free TCP port on 127.0.0.1 for every node, all held
 * at once so that they differ, then let go for shoald to take (another
 * program could take one in between: its shoald then fails to start and
 * says so in its log, and the run ends with that error). */
static int ports_pick(struct proc *p, struct perr *err)
{
	int *fd = calloc(p->nn, sizeof(*fd));
	int k = 0;

	if (!fd)
		return perr_set(err, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < p->nn; i++)
		fd[i] = -1;
	for (uint32_t i = 0; i < p->nn && k == 0; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sa);

		if ((fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    bind(fd[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    getsockname(fd[i], (struct sockaddr *)&sa, &len) < 0) {
			k = perr_set(err, -errno, "a port on 127.0.0.1 for %s: %s", p->n[i].name, strerror(errno));
			break;
		}
		p->n[i].port = ntohs(sa.sin_port);
	}
	for (uint32_t i = 0; i < p->nn; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(fd);
	return k;
}

static void node_ip(char *buf, uint32_t i)
{
	/* a /16: 10.77.0.1 is the gateway, devices follow */
	snprintf(buf, 20, "10.77.%u.%u", (i + 1) / 250, (i + 1) % 250 + ((i + 1) % 250 == 0));
}

static int lan_up(struct proc *p, struct perr *err)
{
	char log[PATH_MAX], veth[16], hold[16], cmd[512];
	int k;

	path_of(log, p->work, "ip.log");
	if ((k = holder_new(false, NULL, &p->bridge, err)) < 0)
		return k;
	if ((k = RUN(err, p->bridge, false, log, "sh", "-c",
		     "ip link set lo up && ip link add br0 type bridge mcast_snooping 0 && ip link set br0 up")) < 0)
		return k;
	for (uint32_t i = 0; i < p->nn; i++) {
		struct pnode *n = &p->n[i];
		char host[64];

		snprintf(host, sizeof(host), "sim-%s", n->name);
		if ((k = holder_new(true, host, &n->holder, err)) < 0)
			return k;
		snprintf(veth, sizeof(veth), "vh%u", i);
		snprintf(hold, sizeof(hold), "%d", (int)n->holder);
		/* made in the bridge's namespace, the far end moved straight
		 * into the node's: it never exists in ours */
		if ((k = RUN(err, p->bridge, false, log, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
			     "netns", hold)) < 0 ||
		    (k = RUN(err, p->bridge, false, log, "ip", "link", "set", veth, "master", "br0", "up")) < 0)
			return k;
		snprintf(cmd, sizeof(cmd), "ip link set lo up && ip addr add %s/16 dev eth0 && ip link set eth0 up", n->ip);
		if ((k = RUN(err, n->holder, true, log, "sh", "-c", cmd)) < 0)
			return k;
		{
			const struct scn_link *l = n->gw ? &p->s->gateway : &p->s->nodes[n->idx].link;

			if ((k = shape(p, n->holder, "eth0", l->up_bps, l, err)) < 0 ||
			    (k = shape(p, p->bridge, veth, l->down_bps, l, err)) < 0)
				return k;
		}
	}
	return 0;
}

static int avahi_conf(const struct pnode *n, struct perr *err)
{
	char path[PATH_MAX];

	return write_file(path_of(path, n->dir, "avahi-daemon.conf"), err,
			  "[server]\nhost-name=sim-%s\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=eth0\nenable-dbus=yes\n"
			  "ratelimit-interval-usec=1000000\nratelimit-burst=1000\n\n[wide-area]\nenable-wide-area=no\n\n"
			  "[publish]\npublish-hinfo=no\npublish-workstation=no\npublish-addresses=yes\n\n"
			  "[reflector]\nenable-reflector=no\n",
			  n->name);
}

static bool file_has(const char *path, const char *text)
{
	char buf[8192];
	FILE *f = fopen(path, "re");
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(buf, sizeof(buf), f))
		found = strstr(buf, text) != NULL;
	fclose(f);
	return found;
}

/* a dbus-daemon and an avahi-daemon in every node, started all at once,
 * then waited for */
static int mdns_up(struct proc *p, struct perr *err)
{
	char log[PATH_MAX], conf[PATH_MAX], sock[PATH_MAX];
	double until;
	int k;

	for (uint32_t i = 0; i < p->nn; i++) {
		char *const argv[] = { "dbus-daemon", "--system", "--nofork", "--nopidfile", "--nosyslog", NULL };

		if ((p->n[i].dbus = spawn(p->n[i].holder, true, path_of(log, p->n[i].dir, "dbus.log"), NULL, argv)) < 0)
			return perr_set(err, p->n[i].dbus, "dbus-daemon: %s", strerror(-p->n[i].dbus));
	}
	until = mono() + 20;
	for (uint32_t i = 0; i < p->nn; i++) {
		/* the node's /run, seen through its holder's root */
		snprintf(sock, sizeof(sock), "/proc/%d/root/run/dbus/system_bus_socket", (int)p->n[i].holder);
		while (access(sock, F_OK) < 0) {
			if (mono() > until || reaped(p->n[i].dbus) != -EAGAIN)
				return perr_set(err, -ETIMEDOUT, "%s: dbus-daemon did not start (see %s/dbus.log)",
						p->n[i].name, p->n[i].dir);
			usleep(20000);
		}
	}
	for (uint32_t i = 0; i < p->nn; i++) {
		if ((k = avahi_conf(&p->n[i], err)) < 0)
			return k;
		path_of(conf, p->n[i].dir, "avahi-daemon.conf");
		char *const argv[] = { "avahi-daemon", "-f", conf, "--no-drop-root", "--no-chroot", "--no-rlimits",
				       "--no-proc-title", NULL };

		if ((p->n[i].avahi = spawn(p->n[i].holder, true, path_of(log, p->n[i].dir, "avahi.log"), NULL, argv)) < 0)
			return perr_set(err, p->n[i].avahi, "avahi-daemon: %s", strerror(-p->n[i].avahi));
	}
	until = mono() + 30;
	for (uint32_t i = 0; i < p->nn; i++) {
		path_of(log, p->n[i].dir, "avahi.log");
		while (!file_has(log, "Server startup complete")) {
			if (mono() > until || reaped(p->n[i].avahi) != -EAGAIN)
				return perr_set(err, -ETIMEDOUT, "%s: avahi-daemon did not start (see %s)", p->n[i].name,
						log);
			usleep(50000);
		}
	}
	return 0;
}

/* ---- releases and devices ---- */

static int make_releases(struct proc *p, struct perr *err)
{
	const struct scenario *s = p->s;
	char log[PATH_MAX], size[32], seed[32], seed2[32], change[32], v1[PATH_MAX], v2[PATH_MAX], r1[PATH_MAX],
		r2[PATH_MAX], root[PATH_MAX], rootkey[PATH_MAX], rel[PATH_MAX], kr[PATH_MAX], relpub[PATH_MAX],
		fleet[PATH_MAX];
	double c = s->changed_ppm / 1e6, per_block;
	int k;

	path_of(log, p->work, "setup.log");
	path_of(root, p->work, "root");
	path_of(rel, p->work, "rel");
	path_of(kr, p->work, "keyring");
	path_of(relpub, p->work, "rel.pub");
	path_of(rootkey, p->work, "root.key");
	if ((k = RUN(err, 0, false, log, p->shoal, "keygen", "-o", root)) < 0 ||
	    (k = RUN(err, 0, false, log, p->shoal, "keygen", "-o", rel)) < 0 ||
	    (k = RUN(err, 0, false, log, p->shoal, "keyring", "create", "--root", rootkey,
		     "--add", relpub, "--version", "1", "-o", kr)) < 0)
		return k;
	{
		uint8_t key[32];
		char hex[65];
		FILE *f = fopen("/dev/urandom", "re");

		if (!f || fread(key, 1, sizeof(key), f) != sizeof(key)) {
			if (f)
				fclose(f);
			return perr_set(err, -EIO, "/dev/urandom: cannot read");
		}
		fclose(f);
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", key[i]);
		path_of(fleet, p->work, "fleet.key");
		if ((k = write_file(fleet, err, "%s\n", hex)) < 0)
			return k;
		chmod(fleet, 0600);
	}
	/* the scenario's "changed" is a share of chunks; gen-image rewrites a
	 * share of 4 KiB blocks: a chunk stays when none of its blocks
	 * changed. A changed block also moves a cut point now and then, so
	 * a chunk is "hit" by about 1.5 times as many blocks as it holds
	 * (measured: 30% asked gave 41% without that factor) */
	per_block = c >= 1 ? 100 : 100 * (1 - pow(1 - c, 4096.0 / (1.5 * s->chunk_avg)));
	snprintf(size, sizeof(size), "%" PRIu64, s->image_size);
	snprintf(seed, sizeof(seed), "%" PRIu64, s->image_seed);
	snprintf(seed2, sizeof(seed2), "%" PRIu64, s->image_seed + 1000003);
	snprintf(change, sizeof(change), "%.4f", per_block);
	path_of(v1, p->work, "v1.img");
	path_of(v2, p->work, "v2.img");
	if (s->base_v1) {
		if ((k = RUN(err, 0, false, log, p->gen, "--seed", seed, "--size", size, "--kind", "random", "-o", v1)) < 0 ||
		    (k = RUN(err, 0, false, log, p->gen, "--from", v1, "--seed", seed2, "--change", change, "-o", v2)) < 0)
			return k;
	} else {
		/* the devices run something else: nothing to reuse */
		if ((k = RUN(err, 0, false, log, p->gen, "--seed", seed2, "--size", size, "--kind", "random", "-o", v1)) <
			    0 ||
		    (k = RUN(err, 0, false, log, p->gen, "--seed", seed, "--size", size, "--kind", "random", "-o", v2)) < 0)
			return k;
	}
	path_of(r1, p->work, "rel1");
	path_of(r2, p->work, "rel2");
	path_of(rel, p->work, "rel.key");
	if ((k = RUN(err, 0, false, log, p->shoal, "release", "create", "--image", v1, "--product", "sim", "--version",
		     (char *)s->from_version, "--counter", "1", "--key", rel, "--keyring", kr, "-o", r1)) < 0 ||
	    (k = RUN(err, 0, false, log, p->shoal, "release", "create", "--image", v2, "--product", "sim", "--version",
		     (char *)s->version, "--counter", "2", "--key", rel, "--keyring", kr, "-o", r2)) < 0)
		return k;
	p->image_size = s->image_size;
	return 0;
}

static char *node_path(char *buf, const struct pnode *n, const char *name)
{
	return path_of(buf, n->dir, name);
}

static int sysconf_write(struct proc *p, struct pnode *n, struct perr *err)
{
	char path[PATH_MAX];
	int k;

	node_path(path, n, "env");
	if ((k = write_file(path, err, "shoal_slot=A\n")) < 0)
		return k;
	node_path(path, n, "system.conf");
	return write_file(path, err,
			  "# written by shoal-sim: a device with file-backed slots and the boot simulator\n"
			  "[system]\nproduct = sim\nbootloader = file\nstate-dir = %s/state\nhooks-dir = %s/hooks\n"
			  "health-dir = %s/health\nhealth-timeout = 10s\nhook-timeout = 10s\nreboot = now\n"
			  "reboot-command = touch %s/reboot-request\ntrust = %s/root.pub\nboot-slot-file = %s/booted\n\n"
			  "[file]\nenv = %s/env\nbootlimit = 2\n\n"
			  "[slot.rootfs.0]\ndevice = %s/slot-a\nbootname = A\n\n"
			  "[slot.rootfs.1]\ndevice = %s/slot-b\nbootname = B\n",
			  n->dir, n->dir, n->dir, n->dir, p->work, n->dir, n->dir, n->dir, n->dir);
}

/* The slot the boot simulator booted last ('A' or 'B'), 0 if unknown. */
static char booted_slot(const struct pnode *n)
{
	char path[PATH_MAX], buf[64] = "";
	FILE *f;

	node_path(path, n, "booted");
	if (!(f = fopen(path, "re")))
		return 0;
	while (fgets(buf, sizeof(buf), f))
		if (!strncmp(buf, "slot=", 5)) {
			fclose(f);
			return buf[5];
		}
	fclose(f);
	return 0;
}

static int shoald_conf(struct proc *p, struct pnode *n, bool with_sysconf, struct perr *err)
{
	const struct scenario *s = p->s;
	char path[PATH_MAX];
	FILE *f;
	bool bad;

	node_path(path, n, "shoald.conf");
	if (!(f = fopen(path, "we")))
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	fprintf(f, "# written by shoal-sim\n[daemon]\nrole = %s\nname = %s\nstate_dir = %s/state\nlisten_address = %s\n"
		   "listen_port = %u\ncontrol_socket = %s/shoald.sock\nlog_level = info\n",
		n->gw ? "gateway" : "device", n->name, n->dir, n->ip, n->port, n->dir);
	if (s->rollout == SCN_ROLLOUT_CAMPAIGN && p->daemon_installs)
		fprintf(f, "report_interval = 2s\n"); /* the campaign sees each step soon */
	fputc('\n', f);
	fprintf(f, "[fleet]\nproduct = sim\nsecret_file = %s/fleet.key\ntrust = %s/root.pub\n\n", p->work, p->work);
	fprintf(f, "[discovery]\nmdns = %s\n", p->o->mdns ? "yes" : "no");
	if (!p->o->mdns && n->gw) {
		/* the gateway dials the devices (they are up before it): it
		 * reaches them at once, not at their next redial */
		for (uint32_t j = 1; j < p->nn && j <= 64; j++)
			fprintf(f, "static_peer = %s:%u\n", p->n[j].ip, p->n[j].port);
	}
	if (!p->o->mdns && !n->gw) {
		/* a ring of neighbours: each device dials up to 16 others */
		uint32_t nd = p->nn - 1, k = nd - 1 < 16 ? nd - 1 : 16;

		fprintf(f, "gateway = %s:%u\n", p->n[0].ip, p->n[0].port);
		for (uint32_t j = 1; j <= k; j++) {
			uint32_t other = (n->idx + (j + 1) / 2 * (j % 2 ? 1 : nd - 1)) % nd;

			fprintf(f, "static_peer = %s:%u\n", p->n[other + 1].ip, p->n[other + 1].port);
		}
	}
	fprintf(f, "\n[transfer]\nupload_slots = %u\nmax_connections = %u\nrequest_timeout = %" PRIu64 "ms\n"
		   "ban_time = %" PRIu64 "ms\n",
		s->upload_slots, s->max_connections + 1, s->request_timeout_ms, s->ban_ms);
	if (p->o->loopback) {
		/* no tc here: the link's rates are shoald's own token buckets */
		const struct scn_link *l = n->gw ? &s->gateway : &s->nodes[n->idx].link;

		fprintf(f, "upload_rate = %" PRIu64 "\ndownload_rate = %" PRIu64 "\n", l->up_bps, l->down_bps);
	}
	fputc('\n', f);
	if (n->gw) {
		fprintf(f, "[gateway]\nstore_dir = %s/store\n", n->dir);
		if (p->published) /* a restarted gateway seeds it again */
			fprintf(f, "import = %s/rel2\n", p->work);
	} else {
		if (with_sysconf) {
			/* shoald knows the slots from the system config: it
			 * assembles into the inactive one and reuses the active */
			fprintf(f, "[device]\nsystem_conf = %s/system.conf\n", n->dir);
		} else {
			/* the inactive slot receives the image and the active
			 * one is reused. The target stays where it was at the
			 * first start: shoald's database says what that file
			 * holds, and a target switched to the other slot after
			 * the reboot would hold version 1 under version 2's
			 * name. */
			if (!n->target)
				n->target = booted_slot(n) == 'B' ? 'a' : 'b';
			fprintf(f, "[device]\ntarget = %s/slot-%c\n", n->dir, n->target);
			if (s->base_v1)
				fprintf(f, "reuse = %s/slot-%c\n", n->dir, n->target == 'a' ? 'b' : 'a');
		}
		if (with_sysconf && s->rollout == SCN_ROLLOUT_CAMPAIGN)
			fprintf(f, "install = manual\n"); /* the gateway's campaign says when */
	}
	bad = ferror(f) != 0;
	if (fclose(f) != 0 || bad)
		return perr_set(err, -EIO, "%s: write failed", path);
	return 0;
}

/* Each device: slots, system.conf, version 1 installed and committed (the
 * boot simulator's power-on, `shoal install`, power-on, boot-check). The
 * installs run two at a time. */
static int devices_prepare(struct proc *p, struct perr *err)
{
	char path[PATH_MAX], conf[PATH_MAX], log[PATH_MAX], r1[PATH_MAX], size[32];
	pid_t busy[2] = { 0, 0 };
	uint32_t busy_node[2] = { 0, 0 };
	int k;

	path_of(r1, p->work, "rel1");
	/* slots: the image and room for growth */
	snprintf(size, sizeof(size), "%" PRIu64, p->image_size + p->image_size / 8 + (1 << 20));
	for (uint32_t i = 1; i < p->nn; i++) {
		struct pnode *n = &p->n[i];
		static const char *sub[] = { "state", "hooks", "hooks/pre-install.d", "hooks/post-install.d",
					     "hooks/commit.d", "hooks/rollback.d", "health" };

		for (size_t j = 0; j < ELEMENTSOF(sub); j++)
			if (mkdir(path_of(path, n->dir, sub[j]), 0755) < 0 && errno != EEXIST)
				return perr_set(err, -errno, "%s: %s", path, strerror(errno));
		if ((k = RUN(err, 0, false, NULL, "truncate", "-s", size, path_of(path, n->dir, "slot-a"))) < 0 ||
		    (k = RUN(err, 0, false, NULL, "truncate", "-s", size, path_of(path, n->dir, "slot-b"))) < 0 ||
		    (k = sysconf_write(p, n, err)) < 0)
			return k;
	}
	/* version 1: install, power on, boot-check; two devices at a time */
	for (uint32_t i = 1, next = 1; i < p->nn || busy[0] || busy[1];) {
		for (int b = 0; b < 2; b++) {
			if (busy[b] || next >= p->nn)
				continue;
			struct pnode *n = &p->n[next];
			char cmd[PATH_MAX * 4];

			node_path(conf, n, "system.conf");
			snprintf(cmd, sizeof(cmd),
				 "set -e; S='%s'; C='%s'; $S --system-conf $C boot-sim; "
				 "$S --system-conf $C install --reboot none '%s'; $S --system-conf $C boot-sim; "
				 "$S --system-conf $C boot-check",
				 p->shoal, conf, r1);
			char *const argv[] = { "sh", "-c", cmd, NULL };

			if ((busy[b] = spawn(0, false, node_path(log, n, "install-v1.log"), "SHOAL_NO_PROGRESS=1", argv)) < 0)
				return perr_set(err, busy[b], "fork: %s", strerror(-busy[b]));
			busy_node[b] = next++;
		}
		for (int b = 0; b < 2; b++) {
			if (!busy[b])
				continue;
			if ((k = reaped(busy[b])) == -EAGAIN)
				continue;
			busy[b] = 0;
			i++;
			if (k != 0) {
				for (int o = 0; o < 2; o++)
					kill_pid(&busy[o]);
				return perr_set(err, -EIO, "%s: installing version 1 failed (exit %d): see %s/install-v1.log",
						p->n[busy_node[b]].name, k, p->n[busy_node[b]].dir);
			}
		}
		if (interrupted) {
			for (int b = 0; b < 2; b++)
				kill_pid(&busy[b]);
			return -EINTR;
		}
		usleep(10000);
	}
	return 0;
}

/* whether this shoald installs by itself ([device] system_conf): asked of
 * `shoald --check` with the first device's configuration */
static bool probe_daemon_installs(struct proc *p)
{
	struct perr e;
	char conf[PATH_MAX];
	int r;

	if (p->nn < 2 || shoald_conf(p, &p->n[1], true, &e) < 0)
		return false;
	node_path(conf, &p->n[1], "shoald.conf");
	{
		char *const argv[] = { p->shoald, "--check", "-c", conf, NULL };

		r = run(0, false, NULL, argv);
	}
	return r == 0;
}

static int shoald_start(struct proc *p, struct pnode *n, struct perr *err)
{
	char conf[PATH_MAX], log[PATH_MAX], sock[PATH_MAX];
	char *const argv[] = { p->shoald, "-c", conf, NULL };
	int k;

	if ((k = shoald_conf(p, n, p->daemon_installs, err)) < 0)
		return k;
	node_path(conf, n, "shoald.conf");
	node_path(sock, n, "shoald.sock");
	unlink(sock);
	n->shoald = spawn(n->holder, true, node_path(log, n, "shoald.log"), n->malicious ? "SHOAL_FAULT=corrupt-chunks" : NULL,
			  argv);
	if (n->shoald < 0) {
		k = n->shoald;
		n->shoald = 0;
		return perr_set(err, k, "%s: cannot start shoald: %s", n->name, strerror(-k));
	}
	n->shoald_stopping = false;
	return 0;
}

/* ---- talking to shoald ---- */

static json_t *ctl_query(const struct pnode *n, const char *req)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 1 };
	char buf[65536];
	size_t len = 0;
	json_t *j = NULL;
	int fd;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/shoald.sock", n->dir) >= sizeof(sa.sun_path))
		return NULL;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto out;
	while (len < sizeof(buf)) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - len);

		if (r <= 0)
			goto out;
		len += (size_t)r;
		if (memchr(buf + len - r, '\n', (size_t)r))
			break;
	}
	j = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, NULL);
out:
	close(fd);
	return j;
}

static uint64_t jint(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));

	return v > 0 ? (uint64_t)v : 0;
}

/* When shoald logged that it holds version 2, in seconds after time 0, or
 * -1. The status poll sees it up to POLL_MS (and a loop of control
 * queries) late; model mode has no such delay. */
static double logged_complete_s(const struct proc *p, const struct pnode *n)
{
	char path[PATH_MAX], buf[4096];
	double t = -1, ts;
	FILE *f;

	node_path(path, n, "shoald.log");
	if (!(f = fopen(path, "re")))
		return -1;
	while (t < 0 && fgets(buf, sizeof(buf), f))
		if (strstr(buf, "): complete and verified") && sscanf(buf, "<%*d>%lf", &ts) == 1 && ts >= p->t0_real)
			t = ts - p->t0_real;
	fclose(f);
	return t;
}

static void poll_node(struct proc *p, struct pnode *n)
{
	json_t *st, *b, *rel, *f;
	size_t i;

	if (n->shoald <= 0 || n->shoald_stopping || !(st = ctl_query(n, "{\"cmd\":\"status\"}\n")))
		return;
	if ((b = json_object_get(st, "bytes"))) {
		n->local = jint(b, "local");
		n->peers = jint(b, "peers");
		n->seed = jint(b, "gateway");
		n->sent = jint(b, "sent");
	}
	if (json_is_array(json_object_get(st, "banned")))
		n->bans = (uint32_t)json_array_size(json_object_get(st, "banned"));
	if ((f = json_object_get(st, "fetch")) && json_is_object(f)) {
		n->held = jint(f, "bytes_held");
		n->total = jint(f, "bytes_total");
	}
	json_array_foreach(json_object_get(st, "releases"), i, rel) {
		const char *state = json_string_value(json_object_get(rel, "state"));

		if (jint(rel, "counter") == 2 && state && (!strcmp(state, "complete") || !strcmp(state, "seeding"))) {
			n->held = n->total = p->image_size;
			if (n->complete_s < 0 && !n->gw) {
				double logged = logged_complete_s(p, n);

				n->complete_s = logged >= 0 && logged <= now_s(p) ? logged : now_s(p);
			}
		}
	}
	json_decref(st);
}

/* The installer's view of a device: committed, rolled back, or not settled
 * yet (-EAGAIN: a trial or an install is pending). */
static int device_outcome(struct proc *p, struct pnode *n, enum scn_state *ret)
{
	char conf[PATH_MAX], out[PATH_MAX], sock[PATH_MAX], env[PATH_MAX + 32];
	json_t *j, *sys, *slot, *booted_slot_j = NULL;
	const char *booted;
	size_t i;
	int r;

	node_path(conf, n, "system.conf");
	node_path(out, n, "status.json");
	node_path(sock, n, "shoald.sock");
	snprintf(env, sizeof(env), "SHOAL_CONTROL_SOCKET=%s", sock);
	unlink(out);
	{
		char *const argv[] = { p->shoal, "--system-conf", conf, "status", "--json", NULL };
		pid_t pid = spawn(0, false, out, env, argv);

		if (pid < 0)
			return -EAGAIN;
		r = reap(pid);
	}
	(void)r;
	if (!(j = json_load_file(out, JSON_DISABLE_EOF_CHECK, NULL)))
		return -EAGAIN;
	sys = json_object_get(j, "system");
	if (!sys || json_object_get(sys, "pending") ||
	    json_is_true(json_object_get(json_object_get(sys, "bootloader_env"), "trial"))) {
		json_decref(j);
		return -EAGAIN;
	}
	booted = json_string_value(json_object_get(sys, "booted"));
	json_array_foreach(json_object_get(sys, "slots"), i, slot) {
		const char *name = json_string_value(json_object_get(slot, "bootname"));

		if (booted && name && !strcmp(name, booted))
			booted_slot_j = slot;
	}
	*ret = SCN_STATE_FAILED;
	if (booted_slot_j) {
		const char *v = json_string_value(json_object_get(booted_slot_j, "version"));
		const char *state = json_string_value(json_object_get(booted_slot_j, "state"));

		snprintf(n->release, sizeof(n->release), "%s", v ? v : "");
		if (jint(booted_slot_j, "counter") == 2 && state && !strcmp(state, "good"))
			*ret = SCN_STATE_COMMITTED;
	}
	/* still on version 2's slot and not committed: the rollback's reboot
	 * is due (shoald asks for it right after the failed check) */
	if (*ret != SCN_STATE_COMMITTED && booted_slot_j && jint(booted_slot_j, "counter") == 2) {
		json_decref(j);
		return -EAGAIN;
	}
	if (*ret != SCN_STATE_COMMITTED)
		json_array_foreach(json_object_get(sys, "slots"), i, slot) {
			const char *state = json_string_value(json_object_get(slot, "state"));

			if (jint(slot, "counter") == 2 && state && !strcmp(state, "bad"))
				*ret = SCN_STATE_ROLLED_BACK;
		}
	json_decref(j);
	return 0;
}

/* ---- a device's life ---- */

static bool reboot_requested(const struct pnode *n, bool consume)
{
	char path[PATH_MAX];

	node_path(path, n, "reboot-request");
	if (access(path, F_OK) < 0)
		return false;
	if (consume)
		unlink(path);
	return true;
}

static void shoald_stop(struct proc *p, struct pnode *n)
{
	if (n->shoald <= 0 || n->shoald_stopping)
		return;
	kill(n->shoald, SIGTERM);
	n->shoald_stopping = true;
	n->stop_sent = now_s(p);
}

static int job_start(struct proc *p, struct pnode *n, const char *verb, const char *arg)
{
	char conf[PATH_MAX], log[PATH_MAX];
	char *const argv[] = { p->shoal, "--system-conf", conf, (char *)verb, arg ? "--reboot" : NULL,
			       (char *)(arg ? "now" : NULL), (char *)arg, NULL };

	node_path(conf, n, "system.conf");
	node_path(log, n, "installer.log");
	n->job = spawn(0, false, log, "SHOAL_NO_PROGRESS=1", argv);
	if (n->job < 0) {
		n->job = 0;
		return -EIO;
	}
	return 0;
}

static void power_on(struct proc *p, struct pnode *n)
{
	n->reboots++;
	n->ph = PH_BOOTSIM;
	if (job_start(p, n, "boot-sim", NULL) < 0)
		say(p, "%s: cannot run the boot simulator", n->name);
}

static void device_fail(struct proc *p, struct pnode *n, const char *why)
{
	say(p, "%s: %s; it ends failed", n->name, why);
	n->final = SCN_STATE_FAILED;
	n->settled_s = now_s(p);
	n->ph = PH_SETTLED;
}

/* The node's job: -EAGAIN while it runs, else its exit code; a code that
 * is not in ok (bit per code) fails the device with `what` named. */
static int job_done(struct proc *p, struct pnode *n, unsigned ok, const char *what)
{
	char why[128];
	int k = reaped(n->job);

	if (k == -EAGAIN)
		return k;
	n->job = 0;
	if (k < 32 && (ok & (1u << k)))
		return k;
	snprintf(why, sizeof(why), "%s failed (exit %d; see installer.log)", what, k);
	device_fail(p, n, why);
	return -EIO;
}

static void device_step(struct proc *p, struct pnode *n)
{
	double t = now_s(p);
	char rel2[PATH_MAX], mark[PATH_MAX];
	int k;

	/* shoald, told to stop, has stopped (or is made to) */
	if (n->shoald > 0 && (k = reaped(n->shoald)) != -EAGAIN) {
		if (!n->shoald_stopping)
			say(p, "%s: shoald ended by itself (exit %d) at %.1f s", n->name, k, t);
		n->shoald = 0;
	} else if (n->shoald > 0 && n->shoald_stopping && t - n->stop_sent > STOP_GRACE_S) {
		kill(n->shoald, SIGKILL);
	}
	switch (n->ph) {
	case PH_RUN:
		if (n->shoald <= 0 && !n->restart_due) { /* it crashed: a supervisor starts it again */
			struct perr err = { "" };

			if (shoald_start(p, n, &err) < 0)
				say(p, "%s", err.msg);
		}
		if (n->shoald <= 0)
			break;
		if (reboot_requested(n, true)) { /* shoald installed (or rolled back) and reboots */
			n->installed = true;
			if (n->fault && n->fault->kind == SCN_FAULT_POWER_CUT_INSTALL && !n->fault_fired)
				n->cut_at = -1;
			shoald_stop(p, n);
			n->ph = PH_STOP;
			break;
		}
		if (n->complete_s >= 0 && !n->installed && !p->daemon_installs) {
			path_of(rel2, p->work, "rel2");
			if (job_start(p, n, "install", rel2) < 0) {
				device_fail(p, n, "cannot run shoal install");
				break;
			}
			n->ph = PH_INSTALL;
			if (n->fault && n->fault->kind == SCN_FAULT_POWER_CUT_INSTALL && !n->fault_fired)
				n->cut_at = t + fmin(n->fault->at_ms / 1000.0, POWER_CUT_MAX_S);
			break;
		}
		if (p->daemon_installs && n->fault && n->fault->kind == SCN_FAULT_POWER_CUT_INSTALL && !n->fault_fired &&
		    n->cut_at < 0 && access(node_path(mark, n, "install-running"), F_OK) == 0)
			n->cut_at = t + fmin(n->fault->at_ms / 1000.0, POWER_CUT_MAX_S);
		if (n->booted_new) {
			enum scn_state st;

			if (device_outcome(p, n, &st) == 0) {
				n->final = st;
				n->settled_s = t;
				n->ph = PH_SETTLED;
				say(p, "%s: %s at %.1f s (runs %s)", n->name, scn_state_name(st), t,
				    n->release[0] ? n->release : "?");
			}
		}
		break;
	case PH_INSTALL:
		if (job_done(p, n, 1u << 0, "shoal install") < 0)
			break;
		n->installed = true;
		if (!reboot_requested(n, true)) {
			device_fail(p, n, "shoal install did not ask for its reboot");
			break;
		}
		shoald_stop(p, n);
		n->ph = PH_STOP;
		break;
	case PH_STOP:
		if (n->shoald > 0)
			break;
		power_on(p, n);
		break;
	case PH_BOOTSIM:
		if (job_done(p, n, 1u << 0, "the boot simulator") < 0)
			break;
		/* after a power cut during its install, shoald itself finds
		 * the install cut short and starts it again from the slot
		 * (device.c, retry_interrupted) */
		if (!p->daemon_installs) {
			n->ph = PH_BOOTCHK;
			if (job_start(p, n, "boot-check", NULL) < 0)
				device_fail(p, n, "cannot run shoal boot-check");
			break;
		}
		goto start;
	case PH_BOOTCHK: /* exit 5: rolled back, which reboots */
		if (job_done(p, n, 1u << 0 | 1u << 5, "shoal boot-check") < 0)
			break;
		if (reboot_requested(n, true)) {
			if (n->reboots > 6) {
				device_fail(p, n, "reboots over and over");
				break;
			}
			power_on(p, n);
			break;
		}
	start: {
		struct perr err = { "" };

		if (shoald_start(p, n, &err) < 0) {
			device_fail(p, n, err.msg);
			break;
		}
		n->booted_new = n->installed;
		n->ph = PH_RUN;
		break;
	}
	case PH_OFF:
		if (t < n->t_due)
			break;
		say(p, "%s: power is back at %.1f s", n->name, t);
		n->installed = false;
		power_on(p, n);
		break;
	case PH_SETTLED:
		if (n->shoald <= 0 && !n->restart_due && n->final != SCN_STATE_FAILED) {
			struct perr err = { "" };

			if (shoald_start(p, n, &err) < 0)
				say(p, "%s", err.msg);
		}
		break;
	}
	/* an armed power cut */
	if (n->cut_at >= 0 && t >= n->cut_at && (n->ph == PH_INSTALL || n->ph == PH_RUN)) {
		say(p, "%s: power cut %.2f s into the install (at %.1f s); off for %.1f s", n->name,
		    t - (n->cut_at - fmin(n->fault->at_ms / 1000.0, POWER_CUT_MAX_S)), t, n->fault->duration_ms / 1000.0);
		n->fault_fired = true;
		n->cut_at = -1;
		if (n->job > 0)
			kill(-n->job, SIGKILL); /* `shoal install` and what it runs */
		kill_pid(&n->job);
		if (n->shoald > 0) {
			kill(-n->shoald, SIGKILL);
			reap(n->shoald);
			n->shoald = 0;
		}
		reboot_requested(n, true);
		{
			char path[PATH_MAX];
			struct perr e;
			FILE *f = fopen(node_path(path, n, "install-running"), "re");
			int hook = 0;

			/* the hook (a process group of its own, as the installer
			 * runs hooks) dies with the power too */
			if (f && fscanf(f, "%d", &hook) == 1 && hook > 1)
				kill(-hook, SIGKILL);
			if (f)
				fclose(f);
			unlink(path);
			write_file(node_path(path, n, "power-cut-done"), &e, "%.3f\n", t);
		}
		n->ph = PH_OFF;
		n->t_due = t + n->fault->duration_ms / 1000.0;
	}
}

/* ---- faults ---- */

static void link_set(struct proc *p, const struct pnode *n, bool up)
{
	char veth[16];
	char *const argv[] = { "ip", "link", "set", veth, up ? "up" : "down", NULL };
	char log[PATH_MAX];

	snprintf(veth, sizeof(veth), "vh%u", (uint32_t)(n - p->n));
	run(p->bridge, false, path_of(log, p->work, "ip.log"), argv);
}

static void faults_step(struct proc *p)
{
	double t = now_s(p);

	for (uint32_t i = 0; i < p->nn; i++) {
		struct pnode *n = &p->n[i];
		const struct scn_fault *f = n->fault;
		double at, end;

		/* a killed daemon comes back */
		if (n->restart_due && t >= n->t_due) {
			struct perr err = { "" };

			n->restart_due = false;
			if (n->ph == PH_RUN || n->ph == PH_INSTALL || n->ph == PH_SETTLED || n->gw) {
				say(p, "%s: shoald starts again at %.1f s", n->name, t);
				if (shoald_start(p, n, &err) < 0)
					say(p, "%s", err.msg);
			}
		}
		if (!f || f->kind == SCN_FAULT_HEALTH_FAIL || f->kind == SCN_FAULT_POWER_CUT_INSTALL)
			continue;
		at = f->at_ms / 1000.0;
		end = at + f->duration_ms / 1000.0;
		if (!n->fault_fired && t >= at) {
			n->fault_fired = true;
			switch (f->kind) {
			case SCN_FAULT_KILL:
			case SCN_FAULT_GATEWAY_DOWN:
			case SCN_FAULT_MALICIOUS:
				if (n->shoald > 0 && !n->shoald_stopping) {
					kill(n->shoald, SIGKILL);
					reap(n->shoald);
					n->shoald = 0;
				}
				if (f->kind == SCN_FAULT_MALICIOUS) {
					n->malicious = true;
					n->t_due = t;
				} else {
					n->t_due = end;
				}
				n->restart_due = f->kind != SCN_FAULT_GATEWAY_DOWN || f->duration_ms > 0;
				say(p, "%s: %s at %.1f s%s", n->name,
				    f->kind == SCN_FAULT_MALICIOUS ? "turns malicious (SHOAL_FAULT=corrupt-chunks)"
								   : "shoald killed (-9)",
				    t, n->restart_due && f->kind != SCN_FAULT_MALICIOUS ? "" : "");
				break;
			case SCN_FAULT_LINK_CUT:
				if (p->o->loopback) {
					n->fault_ended = true;
					say(p, "%s: link cut due at %.1f s NOT applied (loopback mode)", n->name, t);
					break;
				}
				say(p, "%s: link cut at %.1f s for %.1f s", n->name, t, f->duration_ms / 1000.0);
				link_set(p, n, false);
				break;
			case SCN_FAULT_POWER_CUT_INSTALL: /* armed by the install */
			case SCN_FAULT_HEALTH_FAIL:       /* a health check made at the start */
				break;
			}
		}
		if (n->fault_fired && !n->fault_ended && f->kind == SCN_FAULT_LINK_CUT && t >= end) {
			n->fault_ended = true;
			say(p, "%s: link back at %.1f s", n->name, t);
			link_set(p, n, true);
		}
	}
}

/* ---- the run ---- */

static void teardown(struct proc *p)
{
	if (!p->n)
		goto bridge;
	/* shoald and jobs first, then the daemons they talk to, then holders */
	for (uint32_t i = 0; i < p->nn; i++) {
		kill_pid(&p->n[i].job);
		if (p->n[i].shoald > 0)
			kill(p->n[i].shoald, SIGTERM);
		if (p->n[i].shoald > 0 && p->n[i].frozen)
			kill(p->n[i].shoald, SIGCONT);
	}
	for (uint32_t i = 0; i < p->nn; i++)
		end_pid(&p->n[i].shoald);
	for (uint32_t i = 0; i < p->nn; i++) {
		end_pid(&p->n[i].avahi);
		end_pid(&p->n[i].dbus);
		kill_pid(&p->n[i].holder);
	}
bridge:
	kill_pid(&p->bridge);
	if (p->work[0] && p->work_is_tmp) {
		char *const argv[] = { "rm", "-rf", "--one-file-system", p->work, NULL };

		run(0, false, NULL, argv);
	}
}

static bool all_settled(const struct proc *p)
{
	for (uint32_t i = 1; i < p->nn; i++)
		if (p->n[i].ph != PH_SETTLED)
			return false;
	return true;
}

static void live_and_trace(struct proc *p, struct sim_live *live, struct sim_live_node *ln, struct sim_trace *tr)
{
	double t = now_s(p);
	uint64_t rx = 0, peer_sent = 0;

	for (uint32_t i = 1; i < p->nn; i++) {
		struct pnode *n = &p->n[i];
		double frac = n->total ? (double)n->held / (double)n->total : 0;

		if (n->complete_s >= 0)
			frac = 1;
		rx += n->peers + n->seed;
		peer_sent += n->sent;
		ln[i - 1].name = n->name;
		ln[i - 1].fraction = frac;
		ln[i - 1].state = n->ph == PH_SETTLED ? scn_state_name(n->final)
			      : n->ph == PH_RUN && n->complete_s >= 0 && !n->installed ? "complete"
			      : n->shoald <= 0 && n->ph == PH_RUN ? "down"
								  : phase_name[n->ph];
		sim_trace_add(tr, i - 1, t, frac);
	}
	if (t - p->last_rx_t >= 1) {
		p->rate = (double)(rx - p->last_rx) / (t - p->last_rx_t);
		p->last_rx = rx;
		p->last_rx_t = t;
	}
	if (live) {
		struct sim_live_state st = { .t_s = t, .swarm_rate_bps = p->rate, .seed_bytes = p->n[0].sent,
					     .peer_bytes = peer_sent, .n_nodes = p->nn - 1, .nodes = ln };

		sim_live_update(live, &st, false);
	}
}

/* Whether the gateway lists a device called name among those that
 * reported to it (a campaign targets those). */
static bool gateway_knows(struct proc *p, const char *name)
{
	json_t *r = ctl_query(&p->n[0], "{\"cmd\":\"devices\"}\n"), *x;
	bool found = false;
	size_t j;

	json_array_foreach(r ? json_object_get(r, "devices") : NULL, j, x)
		found |= !strcmp(json_string_value(json_object_get(x, "name")) ?: "", name);
	json_decref(r);
	return found;
}

/* Waits until every device not held is connected to the gateway (and,
 * with a campaign, has reported to it), 20 s at most per device. */
static void gateway_wait(struct proc *p)
{
	for (uint32_t i = 1; i < p->nn; i++) {
		double until = mono() + 20;

		if (p->n[i].frozen)
			continue;
		for (;;) {
			json_t *pe = ctl_query(&p->n[i], "{\"cmd\":\"peers\"}\n"), *x;
			bool gw = false;
			size_t j;

			json_array_foreach(pe ? json_object_get(pe, "peers") : NULL, j, x)
				gw |= !strcmp(json_string_value(json_object_get(x, "role")) ?: "", "gateway");
			json_decref(pe);
			if (gw && p->s->rollout == SCN_ROLLOUT_CAMPAIGN)
				gw = gateway_knows(p, p->n[i].name);
			if (gw || interrupted)
				break;
			if (mono() > until) {
				say(p, "NOTE: %s is not connected to the gateway (or has not reported to it) after 20 s; "
				       "going on",
				    p->n[i].name);
				break;
			}
			usleep(100000);
		}
	}
}

static int setup(struct proc *p, struct perr *err)
{
	const struct scenario *s = p->s;
	int k;

	if (p->o->keep && strlen(p->o->keep) > 512)
		return perr_set(err, -ENAMETOOLONG, "--keep: path longer than 512 bytes");
	if (p->o->keep) {
		char abs[PATH_MAX];

		snprintf(p->work, sizeof(p->work), "%s", p->o->keep);
		if ((k = sim_output_dir(p->work, err)) < 0)
			return k;
		/* every configuration names it; shoald and the gateway's import want it absolute */
		if (!realpath(p->work, abs))
			return perr_set(err, -errno, "%s: %s", p->work, strerror(errno));
		if (strlen(abs) > 512)
			return perr_set(err, -ENAMETOOLONG, "--keep: %s is longer than 512 bytes", abs);
		snprintf(p->work, sizeof(p->work), "%s", abs);
	} else {
		snprintf(p->work, sizeof(p->work), "/tmp/shoal-sim.XXXXXX");
		if (!mkdtemp(p->work)) {
			p->work[0] = '\0';
			return perr_set(err, -errno, "mkdtemp: %s", strerror(errno));
		}
		p->work_is_tmp = true;
	}
	if (!(p->n = calloc(s->n_devices + 1, sizeof(*p->n))))
		return perr_set(err, -ENOMEM, "out of memory");
	p->nn = s->n_devices + 1;
	for (uint32_t i = 0; i < p->nn; i++) {
		struct pnode *n = &p->n[i];

		n->gw = i == 0;
		n->idx = i ? i - 1 : 0;
		snprintf(n->name, sizeof(n->name), "%s", i ? s->nodes[i - 1].name : "gateway");
		path_of(n->dir, p->work, n->name);
		if (p->o->loopback) {
			snprintf(n->ip, sizeof(n->ip), "127.0.0.1");
		} else {
			node_ip(n->ip, i);
			n->port = PORT;
		}
		n->complete_s = n->settled_s = n->cut_at = -1;
		n->final = SCN_STATE_FAILED;
		if (mkdir(n->dir, 0755) < 0 && errno != EEXIST)
			return perr_set(err, -errno, "%s: %s", n->dir, strerror(errno));
	}
	for (uint32_t f = 0; f < s->n_faults; f++) {
		const struct scn_fault *fa = &s->faults[f];
		struct pnode *n = fa->node == SCN_GATEWAY ? &p->n[0] : &p->n[fa->node + 1];

		n->fault = fa;
		if (fa->kind == SCN_FAULT_MALICIOUS && fa->at_ms == 0) {
			n->malicious = true;
			n->fault_fired = true;
		}
	}
	if (p->o->loopback) {
		if ((k = ports_pick(p, err)) < 0)
			return k;
	} else {
		p->netem = probe_qdisc("netem delay 1ms");
		if (!probe_qdisc("tbf rate 1mbit burst 16kb latency 50ms"))
			return perr_set(err, -EOPNOTSUPP, "this kernel has no tbf qdisc: links cannot be shaped");
	}
	if (!p->netem) {
		bool wants = s->gateway.latency_us || s->gateway.loss_ppm;

		for (uint32_t i = 0; i < s->n_devices; i++)
			wants |= s->nodes[i].link.latency_us || s->nodes[i].link.loss_ppm;
		if (wants && p->o->loopback)
			say(p, "NOTE: loopback mode: the scenario's latency and loss are NOT applied (rates are, as "
			       "shoald's own upload_rate and download_rate); model mode covers latency and loss");
		else if (wants)
			say(p, "NOTE: this kernel has no netem: the scenario's latency and loss are NOT applied "
			       "in process mode (rates are, with tbf); model mode covers latency and loss");
	}
	if (p->o->loopback)
		for (uint32_t i = 0; i < s->n_faults; i++)
			if (s->faults[i].kind == SCN_FAULT_LINK_CUT)
				say(p, "NOTE: loopback mode: fault '%s' (link-cut) is NOT applied: a link can only be cut "
				       "between namespaces; the node keeps its connections",
				    s->faults[i].name);
	say(p, "work directory %s%s", p->work, p->work_is_tmp ? " (removed at the end; --keep DIR keeps one)" : "");
	say(p, "making version 1 and version 2 (%" PRIu64 " MiB)", s->image_size >> 20);
	if ((k = make_releases(p, err)) < 0)
		return k;
	say(p, "installing version 1 on %u devices", s->n_devices);
	if ((k = devices_prepare(p, err)) < 0)
		return k;
	for (uint32_t i = 0; i < s->n_faults; i++)
		if (s->faults[i].kind == SCN_FAULT_POWER_CUT_INSTALL) {
			/* a hook that holds the first install for a moment and
			 * says so: the power cut falls inside it, however fast
			 * the rest of the install is */
			char path[PATH_MAX];
			struct pnode *n = &p->n[s->faults[i].node + 1];

			node_path(path, n, "hooks/post-install.d/50-sim-power-cut");
			if ((k = write_file(path, err,
					    "#!/bin/sh\n# shoal-sim: fault '%s' cuts the power while this runs\n"
					    "[ -e '%s/power-cut-done' ] && exit 0\necho $$ >'%s/install-running'\nsleep 3\n",
					    s->faults[i].name, n->dir, n->dir)) < 0)
				return k;
			chmod(path, 0755);
		}
	for (uint32_t i = 0; i < s->n_faults; i++)
		if (s->faults[i].kind == SCN_FAULT_HEALTH_FAIL) {
			char path[PATH_MAX];
			struct pnode *n = &p->n[s->faults[i].node + 1];

			node_path(path, n, "health/50-sim-fail");
			if ((k = write_file(path, err, "#!/bin/sh\necho 'shoal-sim: health-fail fault (%s)'\nexit 1\n",
					    s->faults[i].name)) < 0)
				return k;
			chmod(path, 0755);
		}
	p->daemon_installs = probe_daemon_installs(p);
	if (!p->daemon_installs && s->rollout == SCN_ROLLOUT_CAMPAIGN)
		return perr_set(err, -EOPNOTSUPP, "rollout = campaign needs a shoald that installs by itself "
						  "([device] system_conf and install = manual); %s has not", p->shoald);
	if (!p->daemon_installs)
		say(p, "NOTE: this shoald does not install by itself yet ([device] system_conf): the simulator "
		       "runs `shoal install` when a device holds the image, and `shoal boot-check` after each boot");
	if (s->rollout == SCN_ROLLOUT_CAMPAIGN)
		say(p, "rollout = campaign: the devices install when the gateway's campaign says so "
		       "([device] install = manual); canaries: %u, then the rest",
		    s->n_canaries ? s->n_canaries : 1);
	if (p->o->loopback) {
		say(p, "loopback mode: %u shoald on 127.0.0.1, each on a port of its own (the gateway on %u), "
		       "static discovery, the links' rates as shoald's own rate limits; no namespaces, no tc",
		    p->nn, p->n[0].port);
	} else {
		say(p, "building the LAN: %u namespaces on a bridge, tbf on both ends of every link", p->nn);
		if ((k = lan_up(p, err)) < 0)
			return k;
	}
	if (p->o->mdns) {
		say(p, "starting a dbus-daemon and an avahi-daemon in every node");
		if ((k = mdns_up(p, err)) < 0)
			return k;
	}
	say(p, "starting %u devices on version %s", s->n_devices, s->from_version);
	for (uint32_t i = 1; i < p->nn; i++)
		if ((k = shoald_start(p, &p->n[i], err)) < 0)
			return k;
	for (uint32_t i = 1; i < p->nn; i++) {
		char sock[PATH_MAX];
		double until = mono() + 20;

		node_path(sock, &p->n[i], "shoald.sock");
		while (access(sock, F_OK) < 0) {
			if (mono() > until || reaped(p->n[i].shoald) != -EAGAIN)
				return perr_set(err, -EIO, "%s: shoald did not start (see %s/shoald.log)", p->n[i].name,
						p->n[i].dir);
			if (interrupted)
				return -EINTR;
			usleep(20000);
		}
	}
	/* the devices find each other before the gateway has anything to say */
	{
		uint32_t want = p->nn - 2 < 16 ? p->nn - 2 : 16;
		double until = mono() + 20;

		for (uint32_t i = 1; i < p->nn; i++) {
			for (;;) {
				json_t *st = ctl_query(&p->n[i], "{\"cmd\":\"status\"}\n");
				uint64_t peers = st ? jint(st, "peer_count") : 0;

				json_decref(st);
				if (peers >= want || interrupted)
					break;
				if (mono() > until) {
					say(p, "NOTE: %s sees %" PRIu64 " of the other %u devices after 20 s; going on", p->n[i].name,
					    peers, want);
					break;
				}
				usleep(100000);
			}
		}
	}
	/* the gateway starts with nothing to offer; every device connects
	 * to it before version 2 is published (time 0): the measurement is
	 * the swarm's, not how fast daemons dial. A campaign's canaries are
	 * the devices the gateway saw first: the others are held (SIGSTOP)
	 * until it has seen the scenario's canaries, and a second more, as
	 * it counts first sightings in seconds. */
	if (s->rollout == SCN_ROLLOUT_CAMPAIGN && s->n_canaries)
		for (uint32_t i = 1; i < p->nn; i++)
			if (!s->nodes[p->n[i].idx].canary && kill(p->n[i].shoald, SIGSTOP) == 0)
				p->n[i].frozen = true;
	say(p, "starting the gateway");
	if ((k = shoald_start(p, &p->n[0], err)) < 0)
		return k;
	gateway_wait(p);
	if (s->rollout == SCN_ROLLOUT_CAMPAIGN && s->n_canaries) {
		double until = mono() + 1.1;

		while (mono() < until && !interrupted)
			usleep(20000);
		for (uint32_t i = 1; i < p->nn; i++)
			if (p->n[i].frozen) {
				kill(p->n[i].shoald, SIGCONT);
				p->n[i].frozen = false;
			}
		gateway_wait(p);
	}
	return 0;
}

/* Time 0: `shoal publish` on the gateway's control socket. */
static int publish_v2(struct proc *p, struct perr *err)
{
	char req[PATH_MAX + 64];
	json_t *r;
	bool ok;

	snprintf(req, sizeof(req), "{\"cmd\":\"import\",\"path\":\"%s/rel2\"}\n", p->work);
	r = ctl_query(&p->n[0], req);
	ok = r && json_is_true(json_object_get(r, "ok"));
	if (!ok) {
		int k = perr_set(err, -EIO, "the gateway did not publish version 2: %s",
				 r ? json_string_value(json_object_get(r, "error")) ?: "?" : "no answer");

		json_decref(r);
		return k;
	}
	json_decref(r);
	p->published = true;
	return 0;
}

/* rollout = campaign, at time 0: the gateway's campaign for version 2
 * over every device (`shoal campaign create` over its control socket):
 * the scenario's canaries first (they are the devices it saw first), the
 * rest once they all committed; max_installing at once; the first failure
 * pauses it, as model mode has it. */
static int campaign_start(struct proc *p, struct perr *err)
{
	const struct scenario *s = p->s;
	json_t *req = json_pack("{s:s, s:s, s:s, s:i, s:i}", "cmd", "campaign-create", "name", "shoal-sim", "release",
				s->version, "max_parallel", (int)(s->max_installing ? s->max_installing : s->n_devices),
				"failure_threshold", 1), *r;
	char *line;
	int k = 0;

	if (req && s->n_canaries)
		json_object_set_new(req, "canary_count", json_integer(s->n_canaries));
	line = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!line)
		return perr_set(err, -ENOMEM, "out of memory");
	{
		size_t len = strlen(line);
		char *nl = realloc(line, len + 2);

		if (!nl) {
			free(line);
			return perr_set(err, -ENOMEM, "out of memory");
		}
		line = nl;
		memcpy(line + len, "\n", 2);
	}
	r = ctl_query(&p->n[0], line);
	free(line);
	if (!r || !json_is_true(json_object_get(r, "ok")))
		k = perr_set(err, -EIO, "the gateway did not create the campaign: %s",
			     r ? json_string_value(json_object_get(r, "error")) ?: "?" : "no answer");
	else
		p->campaign_id = (uint64_t)json_integer_value(json_object_get(json_object_get(r, "campaign"), "id"));
	json_decref(r);
	if (k == 0)
		say(p, "the gateway runs campaign %" PRIu64 " for version %s (canaries: %u, at most %u at once, "
		       "the first failure pauses it)",
		    p->campaign_id, s->version, s->n_canaries ? s->n_canaries : 1,
		    s->max_installing ? s->max_installing : s->n_devices);
	return k;
}

/* The campaign as the gateway sees it (`shoal campaign show`), once a
 * second. Once it is paused, aborted or done, a device it never asked
 * to install will not move: it ends failed, on version 1. */
static void campaign_poll(struct proc *p)
{
	char req[96];
	json_t *r, *c, *t;
	const char *st, *reason;
	size_t i;

	if (!p->campaign_id || mono() - p->campaign_polled < 1 || p->n[0].shoald <= 0)
		return;
	p->campaign_polled = mono();
	snprintf(req, sizeof(req), "{\"cmd\":\"campaign\",\"id\":%" PRIu64 "}\n", p->campaign_id);
	if (!(r = ctl_query(&p->n[0], req)))
		return;
	c = json_object_get(r, "campaign");
	if (!(st = json_string_value(json_object_get(c, "state")))) {
		json_decref(r);
		return;
	}
	reason = json_string_value(json_object_get(c, "reason")) ?: "";
	if (strcmp(st, p->campaign_state))
		say(p, "campaign %" PRIu64 " is %s at %.1f s%s%s%s", p->campaign_id, st, now_s(p), reason[0] ? " (" : "",
		    reason, reason[0] ? ")" : "");
	snprintf(p->campaign_state, sizeof(p->campaign_state), "%s", st);
	snprintf(p->campaign_reason, sizeof(p->campaign_reason), "%s", reason);
	p->campaign_failures = (uint32_t)json_integer_value(json_object_get(c, "failures"));
	json_array_foreach(json_object_get(c, "targets"), i, t) {
		const char *name = json_string_value(json_object_get(t, "name")) ?: "";

		for (uint32_t j = 1; j < p->nn; j++) {
			struct pnode *n = &p->n[j];

			if (strcmp(n->name, name))
				continue;
			snprintf(n->cphase, sizeof(n->cphase), "%s", json_string_value(json_object_get(t, "phase")) ?: "");
			snprintf(n->ctarget, sizeof(n->ctarget), "%s", json_string_value(json_object_get(t, "state")) ?: "");
			if (strcmp(st, "running") && n->ph != PH_SETTLED && !n->installed &&
			    (!strcmp(n->ctarget, "pending") || !strcmp(n->ctarget, "cancelled"))) {
				char why[200];

				snprintf(why, sizeof(why), "the campaign is %s and never asked it to install", st);
				device_fail(p, n, why);
				n->release[0] = '\0';
			}
		}
	}
	json_decref(r);
}

static void results_fill(struct proc *p, struct sim_results *r)
{
	const struct scenario *s = p->s;
	uint64_t fetch_max = 0;

	r->scenario = s->path;
	r->mode = "process";
	r->seed = p->o->seed_set ? p->o->seed : s->seed;
	r->nodes = s->n_devices;
	r->image_bytes = p->image_size;
	r->seed_bytes_sent = p->n[0].sent;
	r->time_all_complete_s = 0;
	r->time_all_committed_s = 0;
	for (uint32_t i = 1; i < p->nn; i++) {
		struct pnode *n = &p->n[i];
		struct sim_node_result *nr = &r->node[i - 1];

		snprintf(nr->name, sizeof(nr->name), "%s", n->name);
		nr->final_state = n->final;
		snprintf(nr->release, sizeof(nr->release), "%s", n->release[0] ? n->release : s->from_version);
		nr->bytes_from_seed = n->seed;
		nr->bytes_from_peers = n->peers;
		nr->bytes_reused = n->local;
		nr->bytes_sent = n->sent;
		nr->banned_peers = n->bans;
		snprintf(nr->campaign_phase, sizeof(nr->campaign_phase), "%s", n->cphase);
		snprintf(nr->campaign_target, sizeof(nr->campaign_target), "%s", n->ctarget);
		nr->complete_s = n->complete_s;
		nr->committed_s = n->final != SCN_STATE_FAILED ? n->settled_s : -1;
		nr->expect_set = s->nodes[i - 1].has_expect;
		nr->expect = s->nodes[i - 1].expect;
		r->peer_bytes_sent += n->sent;
		r->local_bytes_reused += n->local;
		if (n->local < p->image_size && p->image_size - n->local > fetch_max)
			fetch_max = p->image_size - n->local;
		if (r->time_all_complete_s >= 0)
			r->time_all_complete_s = n->complete_s < 0 ? -1 : fmax(r->time_all_complete_s, n->complete_s);
		if (r->time_all_committed_s >= 0)
			r->time_all_committed_s = nr->committed_s < 0 ? -1 : fmax(r->time_all_committed_s, nr->committed_s);
	}
	/* the bound for what the devices really lacked (the estimate when none reports) */
	if (s->rollout == SCN_ROLLOUT_CAMPAIGN) {
		snprintf(r->campaign_state, sizeof(r->campaign_state), "%s", p->campaign_state[0] ? p->campaign_state : "?");
		snprintf(r->campaign_reason, sizeof(r->campaign_reason), "%s", p->campaign_reason);
		r->campaign_failures = p->campaign_failures;
	}
	r->fetch_bytes = fetch_max ? fetch_max : scenario_fetch_bytes(s);
	r->kumar_ross_bound_s = scenario_kumar_ross_s(s, r->fetch_bytes);
	r->end_s = now_s(p);
	r->wall_s = mono() - p->wall0;
}

int proc_run(const struct scenario *s, const struct proc_opts *o, struct sim_results *ret,
	     struct sim_trace **ret_trace, struct perr *err)
{
	struct proc p = { .s = s, .o = o };
	struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term, old_hup;
	_cleanup_(sim_trace_freep) struct sim_trace *tr = NULL;
	struct sim_live *live = NULL;
	struct sim_live_node *ln = NULL;
	double limit = o->time_limit_s > 0 ? o->time_limit_s : s->time_limit_ms / 1000.0;
	int k;

	memset(ret, 0, sizeof(*ret));
	if ((k = proc_usable(o->loopback, err)) < 0)
		return k;
	p.wall0 = mono();
	interrupted = 0;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	snprintf(p.v2_version, sizeof(p.v2_version), "%s", s->version);
	find_tool(p.shoald, "SHOALD", "../daemon/shoald", "shoald");
	find_tool(p.shoal, "SHOAL", "../cli/shoal", "shoal");
	find_tool(p.gen, "SHOAL_GEN_IMAGE", "../tests/gen-image", "shoal-gen-image");
	if ((k = sim_trace_new(s->n_devices, &tr)) < 0 || !(ln = calloc(s->n_devices, sizeof(*ln)))) {
		k = perr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if ((k = setup(&p, err)) < 0)
		goto out;
	if (interrupted) {
		k = -EINTR;
		goto out;
	}
	/* time 0: the gateway publishes version 2 */
	p.t0 = mono();
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		p.t0_real = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	}
	say(&p, "the gateway publishes version %s (%s discovery)", s->version, o->mdns ? "mDNS" : "static");
	if ((k = publish_v2(&p, err)) < 0)
		goto out;
	if (s->rollout == SCN_ROLLOUT_CAMPAIGN && (k = campaign_start(&p, err)) < 0)
		goto out;
	if (o->live)
		sim_live_new(o->live, &live);
	while (!interrupted && !all_settled(&p) && now_s(&p) < limit) {
		double next = mono() + POLL_MS / 1000.0;

		if (p.n[0].shoald > 0 && reaped(p.n[0].shoald) != -EAGAIN) {
			say(&p, "gateway: shoald ended at %.1f s", now_s(&p));
			p.n[0].shoald = 0;
		}
		faults_step(&p);
		for (uint32_t i = 0; i < p.nn; i++) {
			poll_node(&p, &p.n[i]);
			if (i)
				device_step(&p, &p.n[i]);
		}
		campaign_poll(&p);
		live_and_trace(&p, live, ln, tr);
		/* faults are due to the scenario's millisecond, not the next poll */
		while (!interrupted && mono() < next) {
			usleep(20000);
			faults_step(&p);
		}
	}
	live_and_trace(&p, live, ln, tr);
	if (live) {
		struct sim_live_state st = { .t_s = now_s(&p), .seed_bytes = p.n[0].sent, .n_nodes = p.nn - 1, .nodes = ln };

		sim_live_update(live, &st, true);
		sim_live_free(live);
		live = NULL;
	}
	if (interrupted) {
		k = -EINTR;
		goto out;
	}
	if (!all_settled(&p))
		say(&p, "time limit (%.0f s) reached: devices not settled end failed", limit);
	/* a last look at the counters */
	for (uint32_t i = 0; i < p.nn; i++)
		poll_node(&p, &p.n[i]);
	/* the gateway hears of the last commit or rollback with the device's
	 * next report (2 s at most): wait for it to say so, up to 6 s */
	for (double until = mono() + 6; p.campaign_id && !interrupted;) {
		bool told = true;

		p.campaign_polled = 0;
		campaign_poll(&p);
		for (uint32_t i = 1; i < p.nn; i++)
			if (p.n[i].ph == PH_SETTLED && p.n[i].final != SCN_STATE_FAILED)
				told &= !strcmp(p.n[i].ctarget, "done") || !strcmp(p.n[i].ctarget, "failed");
		if (told || mono() > until)
			break;
		usleep(250000);
	}
	if (!(ret->node = calloc(s->n_devices, sizeof(*ret->node)))) {
		k = perr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	results_fill(&p, ret);
	*ret_trace = TAKE_PTR(tr);
	k = 0;
out:
	if (k == -EINTR)
		say(&p, "interrupted: taking everything down");
	teardown(&p);
	if (k == 0)
		ret->wall_s = mono() - p.wall0;
	free(p.n);
	free(ln);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	if (k == -EINTR)
		perr_set(err, -EINTR, "interrupted");
	return k;
}
