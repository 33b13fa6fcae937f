"""Tests of settings loading (``projcache.config``): defaults, file, environment, overrides."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from projcache.config import (
    DURABILITY_MODES,
    ENV_VARS,
    Settings,
    default_cache_dir,
    load_settings,
    parse_duration,
    parse_size,
)
from projcache.errors import ConfigError

KiB = 1024
MiB = 1024**2
GiB = 1024**3
ALLOWED_KEYS = "dir, map_size, max_map_size, durability, ttl, enabled"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty fake home directory (the real one is never read)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def load(home: Path, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Call load_settings with an environment that holds only HOME plus ``env``."""
    return load_settings(env={"HOME": str(home), **(env or {})}, **overrides)


def write_config(path: Path, text: str) -> Path:
    """Write a TOML config file (creating parent directories) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class TestDefaults:
    """Built-in defaults and the default cache directory."""

    def test_defaults(self, home: Path) -> None:
        """With no file and no variables, every setting has its documented default."""
        settings = load(home)
        assert settings == Settings(
            cache_dir=home / ".cache" / "projcache",
            map_size=8 * MiB,
            max_map_size=16 * GiB,
            durability="full",
            ttl_seconds=6 * 3600.0,
            collection_roots=(str(home / ".skillmeat" / "collections"),),
            enabled=True,
        )

    def test_cache_dir_from_xdg_cache_home(self, home: Path, tmp_path: Path) -> None:
        """XDG_CACHE_HOME, when set, holds the cache directory ``projcache``."""
        settings = load(home, {"XDG_CACHE_HOME": str(tmp_path / "xdg")})
        assert settings.cache_dir == tmp_path / "xdg" / "projcache"

    def test_empty_xdg_cache_home_is_ignored(self, home: Path) -> None:
        """An empty XDG_CACHE_HOME falls back to HOME/.cache, as the XDG spec says."""
        assert load(home, {"XDG_CACHE_HOME": ""}).cache_dir == home / ".cache" / "projcache"

    def test_default_cache_dir_function(self, tmp_path: Path) -> None:
        """default_cache_dir follows XDG_CACHE_HOME, then HOME/.cache."""
        assert default_cache_dir({"HOME": "/h"}) == Path("/h/.cache/projcache")
        assert default_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/x/projcache")

    def test_settings_is_frozen(self, home: Path) -> None:
        """Settings cannot be changed after it is built."""
        settings = load(home)
        with pytest.raises(dataclasses.FrozenInstanceError):
            settings.map_size = 1  # type: ignore[misc]

    def test_settings_replace_revalidates(self, home: Path) -> None:
        """dataclasses.replace builds a new, validated Settings and leaves the old one alone."""
        settings = load(home)
        bigger = dataclasses.replace(settings, map_size=16 * MiB)
        assert bigger.map_size == 16 * MiB
        assert settings.map_size == 8 * MiB
        with pytest.raises(ConfigError, match="map_size"):
            dataclasses.replace(settings, map_size=1)


class TestEnvironment:
    """Each PROJCACHE_* variable."""

    def test_env_var_table(self) -> None:
        """Every TOML key has the documented environment variable."""
        assert ENV_VARS == {
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

    @pytest.mark.parametrize(
        ("var", "value", "attr", "expected"),
        [
            ("PROJCACHE_MAP_SIZE", "64MiB", "map_size", 64 * MiB),
            ("PROJCACHE_MAP_SIZE", "1048576", "map_size", MiB),
            ("PROJCACHE_MAX_MAP_SIZE", "1 GiB", "max_map_size", GiB),
            ("PROJCACHE_DURABILITY", "no-metasync", "durability", "no-metasync"),
            ("PROJCACHE_DURABILITY", "none", "durability", "none"),
            ("PROJCACHE_DURABILITY", " NONE ", "durability", "none"),
            ("PROJCACHE_TTL", "90s", "ttl_seconds", 90.0),
            ("PROJCACHE_TTL", "6h", "ttl_seconds", 21600.0),
            ("PROJCACHE_ENABLED", "false", "enabled", False),
            ("PROJCACHE_ENABLED", "Off", "enabled", False),
            ("PROJCACHE_ENABLED", "yes", "enabled", True),
            ("PROJCACHE_MAX_ARTIFACT_SIZE", "1GiB", "max_artifact_size", GiB),
        ],
    )
    def test_each_variable(
        self, home: Path, var: str, value: str, attr: str, expected: Any
    ) -> None:
        """Each environment variable sets its setting."""
        assert getattr(load(home, {var: value}), attr) == expected

    def test_dir_variable(self, home: Path, tmp_path: Path) -> None:
        """PROJCACHE_DIR sets the cache directory and wins over XDG_CACHE_HOME."""
        env = {"PROJCACHE_DIR": str(tmp_path / "c"), "XDG_CACHE_HOME": str(tmp_path / "x")}
        assert load(home, env).cache_dir == tmp_path / "c"

    def test_dir_tilde_uses_given_home(self, home: Path) -> None:
        """A leading ``~`` in PROJCACHE_DIR expands to the HOME of the env mapping passed in."""
        assert load(home, {"PROJCACHE_DIR": "~/c"}).cache_dir == home / "c"

    @pytest.mark.parametrize("var", sorted(ENV_VARS.values()))
    def test_empty_variable_is_unset(self, home: Path, var: str) -> None:
        """An empty variable counts as not set."""
        assert load(home, {var: ""}) == load(home)


class TestSizesAndDurations:
    """Parsing of byte sizes and durations."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (8388608, 8 * MiB),
            ("8388608", 8 * MiB),
            ("64MiB", 64 * MiB),
            ("64mib", 64 * MiB),
            ("1 GiB", GiB),
            (" 2 GiB ", 2 * GiB),
            ("64KiB", 64 * KiB),
            ("64k", 64 * KiB),
            ("2M", 2 * MiB),
            ("1g", GiB),
            ("1TiB", 1024 * GiB),
            ("100000b", 100000),
            ("100KB", 100_000),
            ("1MB", 1_000_000),
            ("1GB", 1_000_000_000),
        ],
    )
    def test_parse_size(self, value: Any, expected: int) -> None:
        """Sizes are bytes or a number with a binary (KiB, K) or decimal (KB) unit."""
        assert parse_size("map_size", value) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (90, 90.0),
            (0.5, 0.5),
            ("3600", 3600.0),
            ("90s", 90.0),
            ("30m", 1800.0),
            ("6h", 21600.0),
            ("1.5h", 5400.0),
            (" 2 d ", 172800.0),
            ("6H", 21600.0),
        ],
    )
    def test_parse_duration(self, value: Any, expected: float) -> None:
        """Durations are seconds or a number with s, m, h or d."""
        assert parse_duration("ttl", value) == expected

    def test_sizes_and_durations_through_load_settings(self, home: Path) -> None:
        """load_settings parses size and duration strings from every source."""
        settings = load(home, map_size="64MiB", max_map_size="1 GiB", ttl="90s")
        assert (settings.map_size, settings.max_map_size, settings.ttl_seconds) == (
            64 * MiB,
            GiB,
            90.0,
        )

    def test_minimum_map_size_is_accepted(self, home: Path) -> None:
        """A map size of exactly 64KiB is the smallest allowed."""
        assert load(home, map_size="64KiB").map_size == 64 * KiB

    def test_max_map_size_may_equal_map_size(self, home: Path) -> None:
        """max_map_size equal to map_size is allowed (a map that never grows)."""
        settings = load(home, map_size="1MiB", max_map_size="1MiB")
        assert settings.max_map_size == settings.map_size == MiB


