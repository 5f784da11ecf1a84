"""`cdarec serve`'s access control, on the real app (FastAPI's TestClient) with fake
models (the access rules do not depend on what the models write; the browser test runs
the same app on real ones): nobody signed out sees anything, a session acts only as its
own user, another user's thread is not found, POSTs need the CSRF token, foreign Host
headers are refused, feedback names the item it is about."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdarec.graph.runtime import Resources, get_resources, use_resources
from cdarec.service.access import Access
from cdarec.settings import Settings
from cdarec.web.server import create_app
from tests.conftest import REAL_HOME
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm

TOKEN = "the-printed-sign-in-secret"
BASE = "http://127.0.0.1:8000"


@pytest.fixture()
def app(home: Path) -> Any:
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")
    s = Settings(home=home, dataset="ml-100k", user_id="196", judge_top=4, show_top=4)
    for user in ("196", "1"):  # each signed-in user's own settings share these fakes
        script = by_task(PLAN, QUERIES, JUDGE)
        use_resources(
            Resources(
                s.model_copy(update={"user_id": user}),
                device_llm=fake_llm(script, "device"),
                cloud_llm=fake_llm(script, "cloud"),
            )
        )
    Access(home).set_password("1", "password-of-1")
    return create_app(s, signin_token=TOKEN)


def signed_in(app: Any) -> tuple[TestClient, dict[str, str]]:
    """A browser signed in with the printed link: its client and its POST headers."""
    c = TestClient(app, base_url=BASE)
    r = c.get(f"/signin?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    me = c.get("/api/me").json()
    assert me["user"] == "196"
    return c, {"x-csrf-token": me["csrf"]}


def events(body: str) -> list[tuple[str, Any]]:
    out = []
    for chunk in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def turn(c: TestClient, h: dict[str, str], thread: str, message: str) -> list[tuple[str, Any]]:
    r = c.post(f"/api/sessions/{thread}/turn", json={"message": message}, headers=h)
    assert r.status_code == 200, r.text
    return events(r.text)


def test_signed_out_sees_and_changes_nothing(app: Any) -> None:
    c = TestClient(app, base_url=BASE)
    assert c.get("/healthz").json() == {"ok": True}
    assert c.get("/").status_code == 200  # the page itself, which then shows the sign-in
    for method, path in [
        ("GET", "/api/me"),
        ("GET", "/api/sessions"),
        ("POST", "/api/sessions"),
        ("POST", "/api/sessions/196-abc/turn"),
        ("POST", "/api/sessions/196-abc/feedback"),
    ]:
        r = c.request(method, path, json={"message": "hi", "kind": "like", "item_id": "1"})
        assert r.status_code == 401, (method, path, r.text)
    assert c.get("/signin?token=wrong", follow_redirects=False).status_code == 401
    assert c.get("/api/users").status_code == 404  # no list of users to pick from
    r = c.post("/api/signin", json={"user": "1", "password": "not-the-password"})
    assert r.status_code == 401


def test_posts_need_the_csrf_token_and_the_same_origin(app: Any) -> None:
    c, h = signed_in(app)
    assert c.post("/api/sessions").status_code == 403
    assert c.post("/api/sessions", headers={"x-csrf-token": "forged"}).status_code == 403
    evil = {**h, "origin": "http://evil.example"}
    assert c.post("/api/sessions", headers=evil).status_code == 403
    assert c.post("/api/sessions", headers=h).status_code == 200


def test_a_foreign_host_header_is_refused(app: Any) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host."""
    c = TestClient(app, base_url="http://evil.example:8000")
    assert c.get("/healthz").status_code == 400
    assert c.get(f"/signin?token={TOKEN}", follow_redirects=False).status_code == 400


