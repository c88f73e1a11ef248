"""Readers of chest CT: DICOM series, NIfTI and NRRD volumes in HU, 8-bit display images.

Every reader returns a :class:`CtVolume`: Hounsfield units in one internal orientation — array axes
``(z, y, x)`` with x towards the patient's left, y towards posterior and z towards superior (so
``hu[k]`` shows as a radiologist reads an axial slice: patient's right on the image's left,
anterior at the top) — plus what is needed to put masks back into the input's own geometry
(:meth:`CtVolume.compute_native`, :func:`write_mask`), and the notes a reader made on the way
(approximate HU, gantry tilt, missing slices…).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from celltrial.errors import CelltrialError

#: Default lung window (width, level) used to map 8-bit display images back to HU.
DEFAULT_WINDOW = (1500.0, -600.0)
#: Internal orientation of the (x, y, z) axes in nibabel's axis codes.
CANONICAL_CODES = ("L", "P", "S")
DISPLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
#: The largest volume read (voxels; 2 GB as int16), e.g. 1024 slices of 1024 × 1024.
MAX_VOXELS = 2**30
#: The voxel sizes (mm, each side) a CT can have: sub-millimetre pixels to thick slabs.
VOXEL_MM = (0.01, 50.0)
#: The largest display image read (pixels), e.g. 8192 × 8192; a CT slice has 512 × 512.
MAX_PIXELS = 2**26


class ImagingError(CelltrialError):
    """A CT input is missing, unreadable, not CT, not axial or inconsistent."""


@dataclass(frozen=True)
class CtVolume:
    """A CT volume in HU (internal orientation, axes z, y, x) and how to go back to the input.

    ``spacing`` is (z, y, x) in mm. ``native_affine`` maps the input array's voxel indices (as
    the input file stores them, x-y-z order) to RAS+ millimetres; ``ornt`` is the nibabel
    orientation transform from that array to the internal x-y-z array. ``approximate`` is True when
    HU were reconstructed from display values. ``notes`` lists what the reader found and handled.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    source: str
    native_affine: np.ndarray
    native_shape: tuple[int, int, int]
    ornt: np.ndarray
    approximate: bool = False
    notes: tuple[str, ...] = ()
    series_uid: str | None = None
    checksum: str | None = None
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    def compute_native(self, mask: np.ndarray) -> np.ndarray:
        """A mask of the internal (z, y, x) array put back into the input's array geometry."""
        return np.ascontiguousarray(self.view_native(mask))

    def view_native(self, mask: np.ndarray) -> np.ndarray:
        """:meth:`compute_native` as a view of ``mask`` (axes swapped and flipped, no copy)."""
        import nibabel as nib

        if mask.shape != self.hu.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the volume's {self.hu.shape}")
        xyz = np.transpose(mask, (2, 1, 0))
        back = nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt(CANONICAL_CODES), self.native_ornt
        )
        return nib.orientations.apply_orientation(xyz, back)

    @property
    def native_ornt(self) -> np.ndarray:
        import nibabel as nib

        return nib.orientations.io_orientation(self.native_affine)


