/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "spawn.h"

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void child(const char *const *argv, const char *const *env, int out)
{
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

	setpgid(0, 0);
	if (nul < 0 || dup2(nul, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(127);
	for (size_t i = 0; env && env[i]; i++)
		putenv((char *)env[i]);
	signal(SIGPIPE, SIG_DFL);
	execvp(argv[0], (char *const *)argv);
	dprintf(2, "%s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* The program has exited: without reaping it, so that its pid (and so its
 * process group's id) cannot be reused before the group is killed. */
static bool exited(pid_t pid)
{
	siginfo_t si = { 0 };

	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

static void take_output(struct spawn_result *res, const char *buf, size_t n)
{
	size_t room = sizeof(res->output) - 1 - res->output_len, take = n < room ? n : room;

	memcpy(res->output + res->output_len, buf, take);
	res->output_len += take;
	res->truncated |= take < n;
}

/* After the program exits, output still in the pipe is read for this long;
 * a child it left behind holding the pipe does not make it "time out". */
#define DRAIN_MS 200

int spawn_run(const char *const *argv, const char *const *env, uint64_t timeout_ms, const int *cancel,
	      struct spawn_result *res, struct perr *err)
{
	uint64_t deadline = timeout_ms ? mono_ms() + timeout_ms : 0, drain_end = 0;
	int fds[2], wstatus = 0;
	bool eof = false, cancelled = false;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	if (cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED))
		return perr_set(err, -EINTR, "not started (its caller is shutting down)");
	if (pipe2(fds, O_CLOEXEC) < 0)
		return perr_set(err, -errno, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		int k = -errno;

		close(fds[0]);
		close(fds[1]);
		return perr_set(err, k, "fork: %s", strerror(-k));
	}
	if (pid == 0)
		child(argv, env, fds[1]);
	close(fds[1]);
	setpgid(pid, pid); /* also here: no race with the child's own call */
	for (;;) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		uint64_t now = mono_ms(), wait_ms = 50; /* how often to look whether it exited */
		int n;

		if (!drain_end && exited(pid))
			drain_end = now + DRAIN_MS;
		if (drain_end && (eof || now >= drain_end))
			break;
		if (!drain_end && deadline && now >= deadline) {
			res->timed_out = true;
			break;
		}
		if (!drain_end && cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED)) {
			cancelled = true;
			break;
		}
		if (drain_end && drain_end - now < wait_ms)
			wait_ms = drain_end - now;
		else if (!drain_end && deadline && deadline - now < wait_ms)
			wait_ms = deadline - now;
		if (eof) { /* output closed; the program may still run */
			usleep((useconds_t)wait_ms * 1000);
			continue;
		}
		n = poll(&p, 1, (int)wait_ms);
		if (n < 0 && errno != EINTR) {
			eof = true;
			continue;
		}
		if (n > 0) {
			char buf[4096];
			ssize_t r = read(fds[0], buf, sizeof(buf));

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				eof = true;
			else if (res->output_len + 1 < sizeof(res->output))
				take_output(res, buf, (size_t)r);
			else
				res->truncated = true;
		}
	}
	close(fds[0]);
	/* nothing of the program's process group outlives it; killed before
	 * the program is reaped, while its pid is still taken */
	kill(-pid, SIGKILL);
	if (res->timed_out || cancelled)
		kill(pid, SIGKILL);
	while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
		;
	res->output[res->output_len] = '\0';
	res->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + (WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0);
	if (cancelled)
		return perr_set(err, -EINTR, "stopped before it ended (its caller is shutting down)");
	return 0;
}
