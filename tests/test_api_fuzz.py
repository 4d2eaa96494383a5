"""Schema-driven fuzzing of the services (issue 8 item 4): schemathesis generates requests
from the app's own OpenAPI document, sent in-process (ASGI) with a valid operator token.
No answer is a 5xx, every 4xx is ``application/problem+json`` with the RFC 9457 members,
and every answer is the one the document promises (schemathesis's conformance checks: a
documented status, media type, body schema and required headers), so that a client
generated from the document reads what it is sent. Bounded: 20 examples per operation,
no deadline (times ``MCRED_FUZZ_SCALE``, tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from conftest import fuzz_scale
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.service import create_app

# the TSA's query (RFC 3161 3.4) is DER bytes: sent as schemathesis sends any binary body
schemathesis.serializer.alias("application/timestamp-query", "application/octet-stream")
# ... and so is the OCSP request (RFC 6960 A.1)
schemathesis.serializer.alias("application/ocsp-request", "application/octet-stream")
# ... and the reader's bodies it reads itself: CBOR (ISO/IEC 18013-5 messages, an IssuerSigned),
# a signed PDF or XML document (bytes to the relying party, whatever they hold)
for media in ("application/cbor", "application/pdf", "application/xml", "text/xml"):
    schemathesis.serializer.alias(media, "application/octet-stream")


#: What a client generated from the document relies on: the status is one it declares, the
#: media type one it names for that status, the body valid against that status's schema, and
#: every header it declares required (``Location`` of a 201 or a 202) present and well-formed.
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance,
               response_headers_conformance]


def problem_json_on_4xx(ctx, response, case) -> None:  # noqa: ANN001 - schemathesis check
    if 400 <= response.status_code < 500:
        media = response.headers.get("content-type", [""])
        media = media[0] if isinstance(media, list) else media
        assert media.startswith("application/problem+json"), (
            f"{case.method} {case.path} -> {response.status_code} as {media!r}")
        if case.method.upper() == "HEAD":  # the GET's problem, its headers alone (RFC 9110 9.3.2)
            assert response.content == b"", f"HEAD {case.path} -> {response.status_code} with content"
            return
        body = json.loads(response.content)
        assert {"type", "title", "status", "detail"} <= body.keys(), body
        assert body["status"] == response.status_code
        assert "Traceback" not in response.text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_5xx_and_every_4xx_is_problem_json(home: Path, db_url: str, mode: GenerationMode):
    """On both backends: PostgreSQL refuses what SQLite keeps (a string longer than its
    column), so a value that reaches the database unchecked is a 500 there only. That is
    what the positive mode sends (values the schema allows, up to its bounds); the negative
    mode's values are refused by the request validation before any database is reached, so
    it runs on SQLite only (it took 17 s on PostgreSQL for the same verdicts)."""
    if mode is GenerationMode.NEGATIVE and not db_url.startswith("sqlite"):
        pytest.skip("negative cases stop at the request validation, before the database: run on SQLite")
    ctx = Context.open(home, db_url)
    app = create_app(ctx, job_workers=2)
    token = create_token(ctx.sessions, ["operator"], "schemathesis")[1]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20

    doc = app.openapi()

    def breakable(op) -> bool:  # noqa: ANN001
        spec = doc["paths"][op.path][op.method.lower()]
        return bool(spec.get("parameters") or spec.get("requestBody"))

    if mode is GenerationMode.NEGATIVE:
        # Nothing to negate in an operation without parameters or a body.
        operations = [op for op in operations if breakable(op)]
    skipped: list[str] = []
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20 * fuzz_scale(), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):  # noqa: ANN001
            case.call_and_validate(headers=headers,
                                   checks=[not_a_server_error, problem_json_on_4xx, *CONFORMANCE])

        try:
            run()
        except Unsatisfiable:
            # Negative mode on an operation with nothing to break (no parameters, no body).
            assert mode is GenerationMode.NEGATIVE, operation.label
            skipped.append(operation.label)
    assert len(skipped) < len(operations) // 2, skipped
    app.state.jobs.shutdown()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_reader_service_no_5xx_and_every_4xx_is_problem_json(mode: GenerationMode):
    """The stand-alone reader (``mcred reader serve``: mdoc sessions and the JPKI relying
    party) under the same schema-driven fuzzing: no 5xx, problem+json on every 4xx."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from mcred.present import reader_app, reader_pipeline
    from reader.http import ReaderService
    from reader.relying_party import RelyingPartyService
    from reader.session import DEFAULT_REQUEST
    from reader.trust import TrustStore

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz root")])
    now = dt.datetime.now(dt.UTC)
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    app = reader_app(ReaderService(reader_pipeline(trust=TrustStore()), [DEFAULT_REQUEST],
                                   origin="https://rp.example"),  # the online (Annex C) routes too
                     RelyingPartyService([root]))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 4
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25 * fuzz_scale(), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):  # noqa: ANN001
            case.call_and_validate(checks=[not_a_server_error, problem_json_on_4xx, *CONFORMANCE])

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label


def _reader_app_for_docs():
    from mcred.present import reader_app, reader_pipeline
    from reader.http import ReaderService
    from reader.session import DEFAULT_REQUEST
    from reader.trust import TrustStore

    return reader_app(ReaderService(reader_pipeline(trust=TrustStore()), [DEFAULT_REQUEST], origin="https://rp.example"))


def test_every_operation_declares_its_refusals_and_no_default(home: Path):
    """Each operation of both documents lists the statuses it answers and no ``default``
    ("any other refusal"), which let the status conformance above take any 4xx: every
    error response is a problem (RFC 9457), 500 the one generic response of components."""
    for app in (create_app(Context.open(home), job_workers=1), _reader_app_for_docs()):
        doc = app.openapi()
        assert doc["components"]["responses"]["InternalError"]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                responses = op["responses"]
                assert "default" not in responses, (method, path)
                assert responses["500"] == {"$ref": "#/components/responses/InternalError"}, (method, path)
                for status, response in responses.items():
                    if status[0] in "45" and status != "500":
                        assert set(response["content"]) == {"application/problem+json"}, (method, path, status)
                        assert response["description"].startswith("/problems/"), (method, path, status)
                if op.get("security"):
                    assert {"401", "403", "503"} <= responses.keys(), (method, path)


def test_the_status_conformance_fails_on_a_refusal_the_document_does_not_declare():
    """The check the fuzz relies on: the reader's POST /online/sessions answers 409 when it
    cannot open a cross-device session; without its declared 409 the conformance fails."""
    app = _reader_app_for_docs()
    del app.openapi()["paths"]["/online/sessions"]["post"]["responses"]["409"]
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)["/online/sessions"]["POST"]
    case = operation.Case(query={"protocol": "openid4vp-cross-device"})
    response = case.call()
    assert response.status_code == 409
    from schemathesis.openapi.checks import UndefinedStatusCode

    with pytest.raises(BaseExceptionGroup, match="distinct failure") as raised:
        case.validate_response(response, checks=[status_code_conformance])
    assert [type(e) for e in raised.value.exceptions] == [UndefinedStatusCode]
    declared = schemathesis.openapi.from_asgi("/openapi.json", _reader_app_for_docs())["/online/sessions"]["POST"]
    case = declared.Case(query={"protocol": "openid4vp-cross-device"})
    case.validate_response(case.call(), checks=[status_code_conformance])  # as served: declared
