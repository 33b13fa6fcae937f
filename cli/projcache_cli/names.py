"""Names people recognise: ``webapp > agent/researcher`` (U+203A) for a project-only key.

Artifacts found in a project that no deployment covers live in the
pseudo-collection ``@<project id>``; their key (``@43e8…/agent/researcher``)
stays the stable identifier, but tables show the project's name instead of the
hash, and every command that takes a key also takes that form, a bare name
(``pdf``) or ``<type>/<name>`` when it names one artifact.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

import orjson

from projcache import codec
from projcache.errors import ArtifactNotFound, InvalidArgumentError, as_argument_error

if TYPE_CHECKING:
    from projcache import ProjectCache

__all__ = ["SEPARATOR", "display_key", "project_names", "resolve_artifact"]

SEPARATOR = "\u203a"  # a single right-pointing angle quotation mark
# "webapp <SEPARATOR> agent/researcher", also typed as "webapp > agent/researcher".
_DISPLAYED = re.compile(r"^\s*(?P<project>.+?)\s*[\u203a>]\s*(?P<rest>[^/\s]+/[^/]+?)\s*$")


def project_names(cache: ProjectCache) -> dict[str, str]:
    """Project id -> name, for display."""
    return {project.id: project.name for project in cache.list_projects()}


def display_key(key: str, names: dict[str, str]) -> str:
    """``key`` as people read it: a project-only artifact shows its project's name."""
    if key.startswith("@"):
        collection, _, rest = key.partition("/")
        name = names.get(collection[1:])
        if name:
            return f"{name} {SEPARATOR} {rest}"
    return key


def _candidates(cache: ProjectCache, type_: Optional[str], name: str) -> list[str]:
    from projcache.reads import check_type

    check_type(type_)  # "skil/pdf" is a usage error naming the types, not "not found"
    return [
        record["key"]
        for record in map(orjson.loads, cache.iter_artifacts_json(type_))
        if record["name"] == name
    ]


def resolve_artifact(cache: ProjectCache, ref: str) -> str:
    """The key ``ref`` names: a key, ``<project> > <type>/<name>``, ``<type>/<name>`` or a name.

    Raises:
        ArtifactNotFound: nothing has that key or name.
        InvalidArgumentError: a name matches several artifacts (the message lists their keys).
    """
    if ref.count("/") >= 2 and not _DISPLAYED.match(ref):
        with as_argument_error():  # a malformed key is a bad argument (exit 14)
            codec.parse_artifact_key(ref)
        return ref  # a key: looked up as it is (a miss says "not cached")
    names = project_names(cache)
    displayed = _DISPLAYED.match(ref)
    if displayed:
        wanted = displayed.group("project")
        ids = [pid for pid, name in names.items() if name == wanted or pid == wanted]
        keys = [f"@{pid}/{displayed.group('rest')}" for pid in ids]
        found = [key for key in keys if cache.get_artifact_json(key) is not None]
        if len(found) == 1:
            return found[0]
        if not found:
            raise ArtifactNotFound(
                f"no artifact {ref!r} in the cache",
                hint="Run `projcache list artifacts --project "
                f"{wanted}` to see what that project holds.",
            )
    else:
        type_, _, name = ref.rpartition("/")
        found = _candidates(cache, type_ or None, name)
        if len(found) == 1:
            return found[0]
        if not found:
            raise ArtifactNotFound(
                f"no artifact named {ref!r} in the cache",
                hint="Run `projcache search WORDS` or `projcache list artifacts` to find it.",
            )
    shown = ", ".join(display_key(key, names) for key in sorted(found))
    raise InvalidArgumentError(
        f"{ref!r} names {len(found)} artifacts: {shown}",
        hint="Give the full key (<collection>/<type>/<name>) of the one you mean.",
    )
