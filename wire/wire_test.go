package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"agent-1", true},
		{"Kiosk_07-B", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"a.b", false},
		{"a*", false},
		{"a>", false},
		{"a b", false},
		{"ünï", false},
		{"../x", false},
	}
	for _, tt := range tests {
		if got := ValidateID(tt.id) == nil; got != tt.want {
			t.Errorf("ValidateID(%q) ok = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestParseSubject(t *testing.T) {
	tests := []struct {
		subject  string
		wantKind Kind
		wantID   string
		wantErr  bool
	}{
		{HWReportSubject("d1"), KindHWReport, "d1", false},
		{VersionInstalledSubject("d-2"), KindVersionInstalled, "d-2", false},
		{HeartbeatSubject("d_3"), KindHeartbeat, "d_3", false},
		{OfferSubject("x"), KindOffer, "x", false},
		{StatusSubject("y"), KindStatus, "y", false},
		{"hw.report.", "", "", true},
		{"hw.report.a.b", "", "", true},
		{"other.subject.a", "", "", true},
		{"agent.heartbeat." + strings.Repeat("z", 65), "", "", true},
	}
	for _, tt := range tests {
		kind, id, err := ParseSubject(tt.subject)
		if (err != nil) != tt.wantErr || kind != tt.wantKind || id != tt.wantID {
			t.Errorf("ParseSubject(%q) = %q, %q, %v; want %q, %q, err %v", tt.subject, kind, id, err, tt.wantKind, tt.wantID, tt.wantErr)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.10", "1.9", 1},
		{"1.9", "1.10", -1},
		{"1.0", "1.0.0", 0},
		{"2.0-beta", "2.0", -1},
		{"2.0-beta.2", "2.0-beta.10", -1},
		{"v1.2.3", "1.2.3", 0},
		{"10.0", "9.99.99", 1},
	}
	for _, tt := range tests {
		got, err := CompareVersions(tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", tt.a, tt.b, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "abc", "1..2", strings.Repeat("1.", 40) + "1"} {
		if _, err := CompareVersions(bad, "1.0"); err == nil {
			t.Errorf("CompareVersions(%q, 1.0): no error, want one", bad)
		}
	}
}

func TestNewer(t *testing.T) {
	tests := []struct {
		candidate, installed string
		want                 bool
	}{
		{"1.0", "", true},
		{"1.10", "1.9", true},
		{"1.9", "1.10", false},
		{"1.0.0", "1.0", false},
		{"garbage", "1.0", false},
	}
	for _, tt := range tests {
		if got := Newer(tt.candidate, tt.installed); got != tt.want {
			t.Errorf("Newer(%q, %q) = %v, want %v", tt.candidate, tt.installed, got, tt.want)
		}
	}
}

const validOffer = `{"id":"o1","name":"Update 1","version":"1.2.0","sha256":"` +
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" +
	`","size":10,"command":"sh install.sh","url":"http://fleet:8080/downloads/u.zip"}`

func TestDecode(t *testing.T) {
	tests := []struct {
		name       string
		decode     func([]byte) error
		data       string
		wantReason string // "" means valid
	}{
		{"heartbeat", decodeAs[Heartbeat], `{"interval_ms":5000,"seq":3}`, ""},
		{"heartbeat unknown field ignored", decodeAs[Heartbeat], `{"interval_ms":1000,"extra":[1,2]}`, ""},
		{"heartbeat missing interval", decodeAs[Heartbeat], `{}`, "invalid"},
		{"heartbeat too fast", decodeAs[Heartbeat], `{"interval_ms":1}`, "invalid"},
		{"heartbeat wrong type", decodeAs[Heartbeat], `{"interval_ms":"5s"}`, "bad_json"},
		{"heartbeat null", decodeAs[Heartbeat], `null`, "invalid"},
		{"not json", decodeAs[Heartbeat], `\x00\x01garbage`, "bad_json"},
		{"trailing data", decodeAs[Heartbeat], `{"interval_ms":5000} {}`, "bad_json"},
		{"too large", decodeAs[HWReport], `{"hardware":{"hostname":"` + strings.Repeat("a", MaxMessageSize) + `"}}`, "too_large"},
		{"hw report", decodeAs[HWReport], `{"hardware":{"hostname":"kiosk","cpu_cores":4,"memory_total":8000000000}}`, ""},
		{"hw report long hostname", decodeAs[HWReport], `{"hardware":{"hostname":"` + strings.Repeat("a", 300) + `"}}`, "invalid"},
		{"hw report negative cores", decodeAs[HWReport], `{"hardware":{"cpu_cores":-1}}`, "invalid"},
		{"hw report hostile hostname is data", decodeAs[HWReport], `{"hardware":{"hostname":"<script>alert(1)</script>"}}`, ""},
		{"version installed", decodeAs[VersionInstalled], `{"version":"1.10"}`, ""},
		{"version installed none yet", decodeAs[VersionInstalled], `{"version":""}`, ""},
		{"version installed bad", decodeAs[VersionInstalled], `{"version":"not a version"}`, "invalid"},
		{"offer", decodeAs[Offer], validOffer, ""},
		{"offer bad sha", decodeAs[Offer], strings.Replace(validOffer, `"sha256":"e3`, `"sha256":"E3`, 1), "invalid"},
		{"offer file url", decodeAs[Offer], strings.Replace(validOffer, "http://fleet:8080", "file://", 1), "invalid"},
		{"offer no command", decodeAs[Offer], strings.Replace(validOffer, `"sh install.sh"`, `""`, 1), "invalid"},
		{"offer signed", decodeAs[Offer], strings.Replace(validOffer, `{`, `{"signature":"`+strings.Repeat("A", 86)+`==",`, 1), ""},
		{"offer signature not base64", decodeAs[Offer], strings.Replace(validOffer, `{`, `{"signature":"`+strings.Repeat("!", 88)+`",`, 1), "invalid"},
		{"offer signature 63 bytes", decodeAs[Offer], strings.Replace(validOffer, `{`, `{"signature":"`+strings.Repeat("A", 84)+`",`, 1), "invalid"},
		{"offer signature wrong type", decodeAs[Offer], strings.Replace(validOffer, `{`, `{"signature":64,`, 1), "bad_json"},
		{"status", decodeAs[Status], `{"version":"1.2","state":"downloading","progress":true,"bytes_done":5,"bytes_total":10}`, ""},
		{"status unknown state", decodeAs[Status], `{"version":"1.2","state":"exploded"}`, "invalid"},
		{"status negative bytes", decodeAs[Status], `{"version":"1.2","state":"downloading","bytes_done":-5}`, "invalid"},
		{"enroll request", decodeAs[EnrollRequest], `{"public_key":"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}`, ""},
		{"enroll request account key", decodeAs[EnrollRequest], `{"public_key":"ADXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}`, "invalid"},
		{"enroll request no key", decodeAs[EnrollRequest], `{"hostname":"x"}`, "invalid"},
		{"enroll approved without jwt", decodeAs[EnrollResponse], `{"status":"approved"}`, "invalid"},
		{"enroll unknown status", decodeAs[EnrollResponse], `{"status":"maybe"}`, "invalid"},
		{"enroll refused", decodeAs[EnrollResponse], `{"status":"refused","reason":"revoked"}`, ""},
		{"status huge output", decodeAs[Status], `{"version":"1.2","state":"failed","output":"` + strings.Repeat("o", MaxOutput+1) + `"}`, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode([]byte(tt.data))
			switch {
			case tt.wantReason == "" && err != nil:
				t.Errorf("got error %v, want none", err)
			case tt.wantReason != "" && err == nil:
				t.Errorf("got no error, want %s", tt.wantReason)
			case tt.wantReason != "" && DropReason(err) != tt.wantReason:
				t.Errorf("got reason %q (%v), want %q", DropReason(err), err, tt.wantReason)
			}
		})
	}
}

func decodeAs[T Message](data []byte) error {
	_, err := Decode[T](data)
	return err
}

func TestDropReasonOtherError(t *testing.T) {
	if got := DropReason(errors.New("x")); got != "invalid" {
		t.Errorf("DropReason(plain error) = %q, want invalid", got)
	}
}

func TestFingerprintIgnoresFreeSpace(t *testing.T) {
	a := Hardware{Hostname: "h", Disks: []Disk{{Mount: "/", Total: 100, Free: 10}}}
	b := a
	b.Disks = []Disk{{Mount: "/", Total: 100, Free: 90}}
	if a.Fingerprint().Disks[0] != b.Fingerprint().Disks[0] {
		t.Error("fingerprints differ on free space alone")
	}
	if a.Disks[0].Free != 10 {
		t.Error("Fingerprint changed its receiver")
	}
}
