#!/usr/bin/env bash
# Short fuzz runs of every target in fuzz/ (cargo-fuzz layout, libFuzzer): each target runs
# for FUZZ_SECS seconds (default 10) from its seed corpus fuzz/corpus/<target>/seed-* (kept in
# git); what libFuzzer finds new goes to a temporary directory. A crash or a broken invariant
# fails the script and leaves the input in fuzz/artifacts/<target>/ (reproduce with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -O --debug-assertions <target> <file>`).
#
# This machine has only the stable toolchain (rustup cannot fetch nightly). cargo-fuzz passes
# `-Zsanitizer=address` and `-Cpasses=sancov-module`, which stable rustc accepts with
# RUSTC_BOOTSTRAP=1; the AddressSanitizer runtime ships with stable's rust-std on
# x86_64-unknown-linux-gnu. cargo-fuzz itself is installed from crates.io when missing.
# Arguments: target names (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECS:-10}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
# FUZZ_BUILD=--dev (what .ci/run uses) skips optimisation: a much shorter build for a
# seconds-long smoke run; the default, -O, is for longer local runs.
flags=(--fuzz-dir fuzz "${FUZZ_BUILD:--O}" --debug-assertions)
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
for t in "${targets[@]}"; do
  cargo fuzz build "${flags[@]}" "$t"
done
passed=0
for t in "${targets[@]}"; do
  work=$(mktemp -d -t "switchboard-fuzz-$t.XXXXXX")
  echo "scripts/fuzz.sh: $t for ${secs}s"
  if ! cargo fuzz run "${flags[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1; then
    rm -rf "$work"
    echo "scripts/fuzz.sh: $t FAILED (input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  rm -rf "$work"
  passed=$((passed + 1))
done
echo "scripts/fuzz.sh: $passed fuzz targets ran ${secs}s each without a crash"
