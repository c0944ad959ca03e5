#!/usr/bin/env bash
# Runs the gate, fault and Reset benchmarks (gate_bench), the heap
# benchmarks (heap_bench), the key cache's hit and miss (key_cache_bench, if
# built) and the library benchmarks (library_bench: zlib,
# libpng, libjpeg-turbo and libxml2 inside a compartment, natively, and zlib
# in a worker process), one program
# after the other, and writes bench/RESULTS.md through bench/verdicts.py:
# each target's ratio against a baseline measured in the same run, and its
# verdict.
#
#   bench/run.sh [BUILD_DIR]      # default ./build; builds nothing
#
# Environment: REPS (default 15), MIN_TIME in seconds (default 0.2; Google
# Benchmark 1.7.1 takes a plain number, no "s" suffix), CPU to pin to
# (default 1; empty to not pin), FILTER (a --benchmark_filter regex, given
# to every program), OUT (default bench/RESULTS.md; empty: print only),
# PROGRAMS (default: gate_bench heap_bench library_bench, and
# key_cache_bench if built), LIFECYCLE (non-empty: only verdicts.py's
# lifecycle section, as bench/lifecycle.sh asks). Repetitions are randomly
# interleaved within each program so that drift on a noisy machine hits
# every benchmark alike (every ratio compares benchmarks of one program);
# the figures are Google Benchmark's medians over the repetitions. The
# libraries' verdict comes from library_bench's paired benchmarks, which
# alternate native and inside call by call within each iteration.
#
# The console shows Google Benchmark's aggregates per benchmark; each
# program's full JSON goes to BUILD_DIR/bench/NAME.json. Where compare.py
# is (Debian's libbenchmark-tools, with python3-scipy), BUILD_DIR/bench/
# compare.txt gets each main baseline pair with a Mann-Whitney U-test over
# the repetitions; `compare.py benchmarks OLD.json NEW.json` compares runs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-./build}"
reps="${REPS:-15}"
min_time="${MIN_TIME:-0.2}"
cpu="${CPU-1}"
filter="${FILTER:-.}"
out="${OUT-${here}/RESULTS.md}"
read -r -a programs <<<"${PROGRAMS:-gate_bench heap_bench library_bench}"
if [[ -z "${PROGRAMS:-}" && -x "${build}/bench/key_cache_bench" ]]; then
  programs+=(key_cache_bench)  # the key cache's hit and miss
fi

for name in "${programs[@]}"; do
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
# line goes to verdicts.py, which records it in RESULTS.md.
commands=()
run() {
  local name="$1"
  local json="${build}/bench/${name}.json"
  local cmd=("${build}/bench/${name}"
    "--benchmark_repetitions=${reps}"
    "--benchmark_min_time=${min_time}"
    "--benchmark_enable_random_interleaving=true"
    "--benchmark_filter=${filter}"
    "--benchmark_display_aggregates_only=true"
    "--benchmark_out_format=json"
    "--benchmark_out=${json}")
  echo "run.sh: ${pin[*]:+${pin[*]} }${cmd[*]}" >&2
  rm -f "${json}"  # a program whose benchmarks the filter all left out
  "${pin[@]}" "${cmd[@]}"
  commands+=(--command
    "bench/run.sh${build_arg:+ ${build_arg}}: ${pin[*]:+${pin[*]} }${cmd[*]}")
}
build_arg="${1:-}"
for name in "${programs[@]}"; do
  run "${name}"
done

# compare.py JSON BASELINE CONTENDER: the two families' aggregates side by
# side, and the U-test. The lookahead keeps the aggregates' _median etc.
compare_py="/usr/share/benchmark/compare.py"
python=""
for candidate in python3 /usr/bin/python3; do
  if "${candidate}" -c 'import scipy' 2>/dev/null; then
    python="${candidate}"
    break
  fi
done
compare() {
  "${python}" "${compare_py}" -a --no-color filters "$@" ||
    echo "(compare.py found nothing to compare for $*)"
}
if [[ -n "${LIFECYCLE:-}" ]]; then
  :  # no U-tests for the lifecycle's few benchmarks
elif [[ -f "${compare_py}" && -n "${python}" ]]; then
  g="${build}/bench/gate_bench.json"
  h="${build}/bench/heap_bench.json"
  l="${build}/bench/library_bench.json"
  {
    compare "${g}" '^BM_WrpkruPair(?=$|_)' '^BM_GateRoundTrip(?=$|_)'
    compare "${g}" '^BM_FloorTrusted' '^BM_GateRoundTrip(?=$|_)'
    compare "${g}" '^BM_ForkExitWait' '^BM_FaultAndReset(?=$|_)'
    compare "${g}" '^BM_ForkExitWait' '^BM_CreateCallDestroy'
    compare "${g}" '^BM_GateRoundTrip(?=$|_)' '^BM_Reset(?=$|_)'
    compare "${h}" '^BM_MallocFreeNativeJemalloc/' '^BM_MallocFreeInside/'
    for op in ZlibCompress ZlibUncompress PngDecode JpegDecode XmlParse; do
      compare "${l}" "^BM_${op}Native/" "^BM_${op}Inside/"
    done
    compare "${l}" '^BM_ZlibCompressNative/' '^BM_ZlibCompressProcess/'
  } >"${build}/bench/compare.txt" 2>&1
  echo "run.sh: U-tests of the main baseline pairs:" \
    "${build}/bench/compare.txt" >&2
else
  echo "run.sh: no U-tests: compare.py needs libbenchmark-tools and" \
    "python3-scipy" >&2
fi

python3 "${here}/verdicts.py" ${LIFECYCLE:+--lifecycle} \
  --gate "${build}/bench/gate_bench.json" \
  --heap "${build}/bench/heap_bench.json" \
  --lib "${build}/bench/library_bench.json" \
  --keys "${build}/bench/key_cache_bench.json" \
  ${out:+--out "${out}"} \
  "${commands[@]}"
