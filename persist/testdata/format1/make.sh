#!/bin/sh
# Builds ../formatN.tar.gz: a data directory of store format N, written by holdfast at COMMIT
# (the last commit with format N), for TestFormat1Migrates, TestFormat2Migrates and so on:
#   sh persist/testdata/format1/make.sh 88930a7 1
#   sh persist/testdata/format1/make.sh dbd41cc 2
#   sh persist/testdata/format1/make.sh f0c1600 3
# Run from anywhere in the repository. It needs go, git, tar, python3 and a free loopback port;
# it changes nothing else. When a change brings format N+1, run it with the commit before that
# change and N, and add the fixture to the test.
#
# What the directory holds (client.go makes it): sessions sub-a and sub-b, offline, with
# subscriptions of QoS 0, 1 and 2; queued QoS 1 and 2 messages inline, one with RETAIN; one
# message queued for both (a shared body); session "inflight" with a QoS 1 and a QoS 2 message
# sent and unacknowledged and a QoS 2 message released (PUBREC received, PUBREL sent); session
# "pub" with inbound QoS 2 id 77 awaiting PUBREL; retained messages fx/ret/0 (QoS 0), fx/ret/1
# (QoS 1) and fx/a/2 (QoS 2). From format 2 on (MQTT 5) also session "v5", offline, with a
# Session Expiry Interval, a subscription fx/v5/# with options and an identifier, and two queued
# messages with properties and an expiry, one of them the retained message fx/v5/ret. From format
# 3 on (in-flight states with a holder) also session "member", offline, subscribed to
# $share/g/fx/sh/# at QoS 2, holding the group's QoS 2 message fx/sh/1 (PUBREC sent, PUBREL
# received). The broker is then stopped with SIGTERM (a clean close).
set -eu
COMMIT=${1:-88930a7}
FORMAT=${2:-1}
parts=
[ "$FORMAT" -ge 2 ] && parts=v5
[ "$FORMAT" -ge 3 ] && parts="v5 held"
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
if ! (cd "$here" && go run . "127.0.0.1:$port" $parts); then cat "$work/log"; exit 1; fi
kill -TERM "$pid"
wait "$pid"
pid=
tar -C "$work" --sparse --owner=0 --group=0 --numeric-owner -czf "$here/../format$FORMAT.tar.gz" data
ls -l "$here/../format$FORMAT.tar.gz"
