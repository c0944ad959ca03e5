#!/usr/bin/env bash
# The gate round trip against the trusted floor model (issue 16, item 4):
# runs BM_GateOverFloor (gate and floor interleaved block by block in one
# process) in RUNS fresh processes (default 9; each gets its own address
# layout) and prints each run's medians and the median of the per-run ratios.
#
#   bench/gate_ratio.sh [BUILD_DIR ...]   # default ./build-rel; builds nothing
#
# With several build dirs the runs alternate between them (before/after
# comparisons). CPU to pin to (default 1; empty to not pin).
set -euo pipefail
builds=("$@")
[[ ${#builds[@]} -eq 0 ]] && builds=(./build-rel)
runs="${RUNS:-9}"
cpu="${CPU-1}"
pin=()
[[ -n "$cpu" ]] && pin=(taskset -c "$cpu")
declare -A ratios
for ((i = 0; i < runs; i++)); do
  for b in "${builds[@]}"; do
    line=$("${pin[@]}" "$b/bench/gate_bench" --benchmark_filter='^BM_GateOverFloor' \
      --benchmark_format=csv 2>/dev/null | grep '^"BM_GateOverFloor')
    # csv: name,iterations,real_time,cpu_time,time_unit,bytes,items,label,
    # error_occurred,error_message,floor_ns,gate_ns,ratio,stack_off
    IFS=, read -r _ _ _ _ _ _ _ _ _ _ floor gate ratio _ <<<"$line"
    printf '%-24s run %d: floor %6.2f ns  gate %6.2f ns  ratio %.3f\n' \
      "$b" "$i" "$floor" "$gate" "$ratio"
    ratios[$b]+="$ratio "
  done
done
for b in "${builds[@]}"; do
  # shellcheck disable=SC2086
  printf '%-24s median ratio of %d runs: %s\n' "$b" "$runs" \
    "$(printf '%s\n' ${ratios[$b]} | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
uptime
