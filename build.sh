#!/usr/bin/env bash
# build.sh: set up, build and run mpkbox on Debian 12.
#
#   ./build.sh demo     set up, build, run the samples (quickstart first)
#   ./build.sh test     set up, build, run every test with ctest
#   ./build.sh bench    set up, build, run bench/run.sh (if there is one)
#   ./build.sh build    set up and build only
#
# Set-up installs whichever of the Debian packages in PACKAGES are missing
# (apt-get, as root or through sudo); nothing is downloaded from anywhere
# else. The build goes to ./build (RelWithDebInfo, warnings are errors).
# On a CPU without PKU, demo and test run in an emulated guest whose CPU
# has it (tests/guest/pku_guest.sh; MPKBOX_GUEST=off runs them here, where
# the tests that need PKU are skipped; MPKBOX_GUEST=force uses the guest
# even on a CPU with PKU).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

readonly PACKAGES=(
  build-essential cmake pkg-config
  libabsl-dev libunwind-dev libjemalloc-dev libseccomp-dev libzydis-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  zlib1g-dev libpng-dev libexpat1-dev nettle-dev libjson-c-dev
  libjpeg62-turbo-dev libxml2-dev libtiff-dev libarchive-dev
  libsqlite3-dev libwebp-dev libjansson-dev
  python3 gdb
)
readonly BUILD_DIR=build

log() { echo "build.sh: $*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,11s/^# \{0,1\}//p' "$0"
  echo "PACKAGES: ${PACKAGES[*]}"
  exit "${1:-0}"
}

# Prints the packages of PACKAGES that dpkg does not list as installed.
missing_packages() {
  local pkg status
  for pkg in "${PACKAGES[@]}"; do
    # One line per installed architecture; unknown packages fail the query.
    status="$(dpkg-query -W -f='${db:Status-Status}\n' "$pkg" 2>/dev/null)" \
      || status=""
    if ! grep -qx installed <<<"$status"; then
      echo "$pkg"
    fi
  done
}

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root or sudo to run: $*"
  fi
}

setup() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    log "no dpkg-query: not Debian; make sure these are installed: ${PACKAGES[*]}"
    return
  fi
  local missing
  mapfile -t missing < <(missing_packages)
  if [[ "${#missing[@]}" -eq 0 ]]; then
    log "all ${#PACKAGES[@]} Debian packages present"
    return
  fi
  log "installing missing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
  mapfile -t missing < <(missing_packages)
  if [[ "${#missing[@]}" -ne 0 ]]; then
    die "still missing after apt-get install: ${missing[*]}"
  fi
}

build() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPKBOX_WERROR=ON
  cmake --build "$BUILD_DIR" -j"$(nproc)"
}

has_pku() {
  grep -qw pku /proc/cpuinfo && grep -qw ospke /proc/cpuinfo
}

# True when demo and test must run in the emulated PKU guest.
use_guest() {
  case "${MPKBOX_GUEST:-auto}" in
    off) return 1 ;;
    force) return 0 ;;
    auto) ! has_pku ;;
    *) die "MPKBOX_GUEST is '${MPKBOX_GUEST}': use auto, off or force" ;;
  esac
}

in_guest() {
  local why="no PKU on this CPU"
  [[ "${MPKBOX_GUEST:-auto}" == force ]] && why="MPKBOX_GUEST=force"
  log "${why}: running the ${1} in an emulated PKU guest" \
    "(slower; timings mean nothing there)"
  shift
  tests/guest/pku_guest.sh run -- "$@"
}

# Runs one sample (it prints its own outcome) and remembers a failure.
demo_failed=()
run_sample() {
  local name="$1"
  shift
  echo
  echo "=== ${name}: $*"
  local rc=0
  "$@" || rc=$?
  case "$rc" in
    0) ;;
    2) demo_failed+=("${name} (no PKU here)") ;;
    *) demo_failed+=("${name} (exit ${rc})") ;;
  esac
}

# Runs every sample, quickstart first, and fails if any of them did.
demo() {
  local dir="./$BUILD_DIR/samples"
  run_sample quickstart "$dir/quickstart/quickstart"
  run_sample hardened_parser "$dir/hardened_parser/hardened_parser" \
    "$dir/hardened_parser/inputs"
  run_sample plugin_host "$dir/plugin_host/plugin_host" \
    "$dir/plugin_host/plugins"
  run_sample wrapped_zlib "$dir/wrapped_zlib/wrapped_zlib"
  run_sample xml_sandbox "$dir/xml_sandbox/xml_sandbox"
  echo
  if [[ "${#demo_failed[@]}" -ne 0 ]]; then
    die "demo: FAILED: ${demo_failed[*]}"
  fi
  log "demo: all 5 samples ran as expected"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    demo|test|bench|build) ;;
    guest-demo) demo; return ;;  # internal: the demo inside the guest
    -h|--help|help) usage 0 ;;
    '') echo "build.sh: missing command" >&2; usage 2 >&2 ;;
    *) echo "build.sh: unknown command '${cmd}'" >&2; usage 2 >&2 ;;
  esac

  setup
  build

  case "$cmd" in
    demo)
      [[ $# -eq 0 ]] || die "demo takes no arguments"
      if use_guest; then
        in_guest demo ./build.sh guest-demo
      else
        demo
      fi
      ;;
    test)
      local ctest=(ctest --test-dir "$BUILD_DIR" --output-on-failure
                   --no-tests=error -j2 "$@")
      if use_guest; then
        in_guest tests "${ctest[@]}"
      else
        "${ctest[@]}"
      fi
      ;;
    bench)
      if [[ -f bench/run.sh ]]; then
        bash bench/run.sh "$BUILD_DIR" "$@"  # knobs: see bench/run.sh
      else
        log "bench/run.sh does not exist yet: nothing to run"
      fi
      ;;
    build) ;;
  esac
}

main "$@"
