"""Synthetic Cityscapes-like street scenes, written in both layouts (the Lab 05 fixture).

The scenes are learnable on purpose (sky on top, buildings, road at the bottom, cars, people,
poles and signs, vegetation) so a SMOKE run can assert that a tiny model learned something.
It sits above :mod:`labkit.data.cityscapes` (it uses the class table and the layouts from there); the
reader never imports it. Call :func:`make_fixture` from here.

Example:
    >>> import tempfile
    >>> from labkit.data.cityscapes import Cityscapes8
    >>> root = make_fixture(tempfile.mkdtemp(), n_train=2, n_val=1, size=(32, 64))
    >>> [len(Cityscapes8(root, split, image_size=(32, 64))) for split in ("training", "validation")]
    [2, 1]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from labkit.data.cityscapes import _CLASSES, _OTHER_NAME, LAYOUTS

# Cityscapes label ids the fixture draws (official ids; their colours give the course layout).
_ID = {"ego vehicle": 1, "road": 7, "sidewalk": 8, "building": 11, "pole": 17, "traffic sign": 20,
       "vegetation": 21, "sky": 23, "person": 24, "car": 26}
_ID_TO_COLOR = np.zeros((256, 3), np.uint8)
for _class in _CLASSES:
    _ID_TO_COLOR[_class.id] = _class.color
_FIXTURE_CITIES = {"train": "aachen", "val": "frankfurt"}


def _street_scene(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One street: sky, buildings and trees, sidewalk, road, poles with signs, cars, people, and
    the ego vehicle's bonnet. Returns image uint8 (H, W, 3) and Cityscapes label ids uint8 (H, W)."""
    height, width = size
    image = np.zeros((height, width, 3), np.float64)
    ids = np.zeros((height, width), np.uint8)
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]

    def paint(region, label_id, colour):
        ids[region] = label_id
        image[region] = colour

    horizon = int(rng.uniform(0.35, 0.5) * height)
    sidewalk_top = horizon + int(0.1 * height)
    road_top = sidewalk_top + int(0.07 * height)
    bonnet_top = height - max(2, int(0.08 * height))
    # Sky: a vertical gradient from deep to pale blue.
    sky_rows = np.linspace(0, 1, height)[:, None, None]
    paint(np.broadcast_to(rows < sidewalk_top, (height, width)), _ID["sky"], 0)
    image[:sidewalk_top] = (np.array([110, 160, 225]) + sky_rows[:sidewalk_top] * [80, 60, 25])
    # Buildings and trees along the street, each reaching a random height above the horizon.
    x = 0
    while x < width:
        block = int(rng.uniform(0.1, 0.3) * width)
        top = int(rng.uniform(0.05, 0.3) * height)
        span = (cols >= x) & (cols < x + block)
        if rng.random() < 0.25:  # a tree: a green crown on the ground
            centre_x, centre_y = x + block / 2, (top + sidewalk_top) / 2
            crown = ((cols - centre_x) / (block / 2)) ** 2 + ((rows - centre_y) / ((sidewalk_top - top) / 2)) ** 2 <= 1
            paint(crown, _ID["vegetation"], rng.uniform([40, 100, 25], [80, 150, 60]))
        else:
            facade = span & (rows >= top) & (rows < sidewalk_top)
            paint(facade, _ID["building"], rng.uniform(90, 170) * rng.uniform(0.9, 1.1, 3))
            windows = facade & ((rows - top) % 6 >= 3) & ((cols - x) % 5 >= 3)
            image[windows] *= 0.55  # darker windows, still building
        x += block
    paint(np.broadcast_to((rows >= sidewalk_top) & (rows < road_top), (height, width)),
          _ID["sidewalk"], (175, 170, 165))
    paint(np.broadcast_to((rows >= road_top) & (rows < bonnet_top), (height, width)),
          _ID["road"], rng.uniform(70, 100) * np.array([1.0, 0.95, 1.05]))
    lane_y = (road_top + bonnet_top) // 2
    image[lane_y:lane_y + 1, (np.arange(width) % 12) < 6] = 235  # dashed lane marking, still road
    for _ in range(rng.integers(1, 3)):  # poles carrying a traffic sign
        pole_x = int(rng.uniform(0.05, 0.95) * width)
        pole_top = int(rng.uniform(0.15, 0.3) * height)
        paint((cols >= pole_x) & (cols < pole_x + 2) & (rows >= pole_top) & (rows < road_top),
              _ID["pole"], (125, 125, 130))
        sign = (abs(cols - pole_x - 1) <= 3) & (rows >= pole_top) & (rows < pole_top + 5)
        paint(sign, _ID["traffic sign"], (225, 200, 30))
    for _ in range(rng.integers(1, 4)):  # cars on the road
        car_width = int(rng.uniform(0.12, 0.22) * width)
        car_height = max(4, int(car_width * rng.uniform(0.4, 0.55)))
        left = int(rng.uniform(0, 1) * (width - car_width))
        bottom = int(rng.uniform(road_top + car_height * 0.6, bonnet_top))
        body = (cols >= left) & (cols < left + car_width) & (rows < bottom) & (rows >= bottom - car_height)
        paint(body, _ID["car"], [(20, 30, 120), (160, 25, 25), (215, 215, 220), (30, 30, 35)][rng.integers(4)])
        glass = body & (rows < bottom - car_height // 2) & (cols >= left + 2) & (cols < left + car_width - 2)
        image[glass] = (60, 80, 95)
    for _ in range(rng.integers(0, 3)):  # people on the sidewalk
        person_height = int(rng.uniform(0.15, 0.25) * height)
        centre_x = rng.uniform(0.05, 0.95) * width
        feet = road_top - 1
        centre_y = feet - person_height / 2
        body = ((cols - centre_x) / max(1.5, person_height * 0.18)) ** 2 + \
               ((rows - centre_y) / (person_height / 2)) ** 2 <= 1
        paint(body, _ID["person"], rng.uniform([120, 0, 40], [240, 60, 120]))
        image[body & (rows < feet - person_height * 0.8)] = (225, 180, 150)  # head
    paint(np.broadcast_to(rows >= bonnet_top, (height, width)), _ID["ego vehicle"], (35, 35, 40))
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), ids


