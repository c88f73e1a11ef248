"""The learned lesion network: a small U-Net ensemble run on the CPU with onnxruntime.

Trained by ``scripts/train_ct_unet.py`` (PyTorch, a training-only dependency) on the labelled
medseg2d slices and shipped as ``models/lesions_unet.onnx``: one graph that averages its members
(the same U-Net trained with different seeds and losses). The network works on slices resized
to :data:`SIZE` × :data:`SIZE`; it takes approximate HU (its first operation clips and scales
them) and returns the probabilities of none, ground-glass and consolidation per pixel, each
member's averaged with those of the left–right mirrored slice. Resizing (here, and in training) is
:func:`resize_image`, so that training and run time see the same pixels.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from celltrial.imaging.io import ImagingError

#: Side of the square the network works on.
SIZE = 256
MODEL_FILE = "lesions_unet.onnx"
#: Slices run through the network at once (bounds memory: about 40 MB per slice).
BATCH = 4


def resize_image(image: np.ndarray, shape: tuple[int, int], *, order: int = 1) -> np.ndarray:
    """Resize a 2-D array (or an ``(H, W, C)`` stack) to ``shape``, pixel centres mapped onto
    pixel centres: bilinear with clamped edges (``order=1``, as PyTorch's ``interpolate`` with
    ``align_corners=False``) or nearest neighbour (``order=0``, for labels)."""
    image = np.asarray(image)
    rows, cols = image.shape[:2]
    r = (np.arange(shape[0], dtype=np.float64) + 0.5) * rows / shape[0] - 0.5
    c = (np.arange(shape[1], dtype=np.float64) + 0.5) * cols / shape[1] - 0.5
    if order == 0:
        ri = np.clip(np.round(r).astype(int), 0, rows - 1)
        ci = np.clip(np.round(c).astype(int), 0, cols - 1)
        return image[ri][:, ci]
    if image.ndim == 3:
        return np.stack(
            [resize_image(image[..., k], shape) for k in range(image.shape[-1])], axis=-1
        )
    grid = np.meshgrid(np.clip(r, 0, rows - 1), np.clip(c, 0, cols - 1), indexing="ij")
    return ndi.map_coordinates(image, grid, order=1, mode="nearest").astype(image.dtype)


@cache
def load_network(path: Path | None = None):
    """The onnxruntime session of the shipped network (or of the ONNX file at ``path``)."""
    import onnxruntime

    if path is None:
        path = Path(str(resources.files("celltrial.imaging") / "models" / MODEL_FILE))
    if not path.exists():
        raise ImagingError(f"the lesion network {path} is missing; reinstall celltrial")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def read_network_identity() -> dict[str, str]:
    """What names the shipped network in ``result.json`` and the DICOM SEG: its file name, the
    celltrial release it ships in (it has no version of its own) and the SHA-256 of its weights."""
    from celltrial import __version__

    return {"name": MODEL_FILE, "version": __version__, "sha256": _network_sha256()}


@cache
def _network_sha256() -> str:
    import hashlib

    resource = resources.files("celltrial.imaging") / "models" / MODEL_FILE
    if not resource.is_file():
        raise ImagingError(f"the lesion network {MODEL_FILE} is missing; reinstall celltrial")
    return hashlib.sha256(resource.read_bytes()).hexdigest()


def compute_network_probabilities(slices: np.ndarray, *, network=None) -> np.ndarray:
    """Probabilities of none, ground-glass and consolidation of each pixel of ``slices``
    (``(n, rows, cols)`` approximate HU): ``(n, rows, cols, 3)`` float32."""
    slices = np.asarray(slices, dtype=np.float32)
    network = network or load_network()
    name = network.get_inputs()[0].name
    n, rows, cols = slices.shape
    out = np.empty((n, rows, cols, 3), dtype=np.float32)
    for start in range(0, n, BATCH):
        batch = slices[start : start + BATCH]
        small = np.stack([resize_image(s, (SIZE, SIZE)) for s in batch])[:, None]
        (probs,) = network.run(None, {name: small})
        for k, p in enumerate(probs):
            out[start + k] = resize_image(np.ascontiguousarray(p.transpose(1, 2, 0)), (rows, cols))
    return out


__all__ = [
    "MODEL_FILE",
    "SIZE",
    "compute_network_probabilities",
    "load_network",
    "read_network_identity",
    "resize_image",
]
