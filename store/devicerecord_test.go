package store_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// countReads counts the reads of device records (the KV's direct gets)
// that go through the store's connection from now on.
func countReads(t *testing.T, s *store.Store) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	nc := s.JetStream().Conn()
	sub, err := nc.Subscribe("$JS.API.DIRECT.GET.KV_"+store.DevicesBucket+".>", func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &n
}

// TestUpdateDeviceFrom: a change from a record the caller holds is written
// without a read when the record is current; when another writer came in
// between, the write is refused, the record read, and the change applied
// to what the other wrote, which is kept.
func TestUpdateDeviceFrom(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	_, held, err := s.UpdateDeviceFrom(ctx, "dev-1", store.DeviceRecord{}, func(d *fleet.Device) error {
		d.Hostname = "first"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if held.Revision == 0 || len(held.Data) == 0 {
		t.Fatalf("record as written = %+v, want its data and revision", held)
	}
	reads := countReads(t, s)

	// Current: one write, no read.
	d, held, err := s.UpdateDeviceFrom(ctx, "dev-1", held, func(d *fleet.Device) error {
		d.Alive = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Alive || d.Hostname != "first" {
		t.Errorf("written %+v, want alive with hostname first", d)
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("%d reads for a change of a current record, want 0", n)
	}

	// Another service writes the device: held is stale.
	if _, err := s.UpdateDevice(ctx, "dev-1", func(d *fleet.Device) error {
		d.Version = "2.0"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	reads.Store(0)
	calls := 0
	d, _, err = s.UpdateDeviceFrom(ctx, "dev-1", held, func(d *fleet.Device) error {
		calls++
		d.Alive = false
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Device(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Alive || got.Version != "2.0" || got.Hostname != "first" {
		t.Errorf("stored %+v, want notAlive with the other writer's version 2.0 and hostname first", got)
	}
	if d.Version != "2.0" {
		t.Errorf("returned %+v, want the record as written", d)
	}
	if calls != 2 || reads.Load() == 0 {
		t.Errorf("fn called %d times with %d reads, want 2 calls: the stale try, then one on the record read", calls, reads.Load())
	}
}
