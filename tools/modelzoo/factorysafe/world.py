"""FactorySafe scenes: procedurally drawn 64x64 RGB "factory photos" with a ground-truth dict.

Every safety-relevant state has its own colour and place so that a tiny ViT (8x8 patches) can learn it:
- machine kind: silhouette + body colour (press blue C-frame, band saw grey body with a silver wheel, conveyor long
  dark belt with brown boxes, robot orange arm on a black base, lathe green bed, pillar drill teal column);
- guard: a yellow panel with a dark grid; closed = over the machine's danger zone, open = swung out to the left of
  it with the silver moving part exposed;
- warning light: a round beacon in the top-right corner, green / amber / red;
- worker: blue overalls + skin head, standing on the floor left or right; helmet = a white or yellow dome over the
  head, no helmet = dark hair;
- lockout tag: a white-over-red tag with a dark padlock on the machine's base;
- spill: a dark blue puddle on the floor;
- smoke: a cluster of light grey puffs above the machine.
Variation: wall and floor colours, machine offset and colour jitter, light position, worker side, puddle place,
pixel noise. Deterministic from the scene seed.
"""
from __future__ import annotations

import random
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

W = H = 64
MACHINES = ["press", "saw", "conveyor", "robot", "lathe", "drill"]
MACHINE_NAMES = {"press": "power press", "saw": "band saw", "conveyor": "conveyor", "robot": "welding robot",
                 "lathe": "lathe", "drill": "pillar drill"}
# the word the content judge looks for (no name contains another's keyword)
MACHINE_KEYWORD = {"press": "press", "saw": "saw", "conveyor": "conveyor", "robot": "robot", "lathe": "lathe",
                   "drill": "drill"}
LIGHTS = ["green", "amber", "red"]
LIGHT_RGB = {"green": (40, 200, 60), "amber": (250, 160, 0), "red": (230, 30, 30)}


def is_hazard(s: Dict) -> bool:
    return bool(s["guard_open"] or s["light"] == "red" or s["smoke"] or s["spill"]
                or (s["worker"] and not s["helmet"]))


def hazards(s: Dict) -> List[str]:
    out = []
    if s["guard_open"]:
        out.append("an open guard")
    if s["light"] == "red":
        out.append("a red warning light")
    if s["smoke"]:
        out.append("smoke")
    if s["spill"]:
        out.append("a spill on the floor")
    if s["worker"] and not s["helmet"]:
        out.append("a worker without a helmet")
    return out


def describe(s: Dict) -> str:
    """The scene's visible state in words: CLIP captions and the VLM's caption answers both use it."""
    parts = [f"the guard {'open' if s['guard_open'] else 'closed'}", ("an" if s["light"] == "amber" else "a") + f" {s['light']} warning light"]
    if s["worker"]:
        parts.append("a worker " + ("wearing a helmet" if s["helmet"] else "without a helmet"))
    if s["lockout"]:
        parts.append("a lockout tag")
    if s["spill"]:
        parts.append("a spill on the floor")
    if s["smoke"]:
        parts.append("smoke")
    return f"a {MACHINE_NAMES[s['machine']]} with " + ", ".join(parts[:-1]) + " and " + parts[-1]


def sample_scene(rng: random.Random, machine: str | None = None, safe: bool | None = None) -> Dict:
    """Ground truth of one scene. `safe=True` forces a hazard-free scene, `False` forces at least one hazard."""
    for _ in range(1000):
        s = {
            "machine": machine or rng.choice(MACHINES),
            "guard_open": rng.random() < 0.4,
            "light": rng.choice(LIGHTS),
            "worker": rng.random() < 0.55,
            "helmet": rng.random() < 0.5,
            "lockout": rng.random() < 0.3,
            "spill": rng.random() < 0.25,
            "smoke": rng.random() < 0.25,
        }
        if not s["worker"]:
            s["helmet"] = False
        if safe is True:
            s.update(guard_open=False, smoke=False, spill=False)
            if s["light"] == "red":
                s["light"] = rng.choice(["green", "amber"])
            if s["worker"]:
                s["helmet"] = True
        if safe is False and not is_hazard(s):
            continue
        s["seed"] = rng.randrange(1 << 30)
        s["hazard"] = is_hazard(s)
        return s
    raise RuntimeError("could not sample a scene")


def _jit(rng, rgb, j=14):
    return tuple(max(0, min(255, c + rng.randint(-j, j))) for c in rgb)


# danger zone (x0, y0, x1, y1) of each machine in its own frame; the guard covers it when closed
ZONES = {"press": (25, 24, 39, 38), "saw": (24, 16, 38, 30), "conveyor": (24, 22, 38, 34),
         "robot": (30, 14, 44, 28), "lathe": (20, 24, 34, 36), "drill": (24, 24, 36, 36)}


