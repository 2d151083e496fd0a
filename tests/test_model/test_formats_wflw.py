from __future__ import annotations

import numpy as np
import pytest

from model.constants import CROP_PADDING
from model.geometry import box_to_crop, landmark_box
from model.layout import ATTRIBUTES, NUM_LANDMARKS
from model.formats.wflw import (RAW_FIELDS, SUBSET_FIELDS, Sample, crop_box, find_wflw_root,
                           format_wflw_line, load_test_split, load_wflw_json, load_wflw_txt, parse_wflw_line,
                           resolve_image, write_wflw_txt)


def _sample(rng, attributes=(True, False, False, True, False, False)) -> Sample:
    pts = rng.uniform(10, 200, (NUM_LANDMARKS, 2)).astype(np.float32)
    return Sample("12--Group/a_b.jpg", pts, np.array([5, 6, 210, 220], np.float32), attributes)


def test_raw_line_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    samples = [_sample(rng), _sample(rng, (False,) * 6)]
    path = tmp_path / "list_98pt_rect_attr_test.txt"
    path.write_text("".join(format_wflw_line(s) + "\n" for s in samples))
    assert len(path.read_text().splitlines()[0].split()) == RAW_FIELDS
    back = load_wflw_txt(path)
    assert len(back) == 2
    for a, b in zip(samples, back):
        assert b.image == a.image and b.attributes == a.attributes
        np.testing.assert_array_equal(b.landmarks, a.landmarks)  # exact float32 round trip
        np.testing.assert_array_equal(b.box, a.box)
        assert format_wflw_line(b) == format_wflw_line(a)


def test_subset_list_line_round_trip(tmp_path):
    sample = _sample(np.random.default_rng(1), None)
    line = format_wflw_line(sample)
    assert len(line.split()) == SUBSET_FIELDS
    path = tmp_path / "faces.txt"
    path.write_text(line + "\n")
    (back,) = load_wflw_txt(path)
    assert back.attributes is None
    np.testing.assert_allclose(back.box, landmark_box(sample.landmarks), rtol=1e-6)


def test_real_subset_lists(shared_data):
    folder = shared_data / "wflw-test-subsets"
    pose = load_wflw_txt(folder / "list_98pt_test_largepose.txt")
    assert len(pose) == 326
    s = pose[0]
    assert s.attributes is None and s.landmarks.shape == (NUM_LANDMARKS, 2) and s.landmarks.dtype == np.float32
    assert s.image == "2--Demonstration/2_Demonstration_Political_Rally_2_424.jpg"
    np.testing.assert_allclose(s.landmarks[0], [148.701996, 253.686005], rtol=1e-6)
    distinct = set()
    for name in ("largepose", "expression", "illumination", "makeup", "occlusion", "blur"):
        distinct |= {x.key() for x in load_wflw_txt(folder / f"list_98pt_test_{name}.txt")}
    assert len(distinct) == 1966  # the number the data README gives


def test_mmpose_json(shared_data):
    samples = load_wflw_json(shared_data / "mmpose-tests" / "wflw" / "test_wflw.json")
    assert len(samples) == 4
    assert samples[0].image == "36_Football_americanfootball_ball_36_415.jpg"
    assert all(s.landmarks.shape == (NUM_LANDMARKS, 2) for s in samples)
    # the first face as the JSON stores it (hand-copied from the file)
    np.testing.assert_array_equal(samples[0].center, [482.5, 164.5])
    assert samples[0].scale == pytest.approx(0.425)


def test_landmark_crops_reproduce_mmpose(shared_data):
    """SPEC 6: the landmark extent rounded outward, squared, padded by 1.25 gives the JSON's
    ``center`` and ``scale`` x 200 (x 1.25) for all four faces of mmpose's test data."""
    for s in load_wflw_json(shared_data / "mmpose-tests" / "wflw" / "test_wflw.json"):
        box = crop_box(s, "landmarks")
        assert box[2] - box[0] == pytest.approx(box[3] - box[1])  # square
        center, side = box_to_crop(box, CROP_PADDING)
        np.testing.assert_allclose(center, s.center, rtol=0, atol=1e-3)
        assert side == pytest.approx(CROP_PADDING * 200 * s.scale, abs=1e-3)


def test_landmark_box_rounding_by_hand():
    pts = np.full((NUM_LANDMARKS, 2), (15.0, 5.5), np.float32)
    pts[0], pts[1] = (10.2, 20.7), (30.1, -4.6)  # extent x 10.2..30.1, y -4.6..20.7
    s = Sample("a.jpg", pts, np.array([0, 0, 1, 1], np.float32))
    # rounded outward: x 10..31 (21 wide), y -5..21 (26 high): centre (20.5, 8), side 26
    np.testing.assert_allclose(crop_box(s, "landmarks"), [7.5, -5.0, 33.5, 21.0])
    np.testing.assert_allclose(crop_box(s, "rect"), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="box mode must be one of .* got 'face'"):
        crop_box(s, "face")


