"""Procedural textures for simulator worlds, and the set of textures a world's scene references.

Everything is drawn from a caller-supplied numpy Generator, so the same generator state gives the same pixels.
Patterns are periodic (they tile seamlessly under MuJoCo's texrepeat) and mix coarse and fine structure: coarse
blotches keep features visible from 5 m, speckles and poster shapes give SIFT corners at 1 m.

Nothing a camera sees up close repeats within a room: each side of a room is one strip of wall (one finish and
palette per room), and each wall along it, between doors, wears its own stretch of that strip; a rack's bays each
hold different cartons. When every 2 m of wall was the same picture, a localizer could not tell x from x + 2 m
anywhere, as it could in no real building; when a room's four sides wore one texture, a view of one wall fitted the
points of another turned 90°; when the walls either side of a door wore one texture, each starting it at its own
end, a view of one fitted the other's points a few metres along.
The warehouse's racks all wear the same texture, so its aisles still look alike and only their signs tell them
apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from schemas.world import Landmark, World
from sim.vocabulary import FLOOR_USES, KINDS

Color = tuple[float, float, float]

WALL_PX = 512  # one wall/floor tile
TILE = 2.0  # metres covered by one wall/floor tile: 256 px/m stays sharp at 320x240 from 1 m
POSTER_HEIGHTS = (2.0, 0.9)  # posters hang between these heights
MATERIAL_PX = 256
SIGN_PX = (256, 128)

# (base, accent) wall colours; each room draws a different one.
WALL_PALETTES: tuple[tuple[Color, Color], ...] = (
    ((0.86, 0.84, 0.78), (0.20, 0.35, 0.55)),
    ((0.78, 0.86, 0.80), (0.55, 0.20, 0.20)),
    ((0.88, 0.80, 0.70), (0.15, 0.40, 0.35)),
    ((0.75, 0.80, 0.88), (0.60, 0.45, 0.10)),
    ((0.90, 0.88, 0.86), (0.35, 0.20, 0.45)),
    ((0.82, 0.74, 0.74), (0.10, 0.30, 0.20)),
    ((0.70, 0.76, 0.70), (0.70, 0.35, 0.15)),
    ((0.92, 0.86, 0.64), (0.25, 0.25, 0.30)),
    ((0.66, 0.72, 0.80), (0.85, 0.80, 0.70)),
    ((0.80, 0.70, 0.82), (0.20, 0.45, 0.25)),
    ((0.74, 0.66, 0.56), (0.90, 0.88, 0.80)),
    ((0.60, 0.66, 0.62), (0.92, 0.70, 0.30)),
    ((0.88, 0.76, 0.62), (0.30, 0.30, 0.60)),
    ((0.84, 0.88, 0.90), (0.65, 0.15, 0.30)),
)

# Floor styles: base colour and the pattern drawn over it.
FLOOR_STYLES: dict[str, tuple[str, Color]] = {
    "carpet": ("carpet", (0.42, 0.44, 0.50)),
    "tiles": ("tiles", (0.80, 0.80, 0.76)),
    "vinyl": ("terrazzo", (0.72, 0.76, 0.74)),
    "wood": ("planks", (0.62, 0.46, 0.30)),
    "concrete": ("concrete", (0.58, 0.58, 0.56)),
}

# (background, text) colours of signs per world kind.
SIGN_STYLES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "office": ((40, 48, 60), (240, 240, 240)),
    "hospital": ((20, 80, 160), (255, 255, 255)),
    "home": ((120, 80, 45), (245, 232, 200)),
    "warehouse": ((245, 200, 30), (20, 20, 20)),
}
# The sign background as a colour name, for the landmark semantics.
SIGN_COLOR_NAMES: dict[str, str] = {"office": "dark gray", "hospital": "blue", "home": "brown", "warehouse": "yellow"}


def noise(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Periodic 1/f^beta noise, zero mean, unit variance; larger beta gives coarser blotches."""
    freq = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :])
    freq[0, 0] = 1.0
    spectrum = np.fft.rfft2(rng.standard_normal(shape)) / freq**beta
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=shape)
    return field / field.std()