def make_fixture(root: str | Path, *, n_train: int = 24, n_val: int = 8, size: tuple[int, int] = (64, 128),
                 seed: int = 0, layouts: tuple[str, ...] = LAYOUTS) -> Path:
    """Write small learnable synthetic street scenes in the official and/or course layout.

    The same scenes go into both layouts: PNG images, official ``*_gtFine_labelIds.png`` label ids
    and course ``semantic_rgb`` images in the class colours, so both read to identical category
    maps. (H, W) = `size`; `n_train` scenes go to train/training and `n_val` to val/validation.
    Deterministic for a given `seed`. Returns `root`.
    """
    unknown = set(layouts) - set(LAYOUTS)
    if unknown or not layouts:
        raise ValueError(f"layouts must be a subset of {LAYOUTS}, got {layouts}")
    root, rng = Path(root), np.random.default_rng(seed)
    for official_split, count in (("train", n_train), ("val", n_val)):
        course_split = _OTHER_NAME[official_split]
        city = _FIXTURE_CITIES[official_split]
        for k in range(count):
            image, ids = _street_scene(rng, size)
            if "official" in layouts:
                stem = f"{city}_{k:06d}_000019"
                image_dir = root / "leftImg8bit" / official_split / city
                label_dir = root / "gtFine" / official_split / city
                image_dir.mkdir(parents=True, exist_ok=True)
                label_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(image_dir / f"{stem}_leftImg8bit.png")
                Image.fromarray(ids).save(label_dir / f"{stem}_gtFine_labelIds.png")
            if "course" in layouts:
                for folder, picture in (("image", image), ("semantic_rgb", _ID_TO_COLOR[ids])):
                    (root / course_split / folder).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(picture).save(root / course_split / folder / f"{k:04d}.png")
    return root
