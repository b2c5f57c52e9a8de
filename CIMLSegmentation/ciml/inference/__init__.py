"""Inference: segmenting a case with a bundle, the job behind `ciml segment` and the Slicer worker.

``device`` chooses the device and mixed precision, ``sliding_window`` predicts whole volumes
window by window (MONAI), ``gradcam`` computes the per-modality heat maps of one window, and
``segment`` runs the whole job (read, predict, write outputs and report.json). May import torch,
MONAI, ``ciml.config``, ``ciml.bundle``, ``ciml.data`` and ``ciml.nn``; never ``ciml.training``
or ``ciml.research``.
"""