def compute_canonical(
    data: Any,
    affine: np.ndarray,
    *,
    source: str,
    approximate: bool = False,
    notes: tuple[str, ...] = (),
    series_uid: str | None = None,
    checksum: str | None = None,
    meta: dict[str, object] | None = None,
    as_float32: bool = False,
) -> CtVolume:
    """Build a :class:`CtVolume` from an x-y-z array in HU and its RAS+ affine.

    ``data`` may also be a lazily read nibabel array proxy: it is then read slab by slab along
    its slice axis, so that the int16 volume is the only full-size array made (``as_float32``:
    the proxy scales its values, which are taken as float32, as ``get_fdata`` would).
    """
    import nibabel as nib

    if data.ndim == 2:
        data = np.asarray(data)[:, :, None]
    if data.ndim == 4 and data.shape[3] == 1:
        data = np.asarray(data[..., 0])
    if data.ndim != 3:
        raise ImagingError(f"{source}: a 3-D volume or 2-D slice is expected, got {data.shape}")
    _check_array(data, source)
    ornt = _orientation(np.asarray(affine, dtype=float), source)
    notes = list(notes)
    # the slice axis must be the superior–inferior one (axial acquisition)
    codes = nib.orientations.ornt2axcodes(ornt)
    if "S" not in codes and "I" not in codes:
        raise ImagingError(f"{source}: no axis runs head–feet (axes {codes}); axial CT expected")
    if codes[2] not in ("S", "I") and data.shape[2] > 1:
        raise ImagingError(
            f"{source}: slices are not axial (array axes {''.join(codes)}); "
            "reformat to axial slices first"
        )
    transform = nib.orientations.ornt_transform(
        ornt, nib.orientations.axcodes2ornt(CANONICAL_CODES)
    )
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    spacing_xyz = np.empty(3)
    for i in range(3):
        spacing_xyz[int(transform[i, 0])] = zooms[i]
    hu = _compute_internal_hu(data, transform, source, as_float32=as_float32)
    _check_ct_values(hu, source, approximate)
    return CtVolume(
        hu=hu,
        spacing=(float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0])),
        source=source,
        native_affine=np.asarray(affine, dtype=float),
        native_shape=tuple(int(s) for s in data.shape),  # type: ignore[arg-type]
        ornt=transform,
        approximate=approximate,
        notes=tuple(notes),
        series_uid=series_uid,
        checksum=checksum,
        meta=dict(meta or {}),
    )


def _check_array(data: Any, source: str) -> None:
    """An array (or a lazily read one) of a size and voxel type a CT can have."""
    shape = tuple(int(n) for n in data.shape)
    if min(shape) < 1:
        raise ImagingError(f"{source}: the volume is empty ({' × '.join(map(str, shape))} voxels)")
    voxels = int(np.prod(np.asarray(shape, dtype=object)))
    if voxels > MAX_VOXELS:
        raise ImagingError(
            f"{source}: the header describes {' × '.join(map(str, shape))} voxels, more than "
            f"a CT volume has ({MAX_VOXELS:,} at most); the header is damaged or this is not CT"
        )
    kind = np.dtype(data.dtype)
    if kind.kind not in "iuf":
        raise ImagingError(
            f"{source}: voxels of type {kind.name}; expected whole or real numbers (HU)"
        )


def _orientation(affine: np.ndarray, source: str) -> np.ndarray:
    """The nibabel orientation of ``affine``; a damaged geometry is an :class:`ImagingError`."""
    import nibabel as nib

    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ImagingError(
            f"{source}: the image geometry (voxel size, position, direction) holds values that "
            "are not numbers; the header is damaged"
        )
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if not np.isfinite(zooms).all() or (zooms <= 0).any():
        raise ImagingError(
            f"{source}: voxel size {' × '.join(f'{z:g}' for z in zooms)} mm; expected sizes "
            "above 0 (the header is damaged)"
        )
    low, high = VOXEL_MM
    if (zooms < low).any() or (zooms > high).any():
        raise ImagingError(
            f"{source}: voxel size {' × '.join(f'{z:.3g}' for z in zooms)} mm; a CT's voxels "
            f"measure {low:g} to {high:g} mm a side (the header is damaged or its units are not "
            "mm): volumes measured from it would be wrong"
        )
    try:
        ornt = nib.orientations.io_orientation(affine)
    except (ValueError, np.linalg.LinAlgError):
        ornt = np.full((3, 2), np.nan)
    if np.isnan(ornt).any() or len(set(ornt[:, 0].tolist())) < 3:
        raise ImagingError(
            f"{source}: the image axes do not point in three different directions; the "
            "header's geometry is damaged"
        )
    return ornt


#: Values below this (HU) are padding outside the field of view (−2048, −3024), not measured air.
PADDING_HU = -1100.0
#: What a DICOM image's Pixel Padding Value pixels become (the common padding value).
PADDING_FILL_HU = -3024

#: Slices converted at a time from the input's type and orientation to the internal int16.
SLAB = 16


