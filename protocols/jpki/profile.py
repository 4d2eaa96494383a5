"""The configurable JPKI profile: names, policies, URLs, key type, CRL partitioning.

Defaults are the simulator's TEST profile: the TEST policy arc (:mod:`.oids`) and issuer
names whose organisation reads ``JPKI TEST``, so no simulated certificate can pass for a
J-LIS one. ``JpkiProfile.production_shaped()`` gives the production names and policy OIDs
(for parsing real certificates, or a lab that knows what it is doing).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .errors import ProfileError
from .oids import POLICY_AUTH, POLICY_SIGNING, TEST_POLICY_AUTH, TEST_POLICY_SIGNING


class Purpose(enum.Enum):
    """The two certificate families; each has its own root CA."""

    SIGN = "sign"
    AUTH = "auth"


class KeyType(enum.Enum):
    """Key types of the profile: today's card (RSA-2048) and the next card (ECDSA P-384)."""

    RSA_2048 = "rsa2048"
    EC_P384 = "p384"

    @classmethod
    def of(cls, key: object) -> KeyType:
        """The key type of a public or private key; ProfileError if it is neither."""
        if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey) and key.key_size == 2048:
            return cls.RSA_2048
        if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
            key.curve, ec.SECP384R1
        ):
            return cls.EC_P384
        raise ProfileError(
            f"key {type(key).__name__} is neither RSA-2048 nor ECDSA P-384 (JPKI key types)"
        )


@dataclass(frozen=True)
class PolicyArc:
    """The two certificate-policy OIDs and whether they are the TEST arc."""

    signing: x509.ObjectIdentifier
    auth: x509.ObjectIdentifier
    is_test: bool

    def policy(self, purpose: Purpose) -> x509.ObjectIdentifier:
        return self.signing if purpose is Purpose.SIGN else self.auth


TEST_ARC = PolicyArc(TEST_POLICY_SIGNING, TEST_POLICY_AUTH, is_test=True)
PRODUCTION_ARC = PolicyArc(POLICY_SIGNING, POLICY_AUTH, is_test=False)


@dataclass(frozen=True)
class Municipality:
    """Where the holder is registered; with partitioned CRLs it is also the CRL partition.
    `code` is the 6-digit local government code, used in URLs (names are Japanese; URLs
    stay ASCII)."""

    prefecture: str
    municipality: str
    code: str

    def __post_init__(self) -> None:
        if not self.prefecture or not self.municipality:
            raise ProfileError("Municipality needs a prefecture and a municipality name")
        if not (self.code and self.code.isascii() and self.code.isalnum()):
            raise ProfileError(f"Municipality code {self.code!r} must be ASCII letters/digits")


CrlPartition = Municipality


@dataclass(frozen=True)
class JpkiProfile:
    """Everything configurable in the two profiles. Immutable; derive with `dataclasses.replace`."""

    arc: PolicyArc = TEST_ARC
    country: str = "JP"
    organization: str = "JPKI TEST"
    sign_ca_unit: str = "JPKI for digital signature"
    auth_ca_unit: str = "JPKI for user authentication"
    agency_unit: str = "Japan Agency for Local Authority Information Systems"
    cps_uri: str | None = "http://jpki.test.invalid/cps.html"
    crl_base_url: str = "http://jpki.test.invalid"
    ocsp_base_url: str = "http://jpki.test.invalid/ocsp"
    key_type: KeyType = KeyType.RSA_2048
    partitioned_crls: bool = True
    issuer_alt_organization: str | None = "公的個人認証サービス（テスト）"
    crldp_unit: str = "CRL Distribution Points"

    @classmethod
    def production_shaped(cls, **changes: object) -> JpkiProfile:
        base = cls(
            arc=PRODUCTION_ARC,
            organization="JPKI",
            cps_uri="http://www.jpki.go.jp/cps.html",
            issuer_alt_organization="公的個人認証サービス",
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def ca_unit(self, purpose: Purpose) -> str:
        return self.sign_ca_unit if purpose is Purpose.SIGN else self.auth_ca_unit

    def root_name(self, purpose: Purpose) -> x509.Name:
        """`C=JP, O=JPKI, OU=<purpose unit>, OU=Japan Agency for Local Authority ...`"""
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, self.country),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.ca_unit(purpose)),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.agency_unit),
            ]
        )

    def crldp_name(self, partition: CrlPartition) -> x509.Name:
        """`C=JP, O=JPKI, OU=CRL Distribution Points, OU=<prefecture>, CN=<municipality> CRLDP`."""
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, self.country),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.crldp_unit),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, partition.prefecture),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{partition.municipality} CRLDP"),
            ]
        )

    def crl_uri(self, purpose: Purpose, partition: CrlPartition | None) -> str:
        """HTTP URL of the CRL: `<base>/crl/<sign|auth>/<code>.crl`, or `<base>/crl/<slot>.crl`."""
        base = self.crl_base_url.rstrip("/")
        if partition is None:
            return f"{base}/crl/{purpose.value}.crl"
        return f"{base}/crl/{purpose.value}/{partition.code}.crl"

    def crl_distribution_names(
        self, purpose: Purpose, partition: CrlPartition | None
    ) -> list[x509.GeneralName]:
        """The names of one distribution point: the directory name (partitioned only) and URI."""
        names: list[x509.GeneralName] = []
        if partition is not None:
            names.append(x509.DirectoryName(self.crldp_name(partition)))
        names.append(x509.UniformResourceIdentifier(self.crl_uri(purpose, partition)))
        return names

    def partition_of(self, municipality: Municipality) -> CrlPartition | None:
        """The CRL partition a holder of `municipality` falls in (None: one CRL per root)."""
        return municipality if self.partitioned_crls else None
