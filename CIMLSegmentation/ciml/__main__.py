"""`python -m ciml ...`: the entry point Slicer's worker process uses."""

from ciml.cli.main import main

raise SystemExit(main())
