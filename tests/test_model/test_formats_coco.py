"""model.formats.coco: COCO keypoints documents written from JSON records, read back, and by pycocotools."""
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from model.formats.coco import category, check_scheme, keypoint_names, read_coco, skeleton, to_coco, write_coco


def _record(name="a/b.jpg", faces=1, source=None):
    """A record with ``faces`` faces; face f's point i lies at (10 f + i, 2 i + 0.5)."""
    out = []
    for f in range(faces):
        face = {"box": [10.0 * f, 5.0, 10.0 * f + 40.5, 65.25], "score": 0.99,
                "landmarks": [[10.0 * f + i, 2.0 * i + 0.5] for i in range(98)], "flip_error": 1.2345}
        if source:
            face["source"] = source
        out.append(face)
    return {"image": name, "width": 640, "height": 480, "faces": out}


def test_names_and_skeleton_by_hand():
    names = keypoint_names(98)
    assert len(names) == 98 and len(set(names)) == 98
    assert names[0] == "contour_0" and names[33] == "right_brow_0" and names[60] == "right_eye_0"
    assert names[96:] == ["pupils_0", "pupils_1"]
    edges = skeleton(98)
    # contour 0-32 open: 32 edges; brows and eyes closed: 9 + 9 + 8 + 8; nose 3 + 4; lips 12 + 8; pupils none
    assert len(edges) == 32 + 9 + 9 + 3 + 4 + 8 + 8 + 12 + 8
    assert [1, 2] in edges and [33, 34] not in edges            # 1-based: contour 0-1 yes, 32-33 (contour/brow) no
    assert [42, 34] in edges                                     # right brow loop closes 41 -> 33 (0-based)
    assert [97, 98] not in edges and all(1 <= a <= 98 and 1 <= b <= 98 for a, b in edges)
    names68 = keypoint_names(68)
    assert names68[0] == "jaw_0" and names68[17] == "right_brow_0" and names68[36] == "right_eye_0"
    assert names68[48] == "outer_lip_0" and names68[67] == "inner_lip_7"
    edges68 = skeleton(68)
    assert [22, 18] not in edges68 and [42, 37] in edges68      # brows open, right eye (36-41) closed
    assert len(edges68) == 16 + 4 + 4 + 3 + 4 + 6 + 6 + 12 + 8


def test_document_by_hand():
    doc = to_coco([_record(faces=2), _record("c.png", faces=0)], info={"provenance": {"sha256": "ab"}})
    assert [i["num_faces"] for i in doc["images"]] == [2, 0]
    assert doc["info"] == {"provenance": {"sha256": "ab"}, "keypoint_scheme": 98}
    first, second = doc["annotations"]
    assert (first["id"], second["id"], first["image_id"], second["image_id"]) == (1, 2, 1, 1)
    assert first["bbox"] == [0.0, 5.0, 40.5, 60.25] and first["area"] == round(40.5 * 60.25, 2)
    assert second["keypoints"][:6] == [10.0, 0.5, 2, 11.0, 2.5, 2] and len(second["keypoints"]) == 294
    assert (first["num_keypoints"], first["iscrowd"], first["source"], first["flip_error"]) == (98, 0, "model", 1.2345)
    assert doc["categories"] == [category(98)]


def test_68_point_document_takes_the_subset():
    doc = to_coco([_record()], scheme=68)
    keypoints = doc["annotations"][0]["keypoints"]
    assert len(keypoints) == 68 * 3 and doc["annotations"][0]["num_keypoints"] == 68
    # 68-point 36 is WFLW 60: (60, 120.5); 17 is WFLW 33: (33, 66.5)
    assert keypoints[36 * 3: 36 * 3 + 3] == [60.0, 120.5, 2] and keypoints[17 * 3: 17 * 3 + 2] == [33.0, 66.5]
    assert len(doc["categories"][0]["keypoints"]) == 68


@pytest.mark.parametrize("scheme", [98, 68])
def test_write_read_round_trip_and_pycocotools(tmp_path, scheme):
    records = [_record(faces=2, source="human"), _record("c.png", faces=0), _record("d.jpg", faces=1)]
    path = write_coco(tmp_path / "annotations.json", records, scheme=scheme, info={"version": "x"})
    back, info = read_coco(path)
    assert info["version"] == "x" and [r["image"] for r in back] == ["a/b.jpg", "c.png", "d.jpg"]
    assert [len(r["faces"]) for r in back] == [2, 0, 1]
    face = back[0]["faces"][1]
    assert face["box"] == [10.0, 5.0, 50.5, 65.25] and face["source"] == "human" and face["flip_error"] == 1.2345
    expected = np.asarray(records[0]["faces"][1]["landmarks"])
    if scheme == 68:
        from model.layout import to_68
        expected = to_68(expected)
    np.testing.assert_array_equal(np.asarray(face["landmarks"]), expected)
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3] and len(coco.getAnnIds(imgIds=[1])) == 2
    assert coco.getAnnIds(imgIds=[2]) == [] and coco.loadCats(1)[0]["keypoints"] == keypoint_names(scheme)
    assert coco.loadAnns(coco.getAnnIds(imgIds=[3]))[0]["num_keypoints"] == scheme


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="keypoint scheme must be one of 98, 68, got 5"):
        check_scheme(5)
    bad = _record()
    bad["faces"][0]["source"] = "robot"
    with pytest.raises(ValueError, match="face 1: source must be one of"):
        to_coco([bad])
    path = tmp_path / "x.json"
    doc = to_coco([_record()])
    doc["annotations"][0]["keypoints"] = doc["annotations"][0]["keypoints"][:-3]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"x.json annotation 1: 'keypoints' must be a list of 294 numbers, got 291"):
        read_coco(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="x.json: not valid JSON"):
        read_coco(path)
    with pytest.raises(FileNotFoundError, match="COCO keypoints file not found"):
        read_coco(tmp_path / "missing.json")
