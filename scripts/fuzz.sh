#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/Cargo.toml) for SECONDS each (default
# 20), starting from its committed corpus in fuzz/corpus. What a run finds
# new goes to target/fuzz-corpus, not into the committed corpus; a crash
# leaves its input in target/fuzz-artifacts/TARGET and fails the script.
# `scripts/fuzz.sh 600 heartbeat_decode` fuzzes one target longer, and
# `FUZZ_GROW=1` merges what it found into fuzz/corpus (the inputs that
# reach new code only).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true

# cargo-fuzz builds with sanitizer flags that stable rustc accepts under
# RUSTC_BOOTSTRAP; the version is pinned so CI builds what was tried here.
if ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
  cargo install --locked cargo-fuzz --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
cd fuzz
cargo fuzz build --release
for t in "${targets[@]}"; do
  [ -d "corpus/$t" ] || { echo "fuzz: $t has no committed corpus (fuzz/corpus/$t)" >&2; exit 1; }
  new="../target/fuzz-corpus/$t"
  art="../target/fuzz-artifacts/$t/"
  mkdir -p "$new" "$art"
  echo "fuzz: $t for ${seconds}s"
  # Bounded in time and memory; a timeout of 10 s per input counts as a
  # crash (a decoder that hangs is as bad as one that panics).
  if ! cargo fuzz run --release "$t" "$new" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$art" -print_final_stats=1 >"../target/fuzz-$t.log" 2>&1; then
    tail -n 40 "../target/fuzz-$t.log" >&2
    echo "fuzz: $t failed; the input is in target/fuzz-artifacts/$t" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units' "../target/fuzz-$t.log" | sed "s/^/fuzz: $t: /"
  if [ "${FUZZ_GROW:-0}" = 1 ]; then
    cargo fuzz run --release "$t" "corpus/$t" "$new" -- -merge=1 >/dev/null 2>&1
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
