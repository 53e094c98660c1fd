package dataset

import (
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeImage saves img as PNG or JPEG (by extension) at dir/class/name.
func writeImage(t *testing.T, dir, class, name string, img image.Image) string {
	t.Helper()
	path := filepath.Join(dir, class, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if strings.HasSuffix(strings.ToLower(name), ".png") {
		err = png.Encode(f, img)
	} else {
		err = jpeg.Encode(f, img, &jpeg.Options{Quality: 100})
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// grayImage returns an h×w grey image whose pixel (x, y) is base + x + w*y.
func grayImage(h, w int, base uint8) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = base + uint8(i)
	}
	return img
}

func TestLoadImageFolderGray(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, dir, "normal", "b.png", grayImage(3, 4, 10))
	writeImage(t, dir, "normal", "a.PNG", grayImage(3, 4, 0))
	writeImage(t, dir, "pneumonia", "x.png", grayImage(3, 4, 200))
	// A colour PNG is converted to grey; pure grey colours keep their value exactly.
	rgb := image.NewNRGBA(image.Rect(0, 0, 4, 3))
	for i := range 12 {
		v := uint8(100 + i)
		rgb.Set(i%4, i/4, color.NRGBA{v, v, v, 255})
	}
	writeImage(t, dir, "pneumonia", "y.png", rgb)
	// Ignored: hidden files, other extensions, files at the top, nested folders.
	os.WriteFile(filepath.Join(dir, "normal", ".DS_Store"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "normal", "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("x"), 0o644)
	writeImage(t, dir, "normal/nested", "z.png", grayImage(9, 9, 0))
	// An empty class folder is still a class.
	os.MkdirAll(filepath.Join(dir, "covid"), 0o755)

	s, err := LoadImageFolder(dir, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"covid", "normal", "pneumonia"}; !slices.Equal(s.ClassNames, want) || s.Classes != 3 {
		t.Fatalf("classes %d %q, want 3 %q", s.Classes, s.ClassNames, want)
	}
	if !slices.Equal(s.Shape, []int{3, 4, 1}) {
		t.Fatalf("shape %v, want [3 4 1]", s.Shape)
	}
	if !slices.Equal(s.Y, []float32{1, 1, 2, 2}) {
		t.Fatalf("labels %v, want [1 1 2 2] (a.PNG, b.png, x.png, y.png)", s.Y)
	}
	for i, base := range []int{0, 10, 200, 100} {
		for j, v := range s.Sample(i) {
			if want := float32(base+j) / 255; v != want {
				t.Fatalf("sample %d pixel %d = %v, want %v", i, j, v, want)
			}
		}
	}
}

func TestLoadImageFolderRGBAndJPEG(t *testing.T) {
	dir := t.TempDir()
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for y := range 8 {
		for x := range 8 {
			img.Set(x, y, color.RGBA{255, 0, 0, 255}) // red
		}
	}
	writeImage(t, dir, "red", "r.jpg", img)
	writeImage(t, dir, "red", "r2.png", img)
	s, err := LoadImageFolder(dir, ImageOptions{Channels: 3, Height: 8, Width: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Shape, []int{8, 8, 3}) || s.Len() != 2 {
		t.Fatalf("shape %v, %d images; want [8 8 3], 2", s.Shape, s.Len())
	}
	for i := range 2 {
		px := s.Sample(i)[:3]
		if math.Abs(float64(px[0])-1) > 0.02 || px[1] > 0.02 || px[2] > 0.02 {
			t.Errorf("image %d first pixel %v, want about [1 0 0]", i, px)
		}
	}
	grey, err := LoadImageFolder(dir, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Luma of pure red: 19595/65536.
	if v := grey.Sample(1)[0]; math.Abs(float64(v)-0.299) > 0.001 {
		t.Errorf("grey value of red %v, want 0.299", v)
	}
}

func TestLoadImageFolderErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		opts    ImageOptions
		want    error
		mention []string
	}{
		{"no classes", func(t *testing.T, dir string) {}, ImageOptions{}, ErrFormat, []string{"no class sub-folders"}},
		{"no images", func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, "a"), 0o755) }, ImageOptions{}, ErrFormat, []string{"no .png"}},
		{"size differs from first", func(t *testing.T, dir string) {
			writeImage(t, dir, "a", "1.png", grayImage(28, 28, 0))
			writeImage(t, dir, "b", "2.png", grayImage(28, 27, 0))
		}, ImageOptions{}, ErrShape, []string{"2.png", "28×27", "want 28×28", "1.png", "not resized"}},
		{"size differs from options", func(t *testing.T, dir string) {
			writeImage(t, dir, "a", "1.png", grayImage(32, 32, 0))
		}, ImageOptions{Height: 28, Width: 28}, ErrShape, []string{"1.png", "32×32", "want 28×28"}},
		{"too many images", func(t *testing.T, dir string) {
			for _, n := range []string{"1.png", "2.png", "3.png"} {
				writeImage(t, dir, "a", n, grayImage(2, 2, 0))
			}
		}, ImageOptions{MaxImages: 2}, ErrTooLarge, []string{"more than 2 images"}},
		{"too many pixels", func(t *testing.T, dir string) {
			writeImage(t, dir, "a", "big.png", grayImage(100, 100, 0))
		}, ImageOptions{MaxPixels: 9999}, ErrTooLarge, []string{"big.png", "100×100", "9999"}},
		{"not an image", func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Join(dir, "a"), 0o755)
			os.WriteFile(filepath.Join(dir, "a", "fake.png"), []byte("GIF89a......"), 0o644)
		}, ImageOptions{}, ErrFormat, []string{"fake.png", "want a PNG or JPEG"}},
		{"truncated png", func(t *testing.T, dir string) {
			p := writeImage(t, dir, "a", "cut.png", grayImage(20, 20, 0))
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-20], 0o644)
		}, ImageOptions{}, ErrFormat, []string{"cut.png"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			_, err := LoadImageFolder(dir, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			t.Log(err)
		})
	}
	for _, o := range []ImageOptions{{Channels: 2}, {Height: 28}, {Width: -1, Height: -1}, {MaxImages: -1}, {MaxPixels: -1}} {
		if _, err := LoadImageFolder(t.TempDir(), o); err == nil || !strings.Contains(err.Error(), "image options") {
			t.Errorf("options %+v: error %v, want an image options error", o, err)
		}
	}
	if _, err := LoadImageFolder(filepath.Join(t.TempDir(), "missing"), ImageOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing folder: %v, want os.ErrNotExist", err)
	}
}

// TestImageFolderToIDX round-trips grey images through LoadImageFolder, SaveIDX and
// LoadIDXFiles.
func TestImageFolderToIDX(t *testing.T) {
	dir := t.TempDir()
	for i := range 5 {
		writeImage(t, dir, []string{"benign", "malignant"}[i%2], string(rune('a'+i))+".png", grayImage(6, 5, uint8(40*i)))
	}
	s, err := LoadImageFolder(dir, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := SaveIDX(out, s, "train"); err != nil {
		t.Fatal(err)
	}
	got, err := LoadIDXFiles(filepath.Join(out, "train-images-idx3-ubyte.gz"), filepath.Join(out, "train-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.X, s.X) || !slices.Equal(got.Y, s.Y) || !slices.Equal(got.Shape, s.Shape) {
		t.Error("image folder differs after SaveIDX and LoadIDXFiles")
	}
}
