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

// rolloutOptions are "thinfleet rollout"'s: where the server is. Each
// verb (create, status, …) has its own flags besides, on a flag set of
// its own that shares --api and --data, so that they may come before the
// verb or after it.
type rolloutOptions struct {
	apiFlags
	shared *flag.FlagSet
}

func rolloutFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := rolloutOptions{apiFlags: apiFlagsOn(fs), shared: fs}
	return func(ctx context.Context, e env) error {
		return runVerb(ctx, "rollout", rolloutVerbs, o.apiFlags, o.shared, e)
	}
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
	// flags registers the verb's own flags on fs and returns the verb,
	// to run once they are parsed, with its words.
	flags func(fs *flag.FlagSet) func(ctx context.Context, c *apiClient, e env, words []string) error
}

// rolloutVerbs are "thinfleet rollout"'s, in the order its usage lists them.
var rolloutVerbs = []verb{
	{
		name: "create", words: "ID", nwords: 1, hint: "--version V", flags: rolloutCreateFlags,
		help: "Creates rollout ID of --version to the devices --selector or --group chooses (every device when neither), wave by wave: by default a 10% canary, then 50%, then every device; a wave opens the next once --success percent of its devices run the release, and --errors percent of them failing pauses the rollout.",
	},
	{
		name:  "list",
		flags: rolloutListFlags,
		help:  "Lists the rollouts, newest first, with their state and progress.",
	},
	{
		name:  "status",
		words: "ID", nwords: 1, flags: rolloutStatusFlags,
		help: "Shows a rollout's waves, their counts, its state and the reason it stands there. In a terminal it redraws a progress bar in place until the rollout completes, pauses or ends, or Ctrl-C (which stops watching, not the rollout); otherwise, or with --once, it prints one snapshot.",
	},
	{
		name:  "pause",
		words: "ID", nwords: 1, flags: rolloutActionFlags("pause"),
		help: "Pauses a running rollout: it offers its release to no further device until resumed.",
	},
	{
		name:  "resume",
		words: "ID", nwords: 1, flags: rolloutActionFlags("resume"),
		help: "Lets a paused rollout go on. A wave still past its error threshold pauses it again, unless its release changed (rollout release).",
	},
	{
		name:  "abort",
		words: "ID", nwords: 1, flags: rolloutActionFlags("abort"),
		help: "Stops a rollout for good: nothing more is offered, and devices it has not reached keep their version.",
	},
	{
		name:  "rollback",
		words: "ID", nwords: 1, flags: rolloutActionFlags("rollback"),
		help: "Offers every device the rollout moved the version it ran before.",
	},
	{
		name:  "release",
		words: "ID VERSION", nwords: 2, flags: rolloutReleaseFlags,
		help: "Changes the release of a running or paused rollout (a fixed release after a bad one); its waves count the new release afresh.",
	},
	{
		name:  "delete",
		words: "ID", nwords: 1, flags: rolloutDeleteFlags,
		help: "Deletes a rollout that is over: completed, aborted or rolled back.",
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

// runVerb runs the verb e.args names, with its own flag set: its flags
// and the command's shared --api and --data, given before its words,
// between them or after them.
func runVerb(ctx context.Context, cmd string, verbs []verb, api apiFlags, shared *flag.FlagSet, e env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("usage:%s\n(thinfleet %s VERB -h for a verb's flags)", verbUsage(cmd, verbs), cmd)
	}
	name := e.args[0]
	i := slices.IndexFunc(verbs, func(v verb) bool { return v.name == name })
	if i < 0 {
		return fmt.Errorf("thinfleet %s: no verb %q; one of:%s", cmd, name, verbUsage(cmd, verbs))
	}
	v := verbs[i]
	fs := flag.NewFlagSet("thinfleet "+cmd+" "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // its errors are returned; -h is printed below
	for _, n := range []string{"api", "data"} {
		f := shared.Lookup(n)
		fs.Var(f.Value, f.Name, f.Usage)
	}
	runV := v.flags(fs)
	usage := "thinfleet " + cmd + " " + v.usage() + " [flags]"
	words, err := parseInterspersed(fs, e.args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(e.stdout, "Usage: %s\n\n%s\n\nFlags:\n", usage, v.help)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (usage: %s; -h for its flags)", err, usage)
	}
	if len(words) != v.nwords {
		return fmt.Errorf("usage: %s", usage)
	}
	c, err := api.client(e)
	if err != nil {
		return err
	}
	return runV(ctx, c, e, words)
}

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
	fs.StringVar(&o.version, "version", "", "the `version` to roll out (required); the rollout waits for its zip when it is not in the catalog yet")
	fs.StringVar(&o.selector, "selector", "", "the devices in scope, by label: `k=v[,k2=v2]` (default: every device)")
	fs.StringVar(&o.group, "group", "", "the devices in scope: the group `NAME`'s (instead of --selector)")
	fs.StringVar(&o.waves, "waves", "", "the waves, cumulative percents, each optionally named, or a selector in brackets: `canary:10,50,100` or canary:[ring=canary],50,100 (default: canary:10,half:50,all:100)")
	fs.IntVar(&o.success, "success", def.SuccessPercent, "`percent` of a wave's devices that must run the release for the next wave to open")
	fs.IntVar(&o.errors, "errors", def.ErrorPercent, "`percent` of a wave's devices failing that pauses the rollout (0: never)")
	fs.IntVar(&o.maxConcurrent, "max-concurrent", 0, "the most installs in progress at once, `N` (0: no bound)")
}

func rolloutCreateFlags(fs *flag.FlagSet) func(context.Context, *apiClient, env, []string) error {
	var o rolloutCreateOptions
	o.register(fs)
	return func(ctx context.Context, c *apiClient, e env, words []string) error {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		spec, err := o.spec(words[0], given)
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
}

// spec is the rollout the options ask for, checked as far as the
// command line can be.
func (o rolloutCreateOptions) spec(id string, given map[string]bool) (fleet.RolloutSpec, error) {
	spec := fleet.RolloutSpec{ID: id, Version: strings.TrimSpace(o.version), Group: strings.TrimSpace(o.group), MaxConcurrent: o.maxConcurrent}
	if spec.Version == "" {
		return spec, errors.New("--version: name the version to roll out")
	}
	if given["selector"] && given["group"] {
		return spec, errors.New("--selector and --group: choose the devices one way")
	}
	sel, err := fleet.ParseSelector(o.selector)
	if err != nil {
		return spec, fmt.Errorf("--selector: %w", err)
	}
	spec.Selector = sel
	switch {
	case o.waves != "":
		if spec.Waves, err = fleet.ParseWaves(o.waves, o.success, o.errors); err != nil {
			return spec, fmt.Errorf("--waves: %w", err)
		}
	case given["success"] || given["errors"]:
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

func rolloutListFlags(fs *flag.FlagSet) func(context.Context, *apiClient, env, []string) error {
	asJSON := fs.Bool("json", false, "print the server's JSON")
	return func(ctx context.Context, c *apiClient, e env, _ []string) error {
		if *asJSON {
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

// rolloutActionFlags are the flags of pause, resume, abort and rollback.
func rolloutActionFlags(action string) func(fs *flag.FlagSet) func(context.Context, *apiClient, env, []string) error {
	return func(fs *flag.FlagSet) func(context.Context, *apiClient, env, []string) error {
		reason := fs.String("reason", "", "why, in one line: shown with the rollout and kept in the audit log")
		return func(ctx context.Context, c *apiClient, e env, words []string) error {
			body := map[string]string{}
			if *reason != "" {
				body["reason"] = *reason
			}
			var r rolloutView
			if err := c.do(ctx, http.MethodPost, rolloutPath(words[0], action), body, &r); err != nil {
				return rolloutError(words[0], err)
			}
			printState(e.stdout, r)
			return nil
		}
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

func rolloutReleaseFlags(fs *flag.FlagSet) func(context.Context, *apiClient, env, []string) error {
	return func(ctx context.Context, c *apiClient, e env, words []string) error {
		var r rolloutView
		if err := c.do(ctx, http.MethodPost, rolloutPath(words[0], "release"), map[string]string{"version": words[1]}, &r); err != nil {
			return rolloutError(words[0], err)
		}
		printState(e.stdout, r)
		return nil
	}
}

func rolloutDeleteFlags(fs *flag.FlagSet) func(context.Context, *apiClient, env, []string) error {
	return func(ctx context.Context, c *apiClient, e env, words []string) error {
		if err := c.do(ctx, http.MethodDelete, rolloutPath(words[0]), nil, nil); err != nil {
			return rolloutError(words[0], err)
		}
		fmt.Fprintf(e.stdout, "rollout %s: deleted\n", words[0])
		return nil
	}
}
