package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// pinOptions are "thinfleet pin"'s.
type pinOptions struct {
	apiFlags
	reason *string
	group  *string
	remove *bool
}

func pinFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := pinOptions{
		apiFlags: apiFlagsOn(fs),
		reason:   fs.String("reason", "", "why, in a few words, shown with the pin on the dashboard and in the audit log"),
		group:    fs.String("group", "", "pin every device of this `group` instead of one device"),
		remove:   fs.Bool("remove", false, "remove the pin of the device (or of --group)"),
	}
	return func(ctx context.Context, e env) error { return runPin(ctx, o, e) }
}

const pinUsage = `usage: thinfleet pin                               list the pins
       thinfleet pin DEVICE VERSION [--reason R]     pin a device
       thinfleet pin --remove DEVICE
       thinfleet pin --group GROUP VERSION [--reason R]
       thinfleet pin --group GROUP --remove`

// pinText is a pin in a few words: "1.2.0 (why)", "-" for none.
func pinText(p *fleet.Pin) string {
	switch {
	case p == nil:
		return "-"
	case p.Reason == "":
		return p.Version
	}
	return fmt.Sprintf("%s (%s)", p.Version, p.Reason)
}

// runPin pins a device or a group to a version, removes a pin, or lists
// the pins.
func runPin(ctx context.Context, o pinOptions, e env) error {
	c, err := o.client(e)
	if err != nil {
		return err
	}
	args, out := e.args, e.stdout
	switch {
	case *o.group != "" && *o.remove && len(args) == 0:
		g, err := pinGroup(ctx, c, *o.group, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "group %s: not pinned (%s)\n", g.Name, plural(g.Devices, "device"))
		return nil
	case *o.group != "" && !*o.remove && len(args) == 1:
		g, err := pinGroup(ctx, c, *o.group, map[string]string{"version": args[0], "reason": *o.reason})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "group %s: pinned to %s (%s)\n", g.Name, pinText(g.Pin), plural(g.Devices, "device"))
		return nil
	case *o.group != "":
	case *o.remove && len(args) == 1:
		var d struct{ ID string }
		if err := c.do(ctx, "DELETE", "/devices/"+url.PathEscape(args[0])+"/pin", nil, &d); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: not pinned\n", d.ID)
		return nil
	case !*o.remove && len(args) == 2:
		var d fleet.Device
		body := map[string]string{"version": args[1], "reason": *o.reason}
		if err := c.do(ctx, "PUT", "/devices/"+url.PathEscape(args[0])+"/pin", body, &d); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: pinned to %s\n", d.ID, pinText(d.Pin))
		return nil
	case !*o.remove && len(args) == 0:
		return listPins(ctx, c, e)
	}
	return errors.New(pinUsage)
}

// groupView is a group as the API shows it.
type groupView struct {
	fleet.Group
	Devices int `json:"devices"`
}

// pinGroup sets the pin of group name (removes it when p is nil), leaving
// the rest of the group as it is.
func pinGroup(ctx context.Context, c *apiClient, name string, p map[string]string) (groupView, error) {
	var g map[string]any
	if err := c.get(ctx, "/groups/"+url.PathEscape(name), &g); err != nil {
		return groupView{}, err
	}
	delete(g, "pin")
	if p != nil {
		g["pin"] = p
	}
	var res groupView
	return res, c.do(ctx, "PUT", "/groups/"+url.PathEscape(name), groupBody(g), &res)
}

// groupBody is the body of a PUT of group g as GET answered it: what a
// PUT takes of it.
func groupBody(g map[string]any) map[string]any {
	body := map[string]any{}
	for _, k := range []string{"selector", "channel", "pin", "window"} {
		if v, ok := g[k]; ok && v != nil {
			body[k] = v
		}
	}
	if p, ok := body["pin"].(map[string]any); ok {
		body["pin"] = map[string]any{"version": p["version"], "reason": p["reason"]}
	}
	return body
}

// listPins prints every pinned device and group.
func listPins(ctx context.Context, c *apiClient, e env) error {
	var devices []fleet.Device
	if err := c.get(ctx, "/devices", &devices); err != nil {
		return err
	}
	var groups struct{ Groups []groupView }
	if err := c.get(ctx, "/groups", &groups); err != nil {
		return err
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PINNED\tVERSION\tREASON\tBY\tSINCE")
	for _, g := range groups.Groups {
		if g.Pin != nil {
			fmt.Fprintf(w, "group %s (%s)\t%s\t%s\t%s\t%s\n", g.Name, plural(g.Devices, "device"), g.Pin.Version, g.Pin.Reason, g.Pin.By, g.Pin.Time.Local().Format(time.DateTime))
		}
	}
	for _, d := range devices {
		if d.Pin != nil {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.Pin.Version, d.Pin.Reason, d.Pin.By, d.Pin.Time.Local().Format(time.DateTime))
		}
	}
	return w.Flush()
}

// plural is "1 device", "2 devices".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