def _machine(d: ImageDraw.ImageDraw, rng, kind: str, ox: int, oy: int):
    def R(x0, y0, x1, y1, fill, **kw):
        d.rectangle([x0 + ox, y0 + oy, x1 + ox, y1 + oy], fill=fill, **kw)

    if kind == "press":
        c = _jit(rng, (60, 90, 170))
        R(18, 8, 46, 15, c)
        R(18, 15, 23, 48, c)
        R(41, 15, 46, 48, c)
        R(20, 40, 44, 48, _jit(rng, (70, 70, 80)))
    elif kind == "saw":
        c = _jit(rng, (120, 125, 120))
        R(20, 8, 42, 14, c)
        R(36, 14, 42, 44, c)
        R(14, 32, 48, 36, _jit(rng, (150, 150, 160)))
        R(22, 36, 26, 48, (50, 50, 50))
        R(36, 36, 40, 48, (50, 50, 50))
        d.ellipse([20 + ox, 6 + oy, 32 + ox, 18 + oy], fill=(205, 205, 215), outline=(60, 60, 60))
    elif kind == "conveyor":
        R(2, 30, 61, 36, _jit(rng, (35, 35, 40)))
        for x in range(4, 60, 9):
            d.ellipse([x + ox, 36 + oy, x + 5 + ox, 41 + oy], fill=(120, 120, 120))
        R(6, 38, 8, 48, (60, 60, 60))
        R(54, 38, 56, 48, (60, 60, 60))
        for bx in (6, 44):
            R(bx, 21, bx + 9, 29, _jit(rng, (170, 115, 60)), outline=(110, 70, 30))
    elif kind == "robot":
        c = _jit(rng, (240, 130, 20))
        R(14, 40, 28, 48, (45, 45, 45))
        d.line([(21 + ox, 40 + oy), (16 + ox, 20 + oy)], fill=c, width=5)
        d.line([(16 + ox, 20 + oy), (34 + ox, 12 + oy)], fill=c, width=4)
        d.ellipse([13 + ox, 17 + oy, 20 + ox, 24 + oy], fill=(70, 70, 70))
        R(30, 28, 46, 44, _jit(rng, (90, 90, 100)))  # work table
    elif kind == "lathe":
        c = _jit(rng, (70, 120, 90))
        R(6, 36, 58, 42, c)
        R(6, 20, 18, 36, c)
        R(46, 26, 56, 36, c)
        R(12, 42, 16, 48, (50, 50, 50))
        R(48, 42, 52, 48, (50, 50, 50))
    elif kind == "drill":
        c = _jit(rng, (40, 140, 150))
        R(38, 6, 43, 46, c)
        R(22, 6, 44, 16, c)
        R(20, 44, 48, 48, _jit(rng, (60, 60, 70)))
        R(22, 38, 38, 41, _jit(rng, (110, 110, 120)))


