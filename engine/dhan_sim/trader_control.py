"""Trader's Control and static-IP endpoints of the Dhan simulator, with Dhan's preconditions.

* ``POST /killswitch?killSwitchStatus=ACTIVATE|DEACTIVATE`` (no body) and ``GET /killswitch``.
  Dhan activates the kill switch only when the account has **no open position and no pending
  order** (SKILL: "All positions must be closed first"); the refusal here is a 400 DH-906
  naming what is still open (⚠ the exact wire text of Dhan's refusal is not documented).
  While active every new order is refused (``handlers._order_gate``).
* ``POST /pnlExit`` ``{profitValue, lossValue, productType: [...], enableKillSwitch}``,
  ``GET /pnlExit``, ``DELETE /pnlExit`` (dhan-rs ``traders_control``, the official SDK's
  ``set_pnl_exit``). While active, the account's P&L of the day (realised + unrealised over
  its positions) reaching ``-lossValue`` or ``+profitValue`` squares every position off at
  the market (orders ``placed_by="PNL_EXIT"``), then activates the kill switch when asked.
* ``GET /ip/getIP``, ``POST /ip/setIP``, ``PUT /ip/modifyIP`` ``{dhanClientId, ip, ipFlag}``
  (reference §7). The primary and secondary IPs are the account's whitelist: orders from any
  other address are refused with DH-911. Errors come as an array ``[{message, status:
  "ERROR"}]`` with HTTP 200, as measured.
* ``GET /ip-echo``: the caller's address as plain text (an ipify-like echo service for the
  engine's egress-IP check in rehearsals).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from engine.dhan_sim.handlers import Reply, Request, input_error, order_error
from engine.timeutil import IST

if TYPE_CHECKING:
    from engine.dhan_sim.auth import Account
    from engine.dhan_sim.simulator import DhanSimulator

OPEN_STATES = ("TRANSIT", "PENDING", "PART_TRADED")
PNL_PRODUCTS = ("INTRADAY", "DELIVERY")


def _open_exposure(sim: DhanSimulator, acct: Account) -> tuple[int, int]:
    """(open positions, pending orders) of the account."""
    positions = sum(1 for (cid, _, _), pos in sim.exchange.positions.items()
                    if cid == acct.client_id and pos.net != 0)
    pending = sum(1 for o in sim.exchange.client_orders(acct.client_id)
                  if o.status in OPEN_STATES)
    return positions, pending


def kill_switch(sim: DhanSimulator, req: Request) -> Reply:
    """``POST /killswitch?killSwitchStatus=ACTIVATE|DEACTIVATE`` (no body)."""
    acct = req.account
    assert acct is not None
    action = str(req.query.get("killSwitchStatus", "")).upper()
    if action not in ("ACTIVATE", "DEACTIVATE"):
        return input_error()
    if action == "ACTIVATE":
        positions, pending = _open_exposure(sim, acct)
        if positions or pending:
            return order_error(
                f"Kill Switch cannot be activated: {positions} open position(s) and {pending} "
                "pending order(s). Exit all positions and cancel pending orders first")
    acct.kill_switch = action == "ACTIVATE"
    word = "activated" if acct.kill_switch else "deactivated"
    return Reply(200, {"dhanClientId": acct.client_id,
                       "killSwitchStatus": f"Kill Switch has been successfully {word}"})


def kill_switch_status(sim: DhanSimulator, req: Request) -> Reply:
    """``GET /killswitch``: ``ACTIVATE`` or ``DEACTIVATE``."""
    acct = req.account
    assert acct is not None
    return Reply(200, {"dhanClientId": acct.client_id,
                       "killSwitchStatus": "ACTIVATE" if acct.kill_switch else "DEACTIVATE"})


# ------------------------------------------------------------------------ P&L based exit
def _amount(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() and out > 0 else None


def set_pnl_exit(sim: DhanSimulator, req: Request) -> Reply:
    """``POST /pnlExit``: configure the day's P&L-based exit."""
    acct = req.account
    assert acct is not None
    body = req.body if isinstance(req.body, dict) else {}
    profit, loss = _amount(body.get("profitValue")), _amount(body.get("lossValue"))
    products = body.get("productType")
    if (profit is None or loss is None or not isinstance(products, list) or not products
            or any(p not in PNL_PRODUCTS for p in products)):
        return input_error()
    acct.pnl_exit = {"profit": profit, "loss": loss, "products": list(products),
                     "kill_switch": bool(body.get("enableKillSwitch")),
                     "set_at": datetime.now(IST).isoformat(timespec="seconds")}
    return Reply(200, {"pnlExitStatus": "ACTIVE",
                       "message": "P&L based exit has been configured successfully"})


