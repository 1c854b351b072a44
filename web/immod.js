/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Cockpit page of immod: one more front end of its D-Bus API (dbus-api.md). It holds no
 * state that immod does not hold: every screen is drawn from the Manager's and the
 * Procedure's properties, so a reload or a second tablet shows the same step. The words
 * for errors and problems come from messages.json, the file immoctl is built from.
 */
"use strict";

const NAME = "org.immod.Immod1";
const MPATH = "/org/immod/Immod1";
const MIFACE = "org.immod.Immod1.Manager";
const PIFACE = "org.immod.Immod1.Procedure";
const PROPS = "org.freedesktop.DBus.Properties";
const CALL_TIMEOUT_MS = 120000; /* FetchPasscode waits for the service, Erase for the ECU */

const KIND_TITLE = {
    "immobilizer-reset": "Immobilizer Reset",
    "key-registration": "Smart Code Registration",
    "key-erasure": "Undesignated Key Permanent Erasure",
};

/* How the page meets each step, as immoctl's guide.c does: the warnings want their
 * confirmation checked (the words immoctl asks to type), then Next. */
const STEP_UI = {
    "confirm-erase-all": { action: "ack", confirm: "I agree" },
    "open-driver-door": { action: "ack" },
    "immobilizer-passcode": { action: "passcode" },
    "confirm-duration": { action: "ack", confirm: "I understand" },
    "smart-code-passcode": { action: "passcode" },
    "resetting": { action: "resetting" },
    "confirm-instructions": { action: "ack" },
    "check-slots": { action: "ack" },
    "place-keys": { action: "ack" },
    "touch-registered-key": { action: "wait" },
    "pre-start-check": { action: "ack" },
    "touch-new-keys": { action: "touch-new" },
    "function-check": { action: "ack" },
    "confirm-warning": { action: "ack", confirm: "I understand" },
    "declare-keys": { action: "key-count" },
    "confirm-counts": { action: "ack", confirm: "yes" },
    "confirm-agree": { action: "ack", confirm: "I agree" },
    "touch-keys": { action: "erase" },
};

/* ------------------------------------------------------------------ state */

let messages = { errors: [], problems: [] };
let mgr = {};             /* the Manager's properties, variants unwrapped */
let procPath = null;      /* the procedure on screen */
let proc = {};            /* its properties */
let procGen = 0;          /* bumps when procPath changes: late replies are dropped */
let keyEvents = [];       /* KeyEvent signals of procPath: {event, slot, beeps, available} */
let volts = [];           /* [ms, V] while a procedure is on screen */
let drawnKey = null;      /* what the step panel was built for */
let connected = false;
let techUser = "";        /* the passcode service's user id, in memory only; never a password */

const client = cockpit.dbus(NAME, { bus: "system" });

function $(id) { return document.getElementById(id); }

/* h("tag", {attr: value, onclick: fn}, child...) with text as text, never as HTML */
function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false)
            continue;
        if (k.startsWith("on"))
            e.addEventListener(k.substring(2), v);
        else if (k === "text")
            e.textContent = v;
        else
            e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
        if (c === null || c === undefined || c === false)
            continue;
        e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
}

/* D-Bus values through cockpit: a variant is {t, v}, also inside a{sv}. */
function unwrap(x) {
    if (Array.isArray(x))
        return x.map(unwrap);
    if (x && typeof x === "object") {
        const keys = Object.keys(x);
        if (keys.length === 2 && typeof x.t === "string" && "v" in x)
            return unwrap(x.v);
        const o = {};
        for (const k of keys)
            o[k] = unwrap(x[k]);
        return o;
    }
    return x;
}

function s(v) { return cockpit.variant("s", v); }

function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

function duration(sec) {
    sec = Math.max(0, Math.round(sec));
    return sec >= 60 ? Math.floor(sec / 60) + " min " + String(sec % 60).padStart(2, "0") + " s" : sec + " s";
}

function keys(name) {
    const k = proc.Keys || {};
    return typeof k[name] === "number" ? k[name] : 0;
}

/* ------------------------------------------------------------------ words */

function errorInfo(name) {
    return messages.errors.find(e => e.name === name) || null;
}

/* The sentences immoctl prints: "Cannot ACTION: what: immod's message", then what to do. */
function errorSentences(action, err) {
    const name = err && err.name;
    const message = err && err.message && String(err.message).trim();
    const info = name ? errorInfo(name) : null;
    let first;

    if (info && message && !message.toLowerCase().startsWith(info.what.toLowerCase()))
        first = "Cannot " + action + ": " + info.what + ": " + message;
    else if (message)
        first = "Cannot " + action + ": " + message;
    else if (info)
        first = "Cannot " + action + ": " + info.what + ".";
    else
        first = "Cannot " + action + ": " + (name || cockpit.message(err)) + ".";
    const out = [first];
    const hint = info && (info.hint_web || info.hint);
    if (hint)
        out.push(hint);
    return out;
}

function showError(id, action, err) {
    const box = $(id);
    box.replaceChildren(...errorSentences(action, err).map(t => h("p", { text: t })));
    box.dataset.error = (err && err.name) || "";
    box.hidden = false;
}

function clearError(id) {
    const box = $(id);
    if (box) {
        box.hidden = true;
        box.replaceChildren();
        delete box.dataset.error;
    }
}

function problemAdvice(id) {
    const p = messages.problems.find(x => x.id === id);
    return p ? (p.advice_web || p.advice) : id;
}

function keyEventText(e) {
    const left = e.available === null ? "" : ", " + plural(e.available, "slot") + " left";
    switch (e.event) {
    case "key-registered": return "key registered in slot " + e.slot + left;
    case "registered-key-recognised": return "the registered key (slot " + e.slot + ") was recognised";
    case "key-kept": return "the key in slot " + e.slot + " will be kept (" + e.touched + " of " + e.declared + " touched)";
    case "rejected-erased": return "refused: this key was erased before and can never be registered again";
    case "rejected-no-slot": return "refused: no slot is free, the key was not registered";
    case "rejected-already-registered": return "refused: this key is already registered (slot " + e.slot + ")";
    case "unknown-key": return "this key is not registered to this vehicle";
    case "timed-out": return "the ECU ended registration mode (idle timeout)";
    default: return e.event + " (slot " + e.slot + ")";
    }
}

/* ------------------------------------------------------------------ the bus */

function call(path, iface, method, signature, args) {
    return client.call(path, iface, method, args, { type: signature, timeout: CALL_TIMEOUT_MS });
}
function mcall(method, signature, args) { return call(MPATH, MIFACE, method, signature, args); }
function pcall(method, signature, args) { return call(procPath, PIFACE, method, signature, args); }

function getAll(path, iface) {
    return call(path, PROPS, "GetAll", "s", [iface]).then(reply => unwrap(reply[0]));
}

function setConn(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    c.textContent = text;
    document.body.dataset.conn = state;
}

function readManager() {
    return getAll(MPATH, MIFACE).then(props => {
        mgr = props;
        connected = true;
        setConn("connected", "Connected to immod " + (mgr.Version || ""));
        const active = mgr.ActiveProcedure;
        if (active && active !== "/" && active !== procPath)
            follow(active);
        render();
    }).catch(err => {
        connected = false;
        setConn("lost", errorSentences("reach immod", err).join(" "));
        render();
    });
}

function follow(path) {
    procPath = path;
    proc = {};
    keyEvents = [];
    volts = [];
    drawnKey = null;
    procGen++;
    return readProcedure();
}

function readProcedure() {
    const gen = procGen;
    if (!procPath)
        return Promise.resolve();
    return getAll(procPath, PIFACE).then(props => {
        if (gen !== procGen)
            return;
        proc = props;
        render();
    }).catch(err => {
        if (gen !== procGen)
            return;
        showError("proc-error", "read the procedure", err);
    });
}

function onPropertiesChanged(path, iface, signal, args) {
    const [ifname, changed, invalidated] = args;
    const values = unwrap(changed);
    if (path === MPATH && ifname === MIFACE) {
        Object.assign(mgr, values);
        if ("ActiveProcedure" in values && values.ActiveProcedure !== "/" && values.ActiveProcedure !== procPath)
            follow(values.ActiveProcedure);
        if ("BatteryVoltage" in values)
            sampleVoltage();
        if (invalidated && invalidated.length)
            readManager();
    } else if (path === procPath && ifname === PIFACE) {
        Object.assign(proc, values);
        if ("Keys" in values)
            for (const e of keyEvents)
                if (e.available === null)
                    Object.assign(e, keyCounts());
        if (invalidated && invalidated.length)
            readProcedure();
    } else
        return;
    render();
}

function keyCounts() {
    return { available: keys("available"), touched: keys("touched"), declared: keys("declared_present") };
}

function onProcedureSignal(path, iface, signal, args) {
    if (path !== procPath)
        return;
    if (signal === "KeyEvent") {
        const e = { event: args[0], slot: args[1], beeps: args[2], available: null, touched: 0, declared: 0 };
        keyEvents.push(e);
        /* the Keys that the touch changed follow the signal; if they do not come, say what is known */
        window.setTimeout(() => {
            if (e.available === null) {
                Object.assign(e, keyCounts());
                render();
            }
        }, 500);
        render();
    } else if (signal === "Finished") {
        readProcedure();
        readManager();
    }
}

