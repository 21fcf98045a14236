package e2e

import (
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The agent package's files as dpkg installs them.
const (
	debAgentBin      = "/usr/bin/thinfleet-agent"
	debAgentUnit     = "/usr/lib/systemd/system/thinfleet-agent.service"
	debAgentSettings = "/etc/default/thinfleet-agent"
	debAgentState    = "/var/lib/thinfleet-agent"
	debAgentWants    = "/etc/systemd/system/multi-user.target.wants/thinfleet-agent.service"
	debAgentMask     = "/etc/systemd/system/thinfleet-agent.service"
)

// TestDebPackages builds the .deb packages with deploy/deb/build.sh (as
// the README says), installs the agent's on this machine with dpkg,
// checks what it installed, upgrades it over itself, removes it and
// purges it, and checks the arm64 packages. It needs root, dpkg and
// systemd-analyze (apt-get install systemd), and changes the machine: it
// refuses to run where thinfleet-agent is installed already.
func TestDebPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: builds packages and installs one with dpkg")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: installing a package needs root")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: no %s (a Debian machine with systemd installed)", tool)
		}
	}
	host := runtime.GOARCH
	if host != "amd64" && host != "arm64" {
		t.Skipf("skipping: packages are built for amd64 and arm64, this is %s", host)
	}
	if debInstalled(t) {
		t.Fatal("thinfleet-agent is installed on this machine; the test would replace and purge it: dpkg --purge thinfleet-agent first")
	}
	userBefore := hasUser("thinfleet-agent")

	dist := t.TempDir()
	buildDebs(t, dist, host, "thinfleet-agent")
	if host != "arm64" {
		buildDebs(t, dist, "arm64", "thinfleet-agent")
	}
	buildDebs(t, dist, "arm64", "thinfleet")

	t.Run("arm64", func(t *testing.T) {
		for _, pkg := range []string{"thinfleet", "thinfleet-agent"} {
			deb := findDeb(t, dist, pkg, "arm64")
			if got := debField(t, deb, "Architecture"); got != "arm64" {
				t.Errorf("%s: Architecture %q, want arm64", deb, got)
			}
			if got := debField(t, deb, "Package"); got != pkg {
				t.Errorf("%s: Package %q, want %s", deb, got, pkg)
			}
			root := t.TempDir()
			runCmd(t, "dpkg-deb", "-x", deb, root)
			checkStaticELF(t, filepath.Join(root, "usr", "bin", pkg), elf.EM_AARCH64)
			if _, err := os.Stat(filepath.Join(root, "usr", "lib", "systemd", "system", pkg+".service")); err != nil {
				t.Errorf("%s carries no unit: %v", deb, err)
			}
		}
	})

	deb := findDeb(t, dist, "thinfleet-agent", host)
	// Purge even when a check fails, so that the machine is left as found.
	t.Cleanup(func() {
		if debInstalled(t) {
			if out, err := exec.Command("dpkg", "--purge", "thinfleet-agent").CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg --purge thinfleet-agent: %v\n%s", err, out)
			}
		}
	})
	out := runCmd(t, "dpkg", "-i", deb)
	// No server named yet: the package says what to set, and starts nothing.
	if want := "set THINFLEET_SERVER and THINFLEET_ENROLL_TOKEN in /etc/default/thinfleet-agent"; !strings.Contains(out, want) {
		t.Errorf("dpkg -i says:\n%s\nwant a line with %q", out, want)
	}

	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[host]
	checkStaticELF(t, debAgentBin, machine)
	checkMode(t, debAgentBin, 0o755)
	checkMode(t, debAgentUnit, 0o644)
	checkMode(t, debAgentSettings, 0o600) // it will hold the enroll token
	checkMode(t, debAgentState, fs.ModeDir|0o700)
	if got := runCmd(t, "dpkg-query", "-W", "-f=${Conffiles}", "thinfleet-agent"); !strings.Contains(got, debAgentSettings+" ") {
		t.Errorf("conffiles %q do not hold %s: an upgrade would overwrite the settings", got, debAgentSettings)
	}
	// Enabled: the symlink leads to the installed unit (deb-systemd-helper
	// may name it /lib/systemd/system/..., the same file on a merged /usr).
	if !sameFile(debAgentWants, debAgentUnit) {
		target, err := os.Readlink(debAgentWants)
		t.Errorf("the unit is not enabled: %s -> %q (%v), want %s", debAgentWants, target, err, debAgentUnit)
	}
	// systemd accepts the installed unit, its binary where ExecStart says.
	if out, err := exec.Command("systemd-analyze", "verify", debAgentUnit).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", debAgentUnit, err, out)
	}
	if got := runCmd(t, debAgentBin, "--version"); !strings.HasPrefix(got, "thinfleet-agent ") {
		t.Errorf("%s --version = %q", debAgentBin, got)
	}
	checkSettingsTemplate(t, debAgentSettings, runCmd(t, debAgentBin, "--help"), "version")

	// The operator's settings and the device's state survive an upgrade
	// (here the same package again) and a remove.
	f, err := os.OpenFile(debAgentSettings, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("THINFLEET_SERVER=nats://fleet.example:4222\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	stateFile := filepath.Join(debAgentState, "device.id")
	if err := os.WriteFile(stateFile, []byte("kiosk-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = runCmd(t, "dpkg", "-i", deb)
	if strings.Contains(out, "set THINFLEET_SERVER") {
		t.Errorf("a configured agent is told to set THINFLEET_SERVER:\n%s", out)
	}
	checkKept := func(when string) {
		t.Helper()
		if !strings.Contains(readFile(debAgentSettings), "THINFLEET_SERVER=nats://fleet.example:4222") {
			t.Errorf("after %s the settings lost the operator's line:\n%s", when, readFile(debAgentSettings))
		}
		if readFile(stateFile) != "kiosk-1\n" {
			t.Errorf("after %s the state is gone", when)
		}
	}
	checkKept("an upgrade")

	runCmd(t, "dpkg", "-r", "thinfleet-agent")
	checkKept("a remove")
	for _, p := range []string{debAgentBin, debAgentUnit} {
		checkGone(t, "remove", p)
	}

	runCmd(t, "dpkg", "--purge", "thinfleet-agent")
	if debInstalled(t) {
		t.Error("dpkg still knows thinfleet-agent after the purge")
	}
	for _, p := range []string{debAgentBin, debAgentUnit, debAgentSettings, debAgentState, debAgentWants, debAgentMask,
		"/var/lib/systemd/deb-systemd-helper-masked/thinfleet-agent.service"} {
		checkGone(t, "purge", p)
	}
	// deb-systemd-helper's record of the enable symlinks.
	filepath.WalkDir("/var/lib/systemd/deb-systemd-helper-enabled", func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(filepath.Base(p), "thinfleet-agent") {
			t.Errorf("after the purge %s is left", p)
		}
		if err == nil && !d.IsDir() && strings.Contains(readFile(p), "thinfleet-agent") {
			t.Errorf("after the purge %s still names thinfleet-agent", p)
		}
		return nil
	})
	if !userBefore && hasUser("thinfleet-agent") {
		t.Error("after the purge the user thinfleet-agent is left")
	}
}

// TestServerSettingsTemplate checks that /etc/default/thinfleet, as the
// server's package installs it, names every setting of thinfleet server.
func TestServerSettingsTemplate(t *testing.T) {
	help, err := exec.Command(filepath.Join(binDir, "thinfleet"), "server", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("thinfleet server --help: %v\n%s", err, help)
	}
	checkSettingsTemplate(t, filepath.Join(repoRoot(t), "deploy", "deb", "thinfleet.default"), string(help))
}

var helpFlag = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// checkSettingsTemplate wants a commented THINFLEET_<NAME>= line in the
// settings file at path for every flag help lists, except those in skip.
func checkSettingsTemplate(t *testing.T, path, help string, skip ...string) {
	t.Helper()
	text := readFile(path)
	flags := helpFlag.FindAllStringSubmatch(help, -1)
	if len(flags) < 5 {
		t.Fatalf("found %d flags in the help:\n%s", len(flags), help)
	}
	for _, m := range flags {
		name := m[1]
		if slices.Contains(skip, name) {
			continue
		}
		v := "#THINFLEET_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "="
		if !strings.Contains(text, "\n"+v) {
			t.Errorf("%s has no %q line for --%s", path, v, name)
		}
	}
}

// buildDebs runs the README's packaging command for one architecture.
func buildDebs(t *testing.T, dist, arch string, pkgs ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "deploy", "deb", "build.sh"))
	cmd.Env = append(os.Environ(), "DIST="+dist, "ARCHS="+arch, "PACKAGES="+strings.Join(pkgs, " "))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/deb/build.sh (%s %v): %v\n%s", arch, pkgs, err, out)
	}
}