def get_pnl_exit(sim: DhanSimulator, req: Request) -> Reply:
    acct = req.account
    assert acct is not None
    cfg = acct.pnl_exit
    if cfg is None:
        return Reply(200, {"pnlExitStatus": "DISABLED"})
    return Reply(200, {"pnlExitStatus": "ACTIVE", "profit": str(cfg["profit"]),
                       "loss": str(cfg["loss"]), "productType": list(cfg["products"]),
                       "enableKillSwitch": cfg["kill_switch"]})


def stop_pnl_exit(sim: DhanSimulator, req: Request) -> Reply:
    acct = req.account
    assert acct is not None
    acct.pnl_exit = None
    return Reply(200, {"pnlExitStatus": "DISABLED",
                       "message": "P&L based exit has been stopped successfully"})


def day_pnl(sim: DhanSimulator, client_id: str) -> float:
    """Realised + unrealised P&L of the account's positions (``GET /positions``)."""
    return sum(float(r["realizedProfit"]) + float(r["unrealizedProfit"])
               for r in sim.exchange.position_rows(client_id))


def check_pnl_exits(sim: DhanSimulator) -> list[str]:
    """Square off every account whose P&L exit triggered; returns their client ids."""
    hit = []
    for acct in list(sim.authority.accounts.values()):
        cfg = acct.pnl_exit
        if cfg is None or not any(p.net != 0 for (cid, _, _), p in sim.exchange.positions.items()
                                  if cid == acct.client_id):
            continue
        pnl = Decimal(str(round(day_pnl(sim, acct.client_id), 2)))
        if -pnl < cfg["loss"] and pnl < cfg["profit"]:
            continue
        sim.exchange.square_off(client_id=acct.client_id, by="PNL_EXIT")
        acct.pnl_exit = {**cfg, "triggered_at": datetime.now(IST).isoformat(timespec="seconds"),
                         "triggered_pnl": str(pnl)}
        if cfg["kill_switch"]:
            acct.kill_switch_pending = True
        hit.append(acct.client_id)
    for acct in sim.authority.accounts.values():  # the kill switch once the exits filled
        if getattr(acct, "kill_switch_pending", False) and _open_exposure(sim, acct) == (0, 0):
            acct.kill_switch, acct.kill_switch_pending = True, False
    return hit


# ----------------------------------------------------------------------------- static IP
def _ip_error(message: str) -> Reply:
    return Reply(200, [{"message": message, "status": "ERROR"}])


def get_ip(sim: DhanSimulator, req: Request) -> Reply:
    """``GET /ip/getIP``."""
    acct = req.account
    assert acct is not None
    if not acct.primary_ip and not acct.secondary_ip:
        return _ip_error("No static IP is set for this account")
    return Reply(200, {"primaryIP": acct.primary_ip or "", "secondaryIP": acct.secondary_ip or "",
                       "modifyDatePrimary": acct.ip_modified.get("PRIMARY", ""),
                       "modifyDateSecondary": acct.ip_modified.get("SECONDARY", "")})


def set_ip(sim: DhanSimulator, req: Request) -> Reply:
    """``POST /ip/setIP`` and ``PUT /ip/modifyIP``: ``{dhanClientId, ip, ipFlag}``."""
    acct = req.account
    assert acct is not None
    body = req.body if isinstance(req.body, dict) else {}
    flag = str(body.get("ipFlag", "")).upper()
    try:
        ip = str(ipaddress.ip_address(str(body.get("ip", "")).strip()))
    except ValueError:
        return _ip_error("Invalid IP address")
    if flag not in ("PRIMARY", "SECONDARY"):
        return _ip_error("ipFlag must be PRIMARY or SECONDARY")
    current = acct.primary_ip if flag == "PRIMARY" else acct.secondary_ip
    if req.method == "POST" and current:
        return _ip_error(f"{flag} IP is already set; use modifyIP")
    if req.method == "PUT" and not current:
        return _ip_error(f"no {flag} IP to modify; use setIP")
    sim.set_static_ip(acct.client_id, ip, flag)
    return Reply(200, {"message": "IP saved successfully", "status": "SUCCESS"})


def ip_echo(sim: DhanSimulator, req: Request) -> Reply:
    """``GET /ip-echo``: the caller's address, plain text."""
    return Reply(200, raw=req.client_ip.encode(), content_type="text/plain")
