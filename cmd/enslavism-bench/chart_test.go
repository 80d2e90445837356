package main

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

func TestPresenceChart(t *testing.T) {
	var results []Result
	for _, n := range []string{"1", "100", "1000"} {
		results = append(results,
			Result{Scenario: "presence", Metric: "start → listed p50, " + n + " slaves at once", Ours: 1},
			Result{Scenario: "presence", Metric: "start → listed p99, " + n + " slaves at once", Ours: 2})
	}
	ss := presenceSeries(results)
	if len(ss) != 2 || len(ss[0].points) != 3 || ss[0].points[2] != [2]float64{1000, 1} || ss[1].points[0] != [2]float64{1, 2} {
		t.Fatalf("series %+v", ss)
	}
	var b bytes.Buffer
	writeSVG(&b, "t", "x", "y", ss)
	d := xml.NewDecoder(&b)
	lines := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("invalid SVG: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
			for _, a := range se.Attr {
				if a.Name.Local == "points" && strings.Count(a.Value, ",") != 3 {
					t.Errorf("polyline points %q", a.Value)
				}
			}
		}
	}
	if lines != 2 {
		t.Errorf("%d polylines, want 2", lines)
	}
	if presenceSeries(results[:2]) != nil {
		t.Error("a single point made a curve")
	}
	if niceCeil(20.4) != 50 || niceCeil(3) != 5 || niceCeil(0) != 1 {
		t.Error("niceCeil")
	}
}