def _compute_internal_hu(
    data: Any, transform: np.ndarray, source: str, *, as_float32: bool = False
) -> np.ndarray:
    """The x-y-z input (an array or a nibabel array proxy) as int16 in internal (z, y, x) order,
    oriented and converted by slabs.

    Only one slab of the input's type (int32, float…) exists beside the int16 result, instead of
    a reoriented copy of the whole input and then its int16 conversion. An int16 array already
    in internal order is used as it is (no copy). Integers outside the int16 range are an error;
    floats are rounded and clipped.
    """
    import nibabel as nib

    if int(transform[2, 0]) != 2:  # a single slice whose third axis is not head–feet
        data = np.asarray(data)
        block = data.astype(np.float32) if as_float32 else data
        oriented = np.transpose(nib.orientations.apply_orientation(block, transform), (2, 1, 0))
        hu = np.empty(oriented.shape, dtype=np.int16)
        _convert_block(oriented, hu, source)
        return hu
    if isinstance(data, np.ndarray) and data.dtype == np.int16 and not as_float32:
        view = np.transpose(nib.orientations.apply_orientation(data, transform), (2, 1, 0))
        if view.flags.c_contiguous:
            return view
    nz = data.shape[2]
    flipped = transform[2, 1] < 0  # the input's slices run head to feet
    shape = [0, 0, nz]
    for i in range(2):
        shape[int(transform[i, 0])] = data.shape[i]
    hu = np.empty((nz, shape[1], shape[0]), dtype=np.int16)
    for start in range(0, nz, SLAB):
        stop = min(start + SLAB, nz)
        block = np.asarray(data[:, :, start:stop])
        if as_float32:
            block = block.astype(np.float32)
        oriented = np.transpose(nib.orientations.apply_orientation(block, transform), (2, 1, 0))
        _convert_block(oriented, hu[nz - stop : nz - start] if flipped else hu[start:stop], source)
    return hu


def _convert_block(block: np.ndarray, target: np.ndarray, source: str) -> None:
    """Write ``block`` into the int16 ``target``: integers checked, floats rounded and clipped."""
    if block.dtype == np.int16:
        target[...] = block
    elif np.issubdtype(block.dtype, np.integer):
        if block.min(initial=0) < -32768 or block.max(initial=0) > 32767:
            raise ImagingError(f"{source}: values outside the int16 range; not CT in HU")
        target[...] = block
    else:
        finite = np.isfinite(block)
        if not finite.all():
            raise ImagingError(
                f"{source}: {int(block.size - finite.sum()):,} voxel(s) hold no number (NaN or "
                "infinite); expected HU values"
            )
        target[...] = np.clip(np.rint(block), -32768, 32767)


