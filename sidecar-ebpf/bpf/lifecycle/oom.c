// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * oom_kill: the OOM victim's RSS and its memory cgroup's usage and limit.
 */
#include "common.h"
#include "memcg.h"

/*
 * The victim's memory cgroup: usage and limit (~0 for none). See memcg.h for
 * which one that is on hybrid and unified hosts.
 */
static __always_inline bool read_memcg(struct task_struct *task, u64 *usage, u64 *limit)
{
	struct mem_cgroup *memcg = task_memcg(task);

	if (!memcg)
		return false;
	*usage = memcg_usage_bytes(memcg);
	*limit = memcg_max_bytes(memcg);
	return true;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(handle_mark_victim, struct task_struct *task)
{
	struct linnix_oom_event *e;
	struct mm_struct *mm;
	u64 usage = 0, limit = 0;

	/* Runs in the allocating task's context: the victim's cgroup decides. */
	if (!task_in_target(task))
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_OOM_KILL, task, task_container(task));
	e->hdr.host_tid = e->hdr.host_pid;
	e->hdr.tid = e->hdr.pid;

	mm = BPF_CORE_READ(task, mm);
	e->rss_anon_kb = mm ? mm_counter_kb(mm, MM_ANONPAGES) : 0;
	e->rss_file_kb = mm ? mm_counter_kb(mm, MM_FILEPAGES) : 0;
	e->rss_shmem_kb = mm ? mm_counter_kb(mm, MM_SHMEMPAGES) : 0;

	if (read_memcg(task, &usage, &limit))
		e->hdr.flags |= LINNIX_FLAG_MEMCG_KNOWN;
	e->memcg_usage_bytes = usage;
	e->memcg_limit_bytes = limit;

	submit_record(e);
	return 0;
}
