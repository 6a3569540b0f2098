/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Memory cgroups and RSS, for the OOM and memory-pressure programs.
 *
 * A task's memory cgroup is css_set->subsys[memory_cgrp_id]: on a hybrid
 * host (v1 memory controller, v2 for the rest) that is the v1 memcg, which
 * is where the limit lives there; on a unified host it is the v2 one. The
 * v2 cgroup itself has no memcg on a hybrid host, so the programs always go
 * through the task.
 */
#ifndef LINNIX_LIFECYCLE_MEMCG_H
#define LINNIX_LIFECYCLE_MEMCG_H

#include "common.h"

/*
 * Set by the loader from the running kernel's page size: rss counters and
 * page_counter values are in pages, which are 4, 16 or 64 KiB depending on
 * the architecture and the kernel's configuration.
 */
const volatile u32 page_shift = 12;

/* include/linux/page_counter.h: PAGE_COUNTER_MAX = LONG_MAX / PAGE_SIZE */
static __always_inline u64 page_counter_max(void)
{
	return 0x7fffffffffffffffULL >> page_shift;
}

/* A page_counter limit in bytes, ~0 for "none". */
static __always_inline u64 limit_bytes(u64 pages)
{
	return pages >= page_counter_max() ? ~0ULL : pages << page_shift;
}

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

/* The task's memory cgroup, or NULL (no memory controller, task torn down). */
static __always_inline struct mem_cgroup *task_memcg(struct task_struct *task)
{
	struct cgroup_subsys_state *css = NULL;
	struct css_set *cset;
	u32 id;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return NULL;
	id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id >= bpf_core_field_size(struct css_set, subsys) / sizeof(css))
		return NULL;

	cset = BPF_CORE_READ(task, cgroups);
	bpf_probe_read_kernel(&css, sizeof(css),
			      (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
				      (u64)id * sizeof(css));
	if (!css)
		return NULL;
	/* container_of(css, struct mem_cgroup, css) */
	return (void *)css - bpf_core_field_offset(struct mem_cgroup, css);
}

static __always_inline u64 memcg_usage_bytes(struct mem_cgroup *memcg)
{
	return (u64)BPF_CORE_READ(memcg, memory.usage.counter) << page_shift;
}

static __always_inline u64 memcg_max_bytes(struct mem_cgroup *memcg)
{
	return limit_bytes(BPF_CORE_READ(memcg, memory.max));
}

/* memory.high: v2 only; a v1 memcg keeps it at "none". */
static __always_inline u64 memcg_high_bytes(struct mem_cgroup *memcg)
{
	if (!bpf_core_field_exists(memcg->memory.high))
		return ~0ULL;
	return limit_bytes(BPF_CORE_READ(memcg, memory.high));
}

#endif /* LINNIX_LIFECYCLE_MEMCG_H */
