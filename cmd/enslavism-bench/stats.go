package main

import (
	"encoding/json"
	"slices"
	"time"
)

// quantile returns the q-quantile (0..1) of ds, in milliseconds.
func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return float64(s[i]) / float64(time.Millisecond)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
