// Package metrics exposes the broker's and the store's counters in Prometheus' format. Every value
// is read at scrape time from the counters the broker and persist keep anyway, so nothing is
// counted twice and the hot paths pay nothing for metrics.
package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/holdfast/holdfast/broker"
	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/persist"
)

// Registry returns a Prometheus registry with holdfast's metrics and the Go runtime's and the
// process's standard ones.
func Registry(srv *broker.Server, store *persist.Store) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&collector{srv: srv, store: store},
	)
	return r
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("holdfast_"+name, help, labels, nil)
}

var (
	connections      = desc("connections", "Open client connections.")
	connectionsTotal = desc("connections_total", "Client connections accepted since start.")
	refusedTotal     = desc("connections_refused_total", "Connections refused, by reason.", "reason")
	clients          = desc("clients", "Sessions by state: connected, or disconnected (persistent sessions kept for an offline client).", "state")
	messagesIn       = desc("messages_received_total", "PUBLISH packets received from clients, by QoS.", "qos")
	messagesOut      = desc("messages_sent_total", "PUBLISH packets sent to clients (redeliveries included), by delivery QoS.", "qos")
	bytesIn          = desc("payload_bytes_received_total", "Payload bytes of PUBLISH packets received, by QoS.", "qos")
	bytesOut         = desc("payload_bytes_sent_total", "Payload bytes of PUBLISH packets sent, by delivery QoS.", "qos")
	wireIn           = desc("network_bytes_received_total", "Bytes read from client connections.")
	wireOut          = desc("network_bytes_sent_total", "Bytes written to client connections.")
	dropped          = desc("messages_dropped_total", "Messages not delivered to a subscriber, by reason.", "reason")
	reasonCodes      = desc("reason_codes_sent_total", "MQTT 5 reason codes other than success sent to clients, by packet and code.", "packet", "code", "reason")
	queued           = desc("queued_messages", "Unacknowledged messages over all sessions, in flight included.")
	queuedBytes      = desc("queued_payload_bytes", "Payload bytes of the queued messages.")
	inflight         = desc("inflight_messages", "Messages sent and awaiting acknowledgement.")
	subscriptions    = desc("subscriptions", "Subscriptions (client, filter).")
	retained         = desc("retained_messages", "Retained messages.")
	recovery         = desc("recovery_seconds", "Time spent rebuilding state from the store at start.")
	uptime           = desc("uptime_seconds", "Seconds since the broker started serving.")
	ready            = desc("ready", "1 while the broker is ready as /readyz sees it: listeners open, not shutting down, disk space above store.min_free_bytes, the store not failed.")

	groupMembers     = desc("shared_members", "Members of a shared subscription group, by whether they are connected.", "group", "state")
	groupQueued      = desc("shared_queued", "Messages a shared subscription group holds, in flight included.", "group")
	groupInflight    = desc("shared_inflight", "Messages of a shared subscription group handed to a member and not yet acknowledged.", "group")
	groupRedelivered = desc("shared_redelivered_total", "Messages a shared subscription group took back from a member that went away or left.", "group")
	groupPoison      = desc("shared_poison_total", "Messages a shared subscription group dropped after shared.max_redeliveries returns.", "group")

	bridgeConnected = desc("bridge_connected", "1 while the bridge's link to its remote broker is up.", "bridge")
	bridgeQueued    = desc("bridge_queued_messages", "Messages queued for the bridge's remote, in flight included.", "bridge")
	bridgeBytes     = desc("bridge_queued_payload_bytes", "Payload bytes of the messages queued for the bridge's remote.", "bridge")
	bridgeSent      = desc("bridge_sent_total", "PUBLISH packets the bridge sent to its remote (resends included).", "bridge")
	bridgeAcked     = desc("bridge_acknowledged_total", "Messages the bridge's remote acknowledged (PUBACK, PUBCOMP).", "bridge")

	storeCommits    = desc("store_commits_total", "Group commits (one fsync each with durability = sync).")
	storeOps        = desc("store_ops_total", "Store entries written or deleted by group commits.")
	storeRequests   = desc("store_requests_total", "Write requests completed (many per group commit).")
	storeFailed     = desc("store_requests_failed_total", "Write requests that failed.")
	storePending    = desc("store_requests_pending", "Write requests waiting for the writer.")
	storeCommitTime = desc("store_commit_duration_seconds", "Latency of a group commit, fsync included.")
	storeSyncs      = desc("store_background_syncs_total", "fdatasyncs of the write-ahead log (one per group of commits with durability = sync, one per interval with async).")
	storeFree       = desc("store_free_bytes", "Free space on the data directory's file system (read at most every 250 ms).")
	storeSpaceLow   = desc("store_space_low", "1 while free space is below store.min_free_bytes: new work that needs disk is refused.")
	storeSyncTime   = desc("store_fsync_duration_seconds", "Latency of the write-ahead log's fdatasyncs: a slow or failing disk shows here first.")
	storeSize       = desc("store_size_bytes", "Store size on disk, by part.", "part")
	storeGCRuns     = desc("store_gc_runs_total", "Value-log garbage collection passes.")
	storeGCRewrites = desc("store_gc_rewrites_total", "Value-log files rewritten (space reclaimed) by garbage collection.")
	storeCommitSize = desc("store_commit_entries", "Store entries per group commit: the batch size.")
	storeCheckpoint = desc("store_checkpoints_total", "Write-ahead log checkpoints: Badger made durable by itself and the log started over.")
)

