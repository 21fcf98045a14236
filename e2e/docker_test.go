package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// requireDocker skips the test where no Docker engine answers, with the
// reason. Under CI=true a machine whose engine answers must run it: a
// missing compose tool then fails the test instead of skipping it.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("docker tests build an image and run containers")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("skipping: no Docker engine answers `docker info` (%v: %s)", err, bytes.TrimSpace(out))
	}
	if composeCommand() == nil {
		msg := "the Docker engine answers but neither docker-compose nor `docker compose` is installed (apt-get install docker-compose)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// composeCommand is docker-compose (Debian's 1.29) or else docker compose
// (v2); nil when neither runs.
func composeCommand() []string {
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	return nil
}

// repoRoot is the repository's root, the e2e folder's parent.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// buildImage builds the image as the README says, under a tag of the
// test's own, and removes it when the test ends.
func buildImage(t *testing.T) string {
	t.Helper()
	tag := fmt.Sprintf("thinfleet:e2e-%d", os.Getpid())
	start := time.Now()
	cmd := exec.Command("go", "tool", "-modfile=tools/go.mod", "task", "image", "IMAGE="+tag)
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go tool -modfile=tools/go.mod task image: %v\n%s", err, tail(string(out), 4000))
	}
	t.Logf("MEASURED: go tool -modfile=tools/go.mod task image (binaries and image): %s", time.Since(start).Round(100*time.Millisecond))
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
	return tag
}

// project is a docker compose project of the test's own: the compose
// files copied into a temporary folder with an updates folder beside
// them, a unique project name, free host ports.
type project struct {
	t        *testing.T
	name     string
	dir      string
	updates  string
	files    []string
	env      []string
	httpPort int
	natsPort int
}

func newProject(t *testing.T, image string, files ...string) *project {
	t.Helper()
	p := &project{t: t, name: fmt.Sprintf("tfe2e%d%d", os.Getpid(), time.Now().UnixNano()%100000), dir: t.TempDir()}
	p.updates = filepath.Join(p.dir, "updates")
	if err := os.Mkdir(p.updates, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p.updates, 0o755); err != nil { // past the umask: the containers' user reads it
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repoRoot(t), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
		p.files = append(p.files, "-f", filepath.Join(p.dir, f))
	}
	p.httpPort, p.natsPort = freePort(t), freePort(t)
	p.env = append(os.Environ(),
		"THINFLEET_IMAGE="+image,
		fmt.Sprintf("THINFLEET_HTTP_PORT=%d", p.httpPort),
		fmt.Sprintf("THINFLEET_NATS_PORT=%d", p.natsPort),
		"THINFLEET_DEMO_HEARTBEAT=1s",
	)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run("logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", tail(out, 30000))
		}
		if out, err := p.run("down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	return p
}

// run runs a compose command in the project, with the demo profile on.
func (p *project) run(args ...string) (string, error) {
	base := composeCommand()
	full := append(append(append([]string{}, base[1:]...), p.files...), "-p", p.name, "--profile", "demo")
	cmd := exec.Command(base[0], append(full, args...)...)
	cmd.Dir, cmd.Env = p.dir, p.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *project) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, tail(out, 6000))
	}
	return out
}

// container is the docker name of a service's first container.
func (p *project) container(service string) string {
	p.t.Helper()
	id := strings.TrimSpace(p.must("ps", "-q", service))
	if id == "" {
		p.t.Fatalf("no container for %s", service)
	}
	return strings.Split(id, "\n")[0]
}

// network is the project's default network.
func (p *project) network() string { return p.name + "_default" }

var adminLine = regexp.MustCompile(`admin token : (\S+)`)

// adminToken reads the admin token the tokens container printed.
func (p *project) adminToken() string {
	p.t.Helper()
	out := p.must("logs", "--no-color", "tokens")
	m := adminLine.FindStringSubmatch(out)
	if m == nil {
		p.t.Fatalf("no admin token in the tokens container's log:\n%s", out)
	}
	return m[1]
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// api is an HTTP client of a server's API.
type api struct {
	base, token string
}

func (a api) get(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", a.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	if v == nil {
		return nil
	}
	if s, ok := v.(*string); ok {
		*s = string(body)
		return nil
	}
	return json.Unmarshal(body, v)
}

func (a api) devices() []device {
	var ds []device
	_ = a.get("/api/v1/devices", &ds)
	return ds
}

// fleetOn reports whether n devices, or every id given, are alive on
// version.
func (a api) fleetOn(n int, version string) func() (bool, string) {
	return func() (bool, string) {
		ds := a.devices()
		on := 0
		for _, d := range ds {
			if d.Alive && d.Version == version {
				on++
			}
		}
		return len(ds) == n && on == n, showDevices(ds)
	}
}

func (a api) device(id string) (device, bool) {
	for _, d := range a.devices() {
		if d.ID == id {
			return d, true
		}
	}
	return device{}, false
}

// promtool checks a metrics page with promtool where it is installed
// (apt-get install prometheus); under CI=true it must be.
func promtool(t *testing.T, page string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Errorf("promtool is not installed (apt-get install prometheus): /metrics is not checked")
		} else {
			t.Logf("promtool is not installed (apt-get install prometheus): /metrics is not checked")
		}
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
