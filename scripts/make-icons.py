#!/usr/bin/env python3
"""Draws Talkbell's icons (a bell in a disc, one colour per connection state) as RGBA PNGs
into icons/. Kept so the icons can be redrawn; the PNGs are committed."""
import math, struct, zlib, pathlib

def png(path, size, rgba):
    raw = b"".join(b"\x00" + bytes(rgba[y * size * 4:(y + 1) * size * 4]) for y in range(size))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    pathlib.Path(path).write_bytes(data)

def inside_bell(x, y):
    # x, y in [-1, 1]: a dome, a flared rim and a clapper.
    if -0.55 <= y <= 0.35:
        half = 0.28 + 0.22 * ((y + 0.55) / 0.9) ** 2
        if abs(x) <= half and (y > -0.35 or x * x + (y + 0.35) ** 2 <= 0.28 ** 2):
            return True
    if 0.35 < y <= 0.45 and abs(x) <= 0.58:
        return True
    return x * x + (y - 0.56) ** 2 <= 0.11 ** 2

def draw(size, disc, bell=(255, 255, 255), hollow=False):
    px = []
    for j in range(size):
        for i in range(size):
            cov_disc = cov_bell = 0
            for sy in range(4):
                for sx in range(4):
                    x = ((i + (sx + 0.5) / 4) / size) * 2 - 1
                    y = ((j + (sy + 0.5) / 4) / size) * 2 - 1
                    r = math.hypot(x, y)
                    in_disc = r <= 0.96 and (not hollow or r >= 0.80)
                    cov_disc += in_disc
                    cov_bell += inside_bell(x / 0.8, y / 0.8)
            a_disc, a_bell = cov_disc / 16, cov_bell / 16
            if hollow:
                colour = disc if a_bell == 0 else disc
                alpha = max(a_disc, a_bell)
                px += [*colour, int(alpha * 255)]
            else:
                c = [int(disc[k] * (1 - a_bell) + bell[k] * a_bell) for k in range(3)]
                px += [*c, int(a_disc * 255)]
    return px

icons = pathlib.Path(__file__).resolve().parent.parent / "icons"
icons.mkdir(exist_ok=True)
png(icons / "icon.png", 256, draw(256, (37, 99, 235)))
png(icons / "tray-connected.png", 32, draw(32, (22, 163, 74)))
png(icons / "tray-connecting.png", 32, draw(32, (217, 119, 6)))
png(icons / "tray-offline.png", 32, draw(32, (107, 114, 128)))
png(icons / "tray-signed-out.png", 32, draw(32, (220, 38, 38), hollow=True))