class TestConfigFile:
    """The TOML file: where it is found and what it may hold."""

    def test_top_level_keys_via_projcache_config(self, home: Path, tmp_path: Path) -> None:
        """Keys at the top level of the file named by PROJCACHE_CONFIG are applied."""
        path = write_config(
            tmp_path / "conf.toml",
            f'dir = "{tmp_path / "c"}"\nmap_size = "1MiB"\nmax_map_size = 2097152\n'
            'durability = "none"\nttl = 90\nenabled = false\n'
            f'collections = ["{tmp_path / "coll"}"]\nproject_roots = ["~/code"]\n'
            'scan_depth = 2\nmax_file_size = "1MiB"\nmax_artifact_size = "3MiB"\n',
        )
        settings = load(home, {"PROJCACHE_CONFIG": str(path)})
        assert settings == Settings(
            cache_dir=tmp_path / "c",
            map_size=MiB,
            max_map_size=2 * MiB,
            durability="none",
            ttl_seconds=90.0,
            enabled=False,
            collection_roots=(str(tmp_path / "coll"),),
            project_roots=(str(home / "code"),),
            scan_depth=2,
            max_file_size=MiB,
            max_artifact_size=3 * MiB,
        )

    def test_cache_table(self, home: Path, tmp_path: Path) -> None:
        """Keys in a [cache] table are applied."""
        path = write_config(tmp_path / "conf.toml", '[cache]\nttl = "30m"\nmap_size = "2MiB"\n')
        settings = load(home, {"PROJCACHE_CONFIG": str(path)})
        assert (settings.ttl_seconds, settings.map_size) == (1800.0, 2 * MiB)

    def test_xdg_config_home_file(self, home: Path, tmp_path: Path) -> None:
        """$XDG_CONFIG_HOME/projcache/config.toml is read when PROJCACHE_CONFIG is unset."""
        xdg = tmp_path / "xdg-config"
        write_config(xdg / "projcache" / "config.toml", 'durability = "no-metasync"\n')
        assert load(home, {"XDG_CONFIG_HOME": str(xdg)}).durability == "no-metasync"

    def test_home_config_file(self, home: Path) -> None:
        """Without XDG_CONFIG_HOME, HOME/.config/projcache/config.toml is read."""
        write_config(home / ".config" / "projcache" / "config.toml", 'ttl = "1h"\n')
        assert load(home).ttl_seconds == 3600.0

    def test_missing_default_file_is_fine(self, home: Path, tmp_path: Path) -> None:
        """No file at the XDG location means defaults, not an error."""
        assert load(home, {"XDG_CONFIG_HOME": str(tmp_path / "nowhere")}) == load(home)

    def test_projcache_config_wins_over_xdg_file(self, home: Path, tmp_path: Path) -> None:
        """When PROJCACHE_CONFIG is set, the XDG file is not read."""
        xdg = tmp_path / "xdg-config"
        write_config(xdg / "projcache" / "config.toml", 'ttl = "1h"\n')
        explicit = write_config(tmp_path / "explicit.toml", 'ttl = "2h"\n')
        env = {"XDG_CONFIG_HOME": str(xdg), "PROJCACHE_CONFIG": str(explicit)}
        assert load(home, env).ttl_seconds == 7200.0

    def test_missing_projcache_config_file(self, home: Path, tmp_path: Path) -> None:
        """PROJCACHE_CONFIG naming a file that does not exist raises ConfigError naming both."""
        missing = tmp_path / "missing.toml"
        with pytest.raises(ConfigError) as info:
            load(home, {"PROJCACHE_CONFIG": str(missing)})
        assert "PROJCACHE_CONFIG" in str(info.value)
        assert str(missing) in str(info.value)

    def test_projcache_config_is_a_directory(self, home: Path, tmp_path: Path) -> None:
        """PROJCACHE_CONFIG naming a directory raises ConfigError."""
        with pytest.raises(ConfigError, match=r"PROJCACHE_CONFIG names .*, which is not a file"):
            load(home, {"PROJCACHE_CONFIG": str(tmp_path)})

    def test_malformed_toml(self, home: Path, tmp_path: Path) -> None:
        """A file that is not valid TOML raises ConfigError naming the file."""
        path = write_config(tmp_path / "bad.toml", "ttl = \n[cache\n")
        with pytest.raises(ConfigError) as info:
            load(home, {"PROJCACHE_CONFIG": str(path)})
        assert f"cannot read config file {path}" in str(info.value)
        assert isinstance(info.value.__cause__, Exception)

    def test_unknown_top_level_key(self, home: Path, tmp_path: Path) -> None:
        """An unknown key is rejected, and the message names it and lists the allowed keys."""
        path = write_config(tmp_path / "conf.toml", 'ttl = "1h"\nbogus = 1\nmapsize = 2\n')
        with pytest.raises(ConfigError) as info:
            load(home, {"PROJCACHE_CONFIG": str(path)})
        message = str(info.value)
        assert "unknown key(s) bogus, mapsize" in message
        assert f"allowed keys are {ALLOWED_KEYS}" in message

    def test_unknown_key_in_cache_table(self, home: Path, tmp_path: Path) -> None:
        """An unknown key inside the [cache] table is rejected by name."""
        path = write_config(tmp_path / "conf.toml", "[cache]\ntimeout = 5\n")
        with pytest.raises(ConfigError, match="unknown key\\(s\\) timeout; allowed keys are"):
            load(home, {"PROJCACHE_CONFIG": str(path)})

    def test_unknown_top_level_key_beside_cache_table(self, home: Path, tmp_path: Path) -> None:
        """An unknown top-level key is rejected even when the file also has a [cache] table."""
        path = write_config(tmp_path / "conf.toml", 'bogus = 1\n[cache]\nttl = "1h"\n')
        with pytest.raises(ConfigError, match="bogus"):
            load(home, {"PROJCACHE_CONFIG": str(path)})

    def test_top_level_key_beside_cache_table_is_not_ignored(
        self, home: Path, tmp_path: Path
    ) -> None:
        """A known top-level key beside a [cache] table is applied or rejected, never dropped."""
        path = write_config(tmp_path / "conf.toml", 'ttl = "1h"\n[cache]\nmap_size = "1MiB"\n')
        try:
            settings = load(home, {"PROJCACHE_CONFIG": str(path)})
        except ConfigError as exc:
            assert "ttl" in str(exc)
        else:
            assert settings.ttl_seconds == 3600.0
            assert settings.map_size == MiB

    def test_cache_must_be_a_table(self, home: Path, tmp_path: Path) -> None:
        """A top-level ``cache`` that is not a table raises ConfigError."""
        path = write_config(tmp_path / "conf.toml", "cache = 5\n")
        with pytest.raises(ConfigError, match=r"\[cache\] must be a table"):
            load(home, {"PROJCACHE_CONFIG": str(path)})


