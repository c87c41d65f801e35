"""``POST /dev/rpc``: Ethereum JSON-RPC 2.0 to the in-process dev chain (dev mode only).

Wallets and scripts send the unsigned transactions the API returns through it. Served: ``eth_*``,
``net_version``, ``net_listening``, ``web3_clientVersion``; ``eth_accounts`` lists the funded dev
accounts (unlocked: ``eth_sendTransaction`` from them works). Batches are answered as batches;
notifications (no ``id``) get no answer; bad input gets a JSON-RPC error object.
"""

from __future__ import annotations

from typing import Any

from eth_tester.exceptions import TransactionFailed

from .evm import InProcessEvm

__all__ = ["DevRpc", "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "MAX_BATCH"]

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, SERVER_ERROR = -32700, -32600, -32601, -32602, -32000
EXECUTION_REVERTED = 3
MAX_BATCH = 100
CLIENT_VERSION = "AudiFi/dev-evm (eth-tester py-evm)"


def _error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": err}


def _wire(value: Any) -> Any:
    """eth-tester's Python values as JSON-RPC: quantities as 0x hex, bytes as 0x hex."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return str(value)


def _revert_data(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        for arg in seen.args:
            if isinstance(arg, bytes | bytearray):
                return "0x" + bytes(arg).hex()
        seen = seen.__cause__ or seen.__context__
    return None


class DevRpc:
    def __init__(self, evm: InProcessEvm):
        self._evm = evm

    async def handle(self, payload: Any) -> Any:
        """A decoded JSON-RPC request or batch → the response (``None``: nothing to answer)."""
        if isinstance(payload, list):
            if not payload:
                return _error(None, INVALID_REQUEST, "empty batch")
            if len(payload) > MAX_BATCH:
                return _error(None, INVALID_REQUEST, f"batch larger than {MAX_BATCH}")
            out = [r for r in [await self._one(p) for p in payload] if r is not None]
            return out or None
        return await self._one(payload)

    @staticmethod
    def parse_error(message: str) -> dict[str, Any]:
        return _error(None, PARSE_ERROR, message)

    async def _one(self, req: Any) -> dict[str, Any] | None:
        if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
            rid = req.get("id") if isinstance(req, dict) else None
            return _error(rid, INVALID_REQUEST, "expected {jsonrpc: '2.0', method, params?, id?}")
        notification = "id" not in req
        rid = req.get("id")
        if rid is not None and not isinstance(rid, str | int) or isinstance(rid, bool):
            return _error(None, INVALID_REQUEST, "id must be a string, a number or null")
        params = req.get("params", [])
        if not isinstance(params, list):
            return None if notification else _error(rid, INVALID_PARAMS, "params must be an array")
        try:
            result = await self._call(req["method"], params)
        except _RpcError as e:
            return None if notification else _error(rid, e.code, e.message, e.data)
        return None if notification else {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _call(self, method: str, params: list[Any]) -> Any:
        if method == "web3_clientVersion":
            return CLIENT_VERSION
        if method == "net_version":
            return str(self._evm.tester.backend.chain.chain_id)
        if method == "net_listening":
            return True
        if method == "eth_accounts":
            return list(self._evm.accounts)
        if not method.startswith("eth_") or not method[4:].replace("_", "").isalnum():
            raise _RpcError(METHOD_NOT_FOUND, f"method {method} is not served by the dev chain")
        try:
            response = await self._evm.rpc(method, params)
        except TransactionFailed as e:
            raise _RpcError(EXECUTION_REVERTED, "execution reverted", _revert_data(e)) from e
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise _RpcError(INVALID_PARAMS, f"invalid params: {e}") from e
        except Exception as e:  # noqa: BLE001 - py-evm validation and the like: a server error object
            raise _RpcError(SERVER_ERROR, str(e) or type(e).__name__) from e
        if "error" in response:
            err = response["error"]
            code = METHOD_NOT_FOUND if "Unknown RPC Endpoint" in str(err.get("message", "")) else err.get(
                "code", SERVER_ERROR)
            raise _RpcError(code, str(err.get("message", "error")))
        return _wire(response.get("result"))


class _RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data