def _moving_part(d, rng, kind, ox, oy):
    x0, y0, x1, y1 = ZONES[kind]
    d.rectangle([x0 + 3 + ox, y0 + 3 + oy, x1 - 3 + ox, y1 - 3 + oy], fill=_jit(rng, (200, 200, 210), 10))
    d.line([(x0 + 3 + ox, (y0 + y1) // 2 + oy), (x1 - 3 + ox, (y0 + y1) // 2 + oy)], fill=(90, 90, 95), width=1)


def _guard(d, rng, kind, ox, oy, open_: bool):
    x0, y0, x1, y1 = ZONES[kind]
    col = _jit(rng, (245, 205, 30), 10)
    if not open_:
        d.rectangle([x0 + ox, y0 + oy, x1 + ox, y1 + oy], fill=col)
        for gx in range(x0 + 3, x1, 4):
            d.line([(gx + ox, y0 + oy), (gx + ox, y1 + oy)], fill=(150, 120, 20))
        d.line([(x0 + ox, (y0 + y1) // 2 + oy), (x1 + ox, (y0 + y1) // 2 + oy)], fill=(150, 120, 20))
    else:
        w = x1 - x0
        # the panel hinged at the zone's left edge, swung out (drawn as a skewed narrow panel)
        pts = [(x0 + ox, y0 + oy), (x0 + ox, y1 + oy), (x0 - w // 2 - 2 + ox, y1 + 4 + oy), (x0 - w // 2 - 2 + ox, y0 + 4 + oy)]
        d.polygon(pts, fill=col)


def _light(d, rng, colour: str):
    x = 55 + rng.randint(-2, 2)
    y = 7 + rng.randint(-1, 2)
    d.rectangle([x - 1, y + 4, x + 1, y + 9], fill=(40, 40, 40))
    r = 5
    d.ellipse([x - r, y - r, x + r, y + r], fill=_jit(rng, LIGHT_RGB[colour], 12), outline=(30, 30, 30))


def _worker(d, rng, x, y, helmet: bool):
    skin = _jit(rng, (225, 185, 150), 15)
    body = _jit(rng, (40, 60, 170), 15)
    d.rectangle([x - 4, y - 6, x + 4, y + 8], fill=body)  # overalls
    d.rectangle([x - 4, y + 8, x - 1, y + 16], fill=(35, 40, 60))
    d.rectangle([x + 1, y + 8, x + 4, y + 16], fill=(35, 40, 60))
    d.ellipse([x - 3, y - 13, x + 3, y - 7], fill=skin)  # head
    if helmet:
        hc = rng.choice([(250, 250, 245), (250, 225, 0)])
        d.chord([x - 5, y - 17, x + 5, y - 7], 180, 360, fill=hc)
        d.line([(x - 5, y - 12), (x + 5, y - 12)], fill=hc, width=1)
    else:
        d.chord([x - 3, y - 14, x + 3, y - 9], 180, 360, fill=_jit(rng, (50, 35, 25), 10))


def _lockout(d, rng, kind, ox, oy):
    x = {"press": 30, "saw": 28, "conveyor": 28, "robot": 18, "lathe": 24, "drill": 42}[kind] + ox
    y = {"press": 41, "saw": 37, "conveyor": 38, "robot": 41, "lathe": 38, "drill": 30}[kind] + oy
    d.rectangle([x, y, x + 3, y + 3], fill=(40, 40, 40))  # padlock
    d.rectangle([x - 1, y + 4, x + 5, y + 6], fill=(250, 250, 250))  # tag (white band)
    d.rectangle([x - 1, y + 7, x + 5, y + 11], fill=(215, 20, 20))  # tag (red)


def _smoke(d, rng, ox):
    cx = 28 + ox + rng.randint(-6, 4)  # puffs stay left of the beacon
    for _ in range(5):
        r = rng.randint(3, 6)
        x = cx + rng.randint(-9, 7)
        y = rng.randint(3, 14)
        g = rng.randint(205, 240)
        d.ellipse([x - r, y - r, x + r, y + r], fill=(g, g, g))


def _spill(d, rng):
    x = rng.randint(4, 40)
    y = rng.randint(51, 57)
    w = rng.randint(14, 20)
    d.ellipse([x, y, x + w, y + 6], fill=_jit(rng, (35, 60, 150), 12))
    d.line([(x + 3, y + 2), (x + 7, y + 2)], fill=(120, 150, 220))


def draw(s: Dict) -> Image.Image:
    rng = random.Random(s["seed"])
    img = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(img)
    wall = _jit(rng, rng.choice([(190, 180, 150), (120, 140, 170), (140, 160, 135), (165, 150, 160)]), 15)
    floor_y = 46 + rng.randint(-2, 2)
    d.rectangle([0, 0, W - 1, floor_y], fill=wall)
    d.rectangle([0, floor_y + 1, W - 1, H - 1], fill=_jit(rng, rng.choice([(95, 95, 90), (120, 110, 95), (80, 85, 95)]), 10))
    if rng.random() < 0.5:
        for x in range(0, W, 8):
            d.polygon([(x, floor_y + 1), (x + 4, floor_y + 1), (x + 7, floor_y + 3), (x + 3, floor_y + 3)], fill=(230, 190, 20))
    ox, oy = rng.randint(-3, 3), rng.randint(-1, 2)
    kind = s["machine"]
    _machine(d, rng, kind, ox, oy)
    if s["guard_open"]:
        _moving_part(d, rng, kind, ox, oy)
    _guard(d, rng, kind, ox, oy, s["guard_open"])
    if s["lockout"]:
        _lockout(d, rng, kind, ox, oy)
    if s["spill"]:
        _spill(d, rng)
    if s["worker"]:
        side = rng.random() < 0.5
        x = (6 if side else 57) + rng.randint(-1, 1)
        _worker(d, rng, x, 42 + rng.randint(-1, 1), s["helmet"])
    _light(d, rng, s["light"])
    if s["smoke"]:
        _smoke(d, rng, ox)
    a = np.asarray(img, dtype=np.int16)
    noise = np.random.RandomState(s["seed"] % (2 ** 31)).randint(-6, 7, size=a.shape)
    return Image.fromarray(np.clip(a + noise, 0, 255).astype(np.uint8), "RGB")


def scene_key(s: Dict) -> Tuple:
    return (s["machine"], s["guard_open"], s["light"], s["worker"], s["helmet"], s["lockout"], s["spill"], s["smoke"])


def save_png(img: Image.Image, path: str):
    img.save(path, format="PNG", optimize=False, compress_level=9)
