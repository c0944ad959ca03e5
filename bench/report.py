#!/usr/bin/env python3
"""Turns gate_bench's, heap_bench's and library_bench's JSON output into
bench/RESULTS.md (stdlib only).

  python3 bench/report.py --json build/bench/gate_bench.json \
      [--heap-json build/bench/heap_bench.json] \
      [--lib-json build/bench/library_bench.json] \
      --out bench/RESULTS.md --command "bench/run.sh" [--command ...] \
      [--build build]

Every figure is the median over repetitions of one run, so every ratio
compares numbers measured in the same process, interleaved in time.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys

TARGET_GATE_OVER_PAIR = 1.3
CALLBACKS_PER_CALL = 64  # BM_CallbackRoundTrip/64 in gate_bench.cc
SYSCALLS_PER_CALL = 16  # kSyscallsPerCall in gate_bench.cc

TARGET_INSIDE_OVER_JEMALLOC = 2.0
# The sizes of the 2x target ("the common small sizes"), and all of them.
HEAP_TARGET_SIZES = (16, 64, 256, 1024)
HEAP_SIZES = (16, 64, 256, 1024, 4096, 16384, 65536)
HEAP_PAIRS = 1000  # kPairs in heap_bench.cc; the `pairs` counter wins

UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
TARGET_INSIDE_OVER_NATIVE_THROUGHPUT = 0.98

# User counters gate_bench sets on the fault benchmarks, heap_bench and
# library_bench on all.
COUNTERS = ("frames", "pkey", "pairs", "bytes", "packed_bytes", "png_bytes",
            "faults_per_call", "paired_ratio", "native_ns", "inside_ns",
            "pair_count")


def load_runs(path):
    """name -> list of per-repetition real times in ns.

    A missing or empty file (a benchmark binary whose benchmarks the filter
    all left out writes nothing) gives no runs."""
    data = {}
    if path:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            text = ""
        if text.strip():
            data = json.loads(text)
    runs = {}
    errors = {}
    counters = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue  # aggregates: recomputed here from the repetitions
        name = b.get("run_name", b["name"])
        if b.get("error_occurred"):
            errors[name] = b.get("error_message", "error")
            continue
        scale = UNIT_NS[b.get("time_unit", "ns")]
        runs.setdefault(name, []).append(b["real_time"] * scale)
        for c in COUNTERS:
            if c in b:
                counters.setdefault(name, {}).setdefault(c, []).append(b[c])
    return data.get("context", {}), runs, errors, counters


def load_cpu_times(path):
    """name -> list of per-repetition CPU times in ns (of the calling
    thread; on a VM with steal-time accounting, without the time the vCPU
    was descheduled)."""
    if not path:
        return {}
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return {}
    if not text.strip():
        return {}
    cpu = {}
    for b in json.loads(text).get("benchmarks", []):
        if (b.get("run_type", "iteration") != "iteration"
                or b.get("error_occurred")):
            continue
        name = b.get("run_name", b["name"])
        scale = UNIT_NS[b.get("time_unit", "ns")]
        cpu.setdefault(name, []).append(b["cpu_time"] * scale)
    return cpu


def lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def hypervisor():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        if line.startswith("Hypervisor vendor:"):
            return line.split(":", 1)[1].strip()
    return None


def compile_flags(build, target="gate_bench"):
    """The CXX flags `target` was compiled with, from the build tree."""
    if not build:
        return None
    path = os.path.join(build, "bench", "CMakeFiles", f"{target}.dir",
                        "flags.make")
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("CXX_FLAGS = "):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def fmt_ns(x):
    if x is None:
        return "n/a"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_signed(x):
    """fmt_ns, saying so when a difference of medians came out negative."""
    if x is not None and x < 0:
        return f"{fmt_ns(x)} (below zero: within the noise)"
    return fmt_ns(x)


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def div(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def quantities(t):
    """Named figures (ns) from one table of per-benchmark times."""
    def sub_div(a, b):
        if a is None or b is None:
            return None
        return (a - b) / CALLBACKS_PER_CALL

    def per_syscall(a, b):
        if a is None or b is None:
            return None
        return (a - b) / SYSCALLS_PER_CALL

    def minus(a, b):
        return None if a is None or b is None else a - b

    n = CALLBACKS_PER_CALL
    empty16 = t.get("BM_CompartmentEmpty16")
    return {
        "pair": t.get("BM_WrpkruPair"),
        "pair_same": t.get("BM_WrpkruPairSame"),
        "pair_loads": t.get("BM_WrpkruPairLoads"),
        "pair_stores": t.get("BM_WrpkruPairWithStores"),
        "stores": t.get("BM_SelectorStorePair"),
        # What the selector's two byte stores add to the WRPKRU pair.
        "selector": minus(t.get("BM_WrpkruPairWithStores"),
                          t.get("BM_WrpkruPair")),
        "plain": t.get("BM_PlainCall"),
        # Floor models of a gate (trampolines/gate_floor.S).
        "floor_call": t.get("BM_FloorCall"),
        "floor_switch": t.get("BM_FloorSwitch"),
        "floor_trusted": t.get("BM_FloorTrusted"),
        "gate": t.get("BM_GateRoundTrip"),
        "gate_args": t.get("BM_GateRoundTripArgs"),
        # One callback: the enclosing Call and loop set-up cancel out.
        "callback": sub_div(t.get(f"BM_CallbackRoundTrip/{n}"),
                            t.get("BM_CallbackRoundTrip/0")),
        "native_cb": sub_div(t.get(f"BM_CallbackNative/{n}"),
                             t.get("BM_CallbackNative/0")),
        "fault": t.get("BM_FaultAndReset"),
        "fault_segv": t.get("BM_FaultAndResetSegv"),
        "fault_null": t.get("BM_FaultAndResetNull"),
        "reset": t.get("BM_Reset"),
        "signal": t.get("BM_SignalRoundTrip"),
        "signal_host": t.get("BM_SignalRoundTripHost"),
        "fork": t.get("BM_ForkExitWait"),
        "syscall": t.get("BM_PlainSyscall"),
        "syscall_nosud": t.get("BM_PlainSyscallNoDispatch"),
        # What an armed dispatch adds to a host syscall (selector ALLOW).
        "sud_host": minus(t.get("BM_PlainSyscall"),
                          t.get("BM_PlainSyscallNoDispatch")),
        "intercepted16": t.get("BM_InterceptedSyscall"),
        "denied16": t.get("BM_DeniedSyscallErrno"),
        "empty16": empty16,
        # One syscall from compartment code: the enclosing Call and the loop
        # cancel out.
        "intercepted": per_syscall(t.get("BM_InterceptedSyscall"), empty16),
        "denied": per_syscall(t.get("BM_DeniedSyscallErrno"), empty16),
        "symbolize": t.get("BM_SymbolizeOne"),
        "smaps_code": t.get("BM_ReadSmaps/code"),
        "smaps_global": t.get("BM_ReadSmaps/host_global"),
        "smaps_unmapped": t.get("BM_ReadSmaps/unmapped"),
    }


# (label, numerator, denominator) over quantities().
RATIOS = [
    ("gate round trip / WRPKRU pair", "gate", "pair"),
    ("gate round trip (2 args) / WRPKRU pair", "gate_args", "pair"),
    ("gate round trip / plain call", "gate", "plain"),
    ("floor model: pair + call + a check after each WRPKRU / WRPKRU pair",
     "floor_call", "pair"),
    ("floor model: + a stack switch / WRPKRU pair", "floor_switch", "pair"),
    ("floor model: + trusted copies of host state, registers cleared, "
     "checks against memory / WRPKRU pair", "floor_trusted", "pair"),
    ("gate round trip / the last floor model", "gate", "floor_trusted"),
    ("callback round trip / WRPKRU pair", "callback", "pair"),
    ("callback round trip / gate round trip", "callback", "gate"),
    ("callback round trip / native call in the loop", "callback",
     "native_cb"),
    ("intercepted syscall (getppid, allowed) / plain syscall",
     "intercepted", "syscall"),
    ("intercepted syscall / plain syscall on a thread without dispatch",
     "intercepted", "syscall_nosud"),
    ("denied syscall (errno) / plain syscall", "denied", "syscall"),
    ("denied syscall (errno) / intercepted syscall", "denied",
     "intercepted"),
    ("intercepted syscall / signal round trip", "intercepted", "signal"),
    ("plain syscall, dispatch armed / dispatch not armed", "syscall",
     "syscall_nosud"),
    ("WRPKRU pair + 2 selector stores / WRPKRU pair", "pair_stores", "pair"),
    ("gate round trip / (WRPKRU pair + 2 selector stores)", "gate",
     "pair_stores"),
    ("WRPKRU pair (same value) / WRPKRU pair", "pair_same", "pair"),
    ("WRPKRU pair + 3 dependent loads after each / WRPKRU pair",
     "pair_loads", "pair"),
    ("fault + Reset (SIGILL) / signal round trip", "fault", "signal"),
    ("fault + Reset (SIGILL) / fork + exit + wait", "fault", "fork"),
    ("fault + Reset (SIGSEGV, SEGV_PKUERR) / signal round trip",
     "fault_segv", "signal"),
    ("fault + Reset (SIGSEGV at address 8) / signal round trip",
     "fault_null", "signal"),
    ("fault + Reset (SIGSEGV at address 8) / fork + exit + wait",
     "fault_null", "fork"),
    ("Reset (+ the Call that maps the stack again) / gate round trip",
     "reset", "gate"),
    ("signal through mpkbox's entry, on a thread with Syscall User "
     "Dispatch armed / signal round trip", "signal_host", "signal"),
]

def fmt_size(n):
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def fmt_range(values, fmt):
    """'a' or 'a - b' over the values that are not None."""
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    lo, hi = min(v), max(v)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)} - {fmt(hi)}"


# heap_bench's benchmarks: (key, name prefix, description).
HEAP_KINDS = [
    ("inside", "BM_MallocFreeInside",
     "in the compartment: one `box->Call` of the pair loop"),
    ("jemalloc", "BM_MallocFreeNativeJemalloc",
     "host, libjemalloc.so's own malloc/free (dlsym): native jemalloc"),
    ("glibc", "BM_MallocFreeGlibc", "host, glibc's malloc/free (dlsym)"),
    ("host", "BM_MallocFreeHost",
     "host, plain malloc/free: mpkbox's routing to the host arena"),
    ("mallocx", "BM_MallocFreeMallocx",
     "host, jemalloc `mallocx(n, 0)` / `dallocx(p, 0)`"),
    ("align16", "BM_MallocFreeMallocxAlign16",
     "host, jemalloc `mallocx(n, MALLOCX_ALIGN(16))` / `dallocx(p, 0)`"),
]
HEAP_EMPTY = "BM_MallocFreeInsideEmpty"


def heap_section(runs, errors, counters):
    """(verdict lines, section lines) for heap_bench's runs; empty if none."""
    names = [n for n in runs if n.startswith("BM_MallocFree")]
    if not names and not any(k.startswith("BM_MallocFree") for k in errors):
        return [], []

    def pairs_of(name):
        v = counters.get(name, {}).get("pairs")
        return statistics.median(v) if v else HEAP_PAIRS

    def per_pair(stat):
        """(kind, size) -> ns per pair from one statistic of the runs."""
        t = {k: stat(v) for k, v in runs.items()}
        empty = t.get(HEAP_EMPTY)
        out = {}
        for key, prefix, _ in HEAP_KINDS:
            for size in HEAP_SIZES:
                name = f"{prefix}/{size}"
                if name not in t:
                    continue
                x = t[name]
                if key == "inside" and empty is not None:
                    x -= empty  # the Call around the batch
                out[(key, size)] = x / pairs_of(name)
        return out

    med = per_pair(statistics.median)
    best = per_pair(min)

    def r(q, num, den, size):
        return div(q.get((num, size)), q.get((den, size)))

    table = []
    for size in HEAP_SIZES:
        table.append(
            f"| {fmt_size(size)} | "
            + " | ".join(fmt_ns(med.get((k, size)))
                         for k in ("inside", "jemalloc", "glibc", "host"))
            + " | "
            + " | ".join(fmt_ratio(r(med, num, den, size)) for num, den in (
                ("inside", "jemalloc"), ("host", "jemalloc"),
                ("glibc", "jemalloc"), ("inside", "host")))
            + f" | {fmt_ratio(r(best, 'inside', 'jemalloc', size))} |")

    api = []
    for size in HEAP_SIZES:
        api.append(
            f"| {fmt_size(size)} | {fmt_ns(med.get(('mallocx', size)))} | "
            f"{fmt_ns(med.get(('align16', size)))} | "
            f"{fmt_ratio(r(med, 'mallocx', 'jemalloc', size))} | "
            f"{fmt_ratio(r(med, 'align16', 'jemalloc', size))} | "
            f"{fmt_ratio(r(med, 'host', 'mallocx', size))} |")

    # The target, over the common small sizes.
    target = [r(med, "inside", "jemalloc", s) for s in HEAP_TARGET_SIZES]
    target_min = [r(best, "inside", "jemalloc", s) for s in HEAP_TARGET_SIZES]
    sizes_text = (f"{fmt_size(HEAP_TARGET_SIZES[0])} to "
                  f"{fmt_size(HEAP_TARGET_SIZES[-1])}")
    if any(x is None for x in target):
        verdict = (f"Heap: the 2x target ({sizes_text}) cannot be judged: "
                   f"not every size was measured.")
    else:
        over = [fmt_size(s) for s, x in zip(HEAP_TARGET_SIZES, target)
                if x > TARGET_INSIDE_OVER_JEMALLOC]
        head = (f"Heap: a malloc/free pair of {sizes_text} inside a "
                f"compartment costs {fmt_range(target, fmt_ratio)} native "
                f"jemalloc's (medians; fastest repetitions: "
                f"{fmt_range(target_min, fmt_ratio)}): the target of at most "
                f"{TARGET_INSIDE_OVER_JEMALLOC:g}x ")
        if not over:
            verdict = head + "**holds** at every one of these sizes."
        else:
            verdict = (head + "is **missed** at " + ", ".join(over)
                       + f" ({len(over)} of {len(target)} sizes).")
    lines = [verdict]

    host = [r(med, "host", "jemalloc", s) for s in HEAP_TARGET_SIZES]
    mx = [r(med, "mallocx", "jemalloc", s) for s in HEAP_TARGET_SIZES]
    ih = [r(med, "inside", "host", s) for s in HEAP_TARGET_SIZES]
    if not all(x is None for x in host):
        text = (f"On the host, mpkbox's routed malloc/free costs "
                f"{fmt_range(host, fmt_ratio)} native jemalloc's at the same "
                f"sizes")
        if not all(x is None for x in mx):
            text += (f"; jemalloc's own mallocx/dallocx, which the routing "
                     f"calls, cost {fmt_range(mx, fmt_ratio)} alone")
        if not all(x is None for x in ih):
            text += (f"; inside a compartment a pair costs "
                     f"{fmt_range(ih, fmt_ratio)} the host-routed one")
        lines.append(text + ".")
    big = [s for s in HEAP_SIZES if s not in HEAP_TARGET_SIZES]
    big_parts = []
    for size in big:
        x = med.get(("inside", size))
        if x is None:
            continue
        part = (f"{fmt_size(size)} {fmt_ns(x)} ns "
                f"({fmt_ratio(r(med, 'inside', 'jemalloc', size))} jemalloc")
        a16 = med.get(("align16", size))
        if a16 is not None:
            part += (f"; jemalloc with MALLOCX_ALIGN(16) alone: "
                     f"{fmt_ns(a16)} ns")
        big_parts.append(part + ")")
    if big_parts:
        lines.append("Larger sizes inside (per pair): "
                     + ", ".join(big_parts) + ".")
    failed = {k: v for k, v in errors.items() if k.startswith("BM_MallocFree")}
    if failed:
        lines.append("Heap benchmarks that failed: " + ", ".join(
            f"{k} ({v})" for k, v in sorted(failed.items())) + ".")

    # Per benchmark.
    rows = []
    known = []
    for key, prefix, what in HEAP_KINDS:
        for size in HEAP_SIZES:
            known.append((f"{prefix}/{size}", what))
    known.append((HEAP_EMPTY, "the same Call with 0 pairs: subtracted from "
                              "Inside"))
    names_known = {n for n, _ in known}
    known += [(n, "") for n in sorted(runs)
              if n.startswith("BM_MallocFree") and n not in names_known]
    for name, what in known:
        if name not in runs:
            if name in errors:
                rows.append(f"| {name} | n/a | n/a | n/a | 0 | "
                            f"{errors[name]} |")
            continue
        v = sorted(runs[name])
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
        rows.append(f"| {name} | {fmt_ns(statistics.median(v))} | "
                    f"{fmt_ns(v[0])} | {fmt_ns(q[0])} - {fmt_ns(q[2])} | "
                    f"{len(v)} | {what} |")

    section = [
        "## Heap: malloc/free pairs",
        "",
        *lines,
        "",
        "Per pair (ns, medians over repetitions; inside: (Inside - "
        "InsideEmpty) / pairs). Ratios are of medians except the last "
        "column, which compares each side's fastest repetition.",
        "",
        "| size | inside | native jemalloc | glibc | host-routed | "
        "inside / jemalloc | host / jemalloc | glibc / jemalloc | "
        "inside / host | inside / jemalloc, of minimums |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *table,
        "",
        "jemalloc's non-standard API on its default arenas (ns per pair, "
        "medians): what mpkbox's host path (`mallocx`/`dallocx` on the host "
        "arena) and the allocator entry (`mallocx` with `MALLOCX_ALIGN(16)` "
        "for requests that take the gate) call.",
        "",
        "| size | mallocx / dallocx | mallocx ALIGN(16) / dallocx | "
        "mallocx / jemalloc | ALIGN(16) / jemalloc | host-routed / mallocx |",
        "|---|---|---|---|---|---|",
        *api,
        "",
        f"### Heap per benchmark (real time per iteration of "
        f"{HEAP_PAIRS} pairs, ns)",
        "",
        "| benchmark | median | min | interquartile | reps | what |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return [verdict], section


# library_bench's operations: (key, label, native, inside, process through
# shared memory, process through the pipes, part of the 0.98 target).
LIB_BIG = 256 << 10
LIB_SMALL = 1 << 10
PNG_SIDE = 512
LIB_OPS = [
    ("compress_big", f"zlib compress2 (level 6), {LIB_BIG >> 10} KiB of text",
     f"BM_ZlibCompressNative/{LIB_BIG}", f"BM_ZlibCompressInside/{LIB_BIG}",
     f"BM_ZlibCompressProcess/{LIB_BIG}",
     f"BM_ZlibCompressProcessPipe/{LIB_BIG}", True),
    ("uncompress_big", f"zlib uncompress, back to {LIB_BIG >> 10} KiB",
     f"BM_ZlibUncompressNative/{LIB_BIG}",
     f"BM_ZlibUncompressInside/{LIB_BIG}", None, None, True),
    ("png", f"libpng decode, {PNG_SIDE}x{PNG_SIDE} RGBA (simplified API)",
     f"BM_PngDecodeNative/{PNG_SIDE}", f"BM_PngDecodeInside/{PNG_SIDE}",
     None, None, True),
    ("compress_small", f"zlib compress2 (level 6), {LIB_SMALL >> 10} KiB",
     f"BM_ZlibCompressNative/{LIB_SMALL}",
     f"BM_ZlibCompressInside/{LIB_SMALL}",
     f"BM_ZlibCompressProcess/{LIB_SMALL}",
     f"BM_ZlibCompressProcessPipe/{LIB_SMALL}", False),
    ("uncompress_small", f"zlib uncompress, back to {LIB_SMALL >> 10} KiB",
     f"BM_ZlibUncompressNative/{LIB_SMALL}",
     f"BM_ZlibUncompressInside/{LIB_SMALL}", None, None, False),
]
LIB_PREFIXES = ("BM_Zlib", "BM_PngDecode")
# The paired benchmarks of each operation (native and inside alternating in
# one loop: the verdict's measurement) and their calibration (native
# against native in the same loop), by LIB_OPS key; None if there is none.
LIB_PAIRED = {
    "compress_big": (f"BM_ZlibCompressPaired/{LIB_BIG}",
                     f"BM_ZlibCompressCalibration/{LIB_BIG}"),
    "uncompress_big": (f"BM_ZlibUncompressPaired/{LIB_BIG}",
                       f"BM_ZlibUncompressCalibration/{LIB_BIG}"),
    "png": (f"BM_PngDecodePaired/{PNG_SIDE}",
            f"BM_PngDecodeCalibration/{PNG_SIDE}"),
    "compress_small": (f"BM_ZlibCompressPaired/{LIB_SMALL}", None),
    "uncompress_small": (f"BM_ZlibUncompressPaired/{LIB_SMALL}", None),
}


def lib_name(name):
    """A library_bench run name without Google Benchmark's /real_time or
    /manual_time."""
    return re.sub(r"/(real|manual)_time$", "", name)


def median_interval(values, confidence=0.95):
    """(median, low, high, coverage) of a list: the median and a
    distribution-free confidence interval for it, the order statistics
    x(k) and x(n+1-k) with the largest k whose coverage
    1 - 2 P(Binomial(n, 1/2) < k) is at least `confidence`. With too few
    values for that, low and high are the extremes and coverage is theirs
    (below `confidence`). None for no values."""
    v = sorted(values)
    n = len(v)
    if n == 0:
        return None
    med = statistics.median(v)
    cdf = []  # P(B <= j)
    acc = 0.0
    for j in range(n + 1):
        acc += math.comb(n, j) / 2 ** n
        cdf.append(acc)
    k = 0
    for cand in range(1, n // 2 + 1):
        if 1 - 2 * cdf[cand - 1] >= confidence:
            k = cand
    if k == 0:
        return med, v[0], v[-1], (1 - 2 * cdf[0]) if n > 0 else 0.0
    return med, v[k - 1], v[n - k], 1 - 2 * cdf[k - 1]


def lib_section(runs, errors, counters, cpu_runs):
    """(verdict lines, section lines) for library_bench's runs; empty if
    none."""
    runs = {lib_name(k): v for k, v in runs.items()
            if k.startswith(LIB_PREFIXES)}
    errors = {lib_name(k): v for k, v in errors.items()
              if k.startswith(LIB_PREFIXES)}
    counters = {lib_name(k): v for k, v in counters.items()}
    cpu_runs = {lib_name(k): v for k, v in cpu_runs.items()}
    if not runs and not errors:
        return [], []

    med = {k: statistics.median(v) for k, v in runs.items()}
    best = {k: min(v) for k, v in runs.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu_runs.items()}

    def counter(name, c):
        v = counters.get(name, {}).get(c)
        return statistics.median(v) if v else None

    def mbps(name, t=med):
        """10^6 uncompressed bytes per second from one time statistic."""
        b = counter(name, "bytes")
        x = t.get(name)
        if b is None or x is None or x == 0:
            return None
        return b / x * 1e3

    def fmt_mbps(x):
        return "n/a" if x is None else f"{x:.1f}"

    def fmt_us(ns):
        if ns is None:
            return "n/a"
        us = ns / 1e3
        if abs(us) >= 100:
            return f"{us:.0f}"
        if abs(us) >= 10:
            return f"{us:.1f}"
        return f"{us:.2f}"

    def tput(num, den, t=med):
        """Throughput of `num` over that of `den`: den's time / num's."""
        if num is None or den is None:
            return None
        return div(t.get(den), t.get(num))

    def above(num, den):
        """Median time per call of `num` minus `den`'s (ns)."""
        if num is None or den is None or num not in med or den not in med:
            return None
        return med[num] - med[den]

    def fmt_ratio3(x):
        return "n/a" if x is None else f"{x:.3f}"

    def iqr(v):
        """(first quartile, third quartile) of a list of times, or None."""
        if not v or len(v) < 2:
            return None
        q = statistics.quantiles(sorted(v), n=4)
        return q[0], q[2]

    # Inside against native.
    table = []
    for key, label, native, inside, shm, pipe, target in LIB_OPS:
        b = counter(native, "bytes") or counter(inside, "bytes")
        table.append(
            f"| {label} | {fmt_size(int(b)) if b else 'n/a'} | "
            f"{fmt_mbps(mbps(native))} | {fmt_mbps(mbps(inside))} | "
            f"{fmt_ratio3(tput(inside, native))} | "
            f"{fmt_ratio3(tput(inside, native, best))} | "
            f"{fmt_ratio3(tput(inside, native, cpu_med))} | "
            f"{fmt_us(med.get(native))} | {fmt_us(med.get(inside))} | "
            f"{fmt_us(above(inside, native))} |")

    # The process sandbox, for compress2.
    proc = []
    for key, label, native, inside, shm, pipe, target in LIB_OPS:
        if shm is None and pipe is None:
            continue
        b = counter(native, "bytes") or counter(shm, "bytes")
        proc.append(
            f"| {fmt_size(int(b)) if b else 'n/a'} | "
            f"{fmt_us(med.get(native))} | {fmt_us(med.get(inside))} | "
            f"{fmt_us(med.get(shm))} | {fmt_us(med.get(pipe))} | "
            f"{fmt_ratio3(tput(inside, native))} | "
            f"{fmt_ratio3(tput(shm, native))} | "
            f"{fmt_ratio3(tput(pipe, native))} | "
            f"{fmt_us(above(inside, native))} | {fmt_us(above(shm, native))} "
            f"| {fmt_us(above(pipe, native))} |")

    # The paired benchmarks: per repetition, the median over its pairs of
    # native time / inside time.
    def paired(name):
        """median_interval of a paired benchmark's per-repetition ratios."""
        if name is None:
            return None
        v = counters.get(name, {}).get("paired_ratio")
        return median_interval(v) if v else None

    def paired_us(name, side):
        v = counters.get(name, {}).get(f"{side}_ns") if name else None
        return statistics.median(v) if v else None

    def fmt_interval(p):
        if p is None:
            return "n/a"
        return f"{p[1]:.3f} - {p[2]:.3f} ({100 * p[3]:.0f}%)"

    paired_rows = []
    for key, label, native, inside, shm, pipe, target in LIB_OPS:
        pname, cname = LIB_PAIRED.get(key, (None, None))
        if pname not in runs and pname not in errors:
            continue
        if pname in errors:
            paired_rows.append(f"| {label} | failed: {errors[pname]} "
                               f"| | | | | | | |")
            continue
        p, c = paired(pname), paired(cname)
        pairs = counter(pname, "pair_count")
        n_us, i_us = paired_us(pname, "native"), paired_us(pname, "inside")
        paired_rows.append(
            f"| {label} | {len(runs[pname])} x {pairs:.0f} | "
            f"{fmt_ratio3(p[0] if p else None)} | {fmt_interval(p)} | "
            f"{fmt_ratio3(c[0] if c else None)} | {fmt_interval(c)} | "
            f"{fmt_us(n_us)} | {fmt_us(i_us)} | "
            f"{fmt_us(None if n_us is None or i_us is None else i_us - n_us)}"
            f" |")

    # The verdict: the large inputs and the PNG, from the paired
    # benchmarks when they ran, else from the separate ones.
    ops = [o for o in LIB_OPS if o[6]]
    names = ["compress2", "uncompress", "libpng's decode"]
    what = (f"zlib compress2 and uncompress of {LIB_BIG >> 10} KiB and "
            f"libpng's decode of a {PNG_SIDE}x{PNG_SIDE} RGBA image")
    target_x = TARGET_INSIDE_OVER_NATIVE_THROUGHPUT
    pairs_of = [paired(LIB_PAIRED[o[0]][0]) for o in ops]
    calib_of = [paired(LIB_PAIRED[o[0]][1]) for o in ops]
    if all(p is not None for p in pairs_of):
        parts = ", ".join(
            f"{p[0]:.3f} ({n}; 95% interval {p[1]:.3f} - {p[2]:.3f})"
            if p[3] >= 0.95 else
            f"{p[0]:.3f} ({n}; range {p[1]:.3f} - {p[2]:.3f}, too few "
            f"repetitions for a 95% interval)"
            for n, p in zip(names, pairs_of))
        head = (f"Libraries: inside a compartment, {what} run at {parts} of "
                f"native throughput (paired: native and inside alternate "
                f"call by call in one loop; medians over the repetitions of "
                f"each repetition's median ratio)")
        if all(c is not None for c in calib_of):
            head += (f"; native against itself in the same loop gives "
                     + ", ".join(f"{c[0]:.3f}" for c in calib_of)
                     + " (the method's own bias and noise)")
        head += f": the target of at least {target_x} "
        missed = [n for n, p in zip(names, pairs_of) if p[0] < target_x]
        unsure = [n for n, p in zip(names, pairs_of)
                  if p[0] >= target_x and (p[1] < target_x or p[3] < 0.95)]
        if not missed and not unsure:
            verdict = (head + "**holds** for all three, with the whole 95% "
                       "interval of each above it.")
        elif not missed:
            verdict = (head + "**holds** for all three by the medians, but "
                       "not beyond this run's noise for "
                       + ", ".join(unsure) + " (the interval reaches below "
                       f"{target_x} or there are too few repetitions for "
                       f"one).")
        else:
            verdict = (head + "is **missed** for " + ", ".join(missed)
                       + f" ({len(missed)} of {len(pairs_of)})")
            within = [n for n, p in zip(names, pairs_of)
                      if p[0] < target_x and p[2] >= target_x]
            verdict += ("; for " + ", ".join(within) + " the 95% interval "
                        f"reaches {target_x}, so the miss is within this "
                        "run's noise." if within else ".")
    else:
        # No paired runs (a filter left them out): the separate benchmarks'
        # medians, a second apart, a weaker measurement on a noisy machine.
        ratios = [tput(o[3], o[2]) for o in ops]
        ratios_min = [tput(o[3], o[2], best) for o in ops]
        ratios_cpu = [tput(o[3], o[2], cpu_med) for o in ops]
        if any(x is None for x in ratios):
            verdict = (f"Libraries: the target of at least "
                       f"{TARGET_INSIDE_OVER_NATIVE_THROUGHPUT} of native "
                       f"throughput cannot be judged: not every one of {what} "
                       f"was measured.")
        else:
            parts = ", ".join(f"{r:.3f} ({n})" for n, r in zip(names, ratios))
            head = (f"Libraries: inside a compartment, {what} run at "
                    f"{parts} of native throughput (medians of real time; "
                    f"fastest repetitions: "
                    f"{fmt_range(ratios_min, fmt_ratio3)}; medians of CPU time: "
                    f"{fmt_range(ratios_cpu, fmt_ratio3)}): the target of at "
                    f"least {TARGET_INSIDE_OVER_NATIVE_THROUGHPUT} ")
            missed = [n for n, r in zip(names, ratios)
                      if r < TARGET_INSIDE_OVER_NATIVE_THROUGHPUT]
            if not missed:
                verdict = head + "**holds** for all three."
            else:
                verdict = (head + "is **missed** for " + ", ".join(missed)
                           + f" ({len(missed)} of {len(ratios)}).")
                # Whether a miss stands out of the noise: the interquartile
                # ranges of the two sides' repetitions.
                for n, r, o in zip(names, ratios, ops):
                    if r >= TARGET_INSIDE_OVER_NATIVE_THROUGHPUT:
                        continue
                    qn, qi = iqr(runs.get(o[2])), iqr(runs.get(o[3]))
                    if qn is None or qi is None:
                        continue
                    overlap = qi[0] <= qn[1] and qn[0] <= qi[1]
                    verdict += (
                        f" For {n}, the interquartile ranges of the "
                        f"repetitions are {fmt_us(qn[0])} - {fmt_us(qn[1])} us "
                        f"native and {fmt_us(qi[0])} - {fmt_us(qi[1])} us "
                        f"inside: "
                        + ("they overlap, so the miss is within this run's "
                           "noise." if overlap else
                           "they do not overlap."))
    lines = [verdict]

    # Small inputs and the process sandbox, in words.
    small = {o[0]: o for o in LIB_OPS}
    cs = small["compress_small"]
    us_ = small["uncompress_small"]
    cb = small["compress_big"]
    text = []
    if tput(cs[3], cs[2]) is not None:
        text.append(
            f"at {LIB_SMALL >> 10} KiB, where per-call costs weigh most, "
            f"compress2 inside runs at {fmt_ratio3(tput(cs[3], cs[2]))} of "
            f"native ({fmt_us(above(cs[3], cs[2]))} us per call above "
            f"native's {fmt_us(med.get(cs[2]))} us) and uncompress at "
            f"{fmt_ratio3(tput(us_[3], us_[2]))} "
            f"({fmt_us(above(us_[3], us_[2]))} us above "
            f"{fmt_us(med.get(us_[2]))} us)")
    ps = paired(LIB_PAIRED["compress_small"][0])
    pu = paired(LIB_PAIRED["uncompress_small"][0])
    if ps is not None and pu is not None:
        cs_p, us_p = (LIB_PAIRED["compress_small"][0],
                      LIB_PAIRED["uncompress_small"][0])
        text.append(
            f"paired call by call (each call then runs after the other "
            f"side's, with its caches partly cold), the {LIB_SMALL >> 10} KiB "
            f"calls run at {ps[0]:.3f} (compress2, "
            f"{fmt_us(paired_us(cs_p, 'inside') - paired_us(cs_p, 'native'))}"
            f" us above native's {fmt_us(paired_us(cs_p, 'native'))} us) and "
            f"{pu[0]:.3f} (uncompress, "
            f"{fmt_us(paired_us(us_p, 'inside') - paired_us(us_p, 'native'))}"
            f" us above {fmt_us(paired_us(us_p, 'native'))} us): the gate, "
            f"the allocator's callbacks for zlib's large buffers and their "
            f"lock, a fixed cost per call")
    if tput(cs[4], cs[2]) is not None:
        text.append(
            f"a process sandbox (a worker process, input and output in "
            f"shared memory, one pipe message each way) runs the same "
            f"{LIB_SMALL >> 10} KiB compress2 at "
            f"{fmt_ratio3(tput(cs[4], cs[2]))} of native "
            f"({fmt_us(above(cs[4], cs[2]))} us per call above native), "
            f"{fmt_ratio3(tput(cs[5], cs[2]))} with the data on the pipes "
            f"({fmt_us(above(cs[5], cs[2]))} us above), and the "
            f"{LIB_BIG >> 10} KiB one at {fmt_ratio3(tput(cb[4], cb[2]))} "
            f"and {fmt_ratio3(tput(cb[5], cb[2]))}")
    if text:
        lines.append(text[0][0].upper() + text[0][1:]
                     + ("; " + "; ".join(text[1:]) if text[1:] else "")
                     + ".")
    if errors:
        lines.append("Library benchmarks that failed: " + ", ".join(
            f"{k} ({v})" for k, v in sorted(errors.items())) + ".")

    # Per benchmark.
    desc = {
        "BM_ZlibCompressNative": "compress2, host's libz",
        "BM_ZlibCompressInside": "compress2, one `Call` into the "
                                 "compartment's libz",
        "BM_ZlibCompressProcess": "compress2 in the worker process; data in "
                                  "shared memory, a pipe message each way",
        "BM_ZlibCompressProcessPipe": "compress2 in the worker process; input "
                                      "and output through the pipes",
        "BM_ZlibUncompressNative": "uncompress, host's libz",
        "BM_ZlibUncompressInside": "uncompress, one `Call` into the "
                                   "compartment's libz",
        "BM_PngDecodeNative": "begin_read_from_memory + finish_read + "
                              "image_free, host's libpng",
        "BM_PngDecodeInside": "the same three as `Call`s into the "
                              "compartment's libpng (and its libz)",
        "BM_ZlibCompressPaired": "one native and one inside compress2 per "
                                 "iteration (time: both)",
        "BM_ZlibUncompressPaired": "one native and one inside uncompress per "
                                   "iteration (time: both)",
        "BM_PngDecodePaired": "one native and one inside decode per "
                              "iteration (time: both)",
        "BM_ZlibCompressCalibration": "two native compress2 per iteration, "
                                      "as the paired loop runs them",
        "BM_ZlibUncompressCalibration": "two native uncompress per iteration, "
                                        "as the paired loop runs them",
        "BM_PngDecodeCalibration": "two native decodes per iteration, as "
                                   "the paired loop runs them",
    }
    order = []
    for o in LIB_OPS:
        order += [n for n in o[2:6] if n is not None]
        order += [n for n in LIB_PAIRED.get(o[0], ()) if n is not None]
    order += sorted(n for n in set(runs) | set(errors) if n not in order)
    rows = []
    for name in order:
        what = desc.get(name.split("/")[0], "")
        if name not in runs:
            if name in errors:
                rows.append(f"| {name} | n/a | n/a | n/a | n/a | n/a | 0 | "
                            f"{errors[name]} |")
            continue
        v = sorted(runs[name])
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
        faults = counter(name, "faults_per_call")
        rows.append(f"| {name} | {fmt_us(med[name])} | {fmt_us(v[0])} | "
                    f"{fmt_us(q[0])} - {fmt_us(q[2])} | "
                    f"{fmt_us(cpu_med.get(name))} | "
                    f"{'n/a' if faults is None else f'{faults:.2f}'} | "
                    f"{len(v)} | {what} |")

    packed = counter(f"BM_ZlibCompressNative/{LIB_BIG}", "packed_bytes")
    png_bytes = counter(f"BM_PngDecodeNative/{PNG_SIDE}", "png_bytes")
    notes = []
    if packed:
        notes.append(f"the {LIB_BIG >> 10} KiB of text compress to "
                     f"{packed / 1024:.1f} KiB, {LIB_BIG / packed:.2f}:1")
    if png_bytes:
        notes.append(f"the PNG file is {png_bytes / 1024:.1f} KiB for "
                     f"{PNG_SIDE * PNG_SIDE * 4 >> 10} KiB of pixels")

    section = [
        "## Libraries: zlib and libpng inside vs native, and a process "
        "sandbox",
        "",
        *lines,
        "",
        *([] if not paired_rows else [
            "Paired (the verdict's measurement): one iteration runs the "
            "native call and the inside call, each timed alone, in the "
            "order native-inside on even iterations and inside-native on odd "
            "ones; the ratio is native time / inside time (inside's "
            "throughput over native's) per pair, its median over a "
            "repetition's pairs, and the median of those over the "
            "repetitions, with a distribution-free confidence interval for "
            "that median (order statistics; its coverage in parentheses). "
            "Calibration: the same loop with a second native call in the "
            "inside call's place (its own buffers), which should give 1.000: "
            "its distance from 1 is what the method itself can show. Times "
            "are each side's mean per call, medians over the repetitions.",
            "",
            "| operation | repetitions x pairs | inside / native, paired | "
            "95% interval | calibration: native / native | its interval | "
            "native us | inside us | inside - native, us |",
            "|---|---|---|---|---|---|---|---|---|",
            *paired_rows,
            "",
            "Separate benchmarks (each side in its own loop, the repetitions "
            "randomly interleaved; a second view, more exposed to drift):",
            "",
        ]),
        "Throughput in MB/s (10^6 bytes of uncompressed data, or of decoded "
        "pixels, per second) from the median real time per call; the "
        "ratios are inside's throughput over native's (native time / inside "
        "time), of medians, of each side's fastest repetition, and of "
        "medians of CPU time"
        + (" (" + "; ".join(notes) + ")" if notes else "") + ".",
        "",
        "| operation | bytes per call | native MB/s | inside MB/s | "
        "inside / native | of minimums | of CPU time | native us | "
        "inside us | inside - native, us |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *table,
        "",
        "zlib compress2 against a process sandbox (us per call, medians of "
        "real time; ratios are throughput over native's):",
        "",
        "| input | native | inside | process, shared memory | "
        "process, pipe | inside / native | process shm / native | "
        "process pipe / native | inside - native | process shm - native | "
        "process pipe - native |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *proc,
        "",
        "### Libraries per benchmark (real time per call, us)",
        "",
        "Paired and calibration benchmarks: time per iteration (two calls). "
        "Page faults: the calling thread's minor faults in the timed loop "
        "per call (median over repetitions).",
        "",
        "| benchmark | median | min | interquartile | CPU time, median | "
        "page faults per call | reps | what |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return [verdict], section


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", required=True)
    ap.add_argument("--heap-json", default=None)
    ap.add_argument("--lib-json", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", action="append", default=None,
                    help="the command that produced the JSON; repeatable")
    ap.add_argument("--build", default=None)
    args = ap.parse_args()

    context, runs, errors, counters = load_runs(args.json)
    heap_context, heap_runs, heap_errors, heap_counters = load_runs(
        args.heap_json)
    lib_context, lib_runs, lib_errors, lib_counters = load_runs(
        args.lib_json)
    if not context:
        context = heap_context or lib_context
    heap_verdict, heap_lines = heap_section(heap_runs, heap_errors,
                                            heap_counters)
    lib_verdict, lib_lines = lib_section(lib_runs, lib_errors, lib_counters,
                                         load_cpu_times(args.lib_json))
    med = {k: statistics.median(v) for k, v in runs.items()}
    best = {k: min(v) for k, v in runs.items()}
    q_med = quantities(med)
    q_min = quantities(best)  # noise on a shared machine only adds time
    pair = q_med["pair"]
    fork = q_med["fork"]
    pair_loads = q_med["pair_loads"]
    gate = q_med["gate"]
    callback = q_med["callback"]
    native_cb = q_med["native_cb"]

    # Per-benchmark table.
    descriptions = [
        ("BM_WrpkruPair", "two WRPKRUs (other value, then back): the floor"),
        ("BM_WrpkruPairSame", "two WRPKRUs of the unchanged value"),
        ("BM_WrpkruPairLoads",
         "the pair, each WRPKRU followed by 3 dependent loads"),
        ("BM_WrpkruPairWithStores",
         "the pair with the gate's selector stores: movb BLOCK, WRPKRU, "
         "WRPKRU, movb ALLOW"),
        ("BM_SelectorStorePair",
         "the two selector byte stores alone, no WRPKRU"),
        ("BM_PlainCall", "empty function through a volatile pointer"),
        ("BM_FloorCall", "floor model: the pair around a call of an empty "
         "function, each WRPKRU followed by a check (gate_floor.S)"),
        ("BM_FloorSwitch", "floor model: the same, the call on another "
         "stack"),
        ("BM_FloorTrusted", "floor model: the same, host state in a "
         "trusted block, registers cleared, checks against memory"),
        ("BM_GateRoundTrip", "`box->Call(&Empty)`, void()"),
        ("BM_GateRoundTripArgs", "`box->Call(&Add, a, 2)`, int(int, int)"),
        ("BM_CallbackRoundTrip/0", "one Call of the callback loop, 0 callbacks"),
        (f"BM_CallbackRoundTrip/{CALLBACKS_PER_CALL}",
         f"one Call of the callback loop, {CALLBACKS_PER_CALL} callbacks"),
        ("BM_CallbackNative/0", "the same loop in the host, 0 calls"),
        (f"BM_CallbackNative/{CALLBACKS_PER_CALL}",
         f"the same loop in the host, {CALLBACKS_PER_CALL} direct calls"),
        ("BM_PlainSyscall",
         "`syscall(SYS_getppid)` in the host, dispatch armed (selector "
         "ALLOW)"),
        ("BM_PlainSyscallNoDispatch",
         "the same on a thread that never entered a compartment"),
        ("BM_InterceptedSyscall",
         f"one Call: {SYSCALLS_PER_CALL} inline `syscall` getppid, allowed "
         "(SIGSYS, emulated)"),
        ("BM_DeniedSyscallErrno",
         f"one Call: {SYSCALLS_PER_CALL} getppid, denied with EPERM"),
        ("BM_CompartmentEmpty16",
         f"one Call: the same {SYSCALLS_PER_CALL}-step loop, no syscall"),
        ("BM_FaultAndReset",
         "`Call(&Ud2)` (ud2: SIGILL -> kAborted) then `Reset()`"),
        ("BM_FaultAndResetSegv",
         "`Call` writing a host global (SEGV_PKUERR -> kAborted) then "
         "`Reset()`"),
        ("BM_FaultAndResetNull",
         "`Call` writing address 8 (SEGV_MAPERR -> kAborted) then `Reset()`"),
        ("BM_Reset", "`Reset()` then `Call(&Empty)`, which maps the stack "
         "again"),
        ("BM_SignalRoundTrip",
         "tgkill(SIGUSR1) to self, empty handler (libc's sigaction), on a "
         "thread that never entered a compartment: the kernel alone"),
        ("BM_SignalRoundTripHost",
         "the same through the host's (mpkbox's) sigaction, on a thread that "
         "has entered compartments"),
        ("BM_ForkExitWait", "fork, `_exit(0)` in the child, waitpid"),
        ("BM_SymbolizeOne", "`absl::Symbolize` of one address (cache warm)"),
        ("BM_ReadSmaps/code",
         "`PkeyOfAddress` of Ud2's address (reads /proc/self/smaps; a "
         "SIGILL's report no longer does)"),
        ("BM_ReadSmaps/host_global",
         "`PkeyOfAddress` of the host global"),
        ("BM_ReadSmaps/unmapped",
         "`PkeyOfAddress` of address 8: unmapped, below the first mapping"),
    ]
    known = {n for n, _ in descriptions}
    descriptions += [(n, "") for n in sorted(runs) if n not in known]

    rows = []
    for name, what in descriptions:
        if name not in runs:
            note = errors.get(name, "not run")
            rows.append(f"| {name} | n/a | n/a | n/a | 0 | {note} |")
            continue
        v = sorted(runs[name])
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
        rows.append(f"| {name} | {fmt_ns(med[name])} | {fmt_ns(v[0])} | "
                    f"{fmt_ns(q[0])} - {fmt_ns(q[2])} | {len(v)} | {what} |")

    verdict_gate = div(gate, pair)
    if verdict_gate is None:
        target_note = "not measured"
    elif verdict_gate <= TARGET_GATE_OVER_PAIR:
        target_note = f"target <= {TARGET_GATE_OVER_PAIR}: **met**"
    else:
        target_note = f"target <= {TARGET_GATE_OVER_PAIR}: **missed**"
    gate_over_stores = div(gate, q_med["pair_stores"])
    if gate_over_stores is None:
        stores_note = ""
    else:
        stores_note = (
            f"the same target against this floor: "
            f"{'met' if gate_over_stores <= TARGET_GATE_OVER_PAIR else 'missed'}")
    notes = {
        ("gate", "pair"): target_note,
        ("gate", "pair_stores"): stores_note,
        ("intercepted", "syscall"): "per syscall: (Intercepted - Empty16) / "
                                    f"{SYSCALLS_PER_CALL}",
        ("intercepted", "signal"): "a SIGSYS is a signal delivery",
        ("syscall", "syscall_nosud"): "every host syscall pays this once "
                                      "its thread has entered a compartment",
        ("pair_loads", "pair"): "work next to a WRPKRU does not overlap it",
        ("reset", "gate"): "Reset unmaps the stack; the Call maps it again",
    }
    for num in ("fault", "fault_null"):
        r = div(q_med[num], fork)
        if r is not None:
            notes[(num, "fork")] = (
                "below 1: the contained fault is cheaper" if r < 1 else
                "**above 1: the contained fault costs more**")
    ratio_rows = []
    for label, num, den in RATIOS:
        ratio_rows.append(
            f"| {label} | {fmt_ratio(div(q_med[num], q_med[den]))} | "
            f"{fmt_ratio(div(q_min[num], q_min[den]))} | "
            f"{notes.get((num, den), '')} |")

    def minus(a, b):
        return None if a is None or b is None else a - b

    def share(part, whole):
        r = div(part, whole)
        return "n/a" if r is None else f"{100 * r:.0f}%"

    def frames_of(name):
        v = counters.get(name, {}).get("frames")
        return statistics.median(v) if v else None

    fault = q_med["fault"]
    fault_segv = q_med["fault_segv"]
    fault_null = q_med["fault_null"]
    reset = q_med["reset"]
    signal = q_med["signal"]
    fork = q_med["fork"]
    symbolize = q_med["symbolize"]
    frames = frames_of("BM_FaultAndReset")
    # The report symbolizes every backtrace frame and, once more, the ip.
    n_symbolize = None if frames is None else int(round(frames)) + 1
    derived = [
        f"| callback round trip: (CallbackRoundTrip/{CALLBACKS_PER_CALL} - "
        f"CallbackRoundTrip/0) / {CALLBACKS_PER_CALL} | {fmt_ns(callback)} |",
        f"| native call in the loop: (CallbackNative/{CALLBACKS_PER_CALL} - "
        f"CallbackNative/0) / {CALLBACKS_PER_CALL} | {fmt_ns(native_cb)} |",
        f"| gate round trip minus WRPKRU pair | "
        f"{fmt_ns(None if gate is None or pair is None else gate - pair)} |",
        f"| selector stores in the gate: WrpkruPairWithStores - WrpkruPair "
        f"(of minimums: {fmt_signed(q_min['selector'])}) | "
        f"{fmt_signed(q_med['selector'])} |",
        f"| the two selector stores alone (SelectorStorePair) | "
        f"{fmt_ns(q_med['stores'])} |",
        f"| intercepted syscall: (InterceptedSyscall - CompartmentEmpty16) / "
        f"{SYSCALLS_PER_CALL} | {fmt_ns(q_med['intercepted'])} |",
        f"| denied syscall (errno): (DeniedSyscallErrno - "
        f"CompartmentEmpty16) / {SYSCALLS_PER_CALL} | "
        f"{fmt_ns(q_med['denied'])} |",
        f"| intercepted syscall minus plain syscall (SIGSYS delivery, "
        f"dispatch, the real call, sigreturn) | "
        f"{fmt_ns(minus(q_med['intercepted'], q_med['syscall']))} |",
        f"| dispatch armed on a host syscall: PlainSyscall - "
        f"PlainSyscallNoDispatch | {fmt_signed(q_med['sud_host'])} |",
        f"| 2 x (3 dependent loads after a WRPKRU): WrpkruPairLoads - "
        f"WrpkruPair | "
        f"{fmt_ns(None if pair_loads is None or pair is None else pair_loads - pair)}"
        f" |",
        f"| fault to status (SIGILL): FaultAndReset - Reset | "
        f"{fmt_ns(minus(fault, reset))} |",
        f"| fault to status (SEGV_PKUERR): FaultAndResetSegv - Reset | "
        f"{fmt_ns(minus(fault_segv, reset))} |",
        f"| fault to status (SEGV_MAPERR at 8): FaultAndResetNull - Reset | "
        f"{fmt_ns(minus(fault_null, reset))} |",
        f"| mpkbox's signal entry and dispatch, and Syscall User Dispatch on "
        f"the tgkill and sigreturn: SignalRoundTripHost - SignalRoundTrip | "
        f"{fmt_signed(minus(q_med['signal_host'], signal))} |",
    ]

    # The fault cycle against its pieces, each measured alone in this run.
    breakdown = []
    if fault is not None:
        sym_total = (None if symbolize is None or n_symbolize is None
                     else symbolize * n_symbolize)
        for label, part, whole in [
            ("/proc/self/smaps lookup (ReadSmaps/host_global), in "
             "FaultAndResetSegv", q_med["smaps_global"], fault_segv),
            ("/proc/self/smaps lookup (ReadSmaps/unmapped), in "
             "FaultAndResetNull", q_med["smaps_unmapped"], fault_null),
            ("Reset + the Call mapping a fresh stack (Reset), in "
             "FaultAndReset", reset, fault),
            ("kernel signal delivery + sigreturn (SignalRoundTrip), in "
             "FaultAndReset", signal, fault),
            (f"symbolizing {n_symbolize} addresses "
             f"(SymbolizeOne x {n_symbolize}), in FaultAndReset",
             sym_total, fault),
        ]:
            breakdown.append(f"| {label} | {fmt_ns(part)} | "
                             f"{share(part, whole)} |")
        rest = fault
        for part in (reset, signal, sym_total):
            rest = minus(rest, part)
        breakdown.append(
            f"| the rest of FaultAndReset (trap entry, unwinding, mpkbox's "
            f"handler, the report's strings and allocations, errors of "
            f"subtracting noisy medians) | {fmt_ns(rest)} | "
            f"{share(rest, fault)} |")

    # Verdict in words.
    verdict = []
    if verdict_gate is not None:
        if verdict_gate <= TARGET_GATE_OVER_PAIR:
            verdict.append(
                f"The gate round trip costs {verdict_gate:.2f}x the WRPKRU "
                f"pair: the target of at most {TARGET_GATE_OVER_PAIR}x is "
                f"met in this run.")
        else:
            verdict.append(
                f"The gate round trip costs {verdict_gate:.2f}x the WRPKRU "
                f"pair ({fmt_ns(gate)} ns against {fmt_ns(pair)} ns): the "
                f"target of at most {TARGET_GATE_OVER_PAIR}x is **missed** "
                f"in this run, by {fmt_ns(gate - TARGET_GATE_OVER_PAIR * pair)}"
                f" ns per call.")
        best_ratio = div(q_min["gate"], q_min["pair"])
        if best_ratio is not None:
            verdict.append(
                f"Fastest repetitions against fastest: {best_ratio:.2f}x.")
        floors = [div(q_med[k], pair) for k in
                  ("floor_call", "floor_switch", "floor_trusted")]
        if None not in floors:
            verdict.append(
                f"The floor models (trampolines/gate_floor.S) show what the "
                f"target is up against on this CPU: the pair around a call "
                f"with a check after each WRPKRU costs {floors[0]:.2f}x the "
                f"pair, a stack switch brings it to {floors[1]:.2f}x, and "
                f"keeping host state in a trusted block, clearing registers "
                f"and checking against memory (each required of the gate) "
                f"to {floors[2]:.2f}x"
                + (": no gate with those properties can meet "
                   f"{TARGET_GATE_OVER_PAIR}x here. "
                   if floors[2] > TARGET_GATE_OVER_PAIR else ". ")
                + f"The gate costs "
                f"{fmt_ratio(div(gate, q_med['floor_trusted']))} that last "
                f"model; the rest is the selector, the domain and frame "
                f"bookkeeping, vector-state clearing, the control words and "
                f"Call's checks.")
    if verdict_gate is not None and q_med["selector"] is not None:
        verdict.append(
            f"The selector's two byte stores add "
            f"{fmt_ns(q_med['selector'])} ns to the WRPKRU pair "
            f"({fmt_ns(q_med['pair_stores'])} ns against {fmt_ns(pair)} ns, "
            f"{fmt_ratio(div(q_med['pair_stores'], pair))}; fastest "
            f"repetitions: {fmt_signed(q_min['selector'])} ns; the stores "
            f"alone take {fmt_ns(q_med['stores'])} ns): against the pair "
            f"with the stores the gate round trip is "
            f"{fmt_ratio(gate_over_stores)} (target {TARGET_GATE_OVER_PAIR}x "
            f"against the pair alone)"
            + (f": the stores are "
               f"{share(q_med['selector'], minus(gate, pair))} of the gate's "
               f"{fmt_ns(minus(gate, pair))} ns above the pair."
               if q_med["selector"] >= 0 else
               f"; the gate is {fmt_ns(minus(gate, pair))} ns above the "
               f"pair."))
    if q_med["intercepted"] is not None and q_med["syscall"] is not None:
        verdict.append(
            f"A syscall from compartment code (getppid, allowed: SIGSYS, "
            f"mpkbox's dispatch, the real call, sigreturn) costs "
            f"{fmt_ns(q_med['intercepted'])} ns, "
            f"{fmt_ratio(div(q_med['intercepted'], q_med['syscall']))} the "
            f"same syscall from the host ({fmt_ns(q_med['syscall'])} ns) and "
            f"{fmt_ratio(div(q_med['intercepted'], signal))} a bare signal "
            f"round trip; denied with an errno it costs "
            f"{fmt_ns(q_med['denied'])} ns "
            f"({fmt_ratio(div(q_med['denied'], q_med['syscall']))} the host "
            f"syscall).")
        if q_med["sud_host"] is not None:
            verdict.append(
                f"With dispatch armed (a thread that has entered a "
                f"compartment) a host syscall costs "
                f"{fmt_ns(q_med['syscall'])} ns against "
                f"{fmt_ns(q_med['syscall_nosud'])} ns on a thread without "
                f"it: {fmt_signed(q_med['sud_host'])} ns more per host "
                f"syscall.")
    if fault is not None and signal is not None:
        text = (
            f"A contained fault followed by Reset costs {fmt_ns(fault)} ns "
            f"(SIGILL) and {fmt_ns(fault_segv)} ns (SIGSEGV, SEGV_PKUERR): "
            f"{fmt_ratio(div(fault, signal))} and "
            f"{fmt_ratio(div(fault_segv, signal))} a bare signal round trip "
            f"({fmt_ns(signal)} ns), the floor of any fault containment.")
        if fork is not None:
            text += (
                f" fork + exit + wait, a lower bound for a process sandbox "
                f"replacing a crashed worker (no exec, no sandbox set-up), "
                f"costs {fmt_ns(fork)} ns, {fmt_ratio(div(fork, fault))} the "
                f"SIGILL cycle.")
        verdict.append(text)
        if q_med["smaps_global"] is not None:
            verdict.append(
                f"For a data fault (SIGSEGV, SIGBUS) the report looks up the "
                f"fault address's key in /proc/self/smaps: "
                f"{fmt_ns(q_med['smaps_global'])} ns alone for the host "
                f"global, {share(q_med['smaps_global'], fault_segv)} of the "
                f"SEGV_PKUERR cycle; a SIGILL's report does no lookup. Reset "
                f"and the stack it makes the next Call map cost "
                f"{fmt_ns(reset)} ns ({share(reset, fault)} of the SIGILL "
                f"cycle).")
        if fault_null is not None:
            verdict.append(
                f"A fault at an address with no mapping (address 8: a null "
                f"pointer plus an offset; the lookup stops at the first "
                f"mapping, which lies above it): {fmt_ns(fault_null)} ns per "
                f"cycle, {fmt_ratio(div(fault_null, fault))} the SIGILL cycle"
                + (f", {fmt_ratio(div(fault_null, fork))} fork + exit + wait."
                   if fork is not None else "."))
    verdict += heap_verdict
    verdict += lib_verdict
    if errors:
        verdict.append("Benchmarks that failed: " + ", ".join(
            f"{k} ({v})" for k, v in sorted(errors.items())) + ".")

    now = datetime.datetime.now(datetime.timezone.utc)
    lib_build = context.get("library_build_type", "unknown")
    flags = compile_flags(args.build)
    programs = ["gate_bench"]
    other_flags = {}
    for name, present in (("heap_bench", heap_lines),
                          ("library_bench", lib_lines)):
        if present:
            programs.append(name)
            other_flags[name] = compile_flags(args.build, name)
    if any(f is not None and f != flags for f in other_flags.values()):
        flags_line = ("- compile flags: " + ", ".join(
            [f"gate_bench `{flags or 'unknown'}`"]
            + [f"{n} `{f or 'unknown'}`" for n, f in other_flags.items()])
            + "; ")
    else:
        named = (programs[0] if len(programs) == 1 else
                 ", ".join(programs[:-1]) + " and " + programs[-1])
        flags_line = f"- {named} compile flags: `{flags or 'unknown'}`; "
    commands = args.command or ["bench/run.sh"]
    hv = hypervisor()
    num_cpus = context.get("num_cpus", os.cpu_count())
    machine = lscpu_model()
    if hv:
        machine += f" ({hv} guest)"

    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/report.py` from one run of `gate_bench`"
        + (" and one of `heap_bench`" if heap_lines and not lib_lines else "")
        + (", one of `heap_bench` and one of `library_bench`"
           if heap_lines and lib_lines else "")
        + (" and one of `library_bench`" if lib_lines and not heap_lines
           else "")
        + "; do not edit by hand, run `bench/run.sh` again.",
        "",
        *[f"- command: `{c}`" for c in commands],
        f"- date: {context.get('date') or now.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine}, {num_cpus} CPUs",
        f"- kernel: {platform.release()}",
        flags_line + f"Google Benchmark "
        f"library build: {lib_build} (Debian's package is built without "
        "NDEBUG; the timed loops are inlined from its header into the "
        "benchmark programs)",
        "",
        "## Verdict",
        "",
        *verdict,
        "",
        "## Ratios (same run)",
        "",
        "| ratio | of medians | of minimums | note |",
        "|---|---|---|---|",
        *ratio_rows,
        "",
        "## Derived costs (ns, from medians)",
        "",
        "| quantity | ns |",
        "|---|---|",
        *derived,
        "",
        "## Fault cycle against its parts (ns, medians; each part measured "
        "alone in this run)",
        "",
        "| part | ns | share |",
        "|---|---|---|",
        *breakdown,
        "",
        "## Per benchmark (real time per iteration, ns)",
        "",
        "| benchmark | median | min | interquartile | reps | what |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        *heap_lines,
        *lib_lines,
        "## Method",
        "",
        "- All benchmarks run in one process, with repetitions randomly "
        "interleaved (`--benchmark_enable_random_interleaving`), pinned to "
        "one CPU when `taskset` is there. The machine is a small shared VM: "
        "medians of the repetitions are the figures; min and interquartile "
        "range show the noise.",
        "- The WRPKRU pair is the floor of any PKU gate: one write to enter, "
        "one to leave. It writes a different value (write-disable of key 15 "
        "toggled) and then the original, in one asm statement with no memory "
        "access in between. `BM_WrpkruPairLoads` puts after each WRPKRU "
        "what a gate does there (three dependent loads, as in reading the "
        "thread pointer, the thread block and the value to check): its "
        "excess over the pair is work the CPU could not overlap with the "
        "WRPKRU.",
        "- Selector: the gate writes the Syscall User Dispatch selector "
        "byte (a plain movb to the thread's selector page) to BLOCK before "
        "its WRPKRU into the compartment and to ALLOW after its WRPKRU back. "
        "`BM_WrpkruPairWithStores` is the WRPKRU pair with those two stores "
        "in that order, to a page-aligned buffer of its own, in one asm "
        "statement; its excess over `BM_WrpkruPair` is what the selector "
        "adds to the gate's floor. `BM_SelectorStorePair` is the two stores "
        "without WRPKRU.",
        f"- System calls: one iteration of `BM_InterceptedSyscall` is one "
        f"`Call` of a compartment function that issues getppid with an "
        f"inline `syscall` instruction {SYSCALLS_PER_CALL} times, in a "
        f"compartment whose policy is `Allow(SYS_getppid)`: each becomes a "
        f"SIGSYS (Syscall User Dispatch), mpkbox's signal entry judges it "
        f"against the policy, makes the call and puts the result in rax. "
        f"`BM_CompartmentEmpty16` is the same `Call` of the same loop with "
        f"no instruction, so one intercepted syscall costs (median(Intercepted)"
        f" - median(Empty16)) / {SYSCALLS_PER_CALL}. "
        f"`BM_DeniedSyscallErrno` is the same in a compartment whose policy "
        f"is `Deny(SYS_getppid, EPERM)`: no real call, -EPERM in rax. Each "
        f"checks, untimed, the function's result (getppid(), -EPERM, "
        f"SYS_getppid) and that the runtime's count of emulated syscalls "
        f"grew by {SYSCALLS_PER_CALL} (0 for Empty16). `BM_PlainSyscall` is "
        f"libc's `syscall(SYS_getppid)` on the benchmark thread, which has "
        f"entered compartments and so has dispatch armed with the selector "
        f"at ALLOW; `BM_PlainSyscallNoDispatch` is the same on a fresh "
        f"thread without dispatch.",
        "- Ratios of minimums compare each benchmark's fastest repetition: "
        "noise only adds time, so they are a second, less noise-prone view.",
        "- Gate round trips go through the public `Compartment::Call`, "
        "including the `absl::Status`/`StatusOr<Tainted<int>>` result, into "
        "a compartment created once; the thread's first (set-up) call is "
        "outside the timed loop.",
        "- Floor models (`trampolines/gate_floor.S`, linked into gate_bench "
        "only): three stripped gates that run an empty function with PKRU "
        "toggled as in the pair. `BM_FloorCall` is the pair around a call, "
        "each WRPKRU followed by a compare against a register (ERIM's "
        "check); `BM_FloorSwitch` makes the call on another stack; "
        "`BM_FloorTrusted` also pushes the callee-saved registers, keeps "
        "copies of them and of the host rsp and return address in a block "
        "it restores from, clears the registers the callee could read, and "
        "checks PKRU against memory. They trust their caller and run no "
        "untrusted code: they price the layers, they are not gates.",
        f"- Callback round trip: one iteration of `BM_CallbackRoundTrip/N` is one "
        f"`Call` of a compartment function that calls a registered host "
        f"callback (`int(int)`, passed in as an argument) N times. The cost "
        f"of one callback (compartment -> host -> compartment) is "
        f"(median(N={CALLBACKS_PER_CALL}) - median(N=0)) / "
        f"{CALLBACKS_PER_CALL}: the enclosing Call and the loop set-up cancel "
        f"out. `BM_CallbackNative` runs the same loop without a compartment, "
        f"calling the host function directly.",
        "- Faults: one iteration of `BM_FaultAndReset*` is a `Call` that "
        "faults (contained: the signal is caught, the compartment's frames "
        "are unwound, and after the gate returns the report is built, "
        "symbolizing the frames and, for SIGSEGV and SIGBUS, looking up the "
        "key of si_addr's page in /proc/self/smaps, and the status is "
        "returned as kAborted) followed "
        "by `Reset()`. Reset unmaps the thread's compartment stack, so each "
        "iteration's `Call` first maps a fresh one (mmap, two "
        "pkey_mprotect, a page fault on first touch): the figure is a whole "
        "fault-and-recover cycle in steady state. The faults run in a second "
        "compartment, so the gate benchmarks' compartment is never faulted.",
        "- `BM_Reset` is `Reset()` then `Call(&Empty)`: a second Reset in a "
        "row would find no stack to unmap, so Reset is timed with the Call "
        "that maps the stack again; it is the fault cycle without the fault. "
        "Hence \"fault to status\" = FaultAndReset - Reset (a normal return "
        "through the gate is subtracted with it, a few tens of ns).",
        "- `BM_SignalRoundTrip`: tgkill of SIGUSR1 to the running thread, an "
        "empty SA_SIGINFO handler, sigreturn. It is installed with libc's own "
        "`__sigaction`, since mpkbox interposes `sigaction`, and runs on a "
        "fresh thread: on a thread that has entered a compartment mpkbox has "
        "armed Syscall User Dispatch with its selector on a key that the "
        "kernel's initial signal PKRU denies, so a handler not behind "
        "mpkbox's entry cannot even sigreturn there (the kernel kills the "
        "process). It includes one syscall entry (tgkill) where a fault has "
        "an exception entry instead. `BM_SignalRoundTripHost` is the same "
        "signal through mpkbox's entry on the benchmark thread.",
        "- `BM_ForkExitWait` is a lower bound for a process sandbox's "
        "recovery: it forks this (small) process, the child exits at once, "
        "and the parent reaps it; no exec, no sandbox set-up, no "
        "re-initialisation of the worker and no crash handling are "
        "included. It is not a measurement of any particular sandbox.",
        "- Breakdown: the parts are separate benchmarks, not a profile of "
        "the fault cycle, so the shares are estimates; both sides of every "
        "subtraction are noisy medians. `BM_SymbolizeOne` symbolizes one "
        "address with absl's cache warm, as a fault repeated at one address "
        "does; the report symbolizes each backtrace frame "
        "(`frames` counter in the JSON) and the faulting ip once more. "
        "`BM_ReadSmaps/*` call the runtime's `PkeyOfAddress`, which reads "
        "/proc/self/smaps line by line until the mapping holding the "
        "address, or the first one above it (the file is sorted): "
        "`code` and `host_global` are in the executable's own mappings near "
        "the start of the file, address 8 lies below the first mapping. "
        "`BM_ReadSmaps/code` is no longer part of any fault cycle (a "
        "SIGILL's report does no lookup); it is kept as the cost of the "
        "shortest lookup.",
        *([] if not heap_lines else [
            f"- Heap: one iteration of every `BM_MallocFree*/N` is "
            f"{HEAP_PAIRS} pairs of `p = malloc(N)`, a one-byte store through "
            f"p (and an empty asm taking p, so the compiler cannot delete the "
            f"pair), `free(p)`: one allocation live at a time, the pattern "
            f"that suits a thread cache best. `BM_MallocFreeInside/N` is one "
            f"`box->Call` of that loop in a compartment (\"bench-heap\"): "
            f"malloc pops the compartment's per-thread magazine and free "
            f"pushes its free buffer, without leaving the compartment; an "
            f"empty magazine (or a full free buffer) enters the runtime "
            f"through the allocator's callback gate, which checks the "
            f"buffered frees, refills the magazine in a batch and hands one "
            f"region out; sizes above 4 KiB take the gate on every malloc. "
            f"The Call around the batch is measured alone "
            f"(`BM_MallocFreeInsideEmpty`, 0 pairs) and subtracted. Before "
            f"and after timing, an untimed batch checks that the compartment's "
            f"heap counted {HEAP_PAIRS} allocations, that none is left live "
            f"and that the last pointer lies in the compartment's heap.",
            "- Heap baselines, all on the host thread that runs the "
            "compartment: native jemalloc is libjemalloc.so.2's own "
            "`malloc`/`free` (found with dlopen(RTLD_NOLOAD) and dlsym, since "
            "the process's `malloc` is mpkbox's), with jemalloc's default "
            "arenas and thread cache; glibc is libc.so.6's `malloc`/`free` "
            "the same way, a heap of its own next to jemalloc's; host-routed "
            "is plain `malloc`/`free` in host code, which mpkbox routes to "
            "`mallocx`/`dallocx` on its host arena (trusted key). "
            "`BM_MallocFreeMallocx*` call jemalloc's `mallocx`/`dallocx` "
            "directly on the default arenas, to split the host-routed and "
            "inside figures into what jemalloc's API costs and what mpkbox "
            "adds. The baselines call through function pointers (one "
            "indirect call each), the inside and host loops call "
            "`malloc`/`free` directly.",
        ]),
        *([] if not lib_lines else [
            f"- Libraries: inside is Debian's libz.so.1 (and libpng16.so.16 "
            f"with its own libz) loaded into a compartment of its own with "
            f"`Compartment::Load`, its functions found with `Lookup` and "
            f"called with `Call` on buffers from `Compartment::Allocate`; "
            f"native is the host's copy of the same files (the program links "
            f"them) called directly on page-aligned host buffers, whose "
            f"`malloc` is mpkbox's routing to the host arena. Inputs are "
            f"prepared before timing. zlib: one iteration is one "
            f"`compress2(level 6)` of {LIB_SMALL >> 10} KiB or "
            f"{LIB_BIG >> 10} KiB of generated text (words of a skewed "
            f"distribution, sentences, lines), or one `uncompress` of it; "
            f"each call runs zlib's own `malloc`s (deflate's state is about "
            f"270 KiB in five allocations, inflate's about 40 KiB in two), "
            f"which inside go to the compartment's heap. libpng: one "
            f"iteration is "
            f"`png_image_begin_read_from_memory`, `png_image_finish_read` "
            f"(RGBA) and `png_image_free` of a {PNG_SIDE}x{PNG_SIDE} RGBA "
            f"PNG the host's libpng wrote at start-up from a synthetic image "
            f"(gradients, discs, a soft alpha band, +-1 of noise); inside "
            f"that is three `Call`s, with the `png_image`, the file and the "
            f"pixels in the compartment. Before and after timing an untimed "
            f"call checks the output against native's (the compressed bytes "
            f"are identical; the decoded pixels equal the original).",
            "- Process sandbox: one worker process is forked at start-up, "
            "before the runtime is set up, and runs the host's libz. "
            "`BM_ZlibCompressProcess`: the input lies in a shared mapping "
            "(put there before timing, as the inside input lies in the "
            "compartment's heap); one iteration writes an 8-byte request to "
            "a pipe, the worker runs `compress2` from the shared mapping "
            "into it and writes an 8-byte reply to a second pipe, which the "
            "caller reads: two wake-ups per call, the least a process "
            "sandbox pays. `BM_ZlibCompressProcessPipe` sends the input on "
            "the request pipe and gets the output back on the reply pipe "
            "(64 KiB pipe buffers). The worker inherits the CPU pinning, so "
            "caller and worker share one CPU, as the in-process benchmarks "
            "do; it runs no seccomp filter or other confinement, which would "
            "only add to it.",
            "- All separate library benchmarks are timed in real time "
            "(`UseRealTime`): the worker's work is not the caller's CPU "
            "time. The ratios of CPU-time medians (inside and native only; "
            "all their work runs on the calling thread) leave out time the "
            "VM's vCPU was descheduled, which the real times on this shared "
            "machine include.",
            "- Paired library benchmarks (`BM_*Paired`, the verdict's "
            "measurement): each iteration times one native call and one "
            "inside call separately with the steady clock (manual time: "
            "the iteration's time is the two calls'), native first on even "
            "iterations and inside first on odd ones, so that each side "
            "follows itself and the other equally often. The two calls of a "
            "pair run milliseconds apart, so a slow phase of the machine "
            "hits both; separate benchmarks compare times taken seconds "
            "apart, and on this shared machine their medians drift by more "
            "than the 2% the target allows. Per repetition the benchmark "
            "reports the median over its pairs of native time / inside "
            "time (`paired_ratio`; at most the first 4096 pairs), the mean "
            "time of each side and the number of pairs; report.py takes the "
            "median of `paired_ratio` over the repetitions and a "
            "distribution-free 95% confidence interval for it (order "
            "statistics of the repetitions: with 9 repetitions the 2nd and "
            "8th, with 15 the 4th and 12th). The target holds for an "
            "operation if that median is at least "
            f"{TARGET_INSIDE_OVER_NATIVE_THROUGHPUT}; the verdict says "
            "whether the whole interval is. `BM_*Calibration` runs the same "
            "loop with native on both sides, each with buffers of its own: "
            "it shows the bias and the resolution of the method itself "
            "(different buffer addresses alone move a call by a few tenths "
            "of a percent).",
        ]),
    ]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
