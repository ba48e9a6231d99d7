#!/usr/bin/env bash
# connect-flood.sh: legitimate connect latency with and without a CONNECT flood (issue 11 item 2).
#
# For each holdfast binary given, one after the other: a fresh broker on a 127.0.0.1 port of its
# own, with a password file holding the user legit (written by `holdfast passwd`, PBKDF2 100,000
# iterations) and its data in a temp directory, started and stopped by PID; then
# `bench connect` without a flood and with FLOOD. Every result line goes to stdout, prefixed
# with the binary's name and the run.
#
# Usage: [BENCH=...] [N=100] [FLOOD=...] [EXTRA_CONFIG=...] scripts/connect-flood.sh BINARY...
#
#   BENCH         load tool command (default: "HOLDFAST bench", HOLDFAST being a `go build` of
#                 this checkout into the temp dir; it also writes the password file)
#   N             legitimate connects per run (default 100)
#   FLOOD         flood flags (default: -flood-idle 1500 -flood-wrong 200)
#   BENCH_FLAGS   more flags for every bench run, e.g. "-timeout 2s -duration 60s"
#   EXTRA_CONFIG  TOML appended to every broker's [auth] table, e.g. "password_cache = 0"
#   BASE_PORT     first TCP port used (default 24800); each binary takes the next one
#   KEEP=1        keep the temp directory (configs, broker logs)
#
# The flood goes from 127.0.0.2-127.0.0.5 to 127.0.0.1 only (bench connect refuses anything
# else). The brokers' open-file limit is raised to what the flood needs.
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: scripts/connect-flood.sh BINARY..." >&2; exit 2; }
N=${N:-100}
FLOOD=${FLOOD:-"-flood-idle 1500 -flood-wrong 200"}
BENCH_FLAGS=${BENCH_FLAGS:-}
EXTRA_CONFIG=${EXTRA_CONFIG:-}
BASE_PORT=${BASE_PORT:-24800}
KEEP=${KEEP:-0}
PASSWORD=connect-flood-$RANDOM$RANDOM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-connect-flood.XXXXXX")
pid=""

cleanup() {
	if [[ -n $pid ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [[ $KEEP == 1 ]]; then
		echo "kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
(cd "$repo" && go build -o "$tmp/holdfast" .)
BENCH=${BENCH:-"$tmp/holdfast bench"}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
printf '%s\n' "$PASSWORD" | "$tmp/holdfast" passwd "$tmp/passwd" legit >/dev/null

port=$BASE_PORT
for bin in "$@"; do
	port=$((port + 1))
	name=$(basename "$bin")
	dir=$tmp/$name-$port
	mkdir -p "$dir"
	cat >"$dir/config.toml" <<EOF
data_dir = "$dir/data"
[log]
level = "warn"
format = "json"
[auth]
password_file = "$tmp/passwd"
$EXTRA_CONFIG
[[listener]]
type = "tcp"
address = "127.0.0.1:$port"
EOF
	"$bin" -c "$dir/config.toml" >"$dir/broker.log" 2>&1 &
	pid=$!
	# Ready when the port accepts a TCP connection (not an MQTT login: that would warm the
	# broker's password cache before the measurement).
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
		kill -0 "$pid" 2>/dev/null || { cat "$dir/broker.log" >&2; exit 1; }
		sleep 0.1
	done
	for run in noflood flood; do
		flags=""
		[[ $run == flood ]] && flags=$FLOOD
		# shellcheck disable=SC2086 # flags are words
		line=$($BENCH connect -addr "127.0.0.1:$port" -n "$N" -user legit -password "$PASSWORD" $flags $BENCH_FLAGS) || true
		echo "binary=$name run=$run $line"
	done
	kill -TERM "$pid"
	wait "$pid" || true
	pid=""
done
