package main

// thinfleet rollout: create, follow and steer rollouts through the
// server's API (/api/v1/rollouts).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// rolloutOptions are "thinfleet rollout"'s: where the server is, and
// the flags of its verbs. Every verb's flags are on the command's one
// flag set, so that they may come before the verb's words, between them
// or after them; a verb refuses the flags of others.
type rolloutOptions struct {
	apiFlags
	create rolloutCreateOptions
	reason string
	json   bool
	status rolloutStatusOptions
}

func rolloutFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := &rolloutOptions{apiFlags: apiFlagsOn(fs)}
	o.create.register(fs)
	fs.StringVar(&o.reason, "reason", "", "pause, resume, abort, rollback: why, in one line; shown with the rollout and kept in the audit log")
	fs.BoolVar(&o.json, "json", false, "list, status: print the server's JSON")
	o.status.register(fs)
	return func(ctx context.Context, e env) error { return runRollout(ctx, fs, o, e) }
}

// verb is one action of a command that takes several (rollout create,
// rollout status, …).
type verb struct {
	name string
	// words names the words the verb takes after it, for its usage;
	// nwords is how many it needs. hint names the flags it needs, if
	// any, for its usage too.
	words  string
	nwords int
	hint   string
	help   string
	// flags are the command's flags the verb takes, besides --api and
	// --data.
	flags []string
	run   func(ctx context.Context, c *apiClient, o *rolloutOptions, e env, words []string) error
}

// rolloutVerbs are "thinfleet rollout"'s, in the order its usage lists them.
var rolloutVerbs = []verb{
	{
		name: "create", words: "ID", nwords: 1, hint: "--version V", run: runRolloutCreate,
		flags: []string{"errors", "group", "max-concurrent", "selector", "success", "version", "waves"},
		help:  "starts rollout ID of --version to the devices --selector or --group chooses (every device when neither), wave by wave: by default a 10% canary, then 50%, then every device; a wave opens the next once --success percent of its devices run the release, and --errors percent of them failing pauses the rollout",
	},
	{
		name: "list", run: runRolloutList, flags: []string{"json"},
		help: "lists the rollouts, newest first, with their state and progress",
	},
	{
		name: "status", words: "ID", nwords: 1, run: runRolloutStatus, flags: []string{"interval", "json", "once"},
		help: "shows a rollout's waves, their counts, its state and the reason it stands there; in a terminal it redraws a progress bar in place until the rollout completes, pauses or ends, or Ctrl-C (which stops watching, not the rollout); otherwise, or with --once, it prints one snapshot",
	},
	{
		name: "pause", words: "ID", nwords: 1, run: rolloutAction("pause"), flags: []string{"reason"},
		help: "offers the release to no further device until resumed",
	},
	{
		name: "resume", words: "ID", nwords: 1, run: rolloutAction("resume"), flags: []string{"reason"},
		help: "lets a paused rollout go on; a wave still past its error threshold pauses it again, unless its release changed",
	},
	{
		name: "abort", words: "ID", nwords: 1, run: rolloutAction("abort"), flags: []string{"reason"},
		help: "stops a rollout for good: nothing more is offered, and devices it has not reached keep their version",
	},
	{
		name: "rollback", words: "ID", nwords: 1, run: rolloutAction("rollback"), flags: []string{"reason"},
		help: "offers every device the rollout moved the version it ran before",
	},
	{
		name: "release", words: "ID VERSION", nwords: 2, run: runRolloutRelease,
		help: "changes the release of a running or paused rollout (a fixed release after a bad one); its waves count the new release afresh",
	},
	{
		name: "delete", words: "ID", nwords: 1, run: runRolloutDelete,
		help: "deletes a rollout that is over: completed, aborted or rolled back",
	},
}

// usage is the verb's words and the flags it needs.
func (v verb) usage() string { return strings.Join(strings.Fields(v.name+" "+v.words+" "+v.hint), " ") }