func findDeb(t *testing.T, dist, pkg, arch string) string {
	t.Helper()
	found, _ := filepath.Glob(filepath.Join(dist, pkg+"_*_"+arch+".deb"))
	if len(found) != 1 {
		entries, _ := os.ReadDir(dist)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("want one %s_*_%s.deb in %s, found %v (the folder holds %v)", pkg, arch, dist, found, names)
	}
	return found[0]
}

func debField(t *testing.T, deb, field string) string {
	t.Helper()
	return strings.TrimSpace(runCmd(t, "dpkg-deb", "-f", deb, field))
}

// debInstalled tells whether dpkg has thinfleet-agent installed or
// configured (a removed package whose settings are left counts too).
func debInstalled(t *testing.T) bool {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "thinfleet-agent").Output()
	if err != nil {
		return false // dpkg knows no such package
	}
	status := strings.TrimSpace(string(out))
	return status != "" && status != "not-installed"
}

func hasUser(name string) bool {
	return exec.Command("getent", "passwd", name).Run() == nil
}

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkStaticELF wants an executable for machine with no program
// interpreter: a static binary that runs on any distribution.
func checkStaticELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s is for %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (it has a program interpreter)", path)
		}
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Errorf("not installed: %v", err)
		return
	}
	if got := info.Mode() & (fs.ModeDir | fs.ModePerm); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func sameFile(a, b string) bool {
	ia, err := os.Stat(a)
	if err != nil {
		return false
	}
	ib, err := os.Stat(b)
	return err == nil && os.SameFile(ia, ib)
}

func checkGone(t *testing.T, after, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the %s %s is left (%v)", after, path, err)
	}
}
