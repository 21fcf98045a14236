package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/broker/brokertest"
	fleetstore "github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// TestRenewsRefusedCredentials restarts the server side with a new
// service token, so every key changes and the broker refuses the agent's
// credentials: the agent enrolls again with the same key and comes back
// by itself.
func TestRenewsRefusedCredentials(t *testing.T) {
	first := brokertest.Start(t, brokertest.Options{EnrollToken: testToken, ServiceToken: "first-service-token"})
	ta := startAgent(t, first.URL, Options{})
	reported := func(s *brokertest.Server) func() (bool, string) {
		return func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			js, _ := jetstream.New(s.Conn)
			st, err := js.Stream(ctx, fleetstore.AgentStream)
			if err != nil {
				return false, err.Error()
			}
			_, err = st.GetLastMsgForSubject(ctx, fleetstore.StoredSubject(wire.HWReportSubject(ta.ID())))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return false, "no hardware report yet"
			}
			return err == nil, ""
		}
	}
	waitFor(t, "a report to the first server", reported(first))
	port := first.Port
	first.Stop()

	second := brokertest.Start(t, brokertest.Options{EnrollToken: testToken, ServiceToken: "second-service-token", Port: port})
	waitFor(t, "a report to the server with new keys", reported(second))
	if !ta.log.contains("credentials renewed") {
		t.Error("the agent reported without renewing its credentials")
	}
}
