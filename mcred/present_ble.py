"""Presentation over BLE, wired: the phone's wallet (:mod:`wallet_sim.ble`) and the reader
(:mod:`reader.ble`) on one virtual radio in this process, or each on its own HCI transport
(another process's virtual radio, ``mcred ble radio``, or a real controller)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import blelink
from mcred.present_in_process import Presentation, _from_outcome, _pkcs8
from mcred.present_wiring import ReaderParts
from protocols.mdoc import ble
from reader import ble as reader_ble
from reader.session import ReaderSession
from wallet_sim import ble as wallet_ble
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import Wallet


def _reader_session(parts: ReaderParts, hostile: str | None = None) -> ReaderSession:
    from reader.hostile import hostile as named_hostile

    return ReaderSession([parts.request], parts.pipeline, reader_signer=parts.reader_signer,
                         reader_chain=parts.reader_chain, reader_auth_all=parts.reader_auth_all,
                         hostile=named_hostile(hostile))


def present_ble_in_process(wallet: Wallet, reader: ReaderSession, *, mode: str = "peripheral",
                           reader_mode: str = "auto", timeout: float = blelink.DEFAULT_TIMEOUT,
                           snoop: Path | str | None = None) -> tuple[Presentation, list[str]]:
    """The phone shows a QR code offering BLE in ``mode``; the reader reads it and the two
    exchange the session over a virtual radio in this process. The presentation, and the
    steps of both sides (``phone:`` / ``reader:``). ``snoop``: the reader's HCI traffic
    to this file (btsnoop, or pcap by its suffix)."""

    async def run() -> tuple[reader_ble.BleRead | None, wallet_ble.BleTransfer]:
        radio = blelink.Radio()
        shown: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_engagement(engagement: Engagement) -> None:  # the reader's camera reads the QR code
            shown.set_result(engagement.uri)

        phone = asyncio.create_task(wallet_ble.present(wallet, radio, mode=mode, on_engagement=on_engagement,
                                                       timeout=timeout))
        await asyncio.wait({phone, shown}, return_when=asyncio.FIRST_COMPLETED)
        if not shown.done():  # the phone gave up before showing its code
            return None, await phone
        got = await reader_ble.read(reader, shown.result(), radio, mode=reader_mode, timeout=timeout, snoop=snoop)
        return got, await phone

    got, transfer = asyncio.run(run())
    outcome = got.outcome if got is not None else reader.fail(f"BLE: the phone showed no engagement ({transfer.problem})")
    steps = [f"phone: {s}" for s in transfer.steps] + [f"reader: {s}" for s in (got.steps if got else [])]
    if transfer.problem:
        steps.append(f"phone: {transfer.problem}")
    return _from_outcome(outcome, transfer.session, _pkcs8(reader.e_reader_private_key)), steps


def present_tap_ble_in_process(wallet: Wallet, reader: ReaderSession, *, mode: str = "peripheral",
                               handover: str = "static", reader_mode: str = "auto",
                               timeout: float = blelink.DEFAULT_TIMEOUT,
                               trace: Callable[[str, bytes], None] | None = None,
                               snoop: Path | str | None = None) -> tuple[Presentation, list[str]]:
    """NFC engagement, then data retrieval over BLE (ISO/IEC 18013-5 §8.2.2.1 with a
    Bluetooth LE carrier): the reader taps the phone, whose Handover Select offers BLE in
    ``mode`` (static handover) or answers the reader's BLE offer (negotiated: central
    client mode on the reader's UUID, as Annex D), and the two go on over a virtual radio
    with the NFCHandover in the SessionTranscript. ``trace`` sees the tap's APDUs."""
    from mcred.present_in_process import _no_secure_element, _traced
    from reader.nfc import NfcReaderSession
    from reader.nfc import tap as nfc_tap
    from wallet_sim.nfc import WALLET_AIDS, AidRouter, NfcTag

    tag = NfcTag(wallet, handover=handover, nfc_retrieval=False,
                 ble_options=ble.BleOptions.new(peripheral=mode == "peripheral", central=mode == "central"))
    route = AidRouter(_no_secure_element, {aid: tag.transmit for aid in WALLET_AIDS})
    tap_session = NfcReaderSession(reader, carriers=("ble",))
    outcome = nfc_tap(_traced(route.transmit, trace), tap_session)
    steps = [f"tap: {s}" for s in tap_session.steps]
    if outcome is not None:  # the tap failed before any handover
        return _from_outcome(outcome, tag.session, _pkcs8(reader.e_reader_private_key)), steps
    assert tap_session.handover_select is not None and tag.engagement is not None
    settled = tag.ble_selected
    phone_mode = "central" if settled is not None and not settled.peripheral_server else "peripheral"

    async def run() -> tuple[reader_ble.BleRead, wallet_ble.BleTransfer]:
        radio = blelink.Radio()
        phone = asyncio.create_task(wallet_ble.present(wallet, radio, mode=phone_mode, engagement=tag.engagement,
                                                       options=settled, timeout=timeout))
        got = await reader_ble.read(reader, tap_session.handover_select.device_engagement.encode(), radio,
                                    mode=reader_mode, timeout=timeout, options=tap_session.ble_options,
                                    handover=tap_session.handover, snoop=snoop)
        return got, await phone

    got, transfer = asyncio.run(run())
    steps += [f"phone: {s}" for s in transfer.steps] + [f"reader: {s}" for s in got.steps]
    if transfer.problem:
        steps.append(f"phone: {transfer.problem}")
    return _from_outcome(got.outcome, transfer.session, _pkcs8(reader.e_reader_private_key)), steps


