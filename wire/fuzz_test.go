package wire

import (
	"encoding/json"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to every decoder: none may panic, and a
// message that decodes must validate and survive a round trip.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"interval_ms":5000}`,
		`{"hardware":{"hostname":"kiosk","cpu_cores":4,"disks":[{"mount":"/","total":1}],"interfaces":[{"name":"eth0","addresses":["10.0.0.2/24"]}]}}`,
		`{"version":"1.10","previous_version":"1.9"}`,
		validOffer,
		`{"version":"1.2","state":"failed","detail":"exit status 3","output":"boom"}`,
		`{"public_key":"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4","hostname":"kiosk"}`,
		`{"status":"approved","jwt":"eyJ0eXAiOiJKV1QifQ.e30.c2ln"}`, `{"status":"pending"}`,
		`null`, `[]`, `{"version":{}}`, "\xff\xfe", `{"interval_ms":1e400}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip[HWReport](t, data)
		roundTrip[VersionInstalled](t, data)
		roundTrip[Heartbeat](t, data)
		roundTrip[Offer](t, data)
		roundTrip[Status](t, data)
		roundTrip[EnrollRequest](t, data)
		roundTrip[EnrollResponse](t, data)
	})
}

func roundTrip[T Message](t *testing.T, data []byte) {
	m, err := Decode[T](data)
	if err != nil {
		return
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("decoded %T does not validate: %v", m, err)
	}
	again, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("re-encode %T: %v", m, err)
	}
	if _, err := Decode[T](again); err != nil && DropReason(err) != "too_large" {
		t.Fatalf("re-encoded %T does not decode: %v", m, err)
	}
}
