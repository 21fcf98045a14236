package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnits checks deploy/systemd with systemd-analyze verify, the
// binaries it names taken from this build. It skips where systemd-analyze
// is not installed (apt-get install systemd).
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipping: systemd-analyze is not installed (apt-get install systemd)")
	}
	dir := t.TempDir()
	var units []string
	for _, u := range []string{"thinfleet.service", "thinfleet-agent.service"} {
		data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		// verify wants the binaries where ExecStart says.
		text := strings.ReplaceAll(string(data), "/usr/bin/", binDir+"/")
		path := filepath.Join(dir, u)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, path)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, units...)...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
