"""The accuracy study: plans, runs and reports (`ciml study`, docs/BENCHMARKS.md).

``plan`` (the methods, budget and seeds; imports no torch, so the command-line parser lists
its tasks), ``runner`` (trains each run as a `ciml train` process), ``report`` and ``figures``
(matplotlib, optional). May import everything in ``ciml``.
"""