class TestPrecedence:
    """overrides > environment > file > defaults."""

    @pytest.fixture
    def config(self, tmp_path: Path) -> Path:
        """A config file setting every key except ``dir``."""
        return write_config(
            tmp_path / "conf.toml",
            'map_size = "1MiB"\nmax_map_size = "1GiB"\ndurability = "none"\n'
            'ttl = "1h"\nenabled = true\n',
        )

    def test_file_beats_defaults(self, home: Path, config: Path) -> None:
        """Values in the file replace the defaults."""
        settings = load(home, {"PROJCACHE_CONFIG": str(config)})
        assert (settings.map_size, settings.durability, settings.ttl_seconds) == (
            MiB,
            "none",
            3600.0,
        )

    def test_env_beats_file(self, home: Path, config: Path) -> None:
        """Environment variables replace values from the file."""
        env = {
            "PROJCACHE_CONFIG": str(config),
            "PROJCACHE_MAP_SIZE": "2MiB",
            "PROJCACHE_DURABILITY": "no-metasync",
            "PROJCACHE_TTL": "2h",
            "PROJCACHE_ENABLED": "no",
        }
        settings = load(home, env)
        assert (settings.map_size, settings.durability, settings.ttl_seconds) == (
            2 * MiB,
            "no-metasync",
            7200.0,
        )
        assert settings.enabled is False
        assert settings.max_map_size == GiB  # only in the file

    def test_overrides_beat_env(self, home: Path, config: Path, tmp_path: Path) -> None:
        """Keyword overrides replace environment variables and file values."""
        env = {
            "PROJCACHE_CONFIG": str(config),
            "PROJCACHE_DIR": str(tmp_path / "env-dir"),
            "PROJCACHE_MAP_SIZE": "2MiB",
            "PROJCACHE_TTL": "2h",
        }
        settings = load(home, env, dir=tmp_path / "arg-dir", map_size=4 * MiB, ttl="3h")
        assert settings.cache_dir == tmp_path / "arg-dir"
        assert settings.map_size == 4 * MiB
        assert settings.ttl_seconds == 3 * 3600.0

    def test_none_override_means_not_given(self, home: Path) -> None:
        """An override of None leaves the lower-precedence value in place."""
        settings = load(home, {"PROJCACHE_TTL": "2h"}, ttl=None, map_size=None)
        assert settings.ttl_seconds == 7200.0
        assert settings.map_size == 8 * MiB

    def test_unknown_override(self, home: Path) -> None:
        """An unknown keyword override raises ConfigError naming it and the allowed keys."""
        with pytest.raises(ConfigError) as info:
            load(home, mapsize="1MiB")
        assert "unknown setting 'mapsize'" in str(info.value)
        assert f"allowed are {ALLOWED_KEYS}" in str(info.value)


