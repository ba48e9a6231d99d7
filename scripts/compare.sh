#!/usr/bin/env bash
# compare.sh: holdfast against Mosquitto and NATS, side by side (issue 7), with MQTT 5
# rows (issue 14), shared-subscription rows (issue 15), a bridge row (issue 16) and latency
# percentiles at two rates and three QoS levels (issue 18).
#
# Every scenario row of issue 7's table is run on every broker, alternating
# (one row at a time, all brokers in turn, the starting broker rotating from
# round to round), for ROUNDS rounds. Each run gets a freshly started broker
# on a 127.0.0.1 port of its own with its data in a temp directory, started
# and stopped by PID. The table shows each broker's median over the rounds
# and the ratio holdfast(sync) / mosquitto(persistence on).
#
# Usage: [ROUNDS=3] [QUICK=1] [BROKERS=...] [ROWS=...] scripts/compare.sh
#
#   ROUNDS       rounds (default 3)
#   QUICK=1      short runs and small counts, to try the script (numbers are not comparable
#                with a full run)
#   BROKERS      subset of: hf-sync hf-none mosq-persist mosq-mem nats nats-always
#   ROWS         subset of: fanin-q0 fanout-q0 fanin-q1 fanin-q2 fanin-q1-persistent offline
#                fanout-1k-q1-persistent fanout-10k-q1-persistent
#                latency latency-1k-q0 latency-1k-q1 latency-1k-q2 latency-10k-q0 latency-10k-q1
#                latency-10k-q2 latency-1k-q1-persistent latency-10k-q1-persistent idle restart
#                fanin-q1-v5 fanin-q1-persistent-v5 shared-q1-persistent shared-q1-churn bridge-q1
#                (fanout-Nk-q1-persistent: one QoS 1 publisher to 1,000 or 10,000 persistent
#                subscribers, all online, with the broker's RSS once they are connected, its peak
#                while messages flow and after the last delivery)
#                (latency-RATE-qQOS: one publisher at 1,000 or 10,000 msg/s to one subscriber,
#                p50/p99/p999; the 10k rows also show the rate the publisher reached, since a
#                broker slower than the rate holds it back. Their subscriber is a clean session,
#                so holdfast writes nothing to disk for them; the -persistent rows' subscriber
#                is a persistent session, whose messages are synced before the PUBACK)
#                (the -v5 rows are fanin-q1 and fanin-q1-persistent with MQTT 5 clients:
#                holdfast runs with mqtt5 = true for them; NATS, which speaks only 3.1.1,
#                is not run. The shared rows: 4 publishers to a $share group of 4
#                persistent members, QoS 1; -churn kills one member a second, without
#                DISCONNECT, and starts a new one; issue 15 compares them with Mosquitto,
#                so NATS is not run. bridge-q1: 4 publishers on one broker to sensors/<n>, which
#                a bridge of that broker (sensors/# out at QoS 1, persistent) forwards to a
#                second broker of the same kind, where one persistent subscriber takes
#                sensors/#: two broker processes per run; NATS has no such bridge)
#   HOLDFAST     holdfast binary to run (default: `go build` of this checkout into the temp dir)
#   BENCH        load tool command (default: "$HOLDFAST bench")
#   MOSQUITTO    mosquitto binary (default: /usr/sbin/mosquitto, else from PATH)
#   NATS_SERVER  nats-server v2.15.2 binary; without it the script runs
#                `go install github.com/nats-io/nats-server/v2@v2.15.2` into a temp GOBIN
#                (NATS_GOBIN to keep it somewhere) and skips NATS if that fails
#   BASE_PORT    first TCP port used (default 21000); each broker start takes the next one
#   KEEP=1       keep the temp directory (configs, broker logs, raw result lines)
#
# The table goes to stdout; progress and every raw result line go to stderr.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
QUICK=${QUICK:-0}
BROKERS=${BROKERS:-"hf-sync hf-none mosq-persist mosq-mem nats nats-always"}
ROWS=${ROWS:-"fanin-q0 fanout-q0 fanin-q1 fanin-q2 fanin-q1-persistent offline fanout-1k-q1-persistent fanout-10k-q1-persistent latency latency-1k-q0 latency-1k-q1 latency-1k-q2 latency-10k-q0 latency-10k-q1 latency-10k-q2 latency-1k-q1-persistent latency-10k-q1-persistent idle restart fanin-q1-v5 fanin-q1-persistent-v5 shared-q1-persistent shared-q1-churn bridge-q1"}
BASE_PORT=${BASE_PORT:-21000}
KEEP=${KEEP:-0}
NATS_VERSION=v2.15.2

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-compare.XXXXXX")
declare -a PIDS=() # brokers started and not yet reaped

