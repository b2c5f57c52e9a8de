"""`ciml <command> ...`: dispatch to the sub-command modules and turn errors into messages.

Each sub-command lives in its own module of this package and exposes
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. A
:class:`~ciml.errors.CIMLError` becomes one line on stderr and its exit code; anything else
becomes one line too (with ``--debug`` for the traceback), so a user never sees a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from ciml import __version__
from ciml.errors import CIMLError

# Sub-command name -> module of this package that implements it.
COMMANDS = {
    "card": "ciml.cli.card",
    "sample-data": "ciml.cli.sample_data",
    "demo": "ciml.cli.demo",
    "segment": "ciml.cli.segment",
    "train": "ciml.cli.train",
    "evaluate": "ciml.cli.evaluate",
    "info": "ciml.cli.info",
    "init": "ciml.cli.init",
    "benchmark": "ciml.cli.benchmark",
    "study": "ciml.cli.study",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ciml", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ciml {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        cmd = importlib.import_module(module).add_parser(sub)
        cmd.set_defaults(_run=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._run).run(args) or 0)
    except CIMLError as exc:
        print(f"ciml {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"ciml {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if args.debug:
            traceback.print_exc()
        print(f"ciml {args.command}: unexpected error: {type(exc).__name__}: {exc} "
              "(rerun with --debug for details)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
