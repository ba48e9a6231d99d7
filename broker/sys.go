package broker

import (
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/message"
	"github.com/holdfast/holdfast/retain"
	"github.com/holdfast/holdfast/session"
)

// sysLoad is an exponentially weighted per-minute rate, as Mosquitto's $SYS/broker/load/... topics.
type sysLoad struct {
	last   int64
	values [3]float64 // 1, 5 and 15 minute windows
}

var loadWindows = [3]time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute}

var loadNames = [3]string{"1min", "5min", "15min"}

func (l *sysLoad) update(total int64, interval time.Duration) {
	perMinute := float64(total-l.last) / interval.Minutes()
	l.last = total
	for i, w := range loadWindows {
		decay := math.Exp(-interval.Seconds() / w.Seconds())
		l.values[i] = l.values[i]*decay + perMinute*(1-decay)
	}
}

// sysLoop publishes the $SYS/broker/... topics with Mosquitto's names every interval, so existing
// dashboards work. They are retained in memory only: after a restart they are simply published
// again, and kept apart from the clients' retained messages so that they count against no limit.
func (s *Server) sysLoop(interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	var loads = map[string]*sysLoad{
		"messages/received": {}, "messages/sent": {},
		"publish/messages/received": {}, "publish/messages/sent": {},
		"bytes/received": {}, "bytes/sent": {}, "connections": {},
	}
	s.publishSys(loads, interval)
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.publishSys(loads, interval)
		}
	}
}

func sum3(a *[3]atomic.Int64) int64 { return a[0].Load() + a[1].Load() + a[2].Load() }

func (s *Server) publishSys(loads map[string]*sysLoad, interval time.Duration) {
	st := &s.stats
	g := s.Gauges()
	in, out := sum3(&st.MessagesIn), sum3(&st.MessagesOut)
	totals := map[string]int64{
		"messages/received":         in,
		"messages/sent":             out,
		"publish/messages/received": in,
		"publish/messages/sent":     out,
		"bytes/received":            st.WireBytesIn.Load(),
		"bytes/sent":                st.WireBytesOut.Load(),
		"connections":               st.ConnectionsTotal.Load(),
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	values := map[string]string{
		"version":                   s.version,
		"uptime":                    itoa(int64(s.Uptime().Seconds())) + " seconds",
		"clients/connected":         strconv.Itoa(g.ClientsConnected),
		"clients/active":            strconv.Itoa(g.ClientsConnected),
		"clients/disconnected":      strconv.Itoa(g.ClientsDisconnected),
		"clients/inactive":          strconv.Itoa(g.ClientsDisconnected),
		"clients/total":             strconv.Itoa(g.ClientsConnected + g.ClientsDisconnected),
		"subscriptions/count":       strconv.Itoa(g.Subscriptions),
		"retained messages/count":   strconv.Itoa(g.Retained),
		"store/messages/count":      itoa(g.QueuedMessages),
		"store/messages/bytes":      itoa(g.QueuedBytes),
		"messages/inflight":         itoa(g.Inflight),
		"publish/messages/dropped":  itoa(st.Dropped[DropQueueFull].Load() + st.Dropped[DropSlow].Load() + st.Dropped[DropOfflineQoS0].Load()),
		"messages/received":         itoa(in),
		"messages/sent":             itoa(out),
		"publish/messages/received": itoa(in),
		"publish/messages/sent":     itoa(out),
		"bytes/received":            itoa(st.WireBytesIn.Load()),
		"bytes/sent":                itoa(st.WireBytesOut.Load()),
	}
	for name, l := range loads {
		l.update(totals[name], interval)
		for i, w := range loadNames {
			values["load/"+name+"/"+w] = strconv.FormatFloat(l.values[i], 'f', 2, 64)
		}
	}
	for name, v := range values {
		s.setSys(name, v)
	}
}

// setSys sets $SYS/broker/<name> to v: retained for those who subscribe later, and sent now
// to those subscribed.
func (s *Server) setSys(name, v string) {
	topic := sysPrefix + "/broker/" + name
	s.sysRetained.Set(&retain.Message{Message: message.Message{Topic: topic, Payload: []byte(v)}})
	s.fanOutQoS0(&codec.Publish{Topic: topic, Payload: []byte(v)}, nil, session.Outlet.SendPublish)
}