log() { printf '%s\n' "$*" >&2; }
die() { log "compare.sh: $*"; exit 1; }

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
	if [[ $KEEP == 1 ]]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sizes: issue 7's table, or QUICK.
if [[ $QUICK == 1 ]]; then
	FLOW_DURATION=2s LAT_DURATION=3s OFFLINE_COUNT=5000 IDLE_CONNS=1000 FANOUT_1K=100 FANOUT_10K=1000
	RESTART_SESSIONS=500 RESTART_COUNT=20000 RESTART_FILL_LIMIT=60s
else
	FLOW_DURATION=10s LAT_DURATION=10s OFFLINE_COUNT=50000 IDLE_CONNS=10000 FANOUT_1K=1000 FANOUT_10K=10000
	RESTART_SESSIONS=10000 RESTART_COUNT=1000000 RESTART_FILL_LIMIT=600s
fi
COMMON="-size 64 -inflight 16"
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited ]] && NOFILE=1048576

# The bench command of each row (without -addr) and the metrics it feeds.
row_args() {
	case $1 in
	fanin-q0) echo "fanin -pubs 4 -qos 0 $COMMON -duration $FLOW_DURATION" ;;
	fanout-q0) echo "fanout -subs 10 -qos 0 $COMMON -duration $FLOW_DURATION" ;;
	fanin-q1) echo "fanin -pubs 4 -qos 1 $COMMON -duration $FLOW_DURATION" ;;
	fanin-q2) echo "fanin -pubs 4 -qos 2 $COMMON -duration $FLOW_DURATION" ;;
	fanin-q1-persistent) echo "fanin -pubs 4 -qos 1 -clean=false $COMMON -duration $FLOW_DURATION" ;;
	fanin-q1-v5) echo "fanin -v 5 -pubs 4 -qos 1 $COMMON -duration $FLOW_DURATION" ;;
	fanin-q1-persistent-v5) echo "fanin -v 5 -pubs 4 -qos 1 -clean=false $COMMON -duration $FLOW_DURATION" ;;
	shared-q1-persistent) echo "shared -pubs 4 -subs 4 -qos 1 -clean=false $COMMON -duration $FLOW_DURATION" ;;
	shared-q1-churn) echo "shared -pubs 4 -subs 4 -qos 1 -clean=false -churn 1s $COMMON -duration $FLOW_DURATION" ;;
	bridge-q1) echo "fanin -pubs 4 -qos 1 -clean=false -topic sensors/ $COMMON -duration $FLOW_DURATION; -addr LOCAL -sub-addr REMOTE" ;;
	offline) echo "offline -qos 1 -count $OFFLINE_COUNT $COMMON" ;;
	fanout-1k-q1-persistent) echo "fanout -subs $FANOUT_1K -qos 1 -clean=false $COMMON -duration $FLOW_DURATION -pid PID" ;;
	fanout-10k-q1-persistent) echo "fanout -subs $FANOUT_10K -qos 1 -clean=false $COMMON -duration $FLOW_DURATION -pid PID" ;;
	latency) echo "latency -qos 1 -rate 1000 $COMMON -duration $LAT_DURATION" ;;
	latency-1k-q[012]) echo "latency -qos ${1#latency-1k-q} -rate 1000 $COMMON -duration $LAT_DURATION" ;;
	latency-10k-q[012]) echo "latency -qos ${1#latency-10k-q} -rate 10000 $COMMON -duration $LAT_DURATION" ;;
	latency-1k-q1-persistent) echo "latency -qos 1 -rate 1000 -clean=false $COMMON -duration $LAT_DURATION" ;;
	latency-10k-q1-persistent) echo "latency -qos 1 -rate 10000 -clean=false $COMMON -duration $LAT_DURATION" ;;
	idle) echo "idle -conns $IDLE_CONNS -pid PID" ;;
	restart) echo "restart -fill -sessions $RESTART_SESSIONS -count $RESTART_COUNT -pubs 4 -qos 1 $COMMON -duration $RESTART_FILL_LIMIT; (SIGTERM, start) restart -wait -since T0" ;;
	*) die "unknown row $1 (rows: fanin-q0 fanout-q0 fanin-q1 fanin-q2 fanin-q1-persistent offline fanout-1k-q1-persistent fanout-10k-q1-persistent latency latency-1k-q0 latency-1k-q1 latency-1k-q2 latency-10k-q0 latency-10k-q1 latency-10k-q2 latency-1k-q1-persistent latency-10k-q1-persistent idle restart fanin-q1-v5 fanin-q1-persistent-v5 shared-q1-persistent shared-q1-churn bridge-q1)" ;;
	esac
}
# metric rows: id|row|result key|better|goal|label; better "count" shows no ratio
metric_rows() {
	local r
	for r in $ROWS; do
		case $r in
		fanin-q0) echo "fanin-q0|$r|recv_per_s|higher|>= 12x|fan-in 4->1 QoS 0, delivered/s" ;;
		fanout-q0) echo "fanout-q0|$r|recv_per_s|higher|>= 15x|fan-out 1->10 QoS 0, deliveries/s" ;;
		fanin-q1) echo "fanin-q1|$r|recv_per_s|higher|>= 2x|fan-in 4->1 QoS 1, delivered/s" ;;
		fanin-q2) echo "fanin-q2|$r|recv_per_s|higher|>= 3x|fan-in 4->1 QoS 2, delivered/s" ;;
		fanin-q1-persistent) echo "fanin-q1-persistent|$r|recv_per_s|higher|>= 3x|fan-in 4->1 QoS 1, persistent sub, delivered/s" ;;
		fanin-q1-v5) echo "fanin-q1-v5|$r|recv_per_s|higher|>= 2x|v5 fan-in 4->1 QoS 1, delivered/s" ;;
		fanin-q1-persistent-v5) echo "fanin-q1-persistent-v5|$r|recv_per_s|higher|>= 1x|v5 fan-in 4->1 QoS 1, persistent sub, delivered/s" ;;
		shared-q1-persistent) echo "shared-q1|$r|recv_per_s|higher|>= 1.5x|shared 4->group of 4 QoS 1, persistent, delivered/s" ;;
		shared-q1-churn)
			echo "shared-churn|$r|recv_per_s|higher|-|the same, a member killed a second, delivered/s"
			echo "shared-churn-lost|$r|lost|count|0|  messages lost (acknowledged, never delivered)"
			echo "shared-churn-dup|$r|dup|count|-|  messages delivered twice"
			;;
		bridge-q1)
			echo "bridge-q1|$r|recv_per_s|higher|-|bridge: fan-in 4->1 QoS 1 via a bridge, delivered/s"
			echo "bridge-q1-lost|$r|lost|count|0|  messages lost (acknowledged, never delivered)"
			;;
		offline)
			echo "offline-enqueue|$r|enqueue_per_s|higher|>= 1.5x|offline $OFFLINE_COUNT QoS 1, enqueue/s"
			echo "offline-drain|$r|drain_per_s|higher|>= 2x|offline $OFFLINE_COUNT QoS 1, drain/s"
			;;
		fanout-1k-q1-persistent | fanout-10k-q1-persistent)
			local n=$FANOUT_1K
			[[ $r == fanout-10k-* ]] && n=$FANOUT_10K
			echo "$r|$r|recv_per_s|higher|>= 3x|fan-out 1->$n QoS 1, persistent subs, deliveries/s"
			echo "$r-rss0|$r|rss_before_kb|lower|-|  broker RSS with the subscribers connected, KiB"
			echo "$r-rss|$r|rss_peak_kb|lower|-|  broker RSS, peak while messages flow, KiB"
			;;
		latency) echo "latency|$r|p99_ms|lower|<= 1x|latency 1000 msg/s QoS 1, p99 ms" ;;
		latency-1k-q[012] | latency-10k-q[012] | latency-1k-q1-persistent | latency-10k-q1-persistent)
			local q=${r#*-q} k=${r#latency-} rate sub=""
			q=${q%%-*}
			k=${k%%-*}
			rate=${k%k},000
			[[ $r == *-persistent ]] && sub=", persistent sub"
			echo "$r-p50|$r|p50_ms|lower|-|latency $rate msg/s QoS $q$sub, p50 ms"
			echo "$r-p99|$r|p99_ms|lower|<= 1x|  p99 ms"
			echo "$r-p999|$r|p999_ms|lower|-|  p999 ms"
			[[ $k == 10k ]] && echo "$r-rate|$r|sent_per_s|count|-|  published/s (10,000 asked)"
			;;
		idle) echo "idle|$r|per_conn_bytes|lower|<= 5 KB|memory per idle connection ($IDLE_CONNS), bytes" ;;
		restart)
			echo "restart-fill|$r|enqueue_per_s|higher|-|restart fill: $RESTART_COUNT QoS 1 over $RESTART_SESSIONS sessions, enqueue/s"
			echo "restart|$r|ready_ms|lower|<= 0.5x|restart holding them, ms to a session-present CONNACK"
			echo "restart-rss|$r|rss_ready_kb|lower|<= 0.5x|  broker RSS at that CONNACK, KiB"
			echo "restart-rss-settled|$r|rss_settled_kb|lower|-|  broker RSS 10 s later, KiB"
			;;
		esac
	done
}

