"""The contract between the GP-SE runtime and the applets it hosts.

The runtime (``wallet_sim.se``) owns APDU transport, logical channels, SCP03 and the card
registry; an applet sees only plain command APDUs (already unwrapped) and answers plain
response APDUs (data || SW1 SW2). Personalisation reaches an applet through the ISD:
INSTALL [for personalization] names the applet, then each STORE DATA block that the ISD
unwraps is passed to :meth:`Applet.store_data`, whose answer travels back wrapped under the
TSM's secure channel (GPCS 2.3.1 11.11, 11.5.2.3).

An applet's whole state is a plain CBOR-serialisable ``dict`` (:meth:`snapshot` /
:meth:`restore`): the runtime persists it after every command that may change it, exactly
as a card writes NVM. Private keys are part of that NVM image and of nothing else: no APDU
an applet answers, and no method here, returns private key material.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandContext:
    """What the runtime tells an applet about the command it is handing over."""

    channel: int = 0
    #: True when the command arrived through an authenticated SCP03 session of the ISD
    #: (only STORE DATA during personalisation does).
    secure_channel: bool = False
    #: The SCP03 security level of that session (0 when none).
    security_level: int = 0


class Applet(ABC):
    """An applet instance installed in the SE, selected by its instance AID."""

    #: Executable module AID of the applet class (used by INSTALL [for install]).
    MODULE_AID: bytes = b""

    def __init__(self, instance_aid: bytes) -> None:
        self.instance_aid = instance_aid

    def install(self, params: bytes) -> None:  # noqa: B027 - optional hook
        """INSTALL [for install] created this instance; ``params`` is the install
        parameters field (``C9 ..`` application-specific parameters and others, GPCS
        11.5.2.3.7), possibly empty. Called once, before the first :meth:`snapshot`."""

    @abstractmethod
    def select(self, p2: int, ctx: CommandContext) -> bytes:
        """SELECT by AID succeeded on a channel: return FCI (may be empty) || SW."""

    def deselect(self, ctx: CommandContext) -> None:  # noqa: B027 - optional hook
        """The applet lost the selection on a channel (volatile state such as PIN-verified
        flags must be cleared here)."""

    @abstractmethod
    def process(self, apdu: bytes, ctx: CommandContext) -> bytes:
        """Handle one plain command APDU while selected; return data || SW1 SW2."""

    @abstractmethod
    def store_data(self, p1: int, p2: int, data: bytes, ctx: CommandContext) -> bytes:
        """One STORE DATA block forwarded by the ISD during personalisation; return
        response data || SW1 SW2."""

    @abstractmethod
    def snapshot(self) -> dict:
        """The applet's persistent state (NVM) as a CBOR-serialisable dict."""

    @abstractmethod
    def restore(self, state: dict) -> None:
        """Load persistent state written by :meth:`snapshot`."""

    def describe(self) -> dict:
        """Public, non-secret facts for ``mcred phone show`` (PIN counters, certificates
        held, key slots); never private keys or PIN values."""
        return {}