def _check_ct_values(hu: np.ndarray, source: str, approximate: bool) -> None:
    if approximate:
        return
    sample = hu[:: max(1, hu.shape[0] // 8), ::4, ::4]
    # padding outside the field of view (−2048, −3024, PixelPaddingValue) is not data
    measured = sample[sample > PADDING_HU]
    if measured.size < 0.1 * sample.size:
        raise ImagingError(
            f"{source}: nearly all values are below {PADDING_HU:.0f} (padding); not CT in HU"
        )
    low, high = np.percentile(measured, [1, 99])
    if low > -500 or high < -200:
        raise ImagingError(
            f"{source}: not CT in Hounsfield units (an MR volume or a display image?): values "
            f"run from {low:.0f} to {high:.0f} at the 1st/99th percentiles, where a chest CT "
            "holds air at about −1000 and soft tissue at about 40"
        )


def read_ct(
    path: Path | str,
    *,
    window: tuple[float, float] = DEFAULT_WINDOW,
    series_uid: str | None = None,
) -> CtVolume:
    """Read a CT from a DICOM folder or file, a NIfTI/NRRD/MHA volume or an 8-bit image."""
    path = Path(path)
    if not path.exists():
        raise ImagingError(f"{path}: no such file or folder")
    name = path.name.lower()
    if path.is_dir() or name.endswith(".dcm"):
        return read_dicom_series(path, series_uid=series_uid)
    if name.endswith(DISPLAY_SUFFIXES):
        return read_display_image(path, window=window)
    if name.endswith(VOLUME_SUFFIXES):
        return read_volume(path, window=window)
    try:
        return read_dicom_series(path)
    except ImagingError:
        raise ImagingError(
            f"{path}: unknown CT format; expected a DICOM series folder or file, "
            f"{', '.join(VOLUME_SUFFIXES)} or an 8-bit image ({', '.join(DISPLAY_SUFFIXES)})"
        ) from None


def compute_checksum(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_volume(path: Path | str, *, window: tuple[float, float] = DEFAULT_WINDOW) -> CtVolume:
    """A NIfTI (nibabel) or NRRD/MHA (SimpleITK) volume in HU; uint8 data is read as display."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            # read lazily (slab by slab in compute_canonical); the file stays open meanwhile
            image = nib.load(str(path), keep_file_open=True)
            raw = image.dataobj
            _check_array(raw, str(path))
            affine = image.affine
            scaled = image.dataobj.slope not in (None, 1.0) or image.dataobj.inter not in (
                None,
                0.0,
            )
            if raw.dtype == np.uint8 and not scaled:
                raw = np.asanyarray(raw)
        else:
            raw, affine = _read_sitk(path)
            scaled = False
    except ImagingError:
        raise
    except Exception as exc:  # corrupt or truncated file
        raise _damaged(path, exc) from None
    checksum = compute_checksum(path)
    if raw.dtype == np.uint8 and not scaled:
        hu = _display_to_hu(raw, window)
        note = _approximate_note(window)
        return compute_canonical(
            hu, affine, source=str(path), approximate=True, notes=(note,), checksum=checksum
        )
    try:
        return compute_canonical(
            raw, affine, source=str(path), checksum=checksum, as_float32=scaled
        )
    except ImagingError:
        raise
    except Exception as exc:  # truncated data found while reading the slabs
        raise _damaged(path, exc) from None


def _damaged(path: Path, exc: Exception) -> ImagingError:
    """A plain message for a volume file a library could not read."""
    import gzip
    import zlib

    text = str(exc).replace(str(path), "the file")
    if (
        isinstance(exc, EOFError)
        or "not enough data" in text
        or "ended before" in text
        or re.search(r"Expected \d+ bytes, got \d+ bytes", text)
    ):
        reason = "the file ends before its image data does (cut short while copying?)"
    elif isinstance(exc, zlib.error | gzip.BadGzipFile) or "CRC check failed" in text:
        reason = "its compressed data are damaged"
    elif isinstance(exc, MemoryError):
        reason = "the volume it describes does not fit in memory"
    elif "Cannot work out file type" in text:
        reason = "not a NIfTI file, or its header is damaged (no NIfTI signature in it)"
    else:
        reason = f"its header is damaged or it is not a volume of this kind ({_plain(exc)})"
    return ImagingError(f"{path}: cannot read the volume: {reason}")


def _read_sitk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    if image.GetDimension() not in (2, 3):
        raise ImagingError(f"{path}: {image.GetDimension()}-D image; a 3-D CT volume is expected")
    data = np.transpose(sitk.GetArrayFromImage(image))  # z,y,x → x,y,z
    return data, _sitk_affine(image)


def _sitk_affine(image) -> np.ndarray:
    """RAS+ affine of a SimpleITK image (which works in LPS)."""
    dim = image.GetDimension()
    direction = np.eye(3)
    direction[:dim, :dim] = np.reshape(image.GetDirection(), (dim, dim))
    spacing = np.ones(3)
    spacing[:dim] = image.GetSpacing()
    origin = np.zeros(3)
    origin[:dim] = image.GetOrigin()
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing[None, :]
    affine[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _display_to_hu(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    width, level = window
    if width <= 0:
        raise ImagingError(f"window width must be positive, got {width}")
    hu = (values.astype(np.float32) / 255.0 - 0.5) * width + level
    return np.rint(hu).astype(np.int16)


def _approximate_note(window: tuple[float, float]) -> str:
    return (
        f"approximate HU: 8-bit display values mapped back from a lung window "
        f"(width {window[0]:g}, level {window[1]:g}); densities are not measured values"
    )


def read_display_image(
    path: Path | str,
    *,
    window: tuple[float, float] = DEFAULT_WINDOW,
    pixel_mm: float | None = None,
) -> CtVolume:
    """An 8-bit PNG/JPEG slice (displayed in a lung window) as one slice of approximate HU.

    The image is taken as a radiologist displays it (patient's right on the left, anterior at the
    top). Without ``pixel_mm`` the pixel size is estimated from a 320 mm wide thorax.
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS or min(width, height) < 1:
                raise ImagingError(
                    f"{path}: the image is {width} × {height} pixels; expected a CT slice "
                    f"(at most {MAX_PIXELS:,} pixels)"
                )
            mode = image.mode
            grey = np.asarray(image.convert("L"))
    except ImagingError:
        raise
    except Image.DecompressionBombError:
        raise ImagingError(
            f"{path}: the image holds more pixels than a CT slice can have (more than "
            f"{MAX_PIXELS:,}); expected a CT slice"
        ) from None
    except Exception as exc:  # Pillow raises many kinds of error on a damaged image
        raise ImagingError(
            f"{path}: cannot read the image: the file is damaged or not an image "
            f"({str(exc) or type(exc).__name__})"
        ) from None
    if mode not in ("L", "P", "RGB", "RGBA", "LA"):
        raise ImagingError(f"{path}: image mode {mode}; an 8-bit greyscale display image expected")
    size = pixel_mm or 320.0 / max(grey.shape)
    affine = np.diag([-size, -size, size, 1.0])  # columns → left, rows → posterior
    notes = [_approximate_note(window)]
    if pixel_mm is None:
        notes.append(f"pixel size unknown: {size:.2f} mm assumed (thorax 320 mm wide)")
    return compute_canonical(
        _display_to_hu(grey.T, window),
        affine,
        source=str(path),
        approximate=True,
        notes=tuple(notes),
        checksum=compute_checksum(path),
    )


# --- DICOM --------------------------------------------------------------------------------------


def read_dicom_series(path: Path | str, *, series_uid: str | None = None) -> CtVolume:
    """A DICOM series from a folder (or one file): sorted, de-duplicated, rescaled to HU.

    Reported in ``notes``: several series in the folder (the largest is read unless
    ``series_uid`` says which), duplicate slices dropped, unsorted files, missing slices (gaps),
    gantry tilt, uneven spacing. Raises :class:`ImagingError` for non-CT, non-axial or unreadable
    input, a damaged DICOM file (one with the DICOM signature that cannot be read) and header
    values that are not what DICOM defines (a position that is not three numbers…), naming the
    file and the attribute. Files without the signature that are not DICOM are passed over.
    """
    import pydicom

    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    headers: list[_Slice] = []
    left_out: list[str] = []  # DICOM files without an image (a DICOMDIR, a report, damage)
    for file in files:
        try:
            ds = pydicom.dcmread(str(file), force=True)
            if "PixelData" not in ds or "ImagePositionPatient" not in ds:
                if _has_dicom_signature(file):
                    left_out.append(file.name)
                continue
            headers.append(_slice_header(file, ds))
        except ImagingError:
            raise
        except Exception as exc:  # pydicom raises many kinds of error on a damaged file
            if _has_dicom_signature(file):
                raise ImagingError(
                    f"{file}: cannot read this DICOM file: it is damaged ({_plain(exc)})"
                ) from None
            continue  # not DICOM (a README, a spreadsheet of labels…)
    if not headers:
        raise ImagingError(f"{path}: no DICOM images with pixel data and position found")
    notes: list[str] = []
    if left_out:
        shown = ", ".join(left_out[:5]) + (" …" if len(left_out) > 5 else "")
        notes.append(
            f"{len(left_out)} DICOM file(s) without an image (pixel data and position) left "
            f"out: {shown}"
        )
    by_series: dict[str, list[_Slice]] = defaultdict(list)
    for item in headers:
        by_series[item.series].append(item)
    if series_uid is not None:
        if series_uid not in by_series:
            raise ImagingError(
                f"{path}: series {series_uid} not found; series present: {sorted(by_series)}"
            )
        chosen = series_uid
    else:
        chosen = max(by_series, key=lambda uid: len(by_series[uid]))
    if len(by_series) > 1:
        listing = ", ".join(f"{uid} ({len(v)} images)" for uid, v in by_series.items())
        notes.append(f"{len(by_series)} series in the folder: {listing}; read {chosen}")
    items = by_series[chosen]
    first = items[0]
    if first.modality not in ("", "CT"):
        raise ImagingError(f"{path}: modality {first.modality}; a CT series is expected")
    orientation = first.orientation
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    if abs(normal[2]) < 0.8:
        raise ImagingError(
            f"{path}: image orientation {orientation.tolist()} is not axial "
            "(the slice normal does not run head–feet)"
        )
    for item in items:
        if not np.allclose(item.orientation, orientation, atol=1e-3):
            raise ImagingError(
                f"{item.file}: image orientation differs from the rest of the series"
            )
    positions = np.array([item.position for item in items])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if not np.array_equal(order, np.arange(len(order))) and any(i.numbered for i in items):
        notes.append("files were not in slice order; sorted by position along the normal")
    items = [items[i] for i in order]
    positions, along = positions[order], along[order]
    keep = [0]
    dropped = 0
    for i in range(1, len(items)):
        if abs(along[i] - along[keep[-1]]) < 1e-3:
            dropped += 1
            continue
        keep.append(i)
    if dropped:
        notes.append(f"{dropped} duplicate slice(s) at the same position dropped")
    items = [items[i] for i in keep]
    positions, along = positions[keep], along[keep]
    spacing_rc = first.spacing
    if len(items) > 1:
        gaps = np.diff(along)
        step = float(np.median(gaps))
        if np.any(gaps > 1.5 * step):
            missing = int(np.round(gaps[gaps > 1.5 * step] / step - 1).sum())
            where = [f"{along[i]:.1f}" for i in np.flatnonzero(gaps > 1.5 * step)]
            notes.append(
                f"missing slices: about {missing} slice(s) absent after position(s) "
                f"{', '.join(where)} mm; volumes there are not measured"
            )
        elif np.ptp(gaps) > 0.1 * step:
            notes.append(f"uneven slice spacing ({gaps.min():.2f}–{gaps.max():.2f} mm)")
        shift = positions[-1] - positions[0]
        cos = abs(shift @ normal) / max(np.linalg.norm(shift), 1e-9)
        tilt = float(np.degrees(np.arccos(min(1.0, cos))))
        if tilt > 0.5:
            notes.append(
                f"gantry tilt of about {tilt:.1f}°: slices are sheared; volumes are measured on "
                "the tilted grid (not resampled)"
            )
    else:
        if isinstance(first.thickness, str):
            raise ImagingError(first.thickness)
        step = first.thickness
    if not first.spacing_known:
        notes.append(
            "pixel size unknown (no Pixel Spacing (0028,0030)): areas in pixels, no volumes in mL"
        )
    stack = None  # slices, rows, cols: int16 HU, filled slice by slice
    for i, item in enumerate(items):
        pixels = _slice_pixels(item)
        if stack is None:
            if len(items) * pixels.size > MAX_VOXELS:
                raise ImagingError(
                    f"{path}: {len(items)} slices of {pixels.shape[0]} × {pixels.shape[1]} "
                    f"pixels, more than a CT volume has ({MAX_VOXELS:,} voxels at most)"
                )
            stack = np.empty((len(items), *pixels.shape), dtype=np.int16)
        elif pixels.shape != stack.shape[1:]:
            raise ImagingError(f"{item.file}: image size {pixels.shape} differs from the series")
        values = np.rint(pixels.astype(np.float32) * item.slope + item.intercept)
        if item.padding is not None:  # Pixel Padding Value: outside the field of view, not data
            values[pixels == item.padding] = PADDING_FILL_HU
        if values.min(initial=0) < -32768 or values.max(initial=0) > 32767:
            raise ImagingError(f"{path}: values outside the int16 range; not CT in HU")
        stack[i] = values
    data = np.transpose(stack, (2, 1, 0))  # cols (x), rows (y), slices (z)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * spacing_rc[1]
    affine_lps[:3, 1] = col_dir * spacing_rc[0]
    affine_lps[:3, 2] = normal * step
    affine_lps[:3, 3] = positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    return compute_canonical(
        data,
        affine,
        source=str(path),
        notes=tuple(notes),
        series_uid=None if chosen == "unknown" else chosen,
        checksum=compute_checksum(path),
        meta={
            "slices": len(items),
            "spacing_unknown": not first.spacing_known,
            # the files of the slices read, in the order of the input's slice axis (the DICOM
            # SEG refers to them frame by frame)
            "instances": tuple(str(item.file) for item in items),
        },
    )


@dataclass(frozen=True)
class _Slice:
    """One DICOM image's header values, checked (pixels are decoded later)."""

    file: Path
    ds: Any
    series: str
    modality: str
    position: np.ndarray  # (3,) mm
    orientation: np.ndarray  # (6,) row and column direction cosines
    spacing: tuple[float, float]  # row, column spacing in mm
    thickness: float | str  # mm, used for a single slice; or why it cannot be
    slope: float
    intercept: float
    numbered: bool  # has an InstanceNumber
    compressed: bool
    padding: float | None = None  # Pixel Padding Value (stored value), if any
    spacing_known: bool = True  # Pixel Spacing present


#: Attributes read from each DICOM image: keyword → (name as DICOM says it, how many numbers).
_ATTRIBUTES = {
    "ImagePositionPatient": ("Image Position (Patient)", 3),
    "ImageOrientationPatient": ("Image Orientation (Patient)", 6),
    "PixelSpacing": ("Pixel Spacing", 2),
    "SliceThickness": ("Slice Thickness", 1),
    "SpacingBetweenSlices": ("Spacing Between Slices", 1),
    "RescaleSlope": ("Rescale Slope", 1),
    "RescaleIntercept": ("Rescale Intercept", 1),
}


def _slice_header(file: Path, ds: Any) -> _Slice:
    """The header values of one image; :class:`ImagingError` naming the attribute otherwise."""

    def numbers(keyword: str) -> np.ndarray | None:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        name, count = _ATTRIBUTES[keyword]
        several = isinstance(value, Sequence) and not isinstance(value, str | bytes)
        items = list(value) if several else [value]
        try:
            out = np.array([float(v) for v in items], dtype=float)
        except (TypeError, ValueError):
            out = np.array([], dtype=float)
        if len(out) != count or not np.isfinite(out).all():
            shown = repr(value if len(str(value)) <= 60 else str(value)[:60] + "…")
            raise ImagingError(
                f"{file}: {name} ({_tag(keyword)}) is {shown}; expected {count} number"
                f"{'s' if count > 1 else ''}"
            )
        return out

    def thickness() -> float | str:
        """The slice thickness in mm, or why it cannot be used (needed for one slice only)."""
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            try:
                value = numbers(keyword)
            except ImagingError as exc:
                return str(exc)
            if value is not None:
                if value[0] > 0:
                    return float(value[0])
                name = _ATTRIBUTES[keyword][0]
                return f"{file}: {name} ({_tag(keyword)}) is {value[0]:g}; expected above 0 mm"
        return 1.0

    position = numbers("ImagePositionPatient")
    if position is None:
        raise ImagingError(
            f"{file}: Image Position (Patient) (0020,0032) is empty; expected 3 numbers (mm)"
        )
    orientation = numbers("ImageOrientationPatient")
    if orientation is None:
        orientation = np.array([1.0, 0, 0, 0, 1, 0])
    if np.linalg.norm(orientation[:3]) < 1e-6 or np.linalg.norm(orientation[3:]) < 1e-6:
        raise ImagingError(
            f"{file}: Image Orientation (Patient) (0020,0037) is {orientation.tolist()}; "
            "expected two direction vectors of length 1"
        )
    spacing = numbers("PixelSpacing")
    if spacing is not None and (spacing <= 0).any():
        raise ImagingError(
            f"{file}: Pixel Spacing (0028,0030) is {spacing.tolist()}; expected sizes above 0 mm"
        )
    slope = numbers("RescaleSlope")
    if slope is not None and slope[0] == 0:
        raise ImagingError(
            f"{file}: Rescale Slope (0028,1053) is 0; expected the factor from stored values to "
            "HU (usually 1)"
        )
    intercept = numbers("RescaleIntercept")
    try:  # a stored value; ambiguous VR (US or SS) in files read with force=True
        padding = float(ds.get("PixelPaddingValue"))
    except (TypeError, ValueError):
        padding = None
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return _Slice(
        file=file,
        ds=ds,
        series=str(ds.get("SeriesInstanceUID", "unknown") or "unknown"),
        modality=str(ds.get("Modality") or ""),
        position=position,
        orientation=orientation,
        spacing=(1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1])),
        thickness=thickness(),
        slope=1.0 if slope is None else float(slope[0]),
        intercept=0.0 if intercept is None else float(intercept[0]),
        numbered=ds.get("InstanceNumber") is not None,
        compressed=bool(syntax is not None and getattr(syntax, "is_compressed", False)),
        padding=padding,
        spacing_known=spacing is not None,
    )


def _tag(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword) or 0
    return f"{tag >> 16:04X},{tag & 0xFFFF:04X}"


def _slice_pixels(item: _Slice) -> np.ndarray:
    """The stored values of one image (a 2-D array), through SimpleITK for compressed data
    pydicom cannot decode here (JPEG 2000, JPEG lossless without a plugin)."""
    try:
        pixels = item.ds.pixel_array
    except Exception as exc:  # pydicom: no decoder, or pixel data that do not fit the header
        if not item.compressed:
            raise ImagingError(f"{item.file}: cannot read the pixel data: {_plain(exc)}") from None
        pixels = _read_pixels_sitk(item, exc)
    if pixels.ndim != 2:
        raise ImagingError(
            f"{item.file}: pixel data of shape {' × '.join(map(str, pixels.shape))}; expected "
            "one greyscale slice per file"
        )
    return pixels


def _read_pixels_sitk(item: _Slice, original: Exception) -> np.ndarray:
    """Pixels of a DICOM file pydicom cannot decode (JPEG 2000 …), through SimpleITK, unscaled."""
    try:
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(item.file))
        reader.SetOutputPixelType(sitk.sitkFloat32)
        image = reader.Execute()
        pixels = sitk.GetArrayFromImage(image)[0]
    except Exception as exc:
        raise ImagingError(
            f"{item.file}: cannot decode the pixel data ({_plain(original)}; {_plain(exc)})"
        ) from None
    # SimpleITK already applied rescale slope/intercept; undo so the caller's rescale holds
    return (pixels - item.intercept) / item.slope


def _has_dicom_signature(file: Path) -> bool:
    """Whether ``file`` starts as a DICOM file does (128 bytes, then "DICM")."""
    try:
        with file.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _plain(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "…" if len(text) > 200 else text) or type(exc).__name__


def write_mask(volume: CtVolume, mask: np.ndarray, path: Path | str) -> Path:
    """Write a label mask (internal orientation) as NIfTI in the input's own geometry."""
    import nibabel as nib

    native = volume.compute_native(np.asarray(mask, dtype=np.uint8))
    if len(volume.native_shape) == 3 and native.shape != volume.native_shape:
        native = native.reshape(volume.native_shape)
    image = nib.Nifti1Image(native, volume.native_affine)
    image.header.set_data_dtype(np.uint8)
    image.header.set_xyzt_units("mm")
    path = Path(path)
    nib.save(image, str(path))
    return path


__all__ = [
    "DEFAULT_WINDOW",
    "CtVolume",
    "ImagingError",
    "compute_canonical",
    "compute_checksum",
    "read_ct",
    "read_dicom_series",
    "read_display_image",
    "read_volume",
    "write_mask",
]