def ble_presentation(parts: ReaderParts, *, wallet: Wallet | None = None, mode: str = "peripheral",
                     reader_mode: str = "auto", hci: str | None = None, engagement: str | None = None,
                     timeout: float = blelink.DEFAULT_TIMEOUT, tap: str | None = None,
                     hostile: str | None = None, snoop: Path | str | None = None) -> tuple[Presentation, list[str]]:
    """``mcred reader ble``: a reader of ``parts`` reads ``wallet`` in-process on a virtual
    radio (engaged by its QR code, or by an NFC tap with ``tap`` the handover, ``static``
    or ``negotiated``), or else the phone whose QR code said ``engagement`` over the HCI
    transport ``hci``. ``hostile``: a reader wrong on purpose (:data:`reader.hostile.HOSTILE`)."""
    session = _reader_session(parts, hostile)
    if wallet is not None and tap is not None:
        return present_tap_ble_in_process(wallet, session, mode=mode, handover=tap, reader_mode=reader_mode,
                                          timeout=timeout, snoop=snoop)
    if wallet is not None:
        return present_ble_in_process(wallet, session, mode=mode, reader_mode=reader_mode, timeout=timeout,
                                      snoop=snoop)
    if hci is None or engagement is None:
        raise ValueError("a phone elsewhere is read over an HCI transport (--hci) from its QR code (--engagement)")
    got = asyncio.run(reader_ble.read(session, engagement, hci, mode=reader_mode, timeout=timeout, snoop=snoop))
    return _from_outcome(got.outcome, None, _pkcs8(session.e_reader_private_key)), [f"reader: {s}" for s in got.steps]


def phone_over_ble(wallet: Wallet, hci: str, *, mode: str = "peripheral",
                   on_engagement: Callable[[Engagement], None] | None = None,
                   timeout: float = blelink.DEFAULT_TIMEOUT, engagement: Engagement | None = None,
                   options: ble.BleOptions | None = None, snoop: Path | str | None = None) -> wallet_ble.BleTransfer:
    """``mcred phone ble``: the phone shows its engagement and answers one reader over ``hci``;
    ``mcred phone pcsc --ble-hci``: the BLE side of a tap's ``engagement``, in the BLE
    ``options`` its handover settled."""
    return asyncio.run(wallet_ble.present(wallet, hci, mode=mode, on_engagement=on_engagement, timeout=timeout,
                                          engagement=engagement, options=options, snoop=snoop))


def run_radio(ports: list[int], host: str = "127.0.0.1", on_ready: Callable[[], None] | None = None) -> None:
    """``mcred ble radio``: a virtual radio for other processes until interrupted."""

    async def run() -> None:
        transports = await blelink.serve_radio(ports, host)
        if on_ready is not None:
            on_ready()
        try:
            await asyncio.Event().wait()
        finally:
            for t in transports:
                await t.close()

    asyncio.run(run())