class TestEnabledFlag:
    """PROJCACHE_ENABLED and the host's SKILLMEAT_ENABLE_CACHE."""

    @pytest.mark.parametrize("value", ["false", "0", "no", "off", "FALSE"])
    def test_skillmeat_false_disables(self, home: Path, value: str) -> None:
        """SKILLMEAT_ENABLE_CACHE set to a false value disables the cache."""
        assert load(home, {"SKILLMEAT_ENABLE_CACHE": value}).enabled is False

    def test_skillmeat_false_beats_override(self, home: Path) -> None:
        """SKILLMEAT_ENABLE_CACHE=false disables the cache even when enabled=True is passed."""
        assert load(home, {"SKILLMEAT_ENABLE_CACHE": "false"}, enabled=True).enabled is False

    def test_skillmeat_true_does_not_enable(self, home: Path) -> None:
        """SKILLMEAT_ENABLE_CACHE=true does not turn on a cache disabled by PROJCACHE_ENABLED."""
        env = {"SKILLMEAT_ENABLE_CACHE": "true", "PROJCACHE_ENABLED": "false"}
        assert load(home, env).enabled is False
        assert load(home, {"SKILLMEAT_ENABLE_CACHE": "true"}).enabled is True

    def test_skillmeat_empty_is_unset(self, home: Path) -> None:
        """An empty SKILLMEAT_ENABLE_CACHE changes nothing."""
        assert load(home, {"SKILLMEAT_ENABLE_CACHE": ""}).enabled is True

    def test_skillmeat_invalid(self, home: Path) -> None:
        """An invalid SKILLMEAT_ENABLE_CACHE raises ConfigError naming it and the allowed values."""
        with pytest.raises(ConfigError) as info:
            load(home, {"SKILLMEAT_ENABLE_CACHE": "perhaps"})
        assert "SKILLMEAT_ENABLE_CACHE" in str(info.value)
        assert "true/false, 1/0, yes/no, on/off" in str(info.value)
        assert "'perhaps'" in str(info.value)


