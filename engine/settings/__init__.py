"""Runtime settings: a registry of knobs, overrides in bot_settings, audit in settings_audit."""

from engine.settings.registry import Knob, SettingError, all_knobs, knob, register
from engine.settings.store import Settings

__all__ = ["Knob", "SettingError", "Settings", "all_knobs", "knob", "register"]
