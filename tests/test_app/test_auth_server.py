"""A live `python -m app --auth-file users.txt`: every page, API route and file needs sign-in, over
plain HTTP and gradio_client; wrong passwords, unknown and removed accounts are refused; five
failures from one address lock it out for a minute (the log says so, never with a password); the
reviewer stored is the signed-in account, whatever name the request carries; the login page and
the signed-in Review tab in Chromium at 1280x800 and 390x844."""
from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.parse
import urllib.request

import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from app.auth import MAX_FAILURES
from app.users import add_account, remove_account
from model.formats.wflw import WFLWTree, load_wflw_txt
from tests.helpers import open_tab

TIMEOUT_MS = 120_000
PASSWORDS = {"ana": "ana's long password", "ben": "ben's long password"}
FACE = 7  # a real mmpose WFLW face of the small test tree


@pytest.fixture(scope="module")
def signed(tmp_path_factory, mean_shape_checkpoint, small_wflw_root, artifacts_dir, app_server):
    work = tmp_path_factory.mktemp("sign-in")
    users = work / "users.txt"
    for name, password in PASSWORDS.items():
        add_account(users, name, password)
    db = work / "review.sqlite"
    server = app_server(["--weights", mean_shape_checkpoint, "--wflw-root", small_wflw_root, "--review-db", db,
                         "--auth-file", users, "--export-dir", work / "exports", "--device", "cpu", "--no-flip"],
                        artifacts_dir / "app-auth-tests.log").start()
    samples = load_wflw_txt(WFLWTree(small_wflw_root).annotations("test"))
    yield {"server": server, "url": server.url, "users": users, "db": db, "exports": work / "exports",
           "image": WFLWTree(small_wflw_root).images / samples[FACE].image, "samples": samples}
    server.stop()


