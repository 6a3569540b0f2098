#!/bin/sh
# A pod's life in miniature, for `linnix-sidecar trace --memory-limit 64M
# --max-events-per-sec 200 -- sh pod_life.sh`: the report's sample input.
# Child cgroups of the traced one are containers (README, `trace`):
#   app     execs, a child exiting with 3, one killed by SIGTERM, a memory
#           hog OOM-killed at the limit after reclaiming (memory_pressure)
#   worker  a burst of execs above the in-kernel cap (a `lost` line)
# and a process that enters the running app container from outside
# (`entered`, as `kubectl exec` does). HOLD=SECONDS keeps the app container
# running that long at the end (default 1.5), for scrapes of its gauges.
set -eu
v2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
self=$(sed -n 's/^0:://p' /proc/self/cgroup)
pod="$v2$self"
mkdir "$pod/app" "$pod/worker"

# Each container's first process moves itself in, then execs its entrypoint.
sh -c 'echo $$ > "$1/cgroup.procs"; exec sh -c "
  /bin/uname -a > /dev/null
  /bin/ls / > /dev/null
  sh -c \"exit 3\" || true
  sh -c \"kill -TERM \\\$\\\$\" || true
  # tail keeps a line without newline in memory: it grows until killed.
  head -c 300000000 /dev/zero | tail > /dev/null || true
  sleep \${HOLD:-1.5}
"' app "$pod/app" &
app=$!
sleep 0.5
# Enters the app container while it runs (cgroup_join, entered: true).
sh -c 'echo $$ > "$1/cgroup.procs"; exec /bin/cat /proc/self/stat > /dev/null' enter "$pod/app"
sh -c 'echo $$ > "$1/cgroup.procs"; exec sh -c "
  for i in \$(seq 600); do /bin/true; done
  exit 0
"' worker "$pod/worker"
wait "$app"