def test_a_session_acts_only_as_its_own_user(app: Any, home: Path) -> None:
    a, ha = signed_in(app)
    thread = a.post("/api/sessions", headers=ha).json()["thread"]
    assert turn(a, ha, thread, "a comedy")[-1][0] == "result"
    # user 1 signs in with a password: 196's thread does not exist for them
    b = TestClient(app, base_url=BASE)
    r = b.post("/api/signin", json={"user": "1", "password": "password-of-1"})
    assert r.status_code == 200 and r.json()["user"] == "1"
    hb = {"x-csrf-token": r.json()["csrf"]}
    assert (
        b.post(f"/api/sessions/{thread}/turn", json={"message": "x"}, headers=hb).status_code == 404
    )
    fb = {"kind": "like", "item_id": "1"}
    assert b.post(f"/api/sessions/{thread}/feedback", json=fb, headers=hb).status_code == 404
    assert [s["thread"] for s in b.get("/api/sessions").json()] == []
    assert [s["thread"] for s in a.get("/api/sessions").json()] == [thread]
    # the same after a restart (the thread only in the checkpointer, not in memory)
    restarted = create_app(app.state.settings, signin_token=TOKEN)
    b2 = TestClient(restarted, base_url=BASE)
    hb2 = {
        "x-csrf-token": b2.post(
            "/api/signin", json={"user": "1", "password": "password-of-1"}
        ).json()["csrf"]
    }
    assert (
        b2.post(f"/api/sessions/{thread}/turn", json={"message": "x"}, headers=hb2).status_code
        == 404
    )
    a2, ha2 = signed_in(restarted)
    assert turn(a2, ha2, thread, "")[-1][0] == "result"  # the owner resumes it
    # a made-up thread id is not created on the fly
    assert (
        b2.post("/api/sessions/1-made-up/turn", json={"message": "x"}, headers=hb2).status_code
        == 404
    )


def test_a_bearer_token_acts_as_its_user_without_a_cookie(app: Any, home: Path) -> None:
    token = Access(home).new_token("1", name="test")
    c = TestClient(app, base_url=BASE)
    h = {"authorization": f"Bearer {token}"}
    assert c.get("/api/me", headers=h).json()["user"] == "1"
    thread = c.post("/api/sessions", headers=h).json()["thread"]
    assert turn(c, h, thread, "something funny")[-1][0] == "result"
    bad = {"authorization": "Bearer cdarec_not-a-token"}
    assert c.post("/api/sessions", headers=bad).status_code == 401
    assert Access(home).revoke("1") == 2  # the password and the token
    assert c.get("/api/me", headers=h).status_code == 401


def test_feedback_names_its_item_not_a_rank(app: Any, home: Path) -> None:
    """A click on an item of an older list is feedback on that item (it was on the rank
    given, in the newest list, that the old API wrote it)."""
    c, h = signed_in(app)
    thread = c.post("/api/sessions", headers=h).json()["thread"]
    first = turn(c, h, thread, "a comedy")[-1][1]["ranking"]
    second = turn(c, h, thread, "a thriller")[-1][1]["ranking"]
    old = first[0]
    assert old["item_id"] not in {r["item_id"] for r in second}
    r = c.post(
        f"/api/sessions/{thread}/feedback",
        json={"kind": "like", "item_id": old["item_id"]},
        headers=h,
    )
    assert r.status_code == 200 and old["label"] in r.json()["message"]
    rec = get_resources(app.state.settings).memory.load("196")
    assert rec.liked() == {old["item_id"]}
    r = c.post(
        f"/api/sessions/{thread}/feedback",
        json={"kind": "like", "item_id": "never-shown"},
        headers=h,
    )
    assert r.status_code == 400 and "not shown" in r.json()["detail"]


def test_more_like_runs_a_turn_with_the_item_on_the_device_channel(app: Any) -> None:
    """ "more like this": the reply names no request words for the cloud and gives the
    item back for the turn's device-only ``anchor``; an item never shown is refused."""
    c, h = signed_in(app)
    thread = c.post("/api/sessions", headers=h).json()["thread"]
    item = turn(c, h, thread, "a comedy")[-1][1]["ranking"][0]
    r = c.post(
        f"/api/sessions/{thread}/feedback",
        json={"kind": "more", "item_id": item["item_id"]},
        headers=h,
    ).json()
    assert r["request"] == "" and r["anchor"] == item["item_id"]
    assert item["label"] in r["message"]
    body = {"message": r["request"], "anchor": r["anchor"]}
    res = c.post(f"/api/sessions/{thread}/turn", json=body, headers=h)
    kind, result = events(res.text)[-1]
    assert kind == "result" and result["request"] == ""
    assert result["bound"]["like_items"][0] == item["item_id"]
    assert item["item_id"] not in {x["item_id"] for x in result["ranking"]}
    bad = {"message": "", "anchor": "never-shown"}
    kind, err = events(c.post(f"/api/sessions/{thread}/turn", json=bad, headers=h).text)[-1]
    assert kind == "error" and "not shown" in err["message"]


