"""broker/dhan."""
