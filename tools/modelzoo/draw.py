"""Procedural 64x64 "factory photo" drawings (PIL only, no randomness beyond a seeded RNG)."""
from __future__ import annotations

import random

from PIL import Image, ImageDraw

W = H = 64


def _background(d: ImageDraw.ImageDraw, rng: random.Random):
    wall = (150 + rng.randint(-10, 10), 155 + rng.randint(-10, 10), 160 + rng.randint(-10, 10))
    d.rectangle([0, 0, W - 1, 39], fill=wall)
    d.rectangle([0, 40, W - 1, H - 1], fill=(95, 95, 90))  # concrete floor
    # yellow/black hazard stripe along the floor edge
    for x in range(0, W, 8):
        d.polygon([(x, 40), (x + 4, 40), (x + 8, 43), (x + 4, 43)], fill=(230, 190, 20))


def _light(d, x, y, red: bool):
    d.rectangle([x - 1, y + 3, x + 1, y + 8], fill=(40, 40, 40))
    d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(230, 30, 30) if red else (40, 200, 60))


def press(d, rng, guard_open=False, red=False):
    d.rectangle([18, 8, 46, 14], fill=(60, 90, 160))  # crown
    d.rectangle([20, 14, 24, 50], fill=(60, 90, 160))  # columns
    d.rectangle([40, 14, 44, 50], fill=(60, 90, 160))
    d.rectangle([26, 16, 38, 26], fill=(120, 120, 130))  # ram
    d.rectangle([22, 44, 42, 50], fill=(70, 70, 80))  # bolster
    if guard_open:
        d.polygon([(25, 28), (25, 43), (14, 46), (14, 31)], fill=(240, 200, 30))  # swung-open guard
    else:
        d.rectangle([25, 28, 39, 43], outline=(240, 200, 30), width=2)
    _light(d, 52, 10, red)


def saw(d, rng, guard_open=False, red=False):
    d.rectangle([8, 36, 56, 42], fill=(110, 110, 120))  # table
    d.rectangle([12, 42, 16, 56], fill=(60, 60, 60))
    d.rectangle([48, 42, 52, 56], fill=(60, 60, 60))
    d.ellipse([22, 20, 42, 40], fill=(200, 200, 210), outline=(80, 80, 80))  # blade
    for k in range(8):
        x, y = 32 + (10 if k % 2 else 8) * [1, 0.7, 0, -0.7, -1, -0.7, 0, 0.7][k], 30 + 9 * [0, 0.7, 1, 0.7, 0, -0.7, -1, -0.7][k]
        d.point((x, y), fill=(40, 40, 40))
    if not guard_open:
        d.pieslice([20, 18, 44, 42], 180, 360, fill=(220, 60, 40))  # blade guard over the top
    _light(d, 56, 12, red)


def conveyor(d, rng, guard_open=False, red=False):
    d.rectangle([4, 34, 60, 40], fill=(40, 40, 45))  # belt
    for x in range(6, 60, 10):
        d.ellipse([x, 40, x + 5, 45], fill=(120, 120, 120))  # rollers
    for i in range(3):
        x = 8 + i * 18 + rng.randint(0, 3)
        d.rectangle([x, 24, x + 10, 34], fill=(170, 120, 70), outline=(120, 80, 40))  # boxes
    _light(d, 58, 10, red)


def lathe(d, rng, guard_open=False, red=False):
    d.rectangle([6, 38, 58, 44], fill=(70, 110, 90))  # bed
    d.rectangle([6, 22, 18, 38], fill=(70, 110, 90))  # headstock
    d.rectangle([46, 28, 56, 38], fill=(70, 110, 90))  # tailstock
    d.rectangle([18, 29, 46, 33], fill=(190, 190, 200))  # workpiece
    if not guard_open:
        d.rectangle([16, 20, 34, 36], outline=(240, 200, 30), width=1)  # chuck guard
    _light(d, 30, 8, red)


def robot(d, rng, guard_open=False, red=False):
    d.rectangle([26, 44, 38, 50], fill=(50, 50, 50))  # base
    d.line([(32, 44), (24, 26)], fill=(240, 130, 20), width=4)
    d.line([(24, 26), (42, 18)], fill=(240, 130, 20), width=3)
    d.ellipse([40, 15, 46, 21], fill=(80, 80, 80))
    for x in range(4, 62, 6):  # fence
        d.line([(x, 20), (x, 52)], fill=(200, 200, 60))
    if guard_open:
        d.rectangle([46, 20, 58, 52], fill=(95, 95, 90))  # open gate
    _light(d, 8, 8, red)


def worker(d, x, y):
    d.ellipse([x - 3, y - 10, x + 3, y - 4], fill=(230, 190, 150))
    d.chord([x - 4, y - 12, x + 4, y - 5], 180, 360, fill=(250, 220, 0))  # helmet
    d.rectangle([x - 3, y - 4, x + 3, y + 6], fill=(240, 120, 0))  # hi-vis vest
    d.rectangle([x - 3, y + 6, x - 1, y + 13], fill=(40, 50, 90))
    d.rectangle([x + 1, y + 6, x + 3, y + 13], fill=(40, 50, 90))


MACHINES = {"press": press, "saw": saw, "conveyor": conveyor, "lathe": lathe, "robot": robot}


def draw_scene(machine: str, seed: int, guard_open: bool = False, red_light: bool = False, workers: int = 0) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(img)
    _background(d, rng)
    MACHINES[machine](d, rng, guard_open=guard_open, red=red_light)
    for i in range(workers):
        worker(d, 10 + 44 * i + rng.randint(-2, 2), 48)
    return img


def save_png(img: Image.Image, path: str):
    # no metadata, fixed compression: byte-identical output for identical pixels
    img.save(path, format="PNG", optimize=False, compress_level=9)
