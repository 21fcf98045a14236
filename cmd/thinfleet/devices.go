package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// splitArgs separates a command's words from its flags, which may come
// before, between or after the words ("thinfleet pin kiosk-1 1.2
// --reason why"); after "--" everything is a word.
func splitArgs(fs *flag.FlagSet, args []string) (flags, words []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return flags, append(words, args[i+1:]...)
		case !strings.HasPrefix(a, "-") || a == "-":
			words = append(words, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && i+1 < len(args) {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++ // the flag's value
				flags = append(flags, args[i])
			}
		}
	}
	return flags, words
}

// listFlag is a flag that may be given many times, each a value or a
// comma separated list of them.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// devicesOptions are "thinfleet devices"'s.
type devicesOptions struct {
	apiFlags
	// remove are the tag keys "devices tag" removes; selector chooses
	// the devices of "tag" and "delete" by their labels instead of ids.
	remove   listFlag
	selector *string
}

func devicesFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := &devicesOptions{apiFlags: apiFlagsOn(fs)}
	fs.Var(&o.remove, "remove", "devices tag: remove the tag with this `key` (repeat, or a comma separated list)")
	o.selector = fs.String("selector", "", "devices tag, delete: the devices whose labels and tags match `k=v,k2=v2` (\"all\": every device), instead of ids")
	return func(ctx context.Context, e env) error { return runDevices(ctx, o, e) }
}

const devicesUsage = `usage: thinfleet devices [list]
       thinfleet devices approve ID...
       thinfleet devices revoke ID...
       thinfleet devices delete ID... | --selector k=v
       thinfleet devices tag ID... k=v... [--remove KEY]... | --selector k=v k=v... [--remove KEY]...`

// runDevices lists enrollments, approves, revokes or deletes devices, or
// tags them, through the server's API.
func runDevices(ctx context.Context, o *devicesOptions, e env) error {
	c, err := o.client(e)
	if err != nil {
		return err
	}
	args, stdout := e.args, e.stdout
	verb := "list"
	if len(args) > 0 {
		verb, args = args[0], args[1:]
	}
	switch {
	case verb == "list" && len(args) == 0:
		return listDevices(ctx, c, stdout)
	case (verb == "approve" || verb == "revoke") && len(args) == 1:
		var en struct{ ID, State string }
		if err := c.do(ctx, "POST", "/devices/"+url.PathEscape(args[0])+"/"+verb, nil, &en); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s\n", en.ID, en.State)
		return nil
	case verb == "approve" || verb == "revoke" || verb == "delete":
		if len(args) == 0 && *o.selector == "" || len(args) > 0 && *o.selector != "" || verb != "delete" && *o.selector != "" {
			break
		}
		done := map[string]string{"approve": "approved", "revoke": "revoked", "delete": "deleted"}[verb]
		return bulk(ctx, c, stdout, bulkRequest{IDs: args, Selector: *o.selector, Action: verb}, done)
	case verb == "tag":
		var ids []string
		req := bulkRequest{Selector: *o.selector, Keys: o.remove}
		for _, a := range args {
			if !strings.Contains(a, "=") {
				ids = append(ids, a)
				continue
			}
			if req.Tags == nil {
				req.Tags = map[string]string{}
			}
			if err := wire.ParseLabels(a, req.Tags); err != nil {
				return err
			}
		}
		req.IDs = ids
		if len(ids) == 0 && req.Selector == "" || len(ids) > 0 && req.Selector != "" || len(req.Tags) == 0 && len(req.Keys) == 0 {
			break
		}
		return tag(ctx, c, stdout, req)
	}
	return errors.New(devicesUsage)
}

