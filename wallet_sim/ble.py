"""The wallet over Bluetooth Low Energy: QR engagement naming BLE, then data retrieval over
BLE (ISO/IEC 18013-5:2021 §8.2.1.1, §8.3.3.1.1).

The phone shows a QR code whose DeviceEngagement offers BLE with a fresh service UUID, then

- in **mdoc peripheral server mode** (the default, what most readers use) it advertises that
  UUID as the GATT server and waits for the reader to connect and start;
- in **mdoc central client mode** it scans for a reader advertising the UUID, connects,
  reads the reader's Ident and goes on only if it is the one derived from this
  engagement's EDeviceKey (the reader that read this QR code).

Either way a :class:`~wallet_sim.wallet.WalletSession` answers each session message, until
the reader ends the session (SessionData status 20, State 0x02, or disconnection). The
link is :mod:`blelink`: a virtual radio in this process, another process's over TCP, or a
real controller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import blelink
from protocols.mdoc import ble
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import Wallet, WalletSession

MODES = ("peripheral", "central")


@dataclass
class BleTransfer:
    """One presentation over BLE, as the phone saw it."""

    engagement: Engagement
    mode: str
    session: WalletSession | None = None
    steps: list[str] = field(default_factory=list)
    problem: str | None = None
    """Why the link failed, if it did (no reader in time, a wrong Ident, broken framing)."""


def ble_engagement(mode: str = "peripheral") -> Engagement:
    """A fresh engagement offering data retrieval over BLE in ``mode`` only."""
    if mode not in MODES:
        raise ValueError(f"BLE mode {mode!r}: peripheral or central")
    options = ble.BleOptions.new(peripheral=mode == "peripheral", central=mode == "central")
    return Engagement.new(retrieval_methods=[options.retrieval_method()])


async def present(wallet: Wallet, where: blelink.Radio | str, *, mode: str = "peripheral",
                  on_engagement: Callable[[Engagement], Awaitable[None] | None] | None = None,
                  timeout: float = blelink.DEFAULT_TIMEOUT, engagement: Engagement | None = None,
                  options: ble.BleOptions | None = None, snoop: Path | str | None = None) -> BleTransfer:
    """Show an engagement (``on_engagement`` gets it: print its QR code, hand it to a reader)
    and answer one reader over BLE on ``where``. After an NFC tap, ``engagement`` is the
    tap's (its Handover in it) and ``options`` the BLE mode and UUID its Handover Select
    settled. Never raises for what the reader or the link does: the transfer says what
    happened. ``snoop``: a file for the phone's HCI traffic (btsnoop, or pcap by its suffix)."""
    engagement = engagement or ble_engagement(mode)
    options = options if options is not None else ble.BleOptions.of(engagement.device_engagement)
    if options is None:
        raise ValueError("the engagement offers no BLE: give the options the NFC handover settled")
    gatt_mode = ble.MODES[mode]
    out = BleTransfer(engagement, mode)
    try:
        async with blelink.opened(where, "mdoc", snoop=snoop) as device:
            await _serve(wallet, device, engagement, gatt_mode, options.uuid_for(gatt_mode), on_engagement,
                         timeout, out)
    except blelink.LinkError as exc:  # the controller or the capture file, before any reader
        out.problem = str(exc)
    return out


async def _serve(wallet: Wallet, device, engagement: Engagement, gatt_mode: ble.GattService,  # noqa: ANN001
                 service_uuid, on_engagement, timeout: float, out: BleTransfer) -> None:  # noqa: ANN001
    """One reader on ``device``: the GATT end of ``gatt_mode``, the engagement shown, every
    session message answered until the reader ends; what happened goes into ``out``."""
    if gatt_mode is ble.PERIPHERAL_SERVER:
        end: blelink.GattServerEnd | blelink.GattClientEnd = blelink.GattServerEnd(device, gatt_mode, service_uuid)
    else:
        end = blelink.GattClientEnd(device, gatt_mode, service_uuid,
                                    expect_ident=ble.ident(engagement.device_engagement.e_device_key_bytes))
    try:
        if isinstance(end, blelink.GattServerEnd):
            await end.advertise()
            await _shown(on_engagement, engagement)
            await end.wait(timeout)
        else:
            await _shown(on_engagement, engagement)
            await end.connect(timeout)
        out.session = session = wallet.start(engagement)
        while (message := await end.receive(timeout)) is not None:
            reply = session.receive(message)
            if reply is not None:
                await end.send(reply)
    except (blelink.LinkError, ble.BleError) as exc:
        out.problem = str(exc)
    finally:
        await end.end()
        out.steps = list(end.events)


async def _shown(on_engagement, engagement: Engagement) -> None:  # noqa: ANN001 - callback
    if on_engagement is not None:
        got = on_engagement(engagement)
        if got is not None:
            await got
