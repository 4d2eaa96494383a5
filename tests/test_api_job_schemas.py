"""The API's jobs as the OpenAPI document declares them: one schema per job kind, a union
discriminated by ``kind`` (``GET /jobs/{id}``, ``GET /jobs``), each route that makes a job
declaring its 202 as its kind's schema, each kind's ``params`` and ``result`` closed objects
that name their members. Before, every job was one schema whose ``params`` and ``result``
were any object: a client generated from the document got untyped blobs and could not know
what a provisioning returns."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from conftest import reveals
from fastapi.testclient import TestClient

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.service import create_app

HOLDER = {"family_name": "型付", "given_name": "花子", "family_name_kana": "カタツキ",
          "given_name_kana": "ハナコ", "birth_date": "1988-08-08", "sex": 2,
          "address": "福岡県福岡市中央区1-1", "prefecture": "福岡県", "municipality": "福岡市"}

#: The kind of job each route makes, and members its result names (a sample: the schema
#: names every member, closed).
KINDS = {
    "provision": ("POST", "/provisioning", {"tsm_job_id", "holder_id", "mdocs", "sign_certificate",
                                            "auth_certificate"}),
    "pin-reset": ("POST", "/pin-resets", {"phone", "job", "reset"}),
    "mdoc-refresh": ("POST", "/mdoc-refreshes", {"issued", "superseded", "rotated_keys"}),
    "issue-sign": ("POST", "/sign-issuances", {"tsm_job_id", "holder_id", "resumed", "sign_certificate"}),
    "renew-jpki": ("POST", "/certificate-renewals", {"tsm_job_id", "holder_id", "resumed", "renewed",
                                                     "sign_withheld"}),
    "tsm-resume": ("POST", "/tsm-jobs/{job_id}/resume", set()),  # a result of the kind it resumes
    "tsm-abandon": ("POST", "/tsm-jobs/{job_id}/abandon", {"revoked", "wipe_job", "wiped", "released_holder"}),
    "kloc-move": ("POST", "/kloc-moves", {"kloc", "old_ca_ski", "ca_ski"}),
    "handover": ("POST", "/handovers/{handover_id}/run", {"handover_id", "state",
                                                          "new_phones_with_generated_secrets"}),
    "card-renewal": ("POST", "/holders/{holder_id}/card-renewals", {"handover_id", "step", "state"}),
    "drill": ("POST", "/drills", {"scenario", "passed", "subjects", "propagation_s"}),
    "mdoc-reissue": ("POST", "/mdoc-reissues", {"signer", "done", "phones"}),
}
SECRET_NAMES = {"pin", "password", "puk", "puk_value", "holder"}


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("doc")
    return create_app(Context.open(home), job_workers=1).openapi()


def _schema(doc: dict, ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def _refs(schema: dict) -> list[str]:
    """The component names a (nullable) member refers to."""
    options = schema.get("anyOf", [schema])
    return [o["$ref"].rsplit("/", 1)[1] for o in options if "$ref" in o]


def _answer(doc: dict, method: str, path: str, status: str) -> dict:
    return _schema(doc, doc["paths"][path][method.lower()]["responses"][status]["content"]["application/json"]["schema"])


def test_the_routes_make_exactly_the_kinds_the_document_declares():
    """Every ``jobs.submit("<kind>", ...)`` of the composition root has its schema: a kind
    added without one fails here, not in a client."""
    source = (Path(__file__).parents[1] / "mcred" / "api_routes.py").read_text()
    made = set(re.findall(r"jobs\.submit\(\s*\"([a-z-]+)\"", source))
    assert made == set(KINDS)


def test_a_job_is_one_schema_per_kind_discriminated_by_kind(document):
    doc = document
    job = doc["components"]["schemas"]["Job"]
    assert job["discriminator"]["propertyName"] == "kind"
    mapping = job["discriminator"]["mapping"]
    assert set(mapping) == set(KINDS)
    assert sorted(o["$ref"] for o in job["oneOf"]) == sorted(mapping.values())
    assert _answer(doc, "GET", "/jobs/{job_id}", "200")["title"] == "Job"
    listed = _answer(doc, "GET", "/jobs", "200")
    assert listed["properties"]["jobs"]["items"] == {"$ref": "#/components/schemas/Job"}
    for kind, (method, path, names) in KINDS.items():
        variant = _schema(doc, {"$ref": mapping[kind]})
        assert variant["properties"]["kind"]["const"] == kind
        assert variant["additionalProperties"] is False
        # the route that makes it declares its 202 as this kind alone (a holder's renewal: under "job")
        accepted = _answer(doc, method, path, "202")
        if "job" in accepted.get("properties", {}):
            accepted = _schema(doc, accepted["properties"]["job"])
        assert accepted == variant, (kind, path)
        (params,) = _refs(variant["properties"]["params"])
        params = doc["components"]["schemas"][params]
        assert params["additionalProperties"] is False and params["properties"], kind
        results = [doc["components"]["schemas"][r] for r in _refs(variant["properties"]["result"])]
        assert results and all(r["additionalProperties"] is False for r in results), kind
        assert {"type": "null"} in variant["properties"]["result"]["anyOf"]  # before it succeeds
        if names:
            (result,) = results
            assert names <= set(result["properties"]) and names <= set(result["required"]), (kind, result)
    # a resumed TSM job's result is the one of the kind it resumes
    resumed = _schema(doc, {"$ref": mapping["tsm-resume"]})
    assert set(_refs(resumed["properties"]["result"])) == {
        "ProvisionJobResult", "MdocRefreshJobResult", "PinResetJobResult", "IssueSignJobResult", "RenewJobResult"}


def test_no_job_schema_has_room_for_a_secret(document):
    """Closed objects all the way down, and a member named after a secret is a flag (the
    pin reset's ``puk``: whether it was reset), never a value."""
    doc = document
    schemas = doc["components"]["schemas"]
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        schema = schemas[name]
        for member, sub in schema.get("properties", {}).items():
            if member in SECRET_NAMES:
                assert sub.get("type") == "boolean" or sub.get("enum") == ["inline"] or any(
                    o.get("const") == "inline" or o.get("enum") == ["inline"] for o in sub.get("anyOf", [])), (
                    f"{name}.{member}: {sub}")
            for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(sub)):
                walk(ref)

    for variant in schemas["Job"]["discriminator"]["mapping"].values():
        walk(variant.rsplit("/", 1)[1])
    closed = {n for n in seen if schemas[n].get("type") == "object" and "properties" in schemas[n]}
    assert closed and all(schemas[n]["additionalProperties"] is False for n in closed), sorted(closed)


