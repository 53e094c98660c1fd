package dataset

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Defaults of ImageOptions.
const (
	DefaultMaxImages      = 1_000_000   // images per folder tree
	DefaultMaxImagePixels = 4096 * 4096 // width × height of one image
	maxImageFolderValues  = 1 << 31     // values (images × H × W × C) in one Set: 8 GiB of float32
	maxImageClasses       = 1 << 16
)

// ImageOptions configures LoadImageFolder. The zero value means: grey images, size taken
// from the first image, at most DefaultMaxImages images of at most DefaultMaxImagePixels
// pixels each.
type ImageOptions struct {
	// Channels is 1 (grey) or 3 (RGB); 0 means 1.
	Channels int
	// Height and Width, when both set, are the size every image must have; 0 and 0 mean
	// the size of the first image (in sorted class and file order). Images are never
	// resized: one of another size is an error.
	Height, Width int
	// MaxImages is the largest number of image files accepted; 0 means DefaultMaxImages.
	MaxImages int
	// MaxPixels is the largest width × height accepted for one image; 0 means
	// DefaultMaxImagePixels.
	MaxPixels int
}

// Validate reports the first bad field of o.
func (o ImageOptions) Validate() error {
	switch {
	case o.Channels != 0 && o.Channels != 1 && o.Channels != 3:
		return fmt.Errorf("image options: Channels %d, want 1 (grey) or 3 (RGB)", o.Channels)
	case o.Height < 0 || o.Width < 0 || (o.Height == 0) != (o.Width == 0):
		return fmt.Errorf("image options: Height %d and Width %d, want both > 0 or both 0 (size of the first image)", o.Height, o.Width)
	case o.MaxImages < 0:
		return fmt.Errorf("image options: MaxImages %d, want >= 0 (0 means %d)", o.MaxImages, DefaultMaxImages)
	case o.MaxPixels < 0:
		return fmt.Errorf("image options: MaxPixels %d, want >= 0 (0 means %d)", o.MaxPixels, DefaultMaxImagePixels)
	}
	return nil
}

func (o ImageOptions) withDefaults() ImageOptions {
	if o.Channels == 0 {
		o.Channels = 1
	}
	if o.MaxImages == 0 {
		o.MaxImages = DefaultMaxImages
	}
	if o.MaxPixels == 0 {
		o.MaxPixels = DefaultMaxImagePixels
	}
	return o
}

// imageFile is one image found by LoadImageFolder.
type imageFile struct {
	path  string
	class int
}

// LoadImageFolder loads a labelled image set from dir, which holds one sub-folder per class
// (dir/<class>/<image>): class names, sorted, become the class indices 0, 1, ... and are kept
// in ClassNames. Within a class folder, files ending in .png, .jpg or .jpeg (any case) are
// read in sorted order; other files, hidden files (name starting with '.'), nested folders
// and files directly in dir are ignored. A class folder with no images still counts as a
// class, so hospitals lacking a class keep the same class indices; a tree with no image at
// all is an error.
//
// Images are decoded with the standard library's image/png and image/jpeg (by content, not
// extension) and converted to grey (ITU-R 601 luma, as image/color.GrayModel) or RGB as
// opts.Channels asks; colours are alpha-premultiplied, that is composited over black. Values
// are scaled to [0, 1]; 8-bit values k come out as exactly float32(k)/255, as ReadIDX makes
// them. The per-sample shape is [H W C].
//
// All images must have the same size: opts.Height × opts.Width if given, else the size of the
// first image. Nothing is resized; an image of another size is an error naming the file with
// the expected and actual size. The number of files (MaxImages) and each image's size
// (MaxPixels, and the total number of values) are checked from the file listing and from
// image.DecodeConfig-style header reads before any pixel is decoded; errors wrap ErrTooLarge.
// Malformed or unsupported files return an error wrapping ErrFormat that names the file.
func LoadImageFolder(dir string, opts ImageOptions) (*Set, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	classNames, files, err := listImageFolder(dir, opts.MaxImages)
	if err != nil {
		return nil, err
	}

	// Check every header before decoding any pixel.
	h, w := opts.Height, opts.Width
	sizeFrom := "ImageOptions.Height and Width"
	for _, f := range files {
		cfg, err := decodeImageConfig(f.path)
		if err != nil {
			return nil, err
		}
		if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > opts.MaxPixels/max(cfg.Height, 1) {
			return nil, fmt.Errorf("image folder: %s: %w: %d×%d pixels (width×height), want at most %d pixels (raise ImageOptions.MaxPixels)", f.path, ErrTooLarge, cfg.Width, cfg.Height, opts.MaxPixels)
		}
		if h == 0 {
			h, w = cfg.Height, cfg.Width
			sizeFrom = "the first image, " + files[0].path
		}
		if cfg.Height != h || cfg.Width != w {
			return nil, fmt.Errorf("image folder: %s: %w: image is %d×%d (height×width), want %d×%d as %s (images are not resized)", f.path, ErrShape, cfg.Height, cfg.Width, h, w, sizeFrom)
		}
	}
	size := h * w * opts.Channels
	if len(files) > maxImageFolderValues/size {
		return nil, fmt.Errorf("image folder %s: %w: %d images of %d×%d×%d values, want at most %d values in all", dir, ErrTooLarge, len(files), h, w, opts.Channels, maxImageFolderValues)
	}

	s := &Set{
		Name:       filepath.Base(filepath.Clean(dir)),
		X:          make([]float32, len(files)*size),
		Y:          make([]float32, len(files)),
		Shape:      []int{h, w, opts.Channels},
		Classes:    len(classNames),
		ClassNames: classNames,
	}
	for i, f := range files {
		img, err := decodeImage(f.path)
		if err != nil {
			return nil, err
		}
		if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
			return nil, fmt.Errorf("image folder: %s: %w: decoded image is %d×%d (height×width), want %d×%d as its header said", f.path, ErrFormat, b.Dy(), b.Dx(), h, w)
		}
		imageValues(s.X[i*size:(i+1)*size], img, opts.Channels)
		s.Y[i] = float32(f.class)
	}
	return s, nil
}

