"""Deactivating a mitra: offline, revoked, out of availability."""

from __future__ import annotations

from falcon import testing

from lib.presence.availability import find_available_mitras
from lib.presence.keys import DEACTIVATED
from lib.services import Services
from tests.conftest import bearer
from tests.helpers import MITRA_STATUS as STATUS
from tests.helpers import go_online, online_logs


def test_deactivation_end_to_end(
    public: testing.TestClient, internal, services: Services, mitra_login, cc_login
) -> None:
    mitra, token = mitra_login()
    go_online(public, token)
    _, admin, _ = cc_login("operator")  # operators hold mitras.manage
    result = internal.simulate_patch(
        f"/internal/mitras/{mitra['id']}/status", headers=bearer(admin), json={"is_active": False}
    )
    assert result.status_code == 200
    assert result.json["data"]["is_active"] is False
    assert result.json["data"]["is_online"] is False
    assert online_logs(services, mitra["id"])[-1] == (False, "deactivation")
    beat = public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token))
    assert beat.status_code == 401  # its sessions are revoked
    assert services.valkey.sismember(DEACTIVATED, str(mitra["id"])) == 1
    assert find_available_mitras(services.db, services.valkey, services.config) == []
    again = internal.simulate_patch(
        f"/internal/mitras/{mitra['id']}/status", headers=bearer(admin), json={"is_active": True}
    )
    assert again.json["data"]["is_active"] is True
    assert services.valkey.sismember(DEACTIVATED, str(mitra["id"])) == 0
