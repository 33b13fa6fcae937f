"""Migration step: deployment keys of schema 2 gain their deployment profile.

Schema 2 keyed a deployment ``<project id> NUL <artifact key>``; every such
deployment came from a project's ``.claude/`` folder, SkillMeat's
``claude_code`` profile.  From schema 3 the profile is the key's last part
(``<project id> NUL <artifact key> NUL <profile>``, see
:func:`projcache.codec.deployment_key`), so one artifact deployed to two
profiles is two deployments.  :func:`migrate_deployment_keys` rewrites a
schema-2 environment's deployments in place, inside the caller's write
transaction: it is one step of the schema-2 -> 3 migration (wired into
:data:`projcache.migrate.MIGRATIONS` with the other steps of that version).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from . import codec, mutations
from .errors import CorruptRecordError, InvalidRecordError
from .repository import Repositories
from .storage import Txn

__all__ = ["migrate_deployment_keys"]

logger = logging.getLogger(__name__)


def migrate_deployment_keys(txn: Txn, dbs: Mapping[str, Any]) -> int:
    """Rewrite schema-2 deployment records and their two indexes for schema 3; return how many.

    Every record keyed ``<project id> NUL <artifact key>`` moves to
    ``<project id> NUL <artifact key> NUL claude_code`` with ``profile``
    ``claude_code`` and ``profile_root`` ``.claude``; its ``state`` is
    recomputed by the current rule (which knows ``conflict`` and
    ``unknown-collection``) and both deployment indexes are rewritten.  A
    record already in the new shape is left alone, so running the step twice
    changes nothing.  A record that cannot be decoded keeps its bytes under the
    new key (``verify`` reports it, ``verify --repair`` drops it); one whose
    project is gone is dropped (``verify`` would report it as dangling).
    """
    deployments = dbs["deployments"]
    old: list[tuple[bytes, bytes]] = []
    for key, raw in txn.cursor(deployments).iternext():
        if bytes(key).count(codec.SEPARATOR) == 1:
            old.append((bytes(key), bytes(raw)))
    if not old:
        return 0
    # The old index entries: by-artifact values without a profile, by-state old keys.
    for name in ("deployments-by-artifact", "deployments-by-state"):
        stale = [
            (bytes(k), bytes(v))
            for k, v in txn.cursor(dbs[name]).iternext()
            if (bytes(v).count(codec.SEPARATOR) == (0 if name.endswith("artifact") else 1))
        ]
        for k, v in stale:
            txn.delete(k, v, db=dbs[name])
    repos = Repositories(dict(dbs))
    model = repos.deployments.model
    for key, raw in old:
        txn.delete(key, db=deployments)
        new_key = key + codec.SEPARATOR + codec.DEFAULT_PROFILE.encode()
        try:
            record = codec.decode(raw, what=f"deployments[{key!r}]")
            record.setdefault("profile", codec.DEFAULT_PROFILE)
            record.setdefault("profile_root", ".claude")
            deployment = model.model_validate(record)
        except (CorruptRecordError, ValueError) as exc:
            logger.warning("migrating deployment %r: %s; kept as it was for verify", key, exc)
            txn.put(new_key, raw, db=deployments)
            continue
        try:
            mutations.put_deployment(txn, repos, deployment)
        except InvalidRecordError as exc:
            logger.warning("migrating deployment %r: %s; dropped", key, exc)
    return len(old)
