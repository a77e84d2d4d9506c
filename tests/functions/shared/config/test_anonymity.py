"""GET /api/shared/config/anonymity: what the apps show about anonymity, from the operators' settings."""

from __future__ import annotations

from falcon import testing

from lib.config.app import set_values
from lib.services import Services
from tests.conftest import bearer

ANONYMITY = "/api/shared/config/anonymity"


def test_anonymity_config_follows_the_operators_settings(
    public: testing.TestClient, services: Services, anonymous
) -> None:
    before = public.simulate_get(ANONYMITY)  # the apps read it before sign-in
    assert before.status_code == 200, before.text
    assert before.json["data"] == {
        "call_name_fallback": "Anonim",
        "sensitive_flip_confirmation_enabled": True,
        "sensitive_flag_one_way_latch": False,
    }
    set_values(
        services.db,
        services.bus,
        {"sensitive_flip_confirmation_enabled": False, "sensitive_flag_one_way_latch": True},
        None,
    )
    services.config.invalidate()
    after = public.simulate_get(ANONYMITY, headers=bearer(anonymous()["access_token"]))
    assert after.json["data"]["sensitive_flip_confirmation_enabled"] is False
    assert after.json["data"]["sensitive_flag_one_way_latch"] is True
    # The fallback is the call name a mitra really sees for a customer without one.
    assert anonymous()["user"]["call_name"] == after.json["data"]["call_name_fallback"]
    assert public.simulate_post(ANONYMITY).status_code == 405