function sampleVoltage() {
    const v = mgr.BatteryVoltage;
    if (procPath && typeof v === "number" && isFinite(v)) {
        volts.push([Date.now(), v]);
        if (volts.length > 2000)
            volts.shift();
    }
}

/* ------------------------------------------------------------------ navigation */

function showView(name) {
    for (const v of document.querySelectorAll(".view"))
        v.hidden = v.dataset.view !== name;
    for (const t of document.querySelectorAll(".tab")) {
        if (t.dataset.view === name)
            t.setAttribute("aria-current", "page");
        else
            t.removeAttribute("aria-current");
    }
    document.body.dataset.view = name;
    window.scrollTo(0, 0);
}

/* ------------------------------------------------------------------ drawing */

function isFinal(state) { return state === "succeeded" || state === "failed" || state === "cancelled"; }

function render() {
    renderStatus();
    renderProcedure();
}

function renderProblems(box, skipRunning) {
    const list = (mgr.Problems || []).filter(p => !(skipRunning && p === "procedure-running"));
    box.replaceChildren(...list.map(p => h("div", { class: "problem", "data-problem": p, text: problemAdvice(p) })));
}

function renderStatus() {
    if (!connected)
        return;
    $("st-link").textContent = (mgr.LinkState || "unknown") + (mgr.Link ? " (" + mgr.Link + ")" : "");
    $("st-link").className = mgr.LinkState === "up" ? "good" : "bad";

    const ecu = $("st-ecu");
    ecu.replaceChildren(mgr.EcuState || "unknown");
    if (mgr.EcuState === "asleep")
        ecu.append(h("br"), "Press the driver's door courtesy switch (do not cycle the engine switch).");
    ecu.className = mgr.EcuState === "awake" ? "good" : "bad";

    const v = mgr.BatteryVoltage;
    $("st-battery").textContent = (typeof v === "number" && isFinite(v) ? v.toFixed(1) + " V" : "unknown") +
        ", " + (mgr.BatteryState || "unknown");
    $("st-battery").className = mgr.BatteryState === "ok" ? "good" : "bad";

    const veh = mgr.Vehicle || {};
    if (veh.vin) {
        const words = [veh.vin];
        const name = [veh.make, veh.model, veh.year].filter(Boolean).join(" ");
        if (name)
            words.push(name);
        if (veh.vin_check_ok === false)
            words.push("VIN check digit wrong");
        words.push(veh.source === "manual" ? "entered by hand" : "read from the ECU");
        $("st-vehicle").textContent = words.join(", ");
    } else
        $("st-vehicle").textContent = "unknown";
    $("st-server").textContent = mgr.Server || "unknown";
    $("st-version").textContent = mgr.Version || "–";

    const active = mgr.ActiveProcedure && mgr.ActiveProcedure !== "/";
    if (active && mgr.ActiveProcedure === procPath && proc.Kind)
        $("st-procedure").textContent = KIND_TITLE[proc.Kind] + ": step " + proc.StepIndex + " of " +
            proc.StepCount + " (" + proc.Step + "), " + proc.State;
    else
        $("st-procedure").textContent = active ? mgr.ActiveProcedure : "none";
    $("open-procedure").hidden = !active;
    renderProblems($("problems"), false);

    const sv = $("start-vehicle");
    sv.textContent = veh.vin ? "Vehicle: " + $("st-vehicle").textContent
        : "No vehicle is known yet: identify it on the Status screen first.";
}

function renderProcedure() {
    const showProc = procPath !== null && proc.Kind;
    $("start").hidden = !!showProc || !connected;
    $("proc").hidden = !showProc;
    if (!showProc)
        return;

    const final = isFinal(proc.State);
    const box = $("proc");
    box.dataset.step = proc.Step || "";
    box.dataset.state = proc.State || "";
    box.dataset.path = procPath;
    $("proc-title").textContent = KIND_TITLE[proc.Kind] || proc.Kind;
    $("proc-meta").textContent = "VIN " + (proc.Vin || "?") + " · started " +
        (proc.Created ? new Date(proc.Created / 1000).toLocaleString() : "?");
    $("proc-stepno").textContent = final ? proc.State : "Step " + proc.StepIndex + " of " + proc.StepCount;
    $("proc-overall").value = proc.Percentage || 0;
    $("cancel").hidden = final || proc.Step === "resetting"; /* NotCancellable while the ECU resets */
    $("close-proc").hidden = !final;
    renderProblems($("proc-problems"), true);

    const key = [procPath, proc.Step, proc.State === "waiting" ? "w" : proc.State, JSON.stringify(proc.Seed || {}),
        proc.Step === "touch-new-keys" ? registrationMode() : ""].join("|");
    if (key !== drawnKey) {
        drawnKey = key;
        $("step").replaceChildren(...buildStep());
    }
    updateStep();

    const evbox = $("key-events-box");
    evbox.hidden = keyEvents.length === 0;
    $("key-events").replaceChildren(...keyEvents.slice().reverse().map(e => {
        const sound = Array(Math.min(e.beeps, 8)).fill("beep").join(" ");
        return h("li", { "data-event": e.event }, sound ? h("span", { class: "beep", text: sound + ": " }) : null,
                 keyEventText(e));
    }));
}

