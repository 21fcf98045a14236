package metrics

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// accountStatzSubject asks every server of a cluster for the statistics
// of the asking connection's own account. Every NATS account imports it
// from the system account, so any client may ask: the numbers come the
// same way from the embedded broker and from a stock nats-server cluster.
const accountStatzSubject = "$SYS.REQ.ACCOUNT.PING.STATZ"

// statzReply is the part of a server's answer that the collector reads
// (nats-server's ServerAPIResponse around an AccountStatz).
type statzReply struct {
	Server struct {
		Name string `json:"name"`
		ID   string `json:"id"`
	} `json:"server"`
	Data struct {
		Accounts []struct {
			Conns    int   `json:"conns"`
			NumSubs  int64 `json:"num_subscriptions"`
			Sent     stats `json:"sent"`
			Received stats `json:"received"`
			Slow     int64 `json:"slow_consumers"`
		} `json:"account_statz"`
	} `json:"data"`
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
}

type stats struct {
	Msgs  int64 `json:"msgs"`
	Bytes int64 `json:"bytes"`
}

var (
	brokerUp = prometheus.NewDesc("thinfleet_broker_servers",
		"Broker servers that answered the statistics request at this scrape.", nil, nil)
	brokerConns = prometheus.NewDesc("thinfleet_broker_connections",
		"Client connections (agents and services) to a broker server.", []string{"server"}, nil)
	brokerSubs = prometheus.NewDesc("thinfleet_broker_subscriptions",
		"Subscriptions on a broker server.", []string{"server"}, nil)
	brokerMsgs = prometheus.NewDesc("thinfleet_broker_messages_total",
		"Messages a broker server received from or sent to its clients, by direction.", []string{"server", "direction"}, nil)
	brokerBytes = prometheus.NewDesc("thinfleet_broker_message_bytes_total",
		"Message bytes a broker server received from or sent to its clients, by direction.", []string{"server", "direction"}, nil)
	brokerSlow = prometheus.NewDesc("thinfleet_broker_slow_consumers_total",
		"Clients a broker server found too slow to keep up.", []string{"server"}, nil)
)

// BrokerCollector reports the broker's own connection and message counts
// for thinfleet's account, asked of every server at each scrape over an
// ordinary client connection.
type BrokerCollector struct {
	Conn *nats.Conn
	// Wait bounds how long a scrape waits for the servers' answers (1s).
	Wait time.Duration
}

// Describe implements prometheus.Collector.
func (c BrokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{brokerUp, brokerConns, brokerSubs, brokerMsgs, brokerBytes, brokerSlow} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c BrokerCollector) Collect(ch chan<- prometheus.Metric) {
	replies, err := c.ask()
	if err != nil {
		// A broker that does not answer is a reading, not a failed scrape.
		ch <- prometheus.MustNewConstMetric(brokerUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(brokerUp, prometheus.GaugeValue, float64(len(replies)))
	for _, r := range replies {
		name := r.Server.Name
		if name == "" {
			name = r.Server.ID
		}
		var conns, subs, slow int64
		var sent, recv stats
		for _, a := range r.Data.Accounts {
			conns += int64(a.Conns)
			subs += a.NumSubs
			slow += a.Slow
			sent.Msgs += a.Sent.Msgs
			sent.Bytes += a.Sent.Bytes
			recv.Msgs += a.Received.Msgs
			recv.Bytes += a.Received.Bytes
		}
		ch <- prometheus.MustNewConstMetric(brokerConns, prometheus.GaugeValue, float64(conns), name)
		ch <- prometheus.MustNewConstMetric(brokerSubs, prometheus.GaugeValue, float64(subs), name)
		ch <- prometheus.MustNewConstMetric(brokerSlow, prometheus.CounterValue, float64(slow), name)
		ch <- prometheus.MustNewConstMetric(brokerMsgs, prometheus.CounterValue, float64(recv.Msgs), name, "received")
		ch <- prometheus.MustNewConstMetric(brokerMsgs, prometheus.CounterValue, float64(sent.Msgs), name, "sent")
		ch <- prometheus.MustNewConstMetric(brokerBytes, prometheus.CounterValue, float64(recv.Bytes), name, "received")
		ch <- prometheus.MustNewConstMetric(brokerBytes, prometheus.CounterValue, float64(sent.Bytes), name, "sent")
	}
}

// ask sends one statistics request and gathers the answers: every server
// answers once, so it waits up to Wait for the first and then only while
// more keep coming.
func (c BrokerCollector) ask() ([]statzReply, error) {
	if c.Conn == nil || !c.Conn.IsConnected() {
		return nil, errors.New("broker statistics: not connected")
	}
	wait := c.Wait
	if wait <= 0 {
		wait = time.Second
	}
	inbox := c.Conn.NewRespInbox()
	sub, err := c.Conn.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	// include_unused: a server with no client of the account answers too.
	if err := c.Conn.PublishRequest(accountStatzSubject, inbox, []byte(`{"include_unused":true}`)); err != nil {
		return nil, err
	}
	var out []statzReply
	deadline := time.Now().Add(wait)
	next := wait
	for {
		m, err := sub.NextMsg(next)
		if err != nil {
			break // time is up: every server that could answer has
		}
		var r statzReply
		if json.Unmarshal(m.Data, &r) == nil && r.Error == nil {
			out = append(out, r)
		}
		// After the first answer, the others come within moments.
		next = min(time.Until(deadline), 100*time.Millisecond)
		if next <= 0 {
			break
		}
	}
	if len(out) == 0 {
		return nil, errors.New("broker statistics: no server answered")
	}
	return out, nil
}
