"""The synthetic video world: one coloured shape moving in one direction over a plain background.

Each clip is fully described by a ``ClipSpec`` and captioned "a {color} {shape} moving {direction}",
so whether a generated clip matches its prompt can be measured from pixels (colour of the moving
blob, its shape, the direction its centroid moves). ``make_dataset`` writes such clips in the format
``videosspo.data`` reads (videos + metadata.jsonl), optionally with a loser clip per caption: the
same caption rendered wrongly (another colour, shape or direction), for paired DPO-style data.

Frame sizes: the default 64x64 is read by decord; decord 0.6 mis-reads some widths (48 px fails
with "DECORDArrayCopyFromTo: The size must exactly match"). ``videosspo.video.read_video`` then
falls back to PyAV for that clip, so any size works, only slower and with a warning per file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from videosspo.errors import DataError
from videosspo.video import write_video

# Saturated object colours, pairwise at least ~100 apart in RGB, all far from the backgrounds.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "purple": (160, 0, 255),
    "cyan": (0, 255, 255),
    "orange": (255, 128, 0),
}
SHAPES = ("square", "circle", "triangle")
# Unit motion per frame in image coordinates (x right, y down).
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# Dark, unsaturated backgrounds, so the object is the only saturated region of a frame.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "charcoal": (40, 40, 40),
    "gray": (90, 90, 90),
    "slate": (40, 50, 70),
}

_CAPTION = re.compile(r"a (?P<color>\w+) (?P<shape>\w+) moving (?P<direction>\w+)")


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip. Positions are continuous: pixel (row i, column j) covers [j, j+1] x [i, i+1]."""

    color: str  # key of COLORS
    shape: str  # one of SHAPES
    direction: str  # key of DIRECTIONS
    background: str  # key of BACKGROUNDS
    size: int  # side of the square / diameter of the circle / base and height of the triangle, px
    x0: float  # object centre at frame 0, px
    y0: float
    speed: float  # px per frame along DIRECTIONS[direction]

    def __post_init__(self):
        for field, table in (
            ("color", COLORS),
            ("shape", SHAPES),
            ("direction", DIRECTIONS),
            ("background", BACKGROUNDS),
        ):
            if getattr(self, field) not in table:
                raise ValueError(f"unknown {field} {getattr(self, field)!r}; choose one of {list(table)}")
        if self.size < 1 or self.speed < 0:
            raise ValueError(f"size must be >= 1 and speed >= 0, got size={self.size}, speed={self.speed}")

    @property
    def caption(self) -> str:
        return f"a {self.color} {self.shape} moving {self.direction}"

    def center(self, t: int) -> tuple[float, float]:
        """Object centre (x, y) at frame t."""
        dx, dy = DIRECTIONS[self.direction]
        return self.x0 + dx * self.speed * t, self.y0 + dy * self.speed * t

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClipSpec:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ClipSpec keys {sorted(unknown)}")
        return cls(**d)


def parse_caption(caption: str) -> dict | None:
    """``{"color", "shape", "direction"}`` from a caption written by ``ClipSpec.caption``; None if it is not one."""
    match = _CAPTION.fullmatch(caption.strip().lower())
    if match is None:
        return None
    parts = match.groupdict()
    if parts["color"] in COLORS and parts["shape"] in SHAPES and parts["direction"] in DIRECTIONS:
        return parts
    return None


def shape_stamp(shape: str, size: int) -> np.ndarray:
    """Boolean (size, size) mask of the pixels whose centres fall inside the shape."""
    y, x = np.mgrid[:size, :size] + 0.5  # pixel centres; the shape's centre is at (size/2, size/2)
    half = size / 2
    if shape == "square":
        return np.ones((size, size), bool)
    if shape == "circle":
        return (x - half) ** 2 + (y - half) ** 2 <= half**2
    # triangle pointing up: apex at the top centre, base along the bottom row
    return np.abs(x - half) <= y / 2