# ---- tools ---------------------------------------------------------------

if [[ -n ${HOLDFAST:-} ]]; then
	log "using holdfast binary $HOLDFAST"
else
	log "building holdfast in $tmp"
	(cd "$repo" && go build -o "$tmp/holdfast" .) || die "go build failed (HOLDFAST=... uses a binary built earlier)"
	HOLDFAST=$tmp/holdfast
fi
if [[ -n ${BENCH:-} ]]; then
	read -ra BENCH_CMD <<<"$BENCH"
else
	BENCH_CMD=("$HOLDFAST" bench)
fi
"${BENCH_CMD[@]}" fanin -h >/dev/null 2>&1 ||
	die "'${BENCH_CMD[*]} fanin -h' failed: is the bench subcommand wired into main.go? (BENCH=... runs another build of the tool)"

MOSQUITTO=${MOSQUITTO:-}
if [[ -z $MOSQUITTO ]]; then
	if [[ -x /usr/sbin/mosquitto ]]; then MOSQUITTO=/usr/sbin/mosquitto; else MOSQUITTO=$(command -v mosquitto || true); fi
fi
have() { [[ " $BROKERS " == *" $1 "* ]]; }
drop_brokers() { # pattern message
	local b kept=""
	for b in $BROKERS; do [[ $b == $1 ]] || kept="$kept $b"; done
	BROKERS=${kept# }
	log "$2"
}
if [[ -z $MOSQUITTO ]] && { have mosq-persist || have mosq-mem; }; then
	drop_brokers 'mosq-*' "mosquitto not found: skipping mosquitto (set MOSQUITTO=...)"
fi
NATS=${NATS_SERVER:-}
if { have nats || have nats-always; } && [[ -z $NATS ]]; then
	gobin=${NATS_GOBIN:-$tmp/gobin}
	if [[ -x $gobin/nats-server ]] && "$gobin/nats-server" --version 2>/dev/null | grep -q "$NATS_VERSION"; then
		NATS=$gobin/nats-server
	else
		log "installing nats-server $NATS_VERSION into $gobin (go install; about a minute)"
		if (cd "$tmp" && GOBIN=$gobin GOFLAGS=-buildvcs=false go install "github.com/nats-io/nats-server/v2@$NATS_VERSION") >"$tmp/nats-install.log" 2>&1; then
			NATS=$gobin/nats-server
		else
			tail -5 "$tmp/nats-install.log" >&2
			drop_brokers 'nats*' "NATS: go install github.com/nats-io/nats-server/v2@$NATS_VERSION failed; skipping NATS"
		fi
	fi
fi
[[ -n $BROKERS ]] || die "no broker left to run"

# ---- brokers -------------------------------------------------------------

port_n=0
next_port() { PORT=$((BASE_PORT + port_n)); port_n=$((port_n + 1)); }

persistent() { [[ $1 == hf-sync || $1 == mosq-persist || $1 == nats* ]]; }

# runs ROW BROKER: whether the row is run on the broker. restart needs persistence; NATS refuses
# MQTT 5 clients (CONNACK 1), issue 15 compares the shared rows with Mosquitto only, and NATS has
# no bridge to another server's MQTT.
runs() {
	case $1 in
	restart) persistent "$2" ;;
	*-v5 | shared-* | bridge-*) [[ $2 != nats* ]] ;;
	*) true ;;
	esac
}

