//go:build !unix

package he

import "time"

func processCPU() time.Duration { return 0 }
