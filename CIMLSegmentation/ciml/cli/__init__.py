"""The `ciml` command line.

``parser`` declares every sub-command's arguments and imports no torch (nor numpy); ``main``
parses, then imports the chosen sub-command's module (``card``, ``segment``, ``train``, ...) and
calls its ``run(args)``. Those modules import what their work needs at their top.
"""
