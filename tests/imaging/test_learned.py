"""The learned lesions: resizing as in training, the shipped network run with onnxruntime, the
rule from probabilities to labels, and `ct segment` on a real labelled display slice."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.imaging.learning import compute_slice_labels, summarize_dice
from celltrial.imaging.lesions import compute_learned_lesions
from celltrial.imaging.network import SIZE, compute_network_probabilities, resize_image

MEDSEG = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct" / "medseg2d"
needs_medseg = pytest.mark.skipif(
    not MEDSEG.exists(), reason=f"real labelled CT slices absent: {MEDSEG}"
)


def test_bilinear_resize_maps_pixel_centres_and_clamps_edges():
    image = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    # output centres fall on input rows/cols -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped
    # to 1): value = 2 * row + col there
    at = np.array([0.0, 0.25, 0.75, 1.0])
    expected = 2 * at[:, None] + at[None, :]
    np.testing.assert_allclose(resize_image(image, (4, 4)), expected, atol=1e-6)
    # and back down: each output centre lies between two input centres
    np.testing.assert_allclose(resize_image(expected, (2, 2)), [[0.375, 1.125], [1.875, 2.625]])
    assert resize_image(image, (4, 4)).dtype == np.float32


def test_nearest_resize_keeps_label_values_and_stacks_resize_per_channel():
    labels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    big = resize_image(labels, (4, 6), order=0)
    assert big.dtype == np.uint8 and set(np.unique(big)) == {0, 1, 2}
    np.testing.assert_array_equal(big[::2, ::2], labels)
    stack = np.stack([labels, 2 - labels], axis=-1).astype(np.float32)
    resized = resize_image(stack, (5, 7))
    assert resized.shape == (5, 7, 2)
    np.testing.assert_allclose(resized[..., 0] + resized[..., 1], 2.0, atol=1e-6)


def test_the_shipped_models_fit_the_size_limit():
    models = resources.files("celltrial.imaging") / "models"
    sizes = {p.name: p.stat().st_size for p in Path(str(models)).iterdir()}
    assert {"lesions.npz", "lesions_unet.onnx"} <= set(sizes)
    assert sum(sizes.values()) <= 10 * 1024 * 1024


def test_network_probabilities_cover_the_slice_and_sum_to_one():
    rng = np.random.default_rng(0)
    slices = np.full((3, 97, 131), -850.0, dtype=np.float32) + rng.normal(0, 30, (3, 97, 131))
    probs = compute_network_probabilities(slices)
    assert probs.shape == (3, 97, 131, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-4)
    # one slice at a time gives the same as the batch
    np.testing.assert_allclose(compute_network_probabilities(slices[1:2])[0], probs[1], atol=1e-5)


def test_the_rule_marks_lesion_where_lesion_is_likelier_and_types_it_by_the_larger():
    probs = np.array(
        [[[0.6, 0.3, 0.1], [0.5, 0.2, 0.3], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6]]], dtype=np.float32
    )
    even = {"consolidation_weight": 1.0}
    np.testing.assert_array_equal(
        compute_slice_labels(probs, **even), [[0, 2, 1, 2]]
    )  # 0.5: lesion
    np.testing.assert_array_equal(
        compute_slice_labels(probs, lesion_threshold=0.6, **even), [[0, 0, 1, 2]]
    )


def test_consolidation_needs_its_probability_times_0_7_above_ground_glass_by_default():
    from celltrial.imaging.learning import LabelRule, load_label_rule

    assert load_label_rule() == LabelRule(lesion_threshold=0.5, consolidation_weight=0.7)
    # (none, ground-glass, consolidation): 0.35 vs 0.5 is the boundary (not above: ground-glass)
    probs = np.array(
        [
            [
                [0.15, 0.35, 0.5],
                [0.15, 0.34, 0.51],
                [0.5, 0.3, 0.2],
                [0.2, 0.1, 0.7],
                [0.6, 0.1, 0.3],
            ]
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(compute_slice_labels(probs), [[1, 2, 1, 2, 0]])


@needs_medseg
def test_learned_lesions_on_a_real_labelled_slice(tmp_path):
    from celltrial.imaging.learning import read_medseg_slices

    item = next(s for s in read_medseg_slices(MEDSEG) if s.name == "train_010")
    assert (item.labels > 0).mean() > 0.02  # a slice with sizeable lesions
    lungs = np.ones((1, *item.hu.shape), dtype=np.uint8)
    found = compute_learned_lesions(item.hu[None], lungs, (5.0, item.pixel_mm, item.pixel_mm))
    dice = summarize_dice(item.name, item.labels, found[0])
    # the slice was in the training set: this checks the plumbing, not the accuracy (see
    # benchmarks/bench_ct_accuracy.py for the cross-validated figures)
    assert dice["lesion"] > 0.7
    assert {1, 2} <= set(np.unique(found[0]))  # ground-glass and consolidation both found
    # nothing is painted outside the lungs given
    half = lungs.copy()
    half[0, :, : item.hu.shape[1] // 2] = 0
    kept = compute_learned_lesions(item.hu[None], half, (5.0, item.pixel_mm, item.pixel_mm))
    assert not kept[0][:, : item.hu.shape[1] // 2].any()
    np.testing.assert_array_equal(
        kept[0][:, item.hu.shape[1] // 2 :], found[0][:, item.hu.shape[1] // 2 :]
    )


@needs_medseg
def test_ct_segment_on_a_real_display_slice(tmp_path):
    import nibabel as nib

    image = np.asanyarray(nib.load(MEDSEG / "train_010" / "image.nii.gz").dataobj)[..., 0]
    png = tmp_path / "slice010.png"
    Image.fromarray(np.ascontiguousarray(image).astype(np.uint8)).save(png)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["ct", "segment", str(png), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "slice010" / "result.json").read_text())
    assert summary["approximate_hu"] is True
    lesions = np.asanyarray(nib.load(out / "slice010" / "lesions.nii.gz").dataobj)
    lungs = np.asanyarray(nib.load(out / "slice010" / "lungs.nii.gz").dataobj)
    assert lesions.any() and not (lesions[lungs == 0] > 0).any()
    assert SIZE == 256  # the size the shipped network was trained at
