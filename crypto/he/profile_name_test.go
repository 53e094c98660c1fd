package he

import (
	"errors"
	"testing"
)

func TestProfileByName(t *testing.T) {
	for name, want := range map[string]string{"": "default", "default": "default", "compact": "compact"} {
		p, err := ProfileByName(name)
		if err != nil || p.Name != want {
			t.Errorf("ProfileByName(%q) = %q, %v; want %q", name, p.Name, err, want)
		}
	}
	if _, err := ProfileByName("fast"); !errors.Is(err, ErrInvalidProfile) {
		t.Errorf("ProfileByName(\"fast\") error %v, want ErrInvalidProfile", err)
	}
}

func TestFitToRange(t *testing.T) {
	p, err := NewParams(CompactProfile()) // MaxAbs 1
	if err != nil {
		t.Fatal(err)
	}
	in := []float32{0.5, -0.25}
	if f := p.FitToRange(in); f != 1 || in[0] != 0.5 || in[1] != -0.25 {
		t.Errorf("values within range: factor %v, values %v; want 1 and unchanged", f, in)
	}
	big := []float32{4, -2, 1}
	f := p.FitToRange(big)
	if f >= 0.25 || f < 0.2499 {
		t.Errorf("factor %v, want just under 0.25", f)
	}
	for _, v := range big {
		if v > 1 || v < -1 {
			t.Errorf("value %v outside [-1, 1] after FitToRange", v)
		}
	}
}
