"""The error every data problem raises: one message that names the file and the problem."""

from __future__ import annotations

from ciml.errors import CIMLError


class DataError(CIMLError, ValueError):
    """An image, label map, dataset folder or case record cannot be used.

    Args:
        source: what is wrong, as the user knows it: a file path, ``case BraTS_001`` or a
            modality name with its path. It leads the message.
        problem: what is wrong with it, in one sentence.
    """

    def __init__(self, source: object, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")
