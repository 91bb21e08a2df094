"""Serve every family's champion from the registry (foreground; Ctrl-C or SIGTERM stops it)."""

from __future__ import annotations

import sys

from poseops.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["serve", *sys.argv[1:]]))