def test_the_tsm_jobs_kinds_and_states_are_the_tsms():
    from mcred.api_models import TsmKind, TsmState
    from tsm.jobs import KINDS as TSM_KINDS
    from tsm.jobs import STATES

    assert get_args(TsmKind) == TSM_KINDS and get_args(TsmState) == STATES


def _wait(c: TestClient, h: dict, job_id: str) -> dict:
    from test_api_flows import _wait as wait

    return wait(c, h, job_id, limit_s=60)


def test_the_kinds_no_other_checked_flow_makes_answer_as_declared(home: Path, every_answer_checked: list[str]):
    """A PIN reset, a holder's change (a handover job), a card renewal and a drill, every
    answer held to the document (tests/test_api_flows.py, tests/test_api_tsm_jobs.py,
    tests/test_seram.py and tests/test_tsm_kloc_rotation.py hold the other kinds'), and each
    job read back as its kind's model; no secret the requests gave is in any job."""
    from mcred.api_models import Job

    ctx = Context.open(home)
    tok = {s: {"Authorization": f"Bearer {create_token(ctx.sessions, [s])[1]}"} for s in ("tsm", "issuer", "operator")}
    secrets = {"pin": "4826", "password": "SCHEMA7", "puk": "70315264"}
    renewed = {"pin": "5937", "password": "RENEW88", "puk": "81426375"}
    with TestClient(create_app(ctx, job_workers=2)) as c:
        r = c.post("/drills", headers=tok["operator"], json={"scenario": "death", "phones": 1})
        assert r.status_code == 202, r.text
        done = [_wait(c, tok["operator"], r.json()["id"])]
        phone = c.post("/phones", headers=tok["tsm"], json={"model": "typed"}).json()["id"]
        r = c.post("/provisioning", headers=tok["issuer"], json={
            "phone_id": phone, "holder": HOLDER, "key_type": "p384", "mdoc_batch": 1,
            "pin": "1111", "password": "FIRST11", "puk": "11112222"})
        done.append(_wait(c, tok["issuer"], r.json()["id"]))
        holder_id = done[-1]["result"]["holder_id"]
        r = c.post("/pin-resets", headers=tok["issuer"], json={"phone_id": phone, "slots": ["auth", "sign"], **secrets})
        assert r.status_code == 202, r.text
        done.append(_wait(c, tok["issuer"], r.json()["id"]))
        assert done[-1]["result"]["reset"] == ["auth", "sign", "puk"], done[-1]
        r = c.post(f"/holders/{holder_id}/changes", headers=tok["operator"],
                   json={"reason": "転居", "address": "福岡県福岡市博多区2-2"})
        assert r.status_code == 202, r.text
        done.append(_wait(c, tok["operator"], r.json()["job"]["id"]))
        r = c.post(f"/holders/{holder_id}/card-renewals", headers=tok["operator"], json={"reason": "更新", **renewed})
        assert r.status_code == 202, r.text
        done.append(_wait(c, tok["operator"], r.json()["job"]["id"]))
        listed = c.get("/jobs", headers=tok["operator"]).json()["jobs"]
    assert [j["kind"] for j in done] == ["drill", "provision", "pin-reset", "handover", "card-renewal"]
    assert all(j["state"] == "succeeded" for j in done), [j["error"] for j in done]
    assert {j["id"] for j in done} <= {j["id"] for j in listed}
    for j in listed:
        model = Job.model_validate(j).root
        assert model.kind == j["kind"] and type(model).__name__.endswith("Job"), j
        for secret in (*secrets.values(), *renewed.values(), "FIRST11", "11112222"):
            assert not reveals(json.dumps(j, ensure_ascii=False), secret), (j["kind"], secret)
    assert {"GET /jobs/{job_id} 200", "GET /jobs 200", "POST /pin-resets 202", "POST /holders/{holder_id}/changes 202",
            "POST /holders/{holder_id}/card-renewals 202", "POST /drills 202"} <= set(every_answer_checked)


def test_jobs_are_listed_by_a_kind_the_document_names(document, home: Path, every_answer_checked: list[str]):
    """``GET /jobs?kind=`` took any string: a typo (``provisioning``) was an empty list, as
    if no such job had been made. Its kinds are the union's (one list, :data:`JobKind`), the
    document names them, and another is a 422 problem naming the ones there are."""
    (param,) = [p for p in document["paths"]["/jobs"]["get"]["parameters"] if p["name"] == "kind"]
    (enum,) = [o["enum"] for o in param["schema"]["anyOf"] if "enum" in o]
    assert set(enum) == set(document["components"]["schemas"]["Job"]["discriminator"]["mapping"]) == set(KINDS)
    ctx = Context.open(home)
    h = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    with TestClient(create_app(ctx, job_workers=1)) as c:
        assert c.get("/jobs", params={"kind": "drill"}, headers=h).json()["jobs"] == []
        r = c.get("/jobs", params={"kind": "provisioning"}, headers=h)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert "query.kind" in r.json()["detail"] and all(f"'{k}'" in r.json()["detail"] for k in KINDS), r.text
    assert {"GET /jobs 200", "GET /jobs 422"} <= set(every_answer_checked)
