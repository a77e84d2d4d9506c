"""CORS on the internal listener for the control center's origin only."""

from __future__ import annotations

from falcon import testing

from tests.conftest import CC_ORIGIN

LOGIN = "/internal/auth/login"


def test_cors_preflight_for_the_control_center(internal: testing.TestClient) -> None:
    result = internal.simulate_options(
        LOGIN,
        headers={
            "Origin": CC_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert result.headers["Access-Control-Allow-Origin"] == CC_ORIGIN
    assert result.headers["Access-Control-Allow-Credentials"] == "true"
    other = internal.simulate_options(
        LOGIN, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers
