"""Unit tests of verdicts.py's arithmetic on canned Google Benchmark JSON.

  cd bench && python3 -m unittest verdicts_test
"""

import io
import json
import os
import statistics
import tempfile
import unittest
from contextlib import redirect_stdout

import verdicts


def bench_json(times, unit="ns", counters=None, suffix=""):
    """Google Benchmark's JSON for {name: [per-repetition real times]}:
    iteration rows, then a median aggregate, as --benchmark_out writes them
    (with one repetition, no aggregate). counters: {name: [{counter: x}]}."""
    rows = []
    for name, values in times.items():
        run = name + suffix
        extra = (counters or {}).get(name, [{}] * len(values))
        for i, (t, c) in enumerate(zip(values, extra)):
            rows.append({"name": run, "run_name": run, "run_type": "iteration",
                         "repetition_index": i, "real_time": t,
                         "cpu_time": t, "time_unit": unit, **c})
        if len(values) > 1:  # counters get a median too
            m = {k: statistics.median(c[k] for c in extra) for k in extra[0]}
            t = statistics.median(values)
            rows.append({"name": run + "_median", "run_name": run,
                         "run_type": "aggregate", "aggregate_name": "median",
                         "real_time": t, "cpu_time": t, "time_unit": unit,
                         **m})
    return {"context": {"date": "2026-01-01T00:00:00+00:00", "num_cpus": 2,
                        "library_build_type": "release"},
            "benchmarks": rows}


def paired(ratios):
    return [{"paired_ratio": r, "pair_count": 8.0} for r in ratios]


class ParseTest(unittest.TestCase):
    def test_median_aggregate_in_ns_without_time_suffix(self):
        b = verdicts.parse(bench_json({"BM_X/1": [3.0, 1.0, 2.0]}, unit="us",
                                      suffix="/real_time"))
        self.assertEqual(list(b), ["BM_X/1"])
        self.assertEqual(b["BM_X/1"]["ns"], 2000.0)
        self.assertEqual(len(b["BM_X/1"]["reps"]), 3)

    def test_aggregate_wins_over_repetitions(self):
        data = bench_json({"BM_X": [1.0, 2.0, 3.0]})
        data["benchmarks"][-1]["real_time"] = 7.0  # Google Benchmark's median
        self.assertEqual(verdicts.parse(data)["BM_X"]["ns"], 7.0)

    def test_one_repetition_without_aggregate(self):
        self.assertEqual(verdicts.parse(bench_json({"BM_X": [5.0]}))["BM_X"]
                         ["ns"], 5.0)

    def test_error(self):
        data = {"benchmarks": [{"name": "BM_X", "run_name": "BM_X",
                                "error_occurred": True,
                                "error_message": "no PKU"}]}
        b = verdicts.parse(data)["BM_X"]
        self.assertEqual((b["ns"], b["error"]), (None, "no PKU"))

    def test_missing_and_empty_files_give_nothing(self):
        self.assertEqual(verdicts.load(None), ({}, {}))
        self.assertEqual(verdicts.load("/nonexistent/x.json"), ({}, {}))
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            self.assertEqual(verdicts.load(f.name), ({}, {}))