class TestInvalidValues:
    """Every invalid value raises ConfigError naming the key and what is allowed."""

    SIZE_UNITS = "a size in bytes or with a unit (KiB, MiB, GiB, TiB)"
    DURATION_UNITS = "a duration in seconds or with a unit (s, m, h, d)"

    @pytest.mark.parametrize(
        ("var", "value", "fragments"),
        [
            (
                "PROJCACHE_MAP_SIZE",
                "lots",
                ["map_size (PROJCACHE_MAP_SIZE) must be", SIZE_UNITS, "'lots'"],
            ),
            ("PROJCACHE_MAP_SIZE", "1.5GiB", ["map_size (PROJCACHE_MAP_SIZE) must be", SIZE_UNITS]),
            ("PROJCACHE_MAP_SIZE", "-1", ["map_size (PROJCACHE_MAP_SIZE) must be", SIZE_UNITS]),
            (
                "PROJCACHE_MAP_SIZE",
                "64 parsecs",
                ["map_size (PROJCACHE_MAP_SIZE) must be", SIZE_UNITS],
            ),
            (
                "PROJCACHE_MAP_SIZE",
                "1000",
                ["map_size (PROJCACHE_MAP_SIZE) must be at least 65536 bytes", "1000"],
            ),
            (
                "PROJCACHE_MAP_SIZE",
                "63KiB",
                ["map_size (PROJCACHE_MAP_SIZE) must be at least 65536 bytes"],
            ),
            (
                "PROJCACHE_MAX_MAP_SIZE",
                "big",
                ["max_map_size (PROJCACHE_MAX_MAP_SIZE) must be", SIZE_UNITS],
            ),
            (
                "PROJCACHE_MAX_MAP_SIZE",
                "1MiB",
                ["max_map_size (PROJCACHE_MAX_MAP_SIZE) is 1048576; it must be >= map_size"],
            ),
            (
                "PROJCACHE_DURABILITY",
                "fast",
                [
                    "durability (PROJCACHE_DURABILITY) must be one of full, no-metasync, none",
                    "'fast'",
                ],
            ),
            ("PROJCACHE_TTL", "soon", ["ttl (PROJCACHE_TTL) must be", DURATION_UNITS, "'soon'"]),
            ("PROJCACHE_TTL", "5w", ["ttl (PROJCACHE_TTL) must be", DURATION_UNITS]),
            ("PROJCACHE_TTL", "-5s", ["ttl (PROJCACHE_TTL) must be", DURATION_UNITS]),
            ("PROJCACHE_TTL", "0", ["ttl (PROJCACHE_TTL) must be a positive, finite duration"]),
            ("PROJCACHE_TTL", "0h", ["ttl (PROJCACHE_TTL) must be a positive, finite duration"]),
            (
                "PROJCACHE_ENABLED",
                "maybe",
                [
                    "enabled (PROJCACHE_ENABLED) must be one of true/false, 1/0, yes/no, on/off",
                    "'maybe'",
                ],
            ),
        ],
    )
    def test_invalid_environment_values(
        self, home: Path, var: str, value: str, fragments: list[str]
    ) -> None:
        """An invalid environment value raises ConfigError naming the key and allowed values."""
        with pytest.raises(ConfigError) as info:
            load(home, {var: value})
        for fragment in fragments:
            assert fragment in str(info.value)

    @pytest.mark.parametrize(
        ("toml", "fragments"),
        [
            (
                "map_size = true",
                ["map_size (PROJCACHE_MAP_SIZE) must be a size like 64MiB", "True"],
            ),
            ("map_size = -5", ["map_size (PROJCACHE_MAP_SIZE) must be at least 65536 bytes", "-5"]),
            ("map_size = 1.5", ["map_size (PROJCACHE_MAP_SIZE) must be", "KiB, MiB, GiB, TiB"]),
            ("map_size = [1]", ["map_size (PROJCACHE_MAP_SIZE) must be", "KiB, MiB, GiB, TiB"]),
            (
                "max_map_size = false",
                ["max_map_size (PROJCACHE_MAX_MAP_SIZE) must be a size like 64MiB"],
            ),
            (
                "durability = 1",
                ["durability (PROJCACHE_DURABILITY) must be one of full, no-metasync, none"],
            ),
            (
                "durability = true",
                ["durability (PROJCACHE_DURABILITY) must be one of full, no-metasync, none"],
            ),
            ("ttl = true", ["ttl (PROJCACHE_TTL) must be a duration like 6h"]),
            ("ttl = -1", ["ttl (PROJCACHE_TTL) must be a positive, finite duration"]),
            ("ttl = 0.0", ["ttl (PROJCACHE_TTL) must be a positive, finite duration"]),
            ("ttl = nan", ["ttl (PROJCACHE_TTL) must be a positive, finite duration"]),
            ('ttl = "1 week"', ["ttl (PROJCACHE_TTL) must be", "(s, m, h, d)"]),
            (
                'enabled = "maybe"',
                ["enabled (PROJCACHE_ENABLED) must be one of true/false, 1/0, yes/no, on/off"],
            ),
            (
                "enabled = 2",
                ["enabled (PROJCACHE_ENABLED) must be one of true/false, 1/0, yes/no, on/off"],
            ),
        ],
    )
    def test_invalid_file_values(
        self, home: Path, tmp_path: Path, toml: str, fragments: list[str]
    ) -> None:
        """An invalid typed TOML value raises ConfigError naming key and allowed values."""
        path = write_config(tmp_path / "conf.toml", toml + "\n")
        with pytest.raises(ConfigError) as info:
            load(home, {"PROJCACHE_CONFIG": str(path)})
        for fragment in fragments:
            assert fragment in str(info.value)

    @pytest.mark.parametrize("toml", ["dir = 5", "dir = [1, 2]"])
    def test_non_string_dir_in_file(self, home: Path, tmp_path: Path, toml: str) -> None:
        """A ``dir`` that is not a string in the file raises ConfigError naming ``dir``."""
        path = write_config(tmp_path / "conf.toml", toml + "\n")
        with pytest.raises(ConfigError, match="dir"):
            load(home, {"PROJCACHE_CONFIG": str(path)})

    @pytest.mark.parametrize(
        ("kwargs", "fragment"),
        [
            ({"map_size": 1024}, "map_size (PROJCACHE_MAP_SIZE) must be at least 65536 bytes"),
            ({"map_size": 2 * MiB, "max_map_size": MiB}, "must be >= map_size"),
            (
                {"durability": "sometimes"},
                "durability (PROJCACHE_DURABILITY) must be one of full, no-metasync, none",
            ),
            ({"ttl_seconds": 0.0}, "ttl (PROJCACHE_TTL) must be a positive, finite duration"),
            (
                {"max_artifact_size": 1000},
                "max_artifact_size (PROJCACHE_MAX_ARTIFACT_SIZE) must be at least 1KiB",
            ),
            ({"ttl_seconds": -1.0}, "ttl (PROJCACHE_TTL) must be a positive, finite duration"),
            (
                {"ttl_seconds": float("nan")},
                "ttl (PROJCACHE_TTL) must be a positive, finite duration",
            ),
        ],
    )
    def test_settings_validates_itself(
        self, tmp_path: Path, kwargs: dict[str, Any], fragment: str
    ) -> None:
        """Building Settings directly applies the same checks as load_settings."""
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            Settings(cache_dir=tmp_path, **kwargs)

    def test_config_error_is_value_error_with_hint(self, home: Path) -> None:
        """ConfigError is a ValueError with exit code 10 and a hint."""
        with pytest.raises(ValueError) as info:
            load(home, {"PROJCACHE_DURABILITY": "fast"})
        assert isinstance(info.value, ConfigError)
        assert info.value.exit_code == 10
        assert info.value.hint

    def test_durability_modes(self) -> None:
        """The allowed durability modes are full, no-metasync and none."""
        assert DURABILITY_MODES == ("full", "no-metasync", "none")


