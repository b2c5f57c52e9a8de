"""`ciml <command> ...`: parse the arguments, run the sub-command, turn errors into messages.

The arguments of every sub-command are in :mod:`ciml.cli.parser` (it imports no torch); each
sub-command's work is ``run(args) -> int`` in its own module of this package, imported by name
only once the arguments are parsed, so `ciml --help` and argument errors never load torch. A
:class:`~ciml.errors.CIMLError` becomes one line on stderr and its exit code; anything else
becomes one line too (with ``--debug`` for the traceback), so a user never sees a traceback.
"""

from __future__ import annotations

import gc
import importlib
import sys
import traceback

from ciml.cli.parser import build_parser
from ciml.errors import user_error
from ciml.startup import import_monai_without, use_huge_pages

# Whole processes that import MONAI without the optional packages they never use through it
# (ciml.startup): the Slicer module's worker job, started once per case. Only whole processes:
# in-process calls (tests, Slicer's own Python) keep MONAI as it would be imported elsewhere.
LEAN_COMMANDS = ("segment",)
# Whole processes whose large tensors go on huge pages (ciml.startup): segmenting, and the
# benchmarks that time it (their `ciml segment` children inherit the setting). Not training: no
# faster there, and a third more peak memory (docs/speed.md).
HUGE_PAGE_COMMANDS = ("segment", "benchmark")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # result files record the command as typed
    try:
        if argv is None and args.command in HUGE_PAGE_COMMANDS:
            use_huge_pages()
        if argv is None and args.command in LEAN_COMMANDS:
            import_monai_without()
        command = importlib.import_module(args._run)
        if argv is None:
            # a whole process: what torch and MONAI imported lives as long as it does, so keep
            # full garbage collections from rescanning it (one showed as a pause in loading the model)
            gc.freeze()
        return int(command.run(args) or 0)
    except KeyboardInterrupt:
        print(f"ciml {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        cause = user_error(exc)
        if cause is not None:
            print(f"ciml {args.command}: error: {cause}", file=sys.stderr)
            return cause.exit_code
        if args.debug:
            traceback.print_exc()
        print(f"ciml {args.command}: unexpected error: {type(exc).__name__}: {exc} "
              "(rerun with --debug for details)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
