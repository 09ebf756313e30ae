"""Market events: the seed file, official-source adapters, the store, the entry guard.

* :mod:`engine.events.model` — :class:`MarketEvent` (frozen) and the kinds/impacts.
* :mod:`engine.events.seed` — the operator-maintained ``data/market_events_seed.json``.
* :mod:`engine.events.nse`, :mod:`engine.events.mospi`, :mod:`engine.events.oea` — one adapter
  per official source: a fetch (requests, timeouts) plus a pure parser.
* :mod:`engine.events.store` — upsert into ``market_events`` and :func:`events_between`.
* :mod:`engine.events.fetch` — the ``make fetch-events`` job (seed first, then adapters).
* :mod:`engine.events.guard` — the pure entry guard every option strategy applies.
* :mod:`engine.events.why` — "why is STRATEGY not entering now?".
"""
