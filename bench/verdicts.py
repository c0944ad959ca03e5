#!/usr/bin/env python3
"""States mpkbox's speed targets and their verdicts, in Markdown.

  verdicts.py [--gate G.json] [--heap H.json] [--lib L.json] [--keys K.json]
              [--command CMD]... [--out bench/RESULTS.md] [--lifecycle]

--keys: key_cache_bench's JSON. --lifecycle: only the lifecycle section
(issue 16: Reset, create+call+destroy, fault to status and the key-cache
miss, each against its baseline) and its verdicts, as bench/lifecycle.sh
prints them.

Inputs: Google Benchmark JSON (--benchmark_out) of one run of each program,
repetitions interleaved. Times are Google Benchmark's median aggregates; each
ratio divides two benchmarks of one program, so drift hits both sides alike.
"""

import argparse
import json
import math
import platform
import statistics
import sys

GATE_MAX = 1.3  # gate round trip / WRPKRU pair
GATE_FLOOR_MAX = 1.15  # gate round trip / trusted floor model, interleaved
HEAP_MAX = 2.0  # malloc/free pair inside / native jemalloc, small sizes
LIB_MIN = 0.98  # inside throughput / native throughput, paired
CODEC_MIN = 0.97  # the same for libjpeg-turbo and libxml2, 64 KiB and up
CONFIDENCE = 0.95
HEAP_TARGET_SIZES = (16, 64, 256, 1024)
HEAP_SIZES = HEAP_TARGET_SIZES + (4096, 16384, 65536)
HEAP_PAIRS = 1000  # kPairs in heap_bench.cc, if the `pairs` counter is absent
UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

PAIR, GATE, FORK = "BM_WrpkruPair", "BM_GateRoundTrip", "BM_ForkExitWait"
SYSCALL, TRUSTED = "BM_PlainSyscall", "BM_FloorTrusted"
# Derived times: (benchmark, benchmark to subtract, divisor), so that the
# enclosing Call and loop cancel out (gate_bench.cc: 64 callbacks, 16 calls).
CALLBACK = ("BM_CallbackRoundTrip/64", "BM_CallbackRoundTrip/0", 64)
NATIVE_CB = ("BM_CallbackNative/64", "BM_CallbackNative/0", 64)
INTERCEPTED = ("BM_InterceptedSyscall", "BM_CompartmentEmpty16", 16)
# gate_bench's ratios: (label, time, baseline[, target]). fork + exit + wait
# is a process sandbox's recovery from a crash, at its cheapest.
GATE_RATIOS = [
    ("gate round trip / WRPKRU pair", GATE, PAIR, ("<=", GATE_MAX)),
    ("floor model: pair + call + checks / pair", "BM_FloorCall", PAIR),
    ("floor model: + a stack switch / pair", "BM_FloorSwitch", PAIR),
    ("floor model: + trusted host state / pair", TRUSTED, PAIR),
    ("gate round trip / the last floor model", GATE, TRUSTED),
    ("gate round trip / plain call", GATE, "BM_PlainCall"),
    # Call checks pointer arguments against the host's memory; integers
    # pass unchecked (the same load inside either way).
    ("gate round trip, pointer argument / integer argument",
     "BM_GateRoundTripPointerArg", "BM_GateRoundTripIntegerArg"),
    ("gate round trip, integer argument / no argument",
     "BM_GateRoundTripIntegerArg", GATE),
    ("pair + 2 selector stores / pair", "BM_WrpkruPairWithStores", PAIR),
    ("callback round trip / gate round trip", CALLBACK, GATE),
    ("callback round trip / native call", CALLBACK, NATIVE_CB),
    ("intercepted syscall / plain syscall", INTERCEPTED, SYSCALL),
    ("syscall, dispatch armed / not", SYSCALL, "BM_PlainSyscallNoDispatch"),
    ("fault + Reset (SIGILL) / signal", "BM_FaultAndReset",
     "BM_SignalRoundTrip"),
    ("fault + Reset (SIGILL) / fork + exit + wait", "BM_FaultAndReset", FORK,
     ("<", 1.0)),
    ("fault + Reset (SEGV_PKUERR) / fork + exit + wait",
     "BM_FaultAndResetSegv", FORK, ("<", 1.0)),
    ("fault + Reset (SEGV at 8) / fork + exit + wait", "BM_FaultAndResetNull",
     FORK, ("<", 1.0)),
]
# Issue 16's lifecycle, each against a baseline of the same program (gate or
# keys: key_cache_bench): (label, program, time, baseline, target in us on
# the time itself or None). The hit is the gate round trip measured in
# key_cache_bench; fork + exit + wait is a process sandbox's fresh worker.
LIFECYCLE = [
    ("key-cache miss, 1 MiB touched / hit (gate round trip)", "keys",
     "BM_KeyMiss/1024/0", "BM_KeyHit", 20),
    ("key-cache miss, nothing touched / hit", "keys", "BM_KeyMiss/0/0",
     "BM_KeyHit", None),
    # The most a heap keeps in 4 KiB pages, and the sparse chunk that was
    # the slowest miss before it became huge (allocator/huge_chunks.h).
    ("key-cache miss, 48 KiB touched / hit", "keys", "BM_KeyMiss/48/0",
     "BM_KeyHit", 20),
    ("key-cache miss, 448 KiB touched / hit", "keys", "BM_KeyMiss/448/0",
     "BM_KeyHit", 20),
    ("create + first call + destroy / fork + exit + wait", "gate",
     "BM_CreateCallDestroy", FORK, 50),
    ("Reset + the call renewing the context / gate round trip", "gate",
     "BM_Reset", GATE, 20),
    ("fault to status, SEGV_PKUERR / signal through the entry", "gate",
     "BM_FaultToStatusSegv", "BM_SignalRoundTripHost", 20),
    ("fault to status, SIGILL / signal through the entry", "gate",
     "BM_FaultToStatus", "BM_SignalRoundTripHost", None),
]
# library_bench's operations: (label, name with {} for Native, Inside,
# Paired, Calibration, Process or ProcessPipe, the paired ratio's target or
# None: reported only).
KIB = {1 << 10: "1 KiB", 4 << 10: "4 KiB", 16 << 10: "16 KiB",
       64 << 10: "64 KiB", 256 << 10: "256 KiB", 1 << 20: "1 MiB"}
