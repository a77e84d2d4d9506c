"""The image's HEALTHCHECK: GET /health on this container's listener (stdlib only, no curl needed)."""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("HEALTHCHECK_PORT") or os.environ.get("PUBLIC_PORT") or "3000"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{int(port)}/health", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
