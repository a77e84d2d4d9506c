"""Mitra management in the control center: create, search, filter, edit, online logs, permissions."""

from __future__ import annotations

from falcon import testing

from tests.conftest import bearer


def test_create_list_get_edit(internal: testing.TestClient, public, cc_login, services) -> None:
    _, token, _ = cc_login("admin")
    created = internal.simulate_post(
        "/internal/mitras", headers=bearer(token), json={"phone": "0812-1111-2222", "display_name": "Bestie Rina"}
    )
    assert created.status_code == 201, created.text
    mitra = created.json["data"]
    assert set(mitra) == {"id", "phone", "display_name", "is_active", "is_online", "created_at"}
    assert mitra["phone"] == "+6281211112222"
    assert mitra["is_active"] is True
    assert mitra["is_online"] is False
    dup = internal.simulate_post(
        "/internal/mitras", headers=bearer(token), json={"phone": "+6281211112222", "display_name": "Dup"}
    )
    assert dup.status_code == 409
    bad = internal.simulate_post("/internal/mitras", headers=bearer(token), json={"phone": "123", "display_name": "X"})
    assert bad.status_code == 422
    for i in range(3):
        internal.simulate_post(
            "/internal/mitras", headers=bearer(token), json={"phone": f"+628133300000{i}", "display_name": f"Sari {i}"}
        )
    found = internal.simulate_get("/internal/mitras", headers=bearer(token), params={"q": "sari"}).json["data"]
    assert [m["display_name"] for m in found["items"]] == ["Sari 2", "Sari 1", "Sari 0"]
    by_phone = internal.simulate_get("/internal/mitras", headers=bearer(token), params={"q": "11112222"}).json["data"]
    assert [m["id"] for m in by_phone["items"]] == [mitra["id"]]
    first = internal.simulate_get("/internal/mitras", headers=bearer(token), params={"limit": 2}).json["data"]
    rest = internal.simulate_get(
        "/internal/mitras", headers=bearer(token), params={"limit": 2, "cursor": first["next_cursor"]}
    ).json["data"]
    ids = [m["id"] for m in first["items"] + rest["items"]]
    assert len(ids) == len(set(ids)) == 4
    assert rest["has_more"] is False
    like = internal.simulate_get("/internal/mitras", headers=bearer(token), params={"q": "%"}).json["data"]
    assert like["items"] == []  # LIKE wildcards are searched literally
    edited = internal.simulate_patch(
        f"/internal/mitras/{mitra['id']}", headers=bearer(token), json={"display_name": "Bestie Rina A."}
    )
    assert edited.json["data"]["display_name"] == "Bestie Rina A."
    got = internal.simulate_get(f"/internal/mitras/{mitra['id']}", headers=bearer(token))
    assert got.json["data"]["display_name"] == "Bestie Rina A."


def test_online_filter_and_logs(internal: testing.TestClient, public, cc_login, mitra_login) -> None:
    _, token, _ = cc_login("operator")
    on, on_token = mitra_login(name="on")
    off, _ = mitra_login(name="off")
    public.simulate_post("/api/mitra/status/online", headers=bearer(on_token))
    public.simulate_post("/api/mitra/status/offline", headers=bearer(on_token))
    public.simulate_post("/api/mitra/status/online", headers=bearer(on_token))
    online = internal.simulate_get("/internal/mitras", headers=bearer(token), params={"online": "true"}).json["data"]
    offline = internal.simulate_get("/internal/mitras", headers=bearer(token), params={"online": "false"}).json["data"]
    assert [m["id"] for m in online["items"]] == [str(on["id"])]
    assert [m["id"] for m in offline["items"]] == [str(off["id"])]
    logs = internal.simulate_get(
        f"/internal/mitras/{on['id']}/online-logs", headers=bearer(token), params={"limit": 2}
    ).json["data"]
    assert [(x["is_online"], x["reason"]) for x in logs["items"]] == [(True, "manual"), (False, "manual")]
    assert logs["has_more"] is True
    more = internal.simulate_get(
        f"/internal/mitras/{on['id']}/online-logs", headers=bearer(token), params={"cursor": logs["next_cursor"]}
    ).json["data"]
    assert [(x["is_online"], x["reason"]) for x in more["items"]] == [(True, "manual")]
    missing = internal.simulate_get(
        "/internal/mitras/00000000-0000-4000-8000-000000000000/online-logs", headers=bearer(token)
    )
    assert missing.status_code == 404


def test_mitra_permissions(internal: testing.TestClient, anonymous) -> None:
    app_token = anonymous()["access_token"]
    assert internal.simulate_get("/internal/mitras", headers=bearer(app_token)).status_code == 401
    assert internal.simulate_get("/internal/mitras").status_code == 401