def _speckle(rng: np.random.Generator, shape: tuple[int, int], count: int) -> np.ndarray:
    """Sparse bright and dark dots of 1-3 px (values in [-1, 1]), wrapped at the borders."""
    out = np.zeros(shape)
    rows, cols = rng.integers(0, shape[0], count), rng.integers(0, shape[1], count)
    sizes, signs = rng.integers(1, 4, count), rng.choice([-1.0, 1.0], count)
    for dr in range(3):
        for dc in range(3):
            hit = (dr < sizes) & (dc < sizes)
            out[(rows[hit] + dr) % shape[0], (cols[hit] + dc) % shape[1]] = signs[hit]
    return out


def _shade(base: Color, field: np.ndarray) -> np.ndarray:
    """Colour image = base colour scaled by (1 + field)."""
    return np.asarray(base)[None, None, :] * (1.0 + field[..., None])


def _to_image(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8), "RGB")


def _rgb255(color: Color | np.ndarray) -> tuple[int, int, int]:
    r, g, b = (round(float(c) * 255) for c in np.clip(color, 0, 1))
    return (r, g, b)


def _cells(rows: int, cols: int, stagger: bool, tiles: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (cell id, distance to the nearest cell border) for a rows x cols grid per tile, `tiles` tiles side
    by side; odd rows shift if stagger."""
    step_y, step_x = WALL_PX // rows, WALL_PX // cols
    cols *= tiles
    yy, xx = np.mgrid[0:WALL_PX, 0 : tiles * WALL_PX]
    row = yy // step_y
    xx = xx + np.where(stagger & (row % 2 == 1), step_x // 2, 0)
    ids = row * cols + (xx // step_x) % cols
    border = np.minimum.reduce([yy % step_y, step_y - 1 - yy % step_y, xx % step_x, step_x - 1 - xx % step_x])
    return ids, border


def _tiled(
    rng: np.random.Generator, base: Color, grid: tuple[int, int], stagger: bool, grout: float, tiles: int = 1
) -> np.ndarray:
    """Tiles, bricks or planks: per-cell tint, a darker grout line, and surface noise; `grid` cells per tile."""
    ids, border = _cells(*grid, stagger, tiles)
    tint = rng.normal(0.0, 0.06, grid[0] * grid[1] * tiles)[ids]
    field = tint + 0.05 * noise(rng, ids.shape, 0.6) - grout * (border < 3)
    return _shade(base, field)


def _posters(rng: np.random.Generator, img: Image.Image, accent: Color, count: int, rows: tuple[int, int]) -> None:
    """Draw framed posters full of shapes (strong, distinctive corners) between the given pixel rows."""
    draw = ImageDraw.Draw(img)
    for _ in range(count):
        w, h = int(rng.integers(70, 190)), int(rng.integers(60, min(190, rows[1] - rows[0] - 10)))
        x0, y0 = int(rng.integers(8, img.width - 8 - w)), int(rng.integers(rows[0], rows[1] - h))
        paper = _rgb255(rng.uniform(0.55, 0.95, 3))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=paper, outline=(30, 30, 30), width=4)
        for _ in range(int(rng.integers(4, 9))):
            sx0, sy0 = int(x0 + rng.integers(6, w - 20)), int(y0 + rng.integers(6, h - 20))
            sx1 = min(x0 + w - 6, sx0 + int(rng.integers(10, w // 2 + 11)))
            sy1 = min(y0 + h - 6, sy0 + int(rng.integers(8, h // 2 + 9)))
            fill = _rgb255(np.asarray(accent) * rng.uniform(0.3, 1.3) + rng.normal(0, 0.15, 3))
            shape = int(rng.integers(0, 3))
            if shape == 0:
                draw.rectangle([sx0, sy0, sx1, sy1], fill=fill)
            elif shape == 1:
                draw.ellipse([sx0, sy0, sx1, sy1], fill=fill, outline=(20, 20, 20), width=2)
            else:
                draw.line([sx0, sy0, sx1, sy1], fill=fill, width=int(rng.integers(2, 7)))


def wall_texture(
    rng: np.random.Generator, palette: tuple[Color, Color], poster_rows: tuple[int, int], tiles: int, finish: int
) -> Image.Image:
    """`tiles` wall tiles side by side in `finish` (0-3: plaster, stripes, tiles, bricks) with speckles, and posters
    hung between `poster_rows` (pixel rows from the top) so they appear at eye level rather than at the floor."""
    base, accent = palette
    shape = (WALL_PX, tiles * WALL_PX)
    if finish == 0:
        rgb = _shade(base, 0.10 * noise(rng, shape, 1.2) + 0.04 * noise(rng, shape, 0.3))
    elif finish == 1:
        period = int(rng.choice([32, 64, 128]))
        stripes = (np.arange(shape[1]) % period < period // 3)[None, :, None]
        rgb = _shade(base, 0.08 * noise(rng, shape, 1.0))
        rgb = np.where(stripes, rgb * 0.75 + 0.25 * np.asarray(accent), rgb)
    else:
        grid = (8, 8) if finish == 2 else (16, 8)
        rgb = _tiled(rng, base, grid, stagger=finish == 3, grout=0.25, tiles=tiles)
    rgb += 0.18 * _speckle(rng, shape, 2500 * tiles)[..., None]
    img = _to_image(rgb)
    _posters(rng, img, accent, int(rng.integers(1, 4, tiles).sum()), poster_rows)
    return img


def floor_texture(rng: np.random.Generator, style: str) -> Image.Image:
    """A floor tile: carpet, tiles, terrazzo vinyl, wooden planks or concrete (see FLOOR_STYLES)."""
    pattern, base = FLOOR_STYLES[style]
    shape = (WALL_PX, WALL_PX)
    if pattern == "tiles":
        rgb = _tiled(rng, base, (4, 4), stagger=False, grout=0.3)
    elif pattern == "planks":
        grain = np.repeat(noise(rng, (WALL_PX, WALL_PX // 16), 0.8), 16, axis=1)
        ids, border = _cells(8, 2, stagger=True)
        rgb = _shade(base, 0.12 * grain + rng.normal(0, 0.08, 16)[ids] - 0.3 * (border < 2))
    else:
        coarse = {"carpet": 0.06, "terrazzo": 0.05, "concrete": 0.16}[pattern]
        rgb = _shade(base, coarse * noise(rng, shape, 1.3) + 0.08 * noise(rng, shape, 0.2))
        if pattern == "terrazzo":
            flecks = _speckle(rng, shape, 6000)[..., None]
            rgb = np.where(flecks != 0, rng.uniform(0.2, 0.9, 3), rgb)
    rgb += 0.15 * _speckle(rng, shape, 3000)[..., None]
    return _to_image(rgb)


def ceiling_texture(rng: np.random.Generator) -> Image.Image:
    """Acoustic ceiling tiles: light panels, grid lines and dark pits."""
    rgb = _tiled(rng, (0.88, 0.88, 0.86), (4, 4), stagger=False, grout=0.35)
    rgb -= 0.25 * np.abs(_speckle(rng, (WALL_PX, WALL_PX), 5000))[..., None]
    return _to_image(rgb)


def material_texture(rng: np.random.Generator, material: str) -> Image.Image:
    """A light-grey surface pattern for a semantic material; MJCF tints it with the object's colour."""
    shape = (MATERIAL_PX, MATERIAL_PX)
    yy, xx = np.mgrid[0:MATERIAL_PX, 0:MATERIAL_PX]
    if material == "fabric":
        field = 0.10 * np.sin(xx * np.pi / 2) * np.sin(yy * np.pi / 2) + 0.08 * noise(rng, shape, 0.9)
    elif material == "wood":
        field = 0.15 * np.sin(yy / 5.0 + 2.0 * noise(rng, shape, 2.0)) + 0.05 * noise(rng, shape, 0.5)
    elif material == "metal":
        field = 0.10 * np.repeat(noise(rng, (MATERIAL_PX, 8), 0.5), 32, axis=1)
    elif material == "foliage":
        field = 0.6 * np.tanh(2.0 * noise(rng, shape, 0.7)) - 0.2
    else:  # plastic, ceramic: nearly plain, a little grain
        field = 0.04 * noise(rng, shape, 1.0)
    field += 0.12 * _speckle(rng, shape, 600)
    return _to_image(_shade((0.85, 0.85, 0.85), field))


def rack_texture(rng: np.random.Generator, bays: int) -> Image.Image:
    """A rack's face seen from the aisle: `bays` bays side by side, each stocked with other cartons."""
    return Image.fromarray(np.hstack([np.asarray(_bay_texture(rng)) for _ in range(bays)]))


def _bay_texture(rng: np.random.Generator) -> Image.Image:
    """One bay of pallet racking seen from the aisle: uprights, beams and cartons with labels."""
    img = _to_image(_shade((0.12, 0.12, 0.13), 0.2 * noise(rng, (WALL_PX, WALL_PX), 1.0)))
    draw = ImageDraw.Draw(img)
    beams = (170, 340, 500)
    for top, bottom in itertools.pairwise((0, *beams)):
        x = 20
        while x < WALL_PX - 60:
            w, h = int(rng.integers(60, 150)), int(rng.integers(60, bottom - top - 10))
            w = min(w, WALL_PX - 20 - x)
            carton = _rgb255(np.array([0.62, 0.45, 0.28]) * rng.uniform(0.8, 1.15))
            draw.rectangle([x, bottom - h, x + w, bottom], fill=carton, outline=(60, 40, 25), width=2)
            draw.rectangle([x + w // 2 - 4, bottom - h, x + w // 2 + 4, bottom], fill=(200, 180, 140))
            lx, ly = x + 8, bottom - h + 12
            draw.rectangle([lx, ly, lx + 40, ly + 24], fill=(245, 245, 240))
            for k in range(lx + 3, lx + 37, 3):
                draw.line([k, ly + 4, k, ly + 20], fill=(10, 10, 10), width=int(rng.integers(1, 3)))
            x += w + int(rng.integers(6, 20))
    for y in beams:
        draw.rectangle([0, y, WALL_PX, y + 11], fill=(230, 110, 20))
    for x in (0, WALL_PX - 16):
        draw.rectangle([x, 0, x + 15, WALL_PX], fill=(30, 70, 160))
        for y in range(8, WALL_PX, 24):
            draw.rectangle([x + 5, y, x + 10, y + 8], fill=(10, 10, 10))
    return img


def sign_texture(text: str, kind: str) -> Image.Image:
    """A sign plate with the text rendered as large as fits, on one or two lines, in the kind's colours."""
    background, foreground = SIGN_STYLES[kind]
    width, height = SIGN_PX
    img = Image.new("RGB", SIGN_PX, background)
    draw = ImageDraw.Draw(img)
    draw.rectangle([4, 4, width - 5, height - 5], outline=foreground, width=4)
    words = text.split()
    layouts = [text] + [" ".join(words[:k]) + "\n" + " ".join(words[k:]) for k in range(1, len(words))]
    for size in range(72, 9, -2):
        font = ImageFont.load_default(size=size)
        for candidate in layouts:
            left, top, right, bottom = draw.multiline_textbbox((0, 0), candidate, font=font, align="center")
            if right - left <= width - 24 and bottom - top <= height - 24:
                origin = ((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top)
                draw.multiline_text(origin, candidate, fill=foreground, font=font, align="center")
                return img
    raise ValueError(f"sign text {text!r} does not fit")


def wall_material(room_id: str, side: int, segment: int) -> str:
    """The material of one wall of a room: on `side` (0-3: west, south, east, north), the `segment`-th between doors."""
    return f"wall_{room_id}_{side}_{segment}"


def wall_room(material: str) -> str:
    """The id of the room whose walls wear `material` (wall_material's inverse)."""
    return material.removeprefix("wall_").rsplit("_", 2)[0]


def wall_lengths(world: World) -> dict[str, float]:
    """The length (m) each wall texture covers, by material name: once the longest wall wearing it."""
    lengths: dict[str, float] = {}
    for wall in world.walls:
        lengths[wall.material] = max(lengths.get(wall.material, 0.0), 2 * max(wall.box.half_size[:2]))
    return lengths


def wall_side(material: str) -> str:
    """The side of a room a wall material belongs to: the material less its segment (wall_material's)."""
    return material.rsplit("_", 1)[0]


def _wall_stretches(world: World) -> dict[str, dict[str, tuple[float, float]]]:
    """For each side of a room (material names less the segment), where along its strip each material's wall
    starts and how long it is, m; a material worn by several walls takes its longest."""
    spans: dict[str, dict[str, tuple[int, float, float]]] = {}
    for wall in sorted(world.walls, key=lambda w: max(w.box.half_size[:2])):
        along = 0 if wall.box.half_size[0] >= wall.box.half_size[1] else 1
        start = wall.box.center[along] - wall.box.half_size[along]
        spans.setdefault(wall_side(wall.material), {})[wall.material] = (
            along,
            start,
            2 * wall.box.half_size[along],
        )
    stretches = {}
    for side, walls in spans.items():
        origin = {along: min(start for a, start, _ in walls.values() if a == along) for along, _, _ in walls.values()}
        stretches[side] = {m: (start - origin[along], length) for m, (along, start, length) in walls.items()}
    return stretches


def rack_bays(rack: Landmark) -> int:
    """How many TILE-wide bays a pallet rack holds along its length."""
    return max(1, round(2 * max(rack.box.half_size[:2]) / TILE))


def landmark_texture(lm: Landmark) -> str:
    """The name of the texture a landmark wears."""
    if lm.kind == "sign":
        return f"sign_{lm.id}"
    return "rack" if lm.category == "pallet rack" else f"mat_{lm.material}"


def world_textures(world: World, rng: Callable[[str], np.random.Generator]) -> dict[str, Image.Image]:
    """Every texture a world's scene references, by name; `rng(name)` gives each its own generator."""
    spec = KINDS[world.kind]
    images = {
        f"floor_{use}": floor_texture(rng(use), style) for use, style in zip(FLOOR_USES, spec.floors, strict=True)
    }
    images["ceiling"] = ceiling_texture(rng("ceiling"))
    materials = {w.material for w in world.walls}
    walled = [r for r in world.rooms if any(wall_room(m) == r.id for m in materials)]
    palettes = rng("palettes").permutation(len(WALL_PALETTES))
    # wall textures are anchored at the wall's top edge
    rows = tuple(int((world.wall_height - z) / TILE * WALL_PX) for z in POSTER_HEIGHTS)
    stretches = _wall_stretches(world)
    for i, room in enumerate(walled):
        palette = WALL_PALETTES[palettes[i % len(palettes)]]
        finish = int(rng(f"wall_{room.id}").integers(0, 4))
        for side, walls in sorted(stretches.items()):
            if wall_room(next(iter(walls))) != room.id:
                continue
            tiles = math.ceil(max(start + length for start, length in walls.values()) / TILE - 1e-6)
            strip = wall_texture(rng(side), palette, rows, tiles, finish)
            for name, (start, length) in walls.items():
                left = round(start * WALL_PX / TILE)
                images[name] = strip.crop((left, 0, left + max(1, round(length * WALL_PX / TILE)), WALL_PX))
    for lm in world.landmarks:
        name = landmark_texture(lm)
        if name in images:
            continue
        if lm.kind == "sign":
            images[name] = sign_texture(lm.text, world.kind)
        elif name == "rack":
            images[name] = rack_texture(rng(name), rack_bays(lm))
        else:
            images[name] = material_texture(rng(name), lm.material)
    return images
