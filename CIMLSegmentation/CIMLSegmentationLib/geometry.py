"""Voxel grids as plain values, whether two of them differ, and what happens to each input
before the worker reads it: an input under a parent transform is read as a hardened copy (the
volume where the views show it), and one whose grid differs from the reference's is resampled.

Every file for the worker is written as a copy (``slicer.util.exportNode``, in world space), so
the user's volumes keep their storage nodes, file names and modified state.

Plain Python, tested outside Slicer; imports only ``os`` and ``typing``. ``export`` reads the
grids of Slicer volumes and carries the plan out.
"""

import os
from typing import Dict, List, Sequence, Tuple

# What every input file is written with: uncompressed (the worker reads it once, at once).
WRITE_PROPERTIES = {"useCompression": 0}
INPUT_EXTENSION = ".nrrd"


def write_properties() -> Dict:
    """The properties for one ``exportNode`` call: a new dict each time, since exportNode adds
    its "fileFormat" to the dict it is given."""
    return dict(WRITE_PROPERTIES)


def input_paths(folder: str, modalities: Sequence[str]) -> Dict[str, str]:
    """{modality: the temporary file the worker reads}, all inside the job's own ``folder``."""
    return {m: os.path.join(folder, m + INPUT_EXTENSION) for m in modalities}


def geometry(origin: Sequence[float], spacing: Sequence[float], directions: Sequence[Sequence[float]],
             dimensions: Sequence[int]) -> Dict:
    return {"origin": list(origin), "spacing": list(spacing),
            "directions": [list(row) for row in directions], "dimensions": list(dimensions)}


def geometry_differs(a: Dict, b: Dict, tolerance: float = 1e-3) -> bool:
    """True when two grids differ: size exactly; origin, spacing, direction within tolerance
    (relative to the spacing for the origin, so sub-voxel float noise is not a difference)."""
    if list(a["dimensions"]) != list(b["dimensions"]):
        return True
    spacing = max(min(a["spacing"]), 1e-6)
    if any(abs(x - y) > tolerance * spacing for x, y in zip(a["origin"], b["origin"])):
        return True
    if any(abs(x - y) > tolerance * max(abs(x), 1e-6) for x, y in zip(a["spacing"], b["spacing"])):
        return True
    return any(abs(x - y) > tolerance for ra, rb in zip(a["directions"], b["directions"])
               for x, y in zip(ra, rb))


def export_plan(reference: str, names: Dict[str, str], grids: Dict[str, Dict],
                transforms: Dict[str, str]) -> Tuple[Dict[str, bool], List[str]]:
    """Which inputs are resampled onto the reference grid, and the notes for the log.

    ``grids`` are the inputs' grids in world space, that is after hardening the parent transform
    named in ``transforms`` ('' for none): a volume file holds no transform, so writing the
    volume itself would give the worker the image where it was before the transform moved it.
    ``names`` are the volumes' names, for the notes.
    """
    resample, notes = {}, []
    for modality, grid in grids.items():
        if transforms.get(modality):
            notes.append(f"{modality} ('{names[modality]}') is under the transform '{transforms[modality]}': "
                         "the segmentation used a copy with that transform hardened, as the views show it.")
        resample[modality] = modality != reference and geometry_differs(grid, grids[reference])
        if resample[modality]:
            notes.append(f"{modality} ('{names[modality]}') resampled onto the grid of {reference} "
                         f"('{names[reference]}'); the volumes are assumed co-registered.")
    return resample, notes
