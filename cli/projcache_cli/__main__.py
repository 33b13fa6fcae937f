"""``python -m projcache_cli``."""

from .root import main

main()
