package web

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/store"
)

// TestFleetMetricsFromHub: the device gauges of /metrics count the fleet
// and follow its changes, and a scrape reads nothing of the devices
// bucket (it read and decoded every record per scrape before).
func TestFleetMetricsFromHub(t *testing.T) {
	a := newAPITest(t)
	ctx := context.Background()
	set := func(id, version string, alive bool) {
		t.Helper()
		if _, err := a.store.UpdateDevice(ctx, id, func(d *fleet.Device) error {
			kiosk(id, version, alive)(d)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set("m-1", "1.0", true)
	set("m-2", "2.0", true)
	set("m-3", "", false)
	want := func(lines ...string) {
		t.Helper()
		poll.Eventually(t, 10*time.Second, "the device gauges", func() error {
			_, page := a.do(t, "/metrics", nil)
			for _, l := range lines {
				if !strings.Contains(page, "\n"+l+"\n") {
					return fmt.Errorf("no %q in:\n%s", l, grepMetrics(page, "thinfleet_devices"))
				}
			}
			return nil
		})
	}
	want(`thinfleet_devices{presence="alive"} 2`, `thinfleet_devices{presence="not_alive"} 1`,
		`thinfleet_devices_by_version{version="1.0"} 1`, `thinfleet_devices_by_version{version="2.0"} 1`,
		`thinfleet_devices_by_version{version="none"} 1`)

	var reads atomic.Int64
	nc := a.store.JetStream().Conn()
	for _, subj := range []string{"$JS.API.CONSUMER.CREATE.KV_" + store.DevicesBucket + ".>", "$JS.API.CONSUMER.CREATE.KV_" + store.DevicesBucket, "$JS.API.DIRECT.GET.KV_" + store.DevicesBucket + ".>"} {
		sub, err := nc.Subscribe(subj, func(*nats.Msg) { reads.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if resp, _ := a.do(t, "/metrics", nil); resp.StatusCode != 200 {
			t.Fatalf("/metrics: %s", resp.Status)
		}
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("5 scrapes read the devices bucket %d times, want 0", n)
	}

	set("m-3", "2.0", true)
	want(`thinfleet_devices{presence="alive"} 3`, `thinfleet_devices{presence="not_alive"} 0`, `thinfleet_devices_by_version{version="2.0"} 2`)
}

func grepMetrics(page, prefix string) string {
	var out []string
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