def test_bad_messages_end_in_a_clear_error(app: Any) -> None:
    c, h = signed_in(app)
    thread = c.post("/api/sessions", headers=h).json()["thread"]
    long = turn(c, h, thread, "a comedy " * 100)
    assert long[-1][0] == "error" and "limit is 500" in long[-1][1]["message"]
    r = c.post(f"/api/sessions/{thread}/turn", json={"message": "x" * 100_000}, headers=h)
    assert r.status_code == 422  # past the body's own bound: refused before any work
    for odd in ["[/]", "[bold]x[/bold] <script>alert(1)</script>", "\x00\x1b[31m\u202e", ""]:
        assert turn(c, h, thread, odd)[-1][0] == "result", odd


def test_password_guessing_is_throttled_and_cross_site_sign_in_refused(app: Any) -> None:
    c = TestClient(app, base_url=BASE)
    for _ in range(5):
        assert (
            c.post("/api/signin", json={"user": "1", "password": "guess-guess"}).status_code == 401
        )
    r = c.post("/api/signin", json={"user": "1", "password": "password-of-1"})
    assert r.status_code == 429 and "try again in" in r.json()["detail"]  # even the right one
    other = c.post("/api/signin", json={"user": "196", "password": "x" * 8})
    assert other.status_code == 401  # per user: another user is not locked out
    evil = {"origin": "http://evil.example"}
    r = c.post("/api/signin", json={"user": "196", "password": "x" * 8}, headers=evil)
    assert r.status_code == 403


def test_an_unreadable_credentials_file_is_a_clear_error(app: Any, home: Path) -> None:
    (home / "auth" / "credentials.json").write_text("{ not json")
    c = TestClient(app, base_url=BASE)
    r = c.get("/api/me", headers={"authorization": "Bearer cdarec_x"})
    assert r.status_code == 503 and "move it aside" in r.json()["detail"]
    r = c.post("/api/signin", json={"user": "1", "password": "password-of-1"})
    assert r.status_code == 503


def test_an_unreachable_session_database_is_a_clear_503(home: Path) -> None:
    from cdarec.llm.server import free_port

    url = f"postgresql://cdarec:pw@127.0.0.1:{free_port()}/none"
    s = Settings(home=home, dataset="ml-100k", user_id="196", database_url=url)
    script = by_task(PLAN, QUERIES, JUDGE)
    use_resources(
        Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(script, "cloud"))
    )
    token = Access(home).new_token("196", name="test")
    c = TestClient(create_app(s, signin_token=TOKEN), base_url=BASE)
    r = c.get("/api/sessions", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 503 and "CDAREC_DATABASE_URL" in r.json()["detail"]
    assert ":pw@" not in r.text


def test_a_second_worker_honours_the_sign_in_and_the_new_session(app: Any, home: Path) -> None:
    """Two apps on one home (two workers of `cdarec serve --workers N`): the browser
    sign-in and the CSRF token made on one are honoured by the other, a session created on
    one takes its first turn on the other, sign-out on either ends it on both, and the
    server's start (``BrowserSessions.clear``) signs everyone out."""
    from cdarec.service.access import BrowserSessions

    c, h = signed_in(app)
    other = TestClient(create_app(app.state.settings, signin_token=TOKEN), base_url=BASE)
    other.cookies.update(c.cookies)
    assert other.get("/api/me").json()["user"] == "196"
    thread = c.post("/api/sessions", headers=h).json()["thread"]
    out = turn(other, h, thread, "something light")  # its owner was on record already
    assert out[-1][0] == "result"
    store = (home / "auth" / "browser-sessions.json").read_text()
    assert c.cookies.get("cdarec_session") not in store  # only digests are kept
    assert oct((home / "auth" / "browser-sessions.json").stat().st_mode & 0o777) == "0o600"
    assert other.post("/api/signout", headers=h).status_code in (200, 303)
    assert c.get("/api/me").status_code == 401
    c2, _ = signed_in(app)
    BrowserSessions(Access(home)).clear()
    assert c2.get("/api/me").status_code == 401