class ArithmeticTest(unittest.TestCase):
    def test_ratio_and_derived_time(self):
        b = verdicts.parse(bench_json({
            "BM_CallbackRoundTrip/64": [6450.0, 6450.0],
            "BM_CallbackRoundTrip/0": [50.0, 50.0]}))
        self.assertEqual(verdicts.time_of(b, verdicts.CALLBACK), 100.0)
        self.assertIsNone(verdicts.time_of(b, verdicts.NATIVE_CB))
        self.assertEqual(verdicts.ratio(3.0, 2.0), 1.5)
        self.assertIsNone(verdicts.ratio(3.0, None))
        self.assertIsNone(verdicts.ratio(3.0, 0.0))

    def test_median_interval_15_is_4th_and_12th(self):
        med, low, high, cov = verdicts.median_interval(range(15, 0, -1))
        self.assertEqual((med, low, high), (8, 4, 12))
        self.assertAlmostEqual(cov, 1 - 2 * 576 / 2 ** 15)  # 0.965

    def test_median_interval_9_is_2nd_and_8th(self):
        med, low, high, cov = verdicts.median_interval(range(1, 10))
        self.assertEqual((med, low, high), (5, 2, 8))
        self.assertAlmostEqual(cov, 1 - 2 * 10 / 2 ** 9)  # 0.961

    def test_median_interval_too_few_gives_extremes(self):
        med, low, high, cov = verdicts.median_interval([4, 1, 3, 2])
        self.assertEqual((med, low, high), (2.5, 1, 4))
        self.assertAlmostEqual(cov, 1 - 2 / 16)  # below CONFIDENCE
        self.assertEqual(verdicts.median_interval([7])[1:], (7, 7, 0.0))
        self.assertIsNone(verdicts.median_interval([]))

    def test_judge(self):
        self.assertEqual(verdicts.judge(1.3, ("<=", 1.3)), "**met**")
        self.assertEqual(verdicts.judge(1.31, ("<=", 1.3)), "**missed**")
        self.assertEqual(verdicts.judge(1.0, ("<", 1.0)), "**missed**")
        self.assertEqual(verdicts.judge(None, ("<", 1.0)), "not measured")

    def test_heap_verdict(self):
        self.assertEqual(verdicts.heap_verdict([(16, 1.1), (64, 2.0)]),
                         "**met**")
        self.assertEqual(verdicts.heap_verdict([(16, 2.1), (256, 2.5),
                                                (64, 1.0)]),
                         "**missed** at 16 B, 256 B")
        self.assertEqual(verdicts.heap_verdict([(16, None)]), "not measured")

    def test_lib_verdict(self):
        lv = verdicts.lib_verdict
        self.assertEqual(lv((1.0, 0.99, 1.01, 0.96)), "**met**")
        self.assertEqual(lv((1.0, 0.97, 1.01, 0.96)), "**met** by the median "
                         "only (the interval reaches below)")
        self.assertEqual(lv((1.0, 0.99, 1.01, 0.875)), "**met** by the median "
                         "only (too few repetitions for a 95% interval)")
        self.assertEqual(lv((0.97, 0.96, 0.99, 0.96)),
                         "**missed** (within noise: the interval reaches it)")
        self.assertEqual(lv((0.97, 0.96, 0.975, 0.96)), "**missed**")
        self.assertEqual(lv(None), "not measured")