def render_clip(spec: ClipSpec, frames: int, height: int, width: int) -> np.ndarray:
    """Render ``spec`` as ``uint8 (frames, height, width, 3)``.

    The object is stamped at the whole pixel nearest its continuous position, so its shape and
    pixel count are identical in every frame (no aliasing flicker) while the speed is kept on average.
    """
    clip = np.empty((frames, height, width, 3), np.uint8)
    clip[:] = BACKGROUNDS[spec.background]
    stamp = shape_stamp(spec.shape, spec.size)
    for t in range(frames):
        cx, cy = spec.center(t)
        left, top = (int(np.floor(c - spec.size / 2 + 0.5)) for c in (cx, cy))
        if left < 0 or top < 0 or left + spec.size > width or top + spec.size > height:
            raise ValueError(f"{spec} leaves the {height}x{width} frame at frame {t}")
        clip[t, top : top + spec.size, left : left + spec.size][stamp] = COLORS[spec.color]
    return clip


# How far an object travels over a clip, as a fraction of the room its centre has along the motion axis.
TRAVEL: tuple[float, float] = (0.4, 0.8)


def _place(
    rng: np.random.Generator,
    direction: str,
    size: int,
    frames: int,
    height: int,
    width: int,
    travel: tuple[float, float] = TRAVEL,
):
    """A start centre and speed such that the object travels a fraction in `travel` of the free room and stays inside."""
    dx, dy = DIRECTIONS[direction]
    half = size / 2
    room = (width if dx else height) - size  # how far the centre can move along the motion axis
    speed = rng.uniform(*travel) * room / max(frames - 1, 1)
    travel = speed * (frames - 1)

    def start(step: int, extent: int) -> float:
        if step > 0:
            return rng.uniform(half, extent - half - travel)
        if step < 0:
            return rng.uniform(half + travel, extent - half)
        return rng.uniform(half, extent - half)

    return start(dx, width), start(dy, height), speed


