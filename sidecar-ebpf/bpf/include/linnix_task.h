/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * CO-RE helpers shared by the linnix programs: cgroup v2 ancestry and PID
 * namespace numbers of a task. Everything is read with probe reads, so a
 * task that is half torn down yields zeros rather than a verifier rejection.
 */
#ifndef LINNIX_TASK_H
#define LINNIX_TASK_H

#include "vmlinux_min.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"

/* The task's cgroup in the v2 (default) hierarchy. */
static __always_inline struct cgroup *task_dfl_cgroup(struct task_struct *task)
{
	return BPF_CORE_READ(task, cgroups, dfl_cgrp);
}

/*
 * cgrp->ancestors[level]. The index is a runtime value, so the address is
 * computed from the relocated offset of the flexible array instead of letting
 * clang build an access chain with a variable index.
 */
static __always_inline struct cgroup *cgroup_ancestor(struct cgroup *cgrp, u32 level)
{
	struct cgroup *ancestor = NULL;
	void *slot = (void *)cgrp + bpf_core_field_offset(struct cgroup, ancestors) +
		     (u64)level * sizeof(ancestor);

	bpf_probe_read_kernel(&ancestor, sizeof(ancestor), slot);
	return ancestor;
}

/* cgroup id as user space sees it: the inode number of the v2 directory. */
static __always_inline u64 cgroup_id(struct cgroup *cgrp)
{
	return BPF_CORE_READ(cgrp, kn, id);
}

/* &pid->numbers[level], same reasoning as cgroup_ancestor(). */
static __always_inline struct upid *pid_upid(struct pid *pid, u32 level)
{
	return (struct upid *)((void *)pid + bpf_core_field_offset(struct pid, numbers) +
			       (u64)level * bpf_core_type_size(struct upid));
}

#endif /* LINNIX_TASK_H */
