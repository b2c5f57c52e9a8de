"""`ciml benchmark <kind>`: one sub-command per benchmark, each with its own flags and runner.

``speed`` (:mod:`.speed`), ``pipelines``, ``profile``, ``plans`` and ``information`` each print
a table and write a result file (:mod:`ciml.research.record`: the numbers with the command, the
commit, the machine and the date) to ``--out`` or ``ciml-results/benchmark.<kind>-<date>.json``.
See docs/BENCHMARKS.md and docs/performance-targets.md. Like every command module, these import
what their work needs (``ciml.research`` above all); ``run`` imports the chosen kind's module by
name, once the arguments are parsed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import torch

from ciml.errors import CIMLError
from ciml.research.record import envelope, header, refuse_existing, write_record


def run(args: argparse.Namespace) -> int:
    if args.benchmark is None:
        width = max(map(len, args.benchmarks))
        sys.stderr.write("ciml benchmark KIND [options]; KIND is one of:\n"
                         + "".join(f"  {name:<{width}}  {text}\n" for name, text in args.benchmarks.items()))
        raise CIMLError(f"which benchmark? give one of {', '.join(args.benchmarks)} (ciml benchmark KIND --help)")
    refuse_existing(args.out)  # before a run of minutes, not after it
    if args.threads:
        torch.set_num_threads(args.threads)
    return int(importlib.import_module(f"ciml.cli.benchmark.{args.benchmark}").run(args) or 0)


def finish(args: argparse.Namespace, results: dict[str, Any], table: str, device: str = "cpu") -> int:
    """Print ``table`` under the machine, date and commit, and write the result file."""
    record = envelope(f"benchmark.{args.benchmark}", results, getattr(args, "_argv", None), device, args.threads)
    sys.stdout.write(header(record) + "\n" + table)
    write_record(record, args.out)
    return 0
