import pytest

from diffusion_core.infer.schedule import SCHEDULES, NoiseSchedule


@pytest.mark.parametrize("name", SCHEDULES)
def test_mask_ratio_runs_from_clean_to_all_masked(name):
    s = NoiseSchedule(name)
    ratios = [s.mask_ratio(t / 20) for t in range(21)]
    assert ratios[0] == 0.0
    assert ratios[-1] == pytest.approx(1.0, abs=2e-3)
    assert all(a <= b for a, b in zip(ratios, ratios[1:]))


@pytest.mark.parametrize("name", SCHEDULES)
def test_loss_weight_is_larger_when_fewer_tokens_are_masked(name):
    s = NoiseSchedule(name)
    assert s.loss_weight(0.1) > s.loss_weight(0.5) > s.loss_weight(1.0) > 0


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("n,steps", [(1, 1), (5, 3), (7, 7), (32, 8), (3, 10)])
def test_masked_after_step_strictly_decreases_to_zero(name, n, steps):
    s = NoiseSchedule(name)
    counts = [n] + [s.masked_after_step(n, k, steps) for k in range(1, steps + 1)]
    assert counts[-1] == 0
    for before, after in zip(counts, counts[1:]):
        assert after < before or before == 0


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        NoiseSchedule("quadratic")


def test_substitution_share_mid_peaks_half_way_and_vanishes_at_both_ends():
    from diffusion_core.infer.schedule import SubstitutionSchedule
    mid = SubstitutionSchedule.parse("mid:0.2")
    assert mid.share(0.0) == mid.share(1.0) == 0.0
    assert mid.share(0.5) == pytest.approx(0.2)
    assert mid.share(0.25) == pytest.approx(mid.share(0.75))
    assert mid.share(0.25) < 0.2
    assert SubstitutionSchedule.parse("constant:0.1").share(0.9) == pytest.approx(0.1)
    assert SubstitutionSchedule.parse("none").share(0.5) == 0.0
    assert str(mid) == "mid:0.2" and str(SubstitutionSchedule()) == "none"


@pytest.mark.parametrize("spec,message", [("uniform:0.1", "unknown substitution"), ("mid:0.7", r"\[0, 0.5\]"),
                                          ("mid", "needs a rate"), ("none:0.1", "needs a rate"),
                                          ("mid:lots", "--substitute 'mid:lots'")])
def test_bad_substitution_specs_are_clear_errors(spec, message):
    from diffusion_core.infer.schedule import SubstitutionSchedule
    with pytest.raises(ValueError, match=message):
        SubstitutionSchedule.parse(spec)
