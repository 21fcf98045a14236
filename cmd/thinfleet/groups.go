package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/thinfleet/thinfleet/fleet"
)

// groupsOptions are "thinfleet groups"'s.
type groupsOptions struct {
	apiFlags
	fs       *flag.FlagSet // to learn which flags were given
	selector *string
	channel  *string
	window   *string
}

func groupsFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := groupsOptions{
		apiFlags: apiFlagsOn(fs),
		fs:       fs,
		selector: fs.String("selector", "", "groups set: the group's devices, those whose labels and tags match `k=v,k2=v2` (\"all\": every device)"),
		channel:  fs.String("channel", "", "groups set: the release `channel` the group follows (beta, ...); \"stable\" or \"\" for the default"),
		window:   fs.String("window", "", "groups set: the maintenance window when installs may start, `\"DAYS HH:MM-HH:MM ZONE\"` (\"mon,tue 02:00-04:00 Europe/Berlin\"); \"none\" for always"),
	}
	return func(ctx context.Context, e env) error { return runGroups(ctx, o, e) }
}

const groupsUsage = `usage: thinfleet groups [list]
       thinfleet groups set NAME [--selector k=v,...] [--channel CHANNEL] [--window "mon,tue 02:00-04:00 Europe/Berlin"]
       thinfleet groups delete NAME
A new group needs --selector; "set" on a group changes only what its flags give.`

// runGroups lists, sets or deletes groups through the server's API.
func runGroups(ctx context.Context, o groupsOptions, e env) error {
	c, err := o.client(e)
	if err != nil {
		return err
	}
	args, out := e.args, e.stdout
	verb := "list"
	if len(args) > 0 {
		verb, args = args[0], args[1:]
	}
	switch {
	case verb == "list" && len(args) == 0:
		var res struct{ Groups []groupView }
		if err := c.get(ctx, "/groups", &res); err != nil {
			return err
		}
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tSELECTOR\tDEVICES\tCHANNEL\tPIN\tWINDOW")
		for _, g := range res.Groups {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", g.Name, g.Selector.String(), g.Devices, cmp.Or(g.Channel, fleet.DefaultChannel), pinText(g.Pin), g.windowText())
		}
		return w.Flush()
	case verb == "set" && len(args) == 1:
		g, err := setGroup(ctx, c, o, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "group %s: %s, %s, channel %s", g.Name, g.Selector.String(), plural(g.Devices, "device"), cmp.Or(g.Channel, fleet.DefaultChannel))
		if g.Pin != nil {
			fmt.Fprintf(out, ", pinned to %s", pinText(g.Pin))
		}
		if g.Window != nil {
			fmt.Fprintf(out, ", window %s", g.windowText())
		}
		fmt.Fprintln(out)
		return nil
	case verb == "delete" && len(args) == 1:
		if err := c.do(ctx, "DELETE", "/groups/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "group %s: deleted\n", args[0])
		return nil
	}
	return errors.New(groupsUsage)
}

// setGroup writes group name: the group as it is (none for a new one) with
// what the flags given change.
func setGroup(ctx context.Context, c *apiClient, o groupsOptions, name string) (groupView, error) {
	given := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	g := map[string]any{}
	err := c.get(ctx, "/groups/"+url.PathEscape(name), &g)
	switch {
	case isStatus(err, 404) && !given["selector"]:
		return groupView{}, fmt.Errorf("group %s is new: give its devices with --selector k=v", name)
	case isStatus(err, 404):
	case err != nil:
		return groupView{}, err
	}
	body := groupBody(g)
	if given["selector"] {
		body["selector"] = *o.selector
	}
	if given["channel"] {
		body["channel"] = *o.channel
	}
	if given["window"] {
		delete(body, "window")
		if w := strings.TrimSpace(*o.window); w != "" && w != "none" {
			win, err := fleet.ParseWindow(w)
			if err != nil {
				return groupView{}, fmt.Errorf("--window: %w", err)
			}
			body["window"] = win
		}
	}
	var res groupView
	return res, c.do(ctx, "PUT", "/groups/"+url.PathEscape(name), body, &res)
}

func (g groupView) windowText() string {
	if g.Window == nil {
		return "-"
	}
	return g.Window.String()
}
