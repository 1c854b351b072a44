#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The page behind Cockpit's login form: TECH (in immod's group) identifies the vehicle and
# starts a procedure, GUEST (outside it) sees the status and is refused with immod's words.
# Run by test-web-login.sh, which sets BASE_URL TECH GUEST USER_PASSWORD VIN BUS_ADDRESS
# SHOTS_DIR PROFILE_DIR.

import json
import os
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ENV = os.environ
BASE = ENV["BASE_URL"]
PAGE = BASE + "/cockpit/@localhost/immod/index.html"
failures = 0


def check(cond, what):
    global failures
    print(("ok: " if cond else "FAIL: ") + what, flush=True)
    failures += 0 if cond else 1
    return cond


o = webdriver.ChromeOptions()
o.binary_location = "/usr/lib/chromium/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--user-data-dir=" + ENV["PROFILE_DIR"], "--window-size=800,1280"]:
    o.add_argument(a)
o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def wait(what, cond, timeout=20):
    try:
        WebDriverWait(d, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(lambda _: cond())
        return check(True, what)
    except TimeoutException:
        d.save_screenshot(os.path.join(ENV["SHOTS_DIR"], "login-failure.png"))
        return check(False, what + " (timed out)")


def text(css):
    try:
        return d.find_element(By.CSS_SELECTOR, css).text
    except Exception:
        return ""


def login(user):
    d.delete_all_cookies()
    d.get(BASE + "/")
    wait("login form for " + user, lambda: d.find_element(By.ID, "login-user-input").is_displayed())
    d.find_element(By.ID, "login-user-input").send_keys(user)
    d.find_element(By.ID, "login-password-input").send_keys(ENV["USER_PASSWORD"])
    d.find_element(By.ID, "login-button").click()
    wait(user + " logged in", lambda: "/system" in d.current_url or "login" not in d.page_source[:5000].lower(), 30)
    d.get(PAGE)
    return wait(user + ": the page connected to immod", lambda: d.find_element(By.TAG_NAME, "body").get_attribute("data-conn") == "connected", 30)


def console_errors():
    return [e for e in d.get_log("browser") if "/immod/" in e.get("source", "") + e["message"]
            and (e["level"] in ("SEVERE", "WARNING") or "Content Security Policy" in e["message"])]


def active():
    out = subprocess.run(["busctl", "--address=" + ENV["BUS_ADDRESS"], "--json=short", "get-property", "org.immod.Immod1",
                          "/org/immod/Immod1", "org.immod.Immod1.Manager", "ActiveProcedure"], capture_output=True, text=True)
    return json.loads(out.stdout)["data"] if out.returncode == 0 else None


errors = []
try:
    if login(ENV["TECH"]):
        d.find_element(By.ID, "identify").click()
        wait("tech: Identify shows the VIN", lambda: ENV["VIN"] in text("#st-vehicle"))
        d.find_element(By.CSS_SELECTOR, '.tab[data-view="procedure"]').click()
        d.find_element(By.CSS_SELECTOR, '.kind[data-kind="key-registration"]').click()
        wait("tech: the registration started", lambda: d.find_element(By.ID, "proc").get_attribute("data-step") == "confirm-instructions")
        check(active() not in (None, "/"), "tech: immod has the procedure (busctl)")
        d.save_screenshot(os.path.join(ENV["SHOTS_DIR"], "login-tech-started-tablet.png"))
        d.find_element(By.ID, "cancel").click()
        wait("tech: cancelled", lambda: d.find_element(By.ID, "proc").get_attribute("data-state") == "cancelled")
    errors += console_errors()

    if login(ENV["GUEST"]):
        wait("guest: the status shows the link", lambda: text("#st-link").startswith("up"))
        d.find_element(By.ID, "identify").click()
        wait("guest: refused with immod's words",
             lambda: "not authorized" in text("#identify-error") and "Log in as a user in immod's group" in text("#identify-error"))
        print("  the page said: " + text("#identify-error").replace("\n", " / "), flush=True)
        d.save_screenshot(os.path.join(ENV["SHOTS_DIR"], "login-guest-refused-tablet.png"))
        d.find_element(By.CSS_SELECTOR, '.tab[data-view="procedure"]').click()
        d.find_element(By.CSS_SELECTOR, '.kind[data-kind="key-registration"]').click()
        wait("guest: a start is refused too", lambda: "not authorized" in text("#start-error"))
    errors += console_errors()
except Exception as e:
    check(False, "%s: %s" % (type(e).__name__, e))
finally:
    d.quit()

for e in errors:
    check(False, "browser console: %s %s" % (e["level"], e["message"]))
sys.exit(1 if failures else 0)
