"""`python -m client`: see client/cli.py and client/README.md."""

from client.cli import main

raise SystemExit(main())
