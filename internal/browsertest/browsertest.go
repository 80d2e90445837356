// Package browsertest drives a real headless Chromium for the project's
// end-to-end tests, with the flags that connect WebRTC on a loopback-only
// machine and send nothing off it.
//
// Without a Chromium binary the test is skipped with the command that
// installs it; when the CI environment variable is set it fails instead, so
// that CI always runs the browser tests.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// InstallHint is the command that installs Chromium on Debian.
const InstallHint = "apt-get install -y chromium"

// Find returns the path of a Chromium or Chrome binary. Without one the test
// is skipped, or fails when the CI environment variable is set.
func Find(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("headless Chromium not found (CI is set, so this fails instead of skipping); install it with: " + InstallHint)
	}
	t.Skip("headless Chromium not found; install it with: " + InstallHint)
	return ""
}

// Flags are the Chromium flags of the browser tests (FIELD-NOTES.md): no
// sandbox (root in CI), loopback WebRTC with real host candidates, no
// background traffic, every host name but 127.0.0.1 unresolvable.
func Flags(userDataDir string, extra ...chromedp.ExecAllocatorOption) []chromedp.ExecAllocatorOption {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(userDataDir),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
	}
	return append(opts, extra...)
}

// Browser is one headless Chromium tab.
type Browser struct {
	t   testing.TB
	ctx context.Context

	mu   sync.Mutex
	logs []string // console output and exceptions of the page
}

// New starts headless Chromium and opens url; the test's cleanup stops it.
// extra options are added to Flags (a window size, a field trial...).
func New(t testing.TB, url string, extra ...chromedp.ExecAllocatorOption) *Browser {
	t.Helper()
	path := Find(t)
	opts := append(Flags(t.TempDir(), extra...), chromedp.ExecPath(path))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	b := &Browser{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, b.onEvent); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(runCtx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigating to %s: %v", url, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b.DumpLogs()
		}
	})
	return b
}

// Use makes t the test that failures are reported to, for a browser shared
// by the subtests of a test. Subtests using it must not run in parallel.
func (b *Browser) Use(t testing.TB) { b.t = t }

// Context returns the tab's context, for chromedp actions of your own.
func (b *Browser) Context() context.Context { return b.ctx }

func (b *Browser) onEvent(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		parts := make([]string, len(ev.Args))
		for i, a := range ev.Args {
			parts[i] = string(a.Value)
			if a.Value == nil {
				parts[i] = a.Description
			}
		}
		line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		line = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			line += " " + ev.ExceptionDetails.Exception.Description
		}
	default:
		return
	}
	b.mu.Lock()
	b.logs = append(b.logs, line)
	b.mu.Unlock()
}

// DumpLogs logs the page's console output and exceptions so far, and
// forgets them.
func (b *Browser) DumpLogs() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.logs {
		b.t.Log("page " + l)
	}
	b.logs = nil
}

// Do runs chromedp actions on the tab within timeout, failing the test on
// error.
func (b *Browser) Do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.DumpLogs()
		b.t.Fatalf("browser: %v", err)
	}
}

// Eval evaluates expr in the page, awaiting a promise, within timeout, and
// fails the test on error.
func Eval[T any](b *Browser, timeout time.Duration, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.DumpLogs()
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// Poll waits until expr is truthy in the page, checking every 20 ms, and
// returns an error when timeout passes first.
func (b *Browser) Poll(timeout time.Duration, expr string) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(20*time.Millisecond)))
	return err
}

// Screenshot writes a PNG of the whole page to path (quality 100 makes
// chromedp capture PNG rather than JPEG).
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
