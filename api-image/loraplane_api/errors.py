"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status."""

from __future__ import annotations

from enum import StrEnum

from aiohttp import web


class ErrorType(StrEnum):
    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    PERMISSION = "permission_error"
    NOT_FOUND = "not_found_error"
    SERVER = "server_error"


class ApiError(Exception):
    """An error answered to the caller; `param` names the request field at fault."""

    status = 400
    type = ErrorType.INVALID_REQUEST

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": str(self.type), "param": self.param, "code": self.code}}
        return web.json_response(body, status=self.status)


class InvalidRequest(ApiError):
    pass


class Unauthenticated(ApiError):
    status = 401
    type = ErrorType.AUTHENTICATION


class Forbidden(ApiError):
    status = 403
    type = ErrorType.PERMISSION


class NotFound(ApiError):
    status = 404
    type = ErrorType.NOT_FOUND


class ServerError(ApiError):
    status = 500
    type = ErrorType.SERVER
