"""Readers of the on-disk formats: SkillMeat collections and projects' ``.claude/`` folders.

Nothing here touches the cache: readers turn files into records and
fingerprints; :mod:`projcache.refresh` decides what to write.
"""

from __future__ import annotations

from .collection import (
    CollectionRead,
    Stored,
    read_collection,
    survey_collection,
    unchanged_collection,
)
from .discovery import find_collections, find_projects, is_collection, is_project
from .hashing import content_hash
from .project import ProjectRead, local_collection, read_project

__all__ = [
    "CollectionRead",
    "ProjectRead",
    "Stored",
    "content_hash",
    "find_collections",
    "find_projects",
    "is_collection",
    "is_project",
    "local_collection",
    "read_collection",
    "read_project",
    "survey_collection",
    "unchanged_collection",
]
