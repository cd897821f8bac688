#!/usr/bin/env python3
"""Draws the pictures in img/ that are not photographs: the two-arrows picture and the lesson's
7x7 stripe images. Needs Pillow. Run from anywhere: `python3 img/make_drawn_images.py`.

The output is deterministic, so re-running it reproduces the committed files byte for byte
(for a given Pillow version's PNG encoder)."""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SUPERSAMPLE = 4  # drawn large, then shrunk: smooth (anti-aliased) edges like a real picture


def arrows(width=320, height=240):
    """Two dark arrows on a light background: one pointing right, one pointing up."""
    s = SUPERSAMPLE
    img = Image.new("L", (width * s, height * s), 235)
    draw = ImageDraw.Draw(img)

    def polygon(points):
        draw.polygon([(x * s, y * s) for x, y in points], fill=20)

    # A horizontal arrow, pointing right.
    polygon([(30, 150), (180, 150), (180, 130), (225, 170), (180, 210), (180, 190), (30, 190)])
    # A vertical arrow, pointing up.
    polygon([(250, 220), (250, 80), (230, 80), (270, 25), (310, 80), (290, 80), (290, 220)])
    return img.resize((width, height), Image.LANCZOS)


def stripe(vertical, size=7, value=255):
    """The lesson's 7x7 stripe: dark, with a bright band three pixels wide through the middle."""
    img = Image.new("L", (size, size), 0)
    for i in range(size):
        for j in range(2, 5):
            img.putpixel((j, i) if vertical else (i, j), value)
    return img


if __name__ == "__main__":
    arrows().save(HERE / "arrows.png", optimize=True)
    stripe(vertical=True).save(HERE / "stripe-vertical.pgm")
    stripe(vertical=False).save(HERE / "stripe-horizontal.pgm")
    print("wrote arrows.png, stripe-vertical.pgm, stripe-horizontal.pgm in", HERE)
