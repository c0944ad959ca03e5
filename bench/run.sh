#!/usr/bin/env bash
# Runs the gate, fault and Reset benchmarks and writes bench/RESULTS.md.
#
#   bench/run.sh [BUILD_DIR]      # default ./build; builds nothing
#
# Environment: REPS (default 15), MIN_TIME in seconds (default 0.2; Google
# Benchmark 1.7.1 takes a plain number, no "s" suffix), CPU to pin to
# (default 1; empty to not pin), FILTER (a --benchmark_filter regex).
# Repetitions are randomly interleaved so that drift on a noisy machine hits
# every benchmark alike; report.py uses medians.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-./build}"
reps="${REPS:-15}"
min_time="${MIN_TIME:-0.2}"
cpu="${CPU-1}"
filter="${FILTER:-.}"

bin="${build}/bench/gate_bench"
if [[ ! -x "${bin}" ]]; then
  echo "run.sh: ${bin} not found; build first, e.g." >&2
  echo "  cmake -S . -B ${build} && cmake --build ${build} -j2" >&2
  exit 1
fi

json="${build}/bench/gate_bench.json"
cmd=("${bin}"
  "--benchmark_repetitions=${reps}"
  "--benchmark_min_time=${min_time}"
  "--benchmark_enable_random_interleaving=true"
  "--benchmark_filter=${filter}"
  "--benchmark_format=json")
pin=()
if [[ -n "${cpu}" ]] && command -v taskset >/dev/null 2>&1 &&
   taskset -c "${cpu}" true 2>/dev/null; then
  pin=(taskset -c "${cpu}")
else
  echo "run.sh: not pinning to a CPU" >&2
fi

echo "run.sh: ${pin[*]:+${pin[*]} }${cmd[*]} > ${json}" >&2
"${pin[@]}" "${cmd[@]}" >"${json}"

python3 "${here}/report.py" \
  --json "${json}" \
  --out "${here}/RESULTS.md" \
  --command "bench/run.sh${1:+ $1}: ${pin[*]:+${pin[*]} }${cmd[*]}" \
  --build "${build}"
