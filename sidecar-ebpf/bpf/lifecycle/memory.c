// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * memory_pressure and the memory samples behind the per-container gauges.
 *
 * handle_memcg_reclaim: mm_vmscan_memcg_reclaim_begin runs in the context of
 * the task whose charge hit a limit (try_charge_memcg() at memory.max, or
 * returning to user space over memory.high), so the pod filter applies to
 * current. Every memcg reclaim on the node runs it, in every tracer: its
 * rejection is one helper call, cheaper than the lifecycle programs' filter.
 *
 * sample_memory: a task iterator the tracer reads every few seconds. It walks
 * the tasks of the tracer's PID namespace (the pod's, which it shares), keeps
 * those of the pod, and writes one linnix_memcg_sample per container: each
 * container's memory cgroup is found through its processes, which works on
 * hybrid hosts where the v2 cgroups have no memcg, and needs no cgroupfs.
 * When the pass is over it checks each container against the threshold.
 *
 * Both count into memcg_pressure, which allows one event per container per
 * pressure_interval_ns and carries the occurrences in between in its count.
 */
#include "common.h"
#include "memcg.h"

/* Set by the loader. 0 turns threshold events off. */
const volatile u64 pressure_interval_ns = 10 * NSEC_PER_SEC;
const volatile u32 pressure_threshold_pct = 90;

/*
 * Entries live as long as the container has processes: the end of a
 * sampling pass drops those of containers that two passes in a row did not
 * see. A pod never has this many containers at once; a new container
 * finding the map full has its pressure counted as lost. Both maps are preallocated and charged to
 * the tracer's memory cgroup: about 150 KiB with the kernel's own overhead.
 */
#define LINNIX_MAX_CONTAINERS 256

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LINNIX_MAX_CONTAINERS);
	__type(key, u64); /* container cgroup id */
	__type(value, struct linnix_memcg_pressure);
} memcg_pressure SEC(".maps");

/* What one sampling pass has found of a container so far. */
struct memcg_round {
	u64 session;          /* bpf_iter_meta.session_id of that pass */
	u64 best_rss_kb;      /* RSS of the largest process seen */
	struct linnix_memcg_sample sample;
	struct linnix_event_header task; /* that process, for a threshold event */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LINNIX_MAX_CONTAINERS);
	__type(key, u64); /* container cgroup id */
	__type(value, struct memcg_round);
} memcg_rounds SEC(".maps");

/* A zeroed round, copied into the map: the value is too big for the stack. */
const struct memcg_round empty_round = {};

static __always_inline struct linnix_memcg_pressure *pressure_state(u64 key)
{
	struct linnix_memcg_pressure *state = bpf_map_lookup_elem(&memcg_pressure, &key);
	struct linnix_memcg_pressure zero = {};

	if (state)
		return state;
	/* Another CPU may insert it first: then the lookup finds that one. */
	bpf_map_update_elem(&memcg_pressure, &key, &zero, BPF_NOEXIST);
	state = bpf_map_lookup_elem(&memcg_pressure, &key);
	if (!state)
		count_stat(LINNIX_STAT_LOST);
	return state;
}

/*
 * Count one occurrence. Returns the count the event about it must carry, or
 * 0 when the container had an event less than pressure_interval_ns ago (the
 * occurrence then waits, in pending, for the next event). Of CPUs racing
 * past the interval, the one whose exchange moves last_event_ns emits.
 */
static __always_inline u32 pressure_occurred(struct linnix_memcg_pressure *state, u32 reason)
{
	u64 now = bpf_ktime_get_ns();
	u64 last, count;

	if (reason >= LINNIX_PRESSURE_REASONS)
		return 0;
	__sync_fetch_and_add(&state->total[reason], 1);
	__sync_fetch_and_add(&state->pending, 1);
	last = state->last_event_ns;
	if (last && now - last < pressure_interval_ns)
		return 0;
	if (__sync_val_compare_and_swap(&state->last_event_ns, last, now) != last)
		return 0;
	count = __sync_lock_test_and_set(&state->pending, 0);
	return count > 0xffffffffULL ? 0xffffffff : (u32)count;
}

/* memcg->memory_events[event] or, with local, memory_events_local[event]. */
static __always_inline u64 memcg_event(struct mem_cgroup *memcg, bool local, u32 event)
{
	u64 value = 0;
	u64 offset = local ? bpf_core_field_offset(struct mem_cgroup, memory_events_local)
			   : bpf_core_field_offset(struct mem_cgroup, memory_events);
	u64 slots = local ? bpf_core_field_size(struct mem_cgroup, memory_events_local)
			  : bpf_core_field_size(struct mem_cgroup, memory_events);

	if ((u64)event * sizeof(value) >= slots)
		return 0;
	bpf_probe_read_kernel(&value, sizeof(value), (void *)memcg + offset + (u64)event * sizeof(value));
	return value;
}

