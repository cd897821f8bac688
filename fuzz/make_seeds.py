#!/usr/bin/env python3
"""Writes the decode fuzz target's seeds: one small file per format and layout gpuconv reads.

Deterministic (fixed pixels, no timestamps); needs Pillow. Formats Pillow cannot write
(interlaced PNG, plain and 16-bit PNM, PAM, RLE8 BMP, QOI) are written by hand below.

    python3 fuzz/make_seeds.py            # writes fuzz/seeds/decode/
"""
import io
import struct
import zlib
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parent / "seeds" / "decode"
W, H = 16, 12


def rgb_pixels():
    return [((x * 16) % 256, (y * 21) % 256, ((x + y) * 9) % 256) for y in range(H) for x in range(W)]


def gray_pixels():
    return [(x * 15 + y * 7) % 256 for y in range(H) for x in range(W)]


def image(mode):
    rgb = Image.new("RGB", (W, H))
    rgb.putdata(rgb_pixels())
    if mode == "RGB":
        return rgb
    if mode == "RGBA":
        im = rgb.copy()
        im.putalpha(Image.linear_gradient("L").resize((W, H)))
        return im
    if mode == "L":
        g = Image.new("L", (W, H))
        g.putdata(gray_pixels())
        return g
    if mode == "LA":
        g = image("L")
        g.putalpha(128)
        return g
    if mode == "1":
        return image("L").point(lambda v: 255 if v > 100 else 0).convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        return rgb.quantize(16, dither=Image.Dither.NONE)
    if mode == "I;16":
        g = Image.new("I", (W, H))
        g.putdata([v * 257 + 3 for v in gray_pixels()])
        return g.convert("I;16")
    if mode == "F":
        f = Image.new("F", (W, H))
        f.putdata([v / 255.0 for v in gray_pixels()])
        return f
    raise ValueError(mode)


def save(name, im, fmt, **options):
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    write(name, buffer.getvalue())


def write(name, data):
    (OUT / name).write_bytes(data)


# ---- written by hand -------------------------------------------------------------------------


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def interlaced_png():
    """8-bit RGB, Adam7, filter 0 on every row."""
    pixels = rgb_pixels()
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        xs, ys = range(x0, W, dx), range(y0, H, dy)
        if not xs or not ys:
            continue
        for y in ys:
            raw.append(0)
            for x in xs:
                raw.extend(pixels[y * W + x])
    ihdr = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + png_chunk(b"IEND", b""))


def plain_pnm():
    gray, rgb = gray_pixels(), rgb_pixels()
    rows = lambda values, per_row: "\n".join(
        " ".join(str(v) for v in values[i:i + per_row]) for i in range(0, len(values), per_row))
    write("plain-bitmap.pbm", f"P1\n# plain PBM\n{W} {H}\n{rows([1 if v > 100 else 0 for v in gray], W)}\n".encode())
    write("plain-gray.pgm", f"P2\n{W} {H}\n255\n{rows(gray, W)}\n".encode())
    write("plain-gray-maxval15.pgm", f"P2\n{W} {H}\n15\n{rows([v // 17 for v in gray], W)}\n".encode())
    write("plain-rgb.ppm", f"P3\n{W} {H}\n255\n{rows([c for p in rgb for c in p], W * 3)}\n".encode())
    write("gray16.pgm", f"P5\n{W} {H}\n65535\n".encode() + b"".join(struct.pack(">H", v * 257) for v in gray))


def pam():
    gray, rgb = gray_pixels(), rgb_pixels()
    header = lambda depth, tupltype, maxval=255: (
        f"P7\nWIDTH {W}\nHEIGHT {H}\nDEPTH {depth}\nMAXVAL {maxval}\nTUPLTYPE {tupltype}\nENDHDR\n").encode()
    write("gray.pam", header(1, "GRAYSCALE") + bytes(gray))
    write("rgba.pam", header(4, "RGB_ALPHA") + bytes(c for i, p in enumerate(rgb) for c in (*p, i % 256)))
    write("bw.pam", header(1, "BLACKANDWHITE", 1) + bytes(1 if v > 100 else 0 for v in gray))


