# Sourced by the benchmark scripts: a scratch dir and the processes to stop
# on exit, and small helpers.
#
# The scripts start the app with SPIN_VARIABLE_CUSTOMER_AUTH=none (the
# development switch; requests name their user): customer JWT verification is
# not in these figures yet.
work=$(mktemp -d)
# The host as shipped: the `fastest` profile (whole-program LTO), which
# deploy/wharf/Containerfile builds too. Each script builds it first.
wharf_bin=target/fastest/wharf
pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
# `wasmtime serve` of the same wasmtime release as the host, the competitor
# measured beside it: built once into target/bench-tools (about 15 minutes).
wasmtime_bin=target/bench-tools/bin/wasmtime
install_wasmtime_serve() {
  if ! "$wasmtime_bin" --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8\b'; then
    cargo install wasmtime-cli --version 48.0.8 --locked --root target/bench-tools --target-dir target
  fi
}
# write_hello_manifest [guest]: an app of a hello test guest (default
# guest_hello, the WASIp3 one) on `/...`; prints the manifest's path.
write_hello_manifest() {
  local guest=${1:-guest_hello}
  mkdir -p "$work/$guest"
  cat > "$work/$guest/spin.toml" <<TOML
spin_manifest_version = 2
[application]
name = "bench-hello"
[[trigger.http]]
route = "/..."
component = "hello"
[component.hello]
source = "$(pwd)/target/wasm32-wasip2/wasm/$guest.wasm"
TOML
  echo "$work/$guest/spin.toml"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

# wrk_run <connections> <url> [wrk lua script]: one wrk run; sets rps, p50
# and p99 (wrk's units) and warns on non-2xx answers.
wrk_run() {
  local conns=$1 url=$2 script=${3:-}
  local threads=$(( conns < 2 ? 1 : 2 ))
  local args=("-t$threads" "-c$conns" "-d${duration}s" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  wrk "${args[@]}" "$url" > "$work/wrk.txt"
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  if grep -q "Non-2xx" "$work/wrk.txt"; then
    echo "warning: $url had non-2xx answers: $(grep Non-2xx "$work/wrk.txt")" >&2
  fi
}

# measure <label> <connections> <url> [wrk lua script]: one wrk run; prints a
# line and appends a row `| label | connections | req/s | p50 | p99 |` to rows.
rows=()
measure() {
  local label=$1 conns=$2
  wrk_run "$conns" "$3" "${4:-}"
  printf '%-48s c=%-3s %10s req/s  p50 %-9s p99 %s\n' "$label" "$conns" "$rps" "$p50" "$p99"
  rows+=("| $label | $conns | ${rps%.*} | $p50 | $p99 |")
}

# CPU time in clock ticks (user + system, of every thread), for CPU per
# request beside req/s. tree_cpu_ticks <pid>: that process and its live
# descendants (Spin serves from a child process, `spin trigger http`).
# reaped_cpu_ticks: the children this shell has waited for, so the
# difference around a wrk run is that wrk's (and its few awk lines').
# Field 2 of /proc/<pid>/stat is the command's name, which may hold spaces:
# fields are counted after its closing parenthesis. A process gone between
# its parent's listing and the read counts 0.
tree_cpu_ticks() {
  local ticks child
  ticks=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13} END {if (NR == 0) print 0}')
  for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    ticks=$(( ticks + $(tree_cpu_ticks "$child") ))
  done
  echo "$ticks"
}
reaped_cpu_ticks() { sed 's/.*) //' "/proc/$$/stat" | awk '{print $14 + $15}'; }

# wharf's request log (a line per request at `info`) is off, as Spin has none
# by default: RUST_LOG=warn here and under callgrind (docs/benchmarks.md).
start_wharf() { # <manifest> <port> [extra args...]
  local manifest=$1 port=$2; shift 2
  RUST_LOG=warn "$wharf_bin" up -f "$manifest" --listen "127.0.0.1:$port" --state-dir "$work/state-$port" "$@" > "$work/wharf-$port.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/.well-known/spin/health"
}

# Instructions counted by valgrind's callgrind (user space: host, guest and
# libc; not the kernel). Under valgrind the pooling allocator can reserve
# only one instance slot's worth of address space, so wharf needs
# --max-instances 1 there.
#
# start_callgrind <command...>: starts the command under callgrind, PORT in
# it replaced by a free port, and waits for any HTTP answer there for as long
# as it runs: valgrind's CPU has other features, so wharf's cached code does
# not serve it and a first start compiles every component under valgrind.
# Callgrind counts nothing until callgrind_count, so that compiling and
# warm-up run several times faster. Sets callgrind_port, callgrind_pid and
# callgrind_out.
start_callgrind() {
  callgrind_port=$(free_port)
  callgrind_out="$work/callgrind.$callgrind_port"
  callgrind_dumps=0
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$callgrind_out" "${@//PORT/$callgrind_port}" > "$work/server-$callgrind_port.log" 2>&1 &
  callgrind_pid=$!
  pids+=("$callgrind_pid")
  while kill -0 "$callgrind_pid" 2>/dev/null; do
    curl -s -o /dev/null "http://127.0.0.1:$callgrind_port/" && return 0
    sleep 0.5
  done
  echo "exited under callgrind before answering: $*" >&2
  tail -20 "$work/server-$callgrind_port.log" >&2
  return 1
}
# callgrind_window <pid|all> <command...>: counts from zero while the
# command runs, then dumps the count: of that process, or of every process
# under callgrind with `all`.
callgrind_window() {
  local target=()
  [ "$1" = all ] || target=("$1")
  shift
  callgrind_control -i on "${target[@]}" > /dev/null 2>&1
  callgrind_control -z "${target[@]}" > /dev/null 2>&1
  "$@"
  callgrind_control -d "${target[@]}" > /dev/null 2>&1
  callgrind_control -i off "${target[@]}" > /dev/null 2>&1
}
# callgrind_count <requests> [keepalive-client options...]: counts from zero
# while the requests go over one keep-alive connection and sets per_request
# to the instructions per request.
callgrind_count() {
  local requests=$1; shift
  callgrind_window "$callgrind_pid" python3 bench/keepalive-client.py "$callgrind_port" "$requests" "$@"
  # Each dump is a file of its own, numbered from 1.
  callgrind_dumps=$((callgrind_dumps + 1))
  local total
  total=$(awk '/^totals:/ {print $2}' "$callgrind_out.$callgrind_dumps")
  per_request=$(( total / requests ))
}
stop_callgrind() { kill "$callgrind_pid"; wait "$callgrind_pid" 2>/dev/null || true; }

# write_section <name> <title> <table file>: replaces the text between
# <!-- name:begin --> and <!-- name:end --> in docs/benchmarks.md, adding the
# section at the end the first time.
write_section() {
  python3 - "$1" "$2" "$3" docs/benchmarks.md <<'PY'
import sys, re, pathlib
name, title, table, doc = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]).read_text(), pathlib.Path(sys.argv[4])
text = doc.read_text() if doc.exists() else "# Benchmarks\n"
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
if begin not in text:
    text += f"\n## {title}\n\n{begin}\n{end}\n"
text = re.sub(re.escape(begin) + ".*" + re.escape(end), lambda _: begin + "\n" + table.rstrip("\n") + "\n" + end, text, flags=re.S)
doc.write_text(text)
PY
  echo "wrote the $1 section of docs/benchmarks.md"
}
