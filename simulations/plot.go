package simulations

import (
	"image/color"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotAccuracyLoss draws test accuracy and loss per round, side by side.
func plotAccuracyLoss(path string, rounds []RoundMetrics) error {
	acc, loss := make(plotter.XYs, len(rounds)), make(plotter.XYs, len(rounds))
	for i, m := range rounds {
		acc[i] = plotter.XY{X: float64(m.Round), Y: m.Accuracy}
		loss[i] = plotter.XY{X: float64(m.Round), Y: m.Loss}
	}
	pa := plot.New()
	pa.Title.Text = "Test accuracy per round"
	pa.X.Label.Text = "round"
	pa.Y.Label.Text = "accuracy"
	if err := plotutil.AddLinePoints(pa, "accuracy", acc); err != nil {
		return err
	}
	pl := plot.New()
	pl.Title.Text = "Test loss per round"
	pl.X.Label.Text = "round"
	pl.Y.Label.Text = "loss"
	if err := plotutil.AddLinePoints(pl, "loss", loss); err != nil {
		return err
	}
	for _, p := range []*plot.Plot{pa, pl} {
		p.X.Tick.Marker = roundTicks{}
		p.Add(plotter.NewGrid())
	}
	return saveRow(path, pa, pl)
}

// plotTimeSplit draws the time split per round as stacked bars.
func plotTimeSplit(path string, rounds []RoundMetrics) error {
	p := plot.New()
	p.Title.Text = "Time split per round (train and encrypt summed over hospitals)"
	p.X.Label.Text = "round"
	p.Y.Label.Text = "seconds"
	parts := []struct {
		name string
		get  func(RoundMetrics) float64
		c    color.Color
	}{
		{"train", func(m RoundMetrics) float64 { return m.Train }, color.RGBA{0x1f, 0x77, 0xb4, 0xff}},
		{"encrypt", func(m RoundMetrics) float64 { return m.Encrypt }, color.RGBA{0xff, 0x7f, 0x0e, 0xff}},
		{"aggregate", func(m RoundMetrics) float64 { return m.Aggregate }, color.RGBA{0x2c, 0xa0, 0x2c, 0xff}},
		{"decrypt", func(m RoundMetrics) float64 { return m.Decrypt }, color.RGBA{0xd6, 0x27, 0x28, 0xff}},
	}
	var below *plotter.BarChart
	names := make([]string, len(rounds))
	for i, m := range rounds {
		names[i] = itoa(m.Round)
	}
	for _, part := range parts {
		vals := make(plotter.Values, len(rounds))
		for i, m := range rounds {
			vals[i] = part.get(m)
		}
		b, err := plotter.NewBarChart(vals, vg.Points(18))
		if err != nil {
			return err
		}
		b.Color = part.c
		b.LineStyle.Width = 0
		if below != nil {
			b.StackOn(below)
		}
		below = b
		p.Add(b)
		p.Legend.Add(part.name, b)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Label.Text = "round"
	// Room for the last bar and, above the bars, for the legend.
	p.X.Min, p.X.Max = -0.6, float64(len(rounds))-0.4
	var top float64
	for _, m := range rounds {
		top = max(top, m.Train+m.Encrypt+m.Aggregate+m.Decrypt)
	}
	p.Y.Min, p.Y.Max = 0, top*1.35+1e-9
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

func itoa(i int) string { return strconv.Itoa(i) }

// saveRow draws plots side by side into one PNG.
func saveRow(path string, plots ...*plot.Plot) error {
	const w, h = 5 * vg.Inch, 4 * vg.Inch
	img := vgimg.New(w*vg.Length(len(plots)), h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{plots}, t, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// roundTicks marks integer rounds only.
type roundTicks struct{}

func (roundTicks) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	step := 1
	for (max-min)/float64(step) > 12 {
		step *= 2
	}
	for r := int(min); float64(r) <= max; r++ {
		if r < 1 || (r-1)%step != 0 {
			continue
		}
		out = append(out, plot.Tick{Value: float64(r), Label: itoa(r)})
	}
	return out
}
