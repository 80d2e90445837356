package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
)

// The gateway mounted on your own mux, next to your pages: a page includes
// <script src="/enslavism/client.js"></script> and calls
// new MasterConnection().
func ExampleNew() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	srv, err := embedded.Start(ctx, embedded.Config{Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	nc, err := srv.Connect()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	g, err := gateway.New(ctx, nc, gateway.Config{
		ICEServers: []gateway.ICEServer{{URLs: []string{"stun:stun.example.com:3478"}}},
		Logger:     quiet,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close() // or g.Shutdown(ctx) on SIGTERM: browsers reconnect elsewhere

	mux := http.NewServeMux()
	mux.Handle("/enslavism/", g)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<script src="/enslavism/client.js"></script>`)
	})
	web := httptest.NewServer(mux) // http.ListenAndServe(":8081", mux) in a real program
	defer web.Close()

	resp, err := http.Get(web.URL + "/enslavism/client.js")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	js, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	fmt.Println("defines MasterConnection:", strings.Contains(string(js), "global.MasterConnection = MasterConnection"))
	// Output:
	// 200 OK text/javascript; charset=utf-8
	// defines MasterConnection: true
}

// Client authentication from a cookie, like the original's clientauth: the
// identity goes to slaves with each offer; a rejection answers the upgrade
// with its status and reason.
func ExampleReject() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	srv, err := embedded.Start(ctx, embedded.Config{Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	nc, err := srv.Connect()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	g, err := gateway.New(ctx, nc, gateway.Config{
		Logger: quiet,
		ClientAuth: func(r *http.Request) (any, error) {
			c, err := r.Cookie("player")
			if err != nil {
				return nil, gateway.Reject(http.StatusUnauthorized, "log in first")
			}
			return map[string]string{"player": c.Value}, nil // OfferRequest.Identity
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	web := httptest.NewServer(g)
	defer web.Close()
	url := "ws" + strings.TrimPrefix(web.URL, "http") + "/enslavism/clients"

	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("no cookie: %s: %s", resp.Status, body)
	}
	ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Cookie": {"player=alice"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	var hello struct{ Type string }
	_ = ws.ReadJSON(&hello)
	fmt.Println("with a cookie:", hello.Type)
	// Output:
	// no cookie: 401 Unauthorized: log in first
	// with a cookie: hello
}
