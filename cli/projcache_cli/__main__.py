"""``python -m projcache_cli``."""

from .fastpath import main

main()
