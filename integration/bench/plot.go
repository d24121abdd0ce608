package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The chart is drawn with the standard library's image packages and
// basicfont's fixed 7×13 face: a horizontal bar per variant, req/s in the
// upper panel and latency (p50 inside p99) in the lower one.
const (
	plotWidth  = 1000
	plotMargin = 16
	labelWidth = 130 // variant names, at most 16 characters of 7 px
	valueWidth = 150 // the figure printed after each bar
	rowHeight  = 22
	barHeight  = 14
	lineHeight = 16
)

var (
	colWhite = color.RGBA{255, 255, 255, 255}
	colText  = color.RGBA{30, 30, 30, 255}
	colGrid  = color.RGBA{225, 225, 225, 255}
	colRef   = color.RGBA{200, 40, 40, 255}
)

// variantColor groups the variants: plain Caddy grey, Caddyfile.example
// blue, the minimal Tollgate site green, forward_auth orange. light is the
// p99 bar's shade.
func variantColor(v string, light bool) color.RGBA {
	c := color.RGBA{140, 140, 140, 255}
	switch {
	case isExample(v):
		c = color.RGBA{52, 101, 164, 255}
	case isTollgate(v):
		c = color.RGBA{78, 154, 6, 255}
	case v == varForwardAuth:
		c = color.RGBA{206, 92, 0, 255}
	}
	if light {
		c.R, c.G, c.B = c.R/2+127, c.G/2+127, c.B/2+127
	}
	return c
}

// plot writes the chart of rep's saturating runs as a PNG.
func (rep report) plot(path string) error {
	vs := rep.Variants
	if len(vs) == 0 {
		return nil
	}
	panel := len(vs)*rowHeight + 2*lineHeight
	height := plotMargin + 3*lineHeight + panel + lineHeight + panel + 2*lineHeight + plotMargin
	img := image.NewRGBA(image.Rect(0, 0, plotWidth, height))
	draw.Draw(img, img.Bounds(), &image.Uniform{colWhite}, image.Point{}, draw.Src)

	y := plotMargin
	text(img, plotMargin, y, colText, "Tollgate gateway benchmark: GET "+apiPath+fmt.Sprintf(", wrk -t1 -c%d, median of %d round(s) of %s", rep.Connections, rep.Rounds, rep.Duration))
	y += lineHeight
	m := rep.Machine
	text(img, plotMargin, y, colText, fmt.Sprintf("%s, %d CPUs, %s", rep.When.Format("2006-01-02 15:04"), m.CPUs, m.CPUModel))
	y += lineHeight
	pin := "pinning off"
	if strings.HasPrefix(m.Pinning, "CPU") {
		pin = "pinned: " + strings.SplitN(m.Pinning, ";", 2)[0] + ", everything else on the other CPU"
	}
	text(img, plotMargin, y, colText, pin)
	y += lineHeight

	// Requests per second, with plain's as a reference line.
	y = hbars(img, y, vs, "requests/s (higher is better); red line: plain", true, func(s summary) (float64, float64, string) {
		label := fmt.Sprintf("%.0f", s.RPS)
		if s.HasPlain && s.Variant != varPlain {
			label += fmt.Sprintf("  %.2fx", s.RatioRPS)
		}
		return s.RPS, 0, label
	})
	// Latency: p99 light, p50 dark over it.
	y += lineHeight / 2
	y = hbars(img, y, vs, "latency at saturation, ms (lower is better): dark p50, light p99", false, func(s summary) (float64, float64, string) {
		return s.P99Ms, s.P50Ms, fmt.Sprintf("p50 %.2f  p99 %.2f", s.P50Ms, s.P99Ms)
	})
	y += lineHeight / 2
	text(img, plotMargin, y, colText, "colours: grey plain Caddy, blue Caddyfile.example, green minimal Tollgate site, orange forward_auth")

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// hbars draws a titled panel of one horizontal bar per variant, starting
// at y, and returns the y below it. bar gives the bar's value, an inner
// value drawn darker over it (0 for none) and the label after the bar.
// With ref, a line marks plain's value.
func hbars(img *image.RGBA, y int, vs []summary, title string, ref bool, bar func(summary) (outer, inner float64, label string)) int {
	x0 := plotMargin + labelWidth
	barMax := plotWidth - plotMargin - valueWidth - x0
	y += lineHeight / 2
	text(img, plotMargin, y, colText, title)
	y += lineHeight + 4
	top := 0.0
	for _, s := range vs {
		v, _, _ := bar(s)
		top = max(top, v)
	}
	scale := func(v float64) int {
		if top <= 0 {
			return 0
		}
		return int(v / top * float64(barMax))
	}
	grid(img, x0, y, barMax, len(vs)*rowHeight)
	for i, s := range vs {
		ry := y + i*rowHeight
		outer, inner, label := bar(s)
		text(img, plotMargin, ry+barHeight-2, colText, s.Variant)
		w := scale(outer)
		if inner > 0 {
			fill(img, x0, ry, w, barHeight, variantColor(s.Variant, true))
			fill(img, x0, ry, scale(inner), barHeight, variantColor(s.Variant, false))
		} else {
			fill(img, x0, ry, w, barHeight, variantColor(s.Variant, false))
		}
		text(img, x0+w+6, ry+barHeight-2, colText, label)
	}
	if p := find(vs, varPlain); p != nil && ref {
		v, _, _ := bar(*p)
		fill(img, x0+scale(v), y-3, 1, len(vs)*rowHeight+2, colRef)
	}
	return y + len(vs)*rowHeight + lineHeight/2
}

func fill(img *image.RGBA, x, y, w, h int, c color.RGBA) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), &image.Uniform{c}, image.Point{}, draw.Src)
}

// grid draws the panel's frame and quarter lines.
func grid(img *image.RGBA, x, y, w, h int) {
	for i := 0; i <= 4; i++ {
		fill(img, x+i*w/4, y-3, 1, h+2, colGrid)
	}
}

// text draws s with its baseline at y.
func text(img *image.RGBA, x, y int, c color.RGBA, s string) {
	d := font.Drawer{Dst: img, Src: &image.Uniform{c}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
