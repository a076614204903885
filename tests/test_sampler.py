import pytest
import torch

from diffusion_core.infer.sampler import ORDERS, Cancelled, SamplerConfig, denoise

MASK = 1
V = 12


def scripted_forward(preferences: torch.Tensor):
    """A deterministic stand-in network: at (row, pos) it prefers token preferences[row, pos]
    with a confidence that falls with position, so orders are predictable."""
    def forward(ids, positions):
        B, T = ids.shape
        logits = torch.full((B, T, V), -4.0)
        for b in range(B):
            for t in range(T):
                logits[b, t, preferences[b, t]] = 6.0 - 0.3 * t
        return logits[positions]
    return forward


def make_case(B=2, T=10):
    torch.manual_seed(0)
    ids = torch.randint(2, V, (B, T))
    known = torch.ones(B, T, dtype=torch.bool)
    known[:, 3:9] = False
    ids[~known] = MASK
    prefs = torch.randint(2, V, (B, T))
    return ids, known, prefs


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("steps", [1, 2, 6])
def test_fills_every_mask_and_never_touches_known(order, steps):
    ids, known, prefs = make_case()
    out = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=steps, order=order))
    assert not (out.ids == MASK).any()
    assert torch.equal(out.ids[known], ids[known])
    assert out.passes == steps
    assert (out.confidence[known] == 1).all()


def test_left_to_right_commits_in_reading_order():
    ids, known, prefs = make_case(B=1)
    seen = []
    denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6, order="left-to-right"),
            on_step=lambda step, total, cur: seen.append((cur[0] != MASK).clone()))
    for step, filled in enumerate(seen, 1):
        assert filled[3:3 + step].all() and not filled[3 + step:9].any()


def test_threshold_commits_several_slots_per_pass():
    ids, known, prefs = make_case(B=1)
    strict = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6))
    parallel = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6, threshold=0.5))
    assert strict.passes == 6 and parallel.passes < strict.passes
    assert torch.equal(strict.ids, parallel.ids)


def test_cancel_stops_between_steps():
    ids, known, prefs = make_case(B=1)
    calls = []

    def on_step(step, total, cur):
        calls.append(step)
        if step == 2:
            raise Cancelled()
    with pytest.raises(Cancelled):
        denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6), on_step=on_step)
    assert calls == [1, 2]


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        SamplerConfig(order="sideways")
    with pytest.raises(ValueError):
        SamplerConfig(steps=0)


def test_min_commit_lets_a_short_row_finish_at_its_own_pace():
    """A 2-slot row beside a 6-slot row: the schedule alone (6 steps) gives it one slot every few
    passes; a floor of 2 finishes it in the first pass."""
    ids, known, prefs = make_case(B=2)
    known[0, 5:9] = True                                            # row 0: slots 3 and 4 only
    ids[0, 5:9] = 2
    done_at = {}

    def on_step(step, total, cur):
        if not (cur[0, 3:5] == MASK).any():
            done_at.setdefault("row0", step)
    slow = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6), on_step=on_step)
    assert done_at["row0"] > 1 and slow.passes == 6
    done_at.clear()
    fast = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6, min_commit=2), on_step=on_step)
    assert done_at["row0"] == 1 and fast.passes == 3
