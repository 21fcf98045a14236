package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// nginx is Debian's nginx serving one file on loopback, the yardstick of
// the server's downloads.
type nginx struct {
	cmd    *exec.Cmd
	dir    string
	url    string
	exited chan struct{}
}

const nginxConf = `worker_processes auto;
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
user root; # ignored, with a warning, when not run as root
events { worker_connections %[3]d; }
http {
	sendfile on;
	tcp_nopush on;
	access_log off;
	client_body_temp_path %[1]s/tmp;
	proxy_temp_path %[1]s/tmp;
	fastcgi_temp_path %[1]s/tmp;
	uwsgi_temp_path %[1]s/tmp;
	scgi_temp_path %[1]s/tmp;
	types { application/zip zip; }
	server {
		listen 127.0.0.1:%[2]d;
		root %[1]s/www;
	}
}
`

// startNginx serves the file at path from nginx (bin) for clients
// concurrent clients, and waits until it answers.
func startNginx(ctx context.Context, bin, path string, clients int) (*nginx, error) {
	bin, err := exec.LookPath(bin)
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, fmt.Errorf("no nginx (apt-get install -y nginx): %w", err)
		}
		bin = "/usr/sbin/nginx"
	}
	dir, err := os.MkdirTemp("", "thinfleet-sim-nginx-")
	if err != nil {
		return nil, err
	}
	n := &nginx{dir: dir, exited: make(chan struct{})}
	fail := func(err error) (*nginx, error) { os.RemoveAll(dir); return nil, err }
	// nginx's workers may run as another user: they must reach the file.
	_ = os.Chmod(dir, 0o755)
	for _, d := range []string{"www", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fail(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "update.zip"), data, 0o644); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, port, max(1024, clients+64)), 0o644); err != nil {
		return fail(err)
	}
	n.cmd = exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	n.cmd.Stdout, n.cmd.Stderr = nil, nil
	if err := n.cmd.Start(); err != nil {
		return fail(fmt.Errorf("start nginx: %w", err))
	}
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	n.url = fmt.Sprintf("http://127.0.0.1:%d/update.zip", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Head(n.url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
			err = fmt.Errorf("HEAD: %s", resp.Status)
		}
		select {
		case <-n.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return fail(fmt.Errorf("nginx exited: %s", log))
		case <-ctx.Done():
			n.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("nginx did not answer within 10s: %w", err)
		}
	}
}

// cpu is the CPU time of nginx's master and workers.
func (n *nginx) cpu() time.Duration {
	pid := n.cmd.Process.Pid
	var total time.Duration
	for _, p := range append([]int{pid}, children(pid)...) {
		if st, err := readProc(p); err == nil {
			total += st.cpu
		}
	}
	return total
}

// stop ends nginx (SIGQUIT lets workers finish; SIGKILL after 5s) and
// removes its folder.
func (n *nginx) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		for _, c := range children(n.cmd.Process.Pid) {
			_ = syscall.Kill(c, syscall.SIGKILL)
		}
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	os.RemoveAll(n.dir)
}
