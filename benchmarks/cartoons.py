"""Synthetic cartoon characters, drawn here (no third-party art): benchmark inputs and README pictures.

A character is a head with an outline, eyes, a mouth and spiky hair on a shirted body, in random colours and
poses, anti-aliased like cartoon frames; on white (a sprite, so background mixing cuts it out exactly) or on
a simple scene of sky, sun, ground, a house and a tree (so mixing falls back to its soft mask).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 3
"""Drawn this many times larger, then shrunk: anti-aliased outlines."""
SKIN = [(255, 217, 15), (240, 190, 140), (170, 110, 70)]
HAIR = [(40, 30, 20), (90, 120, 220), (250, 250, 250), (200, 60, 20)]
SHIRT = [(230, 90, 30), (60, 160, 70), (240, 240, 240), (120, 60, 160), (40, 110, 200)]
OUTLINE = (0, 0, 0)
WHITE = (255, 255, 255)


def cartoon(seed: int, width: int = 400, height: int = 300, scene: bool = False) -> Image.Image:
    """One character on white (``scene=False``) or on a scene, as an RGB image."""
    rng = np.random.default_rng(seed)
    big = (width * SUPERSAMPLE, height * SUPERSAMPLE)
    image = Image.new("RGB", big, WHITE)
    draw = ImageDraw.Draw(image)
    if scene:
        _scene(draw, big, rng)
    _character(draw, big, rng)
    return image.resize((width, height), Image.LANCZOS)


def _pick(rng: np.random.Generator, colours: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    return colours[int(rng.integers(len(colours)))]


def _scene(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: np.random.Generator) -> None:
    width, height = size
    horizon = int(height * rng.uniform(0.55, 0.7))
    top, bottom = np.array([70, 140, 230]), np.array([190, 225, 250])
    for y in range(horizon):  # sky gradient
        colour = top + (bottom - top) * y / horizon
        draw.line([(0, y), (width, y)], fill=tuple(int(c) for c in colour))
    draw.rectangle([0, horizon, width, height], fill=(110, 180, 80))
    sun = rng.uniform(0.05, 0.95) * width, 0.15 * height
    draw.ellipse([sun[0] - 0.07 * height, sun[1] - 0.07 * height, sun[0] + 0.07 * height, sun[1] + 0.07 * height],
                 fill=(255, 230, 90))
    house_left = rng.uniform(0.0, 0.3) * width if rng.random() < 0.5 else rng.uniform(0.65, 0.8) * width
    house_width, house_height = 0.22 * width, 0.25 * height
    base = horizon + 0.05 * height
    draw.rectangle([house_left, base - house_height, house_left + house_width, base], fill=(230, 200, 160),
                   outline=OUTLINE, width=SUPERSAMPLE * 2)
    roof = [
        (house_left - 0.02 * width, base - house_height),
        (house_left + house_width / 2, base - 1.8 * house_height),
        (house_left + house_width + 0.02 * width, base - house_height),
    ]
    draw.polygon(roof, fill=(170, 60, 50), outline=OUTLINE)
    tree_x = rng.uniform(0.35, 0.65) * width
    draw.rectangle([tree_x - 0.015 * width, horizon - 0.1 * height, tree_x + 0.015 * width, horizon + 0.04 * height],
                   fill=(120, 80, 40))
    draw.ellipse([tree_x - 0.08 * width, horizon - 0.3 * height, tree_x + 0.08 * width, horizon - 0.07 * height],
                 fill=(50, 130, 60), outline=OUTLINE, width=SUPERSAMPLE * 2)


def _character(draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: np.random.Generator) -> None:
    width, height = size
    line = SUPERSAMPLE * 3
    head = height * rng.uniform(0.16, 0.22)  # radius
    cx = width * rng.uniform(0.35, 0.65)
    cy = height * rng.uniform(0.3, 0.42)
    skin, hair, shirt = _pick(rng, SKIN), _pick(rng, HAIR), _pick(rng, SHIRT)
    # body and arms
    body_top, body_bottom = cy + 0.8 * head, min(height * 0.98, cy + 3.0 * head)
    draw.rounded_rectangle([cx - 1.0 * head, body_top, cx + 1.0 * head, body_bottom], radius=head * 0.4, fill=shirt,
                           outline=OUTLINE, width=line)
    for side in (-1, 1):
        lift = rng.uniform(-0.8, 0.6) * head
        hand = (cx + side * 1.7 * head, body_top + 0.9 * head + lift)
        draw.line([(cx + side * 0.9 * head, body_top + 0.4 * head), hand], fill=OUTLINE, width=line * 4)
        draw.line([(cx + side * 0.9 * head, body_top + 0.4 * head), hand], fill=shirt, width=line * 2)
        draw.ellipse([hand[0] - 0.2 * head, hand[1] - 0.2 * head, hand[0] + 0.2 * head, hand[1] + 0.2 * head],
                     fill=skin, outline=OUTLINE, width=line)
    # spiky hair behind the head
    spikes = int(rng.integers(5, 9))
    angles = np.linspace(np.pi * 1.1, np.pi * 1.9, spikes * 2 + 1)
    radii = np.where(np.arange(len(angles)) % 2 == 1, head * rng.uniform(1.25, 1.5), head * 0.9)
    draw.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii)], fill=hair, outline=OUTLINE,
                 width=line)
    # head, eyes, mouth
    draw.ellipse([cx - head, cy - head, cx + head, cy + head], fill=skin, outline=OUTLINE, width=line)
    look = rng.uniform(-0.08, 0.08, 2) * head
    for side in (-1, 1):
        ex, ey = cx + side * 0.38 * head, cy - 0.1 * head
        draw.ellipse([ex - 0.3 * head, ey - 0.3 * head, ex + 0.3 * head, ey + 0.3 * head], fill=WHITE, outline=OUTLINE,
                     width=line)
        px, py = ex + look[0], ey + look[1]
        draw.ellipse([px - 0.08 * head, py - 0.08 * head, px + 0.08 * head, py + 0.08 * head], fill=OUTLINE)
    smile = rng.uniform(10, 40)
    draw.arc([cx - 0.45 * head, cy + 0.05 * head, cx + 0.45 * head, cy + 0.6 * head], smile, 180 - smile, fill=OUTLINE,
             width=line)
