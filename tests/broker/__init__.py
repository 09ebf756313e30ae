"""Tests of the Dhan client, instrument master, token helpers and simulator."""
