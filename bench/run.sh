#!/usr/bin/env bash
# The side-by-side benchmark (`make bench` builds and installs, then runs this).
#
# Starts each server in turn on 127.0.0.1, pinned to one core, runs the
# identical scenarios with the load generator pinned to the other core,
# stops only the processes it started, and writes
# bench/results/<date>.json and .md.
#
# Environment: PEERS (default ../shared/peers), SERVER_CORE (0),
# LOADGEN_CORE (1), BENCH_SERVERS (default "project socketio python"),
# LOADGEN and SERVER_BIN (default target/release/{loadgen,server}),
# BENCH_SCENARIOS (default "1 2 3 4 5": a subset, e.g. "1 2", runs only those).
#
# The project's clients are one signed-in guest each (cached in
# $WORK/db/sessions.txt for the later scenarios); `loadgen run` creates the
# rooms and joins each client's user to its room over HTTP before
# connecting (joins are idempotent: every scenario re-asserts its own).
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=${PEERS:-../shared/peers}
SERVER_CORE=${SERVER_CORE:-0}
LOADGEN_CORE=${LOADGEN_CORE:-1}
SERVERS=${BENCH_SERVERS:-project socketio python}
SCENARIOS=$(echo ${BENCH_SCENARIOS:-1 2 3 4 5})
for s in $SCENARIOS; do
	case $s in
	[1-5]) ;;
	*) echo "BENCH_SCENARIOS: unknown scenario '$s' (1 to 5)" >&2; exit 2 ;;
	esac
done
WORK=bench/work
RESULTS=$WORK/results
LOADGEN=${LOADGEN:-target/release/loadgen}
SERVER_BIN=${SERVER_BIN:-target/release/server}
DATE=$(date +%F)
OUT=bench/results/$DATE
# A subset of scenarios never overwrites the day's full results.
if [[ $SCENARIOS != "1 2 3 4 5" ]]; then
	OUT=$OUT-scenarios-$(echo $SCENARIOS | tr ' ' '-')
fi

# Ports of our own, so a `make run` on 3000 is left alone.
declare -A PORT=([project]=3100 [socketio]=3101 [python]=3102)

# Idle connections: every connection is a descriptor on both sides, and the
# hard limit cannot be raised without CAP_SYS_RESOURCE: stay under it.
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
IDLE_MAX=$(( NOFILE >= 51000 ? 50000 : (NOFILE - 1000) / 1000 * 1000 ))
IDLE_NOTE=""
if (( IDLE_MAX < 50000 )); then
	IDLE_NOTE="50 000 connections could not be attempted: the open-files hard limit here is $NOFILE (\`ulimit -Hn\`) and cannot be raised (no CAP_SYS_RESOURCE), so the server process cannot hold more than that many sockets. The largest run is $IDLE_MAX."
fi

SERVER_PID=""
cleanup() {
	if [[ -n "$SERVER_PID" ]]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT

wait_port() {
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "server on port $1 did not come up" >&2
	return 1
}

# scenario <n>: whether scenario n was asked for.
scenario() {
	[[ " $SCENARIOS " == *" $1 "* ]]
}

# start_server <kind>: starts it pinned to SERVER_CORE, sets SERVER_PID.
start_server() {
	local kind=$1 port=${PORT[$1]}
	case $kind in
	project)
		LEPTOS_SITE_ADDR=127.0.0.1:$port DATABASE_URL=sqlite://$WORK/db/chat.db \
			LEPTOS_SITE_ROOT=target/site LEPTOS_ENV=PROD RUST_LOG=warn CHAT_ROOMS_PER_USER=0 \
			taskset -c "$SERVER_CORE" "$SERVER_BIN" >>"$WORK/logs/project.log" 2>&1 &
		;;
	socketio)
		PORT=$port taskset -c "$SERVER_CORE" node "$WORK/peers/socketio_chat.js" \
			>>"$WORK/logs/socketio.log" 2>&1 &
		;;
	python)
		PORT=$port taskset -c "$SERVER_CORE" "$WORK/venv/bin/python" "$PEERS/seed_ws_chat.py" \
			>>"$WORK/logs/python.log" 2>&1 &
		;;
	esac
	SERVER_PID=$!
	wait_port "$port"
}

stop_server() {
	kill "$SERVER_PID"
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}