# write_config NAME PORT DIR ROW [REMOTE_PORT]: the broker's configuration in DIR for a run of
# ROW; with REMOTE_PORT, a bridge of sensors/# out at QoS 1, persistent, to that port.
write_config() {
	local name=$1 port=$2 dir=$3 row=$4 remote=${5:-} mqtt5=false
	mkdir -p "$dir/data"
	# Only the MQTT 5 rows turn it on, so that the 3.1.1 rows measure the configuration they
	# always did. Mosquitto serves every level on every listener.
	[[ $row == *-v5 ]] && mqtt5=true
	case $name in
	hf-sync | hf-none)
		# holdfast's defaults otherwise (max_inflight 20, max_queued_messages 100000).
		cat >"$dir/holdfast.toml" <<-EOF
			data_dir   = "$dir/data"
			durability = "${name#hf-}"
			mqtt5      = $mqtt5
			[log]
			level  = "warn"
			format = "json"
			[[listener]]
			type    = "tcp"
			address = "127.0.0.1:$port"
		EOF
		if [[ -n $remote ]]; then
			cat >>"$dir/holdfast.toml" <<-EOF
				[[bridge]]
				name          = "cloud"
				address       = "127.0.0.1:$remote"
				clean_session = false
				protocol      = "3.1.1"
				  [[bridge.topic]]
				  pattern   = "sensors/#"
				  direction = "out"
				  qos       = 1
			EOF
		fi
		;;
	mosq-persist | mosq-mem)
		# max_queued_messages as holdfast's default (mosquitto's own, 1000, would drop
		# most of the offline row); max_inflight_messages 20 is both brokers' default.
		{
			echo "listener $port 127.0.0.1"
			echo "allow_anonymous true"
			echo "set_tcp_nodelay true"
			echo "max_queued_messages 100000"
			echo "max_inflight_messages 20"
			echo "user $(id -un)"
			echo "log_dest stderr"
			echo "log_type error"
			echo "log_type warning"
			echo "connection_messages false"
			if [[ $name == mosq-persist ]]; then
				echo "persistence true"
				echo "persistence_location $dir/data/"
			else
				echo "persistence false"
			fi
			# Last: the options after `connection` are the bridge's.
			if [[ -n $remote ]]; then
				echo "connection cloud"
				echo "address 127.0.0.1:$remote"
				echo "topic sensors/# out 1"
				echo "cleansession false"
			fi
		} >"$dir/mosquitto.conf"
		;;
	nats | nats-always)
		{
			echo "server_name: hfbench"
			echo "listen: 127.0.0.1:$((port + 5000))"
			echo "jetstream {"
			echo "  store_dir: \"$dir/data\""
			[[ $name == nats-always ]] && echo "  sync_interval: always"
			echo "}"
			echo "mqtt {"
			echo "  listen: 127.0.0.1:$port"
			echo "}"
		} >"$dir/nats.conf"
		;;
	esac
}

