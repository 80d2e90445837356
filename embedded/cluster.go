package embedded

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// clusterOptions sets the route listener and routes of a cluster node.
func (s *Server) clusterOptions(opts *server.Options, c *Cluster) error {
	host := c.Host
	if host == "" {
		host = opts.Host
	}
	port := c.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%w: route %q is not a URL like nats-route://127.0.0.1:6222", ErrInvalidConfig, r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// ClusterURL returns the URL other nodes use as a route to this one
// ("nats-route://127.0.0.1:PORT"), or "" when the server is not clustered.
func (s *Server) ClusterURL() string {
	addr := s.ns.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats-route://" + dialable(addr)
}

// StartCluster starts n nodes of one cluster in this process, each with
// base's configuration (ServerName "<name>-<i>", routes to all the others, a
// random client port unless base sets one per node through
// ConfigureOptions), and waits until every node has joined and knows the
// JetStream meta leader. It is meant for
// tests and demos of clustered deployments: the nodes share the process's
// fate. On failure the nodes already started are shut down.
//
// base.Cluster may be nil (cluster name "enslavism"); its Routes are
// ignored. Route ports are picked among free ports of the route host.
func StartCluster(ctx context.Context, n int, base Config) ([]*Server, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: a cluster of %d nodes", ErrInvalidConfig, n)
	}
	c := Cluster{Name: "enslavism"}
	if base.Cluster != nil {
		c = *base.Cluster
	}
	host := c.Host
	if host == "" {
		host = base.Host
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ports, err := freePorts(host, n)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = "nats-route://" + net.JoinHostPort(host, strconv.Itoa(p))
	}
	name := base.ServerName
	if name == "" {
		name = c.Name
	}
	nodes := make([]*Server, 0, n)
	fail := func(err error) ([]*Server, error) {
		for _, s := range nodes {
			_ = s.Close()
		}
		return nil, err
	}
	for i := range n {
		cfg := base
		nc := c
		nc.Host, nc.Port = host, ports[i]
		nc.Routes = append(append([]string(nil), routes[:i]...), routes[i+1:]...)
		cfg.Cluster = &nc
		cfg.ServerName = fmt.Sprintf("%s-%d", name, i)
		if cfg.StoreDir != "" {
			cfg.StoreDir = filepath.Join(base.StoreDir, cfg.ServerName)
		}
		s, err := Start(ctx, cfg)
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, s)
	}
	for _, s := range nodes {
		for s.ns.NumRoutes() < n-1 || (n > 1 && !s.ns.JetStreamIsCurrent()) {
			select {
			case <-ctx.Done():
				return fail(fmt.Errorf("%w: cluster did not form: %w", ErrStart, ctx.Err()))
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nodes, nil
}

// freePorts returns n distinct ports that were free on host a moment ago.
func freePorts(host string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
