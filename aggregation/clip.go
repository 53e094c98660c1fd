package aggregation

import (
	"fmt"
	"math"
)

// L2Norm returns the Euclidean norm of v, accumulated in float64 (so it does not overflow for
// any float32 vector). It is NaN or +Inf if v holds NaN or ±Inf.
func L2Norm(v []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		a, b, c, d := float64(v[i]), float64(v[i+1]), float64(v[i+2]), float64(v[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(v); i++ {
		a := float64(v[i])
		s0 += a * a
	}
	return math.Sqrt((s0 + s1) + (s2 + s3))
}

// ClipNorm scales delta in place so that its L2 norm is at most maxNorm, and returns the factor
// it applied: maxNorm/‖delta‖ if the norm exceeded maxNorm, otherwise 1 and delta is untouched.
// A maxNorm <= 0 or +Inf disables clipping. After clipping the norm equals maxNorm up to
// float32 rounding (relative error below 1e-6).
//
// A delta holding NaN or ±Inf cannot be clipped: ClipNorm leaves it unchanged and returns an
// error wrapping ErrNonFinite, so that a client never encrypts an update the coordinator
// could not inspect. A NaN maxNorm returns an error wrapping ErrParameter.
func ClipNorm(delta []float32, maxNorm float64) (float64, error) {
	if math.IsNaN(maxNorm) {
		return 1, fmt.Errorf("%w: clipping norm is NaN", ErrParameter)
	}
	if j := firstNonFinite(delta); j >= 0 {
		return 1, fmt.Errorf("%w: delta has %v at index %d", ErrNonFinite, delta[j], j)
	}
	if maxNorm <= 0 || math.IsInf(maxNorm, 1) {
		return 1, nil
	}
	norm := L2Norm(delta)
	if norm <= maxNorm {
		return 1, nil
	}
	scale := maxNorm / norm
	for i, x := range delta {
		delta[i] = float32(float64(x) * scale)
	}
	return scale, nil
}
