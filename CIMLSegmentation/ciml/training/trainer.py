"""The training loop: steps, validation, best-Dice bundle, atomic checkpoints, exact resume.

Everything a run needs lives in its folder:

    RUN/config.json            the effective card, run options and case lists (what --resume reads)
    RUN/log.jsonl              one JSON object per step and per validation (with the gates'
                               diagnostics, ``{"event": "gates"}``), and ``{"event": "stop"}``
                               when the time limit (``--max-minutes``) ended the run
    RUN/checkpoints/last.pt    model, optimiser, scheduler, scaler, random state, history
    RUN/bundle/                the best validation Dice so far (``--bundle last``: the latest
                               validated weights), as a model bundle
    RUN/bundles/step-N/        the weights at every validation step, with ``--keep-bundles``
    RUN/training-curve.png     loss and validation Dice over steps, drawn only when matplotlib is
                               installed (without it, e.g. in Slicer's Python, the run still
                               succeeds and its log notes that the curve was skipped)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ciml.bundle.metadata import FORMAT_VERSION
from ciml.bundle.weights import load_bundle, save_bundle
from ciml.config import ModelCard
from ciml.data.datasets import build_dataset, train_transforms, validation_transforms
from ciml.errors import CIMLError
from ciml.evaluation.scoring import mean_dice, score_cases
from ciml.inference.device import resolve_device
from ciml.inference.sliding_window import autocast
from ciml.nn import CIMLNet, build_network
from ciml.nn.gate_diagnostics import centred_window, gate_diagnostics
from ciml.nn.output_prior import RATE_CROPS, foreground_rates, set_output_prior
from ciml.progress import Progress
from ciml.training import distributed
from ciml.training.checkpoint import load_checkpoint, restore_random_state, save_checkpoint
from ciml.training.objective import Objective
from ciml.training.plots import training_curve
from ciml.training.run_config import steps_for_epochs
from ciml.training.run_options import RunOptions, RunState
from ciml.training.schedule import UNTIL_TIME_LIMIT, cosine_with_warmup
from ciml.training.sampling import presence_dropper, step_loader


class Trainer:
    """Trains one network on case records; see the module docstring for the run folder.

    Args:
        card: the model card (its ``training`` section gives every hyperparameter).
        options: the run options.
        train, validation, unlabelled: case records (``ciml.data.list_cases``).
        progress: how to report progress.
    """

    def __init__(self, card: ModelCard, options: RunOptions, train: list[dict], validation: list[dict],
                 unlabelled: list[dict] | None = None, progress: Progress | None = None):
        self.card, self.options = card, options
        self.records = {"train": train, "validation": validation, "unlabelled": list(unlabelled or [])}
        self.out = Path(options.out)
        self.max_steps = options.max_steps or (UNTIL_TIME_LIMIT if options.max_minutes else card.training.max_steps)
        self.device = resolve_device(options.device)
        self.world = distributed.join(self.device)
        self.device = distributed.device_for(self.world, self.device)
        self.progress = progress or Progress("none")
        self.state = RunState()
        self.stopped: str | None = None  # why the run ended before max_steps, when the time limit ended it
        self._objective_state: dict = {}  # restored from a checkpoint on resume
        self._started = time.monotonic()  # reset when the run starts; the time limit counts from there
        self._validated: dict[str, Any] = {}  # the last validation's scores

    # -- set-up -----------------------------------------------------------------------------

    def _network(self) -> torch.nn.Module:
        torch.manual_seed(self.card.training.seed)
        if self.options.init:
            bundle = load_bundle(self.options.init)
            if bundle.card.network != self.card.network or bundle.arch != self.options.arch:
                raise CIMLError(f"--init {self.options.init}: its network ({bundle.arch}) differs from the "
                                "one this run's card describes; fine-tune with the bundle's own card")
            network = bundle.network
        else:
            network = build_network(self.card, self.options.arch)
        if self.options.freeze_encoders:
            frozen = [p for name, p in network.named_parameters() if name.startswith("encoders.")]
            if not frozen:
                raise CIMLError(f"--freeze-encoders: the {self.options.arch} network has no modality encoders")
            for p in frozen:
                p.requires_grad_(False)
        return network.to(self.device).train()

    def _optimisation(self, network: torch.nn.Module):
        t = self.card.training
        params = [p for p in network.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimiser, cosine_with_warmup(self.max_steps, t.warmup_steps, self._time_used if self.options.max_minutes else None))
        scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda"
                                      and not torch.cuda.is_bf16_supported())
        return optimiser, scheduler, scaler

    def _loaders(self, start: int):
        t, o = self.card.training, self.options
        allow_missing = bool(t.missing_rates)
        cache_dir = str(self.out / "cache") if o.cache == "disk" else None
        alter = presence_dropper(self.card) if t.missing_rates else None
        loaders = {}
        for role, labelled in (("train", True), ("unlabelled", False)):
            if self.records[role]:
                cases = build_dataset(self.records[role], train_transforms(self.card, labelled, allow_missing=allow_missing),
                                      o.cache, None if cache_dir is None else f"{cache_dir}/{role}")
                loaders[role] = step_loader(cases, t.seed + (role == "unlabelled"), start, self.max_steps,
                                            t.batch_size, self.world.rank, self.world.size, o.num_workers, alter)
        validation = None
        if self.records["validation"] and self.world.main:
            validation = build_dataset(self.records["validation"], validation_transforms(self.card), o.cache,
                                       None if cache_dir is None else f"{cache_dir}/validation")
        return loaders, validation

    def _output_prior(self, network: torch.nn.Module, crops) -> None:
        """Start every sigmoid head at its target's rate in the first training crops
        (``training.output_prior: foreground``; a fine-tuned bundle keeps its biases)."""
        if self.card.training.output_prior != "foreground" or self.options.init:
            return
        rates = foreground_rates(torch.stack([torch.as_tensor(crops[i]["label"]) for i in range(RATE_CROPS)]))
        set_output_prior(network.output_heads(), rates)
        self._log({"event": "output_prior", "crops": RATE_CROPS,
                   "rates": {t: float(r) for t, r in zip(self.card.target_names, rates)}})

    # -- the run ----------------------------------------------------------------------------

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``max_steps`` (or early stop, or the time limit); returns a summary of the run."""
        self._started = time.monotonic()
        limit_s = self.options.max_minutes * 60 if self.options.max_minutes else None
        for note in self.card.notes():
            self.progress.message(f"note: {note}")
        network = self._network()
        optimiser, scheduler, scaler = self._optimisation(network)
        if resume:
            self._restore(network, optimiser, scheduler, scaler)
        elif self.world.main:
            self._start_folder()
        distributed.barrier(self.world)
        model = distributed.FeaturesForward(network)
        if self.world.distributed:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        objective = self.objective = Objective(self.card, self._passion_epoch_steps(),
                                               partial(distributed.all_reduce_sum, self.world))
        if resume:
            objective.load_state_dict(self._objective_state)
        loaders, validation = self._loaders(self.state.step)
        if not resume:
            self._output_prior(network, loaders["train"].dataset)
        batches = {role: iter(loader) for role, loader in loaders.items()}
        interval = self.card.training.validation_interval
        stop = False
        while self.state.step < self.max_steps and not stop:
            batch = next(batches["train"])
            unlabelled = next(batches["unlabelled"]) if "unlabelled" in batches else None
            logs = self._step(model, network, objective, optimiser, scheduler, scaler, batch, unlabelled)
            self.state.step += 1
            self._log({"event": "step", "step": self.state.step, "lr": scheduler.get_last_lr()[0], **logs})
            elapsed = self._elapsed()
            self.progress.update("training", max(self.state.step / self.max_steps, elapsed / limit_s if limit_s else 0),
                                 step=self.state.step, loss=round(logs["loss"], 4))
            # rank 0's clock decides, so that every rank stops after the same step
            out_of_time = limit_s is not None and distributed.broadcast_flag(self.world, elapsed >= limit_s)
            if self.state.step % interval == 0 or self.state.step == self.max_steps or out_of_time:
                stop = self._validate_and_checkpoint(network, optimiser, scheduler, scaler, validation)
            if out_of_time and not stop and self.state.step < self.max_steps:
                self._stop_for_time(network)
                stop = True
        summary = self._finish(network)
        distributed.leave(self.world)
        return summary

    def _step(self, model, network, objective, optimiser, scheduler, scaler, batch, unlabelled) -> dict[str, float]:
        n_labelled = batch["image"].shape[0]
        images, present = batch["image"], batch.get("present")
        if unlabelled is not None:  # one forward pass for both, so DDP sees one graph per step
            images = torch.cat([images, unlabelled["image"]])
            if present is not None and "present" in unlabelled:
                present = torch.cat([present, unlabelled["present"]])
        images = images.to(self.device)
        present = present.to(self.device).float() if present is not None else None
        with autocast(self.device):
            output = model(images, present)
        total, logs = objective(output, batch["label"].to(self.device), present, n_labelled, self.state.step,
                                images=images, forward=self._student_forward(network))
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimiser)
        scaler.update()
        scheduler.step()
        return logs

    def _student_forward(self, network):
        """PASSION's extra passes: the network's ``forward_features`` under the teacher's autocast.

        The bare network, not the DDP wrapper (DDP expects one forward per backward): autograd
        sums each parameter's gradient over all passes before DDP's hook all-reduces it once.
        """
        def forward(images: torch.Tensor, present: torch.Tensor):
            with autocast(self.device):
                return network.forward_features(images, present)
        return forward

    def _passion_epoch_steps(self) -> int | None:
        """Steps per epoch of PASSION's preference schedule: ``training.passion.epoch_steps``,
        by default the steps that show every training case once on average (the authors' epoch)."""
        t = self.card.training
        if not t.missing_rates:
            return None
        return t.passion.epoch_steps or steps_for_epochs(1, len(self.records["train"]), t.batch_size, self.world.size)

    def _validate_and_checkpoint(self, network, optimiser, scheduler, scaler, validation) -> bool:
        stop = False
        if self.world.main:
            if validation is not None:
                stop = self._validate(network, validation)
            else:  # nothing to rank by: the latest weights are the bundle
                self._save_bundle(network, {})
            if self.options.keep_bundles:
                self._keep_bundle(network, self._validated if validation is not None else {})
            save_checkpoint(self.out / "checkpoints", self.state.step, {
                "model": network.state_dict(), "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "objective": self.objective.state_dict(),
                "state": {k: v for k, v in asdict(self.state).items() if k != "history"},
                "history": json.dumps(self.state.history)})
        return distributed.broadcast_flag(self.world, stop)

    def _validate(self, network, validation) -> bool:
        network.eval()
        count = len(validation)
        per_case, means = score_cases(network, self.card, validation, self.device,
                                      on_case=lambda i: self.progress.update(
                                          "validation", self.state.step / self.max_steps, case=f"{i}/{count}"))
        network.train()
        score = mean_dice(means)
        self._log({"event": "validation", "step": self.state.step, "elapsed_s": round(self._elapsed(), 1),
                   "mean_dice": score, **means})
        self.progress.message(f"step {self.state.step}: validation Dice "
                              + ", ".join(f"{t} {d:.3f}" for t, d in means["dice"].items()))
        self._log_gates(network, validation)
        self._validated = {**means, "mean_dice": score, "step": self.state.step, "validation_cases": count}
        improved = score > self.state.best_dice
        if improved:
            self.state.best_dice, self.state.best_step, self.state.stale_validations = score, self.state.step, 0
        else:
            self.state.stale_validations += 1
        if improved or self.options.bundle == "last":
            self._save_bundle(network, self._validated)
        patience = self.card.training.patience
        if patience and self.state.stale_validations >= patience:
            self.progress.message(f"early stop: no better validation Dice in {patience} validations")
            return True
        return False

    def _stop_for_time(self, network) -> None:
        """The time limit has passed (the step is validated): say so, and make sure a bundle exists."""
        self.stopped = "time limit"
        self._log({"event": "stop", "step": self.state.step, "reason": self.stopped,
                   "max_minutes": self.options.max_minutes})
        if not self.world.main:
            return
        if not (self.out / "bundle").is_dir():  # validated, but without a Dice better than none
            self._save_bundle(network, {})
        of = f" of {self.max_steps}" if self.max_steps < UNTIL_TIME_LIMIT else ""
        self.progress.message(f"stopped at step {self.state.step}{of}: the time limit of "
                              f"{self.options.max_minutes:g} min was reached")

    def _log_gates(self, network, validation) -> None:
        """What each gate passes, on the window at the centre of the first validation case: into
        the log (``{"event": "gates", ...}``), with the collapsed ones named on the progress line."""
        core = getattr(network, "module", network)  # DDP wraps the network
        if not isinstance(core, CIMLNet) or not core.gates or not len(validation):
            return
        window = centred_window(np.asarray(validation[0]["image"]), self.card.inference.roi_size)
        diagnostics = gate_diagnostics(core, torch.from_numpy(window)[None].to(self.device))
        self._log({"event": "gates", "step": self.state.step, "gates": [d.to_dict() for d in diagnostics]})
        collapsed = [f"{d.subtask}/{d.auxiliary}@{d.level}" for d in diagnostics if d.collapsed]
        self.progress.message(f"step {self.state.step}: {len(collapsed)} of {len(diagnostics)} gates collapsed"
                              + (f" ({', '.join(collapsed)})" if collapsed else ""))

    def _keep_bundle(self, network, metrics: dict[str, Any]) -> None:
        """``--keep-bundles``: this step's weights as ``bundles/step-N``, its time in the log."""
        self._save_bundle(network, metrics, f"bundles/step-{self.state.step:06d}")
        self._log({"event": "bundle_kept", "step": self.state.step, "elapsed_s": round(self._elapsed(), 1)})

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _time_used(self) -> float:
        return self._elapsed() / (self.options.max_minutes * 60)

    def _save_bundle(self, network, metrics: dict[str, Any], folder: str = "bundle") -> None:
        provenance = {"command": self.options.command, "data": self.options.data, "arch": self.options.arch,
                      "steps": self.state.step, "seed": self.card.training.seed,
                      "train_cases": len(self.records["train"]),
                      "unlabelled_cases": len(self.records["unlabelled"]),
                      "validation_cases": len(self.records["validation"]),
                      "init": self.options.init, "trained": True}
        save_bundle(self.out / folder, network, self.card, self.options.arch, provenance, metrics, overwrite=True)

    def _finish(self, network) -> dict[str, Any]:
        summary = {"steps": self.state.step, "best_mean_dice": self.state.best_dice if self.state.best_dice >= 0 else None,
                   "best_step": self.state.best_step, "bundle": str(self.out / "bundle"), "stopped": self.stopped,
                   "wall_time_s": round(self._elapsed(), 1)}
        if self.world.main:
            if training_curve(self.state.history, self.out / "training-curve.png",
                              f"{self.card.name} ({self.options.arch})") is None:
                self.progress.message("note: matplotlib is not installed: training-curve.png was not drawn "
                                      "(the loss and Dice are in log.jsonl)")
            self.progress.done(**summary)
        return summary

    # -- the run folder ---------------------------------------------------------------------

    def _start_folder(self) -> None:
        if (self.out / "checkpoints").exists() or (self.out / "bundle").exists():
            raise CIMLError(f"{self.out} already holds a run; use --resume to continue it or choose another --out")
        (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        # format_version: the card's format, so that a run resumed by a later ciml is migrated as a bundle is
        config = {"format_version": FORMAT_VERSION, "card": self.card.to_dict(), "run": asdict(self.options),
                  "max_steps": self.max_steps, "records": self.records}
        (self.out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        (self.out / "log.jsonl").write_text("")

    def _restore(self, network, optimiser, scheduler, scaler) -> None:
        ckpt = load_checkpoint(self.out / "checkpoints", self.device)
        network.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        self._objective_state = ckpt.get("objective", {})
        self.state = RunState(**ckpt["state"], history=json.loads(ckpt["history"]))
        restore_random_state(ckpt["random"])
        if self.world.main:  # steps logged after the checkpoint will be run again
            (self.out / "log.jsonl").write_text("".join(json.dumps(h) + "\n" for h in self.state.history))
        self.progress.message(f"resuming {self.out} at step {self.state.step} of {self.max_steps}")

    def _log(self, entry: dict[str, Any]) -> None:
        self.state.history.append(entry)
        if self.world.main:
            with open(self.out / "log.jsonl", "a") as log:
                log.write(json.dumps(entry) + "\n")

