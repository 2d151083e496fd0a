import functools
import http.server
import tarfile
import threading

import pytest

from training.prepare import check_tree, download, main, manual_images_step
from training.synthetic import write_synthetic_wflw


@pytest.fixture()
def archives(tmp_path):
    src = tmp_path / "src"
    write_synthetic_wflw(src, num_train=3, num_test=2, size=48, seed=1)
    for name in ("WFLW_images", "WFLW_annotations"):
        with tarfile.open(tmp_path / f"{name}.tar.gz", "w:gz") as tar:
            tar.add(src / name, arcname=name)
    return tmp_path


def test_archives_are_laid_out_and_checked(archives, capsys):
    out = archives / "root"
    rc = main(["--images", str(archives / "WFLW_images.tar.gz"), "--annotations",
               str(archives / "WFLW_annotations.tar.gz"), "--out", str(out),
               "--expect-train", "3", "--expect-test", "2"])
    assert rc == 0, capsys.readouterr().out
    assert (out / "WFLW_images").is_dir() and not check_tree(out, {"train": 3, "test": 2})


def test_folders_missing_images_and_counts(archives, capsys):
    src = archives / "src"
    victim = next((src / "WFLW_images").rglob("*.jpg"))
    victim.unlink()
    rc = main(["--images", str(src), "--annotations", str(src / "WFLW_annotations"), "--out",
               str(archives / "root2")])
    text = capsys.readouterr().out
    assert rc == 1
    assert "3 faces, expected 7500" in text and "2 faces, expected 2500" in text
    assert "1 of 5 referenced images are missing" in text and victim.name in text


def test_manual_step_names_the_file(tmp_path):
    assert "gdown 1hzBd48JIdWTJSsATBEB_eFVvPL1bx6UC" in manual_images_step(tmp_path)


def test_download_from_local_server(tmp_path):
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "a.tar.gz").write_bytes(b"x" * 5000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        dest = download(f"{url}/a.tar.gz", tmp_path / "out" / "a.tar.gz")
        assert dest.read_bytes() == b"x" * 5000
        with pytest.raises(Exception):
            download(f"{url}/missing.tar.gz", tmp_path / "out" / "b.tar.gz")
        assert not (tmp_path / "out" / "b.tar.gz").exists() and not (tmp_path / "out" / "b.tar.gz.part").exists()
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tar.gz"]  # no partial files at all
    finally:
        server.shutdown()
