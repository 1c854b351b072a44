// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The service's own pages: the bulletins' TIS screens (the reset request, the manager's
// inbox and decision, the passcodes, the monthly report) over the service's API. Every
// rule is the server's: the pages send what was typed (spacing taken out, letters made
// capital) and show the service's answer in its own words. Text is always set with
// textContent, never parsed as HTML. The view is chosen by the address's #fragment, so
// the demo can point a manager at #/ and a request has its own link.

import { ApiError, call, current, login, logout } from "./api.js";

const main = document.getElementById("main");
let renderCount = 0;
let approverNames = {}; // id -> "name (title)" of the dealer's approving managers

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === false || v === null || v === undefined)
            continue;
        if (k === "class")
            e.className = v;
        else if (k.startsWith("on"))
            e.addEventListener(k.slice(2), v);
        else
            e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat(Infinity)) {
        if (c === null || c === undefined || c === false || c === "")
            continue;
        e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
}

function field(label, input, extra) {
    return h("label", { class: "field" }, h("span", { class: "label" }, label), input, extra);
}

function checkbox(id, text) {
    return h("label", { class: "check" }, h("input", { type: "checkbox", id }), h("span", {}, text));
}

// "2026-12-02T19:40:11Z" as "2026-12-02 19:40 UTC"
function when(s) {
    return s ? s.replace("T", " ").slice(0, 16) + " UTC" : "";
}

function who(id) {
    const s = current();
    if (!id)
        return "";
    if (s && id === s.user)
        return s.name + " (you)";
    return approverNames[id] || id;
}

function technician(q) {
    const s = current();
    return q.technician === s.user ? s.name + " (you)" : q.technician_name || q.technician;
}

function statusBadge(status) {
    return h("span", { class: "status status-" + status, "data-status": status }, status);
}

function clearError(box, form) {
    box.replaceChildren();
    if (form)
        for (const i of form.querySelectorAll("[aria-invalid]"))
            i.removeAttribute("aria-invalid");
}

// The service's refusal in its words, the field it names marked on the form.
function showError(box, form, e) {
    clearError(box, form);
    if (!(e instanceof ApiError))
        e = new ApiError(0, "error", String(e && e.message ? e.message : e));
    if (e.status === 401 && !current() && !(form && form.id === "login-form")) {
        render(); // the session expired: the login, then back here
        return;
    }
    let text = e.message;
    const name = e.field || (e.id === "invalid-vin" ? "vin" : e.id === "bad-seed" && !e.field ? "seed" : null);
    if (name && form) {
        const input = form.querySelector("[data-field='" + name + "']");
        if (input) {
            input.setAttribute("aria-invalid", "true");
            input.focus();
            text = input.dataset.label + ": " + e.message;
        }
    }
    box.append(h("p", { class: "error", role: "alert", "data-error": e.id }, text, " ", h("code", {}, e.id)));
}

function ready(view, count) {
    if (count !== renderCount)
        return false;
    document.body.dataset.view = view;
    document.body.dataset.state = "ready";
    return true;
}

