"""Lung and lesion masks as a DICOM Segmentation (SEG) of the source series, for a PACS viewer.

Written with highdicom, for DICOM series input only: one binary SEG whose four segments (right
lung, left lung, ground-glass opacity, consolidation; coded concepts in ``dicom_seg.yaml``) lie
on the source images' grid, each frame referring to the source image it was segmented on (SOP
Instance UID, position), with the patient, the study and the Frame of Reference of the source
series, so that a viewer puts the masks over the scan. Frames with nothing in them are left out,
and the SEG refers to the source images from the lungs' first slice to their last.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from celltrial.imaging.io import CtVolume, ImagingError

SEG_FILE = "segmentation.dcm"
#: Series number of the SEG (a viewer lists series by number; the scan's own are usually small).
SERIES_NUMBER = 9901
#: What a SEG needs from each source image, by keyword: the attribute as DICOM names it.
REQUIRED = {
    "SOPClassUID": "SOP Class UID (0008,0016)",
    "SOPInstanceUID": "SOP Instance UID (0008,0018)",
    "StudyInstanceUID": "Study Instance UID (0020,000D)",
    "SeriesInstanceUID": "Series Instance UID (0020,000E)",
    "FrameOfReferenceUID": "Frame of Reference UID (0020,0052)",
    "PixelSpacing": "Pixel Spacing (0028,0030)",
}

#: Patient and study attributes a SEG copies from its source, which DICOM allows to be empty.
EMPTY_ALLOWED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


@cache
def load_segment_definitions() -> dict[str, Any]:
    """The shipped segments of the SEG (``dicom_seg.yaml``), checked."""
    text = (resources.files("celltrial.imaging") / "dicom_seg.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for segment in data["segments"]:
        if segment["mask"] not in ("lungs", "lesions") or len(segment["type"]) != 3:
            raise ImagingError(f"dicom_seg.yaml: segment {segment.get('label')!r} is malformed")
    return data


def write_dicom_seg(
    volume: CtVolume,
    lungs: np.ndarray,
    lesions: np.ndarray,
    path: Path | str,
    *,
    lesion_method: str,
    model: dict[str, str] | None = None,
) -> Path:
    """Write the lungs (1 right, 2 left) and lesions (1 ground-glass, 2 consolidation), both in
    internal orientation, as a DICOM SEG of the series ``volume`` was read from.

    ``lesion_method`` (density or learned) and ``model`` (the network's name, version and
    SHA-256 when it ran) go into the segments' algorithm identification. Raises
    :class:`ImagingError` when ``volume`` is not a DICOM series or its images lack what a SEG
    must refer to (the reason says which attribute).
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from celltrial import __version__

    files = volume.meta.get("instances")
    if not files:
        raise ImagingError(f"{volume.source}: no DICOM SEG: the input is not a DICOM series")
    definitions = load_segment_definitions()
    # frames in the order of the source images (the input's slice axis), rows × columns: views
    # of the masks, no copies
    masks = {
        name: np.transpose(volume.view_native(mask), (2, 1, 0))
        for name, mask in (("lungs", lungs), ("lesions", lesions))
    }
    slices, rows, cols = masks["lungs"].shape
    if slices != len(files):
        raise ImagingError(
            f"{volume.source}: no DICOM SEG: {slices} slices segmented but {len(files)} "
            "source images"
        )
    # only the slices from the first to the last holding a mask (the lungs' extent) are framed:
    # the others would give empty frames, which are left out, and the arrays made here and by
    # highdicom (several bytes a voxel) stay smaller
    held = np.flatnonzero(masks["lungs"].any(axis=(1, 2)) | masks["lesions"].any(axis=(1, 2)))
    if not held.size:
        raise ImagingError(f"{volume.source}: no DICOM SEG: the masks are empty")
    first, last = int(held[0]), int(held[-1]) + 1
    sources = [pydicom.dcmread(f, stop_before_pixels=True, force=True) for f in files[first:last]]
    _check_sources(sources, volume.source)
    # segment by segment in memory (highdicom takes the segments along the last axis: a view),
    # so that each segment's frames are contiguous when made and when highdicom reads them
    stack = np.empty((len(definitions["segments"]), last - first, rows, cols), dtype=bool)
    for i, segment in enumerate(definitions["segments"]):
        np.equal(masks[segment["mask"]][first:last], segment["value"], out=stack[i])
    frames = np.moveaxis(stack, 0, -1)
    # lesions lie in the lungs: the segments overlap (decided frame by frame, see _segmentation)
    overlap = any(np.count_nonzero(stack[:, f], axis=0).max() > 1 for f in range(last - first))

    def algorithm(mask: str) -> Any:
        method = "density" if mask == "lungs" else lesion_method
        parameters = {"structures": mask, "method": method}
        family = codes.cid7162.MorphologicalOperations
        if mask == "lesions" and method == "learned":
            family = codes.cid7162.ArtificialIntelligence
            if model:
                parameters.update({f"model {k}": str(v) for k, v in model.items()})
        return hd.AlgorithmIdentificationSequence(
            name="celltrial",
            family=family,
            version=__version__,
            source="celltrial ct segment",
            parameters=parameters,
        )

    region = hd.sr.CodedConcept(*_code(definitions["anatomic_region"]))
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment["label"],
            segmented_property_category=hd.sr.CodedConcept(*_code(segment["category"])),
            segmented_property_type=hd.sr.CodedConcept(*_code(segment["type"])),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm(segment["mask"]),
            anatomic_regions=[region] if segment["mask"] == "lesions" else None,
        )
        for number, segment in enumerate(definitions["segments"], start=1)
    ]
    logger = logging.getLogger("highdicom")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its notes on the source series are not for a user
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = _segmentation(overlap)(
                source_images=sources,
                pixel_array=frames,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=SERIES_NUMBER,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="celltrial",
                manufacturer_model_name="celltrial ct segment",
                software_versions=__version__,
                device_serial_number="none",
                content_label="LUNGS",
                content_description="Lungs and lung lesions (celltrial ct segment)",
                series_description="Lungs and lesions (celltrial)",
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ImagingError(
            f"{volume.source}: no DICOM SEG: it could not be made from the source images ({exc})"
        ) from None
    finally:
        logger.setLevel(level)
    path = Path(path)
    seg.save_as(str(path))
    return path


def _segmentation(overlap: bool) -> type:
    """highdicom's ``Segmentation`` told whether the segments overlap, instead of finding out
    by summing the 4-D stack of segments over its last axis: that sum is an int64 array of the
    frames' size (8 bytes a voxel, twice the stack itself; issue 24: +0.6 GB for a 512 × 512 ×
    150 series). What highdicom checks there holds by construction here: the stack is boolean
    (binary) with one plane per segment described."""
    import highdicom as hd

    value = hd.seg.SegmentsOverlapValues.YES if overlap else hd.seg.SegmentsOverlapValues.NO

    class Segmentation(hd.seg.Segmentation):
        @staticmethod
        def _check_and_cast_pixel_array(pixel_array: Any, *args: Any, **kwargs: Any) -> Any:
            if not (isinstance(pixel_array, np.ndarray) and pixel_array.dtype == np.bool_):
                raise TypeError("the SEG's frames must be a boolean stack of segments")
            return pixel_array, value

    return Segmentation


def _check_sources(sources: Sequence[Any], source: str) -> None:
    """Every source image holds the UIDs and pixel size a SEG refers to; one study, one frame
    of reference. The patient and study attributes a SEG copies are added empty where the
    source images lack them (to the headers read here, not to the files)."""
    for keyword, name in REQUIRED.items():
        if any(not ds.get(keyword) for ds in sources):
            raise ImagingError(
                f"{source}: no DICOM SEG: the source images have no {name}, which a "
                "segmentation must refer to"
            )
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
        if len({str(ds.get(keyword)) for ds in sources}) > 1:
            raise ImagingError(
                f"{source}: no DICOM SEG: the source images differ in {REQUIRED[keyword]}"
            )
    for ds in sources:  # anonymised series often drop these; DICOM lets them be empty
        for keyword in EMPTY_ALLOWED:
            if keyword not in ds:
                setattr(ds, keyword, "")


def _code(triple: Sequence[str]) -> tuple[str, str, str]:
    """``[scheme, code, meaning]`` of ``dicom_seg.yaml`` as highdicom's (value, scheme,
    meaning)."""
    scheme, value, meaning = triple
    return str(value), str(scheme), str(meaning)


__all__ = ["SEG_FILE", "load_segment_definitions", "write_dicom_seg"]
