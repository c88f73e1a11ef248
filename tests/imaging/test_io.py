"""Readers: NIfTI orientation round trip, display images, DICOM series quirks, real files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from celltrial.imaging.io import (
    ImagingError,
    read_ct,
    read_dicom_series,
    read_display_image,
    write_mask,
)
from tests.imaging.conftest import real_ct


def _volume(nx=20, ny=16, nz=6):
    hu = np.full((nx, ny, nz), 40, dtype=np.int16)
    hu[2:8, 3:12, :] = -850  # a "lung" towards low x
    hu[0, :, :] = -1000
    return hu


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "P", "S"), ("L", "A", "I")])
def test_nifti_orientation_round_trip(tmp_path, codes):
    data = _volume()
    ornt = nib.orientations.axcodes2ornt(codes)
    affine = nib.orientations.inv_ornt_aff(ornt, data.shape) @ np.diag([1.5, 1.5, 3.0, 1.0])
    affine = np.diag([1.5, 1.5, 3.0, 1]) @ nib.orientations.inv_ornt_aff(
        nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), ornt),
        data.shape,
    )
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    volume = read_ct(path)
    assert volume.hu.shape == (6, 16, 20)
    assert volume.spacing == pytest.approx((3.0, 1.5, 1.5))
    assert not volume.approximate
    mask = (volume.hu == -850).astype(np.uint8)
    write_mask(volume, mask, tmp_path / "mask.nii.gz")
    back = nib.load(str(tmp_path / "mask.nii.gz"))
    assert back.shape == data.shape
    assert np.allclose(back.affine, affine)
    assert np.array_equal(np.asarray(back.dataobj) == 1, data == -850)


def test_internal_orientation_puts_patient_left_at_high_x(tmp_path):
    data = _volume()  # lung at low array x; RAS affine: low x = patient's right
    path = tmp_path / "ras.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    volume = read_ct(path)
    columns = np.nonzero((volume.hu == -850).any(axis=(0, 1)))[0]
    assert columns.min() >= 10  # patient's right shown on the image's left… of the viewer
    # internal x grows towards the patient's left, so the patient's right is at low index
    # after flipping a RAS array: the lung (patient's right) lands at high index here
    assert columns.max() == 20 - 1 - 2


def test_uint8_nifti_is_approximate_and_mapped_from_lung_window(tmp_path):
    data = np.zeros((8, 8, 1), dtype=np.uint8)
    data[..., 0] = 255
    data[0, 0, 0] = 0
    path = tmp_path / "display.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    volume = read_ct(path)
    assert volume.approximate
    assert any("approximate HU" in n for n in volume.notes)
    assert volume.hu.max() == 150 and volume.hu.min() == -1350
    other = read_ct(path, window=(1000, -500))
    assert other.hu.max() == 0


def test_png_slice(tmp_path):
    path = tmp_path / "slice.png"
    Image.fromarray(np.full((30, 40), 128, dtype=np.uint8)).save(path)
    volume = read_display_image(path)
    assert volume.hu.shape == (1, 30, 40)
    assert volume.approximate and volume.spacing[1] == pytest.approx(8.0)


def test_not_ct_values_rejected(tmp_path):
    path = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 4), 300, np.int16), np.eye(4)), str(path))
    with pytest.raises(ImagingError, match="not CT in Hounsfield units"):
        read_ct(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"not a nifti")
    with pytest.raises(ImagingError, match="cannot read"):
        read_ct(path)


# --- generated DICOM series -------------------------------------------------------------------


def _write_slice(folder, z, pixels, *, series, instance, x_shift=0.0, orientation=None, **extra):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(
        # named in the order written (a random name alone would put a series written unsorted
        # in slice order one time in 24)
        str(folder / f"{instance:04d}-{generate_uid()}.dcm"),
        {},
        file_meta=meta,
        preamble=b"\0" * 128,
    )
    ds.Modality = extra.pop("Modality", "CT")
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [x_shift, 0.0, float(z)]
    ds.ImageOrientationPatient = orientation or [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.8, 0.8]
    ds.SliceThickness = 2.0
    ds.RescaleSlope = 2
    ds.RescaleIntercept = -1024
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(ds.filename, enforce_file_format=True)


def _series(folder, zs, *, series=None, **options):
    series = series or generate_uid()
    for i, z in enumerate(zs):
        pixels = np.full((12, 10), (1024 + 40) // 2, dtype=np.uint16)
        pixels[2:8, 1:5] = (1024 - 850) // 2
        pixels[0, 0] = i  # marks the slice
        _write_slice(folder, z, pixels, series=series, instance=i + 1, **options)
    return series


def test_dicom_rescale_spacing_and_sorting(tmp_path):
    _series(tmp_path, [6.0, 0.0, 4.0, 2.0])
    volume = read_dicom_series(tmp_path)
    assert volume.hu.shape == (4, 12, 10)
    assert volume.spacing == pytest.approx((2.0, 0.8, 0.8))
    assert volume.hu[0, 5, 5] == 40 - 0  # slope 2, intercept −1024
    assert volume.hu.min() == -1024
    assert any("sorted" in n for n in volume.notes)


def test_dicom_pixel_padding_and_unknown_pixel_size(tmp_path):
    # stored 0 is the padding value outside the field of view (would be −1024 HU, air)
    series = generate_uid()
    for i, z in enumerate([0.0, 2.0, 4.0]):
        pixels = np.full((12, 10), (1024 + 40) // 2, dtype=np.uint16)
        pixels[2:8, 1:5] = (1024 - 850) // 2
        pixels[:, 9] = 0
        _write_slice(tmp_path, z, pixels, series=series, instance=i + 1, PixelPaddingValue=0)
    for file in tmp_path.iterdir():  # no Pixel Spacing in any file
        ds = pydicom.dcmread(file)
        del ds.PixelSpacing
        ds.save_as(file, enforce_file_format=True)
    volume = read_dicom_series(tmp_path)
    assert (volume.hu[:, :, 9] == -3024).all() and volume.hu[0, 5, 5] == 40
    assert volume.meta["spacing_unknown"] is True
    assert any("pixel size unknown" in n for n in volume.notes)


def test_dicom_duplicates_missing_slices_and_several_series(tmp_path):
    main = _series(tmp_path, [0.0, 2.0, 2.0, 4.0, 10.0, 12.0])
    _series(tmp_path, [0.0, 5.0])
    volume = read_dicom_series(tmp_path)
    notes = " ".join(volume.notes)
    assert "duplicate" in notes and "missing slices" in notes and "2 series" in notes
    assert volume.series_uid == main
    assert volume.hu.shape[0] == 5
    with pytest.raises(ImagingError, match="not found"):
        read_dicom_series(tmp_path, series_uid="1.2.3")


def test_dicom_gantry_tilt_reported(tmp_path):
    zs = [0.0, 2.0, 4.0, 6.0]
    series = generate_uid()
    for i, z in enumerate(zs):
        pixels = np.full((12, 10), 532, dtype=np.uint16)
        pixels[2:8, 1:5] = 87
        _write_slice(tmp_path, z, pixels, series=series, instance=i + 1, x_shift=0.0)
    # shear the positions along y as a tilted gantry does
    for i, path in enumerate(sorted(tmp_path.iterdir())):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [
            0.0,
            float(ds.ImagePositionPatient[2]) * 0.3,
            ds.ImagePositionPatient[2],
        ]
        ds.save_as(path)
        del i
    volume = read_dicom_series(tmp_path)
    assert any("gantry tilt" in n for n in volume.notes)


def test_dicom_not_ct_and_not_axial(tmp_path):
    (tmp_path / "mr").mkdir()
    _series(tmp_path / "mr", [0.0, 2.0], Modality="MR")
    with pytest.raises(ImagingError, match="modality MR"):
        read_dicom_series(tmp_path / "mr")
    (tmp_path / "sag").mkdir()
    _series(tmp_path / "sag", [0.0, 2.0], orientation=[0, 1, 0, 0, 0, -1])
    with pytest.raises(ImagingError, match="not axial"):
        read_dicom_series(tmp_path / "sag")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImagingError, match="no DICOM"):
        read_dicom_series(tmp_path / "empty")


# --- real files ---------------------------------------------------------------------------------


def test_real_dicom_lungmask_slices():
    volume = read_ct(real_ct("dicom-lungmask"))
    assert volume.hu.shape == (2, 512, 512)
    assert volume.spacing == pytest.approx((1.0, 0.625, 0.625))
    assert volume.hu.min() < -900 and volume.hu.max() > 100


def test_real_jpeg2000_dicom_via_simpleitk():
    volume = read_ct(real_ct("totalseg-examples/dicom_abdomen_j2k"))
    assert volume.hu.shape[0] == 20
    assert -1100 < np.percentile(volume.hu, 1) < -500


@pytest.mark.parametrize("name", ["chest_crop.nii.gz", "abdomen_lung_bases.nii.gz"])
def test_real_nifti_lps_ras_int32(name):
    volume = read_ct(real_ct(f"totalseg-examples/{name}"))
    assert volume.hu.dtype == np.int16
    assert volume.hu.ndim == 3 and not volume.approximate


def test_real_chest_crop_lung_mask_is_aerated_and_the_crop_not_scored():
    from celltrial.imaging.lungs import segment_lungs
    from celltrial.imaging.scan import measure_scan
    from celltrial.imaging.scorable import NotScorable

    path = real_ct("totalseg-examples/chest_crop.nii.gz")
    # a crop around the aorta cuts both lungs at its edges: not scored, with that reason
    with pytest.raises(NotScorable, match="cut by the field of view"):
        measure_scan(path)
    volume = read_ct(path)
    found = segment_lungs(volume)
    assert found.cut_share > 0.5
    lungs, hu = found.labels, volume.hu
    assert hu[lungs > 0].mean() < -650
    # two lungs, the right one at low x (internal orientation), the mediastinum between them left
    # out: the crop's central columns hold little lung
    right_x = np.nonzero(lungs == 1)[2].mean()
    left_x = np.nonzero(lungs == 2)[2].mean()
    assert right_x < lungs.shape[2] / 2 < left_x
    centre = lungs[:, :, lungs.shape[2] // 2 - 8 : lungs.shape[2] // 2 + 8] > 0
    assert centre.mean() < 0.15
    # no heart or mediastinum inside the lungs: what is denser than −100 HU (vessels, the
    # crop's cut edges) stays under 5 % of them (4.2 % measured; the heart alone would be more)
    assert np.count_nonzero(hu[lungs > 0] > -100) < 0.05 * np.count_nonzero(lungs)


def test_nrrd_volume_reads_in_hu_with_orientation(tmp_path):
    import SimpleITK as sitk

    data = np.full((6, 16, 20), 40, dtype=np.int16)  # SimpleITK arrays are z, y, x
    data[:, 3:12, 2:8] = -850
    image = sitk.GetImageFromArray(data)
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))  # LPS
    path = tmp_path / "scan.nrrd"
    sitk.WriteImage(image, str(path))
    volume = read_ct(path)
    assert volume.hu.shape == (6, 16, 20)
    assert volume.spacing == pytest.approx((2.5, 0.8, 0.8))
    assert not volume.approximate
    # LPS: array x grows towards the patient's left, as the internal orientation does
    assert (volume.hu[:, 3:12, 2:8] == -850).all()
    mask = (volume.hu == -850).astype(np.uint8)
    write_mask(volume, mask, tmp_path / "mask.nii.gz")
    assert nib.load(str(tmp_path / "mask.nii.gz")).shape == (20, 16, 6)
