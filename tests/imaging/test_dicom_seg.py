"""DICOM SEG beside the NIfTI masks (issue 24): frames on the right source images, the same voxels
as the NIfTI masks, coded segments, patient/study/Frame of Reference of the source; result.json
states method, versions and input."""

from __future__ import annotations

import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from celltrial import __version__
from celltrial.imaging.command import app
from celltrial.imaging.dicom_seg import SEG_FILE, write_dicom_seg
from celltrial.imaging.io import ImagingError, read_ct
from tests.imaging.conftest import real_ct, small_phantom

#: label → (NIfTI file, value) of each segment
SEGMENTS = {
    "Right lung": ("lungs.nii.gz", 1, "3341006"),
    "Left lung": ("lungs.nii.gz", 2, "44029006"),
    "Ground-glass opacity": ("lesions.nii.gz", 1, "1217294009"),
    "Consolidation": ("lesions.nii.gz", 2, "95436008"),
}


def write_phantom_series(folder, *, patient="CT-007"):
    """The small phantom as a DICOM series: one file a slice, numbered from the top slice down
    (so instance order is the reverse of position order) and named in neither order."""
    volume = small_phantom().volume
    nz = volume.hu.shape[0]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(
            str(folder / f"img{(k * 37) % nz:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128
        )
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName = "Test^Phantom"
        ds.PatientID = patient
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber = 2
        ds.InstanceNumber = nz - k  # 1 = the top slice
        # internal (z, y, x) is LPS-aligned: columns → patient's left, rows → posterior
        ds.ImagePositionPatient = [-175.0, -175.0, -130.0 + volume.spacing[0] * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [volume.spacing[1], volume.spacing[2]]
        ds.SliceThickness = volume.spacing[0]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.Rows, ds.Columns = volume.hu.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = (volume.hu[k].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        ds.save_as(ds.filename, enforce_file_format=True)
    return folder


def check_seg_against_nifti(seg_path, folder_or_masks, source_dir):
    """Read the SEG back: each frame refers to the source image at its position; per segment,
    the voxels equal the NIfTI mask's (in the source's slice order). Returns the SEG."""
    seg = hd.seg.segread(str(seg_path))
    sources = {}
    for file in sorted(source_dir.iterdir()):
        ds = pydicom.dcmread(file, stop_before_pixels=True, force=True)
        sources[ds.SOPInstanceUID] = ds
    # the native slice axis of the NIfTI runs in position order along the slice normal
    by_position = sorted(sources.values(), key=lambda d: float(d.ImagePositionPatient[2]))
    index = {ds.SOPInstanceUID: k for k, ds in enumerate(by_position)}
    masks = folder_or_masks
    if not isinstance(masks, dict):
        masks = {
            name: np.asarray(nib.load(str(folder_or_masks / name)).dataobj)
            for name in ("lungs.nii.gz", "lesions.nii.gz")
        }
    counts = {number: 0 for number in range(1, 5)}
    frames = seg.pixel_array
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert uid in sources
        position = item.PlanePositionSequence[0].ImagePositionPatient
        assert np.allclose(position, sources[uid].ImagePositionPatient)
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        label = seg.SegmentSequence[number - 1].SegmentLabel
        file, value, _ = SEGMENTS[label]
        expected = np.equal(masks[file][:, :, index[uid]].T, value)  # x, y → rows, columns
        assert np.array_equal(frames[f].astype(bool), expected), (label, uid)
        counts[number] += int(frames[f].sum())
    for number, segment in enumerate(seg.SegmentSequence, start=1):
        file, value, _ = SEGMENTS[segment.SegmentLabel]
        assert counts[number] == np.count_nonzero(masks[file] == value), segment.SegmentLabel
    return seg


def test_ct_segment_writes_a_dicom_seg_of_a_dicom_series(tmp_path):
    source = write_phantom_series(tmp_path / "CT-007_2026-01-01")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(source), "--out", str(out), "--no-overlay"])
    assert result.exit_code == 0, result.output
    folder = out / "CT-007_2026-01-01"
    seg = check_seg_against_nifti(folder / SEG_FILE, folder, source)
    lungs = np.asarray(nib.load(str(folder / "lungs.nii.gz")).dataobj)
    lesions = np.asarray(nib.load(str(folder / "lesions.nii.gz")).dataobj)
    assert (lungs == 1).sum() > 1000 and (lungs == 2).sum() > 1000
    assert (lesions == 1).sum() > 100 and (lesions == 2).sum() > 100
    first = pydicom.dcmread(next(source.iterdir()), stop_before_pixels=True)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.SegmentsOverlap == "YES"  # lesions lie inside the lungs
    assert seg.PatientID == "CT-007" and seg.PatientName == "Test^Phantom"
    assert seg.StudyInstanceUID == first.StudyInstanceUID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert seg.SeriesInstanceUID != first.SeriesInstanceUID
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    # the source images from the lungs' first to last slice: those the frames lie on and no
    # other (the phantom's lungs end before its first and last slices)
    framed = {
        item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for item in seg.PerFrameFunctionalGroupsSequence
    }
    lung_slices = np.flatnonzero(lungs.any(axis=(0, 1)))
    assert len(referenced) == lung_slices[-1] - lung_slices[0] + 1 < len(list(source.iterdir()))
    assert framed == referenced
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    # coded segments and the algorithm that made them
    for segment in seg.SegmentSequence:
        _, _, code = SEGMENTS[segment.SegmentLabel]
        concept = segment.SegmentedPropertyTypeCodeSequence[0]
        assert (concept.CodingSchemeDesignator, concept.CodeValue) == ("SCT", code)
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "celltrial"
        assert algorithm.AlgorithmVersion == __version__
        assert "density" in algorithm.AlgorithmParameters
    lesion = seg.SegmentSequence[2]
    assert lesion.AnatomicRegionSequence[0].CodeValue == "39607008"  # lung
    payload = json.loads((folder / "result.json").read_text())
    assert payload["outputs"]["dicom_seg"] == SEG_FILE
    assert payload["celltrial_version"] == __version__
    assert payload["input"]["series_uid"] == first.SeriesInstanceUID
    assert payload["input"]["kind"] == "DICOM series"
    assert len(payload["input"]["sha256"]) == 64
    assert payload["methods"]["lesions"]["method"] == "density"
    assert payload["model"] is None


def test_result_json_of_the_learned_method_names_the_model(tmp_path):
    import dataclasses
    import hashlib
    from importlib import resources

    from celltrial.imaging.scan import measure_scan, write_scan_result

    source = write_phantom_series(tmp_path / "scan")
    result = measure_scan(source)
    # the network itself is not run here (slow on a CPU); what a learned run writes is
    quantification = dataclasses.replace(result.quantification, method="learned")
    learned = dataclasses.replace(result, quantification=quantification)
    payload = write_scan_result(learned, tmp_path)
    assert json.loads((tmp_path / "result.json").read_text()) == payload
    model = payload["model"]
    assert model["name"] == "lesions_unet.onnx" and model["version"] == __version__
    shipped = resources.files("celltrial.imaging") / "models" / model["name"]
    assert model["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert payload["methods"]["lesions"]["method"] == "learned"
    assert "bands_hu" not in payload["methods"]["lesions"]
    seg = hd.seg.segread(str(tmp_path / SEG_FILE))
    lungs = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    lesions = seg.SegmentSequence[3].SegmentationAlgorithmIdentificationSequence[0]
    assert lungs.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Morphological Operations"
    assert lesions.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert model["sha256"] in lesions.AlgorithmParameters
    assert "learned" in lesions.AlgorithmParameters


def test_no_seg_for_a_nifti_input_and_a_refusal_removes_an_earlier_seg(tmp_path):
    p = small_phantom()
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(p.volume.hu, (2, 1, 0)), p.volume.native_affine), path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(path), "--out", str(out), "--no-overlay"])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "scan" / "result.json").read_text())
    assert payload["outputs"]["dicom_seg"] is None
    assert payload["input"]["kind"] == "volume file" and payload["input"]["series_uid"] is None
    assert not (out / "scan" / SEG_FILE).exists()
    with pytest.raises(ImagingError, match="not a DICOM series"):
        write_dicom_seg(p.volume, p.lungs, p.lungs * 0, tmp_path / "x.dcm", lesion_method="density")
    # an input scored earlier and refused now: its earlier SEG goes with its masks
    from celltrial.imaging.scan import write_refusal

    (out / "scan" / SEG_FILE).write_bytes(b"an earlier SEG")
    write_refusal(str(path), "not a chest CT", out / "scan")
    assert sorted(f.name for f in (out / "scan").iterdir()) == ["result.json"]


