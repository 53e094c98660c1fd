package simulations

import (
	"math"
	"testing"
)

// TestCoordinatorNoise: a simulation accounts its privacy with the noise multiplier the
// coordinator sees, as the coordinator does: z in secure mode, z/sqrt(min-clients) in
// plaintext mode, where each update carries only its own share of the noise.
func TestCoordinatorNoise(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want float64
	}{
		{Config{DPNoiseMultiplier: 1.5, Secure: true, MinClients: 4}, 1.5},
		{Config{DPNoiseMultiplier: 1.5, MinClients: 4}, 0.75},
		{Config{DPNoiseMultiplier: 1.5, MinClients: 1}, 1.5},
	} {
		if got := c.cfg.coordinatorNoise(); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v: %v, want %v", c.cfg, got, c.want)
		}
	}
}
