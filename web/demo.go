package web

import (
	"embed"
	"io/fs"
)

//go:embed demo
var demoFiles embed.FS

// Demo returns the files of the demo page (index.html, demo.js, demo.css):
// a live server list with load and latency, a chat over a reliable channel
// and shared moving dots over an unordered, unreliable channel. The
// all-in-one binary serves it at /; it expects the gateway at
// /enslavism/ on the same host and demo slaves (rooms with "chat" and
// "dots" channels).
func Demo() fs.FS {
	sub, err := fs.Sub(demoFiles, "demo")
	if err != nil {
		panic(err) // the directory is embedded: cannot happen
	}
	return sub
}