def default_sizes(height: int, width: int) -> tuple[int, int]:
    """Object sizes (smallest, largest) in px of a world without `sizes`: 1/8 to 1/4 of the shorter side, at least 3."""
    short = min(height, width)
    lo = max(3, short // 8)
    return lo, max(lo, short // 4)


def random_spec(
    rng: np.random.Generator,
    height: int,
    width: int,
    frames: int,
    sizes: tuple[int, int] | None = None,
    travel: tuple[float, float] = TRAVEL,
) -> ClipSpec:
    """A random clip that keeps the whole object inside the frame for all ``frames``.

    ``sizes``: (smallest, largest) object side in px (default ``default_sizes``); ``travel``: see ``_place``.
    """
    short = min(height, width)
    lo, hi = sizes or default_sizes(height, width)
    size = int(rng.integers(lo, hi + 1))
    if size >= short:
        raise ValueError(f"frames of {height}x{width} are too small for a {size} px object")
    color = str(rng.choice(list(COLORS)))
    shape = str(rng.choice(SHAPES))
    direction = str(rng.choice(list(DIRECTIONS)))
    background = str(rng.choice(list(BACKGROUNDS)))
    x0, y0, speed = _place(rng, direction, size, frames, height, width, travel)
    return ClipSpec(color, shape, direction, background, size, x0, y0, speed)


def mismatched_spec(
    spec: ClipSpec,
    rng: np.random.Generator,
    height: int,
    width: int,
    frames: int,
    attributes: tuple[str, ...] = ("color", "shape", "direction"),
    travel: tuple[float, float] = TRAVEL,
) -> ClipSpec:
    """``spec`` with exactly one of ``attributes`` changed: a clip that contradicts its caption.

    Everything else (background, size, position, speed) is kept, except that a new direction gets a
    new start and speed so the object still stays inside the frame.
    """
    attribute = str(rng.choice(list(attributes)))
    options = {"color": list(COLORS), "shape": list(SHAPES), "direction": list(DIRECTIONS)}[attribute]
    new = str(rng.choice([o for o in options if o != getattr(spec, attribute)]))
    if attribute != "direction":
        return dataclasses.replace(spec, **{attribute: new})
    x0, y0, speed = _place(rng, new, spec.size, frames, height, width, travel)
    return dataclasses.replace(spec, direction=new, x0=x0, y0=y0, speed=speed)


def make_dataset(
    out_dir: str | os.PathLike,
    n: int,
    frames: int = 16,
    height: int = 64,
    width: int = 64,
    fps: float = 8,
    seed: int = 0,
    paired: bool = False,
    progress: bool = True,
    caption_noise: float = 0.0,
    exclude: tuple[tuple[str, str], ...] = (),
    lossless: bool = False,
    sizes: tuple[int, int] | None = None,
    travel: tuple[float, float] = TRAVEL,
) -> Path:
    """Write ``n`` clips to ``out_dir/videos/`` and ``out_dir/metadata.jsonl``; returns ``out_dir``.

    Clip i depends only on (seed, i), so a smaller ``n`` gives a prefix of a larger one. The args are
    saved in ``synth_info.json``; running again with the same args on a complete folder does nothing
    (an interrupted run is redone), with other args it is an error. metadata.jsonl is written last,
    so its presence marks a complete dataset.

    ``caption_noise``: the fraction of clips (drawn per clip) whose video shows another colour or
    direction than its caption says, like web captions (``attributes`` is what the video shows,
    ``caption_correct`` says whether it matches). ``exclude``: (colour, direction) pairs no caption
    uses (held-out combinations). ``lossless``: exact pixels (see ``videosspo.video.write_video``).
    ``sizes``: (smallest, largest) object side in px (default: 1/8 to 1/4 of the frame, ``default_sizes``);
    ``travel``: the range of the fraction of the free room an object crosses in a clip (default 0.4-0.8;
    (1, 1): from one edge to the other, so the direction fixes where the object is in each frame).
    """
    if n < 1 or frames < 1:
        raise DataError(f"n and frames must be >= 1, got n={n}, frames={frames}")
    if not 0 <= caption_noise <= 1:
        raise ValueError(f"caption_noise must be in [0, 1], got {caption_noise}")
    if sizes is not None and not 1 <= sizes[0] <= sizes[1] < min(height, width):
        raise DataError(
            f"sizes must be (smallest, largest) with 1 <= smallest <= largest < {min(height, width)} px, got {sizes}"
        )
    if not 0 <= travel[0] <= travel[1] <= 1:
        raise DataError(f"travel must be (lowest, highest) fractions with 0 <= lowest <= highest <= 1, got {travel}")
    exclude = tuple(tuple(pair) for pair in exclude)
    out_dir = Path(out_dir)
    info = {"n": n, "frames": frames, "height": height, "width": width, "fps": fps, "seed": seed, "paired": paired}
    if caption_noise or exclude or lossless:  # recorded only when used, so older folders stay valid
        info |= {"caption_noise": caption_noise, "exclude": [list(p) for p in exclude], "lossless": lossless}
    if (
        sizes is not None or tuple(travel) != TRAVEL
    ):  # likewise: the worlds written before these options keep their info
        info |= {"sizes": list(sizes or default_sizes(height, width)), "travel": list(travel)}
    info_path, metadata_path = out_dir / "synth_info.json", out_dir / "metadata.jsonl"
    if info_path.exists():
        previous = json.loads(info_path.read_text())
        if previous != info:
            raise DataError(
                f"{out_dir} already holds a synthetic dataset made with {previous}, not {info}; "
                f"choose another output folder (or delete this one)"
            )
        if metadata_path.exists():
            return out_dir
    elif out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir} is not empty and is not a synthetic dataset folder; choose another output folder")
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=1) + "\n")

    rows = []
    for i in tqdm(range(n), desc="synthetic clips", disable=not progress):
        rng = np.random.default_rng((seed, i))
        spec = random_spec(rng, height, width, frames, sizes, travel)
        while (spec.color, spec.direction) in exclude:
            spec = random_spec(rng, height, width, frames, sizes, travel)
        shown = spec
        if caption_noise and rng.random() < caption_noise:
            shown = mismatched_spec(spec, rng, height, width, frames, attributes=("color", "direction"), travel=travel)
        row = {
            "video": f"videos/{i:05d}.mp4",
            "caption": spec.caption,
            "attributes": shown.to_dict(),
            "frames": frames,
            "fps": fps,
        }
        if caption_noise:
            row["caption_correct"] = shown == spec
        write_video(out_dir / row["video"], render_clip(shown, frames, height, width), fps=fps, lossless=lossless)
        if paired:
            loser = mismatched_spec(spec, rng, height, width, frames, travel=travel)
            row |= {"loser_video": f"videos/{i:05d}_loser.mp4", "loser_attributes": loser.to_dict()}
            write_video(
                out_dir / row["loser_video"], render_clip(loser, frames, height, width), fps=fps, lossless=lossless
            )
        rows.append(row)

    tmp = metadata_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(tmp, metadata_path)
    return out_dir