def _request(url: str, data: bytes | None = None, headers: dict | None = None):
    """(status, body, headers) of one request; error statuses are answers too."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def _login(url: str, name: str, password: str, address: str):
    """POST /login as the login page does, from ``address`` (X-Forwarded-For: the server trusts it
    from loopback only, as from a reverse proxy on the same machine). Returns (status, detail, cookie)."""
    data = urllib.parse.urlencode({"username": name, "password": password}).encode()
    status, body, headers = _request(url + "login", data, {"X-Forwarded-For": address})
    cookie = "; ".join(c.split(";")[0] for c in headers.get_all("set-cookie") or [])
    return status, json.loads(body).get("detail") if status != 200 else None, cookie


def _stored(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT reviewer, face_index, verdict FROM reviews ORDER BY face_index").fetchall()


def test_every_route_needs_sign_in_over_http(signed):
    url = signed["url"]
    protected = ["config", "gradio_api/info", f"gradio_api/file={signed['image']}", "gradio_api/queue/data"]
    for path in protected:
        assert _request(url + path)[0] == 401, path
    assert _request(url + "gradio_api/queue/join", b'{"session_hash": "x", "fn_index": 0, "data": []}',
                    {"Content-Type": "application/json"})[0] == 401
    assert _request(url + "gradio_api/upload", b"", {"Content-Type": "multipart/form-data; boundary=x"})[0] == 401
    status, page, _ = _request(url)  # the page's shell, which shows the login form: none of the app in it
    assert status == 200 and b"98-point" not in page and b"review-editor" not in page

    assert _login(url, "ana", "not ana's password", "198.51.100.1")[:2] == (400, "Incorrect credentials.")
    assert _login(url, "zed", PASSWORDS["ana"], "198.51.100.1")[:2] == (400, "Incorrect credentials.")
    status, _, cookie = _login(url, "ana", PASSWORDS["ana"], "198.51.100.1")
    assert status == 200 and cookie
    for path in protected[:3]:
        assert _request(url + path, headers={"Cookie": cookie})[0] == 200, path
    assert _request(url + "gradio_api/file=/etc/passwd", headers={"Cookie": cookie})[0] in (403, 404)


def test_gradio_client_signs_in_and_the_reviewer_is_the_account(signed):
    url = signed["url"]
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(url, verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=("ana", "not ana's password"), verbose=False)
    client = Client(url, auth=("ana", PASSWORDS["ana"]), verbose=False)
    reviewer_box, line, _ = client.predict(api_name="/review_session")
    assert reviewer_box["value"] == "ana" and reviewer_box["interactive"] is False and "Signed in as <b>ana</b>" in line["value"]
    # the request names "mallory"; the server stores the signed-in account
    opened = client.predict(FACE, "mallory", api_name="/review_open")
    assert opened[-1].startswith(f"Face {FACE} open")
    assert "ana: **1 /" in client.predict("annotation wrong", "mallory", api_name="/review_verdict")
    assert _stored(signed["db"]) == [("ana", FACE, "annotation wrong")]

    files, info = client.predict("mallory", api_name="/review_export")
    [folder] = list(signed["exports"].iterdir())
    assert f"`{folder}`" in info and sorted(p.name for p in folder.iterdir()) == [
        "list_98pt_rect_attr_test_corrected.txt", "review.csv", "review.json"]
    record = json.loads((folder / "review.json").read_text())
    assert record["exported_by"] == "ana" and [f["reviewer"] for f in record["faces"]] == ["ana"]


def test_a_removed_account_is_refused_at_once(signed):
    url = signed["url"]
    client = Client(url, auth=("ben", PASSWORDS["ben"]), verbose=False)
    assert client.predict(api_name="/review_session")[0]["value"] == "ben"
    status, _, cookie = _login(url, "ben", PASSWORDS["ben"], "198.51.100.2")
    assert status == 200 and _request(url + "config", headers={"Cookie": cookie})[0] == 200

    remove_account(signed["users"], "ben")  # while the server runs
    assert _request(url + "config", headers={"Cookie": cookie})[0] == 401  # the open session ended
    with pytest.raises(Exception, match="401|Unauthorized|Not authenticated|credentials"):
        client.predict(api_name="/review_session")
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=("ben", PASSWORDS["ben"]), verbose=False)
    assert "session of 'ben' ended: the account is no longer in" in signed["server"].this_run_log()
    add_account(signed["users"], "ben", PASSWORDS["ben"])  # back, for the tests after this one
    assert _login(url, "ben", PASSWORDS["ben"], "198.51.100.2")[0] == 200


def test_repeated_wrong_passwords_lock_the_address_out(signed):
    url, address = signed["url"], "203.0.113.9"
    wrong = [f"guess number {i}" for i in range(MAX_FAILURES)]
    for guess in wrong:
        assert _login(url, "ana", guess, address)[:2] == (400, "Incorrect credentials.")
    status, detail, _ = _login(url, "ana", PASSWORDS["ana"], address)  # even the right password now
    assert status == 400 and detail.startswith("Too many failed sign-ins from this address: try again in")
    assert _login(url, "ana", PASSWORDS["ana"], "203.0.113.10")[0] == 200  # another address is not locked
    log = signed["server"].this_run_log()
    assert f"sign-in from {address} locked out for 60 s after {MAX_FAILURES} refused sign-ins" in log
    assert f"sign-in from {address} refused without a password check" in log
    assert f"sign-in refused for 'ana' from {address}: wrong password" in log
    for password in wrong + list(PASSWORDS.values()):
        assert password not in log


@pytest.mark.browser
@pytest.mark.parametrize("width,height,suffix", [(1280, 800, ""), (390, 844, "-phone")])
def test_sign_in_page_and_review_as_the_account(signed, browser_factory, artifacts_dir, width, height, suffix):
    from playwright.sync_api import expect

    page = browser_factory().new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(signed["url"], wait_until="load")
    page.locator("input[type=password]").wait_for(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Sign in to Landmark Studio")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / f"app-login{suffix}.png"))
    page.locator("input[type=text]").fill("ana")
    page.locator("input[type=password]").fill("not ana's password")
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_text("Incorrect Credentials")).to_be_visible(timeout=TIMEOUT_MS)
    page.locator("input[type=text]").fill("ana")
    page.locator("input[type=password]").fill(PASSWORDS["ana"])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#upload-run", timeout=TIMEOUT_MS)

    open_tab(page, "Review")
    expect(page.locator("#review-signed-in")).to_contain_text("Signed in as ana", timeout=TIMEOUT_MS)
    reviewer = page.locator("#review-reviewer input, #review-reviewer textarea").first
    expect(reviewer).to_have_value("ana")
    expect(reviewer).to_be_disabled()
    face = FACE - 1 if suffix else FACE - 2  # a face of its own per viewport
    page.locator("#review-index input").fill(str(face))
    page.click("#review-open")
    expect(page.locator("#review-info")).to_contain_text(f"Face {face} ", timeout=TIMEOUT_MS)
    page.locator("#review-verdict").get_by_text("ambiguous").click()
    _wait_stored(page, signed["db"], ("ana", face, "ambiguous"))
    expect(page.locator("#review-progress")).to_contain_text("ana: ", timeout=TIMEOUT_MS)
    page.locator("#review-signed-in").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / f"app-review-signed-in{suffix}.png"))

    page.locator("#review-signed-in a", has_text="Sign out").click()
    page.locator("input[type=password]").wait_for(timeout=TIMEOUT_MS)  # back at the login page
    page.context.close()


def _wait_stored(page, db, row: tuple) -> None:
    """Wait (in the page's clock) until ``row`` is in the review database."""
    for _ in range(120):
        if row in _stored(db):
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"{row} never stored: {_stored(db)}")
