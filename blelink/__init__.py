"""The BLE GATT link under the mdoc BLE transport (ISO/IEC 18013-5:2021 §8.3.3.1.1), on
bumble, Google's Bluetooth stack in Python: a real host (HCI, L2CAP, ATT, GATT) over a
controller that is either

- **virtual**: bumble's link-layer simulation, :class:`Radio`, in this process (tests,
  drills, ``mcred reader ble --phone``) or served to other processes over TCP as HCI
  (``mcred ble radio``; each process opens ``tcp-client:127.0.0.1:PORT``); or
- **real**: any HCI transport bumble opens, e.g. ``usb:0`` for a USB Bluetooth dongle, so
  the same code reads a real phone.

Two ends carry whole session messages (the framing is :mod:`protocols.mdoc.ble`):
:class:`GattServerEnd` (the side that advertises the service UUID and is the GATT server:
the mdoc in peripheral server mode, the reader in central client mode) and
:class:`GattClientEnd` (the side that scans and connects). Both give ``send(message)``,
``receive() -> message | None`` (None: the peer ended the session or went away) and
``end()``. A shared layer below the parties: it knows no party, and the parties meet only
through the bytes it carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from protocols.mdoc import ble

logger = logging.getLogger(__name__)

ATT_MTU_WANTED = 517
"""The ATT MTU a client asks for: a 512-byte characteristic value fits (512 + 3 + 2)."""
DEFAULT_TIMEOUT = 30.0


class LinkError(Exception):
    """The BLE link failed: no peer in time, a missing characteristic, a wrong Ident, the
    peer gone, or the bumble stack or its HCI transport not available."""


def require() -> None:
    """:class:`LinkError` saying how to install bumble when it is not installed."""
    _bumble()


def _bumble() -> SimpleNamespace:
    """bumble's modules, imported when a link is used (bumble is the ``ble`` extra)."""
    try:
        from bumble import controller, core, device, gatt, hci, host, link, transport
        from bumble.transport.common import AsyncPipeSink
    except ImportError as exc:
        raise LinkError(f"BLE needs bumble (pip install 'mcred[ble]'): {exc}") from exc
    return SimpleNamespace(controller=controller, core=core, device=device, gatt=gatt, hci=hci, host=host,
                           link=link, transport=transport, AsyncPipeSink=AsyncPipeSink)


class Radio:
    """A virtual radio in this process: every device made here hears the others' advertising
    and connects to them (bumble's ``LocalLink`` and its controllers)."""

    def __init__(self) -> None:
        self._link = _bumble().link.LocalLink()
        self._count = 0

    def device(self, name: str):  # noqa: ANN201 - a bumble Device
        b = _bumble()
        self._count += 1
        address = b.hci.Address.generate_static_address()
        c = b.controller.Controller(f"{name}-{self._count}", link=self._link, public_address=str(address))
        return b.device.Device(name=name, address=address, host=b.host.Host(c, b.AsyncPipeSink(c)))


@contextlib.contextmanager
def snooping(path: Path | str | None) -> Iterator[Any]:
    """A bumble snooper writing every HCI packet of a device to ``path``: a ``.pcap`` file
    (link type 201, Bluetooth HCI H4 with direction) or else a btsnoop file (the format of
    Android's ``btsnoop_hci.log``); both open in Wireshark. None: no snooping."""
    if path is None:
        yield None
        return
    from bumble import snoop

    path = Path(path)
    try:
        out = open(path, "wb")  # noqa: SIM115 - closed below, after the device is gone
    except OSError as exc:
        raise LinkError(f"capture file {path}: {exc.strerror or exc}") from exc
    with out:
        yield snoop.PcapSnooper(out) if path.suffix.lower() in (".pcap", ".cap") else snoop.BtSnooper(out)


@contextlib.asynccontextmanager
async def opened(where: Radio | str, name: str, *, snoop: Path | str | None = None) -> AsyncIterator[Any]:
    """A powered-on bumble Device on ``where``: a :class:`Radio` in this process, or an HCI
    transport name bumble opens (``tcp-client:127.0.0.1:9001``, ``usb:0``, ...). A fresh
    random static address each time: a presentation cannot be linked to the last one.
    ``snoop``: write this device's HCI traffic there (:func:`snooping`)."""
    b = _bumble()
    with snooping(snoop) as snooper:
        async with _opened(b, where, name, snooper) as dev:
            yield dev