/*
 * Which limit the memcg is reclaiming at. The kernel counts MEMCG_MAX (in
 * try_charge_memcg()) or MEMCG_HIGH (in reclaim_high()) on the memcg over
 * its limit just before it starts the reclaim this hook sees; whichever of
 * the container's own counters moved tells them apart. Neither moves when
 * the limit hit is an ancestor's (the pod's) or the reclaim was asked for
 * by a write to a limit file: that is reclaim at a limit too.
 */
static __always_inline u32 reclaim_reason(struct linnix_memcg_pressure *state,
					  struct mem_cgroup *memcg)
{
	u32 reason = LINNIX_PRESSURE_RECLAIM;
	u64 max, high;

	if (!bpf_core_field_exists(memcg->memory_events_local) ||
	    !bpf_core_enum_value_exists(enum memcg_memory_event, MEMCG_MAX) ||
	    !bpf_core_enum_value_exists(enum memcg_memory_event, MEMCG_HIGH))
		return reason;
	max = memcg_event(memcg, true, bpf_core_enum_value(enum memcg_memory_event, MEMCG_MAX));
	high = memcg_event(memcg, true, bpf_core_enum_value(enum memcg_memory_event, MEMCG_HIGH));
	if (max == state->seen_max && high != state->seen_high)
		reason = LINNIX_PRESSURE_HIGH;
	state->seen_max = max;
	state->seen_high = high;
	return reason;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(handle_memcg_reclaim, int order, unsigned int gfp_flags)
{
	struct linnix_memory_pressure_event *e;
	struct task_struct *task;
	struct linnix_memcg_pressure *state;
	struct cgroup *container;
	struct mem_cgroup *memcg;
	u32 reason, count;

	/*
	 * Most reclaims on a node are other pods': one helper, which walks
	 * current's ancestry in C, rejects them before anything else is read.
	 */
	if (bpf_get_current_ancestor_cgroup_id(target_level) != target_cgroup_id)
		return 0;
	task = bpf_get_current_task_btf();
	container = task_container(task);
	if (!container)
		return 0;
	memcg = task_memcg(task);
	if (!memcg)
		return 0;
	state = pressure_state(cgroup_id(container));
	if (!state)
		return 0;
	reason = reclaim_reason(state, memcg);
	count = pressure_occurred(state, reason);
	if (!count)
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->hdr, LINNIX_EVENT_MEMORY_PRESSURE, task, container);
	e->reason = reason;
	e->count = count;
	e->memcg_usage_bytes = memcg_usage_bytes(memcg);
	e->memcg_limit_bytes = memcg_max_bytes(memcg);
	e->memcg_high_bytes = memcg_high_bytes(memcg);
	submit_record(e);
	return 0;
}

static __always_inline void fill_sample(struct linnix_memcg_sample *s, u64 container_id,
					struct cgroup *container, struct mem_cgroup *memcg,
					u32 level)
{
	s->cgroup_id = container_id;
	s->memcg_id = BPF_CORE_READ(memcg, css.cgroup, kn, id);
	s->memcg_level = level;
	s->usage_bytes = memcg_usage_bytes(memcg);
	s->limit_bytes = memcg_max_bytes(memcg);
	s->high_bytes = memcg_high_bytes(memcg);
	s->flags = 0;
	if (bpf_core_field_exists(memcg->memory_events) &&
	    bpf_core_enum_value_exists(enum memcg_memory_event, MEMCG_OOM_KILL)) {
		s->events[LINNIX_MEMCG_EVENT_HIGH] = memcg_event(
			memcg, false, bpf_core_enum_value(enum memcg_memory_event, MEMCG_HIGH));
		s->events[LINNIX_MEMCG_EVENT_MAX] = memcg_event(
			memcg, false, bpf_core_enum_value(enum memcg_memory_event, MEMCG_MAX));
		s->events[LINNIX_MEMCG_EVENT_OOM] = memcg_event(
			memcg, false, bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM));
		s->events[LINNIX_MEMCG_EVENT_OOM_KILL] = memcg_event(
			memcg, false, bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM_KILL));
		s->flags |= LINNIX_SAMPLE_EVENTS_KNOWN;
	}
	bpf_probe_read_kernel_str(s->cgroup_name, sizeof(s->cgroup_name),
				  BPF_CORE_READ(container, kn, name));
}

/* limit * pct / 100 without overflowing for limits near 2^64. */
static __always_inline u64 share_of(u64 limit, u32 pct)
{
	return limit / 100 * pct + limit % 100 * pct / 100;
}