# -- an unreadable config location (issue 12 item 7) ------------------------------------------


_AS_NOBODY = """
import contextlib, io, os, sys, tempfile
import typer.main
import projcache_cli.fastpath, projcache_cli.root
from projcache.config import load_settings

with tempfile.TemporaryDirectory() as scratch:
    config = os.path.join(scratch, "config.toml")
    with open(config, "w") as handle:
        handle.write('ttl = "1h"\\n')
    load_settings(env={"PROJCACHE_CONFIG": config, "HOME": scratch})
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            projcache_cli.root.app(["--cache-dir", scratch, "show"], standalone_mode=False)
typer.main.get_command(projcache_cli.root.app)
if os.geteuid() == 0:  # chmod does not stop root
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
sys.argv = ["projcache", *sys.argv[1:]]
projcache_cli.fastpath.main()
"""


@pytest.fixture
def shared_tmp() -> Any:
    """A world-traversable scratch folder (pytest's tmp_path is 0700 to other users)."""
    import os
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="projcache-config-perm-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, 0o700 if path.is_dir() else 0o600)
        shutil.rmtree(base)


class TestUnreadableConfig:
    """A config file or folder we may not read is the config error (exit 10), never a traceback."""

    def test_unreadable_default_config_folder(
        self, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """PermissionError while looking for the default file becomes ConfigError naming it."""
        path = write_config(tmp_path / "xdg" / "projcache" / "config.toml", 'ttl = "1h"\n')
        real_stat = Path.stat

        def denied(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self == path:  # as the kernel answers when the folder is not searchable
                raise PermissionError(13, "Permission denied", str(self))
            return real_stat(self, *args, **kwargs)

        monkeypatch.setattr(Path, "stat", denied)
        with pytest.raises(ConfigError) as info:
            load(home, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
        assert str(info.value) == f"cannot read config file {path}: Permission denied"
        assert info.value.exit_code == 10
        assert "readable" in info.value.hint

    @pytest.mark.parametrize("denied", ["file", "folder"])
    @pytest.mark.parametrize("how", ["PROJCACHE_CONFIG", "XDG_CONFIG_HOME"])
    def test_cli_exits_10_with_one_line(self, shared_tmp: Path, denied: str, how: str) -> None:
        """The real CLI, as a user who may not read the file or its folder: exit 10, one line."""
        import os
        import subprocess
        import sys

        folder = shared_tmp / "xdg" / "projcache"
        config = write_config(folder / "config.toml", 'ttl = "1h"\n')
        shared_tmp.joinpath("xdg").chmod(0o755)
        if denied == "file":
            folder.chmod(0o755)
            config.chmod(0)
        else:
            config.chmod(0o644)
            folder.chmod(0)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(shared_tmp)}
        if how == "PROJCACHE_CONFIG":
            env["PROJCACHE_CONFIG"] = str(config)
        else:
            env["XDG_CONFIG_HOME"] = str(shared_tmp / "xdg")
        package_roots = {
            str(Path(__import__(name).__file__).resolve().parent.parent)
            for name in ("projcache", "projcache_cli")
        }
        env["PYTHONPATH"] = os.pathsep.join(sorted(package_roots))
        # The child starts as root, warms up every lazy import with a readable config,
        # then drops to nobody: nobody may not reach an interpreter that lives under
        # /root (tox's venvs link to pyenv's there), only the config must be unreadable.
        done = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, "--cache-dir", str(shared_tmp / "c"), "show"],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(shared_tmp),
            timeout=60,
            check=False,
        )
        assert done.returncode == 10, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.splitlines()[0] == (
            f"error: cannot read config file {config}: Permission denied"
        )
