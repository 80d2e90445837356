package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/enslavism/enslavism/internal/browsertest"
)

// TestDemoPage opens the demo page in headless Chromium as a new user would:
// the server list fills, a click joins a room, a chat message comes back
// through the slave, the dots channel and the latency probe work, and the
// room's player count reaches the list. It leaves a screenshot in a temp
// dir (or in $ENSLAVISM_SCREENSHOT_DIR when set).
func TestDemoPage(t *testing.T) {
	browsertest.Find(t)
	base, stop := startRun(t, "-addr", "127.0.0.1:0", "-nats-addr", "127.0.0.1:0", "-demo", "2", "-log-level", "warn")
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	b := browsertest.New(t, base+"/", chromedp.WindowSize(1100, 760))
	wait := func(what, expr string) {
		t.Helper()
		if err := b.Poll(15*time.Second, expr); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	wait("two servers listed", `document.querySelectorAll('#servers tbody tr').length === 2`)
	wait("gateway status", `document.querySelector('#gateway-status').classList.contains('ok')`)

	b.Do(10*time.Second, chromedp.Click(`#servers tbody tr[data-slave-id="demo-1"] .join`))
	wait("joined the room", `document.querySelector('#servers tbody tr[data-slave-id="demo-1"] .join').textContent === 'Leave'`)
	b.Do(10*time.Second,
		chromedp.SendKeys(`#chat-input`, "hello from chromium"),
		chromedp.Click(`#chat-send`),
	)
	wait("the chat message back from the slave", `[...document.querySelectorAll('#chat-log div')].some(d => d.querySelector('b') && d.textContent.endsWith('hello from chromium'))`)
	wait("a latency figure", `/\d ms$/.test(document.querySelector('#servers tbody tr[data-slave-id="demo-1"] .latency').textContent)`)
	wait("the player count updated to 1/8", `document.querySelector('#servers tbody tr[data-slave-id="demo-1"] .count').textContent === '1/8'`)

	// Move over the canvas: our own dot comes back over the unreliable channel.
	browsertest.Eval[bool](b, 5*time.Second, `(() => {
		const c = document.querySelector('#dots'), r = c.getBoundingClientRect();
		for (let i = 0; i < 5; i++) c.dispatchEvent(new PointerEvent('pointermove', {clientX: r.left + r.width * (0.3 + i / 20), clientY: r.top + r.height / 2, bubbles: true}));
		return true;
	})()`)

	dir := os.Getenv("ENSLAVISM_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "demo.png")
	time.Sleep(300 * time.Millisecond) // let a dots frame arrive and render
	b.Screenshot(shot)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, st.Size())
	}
	t.Logf("screenshot: %s", shot)

	// Leaving frees the slot.
	b.Do(10*time.Second, chromedp.Click(`#servers tbody tr[data-slave-id="demo-1"] .join`))
	wait("the player count back to 0/8", `document.querySelector('#servers tbody tr[data-slave-id="demo-1"] .count').textContent === '0/8'`)

	// Pick best: pings the least loaded rooms and joins the fastest.
	b.Do(10*time.Second, chromedp.Click(`#pick-best`))
	wait("joined the picked room", `document.querySelector('#pick-status').textContent.startsWith('picked ') &&
		[...document.querySelectorAll('#servers tbody tr .join')].some(b => b.textContent === 'Leave')`)
	wait("its latency from ping()", `[...document.querySelectorAll('#servers tbody tr')].some(tr => /\d ms$/.test(tr.querySelector('.latency').textContent))`)
	browsertest.Eval[bool](b, 5*time.Second, `([...document.querySelectorAll('#servers tbody tr .join')].find(b => b.textContent === 'Leave').click(), true)`)
	wait("left the room", `[...document.querySelectorAll('#servers tbody tr .count')].every(c => c.textContent === '0/8')`)
}
