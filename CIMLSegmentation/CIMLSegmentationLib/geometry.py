"""Voxel grids as plain values, and whether two of them differ (so an input is resampled onto
the reference grid before the worker reads it).

Plain Python, tested outside Slicer; no imports. ``export`` reads the grids of Slicer volumes.
"""

from typing import Dict, Sequence


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