@contextlib.asynccontextmanager
async def _opened(b: SimpleNamespace, where: Radio | str, name: str, snooper: Any) -> AsyncIterator[Any]:
    hci_transport = None
    if isinstance(where, Radio):
        dev = where.device(name)
    else:
        try:
            hci_transport = await asyncio.wait_for(b.transport.open_transport(where), 10)
        except Exception as exc:  # noqa: BLE001 - any transport's failure, named
            raise LinkError(f"HCI transport {where!r}: {type(exc).__name__}: {exc}") from exc
        dev = b.device.Device.with_hci(name, b.hci.Address.generate_static_address(),
                                     hci_transport.source, hci_transport.sink)
    dev.host.snooper = snooper
    try:
        try:
            await asyncio.wait_for(dev.power_on(), 10)
        except Exception as exc:  # noqa: BLE001
            raise LinkError(f"the Bluetooth controller did not start: {type(exc).__name__}: {exc}") from exc
        yield dev
    finally:
        with contextlib.suppress(Exception):
            await dev.power_off()
        if hci_transport is not None:
            with contextlib.suppress(Exception):
                await hci_transport.close()


async def serve_radio(ports: list[int], host: str = "127.0.0.1") -> list[Any]:
    """A virtual radio for other processes: one controller per port, each an HCI transport
    on ``tcp-server:host:port`` for one host at a time, all on one link. Returns the
    transports (close them to stop)."""
    b = _bumble()
    shared = b.link.LocalLink()
    out = []
    for i, port in enumerate(ports):
        t = await b.transport.open_transport(f"tcp-server:{host}:{port}")
        b.controller.Controller(f"radio-{i}", host_source=t.source, host_sink=t.sink, link=shared)
        out.append(t)
    return out