class SectionTest(unittest.TestCase):
    def test_gate(self):
        g = verdicts.parse(bench_json({
            "BM_WrpkruPair": [26.0, 25.0, 27.0],
            "BM_GateRoundTrip": [57.0, 65.0, 60.0],
            "BM_FaultAndReset": [8e4, 7e4, 9e4],
            "BM_ForkExitWait": [6e5, 7e5, 5e5]}))
        verdicts_, lines = verdicts.gate_section(g)
        self.assertIn(("gate round trip / WRPKRU pair <= 1.3", "2.31x",
                       "**missed**"), verdicts_)
        self.assertIn(("fault + Reset (SIGILL) / fork + exit + wait < 1",
                       "0.13x", "**met**"), verdicts_)
        self.assertIn("| gate round trip / WRPKRU pair | 60.0 | 26.0 | 2.31x "
                      "| <= 1.3: **missed** |", lines)
        self.assertIn(("gate round trip / trusted floor model, interleaved "
                       "<= 1.15", "n/a", "not measured"), verdicts_)

    def test_gate_over_floor_reads_the_interleaved_counters(self):
        g = verdicts.parse(bench_json(
            {"BM_GateOverFloor/min_time:0.500": [2e4]},
            counters={"BM_GateOverFloor/min_time:0.500": [
                {"ratio": 1.12, "gate_ns": 44.8, "floor_ns": 40.0}]}))
        verdicts_, lines = verdicts.gate_section(g)
        self.assertIn(("gate round trip / trusted floor model, interleaved "
                       "<= 1.15", "1.12x", "**met**"), verdicts_)
        self.assertIn("| gate round trip / trusted floor model, interleaved "
                      "| 44.8 | 40.0 | 1.12x | <= 1.15: **met** |", lines)

    def test_heap_subtracts_the_empty_call_and_divides_by_pairs(self):
        times, counters = {"BM_MallocFreeInsideEmpty": [60.0, 60.0]}, {}
        for size in verdicts.HEAP_SIZES:
            inside = 3060.0 if size == 256 else 2060.0
            times[f"BM_MallocFreeInside/{size}"] = [inside, inside]
            times[f"BM_MallocFreeNativeJemalloc/{size}"] = [1000.0, 1000.0]
            for name in times:
                counters[name] = [{"pairs": 100.0}] * 2
        v, lines = verdicts.heap_section(verdicts.parse(
            bench_json(times, counters=counters)))
        self.assertEqual(v[0][1:], ("2.00x - 3.00x", "**missed** at 256 B"))
        self.assertIn("| 16 | 20.0 | 10.0 | 2.00x | n/a | n/a |", lines)

    def test_libraries_paired(self):
        good = [1.0 + d / 1000 for d in range(-7, 8)]  # 0.993 - 1.007
        lib = verdicts.parse(bench_json(
            {"BM_ZlibCompressPaired/262144": [1.0] * 15,
             "BM_PngDecodePaired/512": [1.0] * 15,
             "BM_PngDecodeNative/512": [500.0, 500.0],
             "BM_PngDecodeInside/512": [505.0, 505.0]},
            counters={"BM_ZlibCompressPaired/262144": paired(good),
                      "BM_PngDecodePaired/512": paired(
                          [r - 0.02 for r in good])},
            suffix="/manual_time"))
        v, lines = verdicts.lib_section(lib)
        self.assertEqual(v[0][1:], ("1.000, interval 0.996 - 1.004 (96%)",
                                    "**met**"))
        self.assertEqual(v[1][2], "not measured")
        self.assertIn("median only", v[2][2])  # 0.980, interval from 0.976
        png = next(line for line in lines if line.startswith("| libpng"))
        self.assertIn("| 15 x 8 | 0.980 | 0.976 - 0.984 (96%) | n/a | 0.990 |",
                      png)

    def test_codecs_judged_at_0_97_from_64_kib_with_cpu_columns(self):
        good = [1.0 + d / 1000 for d in range(-7, 8)]
        names = ("BM_JpegDecodePaired/65536", "BM_XmlParsePaired/1024",
                 "BM_XmlParsePaired/65536")
        lib = verdicts.parse(bench_json(
            {n: [1.0] * 15 for n in names},
            counters={
                names[0]: [dict(p, paired_cpu_ratio=0.9) for p in
                           paired([r - 0.028 for r in good])],
                names[1]: paired([r - 0.2 for r in good]),
                names[2]: paired([r - 0.04 for r in good])},
            suffix="/manual_time"))
        lib.update(verdicts.parse(bench_json(
            {"BM_JpegDecodeNative/65536": [900.0, 900.0],
             "BM_JpegDecodeInside/65536": [950.0, 950.0]})))
        v, lines = verdicts.lib_section(lib)
        got = {label: verdict for label, _, verdict in v}
        jpeg = "libjpeg-turbo decode, JPEG of 64 KiB: inside / native " \
               "throughput >= 0.97, paired"
        self.assertIn("median only", got[jpeg])  # 0.972, interval from 0.968
        self.assertEqual(got["libxml2 parse + free, document of 64 KiB: "
                             "inside / native throughput >= 0.97, paired"],
                         "**missed**")
        self.assertNotIn("document of 1 KiB: inside", " ".join(got))
        self.assertEqual(sum("JPEG of 1 MiB" in line for line in lines), 1)
        self.assertFalse(any("JPEG of 1 KiB" in line for line in lines))
        small = next(line for line in lines if "document of 1 KiB" in line)
        self.assertIn("| 0.800 |", small)  # reported, no verdict
        row = next(line for line in lines if "JPEG of 64 KiB" in line)
        self.assertIn("| 0.947 | n/a | n/a | 0.900 | 0.947 |", row)


