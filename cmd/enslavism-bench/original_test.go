package main

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestOriginalPage checks the page of the "original" scenario without
// Node.js: the library URL is escaped, the default is the server's own.
func TestOriginalPage(t *testing.T) {
	for _, c := range []struct{ query, want string }{
		{"", `<script src="/enslavism/client.js">`},
		{"?lib=http://127.0.0.1:1/enslavism/client.js", `<script src="http://127.0.0.1:1/enslavism/client.js">`},
		{`?lib="><script>`, `<script src="&#34;&gt;&lt;script&gt;">`},
	} {
		w := httptest.NewRecorder()
		serveOriginalPage(w, httptest.NewRequest("GET", "/bench-original.html"+c.query, nil))
		if body := w.Body.String(); !strings.Contains(body, c.want) || !strings.Contains(body, "async function sample(") {
			t.Errorf("%q: page lacks %s:\n%.300s", c.query, c.want, body)
		}
	}
}
