"""Small real cases on disk for the ``ciml.data`` tests (tiny images: the suite must stay fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ciml.config import card_from_dict, preset_dict
from ciml.data import Geometry, write_image

SIZE = (24, 20, 16)
BRATS_2020_TO_2023 = {0: 0, 1: 1, 2: 2, 4: 3}
BRATS_2020_TO_MSD = {0: 0, 2: 1, 1: 2, 4: 3}


def rotation(angle_z: float, angle_x: float = 0.0) -> tuple[float, ...]:
    """A proper rotation (determinant +1), row-major."""
    cz, sz, cx, sx = np.cos(angle_z), np.sin(angle_z), np.cos(angle_x), np.sin(angle_x)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return tuple((rz @ rx).ravel())


def grid(size=SIZE, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> Geometry:
    return Geometry(origin=tuple(map(float, origin)), spacing=tuple(map(float, spacing)),
                    direction=direction or (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), size=tuple(size))


def tiny_card(name: str = "brats", **changes):
    """A preset card shrunk to the tiny test images (native spacing, 16-voxel patches)."""
    data = preset_dict(name)
    data["spacing"] = None
    data["training"] = {"patch_size": [16, 16, 16], "batch_size": 2}
    data["inference"] = {"roi_size": [16, 16, 16]}
    data.update(changes)
    return card_from_dict(data)


def brats_label(seed: int = 0, size=SIZE) -> np.ndarray:
    """A valid BraTS 2020 label map: edema (2) around necrosis (1) around enhancing (4)."""
    rng = np.random.default_rng(seed)
    centre = np.array(size) / 2 + rng.uniform(-2, 2, 3)
    distance = np.linalg.norm(np.indices(size).transpose(1, 2, 3, 0) - centre, axis=-1)
    label = np.zeros(size, np.uint8)
    label[distance < 6] = 2
    label[distance < 4] = 4
    label[distance < 2] = 1
    return label


def brats_images(label: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Four MR-like images (brain box, noise, tumour contrast) for a label map."""
    rng = np.random.default_rng(seed)
    brain = np.zeros(label.shape, bool)
    brain[2:-2, 2:-2, 2:-2] = True
    images = {}
    for i, name in enumerate(("t1", "t1ce", "t2", "flair")):
        image = np.where(brain, 100.0 + 10 * i + rng.normal(0, 5, label.shape), 0.0)
        image[label > 0] += 50.0 * (i + 1)
        images[name] = image.astype(np.float32)
    return images


def write_case_2020(root: Path, case: str, images, label, geometry: Geometry) -> None:
    folder = root / case
    for name, image in images.items():
        write_image(image, geometry, folder / f"{case}_{name}.nii.gz")
    if label is not None:
        write_image(label, geometry, folder / f"{case}_seg.nii.gz")


def remap(label: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    out = np.zeros_like(label)
    for source, target in mapping.items():
        out[label == source] = target
    return out
