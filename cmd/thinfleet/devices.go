package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
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
	apiFlags
}

func devicesFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := devicesOptions{apiFlags: apiFlagsOn(fs)}
	return func(ctx context.Context, e env) error { return runDevices(ctx, o, e) }
}

// runDevices lists enrollments, or approves or revokes one device, through
// the server's API.
func runDevices(ctx context.Context, o devicesOptions, e env) error {
	c, err := o.client(e)
	if err != nil {
		return err
	}
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
		if err := c.get(ctx, "/enrollments", &ens); err != nil {
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
		if err := c.do(ctx, "POST", "/devices/"+url.PathEscape(args[1])+"/"+verb, nil, &en); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s\n", en.ID, en.State)
		return nil
	case verb == "delete" && len(args) == 2:
		var res struct{ ID string }
		if err := c.do(ctx, "DELETE", "/devices/"+url.PathEscape(args[1]), nil, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: deleted\n", res.ID)
		return nil
	}
	return errors.New("usage: thinfleet devices [list | approve ID | revoke ID | delete ID]")
}
