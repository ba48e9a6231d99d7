#!/bin/sh
# Builds ../format1.tar.gz: a data directory of store format 1, written by holdfast at COMMIT
# (88930a7, the last commit with format 1), for TestFormat1Migrates. Run from anywhere in the
# repository: sh persist/testdata/format1/make.sh [COMMIT]. It needs go, git, tar and a free
# loopback port; it changes nothing else. For the next format, copy this directory to formatN,
# point COMMIT at the last commit with format N, and keep the test that opens each fixture.
#
# What the directory holds (client.go makes it): sessions sub-a and sub-b, offline, with
# subscriptions of QoS 0, 1 and 2; queued QoS 1 and 2 messages inline, one with RETAIN; one
# message queued for both (a shared body); session "inflight" with a QoS 1 and a QoS 2 message
# sent and unacknowledged and a QoS 2 message released (PUBREC received, PUBREL sent); session
# "pub" with inbound QoS 2 id 77 awaiting PUBREL; retained messages fx/ret/0 (QoS 0), fx/ret/1
# (QoS 1) and fx/a/2 (QoS 2). The broker is then stopped with SIGTERM (a clean close).
set -eu
COMMIT=${1:-88930a7}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
pid=

git -C "$repo" archive "$COMMIT" | tar -x -C "$work"
(cd "$work" && go build -o holdfast .)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/config.toml" <<EOF
data_dir = "$work/data"
[[listener]]
type = "tcp"
address = "127.0.0.1:$port"
[store]
# Small Badger files: the fixture stays a few kilobytes once compressed.
memtable_size = 1048576
num_memtables = 1
value_log_file_size = 1048576
min_free_bytes = 0
EOF
"$work/holdfast" -c "$work/config.toml" >"$work/log" 2>&1 &
pid=$!
if ! (cd "$here" && go run . "127.0.0.1:$port"); then cat "$work/log"; exit 1; fi
kill -TERM "$pid"
wait "$pid"
pid=
tar -C "$work" --sparse --owner=0 --group=0 --numeric-owner -czf "$here/../format1.tar.gz" data
ls -l "$here/../format1.tar.gz"