struct pass_ctx {
	u64 session;
};

struct bpf_map;

/* End of a pass, per container: forget what the pass did not see, check the threshold. */
static long check_round(struct bpf_map *map, u64 *key, struct memcg_round *round,
			struct pass_ctx *ctx)
{
	struct linnix_memory_pressure_event *e;
	struct linnix_memcg_pressure *state;
	u64 usage = round->sample.usage_bytes;
	u64 limit = round->sample.limit_bytes;
	u32 count;

	if (round->session != ctx->session) {
		bpf_map_delete_elem(&memcg_rounds, key);
		return 0;
	}
	if (!pressure_threshold_pct)
		return 0;
	state = pressure_state(*key);
	if (!state)
		return 0;
	if (limit == ~0ULL || usage < share_of(limit, pressure_threshold_pct)) {
		state->above_threshold = 0;
		return 0;
	}
	if (state->above_threshold)
		return 0;
	state->above_threshold = 1;
	count = pressure_occurred(state, LINNIX_PRESSURE_THRESHOLD);
	if (!count || !round->task.kind)
		return 0;

	e = reserve_record(sizeof(*e));
	if (!e)
		return 0;
	e->hdr = round->task;
	e->reason = LINNIX_PRESSURE_THRESHOLD;
	e->count = count;
	e->memcg_usage_bytes = usage;
	e->memcg_limit_bytes = limit;
	e->memcg_high_bytes = round->sample.high_bytes;
	submit_record(e);
	return 0;
}

/*
 * A container the pass did not see has no processes left. Its state stays
 * for one more pass, so that user space, which reads the totals after each
 * pass, still counts what happened in its last moments; then it goes.
 */
static long prune_pressure(struct bpf_map *map, u64 *key, struct linnix_memcg_pressure *state,
			   struct pass_ctx *ctx)
{
	struct memcg_round *round = bpf_map_lookup_elem(&memcg_rounds, key);

	if (round && round->session == ctx->session)
		state->unseen_passes = 0;
	else if (++state->unseen_passes > 1)
		bpf_map_delete_elem(&memcg_pressure, key);
	return 0;
}

SEC("iter/task")
int sample_memory(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	u64 session = ctx->meta->session_id;
	struct task_struct *task = ctx->task;
	struct cgroup *container;
	struct mem_cgroup *memcg;
	struct memcg_round *round;
	struct mm_struct *mm;
	u64 key, rss_kb;
	u32 level;

	if (!task) {
		/* The pass is over (the kernel calls once more without a task). */
		struct pass_ctx pass = { .session = session };

		bpf_for_each_map_elem(&memcg_rounds, check_round, &pass, 0);
		bpf_for_each_map_elem(&memcg_pressure, prune_pressure, &pass, 0);
		return 0;
	}
	/* Threads share their process's memory and cgroups. */
	if (task->pid != task->tgid)
		return 0;
	if (!task_in_target(task))
		return 0;
	container = task_container(task);
	if (!container)
		return 0;
	memcg = task_memcg(task);
	if (!memcg)
		return 0;

	key = cgroup_id(container);
	round = bpf_map_lookup_elem(&memcg_rounds, &key);
	if (!round || round->session != session) {
		if (bpf_map_update_elem(&memcg_rounds, &key, &empty_round, BPF_ANY))
			return 0;
		round = bpf_map_lookup_elem(&memcg_rounds, &key);
		if (!round)
			return 0;
		round->session = session;
		round->sample.memcg_level = ~0U;
	}

	/*
	 * A container's processes normally share one memcg. One that made
	 * cgroups of its own has several; the shallowest holds the others, and
	 * is the one the container's limit is on.
	 */
	level = BPF_CORE_READ(memcg, css.cgroup, level);
	if (level < round->sample.memcg_level) {
		fill_sample(&round->sample, key, container, memcg, level);
		/*
		 * A full output buffer refuses the record, and the kernel runs this
		 * task again at the next read: it must then write it again.
		 */
		if (bpf_seq_write(seq, &round->sample, sizeof(round->sample)))
			round->sample.memcg_level = ~0U;
	}

	mm = task->mm;
	rss_kb = mm ? mm_counter_kb(mm, MM_ANONPAGES) + mm_counter_kb(mm, MM_FILEPAGES) +
			      mm_counter_kb(mm, MM_SHMEMPAGES)
		    : 0;
	if (!round->task.kind || rss_kb > round->best_rss_kb) {
		fill_header(&round->task, LINNIX_EVENT_MEMORY_PRESSURE, task, container);
		round->best_rss_kb = rss_kb;
	}
	return 0;
}
