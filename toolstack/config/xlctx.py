"""The state of one xl-style parse: the settings, the host facts, the
warnings, and typed reads that turn a bad value into a ConfigError naming
the key and line."""
from __future__ import annotations

from . import values as V
from .errors import ConfigError
from .loader import STRING, Config


class Ctx:
    """One parse: the settings, where to put messages, the host facts."""

    def __init__(self, cfg: Config, ncpus: int):
        self.cfg = cfg
        self.ncpus = ncpus
        self.warnings = []

    def error(self, key, msg):
        s = self.cfg.get(key)
        if s is None:
            return ConfigError(msg, self.cfg.source)
        return ConfigError(msg, self.cfg.source, s.line, s.column)

    def warn(self, key, msg):
        s = self.cfg.get(key)
        where = f"{self.cfg.source}:{s.line}: " if s else f"{self.cfg.source}: "
        self.warnings.append(where + "warning: " + msg)

    def string(self, key):
        return V.get_string(self.cfg, key)

    def long(self, key, lo=V.LONG_MIN, hi=V.LONG_MAX):
        return V.get_long(self.cfg, key, lo, hi)

    def defbool(self, key, obj, attr):
        v = V.get_defbool(self.cfg, key)
        if v is not None:
            setattr(obj, attr, v)
        return v

    def replace_string(self, key, obj, attr):
        v = self.string(key)
        if v is not None:
            setattr(obj, attr, v)
        return v

    def enum(self, key, table, what=None):
        """libxl_<enum>_from_string: case-insensitive; None when unset."""
        v = self.string(key)
        if v is None:
            return None
        name = v.lower()
        if name not in table:
            raise self.error(key, f"invalid value \"{v}\" for \"{what or key}\"")
        return name

    def number_or_enum(self, key, table):
        """Keys that once took an integer (tsc_mode, timer_mode, altp2m)."""
        s = self.cfg.get(key)
        if s is None:
            return None
        if s.value.kind == STRING and V.strtol(s.value.data) is not None:
            n = self.long(key)
            if not 0 <= n < len(table):
                raise self.error(key, f"invalid value {n} for \"{key}\"")
            if key != "altp2m":
                self.warn(key, f"specifying \"{key}\" as an integer is deprecated, "
                               f"use {key}=\"{table[n]}\"")
            return table[n]
        return self.enum(key, table)

def prefix_of(buf, word):
    # xl compares with strncmp(buf, word, strlen(buf)): any prefix matches.
    return word.startswith(buf)