LIB_OPS = [
    ("zlib compress2, 256 KiB", "BM_ZlibCompress{}/262144", LIB_MIN),
    ("zlib uncompress, 256 KiB", "BM_ZlibUncompress{}/262144", LIB_MIN),
    ("libpng decode, 512x512 RGBA", "BM_PngDecode{}/512", LIB_MIN),
    ("zlib compress2, 1 KiB", "BM_ZlibCompress{}/1024", None),
    ("zlib uncompress, 1 KiB", "BM_ZlibUncompress{}/1024", None),
] + [
    (f"{what} {KIB[n]}", f"BM_{bm}{{}}/{n}",
     CODEC_MIN if n >= 64 << 10 else None)
    for what, bm in (("libjpeg-turbo decode, JPEG of", "JpegDecode"),
                     ("libxml2 parse + free, document of", "XmlParse"))
    for n in KIB]


def parse(data):
    """Google Benchmark JSON -> {name: {"ns", "counters", "reps"}}: the
    median real time and the median aggregate's row (with one repetition,
    that repetition's), and each repetition's row."""
    out = {}
    for row in data.get("benchmarks", []):
        name = row.get("run_name", row["name"])
        name = name.removesuffix("/real_time").removesuffix("/manual_time")
        b = out.setdefault(name, {"ns": None, "counters": {}, "reps": []})
        if row.get("error_occurred"):
            b["error"] = row.get("error_message", "error")
            continue
        ns = row["real_time"] * UNIT_NS[row.get("time_unit", "ns")]
        if row.get("run_type", "iteration") == "iteration":
            b["reps"].append(row)
            if b["ns"] is None:
                b["ns"], b["counters"] = ns, row
        elif row.get("aggregate_name") == "median":
            b["ns"], b["counters"] = ns, row
    return out