class _End:
    """What both ends share: incoming messages, the end of the session, the value size."""

    def __init__(self, mode: ble.GattService, max_message: int) -> None:
        self.mode = mode
        self._incoming: asyncio.Queue[bytes | None | Exception] = asyncio.Queue()
        self._reassembler = ble.Reassembler(max_message)
        self.ended = False
        self.why: str | None = None
        """Why the session ended: ``peer ended``, ``disconnected``, or a framing error."""
        self.events: list[str] = []
        self.connection: Any = None
        self._gone = asyncio.Event()
        self._peer_ended = False

    @property
    def peer_ended(self) -> bool:
        """Whether the peer ended the session itself (State 0x02 "End", ISO/IEC 18013-5
        §8.3.3.1.1.5), rather than going away, timing out or breaking the framing."""
        return self._peer_ended

    def _disconnected(self, reason: int) -> None:
        self._gone.set()
        self._finish(f"disconnected (reason 0x{reason:02X})")

    def _may_say_end(self) -> bool:
        """Whether State 0x02 still has someone to tell: connected, and the peer neither
        ended the session nor went away (also after our own refusal of broken framing)."""
        return self.connection is not None and not self._peer_ended and not self._gone.is_set()

    async def _hang_up(self) -> None:
        """Drop the connection, unless the peer already did (or is about to: it ended the
        session and disconnects next, as a client does after State 0x02)."""
        if self.connection is None or self._gone.is_set():
            return
        if self._peer_ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), 1.0)
            if self._gone.is_set():
                return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.disconnect(), 5)

    @property
    def att_mtu(self) -> int:
        """The link's ATT MTU as the stack settled it (23 before a connection)."""
        return ble.MIN_ATT_MTU if self.connection is None else max(self.connection.att_mtu, ble.MIN_ATT_MTU)

    @property
    def value_size(self) -> int:
        return ble.value_size(self.att_mtu)

    def _finish(self, why: str) -> None:
        if not self.ended:
            self.ended, self.why = True, why
            self.events.append(f"session ended: {why}")
            self._incoming.put_nowait(None)

    def _data(self, value: bytes) -> None:
        if self.ended:
            return
        try:
            message = self._reassembler.feed(value)
        except ble.BleError as exc:
            self.events.append(f"refused: {exc}")
            self._incoming.put_nowait(exc)
            self._finish(str(exc))
            return
        if message is not None:
            self.events.append(f"received a message of {len(message)} bytes")
            self._incoming.put_nowait(message)

    def _state(self, value: bytes) -> str | None:
        try:
            what = ble.state_value(value)
        except ble.BleError as exc:
            self.events.append(f"ignored: {exc}")
            return None
        if what == "end":
            self._peer_ended = True
            self._finish("peer ended the session (State 0x02)")
        return what

    async def receive(self, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
        """The next whole session message; None once the peer ended the session or went away.
        :class:`protocols.mdoc.ble.BleError` if its framing was broken; :class:`LinkError`
        after ``timeout`` seconds with nothing."""
        if self.ended and self._incoming.empty():
            return None
        try:
            got = await asyncio.wait_for(self._incoming.get(), timeout)
        except TimeoutError:
            raise LinkError(f"no message from the peer within {timeout:g} s") from None
        if isinstance(got, Exception):
            raise got
        return got


class GattServerEnd(_End):
    """The side that advertises the service UUID and serves the characteristics of ``mode``;
    :meth:`wait` returns once a client connected, subscribed and wrote start to State."""

    def __init__(self, device: Any, mode: ble.GattService, service_uuid: uuid.UUID, *,
                 ident: bytes | None = None, max_message: int = ble.MAX_MESSAGE) -> None:
        super().__init__(mode, max_message)
        b = _bumble()
        core, gatt = b.core, b.gatt
        self.device, self.service_uuid = device, service_uuid
        self._started: asyncio.Future = asyncio.get_running_loop().create_future()
        props, perms = gatt.Characteristic.Properties, gatt.Characteristic
        self._state_char = gatt.Characteristic(
            str(mode.state), props.NOTIFY | props.WRITE_WITHOUT_RESPONSE, perms.WRITEABLE,
            gatt.CharacteristicValue(write=self._on_state))
        c2s = gatt.Characteristic(str(mode.client2server), props.WRITE_WITHOUT_RESPONSE, perms.WRITEABLE,
                                  gatt.CharacteristicValue(write=self._on_client2server))
        self._s2c = gatt.Characteristic(str(mode.server2client), props.NOTIFY, perms.READABLE, b"")
        chars = [self._state_char, c2s, self._s2c]
        if mode.ident is not None:
            if ident is None:
                raise ValueError(f"mdoc {mode.mode} mode: the GATT server needs its Ident value")
            chars.append(gatt.Characteristic(str(mode.ident), props.READ, perms.READABLE, bytes(ident)))
        device.add_service(gatt.Service(str(service_uuid), chars))
        self._advertising = bytes(core.AdvertisingData([
            (core.AdvertisingData.FLAGS, bytes([0x06])),  # LE general discoverable, no BR/EDR
            (core.AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, bytes(core.UUID(str(service_uuid)))),
        ]))
        device.on("connection", self._on_connection)

    def _on_connection(self, connection: Any) -> None:
        if self.connection is not None:  # one reader at a time: a second client is not served
            return
        self.connection = connection
        self.events.append(f"connected: {connection.peer_address}")
        connection.on("disconnection", self._disconnected)

    def _on_state(self, connection: Any, value: bytes) -> None:
        if connection is not self.connection:
            return
        if self._state(value) == "start" and not self._started.done():
            self.events.append(f"client started the session (ATT MTU {self.att_mtu})")
            self._started.set_result(None)

    def _on_client2server(self, connection: Any, value: bytes) -> None:
        if connection is self.connection and self._started.done():
            self._data(value)

    async def advertise(self) -> None:
        await self.device.start_advertising(advertising_data=self._advertising, auto_restart=False,
                                            advertising_interval_min=20, advertising_interval_max=40)
        self.events.append(f"advertising service {self.service_uuid}")

    async def wait(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until a client started the session; :class:`LinkError` after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except TimeoutError:
            raise LinkError(f"no client started the session within {timeout:g} s") from None
        finally:
            with contextlib.suppress(Exception):
                await self.device.stop_advertising()

    async def send(self, message: bytes) -> None:
        if self.ended or self.connection is None:
            raise LinkError(f"cannot send: {self.why or 'no client connected'}")
        values = ble.fragments(message, self.value_size)
        for value in values:
            await self.device.notify_subscriber(self.connection, self._s2c, value, force=True)
        self.events.append(f"sent a message of {len(message)} bytes in {len(values)} notification(s)")

    async def end(self) -> None:
        """End the session: State 0x02 to the client, then drop the connection."""
        if self._may_say_end():
            with contextlib.suppress(Exception):
                await self.device.notify_subscriber(self.connection, self._state_char, ble.STATE_END, force=True)
        self._finish("we ended the session")
        await self._hang_up()


class GattClientEnd(_End):
    """The side that scans for the service UUID and connects; :meth:`connect` returns once
    it subscribed and wrote start to State. ``expect_ident``: the Ident value to find
    (central client mode: the mdoc checks it is talking to the reader that read its
    engagement)."""

    def __init__(self, device: Any, mode: ble.GattService, service_uuid: uuid.UUID, *,
                 expect_ident: bytes | None = None, max_message: int = ble.MAX_MESSAGE) -> None:
        super().__init__(mode, max_message)
        self.device, self.service_uuid, self.expect_ident = device, service_uuid, expect_ident
        self._c2s = self._state_char = None

    async def connect(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        b = _bumble()
        core = b.core
        wanted = core.UUID(str(self.service_uuid))
        found: asyncio.Future = asyncio.get_running_loop().create_future()

        def on_advertisement(adv: Any) -> None:
            for kind in (core.AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                         core.AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS):
                if wanted in (adv.data.get(kind) or []) and not found.done():
                    found.set_result(adv.address)

        self.device.on("advertisement", on_advertisement)
        try:
            await self.device.start_scanning(filter_duplicates=True)
            try:
                address = await asyncio.wait_for(found, timeout)
            except TimeoutError:
                raise LinkError(f"no device advertised service {self.service_uuid} within {timeout:g} s") from None
        finally:
            self.device.remove_listener("advertisement", on_advertisement)
            with contextlib.suppress(Exception):
                await self.device.stop_scanning()
        self.events.append(f"found {address} advertising {self.service_uuid}")
        try:
            self.connection = connection = await asyncio.wait_for(self.device.connect(address), timeout)
        except Exception as exc:  # noqa: BLE001 - the stack's failure, named
            raise LinkError(f"connecting to {address}: {type(exc).__name__}: {exc}") from exc
        connection.on("disconnection", self._disconnected)
        try:
            await asyncio.wait_for(self._open(b.device.Peer(connection), wanted), timeout)
        except TimeoutError:
            raise LinkError(f"the GATT server did not answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            # bumble cancels the pending ATT request when the link drops; only a cancellation
            # of this task itself is one to pass on
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            await asyncio.sleep(0)  # the disconnection event, when it comes with the cancellation
            raise LinkError("the GATT server went away during MTU exchange or discovery: "
                            f"{self.why or 'disconnected'}") from None
        except LinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - the stack's failure (an ATT error), named
            raise LinkError(f"GATT discovery failed: {type(exc).__name__}: {exc}") from exc

    async def _open(self, peer: Any, wanted: Any) -> None:
        core = _bumble().core
        await peer.request_mtu(ATT_MTU_WANTED)
        await peer.discover_services([wanted])
        services = peer.get_services_by_uuid(wanted)
        if not services:
            raise LinkError(f"the device has no service {self.service_uuid}")
        service = services[0]
        await service.discover_characteristics()

        def char(u: uuid.UUID, what: str) -> Any:
            found = service.get_characteristics_by_uuid(core.UUID(str(u)))
            if not found:
                raise LinkError(f"the service has no {what} characteristic ({u})")
            return found[0]

        self._state_char = char(self.mode.state, "State")
        self._c2s = char(self.mode.client2server, "Client2Server")
        s2c = char(self.mode.server2client, "Server2Client")
        if self.mode.ident is not None and self.expect_ident is not None:
            got = bytes(await char(self.mode.ident, "Ident").read_value())
            if got != self.expect_ident:
                raise LinkError(f"Ident is {got.hex()}, not {self.expect_ident.hex()}: this is not the "
                                "reader that read the engagement")
            self.events.append("Ident matches the engagement's EDeviceKey")
        await s2c.subscribe(lambda value: self._data(bytes(value)))
        await self._state_char.subscribe(lambda value: self._state(bytes(value)))
        await self._state_char.write_value(ble.STATE_START, with_response=False)
        self.events.append(f"subscribed and started the session (ATT MTU {self.att_mtu})")

    async def send(self, message: bytes) -> None:
        if self.ended or self._c2s is None:
            raise LinkError(f"cannot send: {self.why or 'not connected'}")
        values = ble.fragments(message, self.value_size)
        for value in values:
            await self._c2s.write_value(value, with_response=False)
        self.events.append(f"sent a message of {len(message)} bytes in {len(values)} write(s)")

    async def end(self) -> None:
        """End the session: 0x02 written to State, then disconnect."""
        if self._state_char is not None and self._may_say_end():
            with contextlib.suppress(Exception):
                await self._state_char.write_value(ble.STATE_END, with_response=False)
        self._finish("we ended the session")
        await self._hang_up()