// listImageFolder returns the sorted class folder names of dir and the image files in them.
func listImageFolder(dir string, maxImages int) (classNames []string, files []imageFile, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("image folder: %w", err)
	}
	for _, e := range entries { // ReadDir sorts by name
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		class := len(classNames)
		classNames = append(classNames, e.Name())
		if len(classNames) > maxImageClasses {
			return nil, nil, fmt.Errorf("image folder %s: %w: more than %d class folders", dir, ErrTooLarge, maxImageClasses)
		}
		sub := filepath.Join(dir, e.Name())
		imgs, err := os.ReadDir(sub)
		if err != nil {
			return nil, nil, fmt.Errorf("image folder: %w", err)
		}
		for _, im := range imgs {
			name := im.Name()
			if strings.HasPrefix(name, ".") || !isImageName(name) {
				continue
			}
			path := filepath.Join(sub, name)
			if !im.Type().IsRegular() {
				fi, err := os.Stat(path) // follow a symbolic link
				if err != nil || !fi.Mode().IsRegular() {
					continue
				}
			}
			if len(files) == maxImages {
				return nil, nil, fmt.Errorf("image folder %s: %w: more than %d images (raise ImageOptions.MaxImages)", dir, ErrTooLarge, maxImages)
			}
			files = append(files, imageFile{path: path, class: class})
		}
	}
	if len(classNames) == 0 {
		return nil, nil, fmt.Errorf("image folder %s: %w: no class sub-folders, want one folder of images per class", dir, ErrFormat)
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("image folder %s: %w: no .png, .jpg or .jpeg files in class folders %q", dir, ErrFormat, classNames)
	}
	return classNames, files, nil
}

func isImageName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".png" || ext == ".jpg" || ext == ".jpeg"
}

// Magic numbers that select the decoder.
var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte{0xff, 0xd8}
)

// imageCodec picks the PNG or JPEG decoder from the first bytes of br, or returns an error
// naming path.
func imageCodec(br *bufio.Reader, path string) (decodeConfig func(io.Reader) (image.Config, error), decode func(io.Reader) (image.Image, error), format string, err error) {
	head, _ := br.Peek(len(pngMagic))
	switch {
	case bytes.HasPrefix(head, pngMagic):
		return png.DecodeConfig, png.Decode, "png", nil
	case bytes.HasPrefix(head, jpegMagic):
		return jpeg.DecodeConfig, jpeg.Decode, "jpeg", nil
	}
	return nil, nil, "", fmt.Errorf("image folder: %s: %w: first bytes %q, want a PNG or JPEG image", path, ErrFormat, head)
}

// decodeImageConfig reads the size of the image at path from its header.
func decodeImageConfig(path string) (image.Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return image.Config{}, fmt.Errorf("image folder: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	decodeConfig, _, format, err := imageCodec(br, path)
	if err != nil {
		return image.Config{}, err
	}
	cfg, err := decodeConfig(br)
	if err != nil {
		return image.Config{}, fmt.Errorf("image folder: %s: %w: %s header: %w", path, ErrFormat, format, err)
	}
	return cfg, nil
}

// decodeImage decodes the image at path.
func decodeImage(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image folder: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	_, decode, format, err := imageCodec(br, path)
	if err != nil {
		return nil, err
	}
	img, err := decode(br)
	if err != nil {
		return nil, fmt.Errorf("image folder: %s: %w: %s: %w", path, ErrFormat, format, err)
	}
	return img, nil
}

// imageValues writes img into dst (len H*W*channels, row-major HWC) scaled to [0, 1].
func imageValues(dst []float32, img image.Image, channels int) {
	b := img.Bounds()
	if g, ok := img.(*image.Gray); ok && channels == 1 {
		k := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for _, p := range g.Pix[g.PixOffset(b.Min.X, y):g.PixOffset(b.Max.X, y)] {
				dst[k] = float32(p) / 255
				k++
			}
		}
		return
	}
	k := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA() // 16-bit, alpha-premultiplied
			if channels == 1 {
				// The luma of image/color.GrayModel, kept at 16 bits.
				dst[k] = unit16((19595*r + 38470*g + 7471*bl + 1<<15) >> 16)
				k++
				continue
			}
			dst[k], dst[k+1], dst[k+2] = unit16(r), unit16(g), unit16(bl)
			k += 3
		}
	}
}

// unit16 scales a 16-bit value to [0, 1]; a value that is an 8-bit value k widened (k*257)
// gives exactly float32(k)/255.
func unit16(v uint32) float32 {
	if v%257 == 0 {
		return float32(v/257) / 255
	}
	return float32(v) / 65535
}
