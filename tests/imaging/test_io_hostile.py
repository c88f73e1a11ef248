"""CT files with damaged headers or data: an ImagingError naming the file and the attribute,
where numpy/nibabel errors escaped (SVD did not converge, matmul mismatch) or damage passed
silently (NaN voxels cast to integers, a zero rescale slope taken as 1, pixel data that do not
fit the header decoded anyway)."""

from __future__ import annotations

import io
import struct

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from celltrial.imaging.io import ImagingError, read_ct
from tests.fuzz.binary import PngSize, dicom_series, set_png_size, small_nifti


def series(tmp_path, **changes):
    """A 3-slice series; ``changes`` set attributes of the middle file."""
    folder = tmp_path / "series"
    folder.mkdir()
    for k, data in enumerate(dicom_series()):
        if k == 1 and changes:
            ds = pydicom.dcmread(io.BytesIO(data))
            for keyword, value in changes.items():
                with pydicom.config.disable_value_validation():
                    setattr(ds, keyword, value)
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            data = out.getvalue()
        (folder / f"{k}.dcm").write_bytes(data)
    return folder


def test_the_generated_series_reads(tmp_path):
    assert read_ct(series(tmp_path)).hu.shape == (3, 20, 24)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ImagePositionPatient": ["nan", 0, 0]}, r"Image Position \(Patient\) \(0020,0032\)"),
        ({"ImagePositionPatient": [0, 0]}, r"Image Position \(Patient\) .* expected 3 numbers"),
        ({"ImageOrientationPatient": [1, 0, 0]}, "expected 6 numbers"),
        ({"ImageOrientationPatient": [0] * 6}, "expected two direction vectors of length 1"),
        ({"PixelSpacing": [1.5]}, r"Pixel Spacing \(0028,0030\) .* expected 2 numbers"),
        ({"PixelSpacing": [0, 0]}, "expected sizes above 0 mm"),
        ({"RescaleSlope": 0}, r"Rescale Slope \(0028,1053\) is 0"),
        ({"RescaleSlope": "nan"}, "Rescale Slope .* expected 1 number"),
        ({"PixelData": b"\0\0"}, "cannot read the pixel data"),
        ({"NumberOfFrames": 2}, "cannot read the pixel data"),
    ],
)
def test_damaged_dicom_attributes_are_named(tmp_path, changes, message):
    with pytest.raises(ImagingError, match=rf"1\.dcm: .*{message}"):
        read_ct(series(tmp_path, **changes))


def test_a_file_cut_short_is_an_error_not_a_missing_slice(tmp_path):
    folder = series(tmp_path)
    data = (folder / "1.dcm").read_bytes()
    (folder / "1.dcm").write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(ImagingError, match=r"1\.dcm: cannot read the pixel data"):
        read_ct(folder)


def test_a_dicom_file_without_an_image_is_left_out_with_a_note(tmp_path):
    folder = series(tmp_path)
    ds = pydicom.dcmread(folder / "1.dcm")
    del ds.PixelData
    ds.save_as(folder / "1.dcm")
    volume = read_ct(folder)
    assert any(
        "1 DICOM file(s) without an image" in note and "1.dcm" in note for note in volume.notes
    )


def test_other_files_beside_a_series_are_passed_over(tmp_path):
    folder = series(tmp_path)
    (folder / "README.txt").write_text("exported by the PACS\n", encoding="utf-8")
    assert read_ct(folder).hu.shape == (3, 20, 24)


def nifti(tmp_path, data: bytes, name="scan.nii"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.nan, r"voxel\(s\) hold no number \(NaN or infinite\)"),
        (np.inf, r"voxel\(s\) hold no number"),
    ],
)
def test_voxels_that_are_not_numbers_are_refused(tmp_path, values, message):
    hu = np.asarray(nib.Nifti1Image.from_bytes(small_nifti()).dataobj).astype(np.float32)
    hu[hu > 0] = values
    path = tmp_path / "scan.nii"
    nib.save(nib.Nifti1Image(hu, np.diag([1.5, 1.5, 3.0, 1.0])), str(path))
    with pytest.raises(ImagingError, match=rf"scan\.nii: .*{message}"):
        read_ct(path)


def test_complex_voxels_are_refused(tmp_path):
    hu = np.asarray(nib.Nifti1Image.from_bytes(small_nifti()).dataobj).astype(np.complex64)
    path = tmp_path / "scan.nii"
    nib.save(nib.Nifti1Image(hu, np.eye(4)), str(path))
    with pytest.raises(ImagingError, match="voxels of type complex64; expected whole or real"):
        read_ct(path)


@pytest.mark.parametrize(
    ("offset", "fmt", "values", "message"),
    [
        (40, "<4h", (3, 30000, 30000, 30000), "30000 × 30000 × 30000 voxels, more than a CT"),
        (40, "<4h", (3, -5, 20, 6), "the volume is empty"),
        (280, "<4f", (np.nan, 0, 0, 0), "holds values that are not numbers"),
        (280, "<12f", (0,) * 12, "voxel size 0 × 0 × 0 mm"),
        (40, "<4h", (3, 24, 20, 30000), "the file ends before its image data does"),
    ],
)
def test_damaged_nifti_headers_are_said_in_plain_words(tmp_path, offset, fmt, values, message):
    data = bytearray(small_nifti())
    struct.pack_into(fmt, data, offset, *values)
    with pytest.raises(ImagingError, match=rf"scan\.nii: .*{message}") as error:
        read_ct(nifti(tmp_path, bytes(data)))
    assert "allocate" not in str(error.value) and "SVD" not in str(error.value)


def test_a_display_image_of_absurd_size_is_refused_before_decoding(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 48), 200, dtype=np.uint8)).save(buffer, format="PNG")
    path = tmp_path / "slice.png"
    path.write_bytes(set_png_size(buffer.getvalue(), PngSize(65535, 65535)))
    with pytest.raises(ImagingError, match=r"slice\.png: the image .* than a CT slice"):
        read_ct(path)


@pytest.mark.parametrize("zoom", [1e5, 1e30, 1e-6, 0.001])
def test_voxel_sizes_no_ct_has_are_refused(tmp_path, zoom):
    """Lung volumes scale with the voxel size: a header claiming 100 m voxels (or metres read as
    mm) would give volumes off by orders of magnitude."""
    hu = np.full((24, 20, 6), 40, dtype=np.int16)
    hu[2:10, 3:15] = -850
    hu[0] = -1000
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([zoom, zoom, zoom, 1.0])), path)
    with pytest.raises(ImagingError, match=r"voxel size .* a CT's voxels measure 0\.01 to 50 mm"):
        read_ct(path)


@pytest.mark.parametrize("zoom", [0.3, 1.5, 5.0])
def test_voxel_sizes_of_real_scanners_are_read(tmp_path, zoom):
    hu = np.full((24, 20, 6), 40, dtype=np.int16)
    hu[2:10, 3:15] = -850
    hu[0] = -1000
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([zoom, zoom, zoom, 1.0])), path)
    assert read_ct(path).spacing == pytest.approx((zoom, zoom, zoom))
