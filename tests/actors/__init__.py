"""Tests of the actor infrastructure (supervisor, scheduler, messages, clocks)."""