/* Registration mode 1 (a key was registered before: one new key per procedure) or 2. */
function registrationMode() {
    return keys("registered") > keys("added") ? 1 : 2;
}

function nextButton(label, onclick, attrs) {
    return h("button", Object.assign({ type: "button", class: "primary", onclick }, attrs || {}), label);
}

/* The step's screen, built when the step (or its seed) changes; updateStep() keeps its live parts current. */
function buildStep() {
    const step = proc.Step;
    const ui = STEP_UI[step] || { action: "wait" };
    const out = [h("p", { class: "prompt", id: "prompt", text: proc.Prompt || "" })];

    if (isFinal(proc.State))
        return buildResult();
    if (proc.State !== "waiting" && ui.action !== "resetting" && ui.action !== "erase" && ui.action !== "touch-new") {
        out.push(h("p", { class: "notice", id: "working", text: "immod is working with the ECU …" }));
        return out;
    }

    switch (ui.action) {
    case "ack": {
        out.push(...stepDetails(step));
        let check = null;
        const next = nextButton("Next", () => acknowledge(step, next), { id: "next" });
        if (ui.confirm) {
            check = h("input", { type: "checkbox", id: "confirm" });
            next.disabled = true;
            check.addEventListener("change", () => { next.disabled = !check.checked; });
            out.push(h("label", { class: "check" }, check, ui.confirm === "yes" ? "Yes, these counts are right" : ui.confirm));
        }
        out.push(h("div", { class: "actions" }, next));
        break;
    }
    case "passcode":
        out.push(...buildPasscode());
        break;
    case "key-count": {
        const max = Math.max(keys("registered"), 1);
        let n = 1;
        const num = h("output", { id: "count", text: "1" });
        const set = d => { n = Math.min(max, Math.max(1, n + d)); num.textContent = String(n); };
        out.push(h("p", { text: "How many of the customer's keys are here? They will be kept; " +
                          plural(keys("registered"), "key is", "keys are") + " registered." }));
        out.push(h("div", { class: "stepper" },
                   h("button", { type: "button", class: "secondary", id: "count-less", "aria-label": "one less", onclick: () => set(-1) }, "−"),
                   num,
                   h("button", { type: "button", class: "secondary", id: "count-more", "aria-label": "one more", onclick: () => set(1) }, "+")));
        const next = nextButton("Next", () => act(next, "set the number of keys present", () => pcall("SetKeyCount", "u", [n])), { id: "next" });
        out.push(h("div", { class: "actions" }, next));
        break;
    }
    case "erase":
        out.push(h("p", { class: "big", id: "countdown" }));
        out.push(h("p", { class: "counts", id: "touched" }));
        out.push(h("div", { class: "actions" }, h("button", { type: "button", class: "danger", id: "erase", hidden: true, onclick: erase })));
        break;
    case "touch-new":
        if (registrationMode() === 1)
            out.push(h("p", { class: "notice", text: "One new key per procedure here (a key was registered before); start Smart Code Registration again for the next one." }));
        else {
            out.push(h("p", { class: "counts", id: "slots" }));
            const done = nextButton("Done: every new key is registered", () => act(done, "end registration mode", () => pcall("Finish", "", [])), { id: "finish" });
            out.push(h("div", { class: "actions" }, done));
        }
        break;
    case "resetting":
        out.push(h("p", { class: "notice", text: "Closing this page does not stop the reset; a reload or another tablet shows it again. It cannot be cancelled while the ECU resets." }));
        out.push(h("progress", { class: "reset", id: "reset-bar", max: "100", value: "0" }));
        out.push(h("p", { class: "big", id: "reset-left" }));
        out.push(h("p", { class: "counts", id: "reset-volts" }));
        out.push(h("canvas", { class: "chart", id: "chart", width: "700", height: "140", "aria-label": "battery voltage during the procedure" }));
        break;
    default:
        out.push(...stepDetails(step));
    }
    return out;
}

function stepDetails(step) {
    if (step === "check-slots" || step === "confirm-instructions")
        return [h("p", { class: "counts", text: "Key slots: " + keys("registered") + " registered, " + keys("available") +
                         " free, " + keys("max") + " in all." })];
    if (step === "confirm-counts") {
        const reg = keys("registered"), present = keys("declared_present");
        return [h("dl", { class: "fields counts", id: "counts" },
                  h("dt", { text: "Registered in the vehicle" }), h("dd", { id: "c-registered", text: String(reg) }),
                  h("dt", { text: "Customer keys present, to keep" }), h("dd", { id: "c-keep", text: String(present) }),
                  h("dt", { text: "Keys to delete for ever" }), h("dd", { id: "c-delete", class: "bad", text: String(Math.max(reg - present, 0)) }))];
    }
    return [];
}