def test_real_dicom_slices_without_a_frame_of_reference_get_no_seg(tmp_path):
    # dicom-lungmask: real slices whose tags were stripped (no Frame of Reference UID): a SEG
    # could not be placed by a viewer, so none is written and the reason is given
    volume = read_ct(real_ct("dicom-lungmask"))
    lungs = np.zeros(volume.hu.shape, np.uint8)
    lungs[:, 100:200, 100:200] = 1
    with pytest.raises(ImagingError, match=r"Frame of Reference UID \(0020,0052\)"):
        write_dicom_seg(volume, lungs, lungs * 0, tmp_path / "seg.dcm", lesion_method="density")


def test_seg_of_real_covid_ct_md_slices(tmp_path):
    # a few real slices (JPEG-lossless, Siemens) of the COVID-19 scan: lungs and density lesions
    # on them, written as SEG, read back against the masks
    from celltrial.imaging.lesions import segment_lesions
    from celltrial.imaging.lungs import segment_lungs

    scan = real_ct("covid-ct-md/P001")
    files = sorted(scan.glob("*.dcm"), key=lambda f: int(f.stem.rsplit("_", 1)[1]))
    source = tmp_path / "P001"
    source.mkdir()
    for file in files[60:68]:
        (source / file.name).symlink_to(file)  # a few slices, read in place
    volume = read_ct(source)
    lungs = segment_lungs(volume).labels
    lesions = segment_lesions(volume, lungs, method="density")
    assert (lungs == 1).any() and (lungs == 2).any()
    path = write_dicom_seg(volume, lungs, lesions, tmp_path / SEG_FILE, lesion_method="density")
    masks = {
        "lungs.nii.gz": volume.compute_native(lungs),
        "lesions.nii.gz": volume.compute_native(lesions),
    }
    seg = check_seg_against_nifti(path, masks, source)
    first = pydicom.dcmread(files[60], stop_before_pixels=True)
    assert seg.PatientID == first.PatientID and seg.StudyDate == first.StudyDate
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
