"""PASSION's preference schedule: no update in the warm-up, one per epoch by hand, the step
growing every 100th epoch, saved and restored mid-epoch; and under DDP, its statistics summed
over the processes, so two processes keep one schedule as one process would."""

import os
import subprocess
import sys
from functools import partial

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ciml.config import card_from_dict, preset_dict
from ciml.data.synthetic import write_cases
from ciml.losses.passion_schedule import PreferenceSchedule
from ciml.training.distributed import World, all_reduce_sum


# --- the gradient-wise schedule --------------------------------------------------------------

def _epoch(schedule, first_step, distances):
    for k, d in enumerate(distances):
        schedule.record(torch.tensor([d]), torch.ones(1, len(d), dtype=torch.bool))
        updated = schedule.end_step(first_step + k)
    return updated


def test_no_update_during_the_warm_up_then_one_per_epoch_by_hand():
    s = PreferenceSchedule(2, epoch_steps=2, warmup_epochs=1, rate=0.01)
    assert s.warming_up(1) and not s.warming_up(2)
    assert not _epoch(s, 0, [[0.5, 0.1], [0.5, 0.1]])  # epoch 0 is the warm-up
    assert s.beta.tolist() == [1.0, 1.0] and s.count.sum() == 0  # its statistics are dropped
    assert not _epoch(s, 2, [[0.1, 0.3]])  # step 2 is mid-epoch
    assert s.beta.tolist() == [1.0, 1.0]
    assert _epoch(s, 3, [[0.1, 0.3]])
    # Epoch 1: D = [.1, .3], mean .2, rp = (.2 - D) / .2 = [.5, -.5]; 1 - .01 rp = [.995, 1.005],
    # rescaled to root mean square 1: / sqrt((.995^2 + 1.005^2) / 2) = / 1.0000125.
    torch.testing.assert_close(s.beta, torch.tensor([0.9949876, 1.0049874]))
    assert s.rate.item() == pytest.approx(0.01)  # epoch 1 is no 100-epoch mark


def test_the_step_grows_at_every_100th_epoch():
    s = PreferenceSchedule(2, epoch_steps=1, rate=0.01)
    _epoch(s, 0, [[0.1, 0.3]])  # epoch 0 is a 100-epoch mark: 0.01 * 1.5 before the update
    assert s.rate.item() == pytest.approx(0.015)
    torch.testing.assert_close(s.beta, torch.tensor([0.9924721, 1.0074717]))
    for step in range(1, 100):
        _epoch(s, step, [[0.2, 0.2]])  # equal distances: rp 0, beta unchanged
    assert s.rate.item() == pytest.approx(0.015)
    _epoch(s, 100, [[0.2, 0.2]])
    assert s.rate.item() == pytest.approx(0.0225)
    clipped = PreferenceSchedule(2, epoch_steps=1, rate=10.0)
    _epoch(clipped, 0, [[0.1, 0.3]])  # 1 -/+ 7.5 clipped to [0.1, 4], then rescaled
    torch.testing.assert_close(clipped.beta, torch.tensor([0.0353443, 1.4137718]))


def test_the_schedule_is_saved_and_restored_mid_epoch():
    s = PreferenceSchedule(2, epoch_steps=3, rate=0.01)
    _epoch(s, 0, [[0.1, 0.3], [0.1, 0.3], [0.1, 0.3], [0.2, 0.1]])
    restored = PreferenceSchedule(2, epoch_steps=3, rate=0.01)
    restored.load_state_dict(s.state_dict())
    for x in (s, restored):
        _epoch(x, 4, [[0.3, 0.1], [0.3, 0.1]])
    torch.testing.assert_close(restored.beta, s.beta)
    assert restored.rate.item() == s.rate.item()


# --- DDP: the statistics are summed over the processes -----------------------------------

def _rank_main(rank, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    world = World(rank, 2, rank)
    x = torch.tensor([rank + 1.0, 10.0])
    total = all_reduce_sum(world, x)
    schedule = PreferenceSchedule(2, epoch_steps=1, rate=0.01, reduce=partial(all_reduce_sum, world))
    # Rank 0 sees distances [.1, .2], rank 1 [.1, .4]: the global epoch means are [.1, .3].
    schedule.record(torch.tensor([[0.1, 0.2 if rank == 0 else 0.4]]), torch.ones(1, 2, dtype=torch.bool))
    schedule.end_step(0)
    torch.save({"x": x, "total": total, "beta": schedule.beta}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_all_reduce_sum_is_the_identity_in_one_process():
    x = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(World(), x) is x


def test_two_gloo_processes_share_one_schedule(tmp_path):
    mp.spawn(_rank_main, args=(f"file://{tmp_path}/store", str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for r, saved in enumerate(ranks):
        assert saved["total"].tolist() == [3.0, 20.0] and saved["x"].tolist() == [r + 1.0, 10.0]
        # As one process seeing both samples (see test_the_step_grows_at_every_100th_epoch).
        torch.testing.assert_close(saved["beta"], torch.tensor([0.9924721, 1.0074717]))


def test_ddp_training_keeps_one_schedule_as_one_process(tmp_path):
    """Global batch 2: two gloo processes of batch 1 against one process of batch 2 (CIML without
    the gates' noise), one PASSION epoch per step: the coefficients must be the same."""
    write_cases("shapes", 5, tmp_path / "data", seed=3)
    card = preset_dict("shapes")
    card["network"] = {"features": [4, 8, 16], "gate_bottleneck": False}
    card["inference"] = {"roi_size": [32, 32, 32], "overlap": 0.25}
    card["training"] = {"patch_size": [32, 32, 32], "learning_rate": 0.01, "validation_interval": 3,
                        "passion": {"epoch_steps": 1}}
    common = ["-m", "ciml", "train", "--data", str(tmp_path / "data"), "--max-steps", "3", "--progress", "none",
              "--device", "cpu", "--missing-rates", "cue=0.5,echo=0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for name, batch, launcher in (("one", 2, []), ("two", 1, ["-m", "torch.distributed.run", "--standalone",
                                                              "--nproc_per_node", "2"])):
        card["training"]["batch_size"] = batch
        card_from_dict(card).to_json(tmp_path / f"{name}.json")
        done = subprocess.run([sys.executable, *launcher, *common, "--out", str(tmp_path / name),
                               "--card", str(tmp_path / f"{name}.json")], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)
    beta = [runs[n]["objective"]["passion"]["schedule.beta"] for n in ("one", "two")]
    assert not torch.allclose(beta[0], torch.ones(3))
    # The weights differ by float rounding of the all-reduced gradients, so the distances do a
    # little; a process keeping its own statistics would be off by about the update itself.
    assert (beta[1] - beta[0]).abs().max() < 0.02 * (beta[0] - 1).abs().max()
