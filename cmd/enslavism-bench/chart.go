package main

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// series is one line of a chart.
type series struct {
	name   string
	color  string
	points [][2]float64 // x, y
}

// presenceSeries extracts "start → listed p50/p99, N slaves at once" from
// the results: the scaling curve of presence.
func presenceSeries(results []Result) []series {
	re := regexp.MustCompile(`^start → listed (p50|p99), (\d+) slaves at once$`)
	by := map[string]*series{
		"p50": {name: "p50", color: "#3d7be0"},
		"p99": {name: "p99", color: "#c93c37"},
	}
	for _, r := range results {
		if m := re.FindStringSubmatch(r.Metric); m != nil {
			n, _ := strconv.Atoi(m[2])
			s := by[m[1]]
			s.points = append(s.points, [2]float64{float64(n), r.Ours})
		}
	}
	if len(by["p50"].points) < 2 {
		return nil
	}
	return []series{*by["p50"], *by["p99"]}
}

// writeSVG draws a line chart with a logarithmic x axis.
func writeSVG(w io.Writer, title, xLabel, yLabel string, ss []series) {
	const W, H, left, right, top, bottom = 560.0, 340.0, 60.0, 20.0, 40.0, 50.0
	minX, maxX, maxY := math.Inf(1), 0.0, 0.0
	for _, s := range ss {
		for _, p := range s.points {
			minX, maxX, maxY = math.Min(minX, p[0]), math.Max(maxX, p[0]), math.Max(maxY, p[1])
		}
	}
	if maxX <= minX {
		maxX = minX * 10
	}
	maxY = niceCeil(maxY)
	lx := func(x float64) float64 {
		return left + (math.Log10(x)-math.Log10(minX))/(math.Log10(maxX)-math.Log10(minX))*(W-left-right)
	}
	ly := func(y float64) float64 { return H - bottom - y/maxY*(H-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/><text x="%.0f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left, title)
	for i := 0; i <= 4; i++ { // y grid
		y := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e6e9f0"/><text x="%.1f" y="%.1f" text-anchor="end">%g</text>`+"\n",
			left, W-right, ly(y), ly(y), left-6, ly(y)+4, y)
	}
	for x := math.Pow(10, math.Floor(math.Log10(minX))); x <= maxX*1.001; x *= 10 { // x ticks
		if x < minX*0.999 {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e6e9f0"/><text x="%.1f" y="%.1f" text-anchor="middle">%g</text>`+"\n",
			lx(x), lx(x), top, H-bottom, lx(x), H-bottom+16, x)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (left+W-right)/2, H-12, xLabel)
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (top+H-bottom)/2, yLabel)
	for i, s := range ss {
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", lx(p[0]), ly(p[1])))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", lx(p[0]), ly(p[1]), s.color)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", left+10, top+16*float64(i+1), s.color, s.name)
	}
	b.WriteString("</svg>\n")
	_, _ = io.WriteString(w, b.String())
}

// niceCeil rounds v up to 1, 2 or 5 × a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
