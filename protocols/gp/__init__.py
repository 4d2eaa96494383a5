"""ISO/IEC 7816-4 APDUs, BER-TLV and GlobalPlatform SCP03 (Card Spec Amendment D), pure.

Nothing here does I/O: the secure channel objects take bytes and give bytes.
"""

from protocols.gp.apdu import CommandApdu, ResponseApdu, channel_of, response, with_channel
from protocols.gp.crypto import kcv, kdf
from protocols.gp.errors import (
    ApduError,
    GpError,
    KeyError_,
    Scp03AuthenticationError,
    Scp03Error,
    Scp03MacError,
    Scp03PaddingError,
    Scp03ProtocolError,
    Scp03SecurityLevelError,
    Scp03StateError,
    TlvError,
)
from protocols.gp.keys import (
    KeyBlockForm,
    KeyInfo,
    key_information_template,
    parse_key_information_template,
    parse_put_key_data,
    put_key_command,
)
from protocols.gp.scp03 import (
    CardChannel,
    CardKeyset,
    HostChannel,
    InitializeUpdateResponse,
    SecureMessaging,
    SessionKeys,
    StaticKeys,
)
from protocols.gp.tlv import Tlv

__all__ = [
    "ApduError", "CardChannel", "CardKeyset", "CommandApdu", "GpError", "HostChannel",
    "InitializeUpdateResponse", "KeyBlockForm", "KeyError_", "KeyInfo", "ResponseApdu",
    "Scp03AuthenticationError", "Scp03Error", "Scp03MacError", "Scp03PaddingError",
    "Scp03ProtocolError", "Scp03SecurityLevelError", "Scp03StateError", "SecureMessaging",
    "SessionKeys", "StaticKeys", "Tlv", "TlvError", "channel_of", "kcv", "kdf",
    "key_information_template", "parse_key_information_template", "parse_put_key_data",
    "put_key_command", "response", "with_channel",
]