// verbUsage lists the verbs of a command, for its usage.
func verbUsage(cmd string, verbs []verb) string {
	var b strings.Builder
	for _, v := range verbs {
		fmt.Fprintf(&b, "\n  thinfleet %s %s", cmd, v.usage())
	}
	return b.String()
}

// rolloutHelp is "thinfleet rollout -h"'s text: the verbs and what each
// does.
func rolloutHelp() string {
	var b strings.Builder
	b.WriteString("Creates, follows and steers rollouts: a release to a selection of devices, wave by wave. The admin token comes from THINFLEET_ADMIN_TOKEN or the data folder.\n")
	for _, v := range rolloutVerbs {
		fmt.Fprintf(&b, "\n  %s\n      %s", v.usage(), v.help)
	}
	return b.String()
}

// runRollout runs the verb the words name. The words may still hold
// flags (the command line splits off only those before the first word):
// they are parsed here into the same flag set.
func runRollout(ctx context.Context, fs *flag.FlagSet, o *rolloutOptions, e env) error {
	words, err := parseInterspersed(fs, e.args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // fs printed the usage
	}
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return fmt.Errorf("usage:%s\n(thinfleet rollout -h for the flags)", verbUsage("rollout", rolloutVerbs))
	}
	i := slices.IndexFunc(rolloutVerbs, func(v verb) bool { return v.name == words[0] })
	if i < 0 {
		return fmt.Errorf("thinfleet rollout: no verb %q; one of:%s", words[0], verbUsage("rollout", rolloutVerbs))
	}
	v := rolloutVerbs[i]
	if len(words)-1 != v.nwords {
		return fmt.Errorf("usage: thinfleet rollout %s", v.usage())
	}
	var other []string
	fs.Visit(func(f *flag.Flag) {
		if !slices.Contains(v.flags, f.Name) && !slices.Contains(commonFlags, f.Name) {
			other = append(other, "--"+f.Name)
		}
	})
	if len(other) > 0 {
		return fmt.Errorf("thinfleet rollout %s takes no %s (thinfleet rollout -h)", v.name, strings.Join(other, ", "))
	}
	c, err := o.client(e)
	if err != nil {
		return err
	}
	return v.run(ctx, c, o, e, words[1:])
}

// commonFlags are taken by every verb.
var commonFlags = []string{"api", "data", "log-format", "log-level"}

// parseInterspersed parses args into fs, flags and words in any order
// ("status r1 --once" as "--once status r1"), and returns the words.
// After "--" every argument is a word.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return words, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(words, rest...), nil
		}
		words, args = append(words, rest[0]), rest[1:]
	}
}

// rolloutView is a rollout as the API shows it: its members left out,
// its counts over every wave added.
type rolloutView struct {
	fleet.Rollout
	Counts fleet.WaveCounts `json:"counts"`
}

// rolloutPath is the API path of rollout id, and of one of its actions.
func rolloutPath(id string, action ...string) string {
	return "/rollouts/" + url.PathEscape(id) + strings.Join(append([]string{""}, action...), "/")
}

// rolloutError says in words what the server's refusal of a request on
// rollout id means: 404 that there is no such rollout (or, from a server
// without rollouts, no such API); 409 and 400 carry the server's reason.
// With no id (a request on no one rollout) a 404 keeps its message.
func rolloutError(id string, err error) error {
	var ae *apiError
	switch {
	case !errors.As(err, &ae) || ae.Status != http.StatusNotFound:
		return err
	case strings.HasPrefix(ae.Message, "no API endpoint"):
		return fmt.Errorf("%s: this server has no rollouts (is it older than this thinfleet?)", ae.Message)
	case id == "":
		return err
	}
	return fmt.Errorf("no rollout named %s", id)
}

// rolloutCreateOptions are "thinfleet rollout create"'s.
type rolloutCreateOptions struct {
	version, selector, group, waves string
	success, errors, maxConcurrent  int
}