def load(path):
    """(parse(), context) of a file; no file or an empty one: nothing."""
    try:
        with open(path) as f:
            data = json.loads(f.read() or "{}")
    except (OSError, TypeError):
        data = {}
    return parse(data), data.get("context", {})


def time_of(benches, spec):
    """Median ns of a benchmark, or of a derived (name, minus, divisor)."""
    name, minus, divisor = (spec, None, 1) if isinstance(spec, str) else spec
    t = [benches.get(n, {}).get("ns") for n in (name, minus) if n]
    return None if None in t else (t[0] - sum(t[1:])) / divisor


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def median_interval(values, confidence=CONFIDENCE):
    """(median, low, high, coverage), or None for no values. low and high:
    the order statistics x(k), x(n+1-k) with the largest k whose coverage
    1 - 2 P(Binomial(n, 1/2) < k) is at least `confidence`, a distribution-
    free interval for the median; with too few values, the extremes."""
    v = sorted(values)
    n = len(v)
    if n == 0:
        return None
    below = [sum(math.comb(n, j) for j in range(k)) / 2 ** n
             for k in range(n // 2 + 2)]  # below[k] = P(B < k)
    k = max([c for c in range(1, n // 2 + 1)
             if 1 - 2 * below[c] >= confidence], default=1)
    return statistics.median(v), v[k - 1], v[n - k], 1 - 2 * below[k]


def judge(value, target):
    """'**met**', '**missed**' or 'not measured' for value against (op, x)."""
    if value is None:
        return "not measured"
    op, x = target
    ok = value <= x if op == "<=" else value < x
    return "**met**" if ok else "**missed**"


def heap_verdict(size_ratios):
    """Verdict on [(size, inside / jemalloc)]: at most HEAP_MAX at each."""
    if not size_ratios or any(r is None for _, r in size_ratios):
        return "not measured"
    over = [f"{s} B" for s, r in size_ratios if r > HEAP_MAX]
    return "**missed** at " + ", ".join(over) if over else "**met**"


def lib_verdict(p, target=LIB_MIN):
    """Verdict on a median_interval() of paired ratios: plainly met only if
    the whole interval, of full coverage, is at or above the target."""
    if p is None:
        return "not measured"
    med, low, high, coverage = p
    if med < target:
        return "**missed**" + (" (within noise: the interval reaches it)"
                               if high >= target else "")
    if low < target:
        return "**met** by the median only (the interval reaches below)"
    if coverage < CONFIDENCE:
        return ("**met** by the median only (too few repetitions for a 95% "
                "interval)")
    return "**met**"


def fmt(x, decimals=None, unit=""):
    """A ratio with `decimals` decimals, or a time to about 3 digits."""
    if x is None:
        return "n/a"
    if decimals is None:
        decimals = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:.{decimals}f}{unit}"


def table(header, rows):
    return [f"| {' | '.join(header)} |", "|---" * len(header) + "|",
            *(f"| {' | '.join(r)} |" for r in rows), ""]


def counters_of(benches, prefix):
    """The counters of the benchmark named `prefix` with any /suffix."""
    for name, b in benches.items():
        if name.split("/")[0] == prefix:
            return b.get("counters", {})
    return {}


def gate_section(g):
    rows, verdicts = [], []
    # BM_GateOverFloor times the gate and the floor model in alternating
    # blocks and reports the median of the per-block ratios.
    over = counters_of(g, "BM_GateOverFloor")
    ratios = [("gate round trip / trusted floor model, interleaved",
                    over.get("gate_ns"), over.get("floor_ns"),
                    over.get("ratio"), ("<=", GATE_FLOOR_MAX))]
    for label, num, den, *target in GATE_RATIOS:
        a, b = time_of(g, num), time_of(g, den)
        ratios.append((label, a, b, ratio(a, b), *target))
    for label, a, b, r, *target in ratios:
        goal = ""
        if target:
            goal = f"{target[0][0]} {target[0][1]:g}"
            verdicts.append((f"{label} {goal}", fmt(r, 2, "x"),
                             judge(r, target[0])))
            goal += f": {verdicts[-1][2]}"
        rows.append((label, fmt(a), fmt(b), fmt(r, 2, "x"), goal))
    return verdicts, ["## Gate, syscalls, faults (gate_bench)", "", *table(
        ("ratio", "ns", "baseline ns", "ratio", "target"), rows)]


def heap_section(h):
    def per_pair(kind, size):
        name = f"BM_MallocFree{kind}/{size}"
        t = time_of(h, (name, "BM_MallocFreeInsideEmpty", 1)
                    if kind == "Inside" else name)
        pairs = h.get(name, {}).get("counters", {}).get("pairs", HEAP_PAIRS)
        return None if t is None else t / pairs

    rows, target = [], []
    for size in HEAP_SIZES:
        t = [per_pair(k, size)
             for k in ("Inside", "NativeJemalloc", "Host", "Glibc")]
        if size in HEAP_TARGET_SIZES:
            target.append((size, ratio(t[0], t[1])))
        rows.append((str(size), fmt(t[0]), fmt(t[1]), *(
            fmt(ratio(x, t[1]), 2, "x") for x in (t[0], t[2], t[3]))))
    got = [r for _, r in target if r is not None]
    return [(f"malloc/free pair inside / native jemalloc <= {HEAP_MAX:g}, "
             f"at {HEAP_TARGET_SIZES[0]} B to {HEAP_TARGET_SIZES[-1]} B",
             f"{min(got):.2f}x - {max(got):.2f}x" if got else "n/a",
             heap_verdict(target))], [
        "## Heap (heap_bench): ns per malloc/free pair", "",
        "Inside: (Inside - InsideEmpty) / pairs, the enclosing Call "
        "subtracted.", "", *table(
            ("size, B", "inside", "native jemalloc", "inside / jemalloc",
             "host-routed / jemalloc", "glibc / jemalloc"), rows)]


def cpu_time_of(benches, name):
    """Median CPU ns of a benchmark (its median row's cpu_time)."""
    row = benches.get(name, {}).get("counters", {})
    t = row.get("cpu_time")
    return None if t is None else t * UNIT_NS[row.get("time_unit", "ns")]


def lifecycle_section(gate, keys):
    """Issue 16's lifecycle against its baselines: ratios, and verdicts on
    the absolute targets (median real time, or manual time)."""
    programs = {"gate": gate or {}, "keys": keys or {}}
    rows, verdicts = [], []
    for label, program, num, den, max_us in LIFECYCLE:
        b = programs[program]
        a, base = time_of(b, num), time_of(b, den)
        cpu = cpu_time_of(b, num)
        goal = ""
        if max_us is not None:
            us = None if a is None else a / 1e3
            v = judge(us, ("<=", max_us))
            what = label.split(" / ")[0]
            verdicts.append((f"{what} <= {max_us:g} us", fmt(us, unit=" us"),
                             v))
            goal = f"<= {max_us:g} us: {v}"
        rows.append((label, fmt(a and a / 1e3), fmt(cpu and cpu / 1e3),
                     fmt(base), fmt(ratio(a, base), unit="x"), goal))
    return verdicts, [
        "## Lifecycle against its baselines (issue 16: gate_bench, "
        "key_cache_bench)", "",
        "Each ratio divides two benchmarks of one program. Fault to status "
        "is manual time around the faulting Call alone (its CPU column "
        "covers the untimed Reset too).", "", *table(
            ("measure / baseline", "time, us", "CPU, us", "baseline, ns",
             "ratio", "target"), rows)]


def lib_section(lib):
    def paired(name, counter="paired_ratio"):
        reps = lib.get(name, {}).get("reps", [])
        return median_interval([r[counter] for r in reps if counter in r])

    def interval(p):
        return f"{p[1]:.3f} - {p[2]:.3f} ({100 * p[3]:.0f}%)" if p else "n/a"

    verdicts, rows = [], []
    for label, bm, target in LIB_OPS:
        p, c = paired(bm.format("Paired")), paired(bm.format("Calibration"))
        run = lib.get(bm.format("Paired"), {})
        if not run and target is None:
            continue  # an operation this run left out
        v = lib_verdict(p, target) if target else ""
        if target:
            verdicts.append((f"{label}: inside / native throughput >= "
                             f"{target:g}, paired", f"{fmt(p and p[0], 3)}, "
                             f"interval {interval(p)}", v))
        native = time_of(lib, bm.format("Native"))
        cpu = paired(bm.format("Paired"), "paired_cpu_ratio")
        rows.append((
            label, f"{len(run.get('reps', []))} x "
            f"{run.get('counters', {}).get('pair_count', 0):.0f}",
            fmt(p and p[0], 3), interval(p), fmt(c and c[0], 3), *(
                fmt(ratio(native, time_of(lib, bm.format(k))), 3)
                for k in ("Inside", "Process", "ProcessPipe")),
            fmt(cpu and cpu[0], 3),
            fmt(ratio(cpu_time_of(lib, bm.format("Native")),
                      cpu_time_of(lib, bm.format("Inside"))), 3), v))
    return verdicts, [
        "## Libraries (library_bench): throughput inside / unsandboxed", "",
        "Paired: native and inside alternate in one loop; the median over "
        "the repetitions of each one's median native / inside time, with a "
        "distribution-free interval (its coverage in parentheses). "
        "Calibration: native on both sides. Separate: each side in its "
        "own benchmark. Process: a worker process, data in shared memory or "
        "on the pipes. CPU: the same ratios of the calling thread's CPU "
        "time (paired: per pair; separate: of the median CPU times).", "",
        *table(("operation", "reps x pairs", "paired", "interval",
                "calibration", "separate", "process, shm", "process, pipe",
                "paired, CPU", "separate, CPU", "verdict"), rows)]


def cpu_model():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f
                     if line.startswith("model name")), "unknown CPU")


