"""The applets hosted by the phone's GP-SE: JPKI-AP and the mdoc applet.

AIDs: proprietary ISO/IEC 7816-5 category-F identifiers under ``F0 6D 63 72 65 64``
(F0 || ASCII "mcred") for load files and executable modules; the JPKI applet instance keeps
the card's registered AID D392F000260100000001 so existing JPKI readers find it
(``specs/jpki-applet.md``, ``specs/mdoc-applet.md``).
"""

from __future__ import annotations

from protocols import perso
from wallet_sim.applets.errors import AppletError, AppletStateError, StatusError
from wallet_sim.applets.jpki import JPKI_AP_AID, JpkiApplet
from wallet_sim.applets.mdoc import MDOC_INSTANCE_AID, MdocApplet
from wallet_sim.se.applet import Applet

MCRED_AID_PREFIX = perso.AID_PREFIX
JPKI_PACKAGE_AID = perso.JPKI_LOAD_FILE_AID
JPKI_MODULE_AID = JpkiApplet.MODULE_AID  # F06D637265640101
JPKI_INSTANCE_AID = JPKI_AP_AID  # D392F000260100000001
MDOC_PACKAGE_AID = perso.MDOC_LOAD_FILE_AID
MDOC_MODULE_AID = MdocApplet.MODULE_AID  # F06D637265640201
# MDOC_INSTANCE_AID = F06D63726564020101 (imported above)

#: Executable module AID -> applet class, for INSTALL [for install].
APPLET_CLASSES: dict[bytes, type[Applet]] = {
    JPKI_MODULE_AID: JpkiApplet,
    MDOC_MODULE_AID: MdocApplet,
}
#: Load file (package) AID -> the module AIDs it contains, for GET STATUS / DELETE.
PACKAGES: dict[bytes, tuple[bytes, ...]] = {
    JPKI_PACKAGE_AID: (JPKI_MODULE_AID,),
    MDOC_PACKAGE_AID: (MDOC_MODULE_AID,),
}
#: The instance AID each module is installed under by default.
DEFAULT_INSTANCE_AIDS: dict[bytes, bytes] = {
    JPKI_MODULE_AID: JPKI_INSTANCE_AID,
    MDOC_MODULE_AID: MDOC_INSTANCE_AID,
}

__all__ = [
    "APPLET_CLASSES",
    "DEFAULT_INSTANCE_AIDS",
    "JPKI_INSTANCE_AID",
    "JPKI_MODULE_AID",
    "JPKI_PACKAGE_AID",
    "MCRED_AID_PREFIX",
    "MDOC_INSTANCE_AID",
    "MDOC_MODULE_AID",
    "MDOC_PACKAGE_AID",
    "PACKAGES",
    "AppletError",
    "AppletStateError",
    "JpkiApplet",
    "MdocApplet",
    "StatusError",
]
