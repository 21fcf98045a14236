package catalog_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/catalog"
)

// TestPolicyLine: the policy file also takes the seed system's line,
// 'name', 'version', 'checksum', 'link', 'command'. A line whose version
// is a release and whose checksum is that release's sha256 (or a
// placeholder shorter than one) pins that version; any other is refused
// with its reason, and the target stays what it was (here 1.9.0, pinned
// by a bare version before the line is written), not nothing.
func TestPolicyLine(t *testing.T) {
	v19, v110 := release(t, "1.9.0"), release(t, "1.10.0")
	sum110 := sum(v110)
	tests := []struct {
		name, line     string
		target, reason string
	}{
		{name: "the seed system's own line", line: `'Update 1', '1.10.0', 'abc', '/downloads/update1', 'tarxyz'`,
			target: "1.10.0", reason: "pinned by updates/target"},
		{name: "with its checksum", line: fmt.Sprintf(`'Update 10', '1.10', '%s', '/downloads/b.zip', 'sh install.sh'`, sum110),
			target: "1.10.0", reason: "pinned by updates/target"},
		{name: "checksum in capitals, double quotes, no spaces", line: fmt.Sprintf(`"U","1.10.0","%s","",""`, strings.ToUpper(sum110)),
			target: "1.10.0", reason: "pinned by updates/target"},
		{name: "a comment before it", line: "# pinned for the fair\n" + `'Update 1', '1.10.0', '', '', ''`,
			target: "1.10.0", reason: "pinned by updates/target"},
		{name: "wrong checksum", line: fmt.Sprintf(`'Update 10', '1.10.0', '%s', '/downloads/update1', 'tarxyz'`, strings.Repeat("0", 64)),
			target: "1.9.0", reason: fmt.Sprintf("updates/target refused: checksum %s is not the sha256 of b.zip (%s); the target stays 1.9.0", strings.Repeat("0", 64), sum110)},
		{name: "the other release's checksum", line: fmt.Sprintf(`'Update 10', '1.10.0', '%s', '', ''`, sum(v19)),
			target: "1.9.0", reason: fmt.Sprintf("updates/target refused: checksum %s is not the sha256 of b.zip (%s); the target stays 1.9.0", sum(v19), sum110)},
		{name: "no such release", line: `'Update 3', '3.0', 'abc', '/downloads/update3', 'tarxyz'`,
			target: "1.9.0", reason: "updates/target refused: version 3.0 is not a valid release in the folder; the target stays 1.9.0"},
		{name: "not a version", line: `'Update 1', 'latest', 'abc', '/downloads/update1', 'tarxyz'`,
			target: "1.9.0", reason: `updates/target refused: "latest" is not a version; the target stays 1.9.0`},
		{name: "four fields", line: `'Update 1', '1.10.0', 'abc', '/downloads/update1'`,
			target: "1.9.0", reason: "updates/target refused: 4 fields; want 'name', 'version', 'checksum', 'link', 'command'; the target stays 1.9.0"},
		{name: "unquoted", line: `Update 1, 1.10.0, abc, /downloads/update1, tarxyz`,
			target: "1.9.0", reason: "updates/target refused: field 1 is not quoted; want 'name', 'version', 'checksum', 'link', 'command'; the target stays 1.9.0"},
		{name: "a bare version no zip provides", line: "3.0",
			target: "1.9.0", reason: "updates/target refused: version 3.0 is not a valid release in the folder; the target stays 1.9.0"},
		{name: "a bare word", line: "latest",
			target: "1.9.0", reason: `updates/target refused: "latest" is not a version; the target stays 1.9.0`},
		{name: "unclosed", line: `'Update 1', '1.10.0`,
			target: "1.9.0", reason: "updates/target refused: field 2 has no closing quote; want 'name', 'version', 'checksum', 'link', 'command'; the target stays 1.9.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			drop(t, e.dir, "a.zip", v19)
			drop(t, e.dir, "b.zip", v110)
			write(t, e.dir, catalog.PolicyFile, []byte("1.9.0\n"))
			e.start(t, 50*time.Millisecond)
			e.wait(t, is("b.zip=1.10.0 a.zip=1.9.0", "", "1.9.0"))
			write(t, e.dir, catalog.PolicyFile, []byte(tt.line+"\n"))
			c := e.wait(t, func(c fleet.Catalog) error {
				if c.TargetReason == "pinned by updates/target" && c.Target == "1.9.0" {
					return fmt.Errorf("the line is not read yet")
				}
				return nil
			})
			if c.Target != tt.target || c.TargetReason != tt.reason {
				t.Errorf("target %q (%s)\nwant %q (%s)", c.Target, c.TargetReason, tt.target, tt.reason)
			}
		})
	}
}

// TestPolicyLineFirstScan: a refused line at the first scan leaves
// nothing to keep: nothing is offered, and the catalog says why.
func TestPolicyLineFirstScan(t *testing.T) {
	e := setup(t)
	drop(t, e.dir, "b.zip", release(t, "1.10.0"))
	write(t, e.dir, catalog.PolicyFile, []byte(`'Update 3', '3.0', 'abc', '/downloads/update3', 'tarxyz'`))
	e.start(t, time.Hour)
	c := e.wait(t, is("b.zip=1.10.0", "", ""))
	if want := "updates/target refused: version 3.0 is not a valid release in the folder; nothing is offered"; c.TargetReason != want {
		t.Errorf("reason %q, want %q", c.TargetReason, want)
	}
}
