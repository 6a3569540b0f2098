// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pidns: where the loader's PID namespace sits in the kernel's nesting of
 * them. User space runs this raw tracepoint program once with
 * BPF_PROG_TEST_RUN, which calls it synchronously in the loader's own
 * context, before it attaches the others; it is never attached itself.
 */
#include "common.h"

SEC("raw_tp/linnix_pidns")
int record_pidns(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	u32 level = BPF_CORE_READ(pid, level);
	struct pid_namespace *ns = BPF_CORE_READ(pid_upid(pid, level), ns);

	/* The inode the loader read from /proc/self/ns/pid must be this one. */
	if (BPF_CORE_READ(ns, ns.inum) != target_pidns_inum)
		return 1;
	target_pidns_level = level;
	return 0;
}
