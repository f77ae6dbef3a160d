"""The xl.cfg language: loader (lark grammar), value specs, the typed
DomainConfig and libxl's JSON form of it.  Pure: no I/O beyond reading the
file named to `load()`.
"""
from .errors import ConfigError
from .jsonout import to_json
from .loader import Config, parse_file, parse_text
from .model import DomainConfig
from .xlparse import build


def with_overrides(text: str, overrides) -> str:
    """xl appends command-line `key=value` lines after the file's text.

    (xl joins them with no separator when the file lacks a final newline;
    we add one so the last line is not glued to the first override.)
    """
    if not overrides:
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "".join(o + "\n" for o in overrides)


def load(path, overrides=(), ncpus=None):
    """Read, parse and type a config file: (DomainConfig, warnings)."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise ConfigError(f"unable to open configuration file: {e.strerror}",
                          path) from None
    return build(parse_text(with_overrides(text, list(overrides)), path), ncpus)


__all__ = ["ConfigError", "Config", "DomainConfig", "build", "load",
           "parse_file", "parse_text", "to_json", "with_overrides"]
