"""The exception a handler raises to choose its error reply."""

from __future__ import annotations

__all__ = ["MethodError"]


class MethodError(Exception):
    """Raise in a handler to reply ``{"error": {"code": code, "message": message}}``.

    The connection stays open; only this request fails. Any other exception becomes a
    ``handler_error`` reply and its traceback is logged on the ``modproxy_sdk`` logger.

    >>> raise MethodError("not_found", "no todo 3")
    Traceback (most recent call last):
      ...
    modproxy_sdk._error.MethodError: not_found: no todo 3
    """

    code: str
    message: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
