"""The reader over Bluetooth Low Energy: it reads the phone's QR engagement, then retrieves
the data over BLE (ISO/IEC 18013-5:2021 §8.3.3.1.1), around a
:class:`~reader.session.ReaderSession`.

The engagement names the BLE modes the phone offers. In **mdoc peripheral server mode**
(preferred when offered) the reader scans for the phone's service UUID, connects as GATT
client, asks for a 517-byte ATT MTU, subscribes to State and Server2Client and writes start.
In **mdoc central client mode** the reader is the GATT server: it advertises the UUID the
phone named, serves State, Client2Server, Server2Client and Ident (derived from the
engagement's EDeviceKey, so the phone can tell it found the right reader) and waits for the
phone to start. Then the SessionEstablishment goes out, the SessionData comes back and is
verified; the reader ends the session with SessionData status 20 and State 0x02. A step
that fails ends the read with a failed ``session`` check that names it (``session_failed``);
a phone that writes State 0x02 "End" before its answer ended the session itself, as with
SessionData status 20 (``holder_ended``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blelink
from protocols.mdoc import DeviceEngagement, MdocError, ble
from reader.errors import ReaderSessionError
from reader.session import ReaderOutcome, ReaderSession

MODES = ("auto", "peripheral", "central")


@dataclass
class BleRead:
    """One read over BLE: the verdict and what happened on the way."""

    outcome: ReaderOutcome
    mode: str | None = None
    steps: list[str] = field(default_factory=list)


def _engagement(engagement: bytes | str) -> DeviceEngagement:
    return (DeviceEngagement.from_qr_uri(engagement) if isinstance(engagement, str)
            else DeviceEngagement.decode(engagement))


def choose_mode(options: ble.BleOptions, wanted: str = "auto") -> ble.GattService:
    """The mode to read in: ``wanted`` if the phone offers it, else (``auto``) peripheral
    server mode when offered, then central client mode. :class:`BleError` if none fits."""
    if wanted not in MODES:
        raise ValueError(f"BLE mode {wanted!r}: {', '.join(MODES)}")
    offered = options.modes()
    if wanted != "auto":
        mode = ble.MODES[wanted]
        if mode not in offered:
            raise ble.BleError(f"the phone does not offer mdoc {mode.mode} mode "
                               f"(it offers: {', '.join(m.mode for m in offered) or 'no usable mode'})")
        return mode
    if not offered:
        raise ble.BleError("the phone's BLE option offers no mode with its service UUID")
    return offered[0]


async def read(session: ReaderSession, engagement: bytes | str, where: blelink.Radio | str, *,
               mode: str = "auto", timeout: float = blelink.DEFAULT_TIMEOUT,
               options: ble.BleOptions | None = None, handover: Any = None,
               snoop: Path | str | None = None) -> BleRead:
    """Read the phone that showed ``engagement`` (its bytes or its ``mdoc:`` URI) over BLE on
    ``where``. After an NFC tap (:class:`reader.nfc.NfcReaderSession` handed over), give the
    BLE ``options`` its Handover Select settled and the SessionTranscript's ``handover``
    (NFCHandover): the engagement itself names no retrieval method then. Never raises for
    what the phone or the link does: the outcome says. ``snoop``: a file for the reader's
    HCI traffic (btsnoop, or pcap by its suffix), for Wireshark."""
    try:
        de = _engagement(engagement)
        options = options if options is not None else ble.BleOptions.of(de)
        if options is None:
            raise ble.BleError("the engagement offers no data retrieval over BLE")
        gatt_mode = choose_mode(options, mode)
    except (MdocError, ValueError) as exc:
        return BleRead(session.fail(f"BLE: {exc}"))
    service_uuid = options.uuid_for(gatt_mode)
    steps = [f"mdoc {gatt_mode.mode} mode, service {service_uuid}"]
    try:
        async with blelink.opened(where, "reader", snoop=snoop) as device:
            if gatt_mode is ble.PERIPHERAL_SERVER:
                end: blelink.GattServerEnd | blelink.GattClientEnd = blelink.GattClientEnd(
                    device, gatt_mode, service_uuid)
            else:
                end = blelink.GattServerEnd(device, gatt_mode, service_uuid, ident=ble.ident(de.e_device_key_bytes))
            try:
                outcome = await _exchange(session, de, end, timeout, handover)
            finally:
                await end.end()
                steps += end.events
    except (blelink.LinkError, ble.BleError, ReaderSessionError) as exc:
        outcome = session.outcome if session.outcome is not None else session.fail(f"BLE: {exc}")
    return BleRead(outcome, gatt_mode.mode, steps)


async def _exchange(session: ReaderSession, de: DeviceEngagement, end, timeout: float,  # noqa: ANN001
                    handover: Any) -> ReaderOutcome:
    if isinstance(end, blelink.GattClientEnd):
        await end.connect(timeout)
    else:
        await end.advertise()
        await end.wait(timeout)
    establishment = session.start(de.encode(), handover=handover)
    await end.send(establishment)
    reply = await end.receive(timeout)
    if reply is None:
        why = f"BLE: the phone ended the session before answering ({end.why})"
        # State 0x02 "End" is the phone's own termination (the holder stopped), as SessionData
        # status 20 is; a dropped link is a failure of the transport
        return session.ended_by_holder(why) if end.peer_ended else session.fail(why)
    outcome = session.receive(reply)
    await end.send(session.terminate())
    return outcome