# loadgen <kind> <label> args...: one scenario, pinned to LOADGEN_CORE.
loadgen() {
	local kind=$1 label=$2
	shift 2
	taskset -c "$LOADGEN_CORE" "$LOADGEN" run --kind "$kind" --addr "127.0.0.1:${PORT[$kind]}" \
		--server-pid "$SERVER_PID" --label "$label" --sessions "$WORK/db/sessions.txt" \
		--out "$RESULTS/$kind-$label.json" "$@"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$RESULTS" "$WORK/db" "$WORK/logs"
mkdir -p "$RESULTS" "$WORK/db" "$WORK/logs" bench/results

for kind in $SERVERS; do
	echo "== $kind" >&2
	if scenario 1 || scenario 2 || scenario 3 || { scenario 5 && [[ $kind == project ]]; }; then
		start_server "$kind"
		# 1. Moderate: 10 rooms x 50 clients, 5 senders per room at 20 msg/s.
		if scenario 1; then
			loadgen "$kind" moderate --rooms 10 --clients-per-room 50 --senders-per-room 5 \
				--rates 20 --warmup-secs 2 --step-secs 15 --room-prefix mod-
		fi
		# 2. Fan-out: 1 room x 1000 clients, one sender, rising rate.
		if scenario 2; then
			loadgen "$kind" fanout --rooms 1 --clients-per-room 1000 --senders-per-room 1 \
				--rates 50,200,500,1000,1500,2000,2600,3500,5000 --warmup-secs 2 --step-secs 3 \
				--stop-p99-ms 100 --stop-growth 1.05 --room-prefix fan-
		fi
		# 3. Many rooms: 2000 rooms x 5 clients, everyone sending 1 msg/s.
		if scenario 3; then
			loadgen "$kind" many --rooms 2000 --clients-per-room 5 --senders-per-room 5 \
				--rates 1 --warmup-secs 2 --step-secs 15 --room-prefix many-
		fi
		if [[ $kind == project ]] && scenario 5; then
			# 5. The server-rendered page with 50 messages of history.
			# prepare-page prints the cookie, then the page's path (/r/<id>/<slug>).
			{ read -r cookie; read -r page; } < <(taskset -c "$LOADGEN_CORE" "$LOADGEN" prepare-page \
				--addr "127.0.0.1:${PORT[project]}" --room bench-page)
			[[ $page == /r/* ]] || { echo "prepare-page failed" >&2; exit 1; }
			taskset -c "$LOADGEN_CORE" oha -z 10s -c 50 --no-tui --output-format json \
				-H "Cookie: $cookie" "http://127.0.0.1:${PORT[project]}$page" >"$RESULTS/page.json"
		fi
		stop_server
	fi
	# 4. Idle connections, each count on a fresh server process (RSS at 0
	# is read before connecting).
	scenario 4 || continue
	for n in 10000 "$IDLE_MAX"; do
		label=$([[ $n == 10000 ]] && echo idle10k || echo idlemax)
		start_server "$kind"
		sleep 1
		loadgen "$kind" "$label" --rooms $((n / 10)) --clients-per-room 10 \
			--rates 0 --step-secs 1 --settle-secs 2 --drain-secs 0 --sources 16 \
			--connect-concurrency 128 --room-prefix many-
		stop_server
	done
done

# The WASM bundle, raw and gzipped.
wasm=$(ls target/site/pkg/*.wasm 2>/dev/null | head -1 || true)
if [[ -n "$wasm" ]]; then
	printf '{"file":"%s","raw_bytes":%d,"gzip_bytes":%d}\n' "$wasm" "$(stat -c %s "$wasm")" \
		"$(gzip -9 -c "$wasm" | wc -c)" >"$RESULTS/wasm.json"
fi

cat >"$RESULTS/meta.json" <<EOF
{"date": "$DATE",
 "machine": "$(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), Linux $(uname -r), load average before the run $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)",
 "commit": "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/results' || echo '+changes')",
 "server_core": "$SERVER_CORE", "loadgen_core": "$LOADGEN_CORE",
 "idle_max": $IDLE_MAX, "idle_note": "$IDLE_NOTE",
 "oha_args": "-z 10s -c 50",
 "versions": {"node": "$(node --version)", "socket.io": "$(node -p "require('./$WORK/peers/node_modules/socket.io/package.json').version")", "python": "$("$WORK/venv/bin/python" --version | cut -d' ' -f2)", "websockets": "$("$WORK/venv/bin/python" -c 'import websockets; print(websockets.__version__)')"}}
EOF

"$LOADGEN" report --work "$RESULTS" --out "$OUT"
echo "wrote $OUT.json and $OUT.md" >&2