function copyButton(text, label) {
    const b = h("button", { type: "button", class: "secondary small", "data-copy": text, "aria-label": "copy " + label }, "Copy");
    b.addEventListener("click", () => {
        const done = () => { b.textContent = "Copied"; window.setTimeout(() => { b.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard && window.isSecureContext)
            navigator.clipboard.writeText(text).then(done, () => selectCopy(text, done));
        else
            selectCopy(text, done);
    });
    return b;
}

/* Over plain http the Clipboard API is not there: copy through a selected text field. */
function selectCopy(text, done) {
    const t = h("textarea", { readonly: true, "aria-hidden": "true", class: "offscreen" });
    t.value = text;
    document.body.append(t);
    t.select();
    try {
        document.execCommand("copy");
        done();
    } catch (e) {
        /* the text stays selectable on the screen */
    }
    t.remove();
}

function buildPasscode() {
    const seed = proc.Seed || {};
    const out = [];

    if (!seed.kind) {
        out.push(h("p", { class: "notice", id: "working", text: "Asking the ECU for a seed …" }));
        return out;
    }
    const immobilizer = seed.kind === "immobilizer";
    if (immobilizer) {
        const digits = (seed.seed || "").toUpperCase();
        const groups = digits.match(/.{1,4}/g) || [];
        out.push(h("h3", { text: "Immobilizer seed (" + digits.length + " digits), for the passcode service" }));
        out.push(h("div", { class: "seed-digits", id: "seed", "data-seed": seed.seed || "" }, groups.map(g => h("span", { text: g }))));
        out.push(h("div", { class: "actions" }, copyButton(seed.seed || "", "the seed")));
    } else {
        out.push(h("h3", { text: "Smart code seed, for the passcode service (each value with its check character)" }));
        const rows = [["VIN", "vin", "cd_vin"], ["Data1", "data1", "cd_data1"], ["Data2", "data2", "cd_data2"], ["Data3", "data3", "cd_data3"]];
        out.push(h("table", { class: "seed", id: "seed" },
                   h("thead", {}, h("tr", {}, h("th", { text: "" }), h("th", { text: "value" }), h("th", { text: "CD" }), h("th", { text: "" }))),
                   h("tbody", {}, rows.map(([label, k, cd]) =>
                       h("tr", { "data-field": k },
                         h("th", { text: label }),
                         h("td", { class: "v", text: seed[k] || "?" }),
                         h("td", { class: "cd", text: seed[cd] || "?" }),
                         h("td", {}, copyButton(seed[k] || "", label)))))));
    }
    out.push(h("p", { id: "attempts", class: "counts" }));
    out.push(h("p", { id: "lockout", class: "problem", hidden: true }));

    /* typed: any spacing and case; immod normalises as immoctl does */
    const input = h("input", { type: "text", id: "passcode", class: "code", autocomplete: "off", autocapitalize: "characters",
                               spellcheck: "false", inputmode: immobilizer ? "numeric" : "text" });
    const submit = nextButton("Next", () => {
        const typed = input.value.replace(/\s+/g, "");
        if (!typed)
            return;
        act(submit, "submit the passcode", () => pcall("SubmitPasscode", "s", [typed]))
            .then(ok => { if (!ok) input.value = ""; });
    }, { id: "submit-passcode" });
    out.push(h("div", { class: "box" },
               h("label", { for: "passcode", text: immobilizer ? "Immobilizer passcode (6 digits)" : "Smart code passcode (12 characters)" }),
               input, submit));

    /* fetched by immod: the password goes into the one call and is cleared from the field */
    const user = h("input", { type: "text", id: "fetch-user", autocomplete: "off", autocapitalize: "none", spellcheck: "false" });
    user.value = techUser;
    const pw = h("input", { type: "password", id: "fetch-password", autocomplete: "off" });
    const fetchb = h("button", { type: "button", class: "secondary", id: "fetch" }, "Fetch from the passcode service");
    fetchb.addEventListener("click", () => {
        techUser = user.value.trim();
        const password = pw.value;
        pw.value = "";
        act(fetchb, "fetch the passcode", () => pcall("FetchPasscode", "a{sv}", [{ user: s(techUser), password: s(password) }]));
    });
    out.push(h("div", { class: "box" },
               h("h3", { text: "Or let immod fetch it from the passcode service" }),
               h("label", { for: "fetch-user", text: "User ID" }), user,
               h("label", { for: "fetch-password", text: "Password (used once, never stored)" }), pw,
               fetchb));
    return out;
}

function buildResult() {
    const out = [];
    const st = proc.State;
    if (st === "succeeded") {
        out.push(h("p", { class: "big result-ok", id: "result", text: "Done." }));
        out.push(h("p", { class: "prompt", text: proc.Prompt || "" }));
    } else {
        const head = st === "cancelled" ? "The procedure was cancelled." : "The procedure failed.";
        out.push(h("p", { class: "big result-bad", id: "result", text: head }));
        if (proc.ErrorMessage || proc.Error) {
            const lines = errorSentences("finish", { name: proc.Error, message: proc.ErrorMessage });
            out.push(h("div", { class: "error", "data-error": proc.Error || "" },
                       h("p", { text: proc.ErrorMessage || (errorInfo(proc.Error) || {}).what || proc.Error }),
                       lines.length > 1 ? h("p", { text: lines[1] }) : null));
        }
    }
    /* immod leaves the car's counts out until it read them */
    const read = typeof (proc.Keys || {}).registered === "number";
    out.push(h("p", { class: "counts", id: "final-keys", text: read ? "Keys: " + keys("registered") + " registered, " +
                      keys("available") + " free of " + keys("max") + " slots." : "Keys: not read from the vehicle." }));
    if (typeof proc.BatteryMinimum === "number" && isFinite(proc.BatteryMinimum))
        out.push(h("p", { text: "Lowest battery voltage: " + proc.BatteryMinimum.toFixed(1) + " V" }));
    if (st === "succeeded" && proc.Kind === "immobilizer-reset") {
        out.push(h("p", { text: "Next: register the new keys." }));
        out.push(h("div", { class: "actions" }, nextButton("Register new keys", () => {
            closeProcedure();
            $("start-ro").focus();
        }, { id: "next-register" })));
    }
    return out;
}

/* The live parts of the step's screen: counts, countdowns, progress, attempts. */
function updateStep() {
    const att = $("attempts");
    if (att)
        att.textContent = "Attempts left before the ECU locks out: " + (proc.PasscodeAttemptsLeft ?? "?");
    const lock = $("lockout");
    if (lock) {
        const l = proc.LockoutSeconds || 0;
        lock.hidden = l === 0;
        lock.textContent = "The ECU is locked out after wrong passcodes: " + duration(l) + " left.";
        for (const id of ["submit-passcode", "fetch"])
            if ($(id))
                $(id).disabled = l > 0;
    }
    const slots = $("slots");
    if (slots)
        slots.textContent = "Touch each new key to the engine switch. New keys registered: " + keys("added") + "; " +
            plural(keys("available"), "slot") + " free.";
    if ($("countdown"))
        tick();
    const bar = $("reset-bar");
    if (bar) {
        const pct = proc.Percentage || 0;
        bar.value = pct;
        const rem = proc.RemainingSeconds || 0;
        $("reset-left").textContent = pct + " % · " + (rem > 0 ? "about " + duration(rem) + " left" : pct >= 100 ? "finishing" : "estimating the time left");
        const v = mgr.BatteryVoltage;
        $("reset-volts").textContent = "Battery: " + (typeof v === "number" && isFinite(v) ? v.toFixed(1) + " V" : "unknown") +
            (typeof proc.BatteryMinimum === "number" && isFinite(proc.BatteryMinimum) ? " (lowest " + proc.BatteryMinimum.toFixed(1) + " V)" : "");
        drawChart();
    }
}

/* The erasure's window, counted down from Deadline every second. */
function tick() {
    const cd = $("countdown");
    if (!cd)
        return;
    const touched = keys("touched"), declared = keys("declared_present");
    const deadline = proc.Deadline || 0;
    const left = deadline > 0 ? Math.max(0, Math.ceil((deadline / 1000 - Date.now()) / 1000)) : null;
    cd.textContent = left === null ? "Touch the customer's keys now" : left + " s left to touch the keys";
    $("touched").textContent = touched + " of " + declared + " keys present touched.";
    const b = $("erase");
    const toDelete = Math.max(keys("registered") - declared, 0);
    b.hidden = !(declared > 0 && touched >= declared) || proc.State !== "waiting";
    b.textContent = "Delete the " + plural(toDelete, "key") + " not touched";
}

function drawChart() {
    const c = $("chart");
    if (!c)
        return;
    const w = c.clientWidth || 700;
    if (c.width !== w)
        c.width = w;
    const ctx = c.getContext("2d");
    const H = c.height;
    ctx.clearRect(0, 0, c.width, H);
    const lo = 8, hi = 16; /* volts shown */
    const y = v => H - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo) * H;
    ctx.strokeStyle = "#bbb";
    ctx.fillStyle = "#444";
    ctx.font = "12px sans-serif";
    for (const v of [9, 12, 15]) {
        ctx.beginPath();
        ctx.moveTo(0, y(v));
        ctx.lineTo(c.width, y(v));
        ctx.stroke();
        ctx.fillText(v + " V", 4, y(v) - 2);
    }
    if (volts.length === 0)
        return;
    const t0 = volts[0][0], t1 = Math.max(volts[volts.length - 1][0], t0 + 1000);
    ctx.strokeStyle = "#0b4ea2";
    ctx.lineWidth = 3;
    ctx.beginPath();
    volts.forEach(([t, v], i) => {
        const x = (t - t0) / (t1 - t0) * (c.width - 40) + 36;
        if (i === 0)
            ctx.moveTo(x, y(v));
        else
            ctx.lineTo(x, y(v));
    });
    ctx.stroke();
}

/* ------------------------------------------------------------------ acting */

/* Runs a call with its button disabled; shows immod's error as sentences. Resolves true on success. */
function act(button, action, fn, errorBox) {
    const box = errorBox || "proc-error";
    clearError(box);
    if (button)
        button.disabled = true;
    return fn().then(() => {
        if (button)
            button.disabled = false;
        if (box === "proc-error")
            readProcedure();
        return true;
    }).catch(err => {
        if (button)
            button.disabled = false;
        showError(box, action, err);
        if (box === "proc-error") {
            drawnKey = null; /* a fresh seed, attempts left: draw the step again */
            readProcedure();
        }
        return false;
    });
}

function acknowledge(step, button) {
    return act(button, "confirm the step", () => pcall("Acknowledge", "s", [step]));
}

function erase() {
    const expected = Math.max(keys("registered") - keys("declared_present"), 0);
    return act($("erase"), "erase the keys", () => pcall("Erase", "u", [expected]));
}

function start(kind) {
    const opts = {};
    for (const [id, k] of [["start-ro", "repair_order"], ["start-customer", "customer_last_name"], ["start-technician", "technician"]]) {
        const v = $(id).value.trim();
        if (v)
            opts[k] = s(v);
    }
    showView("procedure");
    clearError("start-error");
    return mcall("StartProcedure", "sa{sv}", [kind, opts]).then(reply => {
        clearError("proc-error");
        return follow(reply[0]);
    }).catch(err => showError("start-error", "start the " + KIND_TITLE[kind], err));
}

function closeProcedure() {
    procPath = null;
    proc = {};
    keyEvents = [];
    volts = [];
    drawnKey = null;
    procGen++;
    clearError("proc-error");
    const active = mgr.ActiveProcedure;
    if (active && active !== "/")
        follow(active);
    render();
}

function valueOf(id) { return $(id).value.trim(); }

function credentials() {
    const pw = $("ap-password").value;
    $("ap-password").value = "";
    techUser = valueOf("ap-user") || techUser;
    return { user: s(valueOf("ap-user")), password: s(pw) };
}

function showApproval(r) {
    $("ap-result").hidden = false;
    $("ap-r-status").textContent = r.status || "–";
    $("ap-r-request").textContent = r.request_no || "–";
    $("ap-r-by").textContent = r.approved_by || "–";
    $("ap-r-till").textContent = r.valid_till || "–";
}

function setup() {
    for (const t of document.querySelectorAll(".tab"))
        t.addEventListener("click", () => showView(t.dataset.view));
    $("open-procedure").addEventListener("click", () => showView("procedure"));
    for (const b of document.querySelectorAll(".kind"))
        b.addEventListener("click", () => act(b, "start", () => start(b.dataset.kind), "start-error"));
    $("cancel").addEventListener("click", () => act($("cancel"), "cancel the procedure", () => pcall("Cancel", "", [])));
    $("close-proc").addEventListener("click", closeProcedure);

    $("identify").addEventListener("click", () =>
        act($("identify"), "identify the vehicle", () => mcall("Identify", "", []).then(readManager), "identify-error"));
    $("mv-set").addEventListener("click", () => {
        const year = parseInt(valueOf("mv-year"), 10);
        const opts = { model: s(valueOf("mv-model")) };
        if (year > 0)
            opts.year = cockpit.variant("u", year);
        if ($("mv-force").checked)
            opts.force = cockpit.variant("b", true);
        act($("mv-set"), "set the vehicle", () => mcall("SetVehicle", "sa{sv}", [valueOf("mv-vin").toUpperCase(), opts]).then(readManager), "mv-error");
    });

    $("read-keys").addEventListener("click", () =>
        act($("read-keys"), "read the key status", () => mcall("ReadKeyStatus", "", []).then(reply => {
            const k = unwrap(reply[0]);
            $("keys-fields").hidden = false;
            $("k-registered").textContent = k.registered;
            $("k-available").textContent = k.available;
            $("k-max").textContent = k.max;
        }), "keys-error"));

    /* The voltage over the procedure, as immod keeps it with the record: (s, lowest, highest). */
    const traceOf = r => (Array.isArray(r.battery_trace) ? r.battery_trace : [])
        .filter(p => Array.isArray(p) && p.length === 3);
    const traceSummary = t => {
        if (t.length === 0)
            return "";
        const lo = Math.min(...t.map(p => p[1])), hi = Math.max(...t.map(p => p[2]));
        const secs = Math.max(...t.map(p => p[0]));
        return h("span", { class: "trace", text: " · battery " + lo.toFixed(2) + "–" + hi.toFixed(2) + " V over " +
                           (secs >= 120 ? Math.round(secs / 60) + " min" : secs + " s") });
    };

    $("read-history").addEventListener("click", () =>
        act($("read-history"), "read the history", () => mcall("GetHistory", "u", [50]).then(reply => {
            const records = unwrap(reply[0]);
            $("history").replaceChildren(...records.map(r => h("li", { "data-kind": r.kind, "data-result": r.result,
                                                                         "data-trace": traceOf(r).length },
                h("strong", { text: (KIND_TITLE[r.kind] || r.kind) + ": " + r.result }),
                h("br"),
                /* GetHistory's time is µs since the epoch */
                (typeof r.time === "number" ? new Date(r.time / 1000).toLocaleString() : (r.time || "")) +
                    " · VIN " + (r.vin || "?") + (r.repair_order ? " · RO " + r.repair_order : "") +
                    (r.technician ? " · " + r.technician : ""),
                h("br"),
                "Keys " + (r.keys_before ?? "?") + " → " + (r.keys_after ?? "?") +
                    (typeof r.battery_min === "number" ? " · lowest battery " + r.battery_min.toFixed(1) + " V" : "") +
                    (r.passcode_attempts ? " · " + plural(r.passcode_attempts, "passcode attempt") : "") +
                    (r.error ? " · " + r.error.replace(/^org\.immod\.Immod1\.Error\./, "") : ""),
                traceSummary(traceOf(r)))));
            if (records.length === 0)
                $("history").replaceChildren(h("li", { text: "No procedure yet." }));
        }), "history-error"));

    $("ap-request").addEventListener("click", () => {
        const attest = Array.from(document.querySelectorAll(".ap-attest")).filter(c => c.checked).map(c => c.value);
        const req = {
            vin: s(valueOf("ap-vin").toUpperCase()),
            repair_order: s(valueOf("ap-ro")),
            customer_last_name: s(valueOf("ap-customer")),
            technician: s(valueOf("ap-technician") || valueOf("ap-user")),
            approvers: cockpit.variant("as", [valueOf("ap-approver1"), valueOf("ap-approver2")].filter(Boolean)),
            attestations: cockpit.variant("as", attest),
        };
        act($("ap-request"), "send the approval request",
            () => mcall("RequestApproval", "a{sv}a{sv}", [req, credentials()]).then(reply => showApproval(unwrap(reply[0]))), "ap-error");
    });
    $("ap-status").addEventListener("click", () =>
        act($("ap-status"), "read the approval",
            () => mcall("GetApproval", "sa{sv}", [valueOf("ap-vin").toUpperCase(), credentials()]).then(reply => showApproval(unwrap(reply[0]))), "ap-error"));

    window.setInterval(() => {
        if ($("countdown"))
            tick();
        /* the voltage is announced only when it changes: a steady battery is a flat line */
        if ($("chart")) {
            sampleVoltage();
            drawChart();
        }
    }, 1000);
    window.addEventListener("resize", drawChart);
}

/* The matches first, then the properties: nothing falls in between. */
function connect() {
    client.subscribe({ path_namespace: MPATH, interface: PROPS, member: "PropertiesChanged" }, onPropertiesChanged);
    client.subscribe({ path_namespace: MPATH, interface: PIFACE }, onProcedureSignal);
    client.addEventListener("owner", (event, owner) => {
        if (owner) {
            readManager();
            readProcedure();
        } else if (connected) {
            setConn("lost", "immod stopped. Waiting for it to come back: it resumes the procedure from its journal.");
        }
    });
    client.addEventListener("close", (event, options) => {
        connected = false;
        setConn("lost", "The connection to the box was lost (" + cockpit.message(options) + "). Reload the page.");
    });
    return readManager().then(() => {
        if (mgr.ActiveProcedure && mgr.ActiveProcedure !== "/")
            showView("procedure");
    });
}

function loadMessages() {
    return window.fetch("messages.json").then(r => r.json()).then(m => { messages = m; })
        .catch(() => { /* words fall back to immod's own messages */ });
}

setup();
loadMessages().then(connect);
