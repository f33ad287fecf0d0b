"""Synthetic world: captions, rendering (inside the frame, right colour, right motion), dataset writing."""

import itertools
import json

import numpy as np
import pytest

from videosspo.synth import (
    BACKGROUNDS,
    COLORS,
    DIRECTIONS,
    SHAPES,
    TRAVEL,
    WORLDS,
    ClipSpec,
    make_dataset,
    make_world,
    mismatched_spec,
    parse_caption,
    random_spec,
    render_clip,
    shape_stamp,
)
from videosspo.video import read_video


def object_mask(clip: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """(f, h, w) mask of pixels that differ from the clip's background."""
    return np.any(clip != np.array(BACKGROUNDS[spec.background], np.uint8), axis=-1)


def test_caption_parse_round_trip():
    for color, shape, direction in itertools.product(COLORS, SHAPES, DIRECTIONS):
        spec = ClipSpec(color, shape, direction, "black", 8, 20.0, 20.0, 1.0)
        assert spec.caption == f"a {color} {shape} moving {direction}"
        assert parse_caption(spec.caption) == {"color": color, "shape": shape, "direction": direction}
    assert parse_caption("  A Red Square moving LEFT ") == {"color": "red", "shape": "square", "direction": "left"}
    for bad in [
        "a red square",
        "a pink square moving left",
        "a red hexagon moving left",
        "a red square moving sideways",
        "two red squares moving left",
    ]:
        assert parse_caption(bad) is None


def test_spec_dict_round_trip_and_validation():
    spec = random_spec(np.random.default_rng(0), 64, 64, 16)
    assert ClipSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="unknown color 'pink'"):
        ClipSpec("pink", "square", "left", "black", 8, 20.0, 20.0, 1.0)
    with pytest.raises(ValueError, match="unknown ClipSpec keys"):
        ClipSpec.from_dict(spec.to_dict() | {"angle": 3})


def test_colours_are_separated_from_each_other_and_from_backgrounds():
    colours = np.array(list(COLORS.values()), float)
    backgrounds = np.array(list(BACKGROUNDS.values()), float)
    pairwise = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert pairwise[~np.eye(len(colours), dtype=bool)].min() >= 100
    assert np.linalg.norm(colours[:, None] - backgrounds[None], axis=-1).min() >= 150


@pytest.mark.parametrize("height, width", [(64, 64), (32, 48)])
def test_random_clips_stay_inside_move_the_right_way_and_have_the_right_colour(height, width):
    rng = np.random.default_rng(1)
    frames = 8
    for _ in range(40):
        spec = random_spec(rng, height, width, frames)
        clip = render_clip(spec, frames, height, width)
        assert clip.shape == (frames, height, width, 3) and clip.dtype == np.uint8
        mask = object_mask(clip, spec)
        # whole object inside: every frame shows all of its pixels
        area = mask.sum(axis=(1, 2))
        assert (area == shape_stamp(spec.shape, spec.size).sum()).all()
        # every object pixel has the spec's colour
        np.testing.assert_array_equal(np.unique(clip[mask], axis=0), [COLORS[spec.color]])
        # centroid moves in the stated direction by about speed * (frames - 1)
        ys, xs = np.mgrid[:height, :width]
        centroid = np.stack([(mask * xs).sum((1, 2)), (mask * ys).sum((1, 2))], -1) / area[:, None]
        moved = centroid[-1] - centroid[0]
        expected = np.array(DIRECTIONS[spec.direction]) * spec.speed * (frames - 1)
        assert np.abs(moved - expected).max() <= 1.5

    with pytest.raises(ValueError, match="leaves the"):
        render_clip(ClipSpec("red", "square", "right", "black", 8, 50.0, 20.0, 2.0), 8, 64, 64)


def test_shapes_have_the_expected_areas():
    areas = {shape: shape_stamp(shape, 16).sum() for shape in SHAPES}
    assert areas["square"] == 256
    assert areas["circle"] == pytest.approx(np.pi * 64, rel=0.05)
    assert areas["triangle"] == pytest.approx(128, rel=0.1)


def test_mismatched_spec_changes_exactly_one_attribute():
    rng = np.random.default_rng(2)
    for _ in range(30):
        spec = random_spec(rng, 64, 64, 8)
        loser = mismatched_spec(spec, rng, 64, 64, 8)
        changed = [a for a in ("color", "shape", "direction") if getattr(spec, a) != getattr(loser, a)]
        assert len(changed) == 1
        area = object_mask(render_clip(loser, 8, 64, 64), loser).sum(axis=(1, 2))
        assert (area == shape_stamp(loser.shape, loser.size).sum()).all()


def test_make_dataset_writes_clips_and_metadata(tmp_path):
    out = make_dataset(tmp_path / "ds", n=3, frames=4, height=32, width=32, seed=5, paired=True, progress=False)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len(list((out / "videos").glob("*.mp4"))) == 6
    for i, row in enumerate(rows):
        assert row["video"] == f"videos/{i:05d}.mp4" and row["loser_video"] == f"videos/{i:05d}_loser.mp4"
        spec = ClipSpec.from_dict(row["attributes"])
        assert row["caption"] == spec.caption and (row["frames"], row["fps"]) == (4, 8)
        assert ClipSpec.from_dict(row["loser_attributes"]).caption != row["caption"]
        clip = read_video(out / row["video"])
        assert clip.shape == (4, 32, 32, 3)
        assert np.abs(clip.astype(float) - render_clip(spec, 4, 32, 32)).mean() < 3  # survives the codec