type collector struct {
	srv   *broker.Server
	store *persist.Store
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

var qosLabels = [3]string{"0", "1", "2"}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(connections, float64(st.Connections.Load()))
	counter(connectionsTotal, float64(st.ConnectionsTotal.Load()))
	for r := range st.Refused {
		counter(refusedTotal, float64(st.Refused[r].Load()), broker.RefuseReason(r).String())
	}
	for q := range qosLabels {
		counter(messagesIn, float64(st.MessagesIn[q].Load()), qosLabels[q])
		counter(messagesOut, float64(st.MessagesOut[q].Load()), qosLabels[q])
		counter(bytesIn, float64(st.BytesIn[q].Load()), qosLabels[q])
		counter(bytesOut, float64(st.BytesOut[q].Load()), qosLabels[q])
	}
	counter(wireIn, float64(st.WireBytesIn.Load()))
	counter(wireOut, float64(st.WireBytesOut.Load()))
	for r := range st.Dropped {
		counter(dropped, float64(st.Dropped[r].Load()), broker.DropReason(r).String())
	}
	for t := range st.Reasons {
		for code := range st.Reasons[t] {
			if n := st.Reasons[t][code].Load(); n > 0 {
				counter(reasonCodes, float64(n), codec.Type(t).String(), fmt.Sprintf("0x%02X", code), codec.ReasonCode(code).String())
			}
		}
	}
	g := c.srv.Gauges()
	gauge(clients, float64(g.ClientsConnected), "connected")
	gauge(clients, float64(g.ClientsDisconnected), "disconnected")
	gauge(queued, float64(g.QueuedMessages))
	gauge(queuedBytes, float64(g.QueuedBytes))
	gauge(inflight, float64(g.Inflight))
	gauge(subscriptions, float64(g.Subscriptions))
	gauge(retained, float64(g.Retained))
	for _, gr := range c.srv.Groups() {
		name := gr.Name + "/" + gr.Filter
		gauge(groupMembers, float64(gr.Online), name, "connected")
		gauge(groupMembers, float64(gr.Members-gr.Online), name, "disconnected")
		gauge(groupQueued, float64(gr.Queued), name)
		gauge(groupInflight, float64(gr.Inflight), name)
		counter(groupRedelivered, float64(gr.Redelivered), name)
		counter(groupPoison, float64(gr.Poisoned), name)
	}
	for _, br := range c.srv.Bridges() {
		up := 0.0
		if br.Connected {
			up = 1
		}
		gauge(bridgeConnected, up, br.Name)
		gauge(bridgeQueued, float64(br.Queued), br.Name)
		gauge(bridgeBytes, float64(br.QueuedBytes), br.Name)
		counter(bridgeSent, float64(br.Sent), br.Name)
		counter(bridgeAcked, float64(br.Acked), br.Name)
	}
	gauge(recovery, st.RecoveryTime.Seconds())
	gauge(uptime, c.srv.Uptime().Seconds())
	readyValue := 0.0
	if c.srv.Serving() {
		readyValue = 1
	}
	gauge(ready, readyValue)

	ps := c.store.Stats()
	if low, free := c.store.SpaceLow(); free >= 0 {
		gauge(storeFree, float64(free))
		lowValue := 0.0
		if low {
			lowValue = 1
		}
		gauge(storeSpaceLow, lowValue)
	}
	counter(storeCommits, float64(ps.Commits))
	counter(storeOps, float64(ps.Ops))
	counter(storeRequests, float64(ps.Requests))
	counter(storeFailed, float64(ps.Failed))
	gauge(storePending, float64(ps.Pending))
	counter(storeSyncs, float64(ps.Syncs))
	gauge(storeSize, float64(ps.LSMBytes), "lsm")
	gauge(storeSize, float64(ps.VlogBytes), "value_log")
	counter(storeGCRuns, float64(ps.GCRuns))
	counter(storeGCRewrites, float64(ps.GCRewrites))
	counter(storeCheckpoint, float64(ps.Checkpoints))
	latency := make([]float64, 0, len(ps.CommitHistogram))
	for _, b := range persist.CommitLatencyBuckets() {
		latency = append(latency, b.Seconds())
	}
	ch <- histogram(storeCommitTime, latency, ps.CommitHistogram, ps.AvgCommit.Seconds()*float64(ps.Commits))
	ch <- histogram(storeSyncTime, latency, ps.SyncHistogram, time.Duration(ps.SyncNanos).Seconds())
	sizes := make([]float64, 0, len(ps.SizeHistogram))
	for _, b := range persist.CommitSizeBuckets() {
		sizes = append(sizes, float64(b))
	}
	ch <- histogram(storeCommitSize, sizes, ps.SizeHistogram, float64(ps.Ops))
}

// histogram turns per-bucket counts (the last one past the last bound) into a Prometheus
// histogram with cumulative buckets.
func histogram(d *prometheus.Desc, bounds []float64, counts []uint64, sum float64) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += counts[i]
		buckets[b] = cum
	}
	cum += counts[len(counts)-1]
	return prometheus.MustNewConstHistogram(d, cum, sum, buckets)
}
