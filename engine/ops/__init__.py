"""Live operations around the broker: preflights run daily, broker-side backstops, the
single-instance lock and the engine's metrics."""
