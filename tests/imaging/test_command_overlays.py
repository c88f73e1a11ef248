"""`ct segment` end to end on a phantom NIfTI; overlays PNG; the learned model's numpy trees."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from celltrial.imaging.command import app
from celltrial.imaging.overlays import render_overlays
from celltrial.imaging.phantom import make_follow_up
from celltrial.imaging.scan import measure_scan
from celltrial.imaging.trees import BoostedTrees
from tests.imaging.conftest import small_phantom


def test_ct_segment_writes_masks_in_input_geometry(tmp_path):
    p = small_phantom()
    nx, ny, nz = p.volume.native_shape
    data = np.transpose(p.volume.hu, (2, 1, 0))
    path = tmp_path / "baseline.nii.gz"
    nib.save(nib.Nifti1Image(data, p.volume.native_affine), str(path))
    result = CliRunner().invoke(app, ["segment", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "baseline"
    lungs = nib.load(str(folder / "lungs.nii.gz"))
    assert lungs.shape == (nx, ny, nz)
    assert set(np.unique(np.asarray(lungs.dataobj))) == {0, 1, 2}
    payload = json.loads((folder / "result.json").read_text())
    assert abs(payload["lung_volume_ml"] / p.truth["lung"] - 1) < 0.02
    assert (folder / "overlay.png").stat().st_size > 10_000


def test_ct_segment_reports_user_errors(tmp_path):
    result = CliRunner().invoke(app, ["segment", str(tmp_path / "nope.nii"), "--out", "x"])
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_baseline_beside_follow_up_overlay(tmp_path):
    from celltrial.imaging.phantom import make_chest_phantom

    base = small_phantom()
    follow = make_chest_phantom(
        shape=(176, 176),
        pixel_mm=2.0,
        slice_mm=5.0,
        lesions=make_follow_up(base.lesion_list, 0.7),
    )
    results = [measure_scan(base.volume), measure_scan(follow.volume)]
    assert results[1].quantification.lesion_ml < 0.5 * results[0].quantification.lesion_ml
    path = render_overlays(results, tmp_path / "pair.png", titles=["day −1", "day 14"])
    assert path.stat().st_size > 20_000


def test_numpy_trees_match_hand_computation():
    # one tree per class; class 1's tree splits on feature 0 at 0.5
    model = BoostedTrees(
        feature=np.array([0, 0, 0, 0, 0], np.int32),
        threshold=np.array([0, 0.5, 0, 0, 0], np.float32),
        left=np.array([0, 2, 0, 0, 0], np.int32),
        right=np.array([0, 3, 0, 0, 0], np.int32),
        value=np.array([0.0, 0.0, -1.0, 2.0, 0.0], np.float32),
        is_leaf=np.array([True, False, True, True, True]),
        roots=np.array([0, 1, 4], np.int32),
        tree_class=np.array([0, 1, 2], np.int32),
        baseline=np.zeros(3, np.float32),
        max_depth=2,
        classes=("none", "ground_glass", "consolidation"),
        feature_names=("f",),
    )
    scores = model.compute_scores(np.array([[0.2], [0.9]]))
    assert np.allclose(scores, [[0, -1, 0], [0, 2, 0]])
    assert np.allclose(model.compute_probabilities(np.array([[0.9]])).sum(), 1)


def test_views_round_trip(tmp_path):
    from celltrial.imaging.demo import write_demo_scan
    from celltrial.imaging.overlays import compute_views, load_views, render_view_grid, save_views
    from celltrial.imaging.scan import measure_scan

    views = compute_views(measure_scan(write_demo_scan(tmp_path / "s.nii.gz", 1.0, seed=4)))
    loaded = load_views(save_views(views, tmp_path / "views" / "s.npz"))
    assert loaded.label == views.label
    assert [v[0] for v in loaded.views] == ["axial", "coronal"]
    for (_n, a, aspect_a), (_m, b, aspect_b) in zip(views.views, loaded.views, strict=True):
        assert a.shape == b.shape and aspect_a == aspect_b
        assert abs(a - b).max() <= 1 / 255 + 1e-6  # stored as 8-bit colour
    png = render_view_grid([loaded, loaded], tmp_path / "pair.png", titles=["a", "b"], dpi=60)
    assert png.stat().st_size > 5_000
