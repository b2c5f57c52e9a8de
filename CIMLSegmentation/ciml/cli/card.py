"""`ciml card`: write a preset's model card, or check a card file."""

from __future__ import annotations

import argparse
import sys

from ciml.config import PRESETS, load_card, preset


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("card", help="print a preset model card, or validate a card file",
                       description="Print a preset's model card as JSON (to edit into your own), "
                                   "or validate a card file and print it normalised.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="a built-in card")
    src.add_argument("--check", metavar="FILE", help="a card file (JSON or YAML) to validate")
    p.add_argument("--out", metavar="FILE", help="write the card here instead of stdout (never overwrites)")
    return p


def run(args: argparse.Namespace) -> int:
    card = preset(args.preset) if args.preset else load_card(args.check)
    for note in card.notes():
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        from ciml.io_utils import write_text_new

        write_text_new(args.out, card.to_json())
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(card.to_json())
    return 0
