"""``python -m projcache_cli``."""

from .app import main

main()
