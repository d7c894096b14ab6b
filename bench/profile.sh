#!/usr/bin/env bash
# Profiles the services while a longrun-bench scenario runs: samples every
# process the scenario started (redis-server, longrun api/worker/realtime)
# with `perf record -e cpu-clock -g` (a software clock, so it works on VMs
# without hardware counters), then writes a flamegraph and the top symbols.
#
#   bench/profile.sh throughput [seconds]   # the job drain: worker + Redis
#   bench/profile.sh initiate [seconds]     # POST /v1/demo/sleep: api + Redis
#
# Needs perf (linux-perf) and inferno (`cargo install inferno`). Output:
# target/bench/profile-SCENARIO.svg and .txt. Build first:
# cargo build --release -p longrun -p longrun-bench
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: bench/profile.sh throughput|initiate [seconds]}
seconds=${2:-6}
bench=target/release/longrun-bench
out=target/bench/profile-$scenario
mkdir -p target/bench
for tool in perf inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "profile.sh: $tool is missing" >&2; exit 1; }
done

case "$scenario" in
  throughput) args=(throughput --jobs 40000 --monitor-jobs 0); role=worker ;;
  initiate) args=(initiate --seconds "$((seconds + 4))" --warmup-seconds 2); role=api ;;
  *) echo "profile.sh: unknown scenario $scenario" >&2; exit 2 ;;
esac

"$bench" "${args[@]}" > "$out.json" 2> "$out.log" &
driver=$!
trap 'kill "$driver" 2>/dev/null || true' EXIT
pids=
for _ in $(seq 1200); do # the throughput drain starts once its 40,000 jobs are queued
  if pgrep -P "$driver" -f "longrun $role" >/dev/null; then
    [ "$role" = api ] && sleep 2 # past the warm-up
    pids=$(pgrep -P "$driver" | paste -sd, -)
    break
  fi
  kill -0 "$driver" 2>/dev/null || { cat "$out.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$pids" ] || { echo "profile.sh: the scenario's services did not start" >&2; exit 1; }
perf record -e cpu-clock -F 499 -g -p "$pids" -o "$out.data" -- sleep "$seconds" 2>/dev/null
wait "$driver" || true
trap - EXIT
perf script -i "$out.data" 2>/dev/null | inferno-collapse-perf > "$out.folded"
inferno-flamegraph --title "longrun $scenario (cpu-clock, $seconds s)" < "$out.folded" > "$out.svg"
{
  echo "# samples by process"
  perf report -i "$out.data" --stdio --no-children --sort comm 2>/dev/null | grep -E '^ +[0-9]' || true
  echo "# top symbols"
  perf report -i "$out.data" --stdio --no-children --sort comm,sym -g none 2>/dev/null | grep -E '^ +[0-9]' | head -40 || true
} > "$out.txt"
cat "$out.txt"
tail -8 "$out.log"
echo "wrote $out.svg and $out.txt" >&2
