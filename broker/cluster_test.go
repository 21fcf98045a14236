package broker

import "testing"

func TestRouteURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"n1:6222", "nats-route://route:tok%2Fen@n1:6222"},
		{" nats-route://10.0.0.2:6222 ", "nats-route://route:tok%2Fen@10.0.0.2:6222"},
		{"nats-route://other:pw@n3:6222", "nats-route://route:tok%2Fen@n3:6222"},
		{"n1", ""},
		{"://", ""},
	}
	for _, tt := range tests {
		u, err := routeURL(tt.in, "tok/en")
		got := ""
		if err == nil {
			got = u.String()
		}
		if got != tt.want {
			t.Errorf("routeURL(%q) = %q (%v), want %q", tt.in, got, err, tt.want)
		}
	}
	if got := SplitRoutes(" a:1,, b:2 ,"); len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Errorf("SplitRoutes = %q", got)
	}
}
