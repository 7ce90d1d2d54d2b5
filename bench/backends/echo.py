"""The Python SDK contestant: ``echo`` replies with the request's ``data``.

.venv/bin/python bench/backends/echo.py 127.0.0.1:PORT
"""

from __future__ import annotations

import sys
from typing import Any

from modproxy_sdk import method, serve


@method
def echo(data: Any) -> Any:
    return data


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:21243")
