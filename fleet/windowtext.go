package fleet

import (
	"fmt"
	"strings"
)

// ParseWindow parses a window in Window.String's form: "mon,tue
// 02:00-04:00 Europe/Berlin". The days may be left out or be "daily"
// (every day), and so may the zone (UTC).
func ParseWindow(s string) (Window, error) {
	fields := strings.Fields(s)
	var w Window
	hours := -1
	for i, f := range fields {
		if strings.Contains(f, ":") && strings.Contains(f, "-") {
			hours = i
			break
		}
	}
	if hours < 0 || hours > 1 || len(fields) > hours+2 {
		return Window{}, fmt.Errorf(`window %q: want [DAYS] HH:MM-HH:MM [ZONE], e.g. "mon,tue 02:00-04:00 Europe/Berlin"`, s)
	}
	if hours == 1 && fields[0] != "daily" {
		for d := range strings.SplitSeq(fields[0], ",") {
			if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
				w.Days = append(w.Days, d)
			}
		}
	}
	w.Start, w.End, _ = strings.Cut(fields[hours], "-")
	if len(fields) == hours+2 && fields[hours+1] != "UTC" {
		w.Zone = fields[hours+1]
	}
	if err := w.Validate(); err != nil {
		return Window{}, err
	}
	return w, nil
}
