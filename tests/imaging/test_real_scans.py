"""Lungs and only the lungs on real whole-thorax CT in HU, and refusal of what cannot be scored
(issue 24): the shared scans read in place (skipped when absent)."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from celltrial.imaging.command import app
from celltrial.imaging.io import _read_sitk, read_ct
from celltrial.imaging.scan import measure_scan, output_names
from celltrial.imaging.scorable import NotScorable
from tests.imaging.conftest import real_ct, small_phantom


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def cip():
    """The CIP scan (64 × 64 × 79, 4 mm) and its whole-lung mask in the same orientation."""
    folder = real_ct("cip-lowres-chest")
    volume = read_ct(folder / "ct-64.nrrd")
    raw, _ = _read_sitk(folder / "wholeLung-64.nrrd")
    oriented = nib.orientations.apply_orientation(np.asarray(raw), volume.ornt)
    return volume, np.transpose(oriented, (2, 1, 0)) > 0


def test_normal_chest_ct_gives_the_lungs_only():
    # COVID-CT-MD normal001: 154 × 512 × 512, 2 mm, no lung disease. Before issue 24: lungs
    # 9.1 L (chest wall, the mattress and the abdomen below the lungs), 14 % involved.
    result = measure_scan(real_ct("covid-ct-md/normal001"))
    q = result.quantification
    assert 2000 < q.lung_ml < 8500
    assert q.mean_lung_density_hu < -650
    assert q.involvement_pct <= 1.0
    # nothing in the lowest 20 mm of the scan (upper abdomen) is lung
    assert not result.lungs[:10].any()


@pytest.mark.parametrize("scan", ["P001", "cap001"])
def test_lesions_lie_on_the_slices_the_radiologists_marked(scan):
    # COVID-CT-MD P001 (COVID-19, 148 × 512 × 512, 2 mm) and cap001 (bacterial pneumonia, 168
    # slices): lesion area per slice against the three radiologists' "infected" label
    # (slice_labels.csv, slices in order of position along z, from the most inferior as inside
    # celltrial). Target ≥ 0.90 (issue 24); measured with the vessel-ring rule: P001 0.920 (0.928
    # before it, when rings on infected slices counted), cap001 0.923.
    import pandas as pd
    from scipy.stats import mannwhitneyu

    folder = real_ct("covid-ct-md")
    table = pd.read_csv(folder / "slice_labels.csv")
    infected = table[table["subject"] == scan].sort_values("ImagePositionPatient_z")["infected"]
    result = measure_scan(folder / scan)
    area = np.count_nonzero(result.lesions.reshape(result.lesions.shape[0], -1), axis=1)
    assert len(area) == len(infected)
    marked = infected.to_numpy() > 0
    u = mannwhitneyu(area[marked], area[~marked]).statistic  # ties count half
    assert u / (marked.sum() * (~marked).sum()) >= 0.90


def test_cip_whole_lung_dice(cip):
    volume, truth = cip
    result = measure_scan(volume)
    assert _dice(result.lungs > 0, truth) >= 0.95


def test_padding_outside_the_field_of_view_is_outside_the_body(cip, tmp_path):
    # the same scan with −3024 outside the reconstruction circle (as many scanners write it),
    # through a NIfTI file: read as CT (it was refused as "not chest CT"), the same lungs
    volume, truth = cip
    hu = volume.hu.copy()
    ny, nx = hu.shape[1:]
    y, x = np.ogrid[:ny, :nx]
    outside = (y - (ny - 1) / 2) ** 2 + (x - (nx - 1) / 2) ** 2 > (min(ny, nx) / 2) ** 2
    hu[:, outside] = -3024
    path = tmp_path / "padded.nii.gz"
    nib.save(nib.Nifti1Image(volume.compute_native(hu), volume.native_affine), str(path))
    result = measure_scan(path)
    assert _dice(result.lungs > 0, truth) >= 0.95
    assert result.quantification.mean_lung_density_hu < -650


def test_zones_above_the_scan_are_not_scored(cip):
    volume, _ = cip
    # the top 15 slices (60 mm) of the scan removed: the apices lie above it
    cut = dataclasses.replace(volume, hu=np.ascontiguousarray(volume.hu[:-15]))
    q = measure_scan(cut).quantification
    assert q.zones["right_upper"]["score"] is None and q.zones["left_upper"]["score"] is None
    for name in ("right_middle", "right_lower", "left_middle", "left_lower"):
        assert isinstance(q.zones[name]["score"], int)
    scored = [f"{side}_{zone}" for side in ("right", "left") for zone in ("middle", "lower")]
    assert q.score == sum(q.zones[name]["score"] for name in scored)
    assert any("upper zones not scored" in c for c in q.caveats)


def test_abdomen_with_lung_bases_is_not_a_chest():
    # before: the stomach and colon gas as left lung, 50.6 % involved, score 17/30
    with pytest.raises(NotScorable, match="not a chest CT"):
        measure_scan(real_ct("totalseg-examples/abdomen_lung_bases.nii.gz"))


def test_two_slices_are_too_little_lung():
    with pytest.raises(NotScorable, match="too little lung"):
        measure_scan(real_ct("dicom-lungmask"))


def test_output_names_tell_inputs_with_one_name_apart(tmp_path):
    names = output_names([tmp_path / "a" / "image.nii.gz", tmp_path / "b" / "image.nii.gz"])
    assert names == ["a-image", "b-image"]
    assert output_names(["x/scan.nii.gz", "x/scan.nii.gz"]) == ["scan", "scan-2"]
    assert output_names(["p/a/ct.nrrd", "q/a/ct.nrrd", "r/b/ct"]) == ["p-a-ct", "q-a-ct", "r-b-ct"]
    assert output_names(["one.nii.gz", "two.nrrd"]) == ["one", "two"]


def test_segment_cli_same_file_names_and_a_refusal(tmp_path):
    p = small_phantom()
    data = np.transpose(p.volume.hu, (2, 1, 0))
    inputs = []
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        inputs.append(tmp_path / sub / "image.nii.gz")
        nib.save(nib.Nifti1Image(data, p.volume.native_affine), str(inputs[-1]))
    # an MR-like volume: no air, no HU
    mr = tmp_path / "c" / "image.nii.gz"
    mr.parent.mkdir()
    nib.save(nib.Nifti1Image(np.full((16, 16, 8), 300, np.int16), np.eye(4)), str(mr))
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["segment", *map(str, inputs), "--out", str(out), "--no-overlay"])
    assert result.exit_code == 0, result.output
    for sub in ("a", "b"):
        payload = json.loads((out / f"{sub}-image" / "result.json").read_text())
        assert payload["scorable"] is True
        assert payload["source"] == str(tmp_path / sub / "image.nii.gz")
    # a third input of the same name that is not CT: a folder of its own, the reason, exit 1;
    # and an input whose name matches an existing folder does not overwrite that folder
    other = tmp_path / "d" / "a-image.nii.gz"
    other.parent.mkdir()
    nib.save(nib.Nifti1Image(data, p.volume.native_affine), str(other))
    result = runner.invoke(app, ["segment", str(mr), str(other), "--out", str(out), "--no-overlay"])
    assert result.exit_code == 1
    assert "not CT in Hounsfield units" in result.output
    assert sorted(f.name for f in out.iterdir()) == ["a-image", "a-image-2", "b-image", "image"]
    refused = json.loads((out / "image" / "result.json").read_text())
    assert refused["scorable"] is False and "not CT in Hounsfield units" in refused["reason"]
    assert not (out / "image" / "lungs.nii.gz").exists()
    assert json.loads((out / "a-image" / "result.json").read_text())["source"] == str(inputs[0])
    assert json.loads((out / "a-image-2" / "result.json").read_text())["source"] == str(other)


def test_unknown_pixel_size_gives_voxels_not_millilitres(tmp_path):
    from celltrial.imaging.scan import write_scan_result

    p = small_phantom()
    volume = dataclasses.replace(p.volume, meta={"spacing_unknown": True})
    result = measure_scan(volume)
    write_scan_result(result, tmp_path)
    payload = json.loads((tmp_path / "result.json").read_text())
    assert payload["lung_volume_ml"] is None and payload["spacing_mm"] is None
    voxels = np.count_nonzero(result.lungs)
    assert payload["lung_volume_voxels"] == voxels
    assert payload["zones"]["right_upper"]["lung_ml"] is None
    assert payload["zones"]["both_all"]["lung_voxels"] == voxels
    assert payload["involvement_pct"] == pytest.approx(result.quantification.involvement_pct, 1e-3)
