"""A CIML network's inference pieces run by ONNX Runtime on the CPU.

Opt-in (``CIML_RUNTIME=onnxruntime``): on a quiet 2-core CPU it was no faster than PyTorch for
the built-in model and slower, with 2.3x the peak memory, for the ``brats`` preset at 1 mm, so
PyTorch is the default (docs/segment.md, "Levers"); the path stays for CPUs where it pays.
The sliding window and the withheld decoders (:mod:`ciml.inference.effects`) call the network in
pieces, so the pieces are exported, not the whole forward:

- one encoder graph per modality: ``(B, 1, *S) -> [(B, features[i], *S / 2**i)]``;
- one gate graph per sub-task: its primary's and auxiliaries' features and the presence mask
  ``(B, M)`` -> the gated skips and every auxiliary's message per gated level;
- one decoder graph per sub-task: the skips -> the sub-task's logits.

ONNX Runtime's InstanceNormalization sums a window in one float32 pass (on a real window the
probabilities drifted 2.5e-4), so every such node is rewritten with its mean and variance
reduced in two stages, which keeps the drift at PyTorch's (:func:`staged_instance_norm`).

The graphs are exported once per bundle and cached outside the bundle, under
:func:`cache_folder` keyed by a hash of the weights' SHA-256, the card and the exporter's
versions. Before a cached export is first used, its pieces chained on a probe window must equal
PyTorch's within :data:`TOLERANCE` (logits and messages); otherwise, or without ONNX Runtime,
inference runs in PyTorch and :class:`RuntimeChoice` carries a one-line note for report.json.
Grad-CAM needs gradients and always runs in PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml import __version__
from ciml.bundle.weights import Bundle
from ciml.nn import CIMLNet

# optional (the ``fast`` extra), imported by :func:`_import_onnx` only when the runtime is asked
# for, not by every ``ciml segment`` process (docs/segment.md, "Levers")
onnx = ort = helper = numpy_helper = None

# Largest difference allowed between the exported pieces and PyTorch on a probe window (logits, messages).
TOLERANCE = 1e-4
EXPORT_VERSION = 2  # bumped whenever what is exported changes, so that older caches are not reused
RUNTIME_ENV = "CIML_RUNTIME"


@dataclass(frozen=True)
class RuntimeChoice:
    """Which runtime runs a bundle's network, and why.

    Attributes:
        name: ``onnxruntime`` or ``pytorch``.
        network: what the predictors call: an :class:`OnnxNetwork`, or the bundle's network.
        note: one line for report.json when the runtime was wanted but not used, else ``""``.
    """

    name: str
    network: Any
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "note": self.note} if self.note else {"name": self.name}


def cache_folder() -> Path:
    """Where exported graphs are kept: ``$CIML_CACHE_DIR/runtime``, else the user's cache folder
    (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``ciml/runtime``."""
    root = os.environ.get("CIML_CACHE_DIR")
    if root:
        return Path(root) / "runtime"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ciml" / "runtime"


def choose_runtime(bundle: Bundle, device: torch.device) -> RuntimeChoice:
    """ONNX Runtime for a CIML bundle on the CPU when ``CIML_RUNTIME=onnxruntime`` asks for it, it
    is installed and its export checks out; PyTorch otherwise.

    Args:
        bundle: the loaded bundle (its network in eval mode).
        device: where inference runs; on a GPU the network stays in PyTorch.
    """
    torch_choice = RuntimeChoice("pytorch", bundle.network)
    if os.environ.get(RUNTIME_ENV, "").lower() != "onnxruntime" or device.type != "cpu" \
            or not isinstance(bundle.network, CIMLNet):
        return torch_choice
    if not _import_onnx():
        return RuntimeChoice("pytorch", bundle.network, "ONNX Runtime is not installed: the network ran in "
                             "PyTorch (pip install onnxruntime onnx)")
    try:
        network = OnnxNetwork.load(bundle)
    except Exception as exc:  # noqa: BLE001 - any failure of the optional runtime means PyTorch
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RuntimeChoice("pytorch", bundle.network, f"the ONNX Runtime export was not used ({reason}): "
                             "the network ran in PyTorch")
    return RuntimeChoice("onnxruntime", network)


def _import_onnx() -> bool:
    """Import onnx and ONNX Runtime into this module's names; whether both are installed."""
    global onnx, ort, helper, numpy_helper
    if onnx is None or ort is None:
        try:
            import onnx as onnx_module
            import onnxruntime
            from onnx import helper as helper_module
            from onnx import numpy_helper as numpy_helper_module
        except ImportError:
            return False
        onnx, ort, helper, numpy_helper = onnx_module, onnxruntime, helper_module, numpy_helper_module
    return True


def export_key(bundle: Bundle) -> str:
    """The cache key of a bundle's export: its weights, its card and the versions that shape it."""
    parts = {"weights": bundle.metadata["weights"]["sha256"], "card": bundle.metadata.get("card"),
             "arch": bundle.arch, "export": EXPORT_VERSION, "ciml": __version__, "torch": torch.__version__,
             "onnxruntime": ort.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class _Pieces(torch.nn.Module):
    """The network's pieces as modules with tensor arguments only, for the exporter."""

    class Encoder(torch.nn.Module):
        def __init__(self, network: CIMLNet, modality: str):
            super().__init__()
            self.encoder = network.encoders[modality]

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(self.encoder(x))

    class Gates(torch.nn.Module):
        def __init__(self, network: CIMLNet, subtask: str):
            super().__init__()
            self.network, self.subtask = network, subtask
            s = next(s for s in network.card.subtasks if s.name == subtask)
            self.modalities = (s.primary, *s.auxiliaries)
            self.levels = len(network.card.network.features)

        def forward(self, present: torch.Tensor, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
            features = {m: list(flat[i * self.levels:(i + 1) * self.levels]) for i, m in enumerate(self.modalities)}
            skips, gates = self.network.gated_skips(self.subtask, features, present)
            return (*skips, *(g.message for g in gates.values()))

    class Decoder(torch.nn.Module):
        def __init__(self, network: CIMLNet, subtask: str):
            super().__init__()
            self.network, self.subtask = network, subtask

        def forward(self, *skips: torch.Tensor) -> torch.Tensor:
            return self.network.decode(self.subtask, list(skips))


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str],
            outputs: list[str]) -> None:
    """Export ``module`` with every input's and output's batch and spatial axes dynamic.

    ``module`` is put in eval mode first: the exporter restores the mode it found afterwards,
    recursively, and a wrapper left in training mode would switch the wrapped network to it.
    """
    module.eval()
    dynamic = {name: {0: f"{name}_b", 2: f"{name}_x", 3: f"{name}_y", 4: f"{name}_z"}
               for name in [*inputs, *outputs]}
    if "present" in dynamic:
        dynamic["present"] = {0: "present_b"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic)


def staged_instance_norm(path: Path, spatial_dims: int) -> None:
    """Rewrite every InstanceNormalization node of the ONNX file ``path`` in place as
    ``(x - mean) / sqrt(var + eps) * scale + bias`` with per-channel mean and variance reduced in
    two float32 stages (the last spatial axis, then the others): short sums, so that their
    rounding stays at PyTorch's.

    Args:
        path: an exported ``.onnx`` file.
        spatial_dims: 2 or 3 (the axes after batch and channel).
    """
    model = onnx.load(str(path))
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    last, rest = [1 + spatial_dims], list(range(2, 1 + spatial_dims))
    nodes, added = [], []
    for k, node in enumerate(graph.node):
        if node.op_type != "InstanceNormalization":
            nodes.append(node)
            continue
        x, scale, bias = node.input
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        p = f"ciml_norm{k}_"
        shape = (-1, *([1] * spatial_dims))
        added += [numpy_helper.from_array(constants[scale].reshape(shape).astype(np.float32), p + "scale"),
                  numpy_helper.from_array(constants[bias].reshape(shape).astype(np.float32), p + "bias"),
                  numpy_helper.from_array(np.array(eps, np.float32), p + "eps")]
        nodes += [helper.make_node("ReduceMean", [x], [p + "m1"], axes=last, keepdims=1),
                  helper.make_node("ReduceMean", [p + "m1"], [p + "mean"], axes=rest, keepdims=1),
                  helper.make_node("Sub", [x, p + "mean"], [p + "centred"]),
                  helper.make_node("Mul", [p + "centred", p + "centred"], [p + "squared"]),
                  helper.make_node("ReduceMean", [p + "squared"], [p + "v1"], axes=last, keepdims=1),
                  helper.make_node("ReduceMean", [p + "v1"], [p + "var"], axes=rest, keepdims=1),
                  helper.make_node("Add", [p + "var", p + "eps"], [p + "var_eps"]),
                  helper.make_node("Sqrt", [p + "var_eps"], [p + "std"]),
                  helper.make_node("Div", [p + "centred", p + "std"], [p + "normed"]),
                  helper.make_node("Mul", [p + "normed", p + "scale"], [p + "scaled"]),
                  helper.make_node("Add", [p + "scaled", p + "bias"], [node.output[0]])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    onnx.save(model, str(path))


def export_pieces(network: CIMLNet, folder: Path) -> None:
    """Write every piece's ``.onnx`` file into ``folder`` (traced on a small window).

    Args:
        network: the CIML network in eval mode on the CPU.
        folder: an existing, empty folder.
    """
    card = network.card
    levels = len(card.network.features)
    side = 2 ** levels  # two voxels at the deepest level: instance norm has something to normalise
    window = torch.randn(1, 1, *([side] * card.network.spatial_dims))
    present = torch.ones(1, len(card.modalities))
    with torch.no_grad():
        features = {m: network.encoders[m](window) for m in network.encoders}
        for m in network.encoders:
            _export(_Pieces.Encoder(network, m), (window,), folder / f"encoder_{m}.onnx", ["x"],
                    [f"level{i}" for i in range(levels)])
        for s in card.subtasks:
            modalities = (s.primary, *s.auxiliaries)
            flat = [f for m in modalities for f in features[m]]
            keys = network.gate_keys(s.name)
            _export(_Pieces.Gates(network, s.name), (present, *flat), folder / f"gates_{s.name}.onnx",
                    ["present", *[f"{m}_level{i}" for m in modalities for i in range(levels)]],
                    [*[f"skip{i}" for i in range(levels)], *[f"message_{a}_{lv}" for _, a, lv in keys]])
            skips, _ = network.gated_skips(s.name, features, present)
            _export(_Pieces.Decoder(network, s.name), tuple(skips), folder / f"decoder_{s.name}.onnx",
                    [f"skip{i}" for i in range(levels)], ["logits"])
    for path in folder.glob("*.onnx"):
        staged_instance_norm(path, card.network.spatial_dims)


class _Message:
    """What :mod:`ciml.inference.effects` reads of a gate's output: its message."""

    def __init__(self, message: torch.Tensor):
        self.message = message


class _Logits:
    def __init__(self, logits: torch.Tensor):
        self.logits = logits


class OnnxNetwork:
    """The inference calls the predictors make on a :class:`~ciml.nn.CIMLNet`, run by ONNX Runtime.

    Offers ``card``, ``encoders[m](x)``, :meth:`encode`, :meth:`gate_keys`, :meth:`gated_skips`,
    :meth:`decode`, :meth:`forward_features` and calling it on windows, with the network's
    shapes; tensors go in and come out float32 on the CPU, without autograd.

    Args:
        network: the PyTorch network (its card and gate order).
        folder: the folder of the exported pieces.
        threads: ONNX Runtime's threads per call.
    """

    def __init__(self, network: CIMLNet, folder: Path, threads: int | None = None):
        self.card, self._network = network.card, network
        self.levels = len(self.card.network.features)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # not the notes on initializers the rewrite left unused

        def session(name: str):
            return ort.InferenceSession(str(folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])

        self._encoders = {m: session(f"encoder_{m}") for m in network.encoders}
        self._gates = {s.name: session(f"gates_{s.name}") for s in self.card.subtasks}
        self._decoders = {s.name: session(f"decoder_{s.name}") for s in self.card.subtasks}
        self.encoders = {m: (lambda x, m=m: self._encode_one(m, x)) for m in self._encoders}

    @classmethod
    def load(cls, bundle: Bundle) -> OnnxNetwork:
        """The bundle's pieces from the cache, exported and checked first when not there.

        Raises:
            RuntimeError: ONNX Runtime is missing, or the export failed or differs from PyTorch
                by more than :data:`TOLERANCE`.
        """
        if not _import_onnx():
            raise RuntimeError("ONNX Runtime is not installed (pip install onnxruntime onnx)")
        folder = cache_folder() / export_key(bundle)
        checked = folder / "checked.json"
        if not checked.exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
            try:
                export_pieces(bundle.network, staging)
                difference = probe_difference(bundle.network, cls(bundle.network, staging))
                if difference > TOLERANCE:
                    raise RuntimeError(f"its outputs differ from PyTorch's by {difference:.2g} on a probe window")
                (staging / "checked.json").write_text(json.dumps({"max_difference": difference}) + "\n")
                try:  # another process may have put the same export in place meanwhile: keep one
                    os.replace(staging, folder)
                except OSError:
                    pass
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return cls(bundle.network, folder)

    @staticmethod
    def _run(session, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        arrays = {k: np.ascontiguousarray(v.detach().to("cpu", torch.float32).numpy()) for k, v in feeds.items()}
        return [torch.from_numpy(a) for a in session.run(None, arrays)]

    def _encode_one(self, modality: str, x: torch.Tensor) -> list[torch.Tensor]:
        return self._run(self._encoders[modality], {"x": x})

    def encode(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Features of every used modality at every level. x: (B, M, *S)."""
        return {m: self._encode_one(m, x[:, i:i + 1]) for i, m in enumerate(self.card.modality_names)
                if m in self._encoders}

    def gate_keys(self, subtask: str | None = None) -> list[tuple[str, str, int]]:
        """The gates' (sub-task, auxiliary, level) in the network's order."""
        return self._network.gate_keys(subtask)

    def gated_skips(self, subtask: str, features: dict[str, list[torch.Tensor]],
                    present: torch.Tensor | None = None) -> tuple[list[torch.Tensor], dict[tuple, _Message]]:
        """As :meth:`ciml.nn.CIMLNet.gated_skips`; each gate's output holds its message only."""
        s = next(s for s in self.card.subtasks if s.name == subtask)
        batch = features[s.primary][0].shape[0]
        if present is None:  # all given: a message times 1 is the message, exactly
            present = torch.ones(batch, len(self.card.modalities))
        feeds = {"present": present}
        for m in (s.primary, *s.auxiliaries):
            feeds.update({f"{m}_level{i}": f for i, f in enumerate(features[m])})
        out = self._run(self._gates[subtask], feeds)
        keys = self.gate_keys(subtask)
        return out[:self.levels], {key: _Message(out[self.levels + k]) for k, key in enumerate(keys)}

    def decode(self, subtask: str, skips: list[torch.Tensor]) -> torch.Tensor:
        """One sub-task's logits (B, its targets, *S) from its skips."""
        return self._run(self._decoders[subtask], {f"skip{i}": f for i, f in enumerate(skips)})[0]

    def forward_features(self, x: torch.Tensor, present: torch.Tensor | None = None) -> _Logits:
        """The logits (B, T, *S) in the card's target order, as ``.logits``."""
        features = self.encode(x)
        by_target = {}
        for s in self.card.subtasks:
            skips, _ = self.gated_skips(s.name, features, present)
            logits = self.decode(s.name, skips)
            by_target.update({t: logits[:, i:i + 1] for i, t in enumerate(s.targets)})
        return _Logits(torch.cat([by_target[t] for t in self.card.target_names], dim=1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).logits


def probe_difference(network: CIMLNet, exported: OnnxNetwork, seed: int = 0) -> float:
    """The largest difference between ``exported`` and ``network`` on a random probe window: the
    logits with every modality, with the last one absent, and every gate's message.

    Args:
        network: the PyTorch network in eval mode.
        exported: its exported pieces.
        seed: the probe's random seed.
    """
    card = network.card
    side = 2 ** len(card.network.features) * 2  # not the traced size: the dynamic axes are exercised
    generator = torch.Generator().manual_seed(seed)
    window = torch.randn(1, len(card.modalities), *([side] * card.network.spatial_dims), generator=generator)
    absent = torch.ones(1, len(card.modalities))
    absent[0, -1] = 0
    worst = 0.0
    with torch.inference_mode():
        for present in (None, absent):
            worst = max(worst, float((network.forward_features(window, present).logits
                                      - exported.forward_features(window, present).logits).abs().max()))
        features, mine = network.encode(window), exported.encode(window)
        for s in card.subtasks:
            _, gates = network.gated_skips(s.name, features, None)
            _, theirs = exported.gated_skips(s.name, mine, None)
            worst = max(worst, *(float((gates[k].message - theirs[k].message).abs().max()) for k in gates))
    return worst