# ----------------------------------------------------------------------------- the alignment world

# Held-out (colour, direction) combinations: one direction per colour, each direction with two
# colours. The curated (alignment) split never captions them; the web split (pre-training) does.
HELDOUT: tuple[tuple[str, str], ...] = tuple((c, list(DIRECTIONS)[i % len(DIRECTIONS)]) for i, c in enumerate(COLORS))


def heldout_prompts() -> list[str]:
    """Every caption of a held-out combination (8 colours x 3 shapes = 24 prompts)."""
    return [f"a {c} {s} moving {d}" for c, d in HELDOUT for s in SHAPES]


def seen_prompts() -> list[str]:
    """As many captions of combinations the curated split does use: each colour with the next direction."""
    directions = list(DIRECTIONS)
    return [f"a {c} {s} moving {directions[(i + 1) % len(directions)]}" for i, c in enumerate(COLORS) for s in SHAPES]


@dataclass(frozen=True)
class World:
    """The folders of one alignment world (see ``make_world``)."""

    root: Path

    @property
    def web(self) -> Path:
        return self.root / "web"

    @property
    def curated(self) -> Path:
        return self.root / "curated"


# Named worlds (`data.world`): make_world's object options. v1 wrote assets/stacked_base's world. v2 shows
# direction at 16x16: objects of 5-7 px crossing 80-100% of the frame, so a caption's direction word says
# where the object is in each frame (v1's base ignores that word: docs/alignment.md, "A testbed with headroom").
WORLDS: dict[str, dict] = {"v1": {}, "v2": {"sizes": (5, 7), "travel": (0.8, 1.0)}}


def make_world(
    out_dir: str | os.PathLike,
    n_web: int = 4096,
    n_curated: int = 256,
    caption_noise: float = 0.4,
    frames: int = 8,
    size: int = 16,
    seed: int = 0,
    progress: bool = True,
    sizes: tuple[int, int] | None = None,
    travel: tuple[float, float] = TRAVEL,
) -> World:
    """The data of the alignment study: a noisy ``web/`` split and a small ``curated/`` one.

    web/      ``n_web`` clips, ``caption_noise`` of them showing another colour or direction than
              their caption (pre-training data: the base learns to follow prompts only partly);
    curated/  ``n_curated`` correct clips of the non-held-out combinations (the winners), each with
              a wrong clip for the same caption as ``loser_video`` (Diffusion-DPO's pairs).
    Held-out prompts (``heldout_prompts``) use combinations absent from curated/. Clips are lossless.
    ``sizes`` and ``travel``: the objects and their motion (``make_dataset``; ``WORLDS`` names sets of them).
    """
    world = World(Path(out_dir))
    args = dict(frames=frames, height=size, width=size, progress=progress, lossless=True, sizes=sizes, travel=travel)
    make_dataset(world.web, n_web, seed=seed, caption_noise=caption_noise, **args)
    make_dataset(world.curated, n_curated, seed=seed + 1, paired=True, exclude=HELDOUT, **args)
    return world
