#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The passcode service's own pages in headless Debian Chromium (Selenium), against the
real server with real TLS (a CA and certificate made with openssl now), the master key
of test-vectors.json and the pages of the source tree (web_root). Two browser sessions,
as in the bulletins: a technician (tech1) asks for a reset; the first selected manager
(mgr1) finds it in his inbox and approves it with the three boxes; the technician gets
the immobilizer passcode for a seed and a smart-code passcode, both equal to the known
answers of test-vectors.json (and a second seed its own); a mistyped Data2 check
character is named before any passcode; the repair is marked complete; a manager who
asked himself cannot approve his own request, which a selected manager then denies; the
manager reads the month's report and downloads it as CSV. Fails on any
console or Content-Security-Policy error (the API's expected 4xx answers aside). A
screenshot of every page, at desktop and phone sizes, goes to SHOTS_DIR.

Environment: IMMO_PASSCODE_SERVER, IMMOD_TEST_VECTORS, WEB_ROOT, SHOTS_DIR.
Exit 77 (skip) where Chromium, chromedriver, python3-selenium or openssl are missing."""

import http.client
import importlib.util
import json
import os
import re
import shutil
import ssl
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = os.environ
CHROMIUM, CHROMEDRIVER = "/usr/lib/chromium/chromium", "/usr/bin/chromedriver"
SIZES = {"desktop": (1280, 860), "phone": (390, 844)}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

failures = 0
t_start = time.monotonic()


def log(msg):
    print("%6.1f %s" % (time.monotonic() - t_start, msg), flush=True)


def check(cond, what):
    global failures
    if cond:
        log("ok: " + what)
    else:
        failures += 1
        log("FAIL: " + what)
    return cond


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


for f in (CHROMIUM, CHROMEDRIVER):
    if not os.access(f, os.X_OK):
        skip(f + " is not installed (Debian: chromium chromium-driver)")
if not shutil.which("openssl"):
    skip("openssl is not installed")
try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    skip("python3-selenium is not installed")

# the certificates, the configuration and the server as the API test makes them
spec = importlib.util.spec_from_file_location("test_server", os.path.join(HERE, "test-server.py"))
ts = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ts)

VECTORS = json.load(open(ENV["IMMOD_TEST_VECTORS"]))
IMM = VECTORS["immobilizer"][0]
SC = VECTORS["smart_code"][0]
VIN = IMM["vin"]
SHOTS = ENV["SHOTS_DIR"]


# ---------------------------------------------------------------- one browser session

class Browser:
    """One person's browser: its own profile, so nothing is shared between the two."""

    def __init__(self, name, base, tmp):
        self.name, self.base = name, base
        self.console = []
        self.downloads = os.path.join(tmp, name + "-downloads")
        os.makedirs(self.downloads)
        o = webdriver.ChromeOptions()
        o.binary_location = CHROMIUM
        for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  # the certificate of the CA made now is not in the profile (web.md); the test's
                  # own client checks the server against that CA (check_headers)
                  "--ignore-certificate-errors",
                  "--user-data-dir=" + os.path.join(tmp, name + "-profile"), "--window-size=1280,860"]:
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
        self.d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": self.downloads})
        self.size("desktop")

    def quit(self):
        self.d.quit()

    def size(self, name, height=None):
        w, h = SIZES[name]
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": w, "height": max(h, height or 0), "deviceScaleFactor": 1, "mobile": name == "phone"})

    def collect_console(self):
        """Console and CSP errors fail the test; the API's 4xx answers that the test asks
        for (a refusal shown on the page) show up as network errors and are only logged."""
        for e in self.d.get_log("browser"):
            m = e["message"]
            if e.get("source") == "network" and re.search(r"/api/v1/\S* - Failed to load resource: the server responded "
                                                          r"with a status of 4\d\d", m):
                log("  (%s: the API refused, as the step wants: %s)" % (self.name, m.split(" - ")[0]))
                continue
            if e["level"] in ("SEVERE", "WARNING") or "Content Security Policy" in m:
                self.console.append(e)
                check(False, "%s: no console error (%s %s)" % (self.name, e["level"], m))

    def wait(self, what, cond, timeout=20):
        try:
            WebDriverWait(self.d, timeout, poll_frequency=0.1,
                          ignored_exceptions=(StaleElementReferenceException,)).until(lambda _: cond())
            check(True, "%s: %s" % (self.name, what))
            return True
        except TimeoutException:
            check(False, "%s: %s (timed out after %d s)" % (self.name, what, timeout))
            self.d.save_screenshot(os.path.join(SHOTS, "failure-%s-%s.png" % (self.name, re.sub(r"\W+", "-", what)[:40])))
            return False

    def els(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def retry(self, fn):
        for _ in range(30):
            try:
                return fn()
            except StaleElementReferenceException:
                time.sleep(0.1)
        return fn()

    def text(self, css):
        return self.retry(lambda: " ".join(e.text for e in self.els(css)))

    def attr(self, css, name):
        return self.retry(lambda: [e.get_attribute(name) for e in self.els(css)][:1] or [None])[0]

    def click(self, css):
        def do():
            e = self.d.find_element(By.CSS_SELECTOR, css)
            self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", e)
            e.click()
        self.retry(do)

    def type(self, css, value):
        def do():
            e = self.d.find_element(By.CSS_SELECTOR, css)
            e.clear()
            e.send_keys(value)
        self.retry(do)

    def view(self, name, timeout=20):
        return self.wait("page %s shown" % name,
                         lambda: self.attr("body", "data-view") == name and self.attr("body", "data-state") == "ready", timeout)

    def error_id(self):
        return self.attr("main .error", "data-error")

    def open(self, fragment=""):
        self.d.get(self.base + "/" + fragment)

    def reload(self, fragment):
        """A new load of the page (a link followed, a reload): not a mere #fragment change."""
        self.d.get(self.base + "/" + fragment)
        self.d.refresh()

    def shot(self, name):
        """The whole page at both sizes (the window made as tall as the page), and the
        phone layout checked: no sideways scrolling, touch targets of 44 px."""
        for sz in SIZES:
            self.size(sz)
            time.sleep(0.1)
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            self.size(sz, height)
            time.sleep(0.15)
            self.d.save_screenshot(os.path.join(SHOTS, "%s-%s.png" % (name, sz)))
            if sz == "phone":
                wide = self.d.execute_script(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
                check(wide <= 0, "%s at phone size: no sideways scrolling (%d px too wide)" % (name, wide))
                small = self.d.execute_script("""
                    const out = [];
                    for (const e of document.querySelectorAll('button, input:not([type=checkbox]), textarea, label.check, nav a')) {
                        const r = e.getBoundingClientRect();
                        if (r.width === 0 || r.height === 0) continue;
                        if (r.height < 44) out.push((e.id || e.textContent.trim().slice(0, 30)) + ' ' + Math.round(r.height));
                    }
                    return out;""")
                check(not small, "%s at phone size: touch targets 44 px high %s" % (name, small or ""))
        self.size("desktop")
        self.collect_console()

    def login(self, user, password="pw-x"):
        self.open()
        self.view("login")
        self.type("#login-user", user)
        self.type("#login-password", password)
        self.click("#login-submit")
        return self.view("home")

    def logout(self):
        self.click("#logout")
        self.view("login")


# ---------------------------------------------------------------- the server's answers themselves

def check_headers(port, ca):
    """The pages and the API over TLS checked against the test's CA: the safety headers."""
    ctx = ssl.create_default_context(cafile=ca)

    def get(path, method="GET"):
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r, body

    r, body = get("/")
    check(r.status == 200 and r.getheader("Content-Type", "").startswith("text/html") and b'src="/app.js"' in body,
          "GET / is the page (%d %s)" % (r.status, r.getheader("Content-Type")))
    for path in ("/", "/app.js", "/api/v1/login"):
        r, _ = get(path)
        h = {k: r.getheader(k) for k in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy",
                                         "Cache-Control", "X-Frame-Options")}
        check(h == {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "Cache-Control": "no-store", "X-Frame-Options": "DENY"}, "%s: safety headers %s" % (path, h))
    r, _ = get("/app.js")
    check(r.getheader("Content-Type") == "text/javascript; charset=utf-8", "app.js is JavaScript")
    for path in ("/../server.yaml", "/server.yaml", "/master.key", "/%2e%2e/master.key", "/www/app.js"):
        r, body = get(path)
        check(r.status == 404 and b"master" not in body and b"tls" not in body, "%s: 404 (%d)" % (path, r.status))
    r, _ = get("/", "POST")
    check(r.status == 405, "POST / refused (%d)" % r.status)


def spaced_seed(hexstr):
    """The seed as pasted from Techstream: groups of eight, lines of six groups."""
    groups = [hexstr[i:i + 8] for i in range(0, len(hexstr), 8)]
    return "\n".join(" ".join(groups[i:i + 6]) for i in range(0, len(groups), 6))


def other_check_character(c):
    return "0" if c != "0" else "1"


# ---------------------------------------------------------------- the run

def run(tech, mgr, port):
    # ---- the technician asks for a reset
    tech.open()
    tech.view("login")
    tech.shot("01-login")
    tech.type("#login-user", "tech1")
    tech.type("#login-password", "wrong")
    tech.click("#login-submit")
    tech.wait("a wrong password: the API's words", lambda: tech.error_id() == "unauthenticated" and
              "wrong password" in tech.text("main .error"))
    tech.type("#login-password", "pw-x")
    tech.click("#login-submit")
    tech.view("home")
    stored = tech.d.execute_script("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
    check(stored == "{}{}", "nothing in localStorage, sessionStorage or cookies (%r)" % stored)
    check(not tech.d.find_element(By.CSS_SELECTOR, "[data-nav=report]").is_displayed(),
          "a technician is not offered the report")
    tech.shot("02-technician-inbox-empty")

    tech.click("[data-nav=new]")
    tech.view("new")
    offered = sorted(e.get_attribute("data-approver") for e in tech.els("[data-approver]"))
    check(offered == ["mgr1", "mgr2", "mgr3"], "the approving managers offered, not the requester nor a Sales Manager: %s" % offered)
    tech.type("#vin", VIN.lower()[:8] + " " + VIN.lower()[8:])
    tech.type("#repair_order", "RO-1001")
    tech.type("#customer_last_name", "Smith")
    for box in ("customer_authority", "photo_id", "registration"):
        tech.click("#" + box)
    tech.click("[data-approver=mgr1]")
    tech.click("#request-submit")
    tech.wait("a box not checked: the API's words", lambda: tech.error_id() == "attestation-missing" and
              "terms" in tech.text("main .error"))
    tech.click("#terms")
    tech.click("#request-submit")
    tech.wait("one manager selected: the API's words", lambda: tech.error_id() == "too-few-approvers-selected" and
              "at least two" in tech.text("main .error"))
    tech.shot("03-request-form-refused")
    tech.click("[data-approver=mgr2]")
    tech.click("#request-submit")
    tech.view("request")
    no = tech.d.execute_script("return decodeURIComponent(location.hash.slice('#/request/'.length))")
    check(re.fullmatch(r"RR-[0-9A-F]+", no or "") is not None, "the request has its number: %s" % no)
    check(tech.attr("#request-details [data-status]", "data-status") == "pending", "the request is pending")
    check(VIN in tech.text("#request-details") and "Smith" in tech.text("#request-details"), "its details are shown")
    check(bool(tech.els("#waiting")) and not tech.els("#decision-form"), "the technician waits, no Approve for him")
    tech.shot("04-request-pending-technician")

    # ---- the first selected manager, in his own browser
    mgr.login("mgr1")
    mgr.wait("the request in his inbox, waiting for his decision",
             lambda: bool(mgr.els(f"#inbox-waiting tr[data-request='{no}']")))
    mgr.shot("05-manager-inbox")
    mgr.click(f"#inbox-waiting tr[data-request='{no}'] a")
    mgr.view("request")
    check("Request Approval Policy" in mgr.text("#decision-form legend"), "the Request Approval Policy is shown")
    mgr.click("#details_verified")
    mgr.click("#nicb_notice")
    mgr.shot("06-approval-page")
    mgr.click("#approve")
    mgr.wait("two boxes of three: the API's words", lambda: mgr.error_id() == "attestation-missing" and
             "terms" in mgr.text("main .error"))
    mgr.click("#decision_terms")
    mgr.click("#approve")
    mgr.wait("approved", lambda: mgr.attr("#request-details [data-status]", "data-status") == "approved" and
             "Mia Manager" in mgr.text("#request-details"))
    mgr.shot("07-request-approved-manager")

    # ---- the technician: the approval in his inbox, then the passcodes
    tech.click("[data-nav=home]")
    tech.view("home")
    row = f"#inbox-mine tr[data-request='{no}']"
    tech.wait("his inbox: approved, by whom, valid till", lambda: tech.attr(row + " [data-status]", "data-status") == "approved" and
              "Mia Manager" in tech.text(row) and "UTC" in tech.text(row))
    tech.shot("08-technician-inbox-approved")
    tech.click(row + " a")
    tech.view("request")
    tech.type("#software_version", "1.0")
    tech.type("#seed", spaced_seed(IMM["seed_hex"]))
    tech.click("#immobilizer-submit")
    tech.wait("immobilizer passcode shown in bold", lambda: bool(tech.els("strong#passcode")))
    got = tech.text("strong#passcode")
    check(got == IMM["passcode"], "the immobilizer passcode %s equals the known answer %s" % (got, IMM["passcode"]))
    check("valid for one reset event" in tech.text("#passcode-box"), "\"valid for one reset event\"")
    tech.shot("09-immobilizer-passcode")
    # the next attempt brings a new seed, and gets its own passcode on the same approval
    second = VECTORS["immobilizer"][1]
    check(second["vin"] == VIN, "the second known answer is for the same VIN")
    tech.type("#seed", second["seed_hex"].upper())
    tech.click("#immobilizer-submit")
    tech.wait("a new seed: its own passcode", lambda: tech.text("strong#passcode") == second["passcode"])

    tech.click("[data-nav=smart-code]")
    tech.view("smart-code")
    wrong = other_check_character(SC["cd_data2"])
    for f, v in (("vin", SC["vin"]), ("data1", SC["data1"]), ("data2", SC["data2"]), ("data3", SC["data3"])):
        tech.type("#" + f, v)
        tech.type("#cd_" + f, wrong if f == "data2" else SC["cd_" + f])
    tech.type("#sc_software_version", "1.0")
    tech.type("#sc_repair_order", "RO-2002")
    tech.type("#sc_customer", "Doe")
    tech.click("#smart-code-submit")
    tech.wait("a mistyped Data2 check character is named", lambda: tech.error_id() == "check-character-mismatch" and
              tech.text("main .error").startswith("Data2:") and tech.attr("#data2", "aria-invalid") == "true")
    check(not tech.els("#passcode"), "no passcode shown for the mistyped field")
    tech.shot("10-smart-code-mistyped")
    tech.type("#cd_data2", SC["cd_data2"])
    tech.click("#smart-code-submit")
    tech.wait("smart-code passcode shown in bold", lambda: bool(tech.els("strong#passcode")))
    got = tech.text("strong#passcode")
    check(got == SC["passcode"], "the smart-code passcode %s equals the known answer %s" % (got, SC["passcode"]))
    check(not tech.els("main .error") and tech.attr("#data2", "aria-invalid") is None, "no error left on the page")
    tech.shot("11-smart-code-passcode")

    tech.reload(f"#/request/{no}")
    tech.view("login")  # a reload forgets the session: the token lived in memory only
    tech.type("#login-user", "tech1")
    tech.type("#login-password", "pw-x")
    tech.click("#login-submit")
    tech.view("request")
    check(tech.d.execute_script("return location.hash") == f"#/request/{no}", "after the login, the page asked for")
    tech.click("#complete")
    tech.wait("repair marked complete", lambda: tech.attr("#request-details [data-status]", "data-status") == "completed")
    check(not tech.els("#immobilizer-form") and "no longer holds" in tech.text("#closed"),
          "no passcode form once the repair is complete, and why")
    tech.shot("12-request-completed")
    tech.reload("#/report")
    tech.view("login")
    tech.type("#login-user", "tech1")
    tech.type("#login-password", "pw-x")
    tech.click("#login-submit")
    tech.view("report")
    tech.click("#report-show")
    tech.wait("a technician asks for the report: the API's words", lambda: tech.error_id() == "forbidden")

    # ---- a manager who asked himself cannot decide his own request
    mgr.logout()
    mgr.login("mgr3")
    mgr.click("[data-nav=new]")
    mgr.view("new")
    offered = sorted(e.get_attribute("data-approver") for e in mgr.els("[data-approver]"))
    check("mgr3" not in offered, "the requester is not offered as an approver (%s)" % offered)
    mgr.type("#vin", VIN)
    mgr.type("#repair_order", "RO-3003")
    mgr.type("#customer_last_name", "Jones")
    for box in ("customer_authority", "photo_id", "registration", "terms"):
        mgr.click("#" + box)
    mgr.click("[data-approver=mgr1]")
    mgr.click("[data-approver=mgr2]")
    mgr.click("#request-submit")
    mgr.view("request")
    for box in ("details_verified", "nicb_notice", "decision_terms"):
        mgr.click("#" + box)
    mgr.click("#approve")
    mgr.wait("the requester cannot approve his own request: the API's words",
             lambda: mgr.error_id() == "self-approval" and "Nobody can decide his own reset request." in mgr.text("main .error"))
    check(mgr.attr("#request-details [data-status]", "data-status") == "pending", "his request stays pending")
    mgr.shot("13-self-approval-refused")
    own = mgr.d.execute_script("return decodeURIComponent(location.hash.slice('#/request/'.length))")

    # ---- a selected manager denies it (no boxes needed to deny)
    mgr.logout()
    mgr.login("mgr1")
    mgr.wait("Mo Manager's request waits for mgr1", lambda: "Mo Manager" in mgr.text(f"#inbox-waiting tr[data-request='{own}']"))
    mgr.click(f"#inbox-waiting tr[data-request='{own}'] a")
    mgr.view("request")
    mgr.click("#deny")
    mgr.wait("denied", lambda: mgr.attr("#request-details [data-status]", "data-status") == "denied" and
             "Denied by" in mgr.text("#request-details"))
    check(not mgr.els("#decision-form") and not mgr.els("#immobilizer-form"), "no decision and no passcode once denied")
    mgr.shot("14-request-denied")
    mgr.click("[data-nav=home]")
    mgr.view("home")
    check(bool(mgr.els(f"#inbox-decided tr[data-request='{own}']")) and bool(mgr.els(f"#inbox-decided tr[data-request='{no}']"))
          and not mgr.els("#inbox-waiting tr[data-request]"), "both requests under \"Decided by you\", none waiting")
    mgr.shot("15-manager-inbox-decided")

    # ---- the month's report
    mgr.click("[data-nav=report]")
    mgr.view("report")
    mgr.click("#report-show")
    mgr.wait("the month's report", lambda: mgr.attr("body", "data-report") is not None and mgr.els("tr[data-transaction]"))
    kinds = sorted(e.text for e in mgr.els("tr[data-transaction] td[data-column=kind]"))
    check(mgr.text("#report-count") == "3" and kinds == ["immobilizer", "immobilizer", "smart-code"],
          "three transactions, two immobilizer and a smart-code one (%s %s)" % (mgr.text("#report-count"), kinds))
    check("RO-1001" in mgr.text("table.report") and "RO-2002" in mgr.text("table.report"), "their repair orders")
    mgr.shot("16-report")
    ids = [e.get_attribute("data-transaction") for e in mgr.els("tr[data-transaction]")]
    mgr.click("#report-csv")
    csv = []
    mgr.wait("the CSV downloaded", lambda: (csv.extend(f for f in os.listdir(mgr.downloads) if f.endswith(".csv")) or csv), 15)
    if csv:
        text = open(os.path.join(mgr.downloads, csv[0])).read()
        check(text.startswith("transaction_id,time,dealer") and all(i in text for i in ids),
              "the CSV %s holds the transactions" % csv[0])
    tech.collect_console()
    mgr.collect_console()


def main():
    os.makedirs(SHOTS, exist_ok=True)
    for f in os.listdir(SHOTS):
        if f.endswith(".png"):
            os.unlink(os.path.join(SHOTS, f))
    tmp = tempfile.mkdtemp(prefix="immo-server-web-")
    port = ts.free_port()
    ts.make_ca(tmp, "ca")
    ts.make_cert(tmp, "ca", "server")
    with open(f"{tmp}/master.key", "w") as f:
        f.write(VECTORS["master_key_hex"] + "\n")
    os.chmod(f"{tmp}/master.key", 0o600)
    with open(f"{tmp}/server.yaml", "w") as f:
        f.write(ts.CONFIG.format(port=port, cert="server", database="passcodes.sqlite"))
        f.write("web_root: %s\n" % json.dumps(os.path.abspath(ENV["WEB_ROOT"])))
    srv = ts.Server(tmp, port)
    srv.start()
    browsers = []
    try:
        check_headers(port, f"{tmp}/ca.pem")
        base = f"https://127.0.0.1:{port}"
        browsers.append(Browser("technician", base, tmp))
        browsers.append(Browser("manager", base, tmp))
        run(*browsers, port)
    finally:
        for b in browsers:
            try:
                b.quit()
            except Exception:
                pass
        srv.stop()
        log("screenshots in " + SHOTS)
        if failures:
            print(open(f"{tmp}/server.log").read()[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
