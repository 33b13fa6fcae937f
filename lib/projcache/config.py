"""Settings: one frozen object, read from defaults, an optional TOML file and the environment.

Precedence, lowest first: built-in defaults, the TOML file, environment
variables, then keyword overrides given to :func:`load_settings`.

=================  ===========================  =========  ====================================
TOML key           environment variable         default    allowed values
=================  ===========================  =========  ====================================
dir                PROJCACHE_DIR                user dir   a directory path
map_size           PROJCACHE_MAP_SIZE           8MiB       size >= 64KiB (bytes, KiB, MiB, GiB)
max_map_size       PROJCACHE_MAX_MAP_SIZE       16GiB      size >= map_size
durability         PROJCACHE_DURABILITY         full       full, no-metasync, none
ttl                PROJCACHE_TTL                6h         duration > 0 (seconds, s, m, h, d)
enabled            PROJCACHE_ENABLED            true       true/false, 1/0, yes/no, on/off
collections        PROJCACHE_COLLECTIONS        see below  folders holding collections
project_roots      PROJCACHE_PROJECT_ROOTS      none       folders searched for projects
scan_depth         PROJCACHE_SCAN_DEPTH         4          integer 0..32
max_file_size      PROJCACHE_MAX_FILE_SIZE      16MiB      size >= 1KiB
max_artifact_size  PROJCACHE_MAX_ARTIFACT_SIZE  64MiB      size >= 1KiB
max_manifest_size  PROJCACHE_MAX_MANIFEST_SIZE  256MiB     size >= 1KiB
auto_repair        PROJCACHE_AUTO_REPAIR        false      true/false, 1/0, yes/no, on/off
=================  ===========================  =========  ====================================

``collections`` defaults to ``~/.skillmeat/collections``.  Folder lists are a
TOML array of strings, or in the environment separated by ``os.pathsep``
(``:``).

The file is ``$PROJCACHE_CONFIG`` if set (it must then exist), else
``$XDG_CONFIG_HOME/projcache/config.toml`` (``~/.config/projcache/config.toml``)
when present.  Keys may sit at the top level or in a ``[cache]`` table.
``SKILLMEAT_ENABLE_CACHE=false`` also disables the cache, for hosts that set it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = ["DURABILITY_MODES", "Settings", "default_cache_dir", "load_settings"]

DURABILITY_MODES = ("full", "no-metasync", "none")
_MIN_MAP = 64 * 1024
_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE_UNITS.update({"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4})
_SIZE_UNITS.update({"kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4})
_TIME_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# key -> environment variable, in documentation order.
ENV_VARS = {
    "dir": "PROJCACHE_DIR",
    "map_size": "PROJCACHE_MAP_SIZE",
    "max_map_size": "PROJCACHE_MAX_MAP_SIZE",
    "durability": "PROJCACHE_DURABILITY",
    "ttl": "PROJCACHE_TTL",
    "enabled": "PROJCACHE_ENABLED",
    "collections": "PROJCACHE_COLLECTIONS",
    "project_roots": "PROJCACHE_PROJECT_ROOTS",
    "scan_depth": "PROJCACHE_SCAN_DEPTH",
    "max_file_size": "PROJCACHE_MAX_FILE_SIZE",
    "max_artifact_size": "PROJCACHE_MAX_ARTIFACT_SIZE",
    "max_manifest_size": "PROJCACHE_MAX_MANIFEST_SIZE",
    "auto_repair": "PROJCACHE_AUTO_REPAIR",
}
DEFAULT_COLLECTIONS = "~/.skillmeat/collections"


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """Return the platform's user cache directory for projcache (XDG rules)."""
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", str(Path.home()))) / ".cache"
    return base / "projcache"