// tag sets and removes tags in two bulk actions: tag, then untag.
func tag(ctx context.Context, c *apiClient, stdout io.Writer, req bulkRequest) error {
	var errs []error
	if len(req.Tags) > 0 {
		set := req
		set.Action, set.Keys = "tag", nil
		errs = append(errs, bulk(ctx, c, stdout, set, "tagged "+labelsString(req.Tags)))
	}
	if len(req.Keys) > 0 {
		untag := req
		untag.Action, untag.Tags = "untag", nil
		errs = append(errs, bulk(ctx, c, stdout, untag, "removed "+strings.Join(req.Keys, ",")))
	}
	return errors.Join(errs...)
}

// bulkRequest is the body of POST /api/v1/devices/bulk.
type bulkRequest struct {
	IDs      []string          `json:"ids,omitempty"`
	Selector string            `json:"selector,omitempty"`
	Action   string            `json:"action"`
	Tags     map[string]string `json:"tags,omitempty"`
	Keys     []string          `json:"keys,omitempty"`
	Version  string            `json:"version,omitempty"`
	Reason   string            `json:"reason,omitempty"`
}

// bulk does req's action and prints a line per device: "ID: done", or
// what stopped it. It fails when the action failed on any device
// (skipped ones are not failures).
func bulk(ctx context.Context, c *apiClient, stdout io.Writer, req bulkRequest, done string) error {
	var res struct {
		Results []struct {
			ID      string
			OK      bool
			Skipped bool
			Error   string
		}
	}
	if err := c.do(ctx, "POST", "/devices/bulk", req, &res); err != nil {
		return err
	}
	failed := 0
	for _, r := range res.Results {
		switch {
		case r.OK:
			fmt.Fprintf(stdout, "%s: %s\n", r.ID, done)
		case r.Skipped:
			fmt.Fprintf(stdout, "%s: skipped: %s\n", r.ID, r.Error)
		default:
			failed++
			fmt.Fprintf(stdout, "%s: %s\n", r.ID, r.Error)
		}
	}
	switch {
	case len(res.Results) == 0:
		return fmt.Errorf("no device matches %s", req.Selector)
	case failed > 0:
		return fmt.Errorf("%s: failed on %d of %d devices", req.Action, failed, len(res.Results))
	}
	return nil
}

// labelsString is labels as "k1=v1,k2=v2", sorted by key.
func labelsString(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// listDevices prints every enrolled device with its enrollment state and,
// once it has reported, whether it is alive, its version, its labels and
// tags (tags marked with a *) and its pin.
func listDevices(ctx context.Context, c *apiClient, stdout io.Writer) error {
	var ens []struct {
		ID, State, Hostname string
		Requested           time.Time
	}
	if err := c.get(ctx, "/enrollments", &ens); err != nil {
		return err
	}
	type device struct {
		ID, Hostname, Version string
		Alive                 bool
		Labels, Tags          map[string]string
		Pin                   *struct{ Version string }
	}
	devices := map[string]device{}
	for cursor, first := "", true; first || cursor != ""; first = false {
		var page struct {
			Devices    []device
			NextCursor string `json:"next_cursor"`
		}
		path := "/devices?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := c.get(ctx, path, &page); err != nil {
			return err
		}
		for _, d := range page.Devices {
			devices[d.ID] = d
		}
		cursor = page.NextCursor
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATE\tALIVE\tVERSION\tLABELS\tPIN\tHOSTNAME\tREQUESTED")
	for _, e := range ens {
		alive, version, labels, pin := "-", "-", "", ""
		if d, ok := devices[e.ID]; ok {
			alive, version = "notAlive", d.Version
			if d.Alive {
				alive = "alive"
			}
			if version == "" {
				version = "none"
			}
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(d.Labels)) {
				if _, tagged := d.Tags[k]; !tagged {
					parts = append(parts, k+"="+d.Labels[k])
				}
			}
			for _, k := range slices.Sorted(maps.Keys(d.Tags)) {
				parts = append(parts, k+"="+d.Tags[k]+"*")
			}
			labels = strings.Join(parts, ",")
			if d.Pin != nil {
				pin = d.Pin.Version
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.State, alive, version, labels, pin, e.Hostname, e.Requested.Local().Format(time.DateTime))
	}
	return w.Flush()
}