def test_make_dataset_is_deterministic_and_rerun_is_a_no_op(tmp_path):
    a = make_dataset(tmp_path / "a", n=2, frames=3, height=32, width=32, seed=7, progress=False)
    b = make_dataset(tmp_path / "b", n=3, frames=3, height=32, width=32, seed=7, progress=False)
    meta_a = (a / "metadata.jsonl").read_text().splitlines()
    assert meta_a == (b / "metadata.jsonl").read_text().splitlines()[:2]  # clip i depends on (seed, i) only
    np.testing.assert_array_equal(read_video(a / "videos/00001.mp4"), read_video(b / "videos/00001.mp4"))

    stamp = (a / "videos/00000.mp4").stat().st_mtime_ns
    make_dataset(tmp_path / "a", n=2, frames=3, height=32, width=32, seed=7, progress=False)
    assert (a / "videos/00000.mp4").stat().st_mtime_ns == stamp

    with pytest.raises(ValueError, match="choose another output folder"):
        make_dataset(tmp_path / "a", n=2, frames=3, height=32, width=32, seed=8, progress=False)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        make_dataset(tmp_path / "user", n=1, progress=False)


def test_interrupted_dataset_is_completed(tmp_path):
    out = make_dataset(tmp_path / "ds", n=2, frames=3, height=32, width=32, progress=False)
    (out / "metadata.jsonl").unlink()  # as if the run stopped before the end
    make_dataset(out, n=2, frames=3, height=32, width=32, progress=False)
    assert len((out / "metadata.jsonl").read_text().splitlines()) == 2


def test_default_world_is_unchanged_by_the_object_options(tmp_path):
    """v1 worlds (assets/stacked_base's): the same clips as before `sizes`/`travel`, and the same info file."""
    rng = np.random.default_rng((0, 0))  # web/ clip 0 of the v1 world, as the code before the options drew it
    assert random_spec(rng, 16, 16, 8) == ClipSpec(
        "purple", "circle", "right", "charcoal", 4, 7.7910268385633925, 12.95306692733266, 0.697047521505277
    )
    assert WORLDS["v1"] == {} and TRAVEL == (0.4, 0.8)
    out = make_dataset(tmp_path / "ds", n=1, frames=3, height=16, width=16, caption_noise=0.4, progress=False)
    assert set(json.loads((out / "synth_info.json").read_text())) == {
        "n",
        "frames",
        "height",
        "width",
        "fps",
        "seed",
        "paired",
        "caption_noise",
        "exclude",
        "lossless",
    }


@pytest.mark.parametrize("direction, axis, entry", [("right", 1, 0), ("left", 1, 15), ("down", 0, 0), ("up", 0, 15)])
def test_travel_one_crosses_the_frame_from_edge_to_edge(direction, axis, entry):
    """travel (1, 1): frame 0 touches the entry edge, the last frame the opposite one, at constant speed."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        spec = random_spec(rng, 16, 16, 8, sizes=(5, 7), travel=(1.0, 1.0))
        spec = (
            mismatched_spec(spec, rng, 16, 16, 8, attributes=("direction",), travel=(1.0, 1.0))
            if spec.direction != direction
            else spec
        )
        if spec.direction != direction:
            continue
        assert 5 <= spec.size <= 7
        assert spec.speed == pytest.approx((16 - spec.size) / 7)  # the centre's whole room in 7 frame steps
        square = ClipSpec.from_dict(spec.to_dict() | {"shape": "square"})  # fills its box (a triangle's apex may not)
        mask = object_mask(render_clip(square, 8, 16, 16), spec)
        cover = [np.flatnonzero(m.any(axis=1 - axis)) for m in mask]  # rows (axis 0) or columns (axis 1) covered
        first, last = (cover[0][0], cover[-1][-1]) if entry == 0 else (cover[0][-1], cover[-1][0])
        assert (first, last) == (entry, 15 - entry)


def test_world_records_its_object_options_and_refuses_others(tmp_path):
    world = make_world(tmp_path / "w", n_web=6, n_curated=2, frames=4, progress=False, **WORLDS["v2"])
    info = json.loads((world.web / "synth_info.json").read_text())
    assert (info["sizes"], info["travel"], info["caption_noise"]) == ([5, 7], [0.8, 1.0], 0.4)
    for split in (world.web, world.curated):
        for row in map(json.loads, (split / "metadata.jsonl").read_text().splitlines()):
            for key in ("attributes", "loser_attributes"):
                if key in row:
                    spec = ClipSpec.from_dict(row[key])
                    # 5-7 px, crossing 80-100% of the centre's room along the motion axis in the 3 frame steps
                    assert 5 <= spec.size <= 7 and 0.8 - 1e-9 <= spec.speed * 3 / (16 - spec.size) <= 1 + 1e-9
    with pytest.raises(ValueError, match="choose another output folder"):  # same folder, other objects
        make_world(tmp_path / "w", n_web=6, n_curated=2, frames=4, progress=False)
    with pytest.raises(ValueError, match=r"sizes must be .* < 16 px, got \(5, 16\)"):
        make_dataset(tmp_path / "bad", n=1, height=16, width=16, sizes=(5, 16), progress=False)
    with pytest.raises(ValueError, match=r"travel must be .*got \(0.9, 0.5\)"):
        make_dataset(tmp_path / "bad", n=1, height=16, width=16, travel=(0.9, 0.5), progress=False)
