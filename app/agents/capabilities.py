"""The capabilities the core serves on a dynamic agent's behalf, each checked against its grant.

An agent's process has no network and no database; when it wants one of these it asks the
core (`Broker.serve`), and the core does the work within the grant its manifest states and
a person approved:

- `state`: the agent's own key-value namespace in Postgres (`agent_state`), size-capped.
- `http`: requests the core makes, only to the hosts granted, with timeouts, no redirects
  followed, and caps on what goes out and comes back.
- `modbus`: Modbus TCP the core speaks, only to granted devices, units and address ranges;
  writing only where the grant says `write = true`.

Everything crosses as plain JSON, so the same broker serves a host over its protocol and a
generated test in its own process (`app.agents.testing`).
"""

from __future__ import annotations

import json
from typing import Any

from app.agents.base import PermissionDenied
from app.agents.manifest import Device, Permissions
from app.agents.sdk import CapabilityError
from app.agents.state import STATE_KEY_MAX, STATE_VALUE_MAX, StateStore

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
HTTP_BODY_MAX = 256 * 1024
HTTP_RESPONSE_MAX = 1024 * 1024
HTTP_TIMEOUT = 10.0
HTTP_DROPPED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "proxy-authorization"}
)
MODBUS_TIMEOUT = 3.0
MODBUS_READ_MAX = 125
MODBUS_WRITE_MAX = 123


