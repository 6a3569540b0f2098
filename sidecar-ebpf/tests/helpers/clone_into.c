// SPDX-License-Identifier: Apache-2.0
/*
 * clone_into CGROUP_DIR PROGRAM [ARG...]
 *
 * Runs PROGRAM as a child cloned straight into the cgroup v2 directory
 * CGROUP_DIR (clone3 with CLONE_INTO_CGROUP): the child is born there, it
 * never shares this process's cgroup. Prints the child's pid on stdout,
 * waits for it and exits as it did (128 + signal when killed). Built and run
 * by tests/clone_into_cgroup.rs; glibc has no clone3 wrapper.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct clone_args args;
	int dir, status;
	long pid;

	if (argc < 3) {
		fprintf(stderr, "usage: %s CGROUP_DIR PROGRAM [ARG...]\n", argv[0]);
		return 2;
	}
	dir = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0) {
		perror(argv[1]);
		return 2;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_INTO_CGROUP;
	args.exit_signal = SIGCHLD;
	args.cgroup = dir;
	pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		perror("clone3");
		return 2;
	}
	if (pid == 0) {
		execv(argv[2], argv + 2);
		_exit(127);
	}
	printf("%ld\n", pid);
	fflush(stdout);
	if (waitpid(pid, &status, 0) < 0) {
		perror("waitpid");
		return 2;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
