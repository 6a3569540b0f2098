// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Process lifecycle of one pod: fork, exec, exit, OOM kill, moves between
 * cgroups, the processes already running, memory pressure and the removal
 * of its container cgroups.
 *
 * Every program decides in the kernel whether its subject task (or cgroup)
 * belongs to the pod (the cgroup v2 subtree rooted at target_cgroup_id, which
 * sits at target_level): nothing about other pods ever reaches the ring
 * buffer.
 *
 * Each program has a file of its own in lifecycle/, the part they share is
 * lifecycle/common.h (with ring.h and filter.h). They are compiled as this one translation unit, so
 * they come out as one object: the programs share their maps (one ring
 * buffer, one reader state, one stats array) and the load-time filter, and
 * one object needs nothing but clang to build (no bpftool, no BPF linker).
 * A new program is a new file in lifecycle/ and one line here.
 */
#include "lifecycle/common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "lifecycle/fork.c"
#include "lifecycle/exec.c"
#include "lifecycle/exit.c"
#include "lifecycle/oom.c"
#include "lifecycle/cgroup_rmdir.c"
#include "lifecycle/memory.c"
#include "lifecycle/cgroup.c"
#include "lifecycle/present.c"
#include "lifecycle/pidns.c"