@dataclasses.dataclass(frozen=True)
class Settings:
    """All knobs of a cache, validated; build it with :func:`load_settings`.

    Attributes:
        cache_dir: directory holding ``data.mdb`` and ``lock.mdb``.
        map_size: initial LMDB map size in bytes; the map grows on demand.
        max_map_size: the map never grows past this; a write that would needs
            more raises :class:`~projcache.errors.CacheFullError`.
        durability: ``full`` fsyncs data and meta page on every commit (a
            power cut loses nothing committed); ``no-metasync`` skips the meta
            fsync (a power cut may undo the last commit, never corrupt);
            ``none`` leaves flushing to the OS (fastest; a power cut may lose
            recent commits).  A process crash loses nothing in any mode.
        ttl_seconds: age after which a project or collection counts as stale.
        enabled: ``False`` switches the cache off (feature flag).
        collection_roots: folders whose sub-folders are collections (a root
            may itself be a collection).
        project_roots: folders searched for projects (folders with ``.claude/``).
        scan_depth: how many folder levels below a project root are searched.
        max_file_size: source files larger than this are not read (an error is recorded).
        max_artifact_size: an artifact (a skill folder, a deployed copy) whose files
            hold more bytes than this is not hashed (an error is recorded); its walk
            also stops after 10,000 entries.
        max_manifest_size: what ``max_file_size`` is for manifests (``collection.toml``,
            ``collection.lock``, a project's ``.skillmeat-*.toml``), which list every
            artifact and so grow with a collection (60,000 entries pass 16 MiB).
        auto_repair: when opening finds the cache damaged, repair it (moving the
            damaged files aside) instead of raising :class:`CacheCorruptError`.
    """

    cache_dir: Path
    map_size: int = 8 * 1024**2
    max_map_size: int = 16 * 1024**3
    durability: str = "full"
    ttl_seconds: float = 6 * 3600.0
    enabled: bool = True
    collection_roots: tuple[str, ...] = ()
    project_roots: tuple[str, ...] = ()
    scan_depth: int = 4
    max_file_size: int = 16 * 1024**2
    max_artifact_size: int = 64 * 1024**2
    max_manifest_size: int = 256 * 1024**2
    auto_repair: bool = False

    def __post_init__(self) -> None:
        if self.map_size < _MIN_MAP:
            raise ConfigError(
                f"map_size (PROJCACHE_MAP_SIZE) must be at least {_MIN_MAP} bytes; "
                f"got {self.map_size}"
            )
        if self.max_map_size < self.map_size:
            raise ConfigError(
                f"max_map_size (PROJCACHE_MAX_MAP_SIZE) is {self.max_map_size}; "
                f"it must be >= map_size ({self.map_size})"
            )
        if self.durability not in DURABILITY_MODES:
            raise ConfigError(
                f"durability (PROJCACHE_DURABILITY) must be one of "
                f"{', '.join(DURABILITY_MODES)}; got {self.durability!r}"
            )
        if not (self.ttl_seconds > 0 and math.isfinite(self.ttl_seconds)):
            raise ConfigError(
                f"ttl (PROJCACHE_TTL) must be a positive, finite duration; got {self.ttl_seconds!r}"
            )
        if not 0 <= self.scan_depth <= 32:
            raise ConfigError(
                f"scan_depth (PROJCACHE_SCAN_DEPTH) must be an integer from 0 to 32; "
                f"got {self.scan_depth!r}"
            )
        if self.max_file_size < 1024:
            raise ConfigError(
                f"max_file_size (PROJCACHE_MAX_FILE_SIZE) must be at least 1KiB; "
                f"got {self.max_file_size}"
            )
        if self.max_artifact_size < 1024:
            raise ConfigError(
                f"max_artifact_size (PROJCACHE_MAX_ARTIFACT_SIZE) must be at least 1KiB; "
                f"got {self.max_artifact_size}"
            )
        if self.max_manifest_size < 1024:
            raise ConfigError(
                f"max_manifest_size (PROJCACHE_MAX_MANIFEST_SIZE) must be at least 1KiB; "
                f"got {self.max_manifest_size}"
            )


def _label(key: str) -> str:
    var = ENV_VARS.get(key)
    return f"{key} ({var})" if var else key


def _expand_home(text: str, env: Mapping[str, str]) -> Path:
    """Expand a leading ``~`` with ``env['HOME']`` (the mapping given, not the process's)."""
    home = env.get("HOME")
    if home and (text == "~" or text.startswith("~/")):
        return Path(home) / text[2:]
    return Path(text).expanduser()


