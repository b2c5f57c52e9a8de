"""`ciml card`: write a preset's model card, or check a card file. Imports no torch."""

from __future__ import annotations

import argparse
import sys

from ciml.config import load_card, preset
from ciml.io_utils import write_text_new


def run(args: argparse.Namespace) -> int:
    card = preset(args.preset) if args.preset else load_card(args.check)
    for note in card.notes():
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        write_text_new(args.out, card.to_json())
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(card.to_json())
    return 0
