#!/usr/bin/env bash
# Runs the gate, fault and Reset benchmarks (gate_bench), the heap
# benchmarks (heap_bench) and the library benchmarks (library_bench: zlib and
# libpng inside a compartment, natively and in a worker process), one program
# after the other, and writes bench/RESULTS.md.
#
#   bench/run.sh [BUILD_DIR]      # default ./build; builds nothing
#
# Environment: REPS (default 15), MIN_TIME in seconds (default 0.2; Google
# Benchmark 1.7.1 takes a plain number, no "s" suffix), CPU to pin to
# (default 1; empty to not pin), FILTER (a --benchmark_filter regex, given
# to every program). Repetitions are randomly interleaved within each program
# so that drift on a noisy machine hits every benchmark alike (every ratio
# report.py draws compares benchmarks of one program); report.py uses medians.
# The libraries' verdict comes from library_bench's paired benchmarks, which
# alternate native and inside call by call within each iteration.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-./build}"
reps="${REPS:-15}"
min_time="${MIN_TIME:-0.2}"
cpu="${CPU-1}"
filter="${FILTER:-.}"

for name in gate_bench heap_bench library_bench; do
  if [[ ! -x "${build}/bench/${name}" ]]; then
    echo "run.sh: ${build}/bench/${name} not found; build first, e.g." >&2
    echo "  cmake -S . -B ${build} && cmake --build ${build} -j2" >&2
    exit 1
  fi
done

pin=()
if [[ -n "${cpu}" ]] && command -v taskset >/dev/null 2>&1 &&
   taskset -c "${cpu}" true 2>/dev/null; then
  pin=(taskset -c "${cpu}")
else
  echo "run.sh: not pinning to a CPU" >&2
fi

# Runs one program with the common options into its JSON file; the command
# line goes to report.py, which records it in RESULTS.md.
commands=()
run() {
  local name="$1"
  local json="${build}/bench/${name}.json"
  local cmd=("${build}/bench/${name}"
    "--benchmark_repetitions=${reps}"
    "--benchmark_min_time=${min_time}"
    "--benchmark_enable_random_interleaving=true"
    "--benchmark_filter=${filter}"
    "--benchmark_format=json")
  echo "run.sh: ${pin[*]:+${pin[*]} }${cmd[*]} > ${json}" >&2
  "${pin[@]}" "${cmd[@]}" >"${json}"
  commands+=(--command
    "bench/run.sh${build_arg:+ ${build_arg}}: ${pin[*]:+${pin[*]} }${cmd[*]}")
}
build_arg="${1:-}"
run gate_bench
run heap_bench
run library_bench

python3 "${here}/report.py" \
  --json "${build}/bench/gate_bench.json" \
  --heap-json "${build}/bench/heap_bench.json" \
  --lib-json "${build}/bench/library_bench.json" \
  --out "${here}/RESULTS.md" \
  "${commands[@]}" \
  --build "${build}"
