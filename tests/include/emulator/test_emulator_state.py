"""The emulator's in-memory model without HTTP: PATCH/PUT semantics, metaData merge vs replace, the
buzz rule, Google's quota on the emulator clock, settings validation, JWT checks, dice and stats."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest

from passpush.emulator.state import (
    BASE62,
    ApiError,
    Authenticator,
    EmulatorState,
    LoopStalls,
    Settings,
    SettingsError,
    Stats,
    TokenBucket,
)

pytestmark = pytest.mark.emulator

PROGRAM = "prog-state"
SECRET = "state-test-secret-0123456789abcdef"


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState(Settings(seed=7))


def enrol(state: EmulatorState, external_id: str, **fields: object) -> str:
    body = {"externalId": external_id, "programId": PROGRAM, "tierId": "base", **fields}
    return state.enrol(body).id


def update(state: EmulatorState, external_id: str, **fields: object) -> None:
    state.update_member({"externalId": external_id, "programId": PROGRAM, **fields})


def offer(state: EmulatorState, external_id: str, text: str) -> None:
    update(state, external_id, metaData={"marketingMessage": text})


def texts(state: EmulatorState) -> list[str | None]:
    return [event.text for event in state.notifications()]


# ---- enrol and lookups ------------------------------------------------------------------------


def test_enrol_generates_passkit_like_ids_and_auto_creates_the_program(state: EmulatorState) -> None:
    member_id = enrol(state, "C1", metaData={"tier": "gold"})
    assert len(member_id) == 22 and set(member_id) <= set(BASE62)
    assert state.get_by_external(PROGRAM, "C1").id == member_id
    assert state.programs[PROGRAM].template == {"meta.marketingMessage": "%@"}
    assert state.get_by_id(member_id).to_json()["status"] == "ENROLLED"


@pytest.mark.parametrize("missing", ["programId", "tierId"])
def test_enrol_requires_program_and_tier(state: EmulatorState, missing: str) -> None:
    body = {"externalId": "C1", "programId": PROGRAM, "tierId": "base"}
    del body[missing]
    with pytest.raises(ApiError) as err:
        state.enrol(body)
    assert err.value.status == 400


def test_enrol_duplicate_external_id_is_409_and_bulk_is_all_or_nothing(state: EmulatorState) -> None:
    enrol(state, "C1")
    with pytest.raises(ApiError) as err:
        enrol(state, "C1")
    assert err.value.status == 409
    with pytest.raises(ApiError) as err:
        state.enrol_many([{"externalId": "C2", "programId": PROGRAM, "tierId": "base"},
                          {"externalId": "C2", "programId": PROGRAM, "tierId": "base"}])
    assert err.value.status == 409 and "record 1" in err.value.message
    assert len(state.members) == 1


def test_unknown_member_is_404_and_missing_identification_is_400(state: EmulatorState) -> None:
    with pytest.raises(ApiError) as err:
        update(state, "nobody", points=5)
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        state.update_member({"externalId": "C1", "points": 5})
    assert err.value.status == 400


def test_fail_members_forces_a_status_by_external_id_or_passkit_id(state: EmulatorState) -> None:
    member_id = enrol(state, "C1")
    enrol(state, "C2")
    state.configure({"fail_members": {"C1": 404, "C2": 500}})
    for call in (lambda: state.get_by_id(member_id), lambda: offer(state, "C2", "x")):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status in (404, 500)
    assert state.stats.faults["fail_members"] == 2
    assert state.programs[PROGRAM].by_external_id["C2"].meta_data == {}  # not applied


# ---- PATCH / PUT semantics ----------------------------------------------------------------------


def test_patch_ignores_missing_and_falsey_values(state: EmulatorState) -> None:
    enrol(state, "C1", points=50, tierPoints=3, metaData={"tier": "gold"}, person={"forename": "Ann"})
    update(state, "C1", points=0, tierId="", tierPoints=0, metaData={"tier": ""}, person={"forename": ""},
           status="")
    member = state.get_by_external(PROGRAM, "C1")
    assert (member.points, member.tier_id, member.tier_points) == (50.0, "base", 3)
    assert member.meta_data == {"tier": "gold"} and member.person == {"forename": "Ann"}
    update(state, "C1", points=75.5, status="ACTIVE")
    assert (member.points, member.status) == (75.5, "ACTIVE")


def test_set_points_can_set_zero(state: EmulatorState) -> None:
    enrol(state, "C1", points=50)
    member = state.set_points({"externalId": "C1", "programId": PROGRAM, "points": 0})
    assert member.points == 0.0
    with pytest.raises(ApiError):
        state.set_points({"externalId": "C1", "programId": PROGRAM})


def test_operation_put_replaces_the_member(state: EmulatorState) -> None:
    enrol(state, "C1", points=50, metaData={"tier": "gold", "store": "12"}, person={"forename": "Ann"})
    update(state, "C1", operation="OPERATION_PUT", metaData={"tier": "silver"})
    member = state.get_by_external(PROGRAM, "C1")
    assert member.points == 0.0 and member.meta_data == {"tier": "silver"} and member.person == {}
    assert member.tier_id == "base"


def test_metadata_merge_keeps_other_keys(state: EmulatorState) -> None:
    enrol(state, "C1", metaData={"memberSince": "2024"})
    offer(state, "C1", "Hello")
    expected = {"memberSince": "2024", "marketingMessage": "Hello"}
    assert state.get_by_external(PROGRAM, "C1").meta_data == expected


def test_metadata_replace_mode_wipes_keys_not_sent(state: EmulatorState) -> None:
    state.configure({"metadata_mode": "replace"})
    enrol(state, "C1", metaData={"memberSince": "2024"})
    offer(state, "C1", "Hello")
    assert state.get_by_external(PROGRAM, "C1").meta_data == {"marketingMessage": "Hello"}


@pytest.mark.parametrize("body", [{"points": "ten"}, {"metaData": {"k": 1}}, {"metaData": ["k"]},
                                  {"status": "GONE"}, {"optOut": "yes"}, {"operation": "OPERATION_MERGE"}])
def test_wrongly_typed_fields_are_400(state: EmulatorState, body: dict[str, object]) -> None:
    enrol(state, "C1")
    with pytest.raises(ApiError) as err:
        update(state, "C1", **body)
    assert err.value.status == 400


# ---- buzz rule ----------------------------------------------------------------------------------


def test_apple_buzzes_once_per_changed_value_and_never_for_the_same_value(state: EmulatorState) -> None:
    enrol(state, "C1")
    offer(state, "C1", "Double points")
    offer(state, "C1", "Double points")
    update(state, "C1", metaData={"other": "x"}, points=10)  # changed, but no changeMessage field
    offer(state, "C1", "Triple points")
    assert texts(state) == ["Double points", "Triple points"]
    assert state.stats.apple_updates == 3 and state.stats.notifications == 2


def test_enrolled_value_equal_to_the_campaign_text_does_not_buzz(state: EmulatorState) -> None:
    enrol(state, "C1", metaData={"marketingMessage": "Same"})
    offer(state, "C1", "Same")
    assert texts(state) == []


def test_several_changed_fields_give_exactly_one_notification(state: EmulatorState) -> None:
    state.create_program({"id": PROGRAM, "template": {"meta.marketingMessage": "New offer: %@",
                                                      "points": "You now have %@ points"}})
    enrol(state, "C1", points=10)
    update(state, "C1", metaData={"marketingMessage": "Hi"}, points=20)
    state.set_points({"externalId": "C1", "programId": PROGRAM, "points": 0})
    assert texts(state) == ["New offer: Hi", "You now have 0 points"]


def test_google_updates_are_silent_and_capped_at_three_per_rolling_day(state: EmulatorState) -> None:
    member_id = enrol(state, "G1", wallet="google")
    for n in range(4):
        offer(state, "G1", f"offer {n}")
    assert texts(state) == []
    assert state.stats.silent_updates == 3 and state.stats.google_quota_exceeded == 1
    assert state.get_by_id(member_id).meta_data["marketingMessage"] == "offer 3"  # PassKit stored it
    state.clock.advance(12 * 3600)
    offer(state, "G1", "offer 4")
    assert state.stats.google_quota_exceeded == 2
    state.clock.advance(12 * 3600 + 1)
    offer(state, "G1", "offer 5")
    assert state.stats.silent_updates == 4
    kinds = [event.kind for event in state.notifications(kind="all")]
    assert kinds == ["silent"] * 3 + ["quota_exceeded"] * 2 + ["silent"]


def test_google_quota_status_can_be_an_error(state: EmulatorState) -> None:
    state.configure({"google_quota_status": 429, "google_quota_per_day": 1})
    enrol(state, "G1", wallet="google")
    offer(state, "G1", "one")
    with pytest.raises(ApiError) as err:
        offer(state, "G1", "two")
    assert err.value.status == 429 and "QuotaExceeded" in err.value.message


def test_google_notifies_switch(state: EmulatorState) -> None:
    state.configure({"google_notifies": True})
    enrol(state, "G1", wallet="google")
    offer(state, "G1", "Hi")
    assert texts(state) == ["Hi"]


def test_notification_summary_names_members_buzzed_twice(state: EmulatorState) -> None:
    for external_id in ("A", "B", "C"):
        enrol(state, external_id)
    offer(state, "A", "one")
    offer(state, "A", "two")
    offer(state, "B", "one")
    summary = state.notification_summary(PROGRAM)
    assert summary["total"] == 3 and summary["members"] == 2 and summary["max_per_member"] == 2
    assert [row["externalId"] for row in summary["per_member_over_1"]] == ["A"]
    assert state.notification_summary("other-program")["total"] == 0
    assert [e.text for e in state.notifications(external_id="A")] == ["one", "two"]


# ---- list and count -----------------------------------------------------------------------------


def test_list_and_count_with_filters(state: EmulatorState) -> None:
    for n in range(10):
        enrol(state, f"C{n}", points=n * 10, metaData={"city": "Leeds" if n % 2 else "York"})
    group = {"fieldFilters": [{"filterField": "points", "filterValue": "50", "filterOperator": "gte"},
                              {"filterField": "meta.city", "filterValue": "Leeds"}]}
    filters = {"filterGroups": [group], "limit": 2, "offset": 1}
    assert [m.external_id for m in state.list_members(PROGRAM, filters)] == ["C7", "C9"]
    assert state.count_members(PROGRAM, filters) == 3
    assert state.count_members("no-such-program", None) == 0
    with pytest.raises(ApiError):
        state.list_members(PROGRAM, {"filterGroups": [{"fieldFilters": [{"filterOperator": "eq"}]}]})


# ---- settings -----------------------------------------------------------------------------------


def test_settings_reject_unknown_names_and_bad_values() -> None:
    with pytest.raises(SettingsError, match="valid settings"):
        Settings().updated({"fault_404": 0.1})
    with pytest.raises(SettingsError, match="merge"):
        Settings().updated({"metadata_mode": "append"})
    with pytest.raises(SettingsError, match="add up"):
        Settings().updated({"fault_503": 0.6, "fault_500": 0.6})
    with pytest.raises(SettingsError):
        Settings().updated({"rate_limit_per_second": True})


def test_settings_coerce_cli_and_env_strings() -> None:
    settings = Settings().updated({"accept_bearer": "false", "fail_members": "C1=404,C2=503",
                                   "forbidden_keys": "k1,k2", "seed": "5", "fault_503": "0.25"})
    assert settings.accept_bearer is False and settings.fail_members == {"C1": 404, "C2": 503}
    assert settings.forbidden_keys == ["k1", "k2"] and settings.seed == 5 and settings.fault_503 == 0.25
    assert settings.public()["api_secret"] == "***"
    assert Settings().updated({"rate_limit_per_second": 100}).effective_burst() == 10


def test_reset_forgets_data_and_optionally_config(state: EmulatorState) -> None:
    enrol(state, "C1")
    state.configure({"error_shape": "grpc"})
    state.clock.advance(100)
    state.reset()
    assert not state.members and not state.programs and state.clock.offset == 0
    assert state.settings.error_shape == "grpc"
    state.reset(config=True)
    assert state.settings.error_shape == "legacy"


# ---- dice, bucket, stats ------------------------------------------------------------------------


def test_fault_dice_are_reproducible_after_reset(state: EmulatorState) -> None:
    state.configure({"fault_503": 0.3, "fault_drop": 0.2})
    first = [state.draw_fault() for _ in range(200)]
    state.reset()
    assert [state.draw_fault() for _ in range(200)] == first
    assert 40 <= first.count("503") <= 80 and 20 <= first.count("drop") <= 60


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.05) is False and bucket.take(0.1) is True


def test_stats_peak_and_mean_over_one_second_windows() -> None:
    stats = Stats()
    for second, count in ((100, 5), (101, 3), (103, 1)):
        for _ in range(count):
            stats.arrival(second + 0.5)
    data = stats.to_json()
    assert data["peak_rps"] == 5 and data["mean_rps"] == 3.0 and data["recent_rps"] == [5, 3, 0, 1]


# ---- JWT ----------------------------------------------------------------------------------------


def token(uid: str = "key-1", iat: float | None = None, exp: float | None = None,
          secret: str = SECRET) -> str:
    now = time.time()
    claims = {"uid": uid, "iat": int(now - 5 if iat is None else iat),
              "exp": int(now + 60 if exp is None else exp)}
    return jwt.encode(claims, secret, algorithm="HS256")


AUTH_SETTINGS = Settings(api_key="key-1", api_secret=SECRET, forbidden_keys=["key-ro"])


@pytest.mark.parametrize(
    ("make_header", "status"),
    [
        # Tokens are minted when the test runs, not at collection: a long suite would see them expire.
        (lambda: token(), None),
        (lambda: "Bearer " + token(), None),
        (lambda: None, 401),
        (lambda: "not-a-jwt", 401),
        (lambda: token(secret="another-secret-0123456789abcdefgh"), 401),
        (lambda: token(uid="someone-else"), 401),
        (lambda: token(exp=time.time() - 10), 401),
        (lambda: token(iat=time.time() + 120), 401),
        (lambda: token(uid="key-ro"), 403),
    ],
    ids=["raw", "bearer", "missing", "garbage", "bad-signature", "wrong-uid", "expired", "iat-future",
         "forbidden"],
)
def test_authenticator(make_header: Callable[[], str | None], status: int | None) -> None:
    denied = Authenticator().check(make_header(), AUTH_SETTINGS)
    assert (denied.status if denied else None) == status


def test_authenticator_cache_still_honours_expiry_and_bearer_switch() -> None:
    auth = Authenticator()
    now = time.time()
    short = token(exp=now + 2)
    assert auth.check(short, AUTH_SETTINGS, now) is None
    expired = auth.check(short, AUTH_SETTINGS, now + 3)
    assert expired is not None and expired.message == "token expired"
    no_bearer = Settings(api_key="key-1", api_secret=SECRET, accept_bearer=False)
    assert auth.check("Bearer " + token(), no_bearer) is not None
    assert auth.check(token(), no_bearer) is None


def test_changing_the_secret_invalidates_cached_tokens(state: EmulatorState) -> None:
    state.configure({"api_key": "key-1", "api_secret": SECRET})
    good = token()
    assert state.auth.check(good, state.settings) is None
    state.configure({"api_secret": "rotated-secret-0123456789abcdefghij"})
    assert state.auth.check(good, state.settings) is not None


def test_loop_stalls_count_only_lateness_over_the_threshold() -> None:
    stalls = LoopStalls()
    stalls.observe(0.001, at=100.0)
    stalls.observe(0.030, at=101.0)
    stalls.observe(0.120, at=102.0)
    data = stalls.to_json()
    assert (data["count"], data["longest_ms"], data["over_ms"]) == (2, 120.0, 25)
    assert [row["ms"] for row in data["recent"]] == [30.0, 120.0]
