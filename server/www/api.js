// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The passcode service's API (passcode-service.md), as the pages call it. The session
// token lives in this module's variable only: never in localStorage, sessionStorage or a
// cookie, so a reload asks for the password again. Because the browser never adds a bearer
// token to a request by itself (as it would a cookie), a page of another site cannot make
// a request in the user's name: that is the protection against cross-site requests. The
// API also takes only application/json bodies, which no cross-site form can send.

let session = null; // {token, expires_at, user, dealer, role, name}

export class ApiError extends Error {
    constructor(status, id, message, field) {
        super(message);
        this.status = status;
        this.id = id;
        this.field = field || null;
    }
}

// A call of /api/v1/PATH; the answer's JSON (or text for Accept: text/csv), or an
// ApiError with the service's own error id and words.
export async function call(method, path, body, accept) {
    const headers = {};
    if (session)
        headers.Authorization = "Bearer " + session.token;
    if (body !== undefined)
        headers["Content-Type"] = "application/json";
    if (accept)
        headers.Accept = accept;
    let r;
    try {
        r = await fetch("/api/v1" + path, {
            method, headers, cache: "no-store", credentials: "omit", redirect: "error",
            body: body === undefined ? undefined : JSON.stringify(body),
        });
    } catch (e) {
        throw new ApiError(0, "unreachable", "The passcode service cannot be reached; check the network and try again.");
    }
    const text = await r.text();
    if (r.ok && accept === "text/csv")
        return text;
    let j;
    try {
        j = JSON.parse(text);
    } catch (e) {
        throw new ApiError(r.status, "bad-answer", "The service answered " + r.status + " without JSON; try again.");
    }
    if (!r.ok) {
        if (r.status === 401 && path !== "/login")
            session = null; // expired or unknown: the pages go back to the login
        throw new ApiError(r.status, j.error || "error", j.message || "The service refused the request.", j.field);
    }
    return j;
}

export async function login(user, password) {
    session = null;
    session = await call("POST", "/login", { user, password });
    return session;
}

export function logout() {
    session = null;
}

export function current() {
    return session;
}