def render(gate, heap, lib, context, commands, keys=None,
           only_lifecycle=False):
    """The Markdown report: verdicts first, then each program's ratios."""
    verdicts, sections = [], []
    parts = [] if only_lifecycle else [
        (gate, gate_section), (heap, heap_section), (lib, lib_section)]
    if gate or keys:
        parts.append((True, lambda _: lifecycle_section(gate, keys)))
    for benches, section in parts:
        if benches:
            v, s = section(benches)
            verdicts += v
            sections += s
    failed = sorted(f"{n} ({b['error']})" for d in (gate, heap, lib, keys or {})
                    for n, b in d.items() if "error" in b)
    return "\n".join([
        "# Benchmark results", "",
        "Written by `bench/verdicts.py`; do not edit, run `bench/run.sh`. "
        "Times are medians over the repetitions; each ratio is against a "
        "baseline measured in the same run, repetitions interleaved.", "",
        *[f"- command: `{c}`" for c in commands],
        f"- date: {context.get('date', 'unknown')}; machine: {cpu_model()}, "
        f"{context.get('num_cpus', '?')} CPUs, Linux {platform.release()}; "
        f"Google Benchmark library build: "
        f"{context.get('library_build_type', 'unknown')}", "",
        "## Verdicts", "", *table(("target", "measured", "verdict"),
                                  verdicts),
        *([f"Failed: {', '.join(failed)}.", ""] if failed else []),
        *sections,
        "What each benchmark does: the comments at the top of bench/*.cc.",
        ""])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--gate", "--heap", "--lib", "--keys", "--out"):
        ap.add_argument(flag)
    ap.add_argument("--command", action="append", default=[])
    ap.add_argument("--lifecycle", action="store_true")
    args = ap.parse_args(argv)
    (gate, c1), (heap, c2), (lib, c3), (keys, c4) = map(
        load, (args.gate, args.heap, args.lib, args.keys))
    text = render(gate, heap, lib, c1 or c2 or c3 or c4, args.command, keys,
                  args.lifecycle)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
