"""Two test runs at once on one machine never share a Valkey database or an embedded server's data
directory (tests/claims.py): what this run holds is refused to any other claimant until released."""

from __future__ import annotations

from pathlib import Path

from tests.claims import claim_dir, claim_valkey_db


def test_a_held_valkey_database_goes_to_no_one_else(valkey_url: str) -> None:
    base, _, mine = valkey_url.rpartition("/")
    other, held = claim_valkey_db(base, int(mine))  # as another run's worker with our preference would
    try:
        assert other != int(mine)
        assert 1 <= other <= 15
        again, held_again = claim_valkey_db(base, other)
        assert again not in (other, int(mine))
        held_again.close()
    finally:
        held.close()


def test_a_held_data_directory_goes_to_no_one_else(tmp_path: Path) -> None:
    first, held = claim_dir(tmp_path / "test-pg-gw0")
    second, held_second = claim_dir(tmp_path / "test-pg-gw0")
    assert first == tmp_path / "test-pg-gw0"
    assert second == tmp_path / "test-pg-gw0-2"
    held.close()
    third, held_third = claim_dir(tmp_path / "test-pg-gw0")
    assert third == first
    held_second.close()
    held_third.close()