// register defines create's flags on fs, into o.
func (o *rolloutCreateOptions) register(fs *flag.FlagSet) {
	def := fleet.DefaultWaves()[0]
	fs.StringVar(&o.version, "version", "", "create: the `version` to roll out (required); the rollout waits for its zip when it is not in the catalog yet")
	fs.StringVar(&o.selector, "selector", "", "create: the devices in scope, by label: `k=v[,k2=v2]` (default: every device)")
	fs.StringVar(&o.group, "group", "", "create: the devices in scope: the group `NAME`'s (instead of --selector)")
	fs.StringVar(&o.waves, "waves", "", "create: the waves, cumulative percents, each optionally named, or a selector in brackets: `canary:10,50,100` or canary:[ring=canary],50,100 (default: canary:10,half:50,all:100)")
	fs.IntVar(&o.success, "success", def.SuccessPercent, "create: `percent` of a wave's devices that must run the release for the next wave to open")
	fs.IntVar(&o.errors, "errors", def.ErrorPercent, "create: `percent` of a wave's devices failing that pauses the rollout (0: never)")
	fs.IntVar(&o.maxConcurrent, "max-concurrent", 0, "create: the most installs in progress at once, `N` (0: no bound)")
}

// runRolloutCreate asks the server for the rollout create's flags name.
func runRolloutCreate(ctx context.Context, c *apiClient, o *rolloutOptions, e env, words []string) error {
	spec, err := o.create.spec(words[0])
	if err != nil {
		return err
	}
	var r rolloutView
	if err := c.do(ctx, http.MethodPost, "/rollouts", spec, &r); err != nil {
		return rolloutError("", err)
	}
	fmt.Fprintf(e.stdout, "rollout %s created: %s to %s, in %s\n", r.ID, r.Version, rolloutScope(r.Rollout), waveList(r.Waves))
	fmt.Fprintf(e.stdout, "follow it: thinfleet rollout status %s\n", r.ID)
	return nil
}

// spec is the rollout the options ask for, checked as far as the
// command line can be.
func (o rolloutCreateOptions) spec(id string) (fleet.RolloutSpec, error) {
	spec := fleet.RolloutSpec{ID: id, Version: strings.TrimSpace(o.version), Group: strings.TrimSpace(o.group), MaxConcurrent: o.maxConcurrent}
	if spec.Version == "" {
		return spec, errors.New("--version: name the version to roll out")
	}
	if o.selector != "" && spec.Group != "" {
		return spec, errors.New("--selector and --group: choose the devices one way")
	}
	sel, err := fleet.ParseSelector(o.selector)
	if err != nil {
		return spec, fmt.Errorf("--selector: %w", err)
	}
	spec.Selector = sel
	def := fleet.DefaultWaves()[0]
	switch {
	case o.waves != "":
		if spec.Waves, err = fleet.ParseWaves(o.waves, o.success, o.errors); err != nil {
			return spec, fmt.Errorf("--waves: %w", err)
		}
	case o.success != def.SuccessPercent || o.errors != def.ErrorPercent:
		spec.Waves = fleet.DefaultWaves()
		for i := range spec.Waves {
			spec.Waves[i].SuccessPercent, spec.Waves[i].ErrorPercent = o.success, o.errors
		}
	}
	return spec, nil
}

// rolloutScope says which devices r is for.
func rolloutScope(r fleet.Rollout) string {
	switch {
	case r.Group != "" && !r.Selector.Empty():
		return "group " + r.Group + " and " + r.Selector.String()
	case r.Group != "":
		return "group " + r.Group
	case r.Selector.Empty():
		return "every device"
	}
	return r.Selector.String()
}

// waveSize is how a wave chooses its devices: a percent or a selector.
func waveSize(w fleet.Wave) string {
	if w.Selector != nil {
		return "[" + w.Selector.String() + "]"
	}
	return fmt.Sprintf("%d%%", w.Percent)
}

