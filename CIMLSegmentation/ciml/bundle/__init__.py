"""Model bundles: a folder with ``metadata.json`` (the card, provenance, metrics, the weights'
SHA-256) and ``model.safetensors``.

``metadata`` reads and checks the metadata and the card; it imports neither torch nor numpy, so
the Slicer module and the command-line parser use it in processes that never load torch.
``weights`` saves and loads the network (torch, safetensors). This package's ``__init__``
imports only ``metadata``: ``from ciml.bundle.weights import load_bundle`` loads torch.
"""

from ciml.bundle.metadata import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_FILE,
    WEIGHTS_FILE,
    read_card,
    read_metadata,
    sha256_of,
    verify_weights,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA_FILE", "WEIGHTS_FILE", "read_card", "read_metadata",
           "sha256_of", "verify_weights"]
