"""Two sagas never take the same standby, even at the same instant: the claim is a database guarantee
(primary key on standby_claim.ip_id), exercised on PostgreSQL with real concurrent transactions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from activities.failover import ClaimRequest, StandbyQuery, claim_standby, release_standby, standby_candidates
from models.settings import get_settings
from tests import failover_support as fs
from tests.conftest import _truncate


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = request.getfixturevalue("postgres_url")
    _truncate(url)
    monkeypatch.setenv("EMAIL_ENGINE_DATABASE_URL", url)
    monkeypatch.setenv("EMAIL_ENGINE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    fs.seed(url)
    yield url
    get_settings.cache_clear()


def test_one_claim_wins_among_simultaneous_claims(pg_url: str) -> None:
    n = 16
    for round_ in range(5):
        barrier = threading.Barrier(n)

        def claim(i: int, r: int = round_, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return claim_standby(ClaimRequest("127.0.40.21", f"failover/fo-a/x{r}-{i}"), pg_url)

        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(claim, range(n)))
        assert results.count(True) == 1, results
        winner = f"failover/fo-a/x{round_}-{results.index(True)}"
        assert fs.claims(pg_url) == [winner]
        assert claim_standby(ClaimRequest("127.0.40.21", winner), pg_url)  # idempotent for the holder
        assert not release_standby(ClaimRequest("127.0.40.21", "failover/fo-a/other"), pg_url)
        assert release_standby(ClaimRequest("127.0.40.21", winner), pg_url)
        assert fs.claims(pg_url) == []


def test_concurrent_sagas_of_one_tenant_get_distinct_standbys(pg_url: str) -> None:
    n = 8  # eight sagas, two standbys in fo-a
    barrier = threading.Barrier(n)

    def saga(i: int) -> str | None:
        wid = f"failover/fo-a/127.0.40.{100 + i}"
        candidates = standby_candidates(StandbyQuery("fo-a", "127.0.40.11"), pg_url)
        barrier.wait()  # all of them saw the same candidates; now they race for them
        for cand in candidates:
            if claim_standby(ClaimRequest(cand, wid), pg_url):
                return cand
        return None

    with ThreadPoolExecutor(n) as pool:
        got = [g for g in pool.map(saga, range(n)) if g is not None]
    assert sorted(got) == ["127.0.40.21", "127.0.40.22"]
    assert len(fs.claims(pg_url)) == 2
    # claimed standbys are no longer candidates
    assert standby_candidates(StandbyQuery("fo-a", "127.0.40.11"), pg_url) == []


def test_claim_refused_once_the_ip_left_standby(pg_url: str) -> None:
    assert not claim_standby(ClaimRequest("127.0.40.12", "failover/fo-a/y"), pg_url)  # active, not standby
    assert fs.claims(pg_url) == []
