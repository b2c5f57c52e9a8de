"""`ciml segment`: segment one case and compute per-modality heat maps (the Slicer worker job).

The command-line contract (documented in docs/segment.md) is the Slicer module's interface:
keep it stable.
"""

from __future__ import annotations

import argparse
import signal
import sys

from ciml.errors import CIMLError
from ciml.inference.segment import SegmentRequest, segment
from ciml.progress import Progress


class Terminated(CIMLError):
    """SIGTERM arrived: stop, clean up, exit 143 (128 + 15) as a killed process would."""

    exit_code = 143


def parse_inputs(pairs: list[str]) -> dict[str, str]:
    """``--input NAME=PATH`` values -> {name: path}; a malformed or repeated name is refused.

    Args:
        pairs: the ``--input`` values in the order given.
    """
    inputs: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise CIMLError(f"--input {pair!r}: expected NAME=PATH")
        if name in inputs:
            raise CIMLError(f"--input {name}: given twice")
        inputs[name] = path
    return inputs


def _terminate(signum, frame):
    raise Terminated("stopped by SIGTERM; no output was changed")


def run(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        request = SegmentRequest(model=args.model, inputs=parse_inputs(args.input), out=args.out,
                                 device=args.device, maps=args.maps, per_target=args.per_target,
                                 fmt=args.format)
        report = segment(request, progress)
    except KeyboardInterrupt:
        progress.error("interrupted; no output was changed")
        raise
    except CIMLError as exc:
        progress.error(str(exc))
        raise
    except Exception as exc:
        progress.error(f"{type(exc).__name__}: {exc}")
        raise
    progress.done(out=args.out, targets={t: v["volume_ml"] for t, v in report["targets"].items()},
                  warnings=report["warnings"])
    _summary(report, args.out)
    return 0


def _summary(report: dict, out: str) -> None:
    lines = [f"segmented with {report['model']['name']} on {report['device']} in "
             f"{sum(report['timings_s'].values()):.1f} s; outputs in {out}"]
    for t, v in report["targets"].items():
        shares = ", ".join(f"{m} {100 * s:.0f}%" for m, s in v["contributions"].items())
        lines.append(f"  {t}: {v['volume_ml']:.1f} ml" + (f"  (contributions: {shares})" if shares else ""))
    lines += [f"  warning: {w}" for w in report["warnings"]]
    print("\n".join(lines), file=sys.stderr)
