"""The model card: a JSON-serialisable description of a CIML model (built and validated by
``ciml.config.validate``).

A card says which modalities a model reads, which targets it segments, how the task is
decomposed into sub-tasks (each with a primary and auxiliary modalities), and every network,
inference and training hyperparameter. Like nnU-Net's plans, the card drives everything: no
hyperparameter lives in code. Each field declares its default and what it accepts (type, range,
choices) once, with :func:`~ciml.config.fields.spec`; every field is documented in
``docs/model-card.md`` (``Testing/test_card_fields.py`` checks both).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ciml.config.fields import spec

MODALITY_KINDS = ("MR", "CT", "PET")
NORMALIZATIONS = ("zscore_nonzero", "zscore", "window", "suv_clip")
DEFAULT_NORMALIZATION = {"MR": "zscore_nonzero", "CT": "window", "PET": "suv_clip"}
DEFAULT_WINDOW = {"CT": (-1000.0, 1000.0), "PET": (0.0, 20.0)}
NORMS = ("instance", "batch")  # MONAI normalisations that build from their name alone
BLENDS = ("gaussian", "constant")  # MONAI sliding-window blending modes
GATE_MESSAGES = ("decoded", "latent")  # what a gate adds to the primary: see NetworkSpec.gate_message
OUTPUT_PRIORS = ("foreground", "none")  # how the sigmoid heads' biases start: see TrainingSpec.output_prior
DEFAULT_FEATURES = (16, 32, 64, 128)
DEFAULT_PATCH = (96, 96, 96)  # the training patch and the inference window (a 3D card's)
WEIGHT = {"low": 0.0, "high": 1e6}  # what a loss term's weight accepts


def default_window(kind: str, normalization: str) -> tuple[float, float] | None:
    """The intensity window a modality without one uses: by kind for ``window`` and ``suv_clip``
    (a kind without a default takes the normalisation's usual one), none otherwise."""
    if normalization not in ("window", "suv_clip"):
        return None
    return DEFAULT_WINDOW.get(kind, DEFAULT_WINDOW["CT" if normalization == "window" else "PET"])


def every_level(features: tuple[int, ...]) -> tuple[int, ...]:
    """``network.gate_levels`` of a card without the field: every level of its ``features``."""
    return tuple(range(len(features)))


def _patch(section: dict[str, Any], card: dict[str, Any]) -> tuple[int, ...]:
    """A window or patch of the default size in the card's own number of dimensions."""
    return DEFAULT_PATCH[:card["network"].spatial_dims]


@dataclass(frozen=True)
class Modality:
    """One input image of a case.

    Args:
        name: identifier used on the command line and in file names (``cam_<name>``).
        kind: ``MR``, ``CT`` or ``PET``.
        normalization: ``zscore_nonzero`` (z-score inside the non-zero region, for MR),
            ``zscore`` (over the whole image), ``window`` (clip to ``window`` and scale to 0..1,
            for CT in HU) or ``suv_clip`` (clip SUV to ``window`` and scale to 0..1, for PET);
            absent: by kind (``DEFAULT_NORMALIZATION``).
        window: ``(low, high)`` for ``window`` and ``suv_clip``; absent: :func:`default_window`.
    """

    name: str = spec(name=True)
    kind: str = spec("MR", choices=MODALITY_KINDS)
    normalization: str = spec("", choices=NORMALIZATIONS, derive=lambda m, card: DEFAULT_NORMALIZATION[m["kind"]])
    window: tuple[float, float] | None = spec(None, derive=lambda m, card: default_window(m["kind"], m["normalization"]))


@dataclass(frozen=True)
class Target:
    """One structure the model segments (one sigmoid output channel).

    Args:
        name: identifier, e.g. ``WT``.
        label: value written for this target in the output label map.
        includes: label values of a reference label map that make up this target's region
            (targets may nest: BraTS WT includes 1, 2 and 4). Absent: ``[label]``.
        color: RGB in 0..1, used for the segment in Slicer.
        terminology: optional coded meaning, ``{"scheme": "SCT", "code": ..., "meaning": ...}``.
        needs: modalities without which this target cannot be seen (BraTS ET: ``t1ce``, where
            alone enhancement shows); a run without one of them warns that the target is a guess.
    """

    name: str = spec(name=True)
    label: int = spec(low=1)
    includes: tuple[int, ...] = spec((), low=1, min_len=1, derive=lambda t, card: (t["label"],))
    color: tuple[float, float, float] = spec((1.0, 0.0, 0.0), low=0.0, high=1.0)
    terminology: dict[str, str] | None = spec(None, keys=("scheme", "code", "meaning"))
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubTask:
    """One decomposed sub-task: one decoder fed by its primary modality's encoder.

    Args:
        name: identifier.
        targets: names of the targets this sub-task's decoder predicts.
        primary: the modality that carries the main signal for these targets.
        auxiliaries: modalities whose complementary information reaches the primary through
            Cross-modality Information Gates. May be empty (a primary-only sub-task).
    """

    name: str = spec(name=True)
    targets: tuple[str, ...] = spec(min_len=1)
    primary: str = spec()
    auxiliaries: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkSpec:
    """Network hyperparameters shared by CIML and its baselines.

    Args:
        spatial_dims: 3 (volumes) or 2 (slices).
        features: channels per encoder level, shallowest first; each deeper level halves the
            resolution, so the number of levels is ``len(features)``.
        kernel_size: convolution kernel size of every block.
        norm: MONAI normalisation, ``instance`` or ``batch``.
        dropout: dropout rate inside the blocks.
        gate_levels: encoder levels that receive gate messages; negative values count from the
            deepest. Absent: every level of the card's ``features`` (:func:`every_level`).
            Bundles of format 1 whose card lacks the field were trained with ``[-2, -1]``, the
            two deepest (:func:`ciml.bundle.metadata.migrate_1_to_2`).
        gate_bottleneck: use the variational bottleneck in each gate (ablation switch).
        gate_attention: use the cross-modal spatial attention in each gate (ablation switch).
        gate_message: what a gate adds to the primary's features: ``decoded``, its latent
            decoded by a learned 1x1 convolution (as a deep variational information bottleneck
            decodes before use), or ``latent``, the latent itself (the earlier gate, whose
            latent collapsed to the prior; bundles of format 1 without the field use it).
        modality_heads: give every modality's encoder a head that predicts all targets from
            that modality alone (PASSION's unimodal outputs).
        level_set_head: give every sub-task's decoder a second head regressing each target's
            signed distance map (DTC).
    """

    spatial_dims: int = spec(3, choices=(2, 3))
    features: tuple[int, ...] = spec(DEFAULT_FEATURES, low=1, min_len=2)
    kernel_size: int = spec(3, low=1)
    norm: str = spec("instance", choices=NORMS)
    dropout: float = spec(0.0, low=0.0, high=1.0)
    gate_levels: tuple[int, ...] = spec(every_level(DEFAULT_FEATURES), derive=lambda n, card: every_level(n["features"]))
    gate_bottleneck: bool = True
    gate_attention: bool = True
    gate_message: str = spec("decoded", choices=GATE_MESSAGES)
    modality_heads: bool = False
    level_set_head: bool = False

    @property
    def window_multiple(self) -> int:
        """Every window's size is a multiple of this along each axis: each level halves it."""
        return 2 ** (len(self.features) - 1)

    def resolved_gate_levels(self) -> tuple[int, ...]:
        """Gate levels as non-negative indices, shallowest first."""
        levels = len(self.features)
        return tuple(sorted({lv % levels for lv in self.gate_levels}))


@dataclass(frozen=True)
class InferenceSpec:
    """Sliding-window inference settings.

    Args:
        roi_size: window size in voxels (each a multiple of ``2 ** (levels - 1)``).
        overlap: fraction of overlap between windows, in [0, 0.95].
        sw_batch_size: windows evaluated together.
        blend: MONAI blending mode, ``gaussian`` or ``constant``.
        threshold: probability above which a voxel belongs to a target.
        min_component_ml: the label map drops every connected piece of tumour (all targets
            together, 26-connected) smaller than this volume; 0 keeps everything.
        effect_floor: when measuring what each modality does (``ciml segment --maps
            effects``), a window whose sub-task predicts no voxel above this probability is
            taken as unchanged by withholding any modality, and its decoders are not run again.
        crop: segment only the body's bounding box (the voxels where any modality is non-zero)
            and paste the result back (:mod:`ciml.inference.windows`).
        crop_margin: voxels kept around the body's box on every side.
        window_voxels: the largest window, in voxels: the (cropped) case is covered by few
            windows of at most this size (:func:`~ciml.inference.windows.window_size`), one
            where it fits. ``None`` (default):
            the training patch's voxels, which keeps instance normalisation's statistics close
            to training's and bounds inference memory by training's; 0: windows of ``roi_size``
            (docs/BENCHMARKS.md, "Window plans", measures the choices).
    """

    roi_size: tuple[int, ...] = spec(DEFAULT_PATCH, low=1, derive=_patch)
    overlap: float = spec(0.5, low=0.0, high=0.95)
    sw_batch_size: int = spec(1, low=1)
    blend: str = spec("gaussian", choices=BLENDS)
    threshold: float = spec(0.5, low=0.0, high=1.0)
    min_component_ml: float = spec(0.0, low=0.0)
    effect_floor: float = spec(0.01, low=1e-6, high=0.5)
    crop: bool = True
    crop_margin: int = spec(0, low=0)
    window_voxels: int | None = spec(None, low=0)


@dataclass(frozen=True)
class PassionSpec:
    """PASSION's self-distillation and preference schedule (``docs/training-methods.md``).

    Args:
        enabled: with ``training.missing_rates``, train with PASSION's terms; ``false``: plain
            modality dropout at the same rates (the control PASSION is compared against).
        distill_weight: weight of the pixel-wise self-distillation.
        prototype_weight: weight of the prototype (semantic) self-distillation.
        temperature: temperature of the pixel-wise KL (the authors' 4).
        epoch_steps: optimiser steps per epoch of the preference schedule; ``None``: the steps
            that show every training case once on average.
        warmup_epochs: epochs before the preference coefficients update and the distillation
            and task-wise masking start (the authors' ``region_fusion_start_epoch``).
        preference_rate: initial step of the preference coefficients per epoch (the authors'
            ``eta``; 1.5 times larger at every 100th epoch; 0 freezes them).
    """

    enabled: bool = True
    distill_weight: float = spec(0.5, **WEIGHT)
    prototype_weight: float = spec(0.1, **WEIGHT)
    temperature: float = spec(4.0, low=1e-3, high=1e3)
    epoch_steps: int | None = spec(None, low=1)
    warmup_epochs: int = spec(0, low=0)
    preference_rate: float = spec(0.01, low=0.0, high=10.0)


@dataclass(frozen=True)
class DTCSpec:
    """DTC's dual-task consistency (``docs/training-methods.md``; needs
    ``network.level_set_head``).

    Args:
        level_set_weight: weight of the signed-distance regression loss.
        consistency_weight: final weight of the dual-task consistency loss.
        consistency_ramp_steps: steps over which that weight ramps up (sigmoid ramp).
        level_set_k: k in sigmoid(-k * level set).
    """

    level_set_weight: float = spec(0.3, **WEIGHT)
    consistency_weight: float = spec(0.1, **WEIGHT)
    consistency_ramp_steps: int = spec(200, low=0)
    level_set_k: float = spec(1500.0, **WEIGHT)


@dataclass(frozen=True)
class TrainingSpec:
    """Training hyperparameters (the defaults ``ciml train`` uses).

    Args:
        patch_size: training crop size in voxels (each a multiple of ``2 ** (levels - 1)``).
        batch_size: crops per optimiser step.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        max_steps: optimiser steps of a run.
        beta: weight of the gates' mean KL divergence in the loss.
        beta_warmup_steps: steps over which that weight rises linearly from 0 to ``beta``
            (0: ``beta`` from the first step).
        free_bits: nats per voxel that each latent channel of a gate may carry without KL
            penalty (free bits, Kingma et al. 2016): the penalised KL is the sum over channels of
            ``max(KL_c, free_bits)``, so a channel below the allowance gets no push to the prior.
        output_prior: how a fresh network's sigmoid heads start: ``foreground``, each at its
            target's voxel rate in the first training crops (bias logit(rate), RetinaNet's
            prior-probability initialisation, :mod:`ciml.nn.output_prior`), so that small
            targets are learnt from the first steps; ``none``, PyTorch's default bias (p about
            0.5). Fine-tuning (``--init``) keeps the bundle's biases.
        seed: random seed.
        validation_interval: optimiser steps between validations (and checkpoints).
        patience: stop after this many validations without a better mean Dice (0: never).
        warmup_steps: linear learning-rate warm-up before the cosine decay.
        deep_supervision_weight: weight of the per-modality branch losses (MAML; with PASSION,
            of its preference-masked unimodal losses).
        missing_rates: modality -> probability that a training case lacks it (modality dropout).
        passion: PASSION's settings (:class:`PassionSpec`), used with ``missing_rates``.
        dtc: DTC's settings (:class:`DTCSpec`), used with ``network.level_set_head``.
    """

    patch_size: tuple[int, ...] = spec(DEFAULT_PATCH, low=1, derive=_patch)
    batch_size: int = spec(2, low=1)
    learning_rate: float = spec(1e-3, low=0.0, high=10.0)
    weight_decay: float = spec(1e-5, low=0.0, high=10.0)
    max_steps: int = spec(1000, low=1)
    beta: float = spec(1e-3, **WEIGHT)
    beta_warmup_steps: int = spec(0, low=0)
    free_bits: float = spec(0.0, low=0.0, high=100.0)
    output_prior: str = spec("foreground", choices=OUTPUT_PRIORS)
    seed: int = spec(0, low=0)
    validation_interval: int = spec(100, low=1)
    patience: int = spec(0, low=0)
    warmup_steps: int = spec(0, low=0)
    deep_supervision_weight: float = spec(0.5, **WEIGHT)
    missing_rates: dict[str, float] = spec(factory=dict, low=0.0, high=1.0)
    passion: PassionSpec = field(default_factory=PassionSpec)
    dtc: DTCSpec = field(default_factory=DTCSpec)


@dataclass(frozen=True)
class ModelCard:
    """The whole description of a model. Build it with :func:`card_from_dict` to validate.

    Args:
        name: short model name.
        description: one or two sentences for users.
        modalities: the inputs, in the channel order of the network.
        targets: the outputs, in the channel order of the network.
        subtasks: the task decomposition; every target belongs to exactly one sub-task.
        reference: the modality whose grid (origin, spacing, direction, size) outputs use.
        spacing: working spacing in mm that images are resampled to, or ``None`` for native.
        network, inference, training: hyperparameters.
    """

    name: str = spec(min_len=1)
    modalities: tuple[Modality, ...] = spec(min_len=1)
    targets: tuple[Target, ...] = spec(min_len=1)
    subtasks: tuple[SubTask, ...] = spec(min_len=1)
    reference: str = spec()
    description: str = ""
    spacing: tuple[float, ...] | None = spec(None, low=1e-3, high=1e3)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    inference: InferenceSpec = field(default_factory=InferenceSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    def modality_index(self, name: str) -> int:
        return self.modality_names.index(name)

    def target_index(self, name: str) -> int:
        return self.target_names.index(name)

    def notes(self) -> list[str]:
        """Valid but probably unintended settings, as sentences for the user."""
        notes = []
        if self.inference.roi_size != self.training.patch_size:
            notes.append(f"inference.roi_size {list(self.inference.roi_size)} differs from training.patch_size "
                         f"{list(self.training.patch_size)}: instance normalisation sees other statistics at "
                         "inference than in training, which usually costs accuracy")
        return notes

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so that a card round-trips through JSON unchanged."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
