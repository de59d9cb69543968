#!/usr/bin/env bash
# A WASIp2 hello (tests/guests/hello-p2, spin-sdk 5) on wharf beside real
# Spin 3.6.3 (the Spin inside SpinKube's containerd-shim-spin) and Spin
# 4.1.0-pre0, the same guest and manifest on the same route, measured in one
# run. Writes the table to docs/benchmarks.md (section spin-p2).
#
#   bench/spin-p2.sh                     # 10 s per measurement, 3 rounds
#   DURATION=3 ROUNDS=5 bench/spin-p2.sh
#
# WASIp2 handlers get a fresh instance per request on all three, as Spin
# runs them. Wall clock: wrk at 1, 16 and 64 connections, ROUNDS rounds;
# within a round the servers take turns at each concurrency, so the noise of
# this shared machine hits them alike; the table gives each row's median and
# the range of its rounds, and the CPU time per request of the server's
# processes and of wrk (which shares the cores). After wrk, each server is counted under callgrind (user-space
# instructions per request, REQUESTS of them over one keep-alive
# connection): the figure that does not move with the machine's load. The Spin binaries come from ../shared/spin (see its README);
# without them the script says so and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared/spin
if [ ! -x "$shared/install.sh" ]; then
  echo "bench/spin-p2.sh: no real Spin at $shared; nothing measured" >&2
  exit 1
fi
scripts/setup wrk valgrind
scripts/build-components
cargo build --profile fastest -p wharf

duration=${DURATION:-10}
rounds=${ROUNDS:-3}
requests=${REQUESTS:-1000}
. bench/common.sh

hello_manifest=$(write_hello_manifest guest_hello_p2)

wharf_port=$(free_port)
start_wharf "$hello_manifest" "$wharf_port"
declare -A spin_port
for version in 3.6.3 4.1.0-pre0; do
  spin_bin=$("$shared/install.sh" "$version")
  spin_port[$version]=$(free_port)
  # Spin logs each request's component output; keep it off the terminal.
  "$spin_bin" up -f "$hello_manifest" --listen "127.0.0.1:${spin_port[$version]}" --state-dir "$work/spin-$version" \
    > "$work/spin-$version.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:${spin_port[$version]}/"
done

servers=(wharf 3.6.3 4.1.0-pre0)
declare -A server_port=([wharf]=$wharf_port [3.6.3]=${spin_port[3.6.3]} [4.1.0-pre0]=${spin_port[4.1.0-pre0]})
declare -A server_pid=([wharf]=${pids[0]} [3.6.3]=${pids[1]} [4.1.0-pre0]=${pids[2]})
for round in $(seq 1 "$rounds"); do
  for c in 1 16 64; do
    for server in "${servers[@]}"; do
      server_ticks=$(tree_cpu_ticks "${server_pid[$server]}")
      wrk_ticks=$(reaped_cpu_ticks)
      wrk_run "$c" "http://127.0.0.1:${server_port[$server]}/"
      wrk_ticks=$(( $(reaped_cpu_ticks) - wrk_ticks ))
      server_ticks=$(( $(tree_cpu_ticks "${server_pid[$server]}") - server_ticks ))
      answered=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
      printf 'round %s c=%-3s %-12s %10s req/s  p50 %-9s p99 %-9s CPU ticks: server %s, wrk %s\n' \
        "$round" "$c" "$server" "$rps" "$p50" "$p99" "$server_ticks" "$wrk_ticks"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$c" "$rps" "$p50" "$p99" "$answered" "$server_ticks" "$wrk_ticks" >> "$work/wrk.tsv"
    done
  done
done

for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
pids=()

