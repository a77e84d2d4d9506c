"""Control-center user records: the CLI and the seed share the rules."""

from __future__ import annotations

from lib.services import Services


def test_create_cc_user_cli_and_seed_share_the_rules(services: Services) -> None:
    from lib.cc_users import seed_admin

    assert seed_admin(services.db, "root@halobestie.test", "a seeded admin password") is not None
    assert seed_admin(services.db, "root@halobestie.test", "a seeded admin password") is None
