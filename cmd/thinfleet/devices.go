package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// splitArgs separates a command's words from its flags: the flags come
// first, the words are everything from the first argument that is not a
// flag or a flag's value.
func splitArgs(fs *flag.FlagSet, args []string) (flags, words []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			return args[:i], args[i:]
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++ // the flag's value
			}
		}
	}
	return args, nil
}

// devicesOptions are "thinfleet devices"'s.
type devicesOptions struct {
	// api is the server's HTTP address.
	api  *string
	data *string
}

func devicesFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := devicesOptions{
		api:  fs.String("api", "http://127.0.0.1:8080", "the thinfleet server's HTTP `URL`, or host:port"),
		data: dataFlag(fs),
	}
	return func(ctx context.Context, e env) error { return runDevices(ctx, o, e) }
}

// runDevices lists enrollments, or approves or revokes one device, through
// the server's API.
func runDevices(ctx context.Context, o devicesOptions, e env) error {
	token := e.getenv("THINFLEET_ADMIN_TOKEN")
	if token == "" {
		data, err := os.ReadFile(filepath.Join(*o.data, "admin.token"))
		if err != nil {
			return errors.New("set THINFLEET_ADMIN_TOKEN (or run where --data holds admin.token)")
		}
		token = strings.TrimSpace(string(data))
	}
	base := apiBase(*o.api)
	api := base + "/api/v1"
	args, stdout := e.args, e.stdout
	verb := "list"
	if len(args) > 0 {
		verb = args[0]
	}
	switch {
	case verb == "list" && len(args) <= 1:
		var ens []struct {
			ID, State, Hostname, PublicKey string
			Requested                      time.Time
		}
		if err := call(ctx, base, "GET", api+"/enrollments", token, &ens); err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tSTATE\tHOSTNAME\tREQUESTED")
		for _, e := range ens {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.ID, e.State, e.Hostname, e.Requested.Local().Format(time.DateTime))
		}
		return w.Flush()
	case (verb == "approve" || verb == "revoke") && len(args) == 2:
		var en struct{ ID, State string }
		if err := call(ctx, base, "POST", api+"/devices/"+url.PathEscape(args[1])+"/"+verb, token, &en); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s\n", en.ID, en.State)
		return nil
	case verb == "delete" && len(args) == 2:
		var res struct{ ID string }
		if err := call(ctx, base, "DELETE", api+"/devices/"+url.PathEscape(args[1]), token, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: deleted\n", res.ID)
		return nil
	}
	return errors.New("usage: thinfleet devices [list | approve ID | revoke ID | delete ID]")
}

// apiBase is the server's address as --api gives it, a URL or host:port
// (http then), without a trailing slash.
func apiBase(api string) string {
	api = strings.TrimRight(strings.TrimSpace(api), "/")
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	return api
}

// apiTimeout bounds one call to the server's API.
const apiTimeout = 30 * time.Second

// call makes one request to the API of the server at base, and decodes
// its JSON answer into v.
func call(ctx context.Context, base, method, u, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: apiTimeout}).Do(req)
	if err != nil {
		return unreachable(base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, u, resp.Status)
	}
	return json.Unmarshal(body, v)
}

// unreachable says in words that the server at base did not answer a
// request, and why, as far as the error tells.
func unreachable(base string, err error) error {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var why string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.As(err, &dnsErr):
		why = "no such host " + dnsErr.Name
	case errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err):
		why = "no answer in time"
	case errors.As(err, &opErr):
		why = opErr.Err.Error()
	default:
		return err // not a network failure: a bad URL, a canceled request
	}
	return fmt.Errorf("cannot reach the thinfleet server at %s: %s; is it running? (--api)", base, why)
}
