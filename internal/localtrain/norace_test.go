//go:build !race

package localtrain

const raceEnabled = false
