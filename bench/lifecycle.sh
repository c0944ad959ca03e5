#!/usr/bin/env bash
# Issue 16's lifecycle against its baselines, in one command: Reset against
# the gate round trip, create + first call + destroy against fork + exit +
# wait, fault to status against a signal through mpkbox's entry
# (gate_bench), and the key-cache miss against the hit, which is the gate
# round trip (key_cache_bench). bench/run.sh with those benchmarks only;
# prints verdicts.py's lifecycle section and writes nothing in bench/.
#
#   bench/lifecycle.sh [BUILD_DIR]      # default ./build; builds nothing
#
# Environment: REPS (default 9), MIN_TIME and CPU as bench/run.sh.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROGRAMS="gate_bench key_cache_bench" LIFECYCLE=1 OUT="" REPS="${REPS:-9}" \
  FILTER='^BM_(GateRoundTrip|Reset|CreateCallDestroy|ForkExitWait|FaultToStatus|FaultToStatusSegv|SignalRoundTripHost|KeyHit|KeyMiss/(0|48|448|1024)/0)(/manual_time)?$' \
  exec "${here}/run.sh" "$@"