def rle8_bmp():
    """8-bit palette BMP, RLE8: encoded runs, an absolute run, a delta, end of line and bitmap."""
    colours = 16
    palette = b"".join(bytes((i * 16, 255 - i * 16, (i * 40) % 256, 0)) for i in range(colours))
    indices = [[(x // 3 + y) % colours for x in range(W)] for y in range(H)]
    data = bytearray()
    for y in reversed(range(H)):  # bottom-up
        row = indices[y]
        if y == H // 2:
            data += bytes((0, W)) + bytes(row)  # absolute mode, W even so no padding
        elif y == 2:
            data += bytes((4, row[0], 0, 2, 4, 0, 8, row[8]))  # 4 pixels, delta right 4, 8 pixels
        else:
            x = 0
            while x < W:
                run = 1
                while x + run < W and row[x + run] == row[x]:
                    run += 1
                data += bytes((run, row[x]))
                x += run
        data += b"\x00\x00"  # end of line
    data += b"\x00\x01"  # end of bitmap
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, W, H, 1, 8, 1, len(data), 2835, 2835, colours, 0)
    header = b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
    return header + info + palette + bytes(data)


def qoi(channels):
    """QOI with QOI_OP_RGB(A), QOI_OP_RUN and QOI_OP_INDEX, per the specification."""
    pixels = [(*p, 255 if channels == 3 else (i * 3) % 256) for i, p in enumerate(rgb_pixels())]
    # A run and a repeat of an earlier pixel, so that RUN and INDEX appear.
    pixels[20:30] = [pixels[20]] * 10
    pixels[40] = pixels[0]
    out = bytearray(b"qoif" + struct.pack(">IIBB", W, H, channels, 0))
    seen = [(0, 0, 0, 0)] * 64
    previous, run = (0, 0, 0, 255), 0
    for i, p in enumerate(pixels):
        if p == previous:
            run += 1
            if run == 62 or i == len(pixels) - 1:
                out.append(0xC0 | (run - 1))
                run = 0
            continue
        if run:
            out.append(0xC0 | (run - 1))
            run = 0
        slot = (p[0] * 3 + p[1] * 5 + p[2] * 7 + p[3] * 11) % 64
        if seen[slot] == p:
            out.append(slot)
        else:
            seen[slot] = p
            out += bytes((0xFE, *p[:3])) if p[3] == previous[3] else bytes((0xFF, *p))
        previous = p
    return bytes(out + b"\x00" * 7 + b"\x01")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    # PNG
    save("gray.png", image("L"), "PNG")
    save("gray-alpha.png", image("LA"), "PNG")
    save("rgb.png", image("RGB"), "PNG")
    save("rgba.png", image("RGBA"), "PNG")
    save("gray16.png", image("I;16"), "PNG")
    save("palette.png", image("P"), "PNG")
    save("bitmap-1bit.png", image("1"), "PNG")
    write("rgb-interlaced.png", interlaced_png())
    # JPEG
    save("gray-baseline.jpg", image("L"), "JPEG", quality=85)
    save("rgb-baseline.jpg", image("RGB"), "JPEG", quality=85, subsampling=0)
    save("rgb-420.jpg", image("RGB"), "JPEG", quality=75, subsampling=2)
    save("rgb-progressive.jpg", image("RGB"), "JPEG", quality=85, progressive=True)
    # Netpbm
    save("bitmap.pbm", image("1"), "PPM")
    save("gray.pgm", image("L"), "PPM")
    save("rgb.ppm", image("RGB"), "PPM")
    plain_pnm()
    pam()
    # BMP
    save("rgb24.bmp", image("RGB"), "BMP")
    save("rgba32.bmp", image("RGBA"), "BMP")
    save("palette8.bmp", image("P"), "BMP")
    save("bitmap1.bmp", image("1"), "BMP")
    write("palette8-rle8.bmp", rle8_bmp())
    # TIFF
    save("rgb-raw.tif", image("RGB"), "TIFF")
    save("gray-raw.tif", image("L"), "TIFF")
    save("rgb-lzw.tif", image("RGB"), "TIFF", compression="tiff_lzw")
    save("gray-deflate.tif", image("L"), "TIFF", compression="tiff_adobe_deflate")
    save("rgba-packbits.tif", image("RGBA"), "TIFF", compression="packbits")
    save("gray16.tif", image("I;16"), "TIFF")
    save("gray-float32.tif", image("F"), "TIFF")
    save("gray-float32-lzw.tif", image("F"), "TIFF", compression="tiff_lzw")
    # GIF: one frame, and two frames where the second covers part of the screen.
    save("palette.gif", image("P"), "GIF")
    second = image("P").crop((2, 2, 10, 8))
    frames = [image("P"), Image.new("P", (W, H))]
    frames[1].putpalette(image("P").getpalette())
    frames[1].paste(second, (2, 2))
    frames[0].save(OUT / "animated.gif", "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    # WebP
    save("rgb-lossless.webp", image("RGB"), "WEBP", lossless=True, method=0)
    save("rgba-lossless.webp", image("RGBA"), "WEBP", lossless=True, method=0)
    save("rgb-lossy.webp", image("RGB"), "WEBP", quality=70, method=0)
    save("rgba-lossy.webp", image("RGBA"), "WEBP", quality=70, method=0)
    # TGA
    save("rgb-raw.tga", image("RGB"), "TGA")
    save("gray-raw.tga", image("L"), "TGA")
    save("palette-raw.tga", image("P"), "TGA")
    save("rgb-rle.tga", image("RGB"), "TGA", compression="tga_rle")
    save("rgba-rle.tga", image("RGBA"), "TGA", compression="tga_rle")
    save("gray-rle.tga", image("L"), "TGA", compression="tga_rle")
    # QOI
    write("rgb.qoi", qoi(3))
    write("rgba.qoi", qoi(4))


if __name__ == "__main__":
    main()