class Broker:
    """One agent's capabilities. `devices` maps a granted device's name to where it really
    is, for tests on loopback; the grant's own host and port otherwise."""

    def __init__(
        self, agent: str, permissions: Permissions, state: StateStore,
        *, devices: dict[str, tuple[str, int]] | None = None,
    ) -> None:  # fmt: skip
        self.agent = agent
        self.permissions = permissions
        self.state = state
        self.devices = devices or {}

    async def serve(self, capability: str, method: str, args: dict[str, Any]) -> Any:
        if capability not in self.permissions.names():
            raise PermissionDenied(f"agent {self.agent} has no {capability!r} grant")
        if not isinstance(args, dict):
            raise CapabilityError("arguments must be an object")
        if capability == "state":
            return await self._state(method, args)
        if capability == "http":
            return await self._http(method, args)
        return await self._modbus(method, args)

    # --- state --------------------------------------------------------------------------

    async def _state(self, method: str, args: dict[str, Any]) -> Any:
        if method == "keys":
            return await self.state.keys(self.agent)
        key = args.get("key")
        if not isinstance(key, str) or not key or len(key) > STATE_KEY_MAX:
            raise CapabilityError(f"a state key is a string of 1-{STATE_KEY_MAX} characters")
        if method == "get":
            found = await self.state.get(self.agent, key)
            return None if found is None else {"value": found}
        if method == "delete":
            await self.state.delete(self.agent, key)
            return None
        if method == "set":
            size = len(json.dumps(args.get("value")).encode())
            if size > STATE_VALUE_MAX:
                raise CapabilityError(
                    f"a state value of {size} bytes (the cap is {STATE_VALUE_MAX})"
                )
            await self.state.put(self.agent, key, args.get("value"), size)
            return None
        raise CapabilityError(f"state has no method {method!r}")

    # --- http ---------------------------------------------------------------------------

    async def _http(self, method: str, args: dict[str, Any]) -> Any:
        import httpx

        if method != "request":
            raise CapabilityError(f"http has no method {method!r}")
        verb = str(args.get("method", "")).upper()
        if verb not in HTTP_METHODS:
            raise CapabilityError(f"HTTP method {verb!r} is not served")
        try:
            url = httpx.URL(str(args.get("url", "")))
        except (httpx.InvalidURL, ValueError):
            raise CapabilityError("not a URL") from None
        self._check_http_host(url)
        body = args.get("body")
        if body is not None and (not isinstance(body, str) or len(body) > HTTP_BODY_MAX):
            raise CapabilityError(f"a request body is text of at most {HTTP_BODY_MAX} bytes")
        raw_headers = args.get("headers") or {}
        if not isinstance(raw_headers, dict) or len(raw_headers) > 50:
            raise CapabilityError("headers are an object of at most 50 entries")
        headers = {
            str(k)[:256]: str(v)[:4096]
            for k, v in raw_headers.items()
            if str(k).lower() not in HTTP_DROPPED_HEADERS
        }
        async with (
            httpx.AsyncClient(
                timeout=HTTP_TIMEOUT, follow_redirects=False, trust_env=False
            ) as client,
        ):
            try:
                async with client.stream(verb, url, headers=headers, content=body) as response:
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > HTTP_RESPONSE_MAX:
                            raise CapabilityError(f"the response is over {HTTP_RESPONSE_MAX} bytes")
                        chunks.append(chunk)
            except httpx.TimeoutException:
                raise CapabilityError(
                    f"{url.host} did not answer within {HTTP_TIMEOUT:.0f} s"
                ) from None
            except httpx.HTTPError as exc:
                raise CapabilityError(f"{url.host}: {type(exc).__name__}") from None
        return {
            "status": response.status_code,
            "headers": dict(response.headers),
            "text": b"".join(chunks).decode(response.encoding or "utf-8", errors="replace"),
        }

    def _check_http_host(self, url: Any) -> None:
        grant = self.permissions.http
        assert grant is not None
        if url.scheme not in ("http", "https") or not url.host:
            raise CapabilityError("only http:// and https:// addresses are served")
        if url.userinfo:
            raise CapabilityError("credentials in the address are not served")
        host = url.host.lower()
        default = 443 if url.scheme == "https" else 80
        port = url.port or default
        for entry in grant.hosts:
            name, _, wanted = entry.partition(":")
            if name == host and port == (int(wanted) if wanted else default):
                return
        shown = host if port == default else f"{host}:{port}"
        raise PermissionDenied(f"agent {self.agent} may not reach {shown}: not in its http grant")

    # --- modbus -------------------------------------------------------------------------

    async def _modbus(self, method: str, args: dict[str, Any]) -> Any:
        if method not in ("read_holding", "write_registers"):
            raise CapabilityError(f"modbus has no method {method!r}")
        grant = self.permissions.modbus
        assert grant is not None
        name = str(args.get("device", ""))
        device = grant.device(name)
        if device is None:
            raise PermissionDenied(f"agent {self.agent} may not reach device {name!r}: not granted")
        unit = args.get("unit")
        unit = device.units[0] if unit is None else unit
        address = args.get("address")
        if method == "read_holding":
            count = args.get("count", 1)
            if not _integer(count, 1, MODBUS_READ_MAX):
                raise CapabilityError(f"a read is of 1-{MODBUS_READ_MAX} registers")
            values: list[int] = []
        else:
            values = args.get("values") or []
            if not isinstance(values, list) or not 1 <= len(values) <= MODBUS_WRITE_MAX:
                raise CapabilityError(f"a write is of 1-{MODBUS_WRITE_MAX} registers")
            if not all(_integer(v, 0, 65535) for v in values):
                raise CapabilityError("a register holds 0-65535")
            count = len(values)
            if not device.write:
                raise PermissionDenied(
                    f"agent {self.agent} may only read device {name!r}: writing is not granted"
                )
        if not _integer(unit, 0, 247) or not _integer(address, 0, 65535):
            raise CapabilityError("unit is 0-247 and address 0-65535")
        assert isinstance(unit, int)
        assert isinstance(address, int)
        if not device.allows(unit, address, count):
            raise PermissionDenied(
                f"agent {self.agent} may not reach unit {unit} registers {address}-"
                f"{address + count - 1} of device {name!r}: outside its grant"
            )
        return await self._modbus_io(device, unit, address, count, values)

    async def _modbus_io(
        self, device: Device, unit: int, address: int, count: int, values: list[int]
    ) -> Any:
        from pymodbus.client import AsyncModbusTcpClient
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
        from pymodbus.pdu import ExceptionResponse

        host, port = self.devices.get(device.name, (device.host, device.port))
        where = f"device {device.name}"
        client = AsyncModbusTcpClient(host, port=port, timeout=MODBUS_TIMEOUT, retries=1)
        try:
            if not await client.connect():
                raise CapabilityError(f"{where} is not reachable")
            if values:
                result = await client.write_registers(address, values, device_id=unit)
            else:
                result = await client.read_holding_registers(address, count=count, device_id=unit)
        except (ConnectionException, ModbusIOException, OSError):
            raise CapabilityError(f"{where} is not reachable") from None
        except ModbusException as exc:
            raise CapabilityError(f"{where} failed: {' '.join(str(exc).split())[:200]}") from None
        finally:
            client.close()
        if isinstance(result, ExceptionResponse):
            code = result.exception_code
            raise CapabilityError(
                f"{where} answered {MODBUS_EXCEPTIONS.get(code, 'an exception')} (code {code})"
            )
        if result.isError():
            raise CapabilityError(f"{where} failed: unexpected answer")
        if values:
            return None
        if len(result.registers) != count:
            raise CapabilityError(f"{where} failed: {len(result.registers)} registers for {count}")
        return [int(v) for v in result.registers]


# Modbus exception codes (the protocol's own names, lower case).
MODBUS_EXCEPTIONS = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}  # fmt: skip


def _integer(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
