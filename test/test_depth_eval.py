"""Depth evaluation: the priors, Aloe, and a whole run."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from xlstm_ros.engines.depth import DepthEstimator
from xlstm_ros.models.depth import DepthConfig, DepthModel, save_depth_checkpoint
from xlstm_ros.models.vil import vil_config
from xlstm_ros.eval.middlebury import ALOE_DIR, load_aloe, load_motorcycle
from xlstm_ros.eval.depth import PICTURE_NAME, PRIORS, SYNTHETIC_DEPTH_CAP_M, SYNTHETIC_SEED, EvalItem, evaluate_depth, score_set
from xlstm_ros.metrics import relative_depth_metrics
from xlstm_ros.sim.scenes import SceneDataset

ALOE_PRESENT = (ALOE_DIR / "aloeL.jpg").is_file() and (ALOE_DIR / "aloeGT.png").is_file()
needs_aloe = pytest.mark.skipif(not ALOE_PRESENT, reason=f"the Aloe pair is not installed in {ALOE_DIR} (Debian "
                                "package opencv-doc: apt-get install opencv-doc)")

# Four pixels with ground truth and two masked ones.
TARGET = np.array([[1.0, 2.0, 2.0], [4.0, 0.0, 0.0]])
MASK = np.array([[True, True, True], [True, False, False]])


def test_priors_constant_gives_the_mean_disparity_and_row_fits_a_ground_plane():
    # constant: aligned disparity = mean t = 2.25 -> depth 4/9; errors 5/9, 1/9, 1/9, 7/9 -> AbsRel 7/18.
    constant = relative_depth_metrics(PRIORS["constant prior"](2, 3), TARGET, MASK, 0.01)
    assert constant["abs_rel"] == pytest.approx(7 / 18, rel=1e-12)
    assert constant["delta1"] == 0.5 and constant["positive_scale"] == 0.0
    ground = 1.0 + np.repeat(np.arange(6.0)[:, None], 4, axis=1)        # disparity linear in the row
    row = relative_depth_metrics(PRIORS["row prior"](6, 4), ground, np.ones((6, 4), bool), 0.01)
    assert row["abs_rel"] == pytest.approx(0.0, abs=1e-12) and row["delta1"] == 1.0


@needs_aloe
def test_aloe_loader_reads_the_real_pair():
    pair = load_aloe()
    assert pair.rgb.shape == (1110, 1282, 3) and pair.rgb.dtype == np.uint8
    assert pair.disparity.shape == (1110, 1282) and pair.disparity.dtype == np.float32
    assert 0.95 < pair.valid.mean() < 0.98                  # 3.5 % of the ground truth is unknown (0)
    assert pair.disparity[pair.valid].min() >= 1 and pair.disparity.max() <= 255
    assert not pair.valid[pair.disparity == 0].any()


def test_motorcycle_loader_reads_the_real_view_with_float_disparity():
    pair = load_motorcycle()
    assert pair.rgb.shape == (500, 741, 3) and pair.rgb.dtype == np.uint8
    assert pair.disparity.shape == (500, 741) and 0.9 < pair.valid.mean() < 0.95   # 7 % unknown
    assert 5 < pair.disparity[pair.valid].min() < pair.disparity[pair.valid].max() < 80
    assert (pair.disparity[~pair.valid] == 0).all()


def test_aloe_loader_names_the_package_when_absent(tmp_path):
    with pytest.raises(FileNotFoundError, match="opencv-doc"):
        load_aloe(tmp_path)


def tiny_model() -> DepthModel:
    torch.manual_seed(0)
    backbone = vil_config("vil_micro", pos_grid=(2, 3))
    return DepthModel(DepthConfig(backbone=backbone, neck_channels=(8, 16, 32, 64), features=16,
                                  input_short_side=32))


def test_evaluation_run_writes_reports_scores_model_and_priors_on_the_same_pixels(tmp_path):
    estimator = DepthEstimator(tiny_model(), device="cpu")
    aloe_dir = ALOE_DIR if ALOE_PRESENT else tmp_path / "no_aloe"
    reference = save_depth_checkpoint(tiny_model(), tmp_path / "reference.pt")   # the same weights
    result = evaluate_depth(estimator, ("synthetic", "aloe", "motorcycle"), reference=reference, n_synthetic=3,
                            synthetic_size=(48, 64), cache_dir=tmp_path / "cache", aloe_dir=aloe_dir,
                            out_dir=tmp_path / "report", picture=True)
    synthetic = result["sets"]["synthetic"]
    assert synthetic["images"] == 3 and synthetic["depth_cap_m"] == SYNTHETIC_DEPTH_CAP_M
    for scores in synthetic["scores"].values():
        assert scores["abs_rel"] >= 0 and 0 <= scores["delta1"] <= 1
    assert synthetic["scores"]["reference"] == synthetic["scores"]["model"]

    # the row prior's mean equals a recomputation from the cached frames with the documented mask
    (root,) = (tmp_path / "cache").iterdir()
    expected = []
    for rgb, depth_m in SceneDataset(root):
        mask = np.isfinite(depth_m) & (depth_m > 1e-3) & (depth_m <= SYNTHETIC_DEPTH_CAP_M)
        expected.append(relative_depth_metrics(PRIORS["row prior"](48, 64), np.where(mask, 1 / depth_m, 0), mask,
                                               1 / SYNTHETIC_DEPTH_CAP_M)["abs_rel"])
    assert synthetic["scores"]["row prior"]["abs_rel"] == pytest.approx(np.mean(expected), rel=1e-9)

    aloe = result["sets"]["aloe"]
    if ALOE_PRESENT:
        assert aloe["images"] == 1 and set(aloe["scores"]) == {"model", "reference", "constant prior", "row prior"}
    else:
        assert "apt-get install" in aloe["skipped"]
    assert result["sets"]["motorcycle"]["images"] == 1
    saved = json.loads((tmp_path / "report" / "depth_eval.json").read_text())
    assert saved["sets"]["synthetic"]["scores"] == synthetic["scores"]
    table = (tmp_path / "report" / "depth_eval.md").read_text()
    assert "| row prior |" in table and "| reference |" in table and "motorcycle AbsRel" in table
    assert f"- reference: {reference} (input short side 32)" in table
    picture = cv2.imread(str(tmp_path / "report" / PICTURE_NAME))   # image | truth | model | reference per view
    assert picture.shape[1] == 4 * 320 and picture.shape[0] > (200 if ALOE_PRESENT else 100) and picture.std() > 10


def test_images_without_ground_truth_are_skipped_and_counted():
    estimator = DepthEstimator(tiny_model(), device="cpu")
    rgb = np.full((2, 3, 3), 128, np.uint8)
    items = [EvalItem(rgb, TARGET, MASK, 0.01), EvalItem(rgb, TARGET, np.zeros_like(MASK), 0.01)]
    result = score_set({"model": estimator}, iter(items), batch_size=4)
    assert result["images"] == 1 and result["skipped_images"] == 1
    assert result["scores"]["constant prior"]["abs_rel"] == pytest.approx(7 / 18, rel=1e-12)


def test_evaluation_refuses_a_model_trained_on_the_held_out_seed_and_unknown_sets(tmp_path):
    path = save_depth_checkpoint(tiny_model(), tmp_path / "m.pt",
                                 meta={"train_config": {"data_seed": SYNTHETIC_SEED}})
    with pytest.raises(ValueError, match="held-out"):
        evaluate_depth(path, ("synthetic",), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown"):
        evaluate_depth(path, ("kitti",))


def test_shipped_default_model_loads_and_beats_the_priors_on_held_out_frames(tmp_path):
    # held-out frames of the scene kinds it was trained on, by today's renderer (scene format 2)
    result = evaluate_depth(None, ("synthetic",), n_synthetic=8, cache_dir=tmp_path, device="cpu",
                            synthetic_kinds=("field", "street", "corridor"))
    assert result["model"].endswith("vil_depth.pt") and result["short_side"] == 128
    scores = result["sets"]["synthetic"]["scores"]
    for prior in PRIORS:
        assert scores["model"]["abs_rel"] < scores[prior]["abs_rel"]
        assert scores["model"]["delta1"] > scores[prior]["delta1"]
    # trained on format-1 frames, it inverts one of these 8 format-2 frames (2 of 48 in its model card)
    assert scores["model"]["positive_scale"] >= 7 / 8