# spawn NAME DIR: start the configured broker; its PID in BPID.
spawn() {
	local name=$1 dir=$2
	case $name in
	hf-*) (ulimit -n "$NOFILE" && exec "$HOLDFAST" -c "$dir/holdfast.toml") >>"$dir/broker.log" 2>&1 & ;;
	mosq-*) (ulimit -n "$NOFILE" && exec "$MOSQUITTO" -c "$dir/mosquitto.conf") >>"$dir/broker.log" 2>&1 & ;;
	nats*) (ulimit -n "$NOFILE" && exec "$NATS" -c "$dir/nats.conf") >>"$dir/broker.log" 2>&1 & ;;
	esac
	BPID=$!
	PIDS+=("$BPID")
}

# ready PORT DIR: wait until the broker answers CONNACK.
ready() {
	"${BENCH_CMD[@]}" restart -wait -addr "127.0.0.1:$1" -duration 30s -interval 20ms >/dev/null 2>>"$2/bench.err"
}

# bridge_ready LOCAL_PORT REMOTE_PORT DIR: wait until a QoS 1 message published on the local
# broker reaches a subscriber on the remote one; each try waits a second without it, 30 tries.
bridge_ready() {
	local i
	for ((i = 0; i < 30; i++)); do
		"${BENCH_CMD[@]}" fanin -pubs 1 -qos 1 -count 1 -topic sensors/ -timeout 1s \
			-addr "127.0.0.1:$1" -sub-addr "127.0.0.1:$2" >/dev/null 2>>"$3/bench.err" && return 0
	done
	return 1
}

