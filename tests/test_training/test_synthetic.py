import numpy as np

from model.image import read_image
from model.layout import ATTRIBUTES, FLIP_INDICES, NUM_LANDMARKS
from training.synthetic import face_template, main, write_synthetic_wflw
from model.formats.wflw import find_wflw_root, load_wflw_txt


def test_template_is_mirror_symmetric():
    p = face_template()
    assert p.shape == (NUM_LANDMARKS, 2) and np.all(np.isfinite(p))
    mirrored = p[FLIP_INDICES] * (-1, 1)
    np.testing.assert_allclose(mirrored, p, atol=1e-9)
    assert p[60, 0] < p[64, 0] < 0 < p[68, 0] < p[72, 0]  # eye corners in WFLW order


def test_writes_a_wflw_tree(tmp_path):
    assert main([str(tmp_path), "--num-train", "3", "--num-test", "4", "--size", "96", "--seed", "5"]) == 0
    tree = find_wflw_root(tmp_path)
    train, test = load_wflw_txt(tree.annotations("train")), load_wflw_txt(tree.annotations("test"))
    assert len(train) == 3 and len(test) == 4
    for s in train + test:
        assert s.attributes is not None and len(s.attributes) == len(ATTRIBUTES)
        image = read_image(tree.images / s.image)
        assert image.shape == (96, 96, 3)
        assert np.all(s.box[:2] < s.box[2:])


def test_same_seed_same_data(tmp_path):
    a = write_synthetic_wflw(tmp_path / "a", 2, 1, size=64, seed=3)
    b = write_synthetic_wflw(tmp_path / "b", 2, 1, size=64, seed=3)
    assert a.annotations("train").read_text() == b.annotations("train").read_text()


def test_pupils_are_drawn_dark(synthetic_root):
    tree = find_wflw_root(synthetic_root)
    darker = 0
    samples = load_wflw_txt(tree.annotations("train"))
    for s in samples:
        image = read_image(tree.images / s.image).astype(float).sum(axis=2)
        x, y = np.round(s.landmarks[96]).astype(int)
        cheek = np.round((s.landmarks[4] + s.landmarks[57]) / 2).astype(int)
        darker += image[y, x] < image[cheek[1], cheek[0]]
    assert darker >= 0.8 * len(samples)


def test_cli_shows_a_progress_bar_and_counts_in_words(tmp_path, capsys):
    assert main([str(tmp_path), "--num-train", "1", "--num-test", "2", "--size", "64"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"wrote 1 train face and 2 test faces under {tmp_path}\n"
    # tqdm on stderr: one step per face, the total known from the start (so an ETA can be given)
    assert "synthetic WFLW" in captured.err and "0/3" in captured.err and "3/3" in captured.err
    write_synthetic_wflw(tmp_path / "quiet", 1, 1, size=64)  # as a library call: no bar
    assert capsys.readouterr().err == ""