function passcodeBlock(kind, answer, details) {
    const s = current();
    return h("section", { class: "passcode-box", id: "passcode-box" },
        h("p", {}, "Thank You " + s.name + " Your " + (kind === "immobilizer" ? "Immobilizer " : "") + "Passcode is: ",
            h("strong", { id: "passcode", class: "passcode" }, answer.passcode)),
        h("p", { class: "valid-once" }, "This Passcode is valid for one " + (kind === "immobilizer" ? "reset" : "key registration") +
            " event"),
        details ? h("dl", { class: "details" }, details.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : null,
        h("p", { class: "hint" }, "Transaction " + answer.transaction_id +
            ". Copy it with no additional blank spaces into the Pass-Code Number box. Every attempt needs a new seed and gets its own passcode."));
}

// ---------------------------------------------------------------- views

function viewLogin(count) {
    const box = h("div");
    const form = h("form", { class: "card narrow", id: "login-form" },
        h("h1", {}, "Log in"),
        h("p", {}, "Immobilizer Reset and Add/Remove Key: log in with your password."),
        field("User", h("input", { id: "login-user", autocomplete: "username", autocapitalize: "none", spellcheck: "false" })),
        field("Password", h("input", { id: "login-password", type: "password", autocomplete: "current-password" })),
        box,
        h("div", { class: "buttons" }, h("button", { type: "submit", id: "login-submit", class: "primary" }, "Login")));
    form.addEventListener("submit", async ev => {
        ev.preventDefault();
        try {
            await login(form.querySelector("#login-user").value.trim(), form.querySelector("#login-password").value);
            form.querySelector("#login-password").value = "";
            approverNames = {};
            const next = sessionTarget;
            sessionTarget = null;
            location.hash = next && next !== "#/login" ? next : "#/";
            render();
        } catch (e) {
            showError(box, form, e);
        }
    });
    main.replaceChildren(form);
    ready("login", count);
    form.querySelector("#login-user").focus();
}

async function loadApproverNames() {
    const s = current();
    const j = await call("GET", "/dealers/" + encodeURIComponent(s.dealer) + "/approvers");
    approverNames = {};
    for (const a of j.approvers)
        approverNames[a.id] = a.name + " (" + a.title + ")";
    return j.approvers;
}

function requestTable(id, caption, requests, empty) {
    const rows = requests.map(q => h("tr", { "data-request": q.request_no },
        h("td", { "data-label": "Request" }, h("a", { href: "#/request/" + encodeURIComponent(q.request_no) }, q.request_no)),
        h("td", { "data-label": "VIN" }, q.vin),
        h("td", { "data-label": "Repair order" }, q.repair_order),
        h("td", { "data-label": "Customer" }, q.customer_last_name),
        h("td", { "data-label": "Technician" }, technician(q)),
        h("td", { "data-label": "Status" }, statusBadge(q.status)),
        h("td", { "data-label": "Decided by" }, who(q.decided_by)),
        h("td", { "data-label": "Valid till" }, q.status === "approved" ? when(q.valid_till) : "")));
    return h("section", { class: "card", id },
        h("h2", {}, caption, " ", h("span", { class: "count" }, String(requests.length))),
        requests.length === 0 ? h("p", { class: "empty" }, empty) :
            h("table", { class: "cards" },
                h("thead", {}, h("tr", {}, ["Request", "VIN", "Repair order", "Customer", "Technician", "Status",
                    "Decided by", "Valid till"].map(t => h("th", {}, t)))),
                h("tbody", {}, rows)));
}

async function viewHome(count) {
    const s = current();
    const [, list] = await Promise.all([loadApproverNames(), call("GET", "/reset-requests")]);
    if (count !== renderCount)
        return;
    const reqs = list.requests;
    const parts = [h("h1", {}, "Inbox"),
        h("p", { class: "lead" }, s.name + " · " + (s.role === "manager" ? "manager" : "technician") + " at dealer " + s.dealer)];
    if (s.role === "manager") {
        parts.push(requestTable("inbox-waiting", "Waiting for your decision",
            reqs.filter(q => q.status === "pending" && q.approvers.includes(s.user) && q.technician !== s.user),
            "No request waits for your decision."));
        parts.push(requestTable("inbox-decided", "Decided by you", reqs.filter(q => q.decided_by === s.user),
            "You have decided no request yet."));
    }
    parts.push(requestTable("inbox-mine", "Your requests", reqs.filter(q => q.technician === s.user),
        "You have asked for no reset yet. Select Reset request to ask for one."));
    main.replaceChildren(...parts);
    ready("home", count);
}

async function viewNewRequest(count) {
    const s = current();
    const approvers = await loadApproverNames();
    if (count !== renderCount)
        return;
    const box = h("div");
    const text = (id, label, attrs) => field(label + " *", h("input", Object.assign({ id, "data-field": id, "data-label": label }, attrs || {})));
    const form = h("form", { class: "card", id: "request-form" },
        h("h1", {}, "Reset Approval Request"),
        h("p", {}, "Populate the boxes with the correct information. Then, read the Positive Identification Policy and check the boxes once the indicated tasks are completed."),
        h("div", { class: "grid" },
            field("Dealer Code", h("input", { id: "dealer", value: s.dealer, readonly: true })),
            field("Technician", h("input", { id: "technician", value: s.name + " (" + s.user + ")", readonly: true })),
            text("vin", "Vehicle VIN", { maxlength: "24", class: "upper", autocapitalize: "characters", spellcheck: "false" }),
            text("repair_order", "Repair Order/Parts Invoice Number", { maxlength: "64" }),
            text("customer_last_name", "Customer Last Name", { maxlength: "64" })),
        h("fieldset", { class: "policy" }, h("legend", {}, "Positive Identification Policy"),
            checkbox("customer_authority", "I have verified the customer's authority to obtain vehicle security information for this vehicle."),
            checkbox("photo_id", "I have verified the customer's full legal name and confirmed their identity with a valid picture ID."),
            checkbox("registration", "I have or will visually confirm the vehicle's registration document and ownership."),
            checkbox("terms", "I agree to the Terms and Conditions.")),
        h("fieldset", { class: "policy", id: "managers" }, h("legend", {}, "Approving managers"),
            h("p", { class: "hint" }, "Select AT LEAST two managers. Each request must receive approval by one manager."),
            approvers.length === 0 ? h("p", { class: "empty" }, "Dealer " + s.dealer + " has no approving manager enrolled.") :
                approvers.map(a => h("label", { class: "check" },
                    h("input", { type: "checkbox", name: "approver", value: a.id, "data-approver": a.id }),
                    h("span", {}, a.name + " · " + a.title)))),
        box,
        h("div", { class: "buttons" },
            h("a", { href: "#/", class: "button" }, "Back"),
            h("button", { type: "submit", id: "request-submit", class: "primary" }, "Submit")));
    form.addEventListener("submit", async ev => {
        ev.preventDefault();
        const v = id => form.querySelector("#" + id);
        const body = {
            dealer_code: s.dealer,
            technician: s.user,
            vin: v("vin").value.replace(/\s+/g, "").toUpperCase(),
            repair_order: v("repair_order").value.trim(),
            customer_last_name: v("customer_last_name").value.trim(),
            attestations: Object.fromEntries(["customer_authority", "photo_id", "registration", "terms"].map(k => [k, v(k).checked])),
            approvers: [...form.querySelectorAll("input[name=approver]:checked")].map(i => i.value),
        };
        try {
            const j = await call("POST", "/reset-requests", body);
            location.hash = "#/request/" + encodeURIComponent(j.request_no);
        } catch (e) {
            showError(box, form, e);
        }
    });
    main.replaceChildren(form);
    ready("new", count);
}

async function viewRequest(count, no) {
    const s = current();
    const [, q] = await Promise.all([loadApproverNames(), call("GET", "/reset-requests/" + encodeURIComponent(no))]);
    if (count !== renderCount)
        return;
    const details = [
        ["Request No", q.request_no], ["Dealer Code", q.dealer_code], ["Technician", technician(q)],
        ["Vehicle VIN", q.vin], ["Repair Order/Parts Invoice Number", q.repair_order],
        ["Customer Last Name", q.customer_last_name], ["Requested", when(q.created_at)],
        ["Selected managers", q.approvers.map(who).join(", ")], ["Status", statusBadge(q.status)],
    ];
    if (q.decided_by)
        details.push([q.status === "denied" ? "Denied by" : "Approved by", who(q.decided_by)]);
    if (q.approved_at)
        details.push(["Approved at", when(q.approved_at)]);
    if (q.status === "approved")
        details.push(["Approval valid till", when(q.valid_till)]);
    const parts = [h("h1", {}, "Request " + q.request_no),
        h("section", { class: "card" }, h("h2", {}, "Request Details"),
            h("dl", { class: "details", id: "request-details" }, details.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))];
    if (q.status === "pending" && s.role === "manager")
        parts.push(decisionForm(q));
    else if (q.status === "pending")
        parts.push(h("section", { class: "card", id: "waiting" }, h("p", {}, "Waiting for approval by one of the selected managers: " +
            q.approvers.map(who).join(", ") + ".")));
    if (q.status === "approved")
        parts.push(immobilizerForm(q), completeForm(q));
    else if (q.status === "completed" || q.status === "expired")
        parts.push(h("section", { class: "card", id: "closed" }, h("p", {}, (q.status === "completed" ?
            "The repair is complete: this approval no longer holds." : "This approval has expired.") +
            " Another reset of this vehicle needs a new request.")));
    main.replaceChildren(...parts);
    ready("request", count);
}

function decisionForm(q) {
    const box = h("div");
    const form = h("form", { class: "card", id: "decision-form" },
        h("h2", {}, "Manager Approval"),
        h("p", {}, "Read the Request Approval Policy, then check the boxes AFTER the indicated tasks are completed."),
        h("fieldset", { class: "policy" }, h("legend", {}, "Request Approval Policy"),
            checkbox("details_verified", "I have verified the details entered for this request and confirmed the authority of the customer was verified."),
            checkbox("nicb_notice", "I realize that upon retrieval, a transaction log will be posted to the National Insurance Crime Bureau."),
            checkbox("decision_terms", "I agree to the Terms and Conditions.")),
        box,
        h("div", { class: "buttons" },
            h("button", { type: "submit", id: "deny", value: "deny", class: "danger" }, "Deny"),
            h("button", { type: "submit", id: "approve", value: "approve", class: "primary" }, "Approve")));
    form.addEventListener("submit", async ev => {
        ev.preventDefault();
        const decision = ev.submitter && ev.submitter.value === "deny" ? "deny" : "approve";
        const v = id => form.querySelector("#" + id).checked;
        try {
            await call("POST", "/reset-requests/" + encodeURIComponent(q.request_no) + "/decision", {
                decision,
                attestations: { details_verified: v("details_verified"), nicb_notice: v("nicb_notice"), terms: v("decision_terms") },
            });
            render();
        } catch (e) {
            showError(box, form, e);
        }
    });
    return form;
}

function immobilizerForm(q) {
    const box = h("div"), out = h("div");
    const form = h("form", { class: "card", id: "immobilizer-form" },
        h("h2", {}, "Immobilizer Passcode"),
        h("p", {}, "Enter the Techstream software version and paste the most recent seed number (any spacing). Every attempt needs a NEW seed."),
        field("Vehicle VIN", h("input", { value: q.vin, readonly: true })),
        field("Techstream Software Version *", h("input", { id: "software_version", "data-field": "software_version", "data-label": "Software version" })),
        field("Seed Number *", h("textarea", { id: "seed", rows: "4", spellcheck: "false", "data-field": "seed", "data-label": "Seed number" })),
        box,
        h("div", { class: "buttons" }, h("button", { type: "submit", id: "immobilizer-submit", class: "primary" }, "Next")),
        out);
    form.addEventListener("submit", async ev => {
        ev.preventDefault();
        out.replaceChildren();
        clearError(box, form);
        try {
            const j = await call("POST", "/passcodes", {
                kind: "immobilizer", vin: q.vin, request_no: q.request_no,
                software_version: form.querySelector("#software_version").value.trim(),
                seed: form.querySelector("#seed").value.replace(/\s+/g, ""),
            });
            out.replaceChildren(passcodeBlock("immobilizer", j, null));
        } catch (e) {
            showError(box, form, e);
        }
    });
    return form;
}

function completeForm(q) {
    const box = h("div");
    const form = h("form", { class: "card", id: "complete-form" },
        h("h2", {}, "Repair complete"),
        h("p", {}, "Once the keys work, mark the repair complete: the approval for this VIN then no longer holds."),
        box,
        h("div", { class: "buttons" }, h("button", { type: "submit", id: "complete", class: "button" }, "Mark repair complete")));
    form.addEventListener("submit", async ev => {
        ev.preventDefault();
        try {
            await call("POST", "/reset-requests/" + encodeURIComponent(q.request_no) + "/complete");
            render();
        } catch (e) {
            showError(box, form, e);
        }
    });
    return form;
}

function viewSmartCode(count) {
    const box = h("div"), out = h("div");
    const row = (id, label, size) => h("div", { class: "seed-row" },
        field(label + " *", h("input", { id, "data-field": id, "data-label": label, maxlength: String(size + 8), class: "upper",
            spellcheck: "false", autocapitalize: "characters" })),
        field("Check", h("input", { id: "cd_" + id, class: "cd upper", maxlength: "1", spellcheck: "false", autocapitalize: "characters",
            "aria-label": label + " check character" })));
    const form = h("form", { class: "card", id: "smart-code-form" },
        h("h1", {}, "Add or Remove key"),
        h("p", {}, "Type the seed number as Techstream shows it: VIN, Data1, Data2 and Data3, each with its check character. A mistyped field is named here before any passcode is issued."),
        row("vin", "VIN", 17), row("data1", "Data1", 11), row("data2", "Data2", 12), row("data3", "Data3", 8),
        h("div", { class: "grid" },
            field("Techstream Software Version *", h("input", { id: "sc_software_version", "data-field": "software_version", "data-label": "Software version" })),
            field("Repair Order/Parts Invoice Number *", h("input", { id: "sc_repair_order", "data-field": "repair_order", "data-label": "Repair order" })),
            field("Customer Last Name *", h("input", { id: "sc_customer", "data-field": "customer_last_name", "data-label": "Customer last name" }))),
        box,
        h("div", { class: "buttons" }, h("button", { type: "submit", id: "smart-code-submit", class: "primary" }, "Submit")),
        out);
    form.addEventListener("submit", async ev => {
        ev.preventDefault();
        out.replaceChildren();
        clearError(box, form);
        const v = id => form.querySelector("#" + id).value.replace(/\s+/g, "").toUpperCase();
        const body = {
            kind: "smart-code", vin: v("vin"), data1: v("data1"), data2: v("data2"), data3: v("data3"),
            cd: { vin: v("cd_vin"), data1: v("cd_data1"), data2: v("cd_data2"), data3: v("cd_data3") },
            software_version: form.querySelector("#sc_software_version").value.trim(),
            repair_order: form.querySelector("#sc_repair_order").value.trim(),
            customer_last_name: form.querySelector("#sc_customer").value.trim(),
        };
        try {
            const j = await call("POST", "/passcodes", body);
            out.replaceChildren(passcodeBlock("smart-code", j, [["VIN", body.vin], ["Repair Order/Parts Invoice Number", body.repair_order],
                ["Customer Last Name", body.customer_last_name], ["Dealer", current().dealer]]));
        } catch (e) {
            showError(box, form, e);
        }
    });
    main.replaceChildren(form);
    ready("smart-code", count);
}

function viewReport(count) {
    const s = current();
    const box = h("div"), out = h("div", { id: "report" });
    const month = new Date().toISOString().slice(0, 7);
    const form = h("form", { class: "card", id: "report-form" },
        h("h1", {}, "Vehicle Security Transaction Report"),
        h("p", {}, "Every passcode issued at dealer " + s.dealer + " in a month. Managers only."),
        h("div", { class: "inline" },
            field("Month", h("input", { id: "month", type: "month", value: month, "data-field": "month", "data-label": "Month" })),
            h("button", { type: "submit", id: "report-show", class: "primary" }, "Show"),
            h("button", { type: "button", id: "report-csv", class: "button", onclick: () => downloadCsv(form, box) }, "Download CSV")),
        box);
    form.addEventListener("submit", async ev => {
        ev.preventDefault();
        out.replaceChildren();
        clearError(box, form);
        try {
            const j = await call("GET", "/transactions?dealer=" + encodeURIComponent(s.dealer) + "&month=" +
                encodeURIComponent(form.querySelector("#month").value));
            out.replaceChildren(reportTable(j));
            document.body.dataset.report = j.month;
        } catch (e) {
            showError(box, form, e);
        }
    });
    main.replaceChildren(form, out);
    ready("report", count);
}

function reportTable(j) {
    const cols = [["time", "Time"], ["technician_name", "Technician"], ["vin", "VIN"], ["repair_order", "Repair order"],
        ["customer", "Customer"], ["kind", "Kind"], ["request_no", "Request"], ["transaction_id", "Transaction"]];
    return h("section", { class: "card" },
        h("h2", {}, (j.dealer_name || j.dealer) + " · " + j.month + " · ", h("span", { id: "report-count" }, String(j.count)),
            " transaction" + (j.count === 1 ? "" : "s")),
        j.count === 0 ? h("p", { class: "empty" }, "No passcode was issued in this month.") :
            h("div", { class: "scroll" }, h("table", { class: "report cards" },
                h("thead", {}, h("tr", {}, cols.map(([, t]) => h("th", {}, t)))),
                h("tbody", {}, j.transactions.map(t => h("tr", { "data-transaction": t.transaction_id },
                    cols.map(([k, label]) => h("td", { "data-label": label, "data-column": k },
                        k === "time" ? when(t[k]) : t[k]))))))));
}

async function downloadCsv(form, box) {
    const s = current();
    const m = form.querySelector("#month").value;
    box.replaceChildren();
    try {
        const csv = await call("GET", "/transactions?dealer=" + encodeURIComponent(s.dealer) + "&month=" + encodeURIComponent(m),
            undefined, "text/csv");
        const url = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
        const a = h("a", { href: url, download: "transactions-" + s.dealer + "-" + m + ".csv" });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
        showError(box, form, e);
    }
}

// ---------------------------------------------------------------- routing

let sessionTarget = null; // where to go after the login (a link to a request, say)

async function render() {
    const count = ++renderCount;
    const s = current();
    const hash = location.hash || "#/";
    document.body.dataset.state = "loading";
    const nav = document.getElementById("nav");
    nav.hidden = !s;
    if (!s) {
        if (hash !== "#/login")
            sessionTarget = hash;
        return viewLogin(count);
    }
    document.getElementById("who").textContent = s.name + " · " + s.dealer;
    for (const a of nav.querySelectorAll("[data-manager]"))
        a.hidden = s.role !== "manager";
    const m = hash.match(/^#\/request\/([^/]+)$/);
    const name = m ? "request" : hash.slice(2) || "home";
    for (const a of nav.querySelectorAll("[data-nav]"))
        a.classList.toggle("current", a.dataset.nav === name);
    main.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    try {
        if (m)
            await viewRequest(count, decodeURIComponent(m[1]));
        else if (name === "new")
            await viewNewRequest(count);
        else if (name === "smart-code")
            viewSmartCode(count);
        else if (name === "report")
            viewReport(count);
        else if (name === "login") {
            location.hash = "#/";
        } else
            await viewHome(count);
    } catch (e) {
        if (count !== renderCount)
            return;
        if (!current())
            return render(); // the session ended: the login
        const box = h("div");
        showError(box, null, e);
        main.replaceChildren(h("section", { class: "card" }, box, h("p", {}, h("a", { href: "#/" }, "Back to the inbox"))));
        ready("error", count);
    }
}

document.getElementById("logout").addEventListener("click", () => {
    logout();
    approverNames = {};
    location.hash = "#/login";
    render();
});
window.addEventListener("hashchange", render);
render();
