"""The networks: CIML (encoders, gates, decoders), MAML and the early-fusion baseline.

May import torch, MONAI, ``ciml.choices``, ``ciml.config`` and ``ciml.errors``; never the data,
losses, training, inference or research packages (they build on the networks).
"""

from ciml.nn.ciml_net import CIMLNet
from ciml.nn.early_fusion import EarlyFusionNet
from ciml.nn.factory import ARCHITECTURES, build_network
from ciml.nn.gate import CrossModalityInformationGate, gaussian_kl
from ciml.nn.gate_diagnostics import GateDiagnostics, format_gate_table, gate_diagnostics
from ciml.nn.maml import MAMLNet
from ciml.nn.output import GateOutput, NetOutput
from ciml.nn.parameters import parameter_count

__all__ = ["CIMLNet", "EarlyFusionNet", "MAMLNet", "ARCHITECTURES", "build_network", "parameter_count",
           "CrossModalityInformationGate", "gaussian_kl", "GateOutput", "NetOutput",
           "GateDiagnostics", "gate_diagnostics", "format_gate_table"]
