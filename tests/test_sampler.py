import pytest
import torch

from diffusion_core.sampler import ORDERS, Cancelled, SamplerConfig, denoise

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
    out = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=steps, order=order),
                  generator=torch.Generator().manual_seed(0))
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


def test_refinement_adds_passes_and_keeps_known():
    ids, known, prefs = make_case()
    out = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=3, refine_rounds=2))
    assert out.passes == 5
    assert torch.equal(out.ids[known], ids[known]) and not (out.ids == MASK).any()


def same_logits_everywhere(probabilities: dict[int, float]):
    """Every masked slot sees the same distribution: token -> probability, the rest next to impossible."""
    row = torch.full((V,), -30.0)
    for token, p in probabilities.items():
        row[token] = float(torch.tensor(p).log())

    def forward(ids, positions):
        return row.expand(int(positions.sum()), V).clone()
    return forward


@pytest.mark.parametrize("cfg, allowed", [
    (SamplerConfig(steps=3, temperature=1.5, top_k=3), {2, 3, 4}),        # top-k keeps the three likeliest
    (SamplerConfig(steps=3, temperature=1.0, top_p=0.75), {2, 3}),        # 0.5 + 0.3 reach 0.75: token 4 is cut
    (SamplerConfig(steps=3, temperature=1.0, top_k=4, top_p=0.75), {2, 3}),
])
def test_sampling_draws_every_allowed_token_and_no_other_and_is_seeded(cfg, allowed):
    """Greedy decoding would write token 2 in every slot; sampling must also draw the others it allows."""
    forward = same_logits_everywhere({2: 0.5, 3: 0.3, 4: 0.15, 5: 0.05})
    ids, known, _ = make_case()                                   # 12 slots to fill
    draws = [denoise(forward, ids, known, MASK, cfg, generator=torch.Generator().manual_seed(seed)).ids[~known]
             for seed in range(8)]
    assert set(torch.cat(draws).tolist()) == allowed
    again = denoise(forward, ids, known, MASK, cfg, generator=torch.Generator().manual_seed(3)).ids[~known]
    assert torch.equal(again, draws[3])                           # the same seed, the same draw
    greedy = denoise(forward, ids, known, MASK, SamplerConfig(steps=3)).ids[~known]
    assert set(greedy.tolist()) == {2}


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        SamplerConfig(order="sideways")
    with pytest.raises(ValueError):
        SamplerConfig(steps=0)


def test_settle_fills_decided_slots_without_a_pass():
    """A settle rule that fills everything right of a committed token 0 (a "trailing null")."""
    ids, known, prefs = make_case(B=1)
    prefs[0, 3] = 0                                  # the most confident slot predicts token 0

    def settle(cur, masked):
        zeros = (cur[0] == 0).nonzero()
        filled = torch.zeros_like(masked)
        if len(zeros):
            filled[0, int(zeros[0]):] = masked[0, int(zeros[0]):]
        cur[filled] = 0
        return filled
    plain = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6))
    settled = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6), settle=settle)
    assert plain.passes == 6 and settled.passes == 1  # slot 3 commits first; slots 4..8 follow from it
    assert (settled.ids[0, 3:9] == 0).all() and torch.equal(settled.ids[known], ids[known])
    assert (settled.confidence[0, 4:9] == 1).all()


def test_retire_stops_a_row_and_leaves_its_slots_masked():
    """Row 1 is retired after the second pass: no more passes for it; row 0 still finishes."""
    ids, known, prefs = make_case(B=2)
    calls = []

    def retire(cur, masked, confidence):
        calls.append(masked.sum(1).tolist())
        return torch.tensor([False, len(calls) >= 2])
    seen_rows = []

    def forward(cur, positions):
        seen_rows.append(positions.any(1).tolist())
        return scripted_forward(prefs)(cur, positions)
    plain = denoise(scripted_forward(prefs), ids, known, MASK, SamplerConfig(steps=6))
    out = denoise(forward, ids, known, MASK, SamplerConfig(steps=6), retire=retire)
    assert out.retired.tolist() == [False, True]
    assert torch.equal(out.ids[0], plain.ids[0])                 # the kept row is untouched by the race
    assert (out.ids[1, 3:9] == MASK).sum() == 4                   # two passes committed one slot each
    assert all(not rows[1] for rows in seen_rows[2:])             # the retired row asks nothing more of the model
    assert torch.equal(out.ids[known], ids[known])


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


def mind_changing_forward(calls: list):
    """Slots 3, 4, 5 (surest first): slot 3 prefers 5, unless slot 4 holds 7, when it prefers 6."""
    def forward(ids, positions):
        calls.append(positions.clone())
        B, T = ids.shape
        logits = torch.full((B, T, V), -4.0)
        for b in range(B):
            logits[b, 3, 6 if ids[b, 4] == 7 else 5] = 8.0
            logits[b, 4, 7] = 5.0
            logits[b, 5, 8] = 3.0
        return logits[positions]
    return forward


def three_slots():
    ids = torch.full((1, 8), 2)
    known = torch.ones(1, 8, dtype=torch.bool)
    known[0, 3:6] = False
    ids[~known] = MASK
    return ids, known


def test_revision_remasks_a_committed_token_the_model_turns_against():
    ids, known = three_slots()
    calls = []
    plain = denoise(mind_changing_forward(calls), ids, known, MASK, SamplerConfig(steps=3))
    assert plain.ids[0, 3:6].tolist() == [5, 7, 8] and plain.passes == 3
    assert all(torch.equal(c, c & ~known) for c in calls)  # without revision only masked slots are read
    calls.clear()
    revised = denoise(mind_changing_forward(calls), ids, known, MASK, SamplerConfig(steps=3, revise_below=0.5))
    assert revised.ids[0, 3:6].tolist() == [6, 7, 8]       # slot 3 reconsidered once slot 4 said 7
    assert revised.passes == 4
    assert not any(c[known].any() for c in calls)          # known positions are never read for revision


def test_revision_ends_even_when_the_model_doubts_everything():
    ids, known, prefs = make_case()
    n = int((~known).sum(1).max())

    def contrarian(ids_, positions):  # every committed token looks wrong: the top token is always another
        B, T = ids_.shape
        logits = torch.full((B, T, V), -4.0)
        logits.scatter_(2, ((ids_ + 1) % V).clamp_min(2)[:, :, None], 6.0)
        return logits[positions]
    out = denoise(contrarian, ids, known, MASK, SamplerConfig(steps=6, revise_below=0.9))
    assert not (out.ids == MASK).any() and torch.equal(out.ids[known], ids[known])
    assert out.passes <= 2 * n


def test_revise_below_must_be_a_probability():
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="revise_below"):
            SamplerConfig(revise_below=bad)
