// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * present: the processes already in the pod when the tracer starts, from a
 * task iterator that user space runs once after the other programs are
 * attached. The records are the event header the kernel events carry, so a
 * present process is numbered (PID namespace, identity, container) exactly
 * like its later exit, and it is marked a member of the pod.
 */
#include "common.h"

/* A record is built here: it is too big for the program's stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct linnix_present_event);
} present_scratch SEC(".maps");

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct linnix_present_event *e;
	struct cgroup *container;
	u32 zero = 0;

	/* One record per process: its group leader, while the group lives. */
	if (!task || task->pid != task->tgid || !task->signal->live.counter)
		return 0;
	if (!task_in_target_container(task, &container))
		return 0;
	remember_member(task, cgroup_id(container));

	e = bpf_map_lookup_elem(&present_scratch, &zero);
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_PRESENT, task, container);
	/* A full seq_file buffer makes the iterator offer this task again. */
	bpf_seq_write(seq, e, sizeof(*e));
	return 0;
}
