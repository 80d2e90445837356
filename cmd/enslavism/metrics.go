package main

import (
	"net/http"
	"time"

	"github.com/enslavism/enslavism/gateway"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics exports the gateway's state in the Prometheus format.
type metrics struct {
	reg     *prometheus.Registry
	offers  *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// newMetrics creates the registry and hooks the offer outcomes into cfg.
func newMetrics(cfg *gateway.Config) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "enslavism", Subsystem: "gateway", Name: "offers_total",
			Help: "Offers relayed to slaves, by outcome (answered, rejected, no_such_slave, timeout, error, cancelled).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "enslavism", Subsystem: "gateway", Name: "signaling_seconds",
			Help:    "Time from a browser's offer to the slave's reply, by outcome.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
	}
	m.reg.MustRegister(m.offers, m.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prev := cfg.OnOffer
	cfg.OnOffer = func(r gateway.OfferResult) {
		m.offers.WithLabelValues(r.Outcome).Inc()
		m.latency.WithLabelValues(r.Outcome).Observe(r.Latency.Seconds())
		if prev != nil {
			prev(r)
		}
	}
	return m
}

// register exports g's counters, read at each scrape.
func (m *metrics) register(g *gateway.Gateway) {
	m.reg.MustRegister(&statsCollector{g: g})
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Timeout: 5 * time.Second})
}

var (
	descBrowsers = prometheus.NewDesc("enslavism_gateway_browsers", "Browsers connected now.", nil, nil)
	descSlaves   = prometheus.NewDesc("enslavism_gateway_slaves", "Slaves listed now.", nil, nil)
	descSessions = prometheus.NewDesc("enslavism_gateway_sessions", "Sessions in the signaling window now.", nil, nil)
	descAccepted = prometheus.NewDesc("enslavism_gateway_connections_accepted_total", "Browser connections accepted.", nil, nil)
	descRefused  = prometheus.NewDesc("enslavism_gateway_connections_refused_total", "Browser upgrade requests refused (origin, auth, limits, shutdown).", nil, nil)
	descSlow     = prometheus.NewDesc("enslavism_gateway_slow_consumers_total", "Browsers dropped because they did not read fast enough.", nil, nil)
	descAbusive  = prometheus.NewDesc("enslavism_gateway_abusive_total", "Browsers closed for oversized frames or floods.", nil, nil)
	descWatchUp  = prometheus.NewDesc("enslavism_gateway_presence_watch_up", "1 when the presence watch and the NATS connection are healthy.", nil, nil)
)

// statsCollector reads gateway.Stats at scrape time.
type statsCollector struct{ g *gateway.Gateway }

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBrowsers, descSlaves, descSessions, descAccepted, descRefused, descSlow, descAbusive, descWatchUp} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.g.Stats()
	up := 0.0
	if c.g.Healthy() == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descBrowsers, prometheus.GaugeValue, float64(st.Connections))
	ch <- prometheus.MustNewConstMetric(descSlaves, prometheus.GaugeValue, float64(st.Slaves))
	ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(st.Sessions))
	ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(st.Accepted))
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.Refused))
	ch <- prometheus.MustNewConstMetric(descSlow, prometheus.CounterValue, float64(st.SlowConsumers))
	ch <- prometheus.MustNewConstMetric(descAbusive, prometheus.CounterValue, float64(st.Abusive))
	ch <- prometheus.MustNewConstMetric(descWatchUp, prometheus.GaugeValue, up)
}