# stop PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10).
stop() {
	local pid=$1 limit=${2:-10} i kept=()
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "  broker $pid still running after ${limit}s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || kept+=("$i"); done
	PIDS=("${kept[@]}")
}

# ---- runs ----------------------------------------------------------------

declare -A VALS=() # "metric|broker" -> values, one per round
declare -a NOTES=()

kv() { # KEY LINE
	local f
	for f in $2; do
		if [[ $f == "$1="* ]]; then
			echo "${f#*=}"
			return
		fi
	done
}

# record ROW BROKER ROUND RC LINE ERRFILE: store the metrics of one run.
record() {
	local row=$1 broker=$2 round=$3 rc=$4 line=$5 errfile=$6 id r key mark=""
	if [[ $rc != 0 ]]; then
		mark="!"
		NOTES+=("round $round, $row on $broker: exit $rc: $(tail -1 "$errfile" 2>/dev/null)")
	fi
	while IFS='|' read -r id r key _; do
		[[ $r == "$row" ]] || continue
		local v
		v=$(kv "$key" "$line")
		[[ -n $v ]] || v=ERR
		VALS["$id|$broker"]+="$v$mark "
	done < <(metric_rows)
}

# tidy DIR: unless KEEP=1, remove a finished run's data and all but the end of its broker log.
tidy() {
	[[ $KEEP == 1 ]] && return
	# A broker that logs per message can fill the disk over many runs.
	rm -rf "$1/data"
	tail -200 "$1/broker.log" >"$1/broker.log.tail" 2>/dev/null || true
	rm -f "$1/broker.log"
}

# run_bridge ROW BROKER ROUND: a remote broker, then a local one bridging to it, both of kind
# BROKER; the publishers on the local one, the subscriber on the remote.
run_bridge() {
	local row=$1 broker=$2 round=$3 dir rdir ldir rport lport rpid lpid line rc=1 args
	dir=$tmp/runs/r$round-$row-$broker
	rdir=$dir/remote ldir=$dir/local
	next_port
	rport=$PORT
	write_config "$broker" "$rport" "$rdir" "$row"
	spawn "$broker" "$rdir"
	rpid=$BPID
	next_port
	lport=$PORT
	write_config "$broker" "$lport" "$ldir" "$row" "$rport"
	line=""
	if ! ready "$rport" "$rdir"; then
		log "  $broker (remote) did not start: $(tail -3 "$rdir/broker.log" | tr '\n' ' ')"
	else
		spawn "$broker" "$ldir"
		lpid=$BPID
		if ! ready "$lport" "$ldir"; then
			log "  $broker (local) did not start: $(tail -3 "$ldir/broker.log" | tr '\n' ' ')"
		elif ! bridge_ready "$lport" "$rport" "$ldir"; then
			log "  $broker: nothing crossed the bridge in 30 tries: $(tail -3 "$ldir/broker.log" | tr '\n' ' ')"
		else
			args=$(row_args "$row")
			set +e
			# shellcheck disable=SC2086 # args is a list of flags
			line=$("${BENCH_CMD[@]}" ${args%%;*} -addr "127.0.0.1:$lport" -sub-addr "127.0.0.1:$rport" 2>>"$ldir/bench.err")
			rc=$?
			set -e
		fi
		stop "$lpid"
	fi
	stop "$rpid"
	log "  $broker: ${line:-(no result, exit $rc)}"
	record "$row" "$broker" "$round" "$rc" "$line" "$ldir/bench.err"
	tidy "$rdir"
	tidy "$ldir"
}

