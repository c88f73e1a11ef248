"""Damaged bytes, and CT files (NIfTI, DICOM, display PNG) with damaged headers."""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

_fraction = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@dataclass(frozen=True)
class ByteEdit:
    """Cut the file short, change, insert or delete bytes at a fraction of its length."""

    kind: str
    at: float
    data: bytes = b""

    def __repr__(self) -> str:
        return f"{self.kind}@{self.at:.3f}" + (f"={self.data[:8]!r}" if self.data else "")


def byte_edits() -> st.SearchStrategy[ByteEdit]:
    return st.one_of(
        st.builds(ByteEdit, st.just("truncate"), _fraction),
        st.builds(ByteEdit, st.just("flip"), _fraction, st.binary(min_size=1, max_size=4)),
        st.builds(ByteEdit, st.just("insert"), _fraction, st.binary(min_size=1, max_size=16)),
        st.builds(ByteEdit, st.just("delete"), _fraction, st.binary(min_size=1, max_size=16)),
    )


def apply_byte_edits(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for edit in edits:
        at = min(len(out), math.floor(edit.at * len(out)))
        if edit.kind == "truncate":
            del out[at:]
        elif edit.kind == "flip":
            for i, value in enumerate(edit.data):
                if at + i < len(out):
                    out[at + i] ^= value or 0xFF
        elif edit.kind == "insert":
            out[at:at] = edit.data
        elif edit.kind == "delete":
            del out[at : at + len(edit.data)]
    return bytes(out)


# --- NIfTI -------------------------------------------------------------------------------------

#: Header fields of a NIfTI-1 file: name → (offset, struct format).
NIFTI_FIELDS = {
    "dim": (40, "<8h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern": (256, "<6f"),
    "srow": (280, "<12f"),
    "magic": (344, "<4s"),
}
_SHORTS = (-32768, -1, 0, 1, 2, 3, 4, 7, 8, 16, 255, 4096, 32767)
_FLOATS = (math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-30, 1e30, 3.4e38, 352.0, 1e9)


@dataclass(frozen=True)
class HeaderEdit:
    """Set one element of a header field to a hostile value."""

    field: str
    index: int
    value: object

    def __repr__(self) -> str:
        return f"{self.field}[{self.index}]={self.value!r}"


def nifti_edits() -> st.SearchStrategy[HeaderEdit]:
    shorts = st.sampled_from(_SHORTS) | st.integers(-32768, 32767)
    floats = st.sampled_from(_FLOATS) | st.floats(width=32)
    return st.one_of(
        st.builds(HeaderEdit, st.just("dim"), st.integers(0, 7), shorts),
        st.builds(
            HeaderEdit,
            st.just("datatype"),
            st.just(0),
            st.sampled_from((0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 999)),
        ),
        st.builds(HeaderEdit, st.just("bitpix"), st.just(0), shorts),
        st.builds(HeaderEdit, st.just("pixdim"), st.integers(0, 7), floats),
        st.builds(HeaderEdit, st.just("vox_offset"), st.just(0), floats),
        st.builds(HeaderEdit, st.just("scl_slope"), st.just(0), floats),
        st.builds(HeaderEdit, st.just("scl_inter"), st.just(0), floats),
        st.builds(HeaderEdit, st.just("qform_code"), st.just(0), shorts),
        st.builds(HeaderEdit, st.just("sform_code"), st.just(0), shorts),
        st.builds(HeaderEdit, st.just("quatern"), st.integers(0, 5), floats),
        st.builds(HeaderEdit, st.just("srow"), st.integers(0, 11), floats),
        st.builds(
            HeaderEdit,
            st.just("magic"),
            st.just(0),
            st.sampled_from((b"n+1\0", b"ni1\0", b"n+2\0", b"xxxx")),
        ),
    )


def edit_nifti(data: bytes, edits) -> bytes:
    """Header edits of an uncompressed NIfTI-1 file's bytes."""
    out = bytearray(data)
    for edit in edits:
        offset, fmt = NIFTI_FIELDS[edit.field]
        values = list(struct.unpack_from(fmt, out, offset))
        values[min(edit.index, len(values) - 1)] = edit.value
        try:
            struct.pack_into(fmt, out, offset, *values)
        except (struct.error, OverflowError):
            continue  # a value the field cannot hold (a float32 beyond 3.4e38)
    return bytes(out)


def small_nifti(*, dtype=np.int16) -> bytes:
    """A tiny chest-like volume in HU (air, lung, soft tissue), uncompressed NIfTI-1."""
    import nibabel as nib

    hu = np.full((24, 20, 6), 40, dtype=dtype)
    hu[2:10, 3:15] = -850
    hu[14:22, 3:15] = -850
    hu[0] = -1000
    image = nib.Nifti1Image(hu, np.diag([1.5, 1.5, 3.0, 1.0]))
    return image.to_bytes()


def gunzip(data: bytes) -> bytes:
    return gzip.decompress(data)


# --- DICOM -------------------------------------------------------------------------------------

#: DICOM attributes given hostile values: keyword → values.
DICOM_VALUES = {
    "ImagePositionPatient": (["nan", 0, 0], [0, 0], [0, 0, "inf"], "abc", [0, 0, 1e308], ""),
    "ImageOrientationPatient": ([0] * 6, [1, 0, 0], [1, 0, 0, 0, 0, 1], ["nan", 0, 0, 0, 1, 0]),
    "PixelSpacing": ([0, 0], [-1, 1], ["nan", 1], "1.5", [1e308, 1e308], ""),
    "SliceThickness": (0, -3, "nan", "", "abc"),
    "RescaleSlope": (0, "nan", "1e308", "", "-1"),
    "RescaleIntercept": ("nan", "1e308", "-1024", "abc"),
    "Rows": (0, 1, 65535, 7),
    "Columns": (0, 1, 65535, 7),
    "BitsAllocated": (0, 1, 8, 12, 32, 64),
    "BitsStored": (0, 12, 17, 64),
    "PixelRepresentation": (0, 1, 2),
    "SamplesPerPixel": (0, 3),
    "NumberOfFrames": (0, 2, 1000),
    "Modality": ("MR", "", "CT\\MR"),
    "SeriesInstanceUID": ("", "1.2.3", "x" * 64),
    "PhotometricInterpretation": ("RGB", "PALETTE COLOR", "YBR_FULL", ""),
}


@dataclass(frozen=True)
class DicomEdit:
    """Change one attribute of one file of a series (``value`` None: remove it), or damage the
    series (``kind``: pixel data cut short, an extra non-DICOM file, a duplicate file)."""

    kind: str
    slice_at: float
    keyword: str = ""
    value: object = None

    def __repr__(self) -> str:
        if self.kind == "set":
            return f"{self.keyword}@{self.slice_at:.2f}={self.value!r}"
        return f"{self.kind}@{self.slice_at:.2f}"


def dicom_edits() -> st.SearchStrategy[DicomEdit]:
    def value_edit(keyword: str) -> st.SearchStrategy[DicomEdit]:
        return st.builds(
            DicomEdit,
            st.just("set"),
            _fraction,
            st.just(keyword),
            st.sampled_from((None, *DICOM_VALUES[keyword])),
        )

    return st.one_of(
        *[value_edit(k) for k in DICOM_VALUES],
        st.builds(
            DicomEdit, st.sampled_from(("short_pixels", "extra_file", "duplicate")), _fraction
        ),
    )


def dicom_series(n: int = 3) -> list[bytes]:
    """A tiny axial CT series (int16 HU), one file per slice."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    hu = np.full((20, 24), 40, dtype=np.int16)
    hu[3:15, 2:10] = -850
    hu[3:15, 14:22] = -850
    hu[:, 0] = -1000
    series = generate_uid(entropy_srcs=["celltrial-fuzz-series"])
    files = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[f"celltrial-fuzz-{k}"])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(f"{k}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns = hu.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.ImagePositionPatient = [0.0, 0.0, 3.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.5, 1.5]
        ds.SliceThickness = 3
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.InstanceNumber = k + 1
        ds.PixelData = hu.tobytes()
        files.append(_dicom_bytes(ds))
    return files


def _dicom_bytes(ds) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def edit_dicom(files: list[bytes], edits) -> list[tuple[str, bytes]]:
    """(file name, bytes) of a series after ``edits``."""
    import pydicom
    from pydicom import config

    out = [(f"{k:03d}.dcm", data) for k, data in enumerate(files)]
    for edit in edits:
        k = min(len(out) - 1, math.floor(edit.slice_at * len(out)))
        name, data = out[k]
        if edit.kind == "extra_file":
            out.append(("README.txt", b"Exported by the PACS on 2020-03-01.\n" * 3))
            continue
        if edit.kind == "duplicate":
            out.append((f"copy-{name}", data))
            continue
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if edit.kind == "short_pixels":
            ds.PixelData = bytes(ds.PixelData)[: len(ds.PixelData) // 3]
        elif edit.value is None:
            if edit.keyword in ds:
                del ds[edit.keyword]
        else:
            try:
                with config.disable_value_validation():
                    setattr(ds, edit.keyword, edit.value)
            except (ValueError, TypeError, OverflowError):  # not a number: written as text
                from pydicom.datadict import tag_for_keyword
                from pydicom.dataelem import DataElement

                ds.add(DataElement(tag_for_keyword(edit.keyword), "LO", str(edit.value)))
        try:
            with config.disable_value_validation():
                out[k] = (name, _dicom_bytes(ds))
        except Exception:  # a value pydicom cannot write: that file stays as it was
            continue
    return out


# --- display images ----------------------------------------------------------------------------


def display_images() -> dict[str, bytes]:
    """Small 8-bit (and not 8-bit) images of a slice shown in a lung window."""
    from PIL import Image

    grey = np.full((40, 48), 200, dtype=np.uint8)
    grey[8:32, 4:20] = 60
    grey[8:32, 28:44] = 60
    grey[:, 0] = 0
    out = {}
    for mode in ("L", "RGB", "RGBA", "P", "I;16", "1"):
        image = Image.fromarray(grey).convert(mode if mode != "I;16" else "I")
        if mode == "I;16":
            image = Image.fromarray(grey.astype(np.uint16) * 257)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out[f"png-{mode}"] = buffer.getvalue()
    return out


@dataclass(frozen=True)
class PngSize:
    """Rewrite a PNG's declared width and height (with a valid chunk checksum)."""

    width: int
    height: int

    def __repr__(self) -> str:
        return f"size={self.width}x{self.height}"


def png_sizes() -> st.SearchStrategy[PngSize]:
    sizes = st.sampled_from((0, 1, 7, 4096, 20000, 65535, 2**31 - 1))
    return st.builds(PngSize, sizes, sizes)


def set_png_size(data: bytes, size: PngSize) -> bytes:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return data
    body = bytearray(data[16:29])
    struct.pack_into(">II", body, 0, size.width, size.height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)) & 0xFFFFFFFF)
    return data[:16] + bytes(body) + crc + data[33:]
