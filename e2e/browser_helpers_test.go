package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// browser is one headless chromium tab for a test, with what the page did
// that it should not have: dialogs opened, exceptions thrown, content
// security policy violations.
type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string

	mu       sync.Mutex
	problems []string
}

// newBrowser starts chromium for t. Without it the test skips, except
// under CI=true, where a missing browser fails the run.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := fmt.Sprintf("no browser at %s (apt-get install -y chromium): %v", chromiumPath, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })

	b := &browser{t: t, ctx: ctx, artifacts: os.Getenv("THINFLEET_ARTIFACTS")}
	if b.artifacts == "" {
		b.artifacts = t.TempDir()
	}
	if err := os.MkdirAll(b.artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s", b.artifacts)

	// Subscribe before the first navigation, so nothing is missed.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.problem("a JavaScript dialog opened: %s %q", ev.Type, ev.Message)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{})
		}
	}()
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			b.problem("an exception in the page: %s", (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		}
	}()
	// Every page records what its content security policy blocked.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__blocked = []; document.addEventListener("securitypolicyviolation",
			function (e) { window.__blocked.push(e.violatedDirective + " " + e.blockedURI); });`,
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) problem(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

// clean fails the test if the page did anything it should not have.
func (b *browser) clean() {
	b.t.Helper()
	blocked, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`window.__blocked || []`))
	if err != nil {
		b.t.Fatalf("read policy violations: %v", err)
	}
	for _, v := range blocked {
		b.problem("the content security policy blocked: %s", v)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Error(p)
	}
	b.problems = nil
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval runs a JavaScript expression and returns its value.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript expression that returns [ok, what it saw]
// until ok, failing after timeout with the last thing seen.
func (b *browser) waitFor(timeout time.Duration, what, expr string) time.Duration {
	b.t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		r, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]any](expr))
		if err == nil && len(r) == 2 {
			if ok, _ := r[0].(bool); ok {
				return time.Since(start)
			}
			last = fmt.Sprint(r[1])
		} else if err != nil {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
	return 0
}

// markPage sets a mark that a reload would wipe out; stillSamePage checks
// it, proving that what changed came in without a reload.
func (b *browser) markPage() {
	b.t.Helper()
	eval[bool](b, `window.__noReload = true`)
}

func (b *browser) stillSamePage(what string) {
	b.t.Helper()
	if !eval[bool](b, `window.__noReload === true`) {
		b.t.Errorf("%s: the page was reloaded", what)
	}
}

// shot saves a screenshot of the whole page as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.artifacts, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// rowsJS is a JavaScript expression for the Clients table: each row as
// "id status version".
const rowsJS = `Array.from(document.querySelectorAll("table.clients tbody tr")).map(function (tr) {
	return [tr.querySelector("td.id").textContent, tr.querySelector("td.status").textContent, tr.querySelector("td.ver").textContent.replace(/\s+/g, " ")].join(" ").trim();
})`

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "<", `\x3c`).Replace(s) + `"`
}
