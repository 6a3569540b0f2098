/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What every lifecycle program shares: the load-time filter constants, and
 * the two headers built on them: ring.h (the maps every program writes,
 * reserving and submitting records, lost records, the rate limit) and
 * filter.h (the pod filter, pod membership, pid numbering, the event
 * header).
 *
 * They define maps and globals, so exactly one translation unit includes
 * them: linnix.bpf.c, through this header, and the programs after it.
 */
#ifndef LINNIX_LIFECYCLE_COMMON_H
#define LINNIX_LIFECYCLE_COMMON_H

#include "vmlinux_min.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "bpf_tracing.h"
#include "linnix_events.h"
#include "linnix_task.h"

#define NSEC_PER_SEC 1000000000ULL

/* Set by the loader before load; rodata, so the verifier prunes dead branches. */
const volatile u64 target_cgroup_id = 0;
const volatile u32 target_level = 0;
const volatile u32 trace_threads = 0;
const volatile u32 max_events_per_sec = 0;
/*
 * Inode number of the PID namespace whose numbers events carry (the
 * tracer's, which in a pod is the pod's); 0: the task's innermost one.
 */
const volatile u32 target_pidns_inum = 0;

#include "ring.h"
#include "filter.h"

#endif /* LINNIX_LIFECYCLE_COMMON_H */
