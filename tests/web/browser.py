#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The technician at the tablet: Selenium drives headless Debian Chromium through the
# Cockpit page, while this script also plays the person at the car (immo-ecusim's control
# socket), the manager at the passcode service (its HTTPS API) and the checker (busctl on
# the private bus). Run by test-web.sh, which sets the environment:
#   WEB_URL BUS_ADDRESS CTL_SOCKET SERVER_URL CA_FILE TECH_PASSWORD VIN MASTER_KEY_FILE
#   SHOTS_DIR PROFILE_DIR
# Prints "ok: ..." / "FAIL: ..." lines; exits 1 on any failure, a console error included.

import hashlib
import hmac
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ENV = os.environ
URL = ENV["WEB_URL"]
VIN = ENV["VIN"]
SHOTS = ENV["SHOTS_DIR"]
NAME, MPATH, MIFACE, PIFACE = "org.immod.Immod1", "/org/immod/Immod1", "org.immod.Immod1.Manager", "org.immod.Immod1.Procedure"
SIZES = {"tablet": (800, 1280), "phone": (390, 844)}

failures = 0
console = []
t_start = time.monotonic()


def log(msg):
    print("%6.1f %s" % (time.monotonic() - t_start, msg), flush=True)


def ok(what):
    log("ok: " + what)


def fail(what):
    global failures
    failures += 1
    log("FAIL: " + what)


def check(cond, what):
    ok(what) if cond else fail(what)
    return cond


# ---------------------------------------------------------------- the car, the bus, the service

