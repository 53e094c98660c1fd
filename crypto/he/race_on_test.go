//go:build race

package he

// raceEnabled shrinks the acceptance scenarios under the race detector, which
// slows lattigo's arithmetic about tenfold.
const raceEnabled = true
