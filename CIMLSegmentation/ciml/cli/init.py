"""`ciml init`: an untrained bundle for a card, to check a card builds or to start training from."""

from __future__ import annotations

import argparse
import sys

import torch

from ciml.bundle.weights import save_bundle
from ciml.config import load_card, preset
from ciml.nn import build_network, parameter_count


def run(args: argparse.Namespace) -> int:
    card = preset(args.preset) if args.preset else load_card(args.card)
    torch.manual_seed(args.seed)
    network = build_network(card, args.arch)
    save_bundle(args.out, network, card, args.arch, overwrite=args.force,
                provenance={"command": "ciml " + " ".join(sys.argv[1:]) if sys.argv else "ciml init",
                            "trained": False, "seed": args.seed})
    print(f"wrote untrained {args.arch} bundle for '{card.name}' "
          f"({parameter_count(network):,} parameters) to {args.out}", file=sys.stderr)
    return 0
