"""Live orders use the carry-forward product: INTRADAY is refused for strategies that hold
overnight (Dhan squares INTRADAY positions off at 15:20, silently closing a calendar)."""

from __future__ import annotations

import pytest

from engine.config import ConfigError, load

LIVE = {"BROKER": "dhan", "DHAN_CLIENT_ID": "1000000001"}


def test_product_type_defaults_to_margin_for_live_orders() -> None:
    assert load(LIVE).dhan_product_type == "MARGIN"
    assert load({**LIVE, "DHAN_PRODUCT_TYPE": "margin"}).dhan_product_type == "MARGIN"


def test_product_type_intraday_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=r"DHAN_PRODUCT_TYPE='INTRADAY'.*overnight.*MARGIN"):
        load({**LIVE, "DHAN_PRODUCT_TYPE": "INTRADAY"})
    with pytest.raises(ConfigError, match="DHAN_PRODUCT_TYPE"):
        load({**LIVE, "DHAN_PRODUCT_TYPE": "CNC"})
    # paper trading sends no order: the variable is only validated
    assert load({"DHAN_PRODUCT_TYPE": "INTRADAY"}).dhan_product_type == "INTRADAY"
