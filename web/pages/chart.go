package pages

// chartRow is one bar of the version chart, laid out in SVG units.
type chartRow struct {
	VersionCount
	Y, Width     int
	Label, Count string
	Class        string
}

// The version chart's geometry, in SVG units of its viewBox.
const (
	chartWidth  = 440
	chartLabel  = 130 // room for the version at the left
	chartBarMax = 230
	chartRowH   = 30
)

// chartRows lays out one bar per version, as long as its share of the
// largest count; a bar with any devices is at least 2 units long.
func chartRows(vs []VersionCount) []chartRow {
	most := 1
	for _, v := range vs {
		most = max(most, v.Count)
	}
	rows := make([]chartRow, len(vs))
	for i, v := range vs {
		w := v.Count * chartBarMax / most
		if v.Count > 0 {
			w = max(w, 2)
		}
		r := chartRow{VersionCount: v, Y: i * chartRowH, Width: w, Label: shorten(v.Version, 16), Count: itoa(v.Count), Class: "bar"}
		switch {
		case v.Version == "":
			r.Label, r.Class = "no version", "bar none"
		case v.Target:
			r.Count, r.Class = r.Count+" · target", "bar target"
		}
		rows[i] = r
	}
	return rows
}

func chartHeight(n int) int { return max(1, n) * chartRowH }

// shorten cuts s to n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
