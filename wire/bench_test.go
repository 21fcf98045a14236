package wire

import (
	"encoding/json"
	"testing"
	"time"
)

// The wire's hot paths: every message the server receives is decoded and
// validated once, and the decision compares versions for every device.
// Run with: go test -run '^$' -bench . -benchmem ./wire

func benchDecode[T Message](b *testing.B, m T) {
	data, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode[T](data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	hw := Hardware{
		Hostname: "kiosk-0042", OS: "linux", Platform: "debian", PlatformVersion: "12", KernelVersion: "6.1.0-18-amd64",
		Arch: "amd64", CPUModel: "Intel(R) Celeron(R) N5105 @ 2.00GHz", CPUCores: 4, CPUThreads: 4, MemoryTotal: 8 << 30,
		Disks:      []Disk{{Mount: "/", Total: 128 << 30, Free: 100 << 30, FSType: "ext4"}},
		Interfaces: []Interface{{Name: "eth0", MAC: "00:11:22:33:44:55", Addresses: []string{"192.168.1.42/24"}}},
		BootTime:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	b.Run("heartbeat", func(b *testing.B) { benchDecode(b, Heartbeat{IntervalMS: 5000, Seq: 123456}) })
	b.Run("hw_report", func(b *testing.B) { benchDecode(b, HWReport{Hardware: hw, AgentVersion: "1.4.2"}) })
	b.Run("version_installed", func(b *testing.B) {
		benchDecode(b, VersionInstalled{Version: "1.10.2", PreviousVersion: "1.9.7"})
	})
	b.Run("offer", func(b *testing.B) {
		benchDecode(b, Offer{ID: "0f9c2e4a7b1d3f5e", Name: "Update 1", Version: "1.10.2",
			SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Size: 1 << 20,
			Command: "sh install.sh", URL: "https://fleet.example.com/downloads/update-1.10.2.zip?device=kiosk-0042&exp=1796400000&sig=abcdef0123456789",
			Time: time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)})
	})
	b.Run("status", func(b *testing.B) {
		benchDecode(b, Status{OfferID: "0f9c2e4a7b1d3f5e", Version: "1.10.2", State: StateDownloading,
			Progress: true, BytesDone: 512 << 10, BytesTotal: 1 << 20})
	})
	b.Run("enroll_request", func(b *testing.B) {
		benchDecode(b, EnrollRequest{PublicKey: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", Hostname: "kiosk-0042"})
	})
}

func BenchmarkCompareVersions(b *testing.B) {
	pairs := [][2]string{{"1.10.0", "1.9.7"}, {"1.0", "1.0.0"}, {"2.0-beta", "2.0"}, {"2026.12.4", "2026.12.4"}}
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range pairs {
			if _, err := CompareVersions(p[0], p[1]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkNewer(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !Newer("1.10.0", "1.9.7") {
			b.Fatal("1.10.0 is newer than 1.9.7")
		}
	}
}
