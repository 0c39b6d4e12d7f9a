"""bbaccess: nightly snapshots of Bitbucket Cloud access in SQLite.

Packages: ``bitbucket`` (HTTP), ``crawl`` (what to read, records), ``store`` (SQLite),
``simulator`` (a local Bitbucket Cloud). ``export`` wires them; ``cli`` is the only entry point.
"""

__version__ = "0.1.0"
