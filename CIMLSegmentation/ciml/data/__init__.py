"""Images, case loading, dataset layouts and datasets (``ciml.data``).

Importing this package is cheap: it imports SimpleITK and numpy, never torch or MONAI. The
MONAI datasets and loaders are in :mod:`ciml.data.datasets` (imported by name: they load torch).

Main entry points:

- :func:`read_image`, :func:`read_array`, :func:`write_image`, :func:`write_dicom_series`:
  files, with their :class:`Geometry`;
- :func:`load_case`, :func:`load_record`: one case, on the reference grid, normalised, with its
  label as region channels (:class:`Case`);
- :func:`label_to_regions`, :func:`regions_to_label`: the card's label conventions;
- :func:`list_cases`, :func:`detect_layout`: dataset folders to case records;
- :func:`ciml.data.datasets.build_loaders`: MONAI training and validation loaders.
"""

from __future__ import annotations

from ciml.data.case import Case, load_case, load_record, regrid
from ciml.data.errors import DataError
from ciml.data.geometry import Geometry, align, alignment_warnings, check_overlap, resample
from ciml.data.io import (
    IMAGE_SUFFIXES,
    array_to_image,
    check_image,
    image_to_array,
    read_array,
    read_image,
    write_dicom_series,
    write_image,
)
from ciml.data.labels import (
    CONVENTIONS,
    LabelConvention,
    check_label_values,
    known_label_values,
    label_to_regions,
    regions_to_label,
)
from ciml.data.layouts import (
    LAYOUTS,
    check_records,
    detect_layout,
    list_cases,
    read_cases_csv,
    read_datalist,
    write_datalist,
)
from ciml.data.normalize import normalize

__all__ = [
    "Case", "load_case", "load_record", "regrid", "DataError", "Geometry", "align",
    "alignment_warnings", "check_overlap", "resample", "IMAGE_SUFFIXES", "array_to_image",
    "check_image", "image_to_array", "read_array", "read_image", "write_dicom_series",
    "write_image", "CONVENTIONS", "LabelConvention", "check_label_values", "known_label_values",
    "label_to_regions", "regions_to_label", "LAYOUTS", "check_records", "detect_layout",
    "list_cases", "read_cases_csv", "read_datalist", "write_datalist", "normalize",
]