def test_load_test_split(tmp_path, synthetic_root):
    tree = find_wflw_root(synthetic_root)
    samples, flags = load_test_split(tree)
    assert [s.image for s in samples] == [s.image for s in load_wflw_txt(tree.annotations("test"))]
    assert flags.shape == (len(samples), len(ATTRIBUTES)) and flags.dtype == bool
    # the flag columns are the subset lists' membership
    np.testing.assert_array_equal(flags, _membership(tree, samples))
    assert flags.any() and not flags.all()
    empty = type(tree)(tmp_path)
    write_wflw_txt(empty.annotations("test"), [])
    with pytest.raises(ValueError, match="list_98pt_rect_attr_test.txt: no test faces"):
        load_test_split(empty)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f[:-2], "expected 207 fields, got 205"),
    (lambda f: f[:3] + ["abc"] + f[4:], "field 4 is not a number: 'abc'"),
    (lambda f: ["nan"] + f[1:], "field 1 is not finite: 'nan'"),
    (lambda f: f[:200] + ["2"] + f[201:], "attribute flags must be 0 or 1"),
])
def test_malformed_line_names_file_and_line(tmp_path, edit, message):
    rng = np.random.default_rng(2)
    good = format_wflw_line(_sample(rng))
    bad = " ".join(edit(good.split()))
    path = tmp_path / "list_98pt_rect_attr_test.txt"
    path.write_text(good + "\n" + bad + "\n" + good + "\n")
    with pytest.raises(ValueError, match=f"list_98pt_rect_attr_test.txt line 2: {message}"):
        load_wflw_txt(path)
    with pytest.warns(UserWarning, match="line 2: .*skipped"):
        assert len(load_wflw_txt(path, on_error="skip")) == 2


def test_parse_wflw_line():
    rng = np.random.default_rng(3)
    raw = _sample(rng)
    back = parse_wflw_line("  " + format_wflw_line(raw) + "\n")
    assert back.image == raw.image and back.attributes == raw.attributes
    np.testing.assert_array_equal(back.landmarks, raw.landmarks)
    np.testing.assert_array_equal(back.box, raw.box)
    subset = _sample(rng, None)
    back = parse_wflw_line(format_wflw_line(subset))  # 197 fields: a subset-list line
    assert back.attributes is None
    np.testing.assert_allclose(back.box, landmark_box(subset.landmarks), rtol=1e-6)
    short = " ".join(format_wflw_line(raw).split()[:-2])
    with pytest.raises(ValueError, match="^pasted line 3: expected 207 or 197 fields, got 205$"):
        parse_wflw_line(short, source="pasted", line_number=3)
    with pytest.raises(ValueError, match="^<line>: field 2 is not a number: 'x'$"):
        parse_wflw_line(" ".join(["1", "x"] + format_wflw_line(raw).split()[2:]))


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_wflw_txt(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="on_error"):
        load_wflw_txt(tmp_path / "nope.txt", on_error="ignore")


def test_resolve_image_stays_inside_root(tmp_path):
    (tmp_path / "WFLW_images" / "a").mkdir(parents=True)
    assert resolve_image(tmp_path / "WFLW_images", "a/b.jpg") == (tmp_path / "WFLW_images" / "a" / "b.jpg").resolve()
    with pytest.raises(ValueError, match="leads outside"):
        resolve_image(tmp_path / "WFLW_images", "../secret.jpg")
    with pytest.raises(ValueError, match="absolute"):
        resolve_image(tmp_path / "WFLW_images", "/etc/passwd")
    with pytest.raises(ValueError, match="leads outside"):
        resolve_image(tmp_path / "WFLW_images", "a/..")


def test_resolve_image_takes_file_links_but_not_folder_links_out(tmp_path):
    images, photos = tmp_path / "WFLW_images", tmp_path / "photos"
    images.mkdir()
    photos.mkdir()
    (photos / "p.jpg").write_bytes(b"x")
    (images / "p.jpg").symlink_to(photos / "p.jpg")  # model.annotate's layout: links to the photos
    assert resolve_image(images, "p.jpg") == images.resolve() / "p.jpg"
    assert resolve_image(images, "p.jpg").read_bytes() == b"x"
    (images / "out").symlink_to(photos, target_is_directory=True)  # a folder link leading outside
    with pytest.raises(ValueError, match="leads outside"):
        resolve_image(images, "out/p.jpg")


def test_find_wflw_root(tmp_path, synthetic_root):
    tree = find_wflw_root(synthetic_root)
    assert tree.annotations("train").is_file() and tree.subset_list("pose").is_file()
    with pytest.raises(FileNotFoundError, match="list_98pt_rect_attr_train.txt"):
        find_wflw_root(tmp_path)


def _membership(tree, samples) -> np.ndarray:
    """(N, 6) bool: whether each face (image and points, ``Sample.key``) is in each subset list."""
    keys = {name: {s.key() for s in load_wflw_txt(tree.subset_list(name))} for name in ATTRIBUTES}
    return np.array([[s.key() in keys[name] for name in ATTRIBUTES] for s in samples], dtype=bool)


def test_subset_lists_match_flags(synthetic_root):
    tree = find_wflw_root(synthetic_root)
    test = load_wflw_txt(tree.annotations("test"))
    np.testing.assert_array_equal(_membership(tree, test), np.array([s.attributes for s in test]))


def test_training_wflw_names_the_same_objects():
    """SPEC section 6: ``training.wflw`` keeps exporting the format's names; they are the model's own."""
    import model.formats.wflw as formats
    import training.wflw as training_wflw

    for name in ("Sample", "load_wflw_txt", "load_wflw_json", "parse_wflw_line", "crop_box", "find_wflw_root",
                 "write_wflw_txt"):
        assert getattr(training_wflw, name) is getattr(formats, name), name


def test_own_dataset_tree_paths(tmp_path):
    from model.formats.dataset import DatasetTree

    tree = DatasetTree(tmp_path)
    assert (tree.coco, tree.coco_68, tree.report, tree.cache) == (
        tmp_path / "annotations.json", tmp_path / "annotations_68.json", tmp_path / "annotate_report.json",
        tmp_path / ".annotate")
    assert tree.images == tmp_path / "WFLW_images" and not tree.is_own_dataset()
    tree.coco.write_text("{}")
    assert tree.is_own_dataset()
