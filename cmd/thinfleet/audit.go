package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/thinfleet/thinfleet/fleet"
)

// auditOptions are "thinfleet audit"'s.
type auditOptions struct {
	apiFlags
	limit          int
	before         uint64
	action, target string
	json           bool
}

func auditFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := auditOptions{apiFlags: apiFlagsOn(fs)}
	fs.IntVar(&o.limit, "limit", 50, "the most entries to print, `1 to 1000`")
	fs.Uint64Var(&o.before, "before", 0, "print entries older than this `seq` (the one the last page names)")
	fs.StringVar(&o.action, "action", "", "only actions that start with this: rollout. or device.pin")
	fs.StringVar(&o.target, "target", "", "only actions on this device, group or rollout")
	fs.BoolVar(&o.json, "json", false, "print the server's JSON")
	return func(ctx context.Context, e env) error { return runAudit(ctx, o, e) }
}

// runAudit prints the audit log, newest first.
func runAudit(ctx context.Context, o auditOptions, e env) error {
	if o.limit < 1 || o.limit > 1000 {
		return fmt.Errorf("--limit %d: want 1 to 1000", o.limit)
	}
	c, err := o.client(e)
	if err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(o.limit)}}
	if o.before != 0 {
		q.Set("before", strconv.FormatUint(o.before, 10))
	}
	if o.action != "" {
		q.Set("action", o.action)
	}
	if o.target != "" {
		q.Set("target", o.target)
	}
	path := "/audit?" + q.Encode()
	if o.json {
		return printJSON(ctx, c, path, e.stdout)
	}
	var log struct {
		Entries []fleet.AuditEntry
		Next    uint64
	}
	if err := c.get(ctx, path, &log); err != nil {
		return err
	}
	switch {
	case len(log.Entries) == 0 && (o.action != "" || o.target != "" || o.before != 0):
		fmt.Fprintln(e.stdout, "no action matches")
	case len(log.Entries) == 0:
		fmt.Fprintln(e.stdout, "no actions recorded")
	default:
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SEQ\tTIME\tACTION\tTARGET\tWHO\tDETAIL")
		for _, a := range log.Entries {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", a.Seq, a.Time.Local().Format(time.DateTime),
				printable(a.Action), orDash(printable(a.Target)), printable(a.Who), printable(a.Detail))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if log.Next != 0 {
		more := ""
		if o.action != "" {
			more += " --action " + strconv.Quote(o.action)
		}
		if o.target != "" {
			more += " --target " + strconv.Quote(o.target)
		}
		fmt.Fprintf(e.stdout, "older: thinfleet audit%s --before %d\n", more, log.Next)
	}
	return nil
}

// printable is s with its control characters shown as "?": text from
// the server never moves a terminal's cursor or changes its colours.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return '?'
		}
		return r
	}, s)
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
