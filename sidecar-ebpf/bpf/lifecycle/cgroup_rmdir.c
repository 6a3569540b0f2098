// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * cgroup_rmdir: a container-level cgroup of the pod is gone, so user space
 * can forget it, metric series included. Containers restart with new
 * cgroups; without this, every restart would leave series behind for good.
 */
#include "common.h"

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(handle_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	struct linnix_cgroup_rmdir_event *e;
	struct cgroup *pod;

	/* Only the pod's children: deeper cgroups are counted under theirs. */
	if (cgrp->level != target_level + 1)
		return 0;
	pod = cgroup_ancestor(cgrp, target_level);
	if (!pod || cgroup_id(pod) != target_cgroup_id)
		return 0;

	/* Never rate limited: one per container, and the series wait for it. */
	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(&e->hdr, 0, sizeof(e->hdr));
	e->hdr.kind = LINNIX_EVENT_CGROUP_RMDIR;
	e->hdr.ts_boot_ns = bpf_ktime_get_boot_ns();
	e->hdr.cgroup_id = cgroup_id(cgrp);
	bpf_probe_read_kernel_str(e->hdr.cgroup_name, sizeof(e->hdr.cgroup_name),
				  BPF_CORE_READ(cgrp, kn, name));
	submit_record(e);
	return 0;
}
