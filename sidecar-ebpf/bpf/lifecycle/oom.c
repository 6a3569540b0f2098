// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * oom_kill: the OOM victim's RSS and its memory cgroup's usage and limit.
 */
#include "common.h"

/*
 * Set by the loader from the running kernel's page size: rss counters and
 * page_counter values are in pages, which are 4, 16 or 64 KiB depending on
 * the architecture and the kernel's configuration.
 */
const volatile u32 page_shift = 12;

static __always_inline u64 mm_counter_kb(struct mm_struct *mm, u32 member)
{
	s64 pages = 0;

	/* Like get_mm_counter(): the approximate percpu_counter value, never below 0. */
	switch (member) {
	case MM_FILEPAGES:
		pages = BPF_CORE_READ(mm, rss_stat[MM_FILEPAGES].count);
		break;
	case MM_ANONPAGES:
		pages = BPF_CORE_READ(mm, rss_stat[MM_ANONPAGES].count);
		break;
	case MM_SHMEMPAGES:
		pages = BPF_CORE_READ(mm, rss_stat[MM_SHMEMPAGES].count);
		break;
	}
	return pages > 0 ? (u64)pages << (page_shift - 10) : 0;
}

/*
 * The victim's memory cgroup. On a hybrid host this is the v1 memcg, which is
 * where the limit lives there; on a unified host it is the v2 one.
 */
static __always_inline bool read_memcg(struct task_struct *task, u64 *usage, u64 *limit)
{
	struct cgroup_subsys_state *css = NULL;
	struct css_set *cset;
	struct mem_cgroup *memcg;
	u32 id;
	u64 max;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return false;
	id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id >= bpf_core_field_size(struct css_set, subsys) / sizeof(css))
		return false;

	cset = BPF_CORE_READ(task, cgroups);
	bpf_probe_read_kernel(&css, sizeof(css),
			      (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
				      (u64)id * sizeof(css));
	if (!css)
		return false;

	/* container_of(css, struct mem_cgroup, css) */
	memcg = (void *)css - bpf_core_field_offset(struct mem_cgroup, css);
	*usage = (u64)BPF_CORE_READ(memcg, memory.usage.counter) << page_shift;
	max = BPF_CORE_READ(memcg, memory.max);
	/* include/linux/page_counter.h: PAGE_COUNTER_MAX = LONG_MAX / PAGE_SIZE */
	*limit = max >= (0x7fffffffffffffffULL >> page_shift) ? ~0ULL : max << page_shift;
	return true;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(handle_mark_victim, struct task_struct *task)
{
	struct linnix_oom_event *e;
	struct cgroup *container;
	struct mm_struct *mm;
	u64 usage = 0, limit = 0;

	/* Runs in the allocating task's context: the victim's cgroup decides. */
	if (!task_in_target(task, &container))
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_OOM_KILL, task, container);
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