run_one() { # ROW BROKER ROUND
	local row=$1 broker=$2 round=$3 dir line rc args
	if [[ $row == bridge-* ]]; then
		run_bridge "$row" "$broker" "$round"
		return
	fi
	next_port
	dir=$tmp/runs/r$round-$row-$broker
	write_config "$broker" "$PORT" "$dir" "$row"
	spawn "$broker" "$dir"
	if ! ready "$PORT" "$dir"; then
		log "  $broker did not start: $(tail -3 "$dir/broker.log" | tr '\n' ' ')"
		stop "$BPID"
		record "$row" "$broker" "$round" 1 "" "$dir/broker.log"
		return
	fi
	args=$(row_args "$row")
	args=${args//-pid PID/-pid $BPID}
	if [[ $row == restart ]]; then
		local fill wrc t0
		set +e
		fill=$("${BENCH_CMD[@]}" ${args%%;*} -addr "127.0.0.1:$PORT" 2>>"$dir/bench.err")
		rc=$?
		set -e
		log "  fill: $fill"
		stop "$BPID" 300
		t0=$(date +%s%N)
		spawn "$broker" "$dir"
		set +e
		# The first of the fill's sessions must come back with session-present; the broker's RSS is
		# read at that CONNACK and 10 s later.
		line=$("${BENCH_CMD[@]}" restart -wait -since "$t0" -duration 300s -interval 5ms -client "hb$(kv run "$fill")q0" \
			-pid "$BPID" -addr "127.0.0.1:$PORT" 2>>"$dir/bench.err")
		wrc=$?
		set -e
		if [[ $rc == 0 ]]; then rc=$wrc; fi
		if [[ -n $fill && $(kv acked "$fill") != "$RESTART_COUNT" ]]; then
			NOTES+=("round $round, restart on $broker: only $(kv acked "$fill") of $RESTART_COUNT messages queued within -duration")
		fi
		# Both lines feed the table: enqueue_per_s from the fill, ready_ms from the wait.
		line="$fill $line"
	else
		set +e
		# shellcheck disable=SC2086 # args is a list of flags
		line=$("${BENCH_CMD[@]}" $args -addr "127.0.0.1:$PORT" 2>>"$dir/bench.err")
		rc=$?
		set -e
	fi
	stop "$BPID"
	log "  $broker: ${line:-(no result, exit $rc)}"
	record "$row" "$broker" "$round" "$rc" "$line" "$dir/bench.err"
	tidy "$dir"
}

# ---- header --------------------------------------------------------------

mem_gib=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$repo" status --porcelain 2>/dev/null) ]] && rev="$rev+dirty"
echo "# holdfast broker comparison$([[ $QUICK == 1 ]] && echo " (QUICK run: short, not comparable with a full run)")"
echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "command:   ROUNDS=$ROUNDS QUICK=$QUICK BROKERS='$BROKERS' ROWS='$ROWS' scripts/compare.sh"
echo "machine:   $(nproc) cores ($cpu), $mem_gib GiB memory, Linux $(uname -r)"
echo "holdfast:  $HOLDFAST from $rev, $(go version | awk '{print $3}'); bench tool: ${BENCH_CMD[*]}"
[[ -n $MOSQUITTO ]] && echo "mosquitto: $("$MOSQUITTO" -h 2>/dev/null | awk 'NR==1 {print $3}') ($MOSQUITTO)"
[[ -n $NATS ]] && echo "nats:      $("$NATS" --version 2>/dev/null) ($NATS)"
echo "brokers:   hf-sync/hf-none = holdfast durability sync/none; mosq-persist/mosq-mem = mosquitto"
echo "           persistence on/off, set_tcp_nodelay true, max_queued_messages 100000;"
echo "           nats/nats-always = nats-server MQTT + JetStream, sync_interval default (2m)/always;"
echo "           -v5 rows: MQTT 5 clients (holdfast with mqtt5 = true; persistent sessions ask for a"
echo "           Session Expiry Interval of 0xFFFFFFFF, i.e. never)"
echo "           bridge row: two brokers of the kind, the local one bridging sensors/# out at QoS 1"
echo "           (holdfast [[bridge]] / mosquitto connection, clean session false) to the remote one"
echo "rows (bench flags; every run on a freshly started broker, 127.0.0.1):"
for r in $ROWS; do printf '  %-20s %s\n' "$r" "$(row_args "$r")"; done
echo

# ---- rounds --------------------------------------------------------------

read -ra broker_list <<<"$BROKERS"
nb=${#broker_list[@]}
for ((round = 1; round <= ROUNDS; round++)); do
	for row in $ROWS; do
		row_args "$row" >/dev/null
		log "[round $round/$ROUNDS] $row"
		for ((i = 0; i < nb; i++)); do
			broker=${broker_list[$(((i + round - 1) % nb))]}
			runs "$row" "$broker" || continue
			run_one "$row" "$broker" "$round"
		done
	done
done

# ---- table ---------------------------------------------------------------

median() { # values with an optional "!" mark; ERR ignored
	local marked=""
	[[ "$*" == *"!"* ]] && marked="!"
	printf '%s\n' "$@" | tr -d '!' | { grep -v '^ERR$' || true; } | sort -g | awk -v m="$marked" '
		{ a[NR] = $1 }
		END {
			if (NR == 0) { print "ERR"; exit }
			v = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			if (v >= 100) printf "%.0f%s\n", v, m; else printf "%.3g%s\n", v, m
		}'
}

echo
printf '%-52s' "scenario (median of $ROUNDS)"
for b in "${broker_list[@]}"; do printf ' %13s' "$b"; done
printf ' %9s %7s\n' "hf/mosq" "goal"
while IFS='|' read -r id row key better goal label; do
	printf '%-52s' "$label"
	declare -A med=()
	for b in "${broker_list[@]}"; do
		if [[ -z ${VALS["$id|$b"]:-} ]]; then
			med[$b]="n/a"
		else
			# shellcheck disable=SC2086 # one word per round
			med[$b]=$(median ${VALS["$id|$b"]})
		fi
		printf ' %13s' "${med[$b]}"
	done
	ratio=-
	h=${med[hf-sync]:-}
	m=${med[mosq-persist]:-}
	h=${h%!} m=${m%!}
	if [[ $better != count && $h =~ ^[0-9.e+-]+$ && $m =~ ^[0-9.e+-]+$ ]]; then
		ratio=$(awk -v h="$h" -v m="$m" 'BEGIN { if (m == 0) print "-"; else printf "%.2fx", h / m }')
	fi
	printf ' %9s %7s\n' "$ratio" "$goal"
	unset med
done < <(metric_rows)
echo
echo "hf/mosq = holdfast (durability sync) / mosquitto (persistence on); rates: higher is better;"
echo "latency, memory and restart time: lower is better (goal <= 1x / <= 10x)."
echo "n/a = not run (restart needs persistence; NATS speaks MQTT 3.1.1 only and is not in the shared"
echo "or bridge rows);"
echo "ERR = no result;"
echo "! = a run failed, lost QoS 1/2 messages or got acknowledgements other than Success (see notes)."
if ((${#NOTES[@]})); then
	echo
	echo "notes:"
	printf '  %s\n' "${NOTES[@]}"
fi