class LifecycleTest(unittest.TestCase):
    def test_ratios_against_baselines_and_absolute_targets(self):
        gate = verdicts.parse(bench_json({
            "BM_GateRoundTrip": [50.0, 50.0],
            "BM_Reset": [5000.0, 5000.0],
            "BM_CreateCallDestroy": [12000.0, 12000.0],
            "BM_ForkExitWait": [6e5, 6e5],
            "BM_SignalRoundTripHost": [2000.0, 2000.0]}))
        gate.update(verdicts.parse(bench_json(
            {"BM_FaultToStatusSegv": [25.0, 25.0]}, unit="us",
            suffix="/manual_time")))
        keys = verdicts.parse(bench_json({
            "BM_KeyHit": [50.0, 50.0],
            "BM_KeyMiss/48/0": [7000.0, 7000.0],
            "BM_KeyMiss/1024/0": [24000.0, 24000.0]}))
        v, lines = verdicts.lifecycle_section(gate, keys)
        got = {label: (measured, verdict) for label, measured, verdict in v}
        self.assertEqual(got["key-cache miss, 1 MiB touched <= 20 us"],
                         ("24.0 us", "**missed**"))
        self.assertEqual(got["Reset + the call renewing the context <= 20 us"],
                         ("5.00 us", "**met**"))
        self.assertEqual(got["create + first call + destroy <= 50 us"],
                         ("12.0 us", "**met**"))
        self.assertEqual(got["fault to status, SEGV_PKUERR <= 20 us"],
                         ("25.0 us", "**missed**"))
        self.assertEqual(got["key-cache miss, 48 KiB touched <= 20 us"],
                         ("7.00 us", "**met**"))
        self.assertEqual(got["key-cache miss, 448 KiB touched <= 20 us"][1],
                         "not measured")
        self.assertEqual(len(v), 6)
        self.assertIn("| Reset + the call renewing the context / gate round "
                      "trip | 5.00 | 5.00 | 50.0 | 100x | <= 20 us: **met** |",
                      lines)
        self.assertIn("| create + first call + destroy / fork + exit + wait | "
                      "12.0 | 12.0 | 600000 | 0.02x | <= 50 us: **met** |",
                      lines)
        self.assertIn("| key-cache miss, 1 MiB touched / hit (gate round trip)"
                      " | 24.0 | 24.0 | 50.0 | 480x | <= 20 us: **missed** |",
                      lines)
        sigill = next(line for line in lines if "SIGILL" in line)
        self.assertIn("| n/a | n/a | 2000 | n/a |", sigill)

    def test_lifecycle_only_report(self):
        with tempfile.TemporaryDirectory() as d:
            gate = os.path.join(d, "gate.json")
            with open(gate, "w") as f:
                json.dump(bench_json({"BM_WrpkruPair": [25.0, 25.0],
                                      "BM_GateRoundTrip": [30.0, 30.0],
                                      "BM_Reset": [3000.0, 3000.0]}), f)
            with redirect_stdout(io.StringIO()) as stdout:
                verdicts.main(["--gate", gate, "--keys",
                               os.path.join(d, "no"), "--lifecycle"])
        text = stdout.getvalue()
        self.assertIn("## Lifecycle against its baselines", text)
        self.assertIn("| Reset + the call renewing the context <= 20 us | "
                      "3.00 us | **met** |", text)
        self.assertNotIn("WRPKRU", text)
        self.assertNotIn("## Gate", text)


class MainTest(unittest.TestCase):
    def test_writes_the_report_with_its_command(self):
        with tempfile.TemporaryDirectory() as d:
            gate, out = os.path.join(d, "gate.json"), os.path.join(d, "R.md")
            with open(gate, "w") as f:
                json.dump(bench_json({"BM_WrpkruPair": [25.0, 25.0],
                                      "BM_GateRoundTrip": [30.0, 30.0]}), f)
            with redirect_stdout(io.StringIO()) as stdout:
                verdicts.main(["--gate", gate, "--heap", os.path.join(d, "no"),
                               "--command", "bench/run.sh x", "--out", out])
            with open(out) as f:
                text = f.read()
        self.assertEqual(text, stdout.getvalue())
        self.assertIn("- command: `bench/run.sh x`", text)
        self.assertIn("| gate round trip / WRPKRU pair <= 1.3 | 1.20x | "
                      "**met** |", text)
        self.assertNotIn("## Heap", text)


if __name__ == "__main__":
    unittest.main()
