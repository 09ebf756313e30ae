"""Known answers of the structure-value model MDC scores with (engine.strategies.structure_value).

Surfaces are built from a stated process and priced to the 0.05 tick; "flat" means one IV per
trading year in both expiries (no richness, no smile). Tolerance for "zero edge": 0.03 % of
the debit (quadrature, fit and tick rounding; measured ≤ 0.016 %).
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from engine.market.pricing import black76_price
from engine.strategies import structure_value as sv

R = 0.065
F = 23400.0
NEAR, FAR = date(2025, 2, 6), date(2025, 2, 13)
TN_CAL, TN_TR = 3 / 365, 3 / 252         # Monday close to the Thursday expiry: 3 sessions
TF_CAL, TF_TR = 10 / 365, 8 / 252        # the next weekly: 8 sessions
TAU_EXIT = 2 / 252                       # exit at the Wednesday close: 1 session left
STRIKES = np.arange(21000.0, 26001.0, 50.0)
ZERO_TOL_PCT = 0.03


def _tick(x: np.ndarray) -> np.ndarray:
    p = np.round(np.asarray(x) / 0.05) * 0.05
    return np.where(p > 0, p, np.nan)


def _flat_quotes(expiry: date, t_cal: float, t_tr: float, iv_trading: float, fwd: float = F
                 ) -> sv.ExpiryQuotes:
    iv_cal = iv_trading * math.sqrt(t_tr / t_cal)   # the same total variance
    c = black76_price(fwd, STRIKES, t_cal, iv_cal, True, R)
    p = black76_price(fwd, STRIKES, t_cal, iv_cal, False, R)
    return sv.ExpiryQuotes(expiry=expiry, forward=fwd, t=t_cal, t_trading=t_tr, strikes=STRIKES,
                           call_mid=_tick(c), put_mid=_tick(p))


def _regime_quotes(expiry: date, t_cal: float, t_tr: float, p, sig_trading, a_near, fwd: float = F
                   ) -> sv.ExpiryQuotes:
    """Prices from one regime process: world i has vol sig_i per trading year and its expected
    terminal drifts linearly in trading time to a_i at the near expiry (and on beyond)."""
    p = np.asarray(p, float)
    share = t_tr / TN_TR
    a = 1.0 + share * (np.asarray(a_near, float) - 1.0)
    mix = sv.LognormalMixture(p=p, a=a / float(p @ a), v=np.asarray(sig_trading, float) ** 2 * t_tr)
    df = math.exp(-R * t_cal)
    c = df * mix.price(fwd, STRIKES, np.ones(STRIKES.size, bool))
    pp = df * mix.price(fwd, STRIKES, np.zeros(STRIKES.size, bool))
    return sv.ExpiryQuotes(expiry=expiry, forward=fwd, t=t_cal, t_trading=t_tr, strikes=STRIKES,
                           call_mid=_tick(c), put_mid=_tick(pp))


def _std_smile_quotes(expiry: date, t_cal: float, t_tr: float, fwd: float = F) -> sv.ExpiryQuotes:
    """A trader's smile-only surface: the same smile in standardized moneyness k/(σ√τ) and
    the same 14 % ATM per trading year in both expiries."""
    z = np.log(STRIKES / fwd) / (0.14 * math.sqrt(t_tr))
    iv_tr = 0.14 * (1 - 0.04 * z + 0.025 * z * z)
    iv_cal = iv_tr * math.sqrt(t_tr / t_cal)
    c = black76_price(fwd, STRIKES, t_cal, iv_cal, True, R)
    p = black76_price(fwd, STRIKES, t_cal, iv_cal, False, R)
    return sv.ExpiryQuotes(expiry=expiry, forward=fwd, t=t_cal, t_trading=t_tr, strikes=STRIKES,
                           call_mid=_tick(c), put_mid=_tick(p))


def _mid(q: sv.ExpiryQuotes, k: float, kind: str) -> float:
    i = int(np.searchsorted(q.strikes, k))
    return float((q.call_mid if kind == "CE" else q.put_mid)[i])


def _variants(near: sv.ExpiryQuotes, far: sv.ExpiryQuotes, sd: float) -> dict[str, list[sv.LegSpec]]:
    """ATM, ±1 SD, ±1.5 SD double calendars and a DD (near ±1 SD, far ±1.5 SD), 75 units."""
    out = {}
    for code, near_sd, far_sd in (("ATM", 0, 0), ("1SD", 1, 1), ("15SD", 1.5, 1.5), ("DD", 1, 1.5)):
        kc, kp = (round((F + near_sd * sd) / 50) * 50, round((F - near_sd * sd) / 50) * 50)
        fc, fp = (round((F + far_sd * sd) / 50) * 50, round((F - far_sd * sd) / 50) * 50)
        legs = []
        for q, side, (c_k, p_k) in ((far, "BUY", (fc, fp)), (near, "SELL", (kc, kp))):
            for k, kind in ((c_k, "CE"), (p_k, "PE")):
                m = _mid(q, k, kind)
                legs.append(sv.LegSpec(strike=k, option_type=kind, expiry=q.expiry, side=side,
                                       units=75, entry_price=m, mid=m))
        out[code] = legs
    return out


SD = F * 0.14 * math.sqrt(TN_TR)   # one near expected move, points


def test_flat_surface_without_richness_gives_every_variant_zero_edge() -> None:
    near = _flat_quotes(NEAR, TN_CAL, TN_TR, 0.14)
    far = _flat_quotes(FAR, TF_CAL, TF_TR, 0.14, fwd=F * 1.0005)
    surf = sv.fit_surface(near, [far], rate=R)
    assert surf.mixture.components == 1            # a flat smile is one lognormal
    assert abs(surf.richness(FAR)[0]) < 0.01
    fired = []
    for code, legs in _variants(near, far, SD).items():
        debit = sum(x.sign * x.units * x.mid_price for x in legs)
        for iv_model in sv.IV_MODELS:
            v = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, iv_model=iv_model, debit=debit)
            assert abs(v.edge_before_pct) < ZERO_TOL_PCT, (code, iv_model, v.edge_before_pct)
        # the target/stop/breakeven path cannot create edge either (the marks are martingales)
        rule = sv.ExitRule(target_value=debit * 1.08, stop_value=debit * 0.85,
                           spot_band=(F - 1.6 * SD, F + 1.6 * SD))
        v = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit, exits=rule)
        assert abs(v.edge_before_pct) < ZERO_TOL_PCT, (code, "path", v.edge_before_pct)
        assert v.prob_stop > 0 and v.prob_target + v.prob_stop <= 1 + 1e-9
        fired.append(v.prob_target)
        # with costs: exactly the costs lost
        c = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit, charges=218.0, spread=150.0)
        assert c.edge_after_costs == pytest.approx(c.edge_before_costs - 368.0)
    assert max(fired) > 0.3       # the target does fire on some paths


def test_rich_front_gives_positive_edge_matching_the_closed_form_and_shrinking_with_costs() -> None:
    near = _flat_quotes(NEAR, TN_CAL, TN_TR, 0.16)      # near raised 2 vol points (trading time)
    far = _flat_quotes(FAR, TF_CAL, TF_TR, 0.14, fwd=F * 1.0005)
    surf = sv.fit_surface(near, [far], rate=R)
    assert surf.richness(FAR)[0] == pytest.approx(2.0, abs=0.02)
    for code, legs in _variants(near, far, SD).items():
        debit = sum(x.sign * x.units * x.mid_price for x in legs)
        v = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit)
        # closed form: the near legs are worth their price on average; each far leg's exit
        # value averages to Black-76 with the near's variance to the exit plus the far's after
        w_exit = 0.16 ** 2 * TAU_EXIT + 0.14 ** 2 * (TF_TR - TAU_EXIT)
        hand = sum(x.sign * x.units * math.exp(-R * TF_CAL) * float(
            black76_price(far.forward, x.strike, 1.0, math.sqrt(w_exit), x.is_call)
            - black76_price(far.forward, x.strike, 1.0, 0.14 * math.sqrt(TF_TR), x.is_call))
                   for x in legs if x.expiry == FAR)
        assert v.edge_before_costs == pytest.approx(hand, abs=0.001 * debit), code
        assert v.edge_before_pct > 5.0, code
        assert all(abs(e) < 0.01 * debit / 100 for e, x in zip(v.leg_edges, legs, strict=True)
                   if x.expiry == NEAR)                  # the near legs carry no edge
        after = [sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit, charges=c,
                                    spread=c / 2).edge_after_pct for c in (0.0, 200.0, 400.0, 800.0)]
        assert after[0] == pytest.approx(v.edge_before_pct)
        assert after == sorted(after, reverse=True) and after[-1] < after[0] - 10.0


@pytest.mark.parametrize("surface", ["regime_process", "std_moneyness_smile"])
def test_smile_only_surface_edge_does_not_rise_with_width(surface: str) -> None:
    if surface == "regime_process":   # a skewed three-world process, no richness in any world
        args = ([0.7, 0.28, 0.02], [0.11, 0.18, 0.45], [1.003, 0.995, 0.97])
        near = _regime_quotes(NEAR, TN_CAL, TN_TR, *args)
        far = _regime_quotes(FAR, TF_CAL, TF_TR, *args, fwd=F * 1.0005)
        tol = 0.1
    else:
        near = _std_smile_quotes(NEAR, TN_CAL, TN_TR)
        far = _std_smile_quotes(FAR, TF_CAL, TF_TR, fwd=F * 1.0005)
        tol = 0.25
    surf = sv.fit_surface(near, [far], rate=R)
    assert surf.mixture.components >= 2 and surf.mixture.rms_vol < 0.1
    model, naive = {}, {}
    for code, legs in _variants(near, far, SD).items():
        debit = sum(x.sign * x.units * x.mid_price for x in legs)
        v = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit)
        model[code] = v.edge_before_pct
        assert sum(abs(e) for e, x in zip(v.leg_edges, legs, strict=True) if x.expiry == NEAR) < 1.0
        naive[code] = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit,
                                         distribution="flat_atm").edge_before_pct
        if surface == "regime_process":   # the exit path keeps it at zero too
            rule = sv.ExitRule(target_value=debit * 1.1, stop_value=debit * 0.8)
            p = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit, exits=rule)
            assert abs(p.edge_before_pct) < tol, (code, p.edge_before_pct)
    widths = [model[c] for c in ("ATM", "1SD", "15SD")]
    assert all(abs(e) < tol for e in model.values()), model
    assert max(widths) - min(widths) < tol
    # the naive flat-ATM lognormal, scored at market, makes the wider variants win by construction
    assert naive["ATM"] < naive["1SD"] < naive["15SD"] and naive["15SD"] - naive["ATM"] > 3.0, naive


def test_sticky_moneyness_far_smile_favours_narrow_structures_and_regime_does_not() -> None:
    """The stated reason the default far-IV model is ``regime``: on the regime-process
    surface, holding today's far smile fixed in K/F lifts a held strike's IV on any move."""
    args = ([0.7, 0.3], [0.11, 0.20], [1.0, 1.0])
    near = _regime_quotes(NEAR, TN_CAL, TN_TR, *args)
    far = _regime_quotes(FAR, TF_CAL, TF_TR, *args, fwd=F * 1.0005)
    surf = sv.fit_surface(near, [far], rate=R)
    legs = _variants(near, far, SD)["ATM"]
    debit = sum(x.sign * x.units * x.mid_price for x in legs)
    regime = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit).edge_before_pct
    sticky = sv.value_structure(legs, surf, tau_exit=TAU_EXIT, debit=debit,
                                iv_model="sticky_moneyness").edge_before_pct
    assert abs(regime) < ZERO_TOL_PCT and sticky > 1.5


def test_mixture_fit_recovers_the_process_it_was_priced_from() -> None:
    q = _regime_quotes(NEAR, TN_CAL, TN_TR, [0.7, 0.28, 0.02], [0.11, 0.18, 0.45], [1.003, 0.995, 0.97])
    mix = sv.fit_mixture(q, R)
    assert mix.rms_vol < 0.05 and mix.components == 3
    order = np.argsort(mix.v)
    assert np.sqrt(mix.v[order] / TN_TR) == pytest.approx([0.11, 0.18, 0.45], rel=0.05)
    assert mix.p[order] == pytest.approx([0.7, 0.28, 0.02], abs=0.03)


def test_bad_inputs_are_refused_with_the_reason() -> None:
    near = _flat_quotes(NEAR, TN_CAL, TN_TR, 0.14)
    far = _flat_quotes(FAR, TF_CAL, TF_TR, 0.14)
    surf = sv.fit_surface(near, [far], rate=R)
    legs = _variants(near, far, SD)["ATM"]
    with pytest.raises(ValueError, match="must be before the near expiry"):
        sv.value_structure(legs, surf, tau_exit=TN_TR)
    other = sv.LegSpec(strike=23400, option_type="CE", expiry=date(2025, 2, 27), side="BUY",
                       units=75, entry_price=300.0)
    with pytest.raises(ValueError, match="expiry not in the surface"):
        sv.value_structure([other], surf, tau_exit=TAU_EXIT)
    with pytest.raises(ValueError, match="iv_model must be one of"):
        sv.value_structure(legs, surf, tau_exit=TAU_EXIT, iv_model="sticky_delta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="side must be BUY or SELL"):
        sv.LegSpec(strike=23400, option_type="CE", expiry=NEAR, side="LONG", units=75, entry_price=1)
    with pytest.raises(ValueError, match="units must be a positive int"):
        sv.LegSpec(strike=23400, option_type="CE", expiry=NEAR, side="BUY", units=0, entry_price=1)
    with pytest.raises(ValueError, match="not after the near expiry"):
        sv.fit_surface(far, [near])
    with pytest.raises(ValueError, match=r"target_value .* must be above stop_value"):
        sv.ExitRule(target_value=1.0, stop_value=2.0)
    empty = sv.ExpiryQuotes(expiry=NEAR, forward=F, t=TN_CAL, t_trading=TN_TR, strikes=STRIKES,
                            call_mid=np.full(STRIKES.size, np.nan), put_mid=np.full(STRIKES.size, np.nan))
    with pytest.raises(ValueError, match="usable OTM quote"):
        sv.fit_mixture(empty)


# ---------------------------------------------------------------------------- numerics
def test_fit_jacobians_are_the_derivatives_of_the_residuals() -> None:
    """The fits' analytic Jacobians (mixture weights' logits, log multipliers, log variances;
    the far regimes with the weights held) against central differences."""
    q = _regime_quotes(NEAR, TN_CAL, TN_TR, [0.7, 0.28, 0.02], [0.11, 0.18, 0.45], [1.003, 0.995, 0.97])
    pts = sv._otm_points(q, R)
    fit = sv._MixtureFit(pts, q.forward)
    v_atm = float(np.interp(0.0, pts.k, pts.w))
    p_held, a_raw = np.array([0.6, 0.3, 0.1]), np.array([1.002, 0.999, 0.985])
    held = sv.LognormalMixture(p=p_held, a=a_raw / float(p_held @ a_raw), v=[0.0003, 0.0006, 0.002])
    cases = [(lambda x: fit.eval(*sv._mixture_arrays(x, 1, v_atm), logits=True), [0.1]),
             (lambda x: fit.eval(*sv._mixture_arrays(x, 2, v_atm), logits=True), [-0.8, 0.02, -0.3, 0.6]),
             (lambda x: fit.eval(*sv._mixture_arrays(x, 3, v_atm), logits=True),
              [-0.4, -1.9, -0.01, -0.03, -0.6, 0.01, 0.7]),
             (lambda x: fit.eval(held.p, held.a * np.exp(np.r_[0.0, x[:2]]) / float(
                 held.p @ (held.a * np.exp(np.r_[0.0, x[:2]]))), held.v * np.exp(x[2:]), logits=False),
              [0.01, -0.02, 0.1, -0.2, 0.3])]
    for fun, x0 in cases:
        x0 = np.asarray(x0, float)
        _r, jac = fun(x0)
        num = np.empty_like(jac)
        for j in range(x0.size):
            e = np.zeros_like(x0)
            e[j] = 1e-6
            num[:, j] = (fun(x0 + e)[0] - fun(x0 - e)[0]) / 2e-6
        assert jac == pytest.approx(num, rel=1e-4, abs=1e-6 * float(np.abs(num).max()))


def test_scoring_many_structures_at_once_equals_one_at_a_time() -> None:
    args = ([0.7, 0.28, 0.02], [0.12, 0.18, 0.45], [1.003, 0.995, 0.97])
    near = _regime_quotes(NEAR, TN_CAL, TN_TR, *args)
    far = _regime_quotes(FAR, TF_CAL, TF_TR, [0.7, 0.28, 0.02], [0.11, 0.17, 0.42], [1.003, 0.995, 0.97],
                         fwd=F * 1.0005)
    surf = sv.fit_surface(near, [far], rate=R)
    items = []
    for i, legs in enumerate(_variants(near, far, SD).values()):
        debit = sum(x.sign * x.units * x.mid_price for x in legs)
        rule = None if i == 1 else sv.ExitRule(target_value=debit * 1.1, stop_value=debit * 0.8,
                                               spot_band=(F - 2 * SD, F + (1.5 + i / 4) * SD))
        items.append(sv.StructureToValue(legs=legs, charges=200.0 + i, spread=50.0 * i, debit=debit + 100,
                                         exits=rule))
    for iv_model in sv.IV_MODELS:
        batch = sv.value_structures(items, surf, tau_exit=TAU_EXIT, iv_model=iv_model)
        for it, got in zip(items, batch, strict=True):
            one = sv.value_structure(it.legs, surf, tau_exit=TAU_EXIT, charges=it.charges, spread=it.spread,
                                     debit=it.debit, exits=it.exits, iv_model=iv_model)
            for name in ("expected_exit_value", "terminal_value", "edge_after_costs", "prob_profit",
                         "prob_target", "prob_stop"):
                assert getattr(got, name) == pytest.approx(getattr(one, name), rel=1e-9, abs=1e-9), name
            assert got.leg_edges == pytest.approx(one.leg_edges, rel=1e-9, abs=1e-9)
            for b_got, b_one in zip(got.breakevens, one.breakevens, strict=True):
                assert (b_got is None and b_one is None) or b_got == pytest.approx(b_one, rel=1e-9)
    other = sv.LegSpec(strike=23400, option_type="CE", expiry=date(2025, 2, 27), side="BUY",
                       units=75, entry_price=300.0)
    with pytest.raises(ValueError, match="expiry not in the surface"):   # any bad one: refused whole
        sv.value_structures([items[0], sv.StructureToValue(legs=[*items[1].legs, other])], surf,
                            tau_exit=TAU_EXIT)
    assert "expiry not in the surface" in sv.structure_problem([other], surf, TAU_EXIT)
    assert sv.structure_problem(items[0].legs, surf, TAU_EXIT) is None


@pytest.mark.parametrize("surface", ["rich_flat", "regime_process"])
def test_exit_path_is_converged_at_the_default_grid(surface: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each regime's own grid, hit sets resolved inside the cells: the default resolution
    scores within 0.05 % of the debit (probabilities within 0.005) of a four times finer one."""
    if surface == "rich_flat":
        near = _flat_quotes(NEAR, TN_CAL, TN_TR, 0.16)
        far = _flat_quotes(FAR, TF_CAL, TF_TR, 0.14, fwd=F * 1.0005)
    else:
        args = ([0.7, 0.28, 0.02], [0.13, 0.2, 0.5], [1.003, 0.995, 0.97])
        near = _regime_quotes(NEAR, TN_CAL, TN_TR, *args)
        far = _regime_quotes(FAR, TF_CAL, TF_TR, [0.7, 0.28, 0.02], [0.11, 0.18, 0.45], [1.003, 0.995, 0.97],
                             fwd=F * 1.0005)
    surf = sv.fit_surface(near, [far], rate=R)
    items = []
    for legs in _variants(near, far, SD).values():
        debit = sum(x.sign * x.units * x.mid_price for x in legs)
        items.append(sv.StructureToValue(legs=legs, debit=debit, exits=sv.ExitRule(
            target_value=debit * 1.12, stop_value=debit * 0.85, spot_band=(F - 1.4 * SD, F + 1.4 * SD))))
    default = sv.value_structures(items, surf, tau_exit=TAU_EXIT)
    monkeypatch.setattr(sv, "_PATH_RES", 4 * sv._PATH_RES)
    fine = sv.value_structures(items, surf, tau_exit=TAU_EXIT)
    fired = 0.0
    for a, b in zip(default, fine, strict=True):
        assert abs(a.edge_before_pct - b.edge_before_pct) < 0.05, (a.edge_before_pct, b.edge_before_pct)
        assert abs(a.prob_target - b.prob_target) < 0.005 and abs(a.prob_stop - b.prob_stop) < 0.005
        fired = max(fired, a.prob_target)
    assert fired > 0.2      # the rules do fire: the test exercises the hit sets
