// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Own-cgroup discovery. The tracer runs with a private cgroup namespace and
 * without the v2 tree mounted, so only the kernel can tell it where it sits.
 *
 * It records the id and kernfs name of every ancestor, root first.
 *
 * User space runs this raw tracepoint program with BPF_PROG_TEST_RUN: the
 * kernel calls it synchronously in the caller's context, so "current" is the
 * calling thread, and nothing is ever attached.
 */
#include "vmlinux_min.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "linnix_events.h"
#include "linnix_task.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct linnix_self_cgroup);
} self_cgroup SEC(".maps");

SEC("raw_tp/linnix_self")
int record_self_cgroup(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct linnix_self_cgroup *out;
	struct cgroup *cgrp;
	u32 key = 0, level, i;

	out = bpf_map_lookup_elem(&self_cgroup, &key);
	if (!out)
		return 1;
	cgrp = task_dfl_cgroup(task);
	if (!cgrp)
		return 1;

	level = BPF_CORE_READ(cgrp, level);
	out->level = level;
	for (i = 0; i < LINNIX_MAX_CGROUP_LEVELS; i++) {
		if (i > level)
			break;
		struct cgroup *ancestor = cgroup_ancestor(cgrp, i);

		out->ids[i] = cgroup_id(ancestor);
		/* Names let user space check that the parent is a pod cgroup. */
		bpf_probe_read_kernel_str(out->names[i], sizeof(out->names[i]),
					  BPF_CORE_READ(ancestor, kn, name));
	}
	out->valid = 1;
	return 0;
}
