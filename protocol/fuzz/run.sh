#!/usr/bin/env bash
# One fuzzing session on one target, then the numbers the README's table
# records. Stable Rust only: AFL++ through cargo-afl, or libFuzzer through
# cargo-fuzz without a sanitizer (a sanitizer needs nightly's -Z flags; the
# protocol crate forbids unsafe code, so there is little for one to find).
#
#   fuzz/run.sh ENGINE TARGET [SECONDS] [OUT]
#
# ENGINE: afl or libfuzzer. TARGET: client_frame, server_frame,
# plain_encode, names or server_url. OUT (default fuzz/out) keeps the
# corpus; running again with the same OUT resumes from it.
set -euo pipefail
cd "$(dirname "$0")"

engine=${1:?usage: fuzz/run.sh afl|libfuzzer TARGET [SECONDS] [OUT]}
target=${2:?usage: fuzz/run.sh afl|libfuzzer TARGET [SECONDS] [OUT]}
seconds=${3:-600}
out=${4:-out}
case $target in
  client_frame | server_frame | plain_encode) dict=dicts/json.dict ;;
  names) dict=dicts/names.dict ;;
  server_url) dict=dicts/url.dict ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
mkdir -p "$out"
out=$(cd "$out" && pwd)
here=$(pwd)

case $engine in
afl)
  cargo afl build --release --features afl --bin "$target"
  binary="${CARGO_TARGET_DIR:-target}/release/$target"
  dir="$out/afl/$target"
  mkdir -p "$out/afl"
  # A previous session's queue is resumed ("-i -"); otherwise start from seeds.
  input=seeds/$target
  [ -d "$dir/default/queue" ] && input=-
  # AFL_SKIP_CPUFREQ: no frequency scaling to check in a VM or container.
  # AFL_NO_AFFINITY: the cores are shared; leave placement to the scheduler.
  # AFL_NO_UI: plain status lines instead of the full-screen display.
  AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 \
    nice -n 10 cargo afl fuzz -i "$input" -o "$dir" -x "$dict" -V "$seconds" -- "$binary"
  echo "== afl $target"
  grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg|stability)\b' \
    "$dir/default/fuzzer_stats"
  ls "$dir/default/crashes" "$dir/default/hangs" | grep -v README || true
  ;;
libfuzzer)
  dir="$out/libfuzzer/$target"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  # New inputs go to the first directory; the seeds are only read.
  (cd .. && nice -n 10 cargo fuzz run --sanitizer none --features libfuzzer "$target" \
    "$dir/corpus" "$here/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -dict="$here/$dict" \
    -artifact_prefix="$dir/artifacts/" -print_final_stats=1) 2>&1 | tee "$dir/last-run.log" |
    grep -E '^(#[0-9]+ +(INITED|DONE)|stat::|Done |==[0-9]+== ERROR|SUMMARY)' || true
  echo "== libfuzzer $target"
  echo "corpus_count      : $(find "$dir/corpus" -type f | wc -l)"
  echo "artifacts         : $(find "$dir/artifacts" -type f | wc -l)"
  ls "$dir/artifacts"
  ;;
*) echo "unknown engine $engine" >&2; exit 2 ;;
esac
