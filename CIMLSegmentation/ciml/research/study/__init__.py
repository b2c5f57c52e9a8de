"""The accuracy study: plans, runs and reports (`ciml study`, docs/BENCHMARKS.md)."""