# callgrind_count_spin <spin binary>: sets per_request for that Spin. Spin
# runs the HTTP trigger in a child process (`spin trigger http`), so
# valgrind follows children and the counts of all of them are summed;
# `callgrind_window all` reaches every process under callgrind, which are
# this Spin's only.
callgrind_count_spin() {
  local port out="$work/callgrind-spin-$RANDOM"
  port=$(free_port)
  mkdir -p "$out"
  valgrind --tool=callgrind --trace-children=yes --instr-atstart=no --callgrind-out-file="$out/%p" \
    "$1" up -f "$hello_manifest" --listen "127.0.0.1:$port" --state-dir "$out/state" > "$out/log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.5; done
  python3 bench/keepalive-client.py "$port" 200
  callgrind_window all python3 bench/keepalive-client.py "$port" "$requests"
  per_request=$(( $(cat "$out"/*.1 | awk '/^totals:/ {sum += $2} END {print sum}') / requests ))
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
declare -A instructions
start_callgrind "$wharf_bin" up -f "$hello_manifest" --listen 127.0.0.1:PORT --state-dir "$work/callgrind-wharf" --max-instances 1
python3 bench/keepalive-client.py "$callgrind_port" 200
callgrind_count "$requests"
stop_callgrind
instructions[wharf]=$per_request
for version in 3.6.3 4.1.0-pre0; do
  callgrind_count_spin "$("$shared/install.sh" "$version")"
  instructions[$version]=$per_request
done
echo "instructions per request: wharf ${instructions[wharf]}, Spin 3.6.3 ${instructions[3.6.3]}, Spin 4.1.0-pre0 ${instructions[4.1.0-pre0]}"

{
  echo "Command: \`DURATION=$duration ROUNDS=$rounds REQUESTS=$requests bench/spin-p2.sh\` on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(date -u +%Y-%m-%d)."
  echo "wrk -t2 (-t1 for one connection) -d${duration}s on the same machine, which also runs the server; $rounds rounds, the servers in turns within each. wharf: \`--profile fastest\`; Spin: the release builds in ../shared/spin."
  echo
  python3 - "$work/wrk.tsv" "$rounds" "$(getconf CLK_TCK)" <<'PY'
import csv, statistics, sys
path, rounds, ticks_per_second = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = {"wharf": "wharf", "3.6.3": "spin 3.6.3", "4.1.0-pre0": "spin 4.1.0-pre0"}
runs = {}
# CPU microseconds per request answered, of the server (all its processes)
# and of wrk, in each run.
cpu = {}

def per_request(ticks, answered):
    return int(ticks) * 1e6 / ticks_per_second / int(answered)

for server, conns, rps, p50, p99, answered, server_ticks, wrk_ticks in csv.reader(open(path), delimiter="\t"):
    runs.setdefault((server, conns), []).append((float(rps), p50, p99))
    cpu.setdefault((server, conns), []).append((per_request(server_ticks, answered), per_request(wrk_ticks, answered)))

def median_run(server, conns):
    """The round whose req/s is the median (its latencies are shown with it)."""
    ordered = sorted(runs[(server, conns)])
    return ordered[len(ordered) // 2]

print(f"req/s is the median of {rounds} rounds with their range in brackets; p50 and p99 are the median round's.")
print()
print("| server | connections | req/s | p50 | p99 |")
print("|---|---|---|---|---|")
for conns in ("1", "16", "64"):
    for server, name in names.items():
        rates = [rate for rate, _, _ in runs[(server, conns)]]
        rate, p50, p99 = median_run(server, conns)
        print(f"| {name}, WASIp2 hello | {conns} | {rate:,.0f} [{min(rates):,.0f}–{max(rates):,.0f}] | {p50} | {p99} |")
print()
# A round's servers ran minutes apart at most, so a round's ratio holds
# their common noise out; the median of those, and their range.
print(f"wharf's req/s over Spin's, round by round: the median of the {rounds} rounds' ratios, their range in brackets.")
print()
print("| connections | wharf ÷ Spin 3.6.3 | wharf ÷ Spin 4.1.0-pre0 |")
print("|---|---|---|")
for conns in ("1", "16", "64"):
    cells = []
    for spin in ("3.6.3", "4.1.0-pre0"):
        ratios = [w[0] / s[0] for w, s in zip(runs[("wharf", conns)], runs[(spin, conns)])]
        cells.append(f"{statistics.median(ratios):.1f}× [{min(ratios):.1f}–{max(ratios):.1f}]")
    print(f"| {conns} | " + " | ".join(cells) + " |")
print()
# Under load the two cores run the server and wrk both, so req/s divides
# the machine's CPU between them: the server's own CPU per request is the
# figure a node serving traffic from elsewhere would see.
print(f"CPU time per request answered (user + system, from /proc; the server's processes, and wrk's own beside it): the median of the {rounds} rounds, in µs; Spin's over wharf's round by round, median and range.")
print()
print("| connections | wharf | spin 3.6.3 | spin 4.1.0-pre0 | Spin 3.6.3 ÷ wharf | Spin 4.1.0-pre0 ÷ wharf | wrk, against wharf | wrk, against Spin 3.6.3 |")
print("|---|---|---|---|---|---|---|---|")
for conns in ("1", "16", "64"):
    server = {name: statistics.median(s for s, _ in cpu[(name, conns)]) for name in names}
    cells = [f"{server[name]:.1f}" for name in names]
    for spin in ("3.6.3", "4.1.0-pre0"):
        ratios = [s[0] / w[0] for w, s in zip(cpu[("wharf", conns)], cpu[(spin, conns)])]
        cells.append(f"{statistics.median(ratios):.1f}× [{min(ratios):.1f}–{max(ratios):.1f}]")
    for name in ("wharf", "3.6.3"):
        cells.append(f"{statistics.median(w for _, w in cpu[(name, conns)]):.1f}")
    print(f"| {conns} | " + " | ".join(cells) + " |")
PY
  echo
  echo "User-space instructions per request (callgrind, valgrind $(valgrind --version | sed 's/valgrind-//'); $requests requests over one keep-alive connection after 200 of warm-up):"
  echo
  echo "| server | instructions per request | Spin ÷ wharf |"
  echo "|---|---|---|"
  echo "| wharf, WASIp2 hello | ${instructions[wharf]} | |"
  for version in 3.6.3 4.1.0-pre0; do
    echo "| spin $version, WASIp2 hello | ${instructions[$version]} | $(python3 -c "print(f'{${instructions[$version]}/${instructions[wharf]}:.2f}×')") |"
  done
} > "$work/table.md"
write_section spin-p2 "WASIp2 hello: wharf and real Spin" "$work/table.md"
