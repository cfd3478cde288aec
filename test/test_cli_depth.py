"""`xlstm-ros depth`: an image or a folder in, four files per image out; unreadable files are skipped."""
import json

import cv2
import numpy as np
import pytest
from support_depth import write_random_depth_checkpoint

from xlstm_ros.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_depth_checkpoint(tmp_path_factory.mktemp("depth"), input_short_side=64, seed=1)


def test_folder_of_images(tmp_path, checkpoint, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "wide.png"), rng.integers(0, 255, (70, 130, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "grey.jpg"), rng.integers(0, 255, (90, 60), dtype=np.uint8))
    (images / "broken.png").write_bytes(b"not an image")
    (images / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    assert main(["depth", str(images), "--out", str(out), "--checkpoint", str(checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "broken.png" in printed and "2 of 3 image(s)" in printed
    for stem, shape in (("wide", (70, 130)), ("grey", (90, 60))):
        depth = np.load(out / f"{stem}_depth.npy")
        assert depth.dtype == np.float32 and depth.shape == shape and np.isfinite(depth).all()
        meta = json.loads((out / f"{stem}_depth.json").read_text())
        assert meta["kind"] == "relative_inverse_depth" and "larger is nearer" in meta["units"]
        assert cv2.imread(str(out / f"{stem}_depth.png")).shape == (*shape, 3)
        assert cv2.imread(str(out / f"{stem}_side.png")).shape == (shape[0], 2 * shape[1], 3)


def test_single_image_with_fixed_size(tmp_path, checkpoint):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((50, 80, 3), 128, np.uint8))
    assert main(["depth", str(image), "--out", str(tmp_path / "o"), "--checkpoint", str(checkpoint),
                 "--size", "32x48"]) == 0
    assert json.loads((tmp_path / "o" / "frame_depth.json").read_text())["network_size"] == [32, 48]
    assert np.load(tmp_path / "o" / "frame_depth.npy").shape == (50, 80)


@pytest.mark.parametrize("args, message", [
    (["depth", "MISSING", "--out", "o"], "no such image or folder"),
    (["depth", ".", "--out", "o", "--size", "30x48", "--checkpoint", "CKPT"], "multiples of 16"),
])
def test_errors_are_one_clear_line(tmp_path, checkpoint, capsys, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    assert main([str(checkpoint) if a == "CKPT" else a for a in args]) == 2
    assert message in capsys.readouterr().err