// waveList names the waves with their sizes: "canary 10%, half 50%, all 100%".
func waveList(ws []fleet.Wave) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.Name + " " + waveSize(w)
	}
	return strings.Join(parts, ", ")
}

// runRolloutList lists the rollouts.
func runRolloutList(ctx context.Context, c *apiClient, o *rolloutOptions, e env, _ []string) error {
	if o.json {
		return rolloutError("", printJSON(ctx, c, "/rollouts", e.stdout))
	}
	var list struct{ Rollouts []rolloutView }
	if err := c.get(ctx, "/rollouts", &list); err != nil {
		return rolloutError("", err)
	}
	if len(list.Rollouts) == 0 {
		fmt.Fprintln(e.stdout, "no rollouts (thinfleet rollout create ID --version V starts one)")
		return nil
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATE\tVERSION\tSCOPE\tWAVE\tSUCCEEDED\tFAILED\tCREATED")
	for _, r := range list.Rollouts {
		n := r.Counts
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\n", r.ID, r.State, r.Version, rolloutScope(r.Rollout),
			openWave(r.Rollout), n.Succeeded, n.Devices, n.Failed, r.Created.Local().Format(time.DateTime))
	}
	return w.Flush()
}

// openWave names r's last open wave and its place: "1/3 canary".
func openWave(r fleet.Rollout) string {
	if r.Wave < 0 || r.Wave >= len(r.Waves) {
		return "-"
	}
	return fmt.Sprintf("%d/%d %s", r.Wave+1, len(r.Waves), r.Waves[r.Wave].Name)
}

// printJSON prints the server's answer to path, indented.
func printJSON(ctx context.Context, c *apiClient, path string, w io.Writer) error {
	var raw json.RawMessage
	if err := c.get(ctx, path, &raw); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := b.WriteTo(w)
	return err
}

// rolloutAction runs pause, resume, abort or rollback.
func rolloutAction(action string) func(context.Context, *apiClient, *rolloutOptions, env, []string) error {
	return func(ctx context.Context, c *apiClient, o *rolloutOptions, e env, words []string) error {
		body := map[string]string{}
		if o.reason != "" {
			body["reason"] = o.reason
		}
		var r rolloutView
		if err := c.do(ctx, http.MethodPost, rolloutPath(words[0], action), body, &r); err != nil {
			return rolloutError(words[0], err)
		}
		printState(e.stdout, r)
		return nil
	}
}

// printState prints the state r is in after an action.
func printState(w io.Writer, r rolloutView) {
	fmt.Fprintf(w, "rollout %s: %s, %s to %s", r.ID, stateWords(r.State), r.Version, rolloutScope(r.Rollout))
	if r.Reason != "" {
		fmt.Fprintf(w, " (%s)", printable(r.Reason))
	}
	fmt.Fprintln(w)
}

// stateWords is a rollout state for people: "rolled back", not
// "rolled_back".
func stateWords(st fleet.RolloutState) string { return strings.ReplaceAll(string(st), "_", " ") }

// runRolloutRelease changes a rollout's release.
func runRolloutRelease(ctx context.Context, c *apiClient, _ *rolloutOptions, e env, words []string) error {
	var r rolloutView
	if err := c.do(ctx, http.MethodPost, rolloutPath(words[0], "release"), map[string]string{"version": words[1]}, &r); err != nil {
		return rolloutError(words[0], err)
	}
	printState(e.stdout, r)
	return nil
}

// runRolloutDelete deletes a rollout that is over.
func runRolloutDelete(ctx context.Context, c *apiClient, _ *rolloutOptions, e env, words []string) error {
	if err := c.do(ctx, http.MethodDelete, rolloutPath(words[0]), nil, nil); err != nil {
		return rolloutError(words[0], err)
	}
	fmt.Fprintf(e.stdout, "rollout %s: deleted\n", words[0])
	return nil
}