def ctl(command):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(ENV["CTL_SOCKET"])
    s.sendall((command + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    s.close()
    return json.loads(buf.decode())


def prop(path, iface, name):
    out = subprocess.run(["busctl", "--address=" + ENV["BUS_ADDRESS"], "--json=short", "get-property", NAME, path, iface, name],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)["data"]


def mprop(name):
    return prop(MPATH, MIFACE, name)


def api(method, path, body=None, token=None):
    ctx = ssl.create_default_context(cafile=ENV["CA_FILE"])
    req = urllib.request.Request(ENV["SERVER_URL"] + "/api/v1" + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
        return json.loads(r.read().decode())


def manager_approves(request_no):
    token = api("POST", "/login", {"user": "mgr1", "password": "pw-m1"})["token"]
    return api("POST", "/reset-requests/%s/decision" % request_no,
               {"decision": "approve", "attestations": {"details_verified": True, "nicb_notice": True, "terms": True}}, token)


def kvin():
    m = bytes.fromhex(open(ENV["MASTER_KEY_FILE"]).read().strip())
    return hmac.new(m, b"immod/vin-key/v1:" + VIN.encode(), hashlib.sha256).digest()


def smart_code_passcode(vin, d1, d2, d3):
    msg = "immod/smart-code/v1:%s:%s:%s:%s" % (vin, d1.upper(), d2.upper(), d3.upper())
    return hmac.new(kvin(), msg.encode(), hashlib.sha256).digest()[:6].hex().upper()


# ---------------------------------------------------------------- the browser

def make_driver():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/lib/chromium/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--user-data-dir=" + ENV["PROFILE_DIR"], "--window-size=800,1280"]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


d = make_driver()


def collect_console():
    for entry in d.get_log("browser"):
        # Chromium's DEBUG "recommendations" (a password field outside a form) are no errors
        if entry["level"] in ("SEVERE", "WARNING") or "Content Security Policy" in entry["message"]:
            console.append(entry)


def size(name):
    w, h = SIZES[name]
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": name == "phone"})


def wait(what, cond, timeout=20):
    try:
        WebDriverWait(d, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(lambda _: cond())
        ok(what)
        return True
    except TimeoutException:
        fail(what + " (timed out after %d s)" % timeout)
        shot("failure-" + what.replace(" ", "-")[:40], both=False)
        return False


def el(css):
    return d.find_element(By.CSS_SELECTOR, css)


def els(css):
    return d.find_elements(By.CSS_SELECTOR, css)


def visible(css):
    try:
        return retry_stale(lambda: el(css).is_displayed())
    except Exception:
        return False


def attr(css, name):
    return retry_stale(lambda: el(css).get_attribute(name))


def text(css):
    try:
        return retry_stale(lambda: el(css).text)
    except Exception:
        return ""


def click(css):
    for _ in range(20):
        try:
            e = el(css)
            d.execute_script("arguments[0].scrollIntoView({block: 'center'})", e)
            e.click()
            return
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise RuntimeError("cannot click " + css)


def retry_stale(fn):
    """The page draws again on every property change: an element found a moment ago may be
    gone. Find it again, a bounded number of times."""
    for _ in range(30):
        try:
            return fn()
        except StaleElementReferenceException:
            time.sleep(0.1)
    return fn()


def type_into(css, value):
    def do():
        e = el(css)
        e.clear()
        e.send_keys(value)
    retry_stale(do)


def step():
    return retry_stale(lambda: attr("#proc", "data-step") if visible("#proc") else None)


def state():
    return retry_stale(lambda: attr("#proc", "data-state") if visible("#proc") else None)


def at_step(name, waiting=True, timeout=30):
    return wait("page at step %s" % name,
                lambda: step() == name and (not waiting or state() == "waiting") and not visible("#working"), timeout)


def tab(view):
    click('.tab[data-view="%s"]' % view)


def layout_checks(label):
    """No horizontal scrolling; every visible button, field and checkbox row at least 44 px high."""
    wide = d.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    check(wide <= 0, "%s: no horizontal scroll (%d px too wide)" % (label, wide))
    small = d.execute_script("""
        const out = [];
        for (const e of document.querySelectorAll('button, input:not([type=checkbox]), label.check, summary')) {
            const r = e.getBoundingClientRect();
            if (r.width === 0 || r.height === 0) continue;
            if (r.height < 44 || r.width < 44) out.push((e.id || e.textContent.trim().slice(0, 30)) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));
        }
        return out;""")
    check(not small, "%s: touch targets of 44 px at least %s" % (label, small or ""))


def shot(name, both=True):
    for sz in (SIZES if both else ["tablet"]):
        size(sz)
        time.sleep(0.15)
        d.save_screenshot(os.path.join(SHOTS, "%s-%s.png" % (name, sz)))
        if both:
            layout_checks("%s at %s" % (name, sz))
    size("tablet")


def open_page():
    d.get(URL)
    return wait("page connected to immod", lambda: attr("body", "data-conn") == "connected", 20)


def errors_shown(css):
    return attr(css, "data-error") if visible(css) else None


# ---------------------------------------------------------------- the run

def run():
    size("tablet")
    open_page()
    shot("01-status")

    # identify
    click("#identify")
    wait("Identify shows the VIN", lambda: VIN in text("#st-vehicle"))
    veh = mprop("Vehicle") or {}
    check(veh.get("vin", {}).get("data") == VIN, "immod's Vehicle is the VIN shown")
    check(not els('#problems [data-problem="no-vehicle"]'), "no-vehicle problem gone")
    shot("02-status-identified")

    # approval: request, a manager approves, status
    tab("approval")
    type_into("#ap-user", "tech1")
    type_into("#ap-password", ENV["TECH_PASSWORD"])
    type_into("#ap-vin", VIN.lower())
    type_into("#ap-ro", "RO-WEB-1")
    type_into("#ap-customer", "Smith")
    type_into("#ap-approver1", "mgr1")
    type_into("#ap-approver2", "mgr2")
    for c in els(".ap-attest"):
        c.click()
    click("#ap-request")
    wait("approval request: pending", lambda: text("#ap-r-status") == "pending")
    check(attr("#ap-password", "value") == "", "password field cleared after the call")
    request_no = text("#ap-r-request")
    check(bool(request_no) and request_no != "–", "approval request number shown: %s" % request_no)
    stored = d.execute_script("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
    check(ENV["TECH_PASSWORD"] not in stored, "password not in the browser's storage")
    check(manager_approves(request_no).get("status") == "approved", "a manager approves (HTTPS API)")
    type_into("#ap-password", ENV["TECH_PASSWORD"])
    click("#ap-status")
    wait("approval status: approved by mgr1", lambda: text("#ap-r-status") == "approved" and text("#ap-r-by") == "mgr1")
    # a wrong password: the AuthenticationFailed sentence of immoctl
    type_into("#ap-password", "not-the-password")
    click("#ap-status")
    wait("wrong password: immoctl's sentence", lambda: "the passcode service refused the user name or password" in text("#ap-error"))
    shot("03-approval")

    # keys
    tab("keys")
    click("#read-keys")
    wait("keys: 1 registered", lambda: text("#k-registered") == "1")
    shot("04-keys")

    # ---- immobilizer reset
    tab("procedure")
    wait("start screen", lambda: visible("#start"))
    type_into("#start-ro", "RO-WEB-1")
    type_into("#start-customer", "Smith")
    type_into("#start-technician", "tech1")
    shot("05-start")
    click('.kind[data-kind="immobilizer-reset"]')
    at_step("confirm-erase-all")
    check(not el("#next").is_enabled(), "confirm-erase-all: Next disabled until \"I agree\" is checked")
    check("I agree" in text("#step"), "confirm-erase-all: the \"I agree\" confirmation")
    shot("06-reset-confirm-erase-all")
    click("#confirm")
    click("#next")
    at_step("open-driver-door")
    click("#next")  # the door is still closed: immod refuses
    wait("door closed: EcuRefused shown as a sentence", lambda: errors_shown("#proc-error") == "org.immod.Immod1.Error.EcuRefused")
    log("  the page said: " + text("#proc-error").replace("\n", " / "))
    shot("07-reset-door-refused")
    check(ctl("door open")["ok"], "driver's door opened at the car")
    click("#next")
    at_step("immobilizer-passcode")
    proc = mprop("ActiveProcedure")
    seed_page = attr("#seed", "data-seed")
    seed_bus = prop(proc, PIFACE, "Seed")["seed"]["data"]
    check(seed_page == seed_bus, "immobilizer seed on the page is immod's")
    groups = [g.text for g in els("#seed span")]
    check(len(groups) == 24 and all(len(g) == 4 for g in groups), "96 digits in 24 groups of 4")
    shot("08-reset-immobilizer-passcode")
    attempts = prop(proc, PIFACE, "PasscodeAttemptsLeft")
    type_into("#passcode", "000 000")
    click("#submit-passcode")
    wait("a refused passcode: PasscodeRejected sentence", lambda: errors_shown("#proc-error") == "org.immod.Immod1.Error.PasscodeRejected")
    wait("a fresh seed shown after the refusal", lambda: attr("#seed", "data-seed") != seed_page)
    left = prop(proc, PIFACE, "PasscodeAttemptsLeft")
    check(left == attempts - 1, "attempts left %s -> %s (busctl)" % (attempts, left))
    wait("the page shows the attempts left", lambda: text("#attempts").endswith(str(left)))
    shot("09-reset-passcode-refused")
    type_into("#fetch-user", "tech1")
    type_into("#fetch-password", ENV["TECH_PASSWORD"])
    click("#fetch")
    check(retry_stale(lambda: attr("#fetch-password", "value") in ("", None)
                      if visible("#fetch-password") else True),
          "fetch: password field emptied at once")
    at_step("confirm-duration", timeout=40)
    check("I understand" in text("#step"), "confirm-duration: the \"I understand\" confirmation")
    click("#confirm")
    click("#next")
    at_step("smart-code-passcode")
    cells = retry_stale(lambda: {r.get_attribute("data-field"): (r.find_element(By.CSS_SELECTOR, "td.v").text,
                                                                  r.find_element(By.CSS_SELECTOR, "td.cd").text)
                                 for r in els("#seed tbody tr")})
    seed = prop(proc, PIFACE, "Seed")
    check(all(cells[k][0] == seed[k]["data"] and cells[k][1] == seed["cd_" + k]["data"] for k in ("vin", "data1", "data2", "data3")),
          "smart-code table: values and check characters are immod's")
    check(len(els("#seed button[data-copy]")) == 4, "a copy button on each row")
    shot("10-reset-smart-code-passcode")
    pc = smart_code_passcode(cells["vin"][0], cells["data1"][0], cells["data2"][0], cells["data3"][0])
    typed = " ".join([pc[i:i + 4].lower() for i in range(0, 12, 4)])  # any spacing and case
    type_into("#passcode", typed)
    click("#submit-passcode")
    at_step("resetting", waiting=False, timeout=30)
    wait("reset progress above 25 %", lambda: int(attr("#reset-bar", "value") or 0) >= 25, 30)
    check("left" in text("#reset-left") and "V" in text("#reset-volts"), "time left and voltage shown: %s / %s" % (text("#reset-left"), text("#reset-volts")))
    shot("11-reset-resetting")
    # a reload in the middle: the same step and progress, from properties alone
    collect_console()
    open_page()
    wait("after reload: the Procedure screen at resetting", lambda: step() == "resetting" and visible("#view-procedure"))
    pct_page = int(attr("#reset-bar", "value") or 0)
    pct_bus = prop(proc, PIFACE, "Percentage")
    check(abs(pct_page - pct_bus) <= 10, "after reload: progress %d %% on the page, %d %% at immod" % (pct_page, pct_bus))
    check(text("#proc-stepno") == "Step 6 of 7", "after reload: \"Step 6 of 7\"")
    shot("12-reset-after-reload")
    wait("reset succeeded", lambda: state() == "succeeded", 60)
    check(prop(proc, PIFACE, "State") == "succeeded", "immod says succeeded")
    check("0 registered" in text("#final-keys"), "the page says 0 keys registered")
    shot("13-reset-done")

    # ---- registration of two keys, followed by a second viewer
    click("#next-register")
    wait("start screen after the reset", lambda: visible("#start"))
    type_into("#start-ro", "RO-WEB-1")
    type_into("#start-customer", "Smith")
    click('.kind[data-kind="key-registration"]')
    at_step("confirm-instructions")
    proc = mprop("ActiveProcedure")
    click("#next")
    at_step("smart-code-passcode")
    type_into("#fetch-user", "tech1")
    type_into("#fetch-password", ENV["TECH_PASSWORD"])
    click("#fetch")
    at_step("check-slots", timeout=40)
    check("0 registered" in text("#step"), "check-slots: the counts")
    click("#next")
    at_step("place-keys")
    click("#next")
    at_step("pre-start-check")
    click("#next")
    at_step("touch-new-keys", timeout=30)
    check(ctl("touch 22222222")["ok"], "first new key touched at the car")
    wait("key-registered shown with its beeps and slots left",
         lambda: "key registered in slot" in text("#key-events") and "slots left" in text("#key-events") and "beep" in text("#key-events"))
    first = d.current_window_handle
    d.switch_to.new_window("tab")
    open_page()
    wait("second viewer: the same step", lambda: step() == "touch-new-keys")
    check("New keys registered: 1" in text("#slots"), "second viewer: 1 new key so far")
    check(ctl("touch 33333333")["ok"], "second new key touched at the car")
    wait("second viewer: 2 new keys", lambda: "New keys registered: 2" in text("#slots"))
    collect_console()
    d.close()
    d.switch_to.window(first)
    wait("first viewer: 2 new keys, two events", lambda: "New keys registered: 2" in text("#slots") and len(els("#key-events li")) == 2)
    shot("14-register-touch-new-keys")
    click("#finish")
    at_step("function-check")
    click("#next")
    wait("registration succeeded", lambda: state() == "succeeded", 30)
    check(prop(proc, PIFACE, "State") == "succeeded", "immod says succeeded")
    slots = ctl("state")
    log("  ECU state: " + json.dumps(slots)[:300])
    check("2 registered" in text("#final-keys"), "the page says 2 keys registered")
    click("#close-proc")

    # ---- the ECU falls asleep and wakes up, while a procedure waits
    wait("start screen again", lambda: visible("#start"))
    click('.kind[data-kind="key-erasure"]')
    at_step("confirm-warning")
    proc = mprop("ActiveProcedure")
    check(ctl("sleep")["ok"], "the ECU sleeps")
    wait("asleep: what to press", lambda: "courtesy switch" in text("#proc-problems"), 30)
    tab("status")
    check("courtesy switch" in text("#st-ecu"), "status: ECU asleep with what to press")
    shot("15-status-ecu-asleep")
    check(ctl("courtesy")["ok"], "the courtesy switch pressed")
    wait("awake again: the problem gone", lambda: "courtesy switch" not in text("#problems"), 30)
    tab("procedure")

    # ---- erasure: one key present, one deleted
    check("I understand" in text("#step"), "confirm-warning: the \"I understand\" confirmation")
    click("#confirm")
    click("#next")
    at_step("declare-keys")
    click("#count-more")
    click("#count-more")
    check(text("#count") == "2", "the count stops at the registered keys (2)")
    click("#count-less")
    shot("16-erase-declare-keys")
    click("#next")
    at_step("confirm-counts")
    check((text("#c-registered"), text("#c-keep"), text("#c-delete")) == ("2", "1", "1"), "confirm-counts: 2 registered, keep 1, delete 1")
    shot("17-erase-confirm-counts")
    click("#confirm")
    click("#next")
    at_step("confirm-agree")
    click("#confirm")
    click("#next")
    at_step("smart-code-passcode")
    type_into("#fetch-user", "tech1")
    type_into("#fetch-password", ENV["TECH_PASSWORD"])
    click("#fetch")
    wait("page at step touch-keys", lambda: step() == "touch-keys", 40)
    wait("countdown shown", lambda: "s left to touch the keys" in text("#countdown"))
    shot("18-erase-touch-keys")
    check(ctl("touch 22222222")["ok"], "the key present touched at the car")
    wait("key-kept shown, Delete offered", lambda: "will be kept" in text("#key-events") and visible("#erase"))
    check(text("#erase") == "Delete the 1 key not touched", "the Delete button names the count")
    click("#erase")
    wait("erasure succeeded", lambda: state() == "succeeded", 30)
    check(prop(proc, PIFACE, "State") == "succeeded", "immod says succeeded")
    check("1 registered" in text("#final-keys"), "the page says 1 key registered")
    shot("19-erase-done")
    click("#close-proc")

    # ---- cancel
    click('.kind[data-kind="key-registration"]')
    at_step("confirm-instructions")
    proc = mprop("ActiveProcedure")
    click("#cancel")
    wait("cancelled", lambda: state() == "cancelled")
    check(prop(proc, PIFACE, "State") == "cancelled", "immod says cancelled")
    check("cancelled" in text("#result"), "the page says so")
    shot("20-cancelled")
    click("#close-proc")

    # ---- history
    tab("history")
    click("#read-history")
    wait("history: the four procedures", lambda: len(els("#history li")) >= 4)
    kinds = [(e.get_attribute("data-kind"), e.get_attribute("data-result")) for e in els("#history li")][:4]
    check(kinds == [("key-registration", "cancelled"), ("key-erasure", "succeeded"), ("key-registration", "succeeded"),
                    ("immobilizer-reset", "succeeded")], "history, newest first: %s" % kinds)
    reset_li = [e for e in els("#history li") if e.get_attribute("data-kind") == "immobilizer-reset"]
    check(reset_li and int(reset_li[0].get_attribute("data-trace") or 0) > 0 and "battery" in reset_li[0].text and " V over " in reset_li[0].text,
          "history: the reset's voltage trace, as immod kept it (%s)" % (reset_li[0].text.splitlines()[-1] if reset_li else "none"))
    shot("21-history")


try:
    run()
except Exception as e:  # a broken page shows here; keep what the screen showed
    fail("%s: %s" % (type(e).__name__, e))
    try:
        d.save_screenshot(os.path.join(SHOTS, "failure.png"))
    except Exception:
        pass
finally:
    try:
        collect_console()
    except Exception:
        pass
    d.quit()

for c in console:
    fail("browser console: %s %s" % (c["level"], c["message"]))
if not console:
    ok("no console or CSP error")
log("%d failure%s; screenshots in %s" % (failures, "" if failures == 1 else "s", SHOTS))
sys.exit(1 if failures else 0)
