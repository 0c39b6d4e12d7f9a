"""``python -m exporter`` behaves exactly like the ``bbaccess`` command."""

from exporter.cli import main

raise SystemExit(main())
