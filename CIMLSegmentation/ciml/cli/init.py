"""`ciml init`: an untrained bundle for a card, to check a card builds or to start training from."""

from __future__ import annotations

import argparse
import sys

from ciml.config import PRESETS, load_card, preset
from ciml.nn import ARCHITECTURES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("init", help="write an untrained model bundle for a card",
                       description="Build the network a model card describes, with seeded random "
                                   "weights, and save it as a bundle (no training provenance).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="a built-in card")
    src.add_argument("--card", metavar="FILE", help="a card file (JSON or YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="the bundle folder to write")
    p.add_argument("--arch", choices=ARCHITECTURES, default="ciml", help="network architecture")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from ciml.bundle import save_bundle
    from ciml.nn import build_network, parameter_count

    card = preset(args.preset) if args.preset else load_card(args.card)
    torch.manual_seed(args.seed)
    network = build_network(card, args.arch)
    save_bundle(args.out, network, card, args.arch, overwrite=args.force,
                provenance={"command": "ciml " + " ".join(sys.argv[1:]) if sys.argv else "ciml init",
                            "trained": False, "seed": args.seed})
    print(f"wrote untrained {args.arch} bundle for '{card.name}' "
          f"({parameter_count(network):,} parameters) to {args.out}", file=sys.stderr)
    return 0