def _number_and_unit(
    key: str, value: Any, number: str, units: Mapping[str, float], expected: str
) -> tuple[str, float]:
    """Split ``value`` into its digits and its unit's factor; ``expected`` words the error."""
    match = re.fullmatch(rf"\s*({number})\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).lower() not in units:
        raise ConfigError(f"{_label(key)} must be {expected}; got {value!r}")
    return match.group(1), units[match.group(2).lower()]


def parse_size(key: str, value: Any) -> int:
    """Parse a byte size such as ``8388608``, ``"64MiB"`` or ``"1 GiB"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{_label(key)} must be a size like 64MiB; got {value!r}")
    if isinstance(value, int):
        return value
    expected = "a size in bytes or with a unit (KiB, MiB, GiB, TiB)"
    digits, factor = _number_and_unit(key, value, r"\d+", _SIZE_UNITS, expected)
    return int(digits) * int(factor)


def parse_duration(key: str, value: Any) -> float:
    """Parse a duration such as ``3600``, ``"90s"``, ``"30m"`` or ``"6h"`` into seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{_label(key)} must be a duration like 6h; got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    expected = "a duration in seconds or with a unit (s, m, h, d)"
    digits, factor = _number_and_unit(key, value, r"\d+(?:\.\d+)?", _TIME_UNITS, expected)
    return float(digits) * factor


def parse_bool(key: str, value: Any) -> bool:
    """Parse a boolean from TOML or from an environment string."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(
        f"{_label(key)} must be one of true/false, 1/0, yes/no, on/off; got {value!r}"
    )


def parse_int(key: str, value: Any) -> int:
    """Parse an integer from TOML or from an environment string."""
    if isinstance(value, bool):
        raise ConfigError(f"{_label(key)} must be an integer; got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ConfigError(f"{_label(key)} must be an integer; got {value!r}")
    return int(text)


def parse_paths(key: str, value: Any, env: Mapping[str, str]) -> tuple[str, ...]:
    """Parse a list of folders: a TOML array of strings, or text split on ``os.pathsep``."""
    if isinstance(value, str):
        items: list[Any] = [part for part in value.split(os.pathsep) if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(f"{_label(key)} must be a list of folders; got {value!r}")
    paths = []
    for item in items:
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{_label(key)} must hold folder paths; got {item!r}")
        paths.append(str(_expand_home(item.strip(), env)))
    return tuple(paths)


def _unreadable(path: Path, exc: OSError) -> ConfigError:
    """The error for a config file (or a folder on its way) that cannot be read."""
    return ConfigError(
        f"cannot read config file {path}: {exc.strerror or exc}",
        hint="Make the config file and its folder readable by you, "
        "or point PROJCACHE_CONFIG at another file.",
    )


def _is_file(path: Path) -> bool:
    """``path.is_file()``, but a location we may not look into is a ConfigError.

    ``Path.is_file`` raises ``PermissionError`` when a folder on the way cannot
    be searched; silently ignoring the file would apply other settings than
    the user wrote, so the config error names the location instead.
    """
    try:
        return path.is_file()
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def _config_file(env: Mapping[str, str]) -> Optional[Path]:
    explicit = env.get("PROJCACHE_CONFIG")
    if explicit:
        path = _expand_home(explicit, env)
        if not _is_file(path):
            raise ConfigError(f"PROJCACHE_CONFIG names {path}, which is not a file")
        return path
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", str(Path.home()))) / ".config"
    path = base / "projcache" / "config.toml"
    return path if _is_file(path) else None


def _read_file(path: Path) -> dict[str, Any]:
    # Imported here: a cold CLI call without a config file never pays for the TOML parser.
    import tomli as tomllib  # the manifests' parser (ADR 0011)

    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    table = data.get("cache", {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [cache] must be a table")
    top = {k: v for k, v in data.items() if k != "cache"}
    unknown = sorted((set(top) | set(table)) - set(ENV_VARS))
    if unknown:
        import difflib

        near = {k: difflib.get_close_matches(k, list(ENV_VARS), n=1) for k in unknown}
        suggestions = [f"{k} -> {m[0]}" for k, m in near.items() if m]
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; "
            f"allowed keys are {', '.join(ENV_VARS)}",
            hint=(
                f"Did you mean: {', '.join(suggestions)}? Rename the key in the config file."
                if suggestions
                else None
            ),
        )
    both = sorted(set(top) & set(table))
    if both:
        raise ConfigError(
            f"config file {path}: {', '.join(both)} set both at the top level and in [cache]"
        )
    return {**top, **table}


def _cache_dir(value: Any, env: Mapping[str, str]) -> Path:
    if value is None:
        return default_cache_dir(env)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_label('dir')} must be a directory path; got {value!r}")
    return _expand_home(value, env)


def load_settings(env: Optional[Mapping[str, str]] = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from defaults, config file, environment and ``overrides``.

    ``overrides`` use the TOML key names (``dir``, ``map_size``, ...); a value
    of ``None`` means "not given".

    Raises:
        ConfigError: a value is invalid; the message names the key and what is allowed.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = _config_file(env)
    if path is not None:
        raw.update(_read_file(path))
    for key, var in ENV_VARS.items():
        if env.get(var, "") != "":
            raw[key] = env[var]
    for key, value in overrides.items():
        if key not in ENV_VARS:
            raise ConfigError(f"unknown setting {key!r}; allowed are {', '.join(ENV_VARS)}")
        if value is not None:
            raw[key] = value
    enabled = parse_bool("enabled", raw.get("enabled", True))
    skillmeat = env.get("SKILLMEAT_ENABLE_CACHE", "")
    if skillmeat and not parse_bool("SKILLMEAT_ENABLE_CACHE", skillmeat):
        enabled = False
    cache_dir = _cache_dir(raw.get("dir"), env)
    return Settings(
        cache_dir=cache_dir,
        map_size=parse_size("map_size", raw.get("map_size", Settings.map_size)),
        max_map_size=parse_size("max_map_size", raw.get("max_map_size", Settings.max_map_size)),
        durability=str(raw.get("durability", Settings.durability)).strip().lower(),
        ttl_seconds=parse_duration("ttl", raw.get("ttl", Settings.ttl_seconds)),
        enabled=enabled,
        collection_roots=parse_paths(
            "collections", raw.get("collections", DEFAULT_COLLECTIONS), env
        ),
        project_roots=parse_paths("project_roots", raw.get("project_roots", ()), env),
        scan_depth=parse_int("scan_depth", raw.get("scan_depth", Settings.scan_depth)),
        max_file_size=parse_size("max_file_size", raw.get("max_file_size", Settings.max_file_size)),
        max_artifact_size=parse_size(
            "max_artifact_size", raw.get("max_artifact_size", Settings.max_artifact_size)
        ),
        max_manifest_size=parse_size(
            "max_manifest_size", raw.get("max_manifest_size", Settings.max_manifest_size)
        ),
        auto_repair=parse_bool("auto_repair", raw.get("auto_repair", False)),
    )
