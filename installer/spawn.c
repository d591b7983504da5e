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

int spawn_run(const char *const *argv, const char *const *env, uint64_t timeout_ms, struct spawn_result *res,
	      struct perr *err)
{
	uint64_t deadline = timeout_ms ? mono_ms() + timeout_ms : 0;
	int fds[2], wstatus = 0;
	bool eof = false;
	pid_t pid;

	memset(res, 0, sizeof(*res));
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
	while (!eof) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		int wait_ms = -1, n;

		if (deadline) {
			uint64_t now = mono_ms();

			if (now >= deadline) {
				res->timed_out = true;
				break;
			}
			wait_ms = (int)(deadline - now > 1000 ? 1000 : deadline - now);
		}
		n = poll(&p, 1, wait_ms);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0) {
			char buf[4096];
			ssize_t r = read(fds[0], buf, sizeof(buf));

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				eof = true;
				break;
			}
			if (res->output_len + 1 < sizeof(res->output)) {
				size_t take = (size_t)r < sizeof(res->output) - 1 - res->output_len ? (size_t)r : sizeof(res->output) - 1 - res->output_len;

				memcpy(res->output + res->output_len, buf, take);
				res->output_len += take;
				res->truncated |= take < (size_t)r;
			} else {
				res->truncated = true;
			}
		}
	}
	close(fds[0]);
	/* the output closed; the program may still run until the deadline */
	while (!res->timed_out) {
		pid_t w = waitpid(pid, &wstatus, deadline ? WNOHANG : 0);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			break;
		if (w == 0) {
			if (mono_ms() >= deadline)
				res->timed_out = true;
			else
				usleep(10000);
		}
	}
	if (res->timed_out) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
			;
	}
	/* nothing of the program's process group outlives it */
	kill(-pid, SIGKILL);
	res->output[res->output_len] = '\0';
	res->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + (WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0);
	return 0;
}
