// Loaded into cognito-local with `node --require origin-guard.cjs`.
//
// cognito-local answers every origin's CORS preflight with `Access-Control-Allow-Origin: *`
// (server.js: cors({ origin: "*" })) and checks no credentials, so any web page the developer
// visits could call its admin API. cognito-local has no option for it: this wraps the `cors`
// middleware it loads so that only the origins in LIVEKART_LOCAL_ALLOWED_ORIGINS (exact,
// comma-separated; none by default) get CORS headers, and a request from any other origin
// (browsers send `Origin`; SDKs outside a browser do not) is refused with 403 before it runs.
// A request whose Host is not a loopback name (a DNS-rebinding page sends its own name, and
// then no foreign Origin) is refused the same way: the rule of loopback.py's `refusal`.
"use strict";
const Module = require("module");

const allowed = (process.env.LIVEKART_LOCAL_ALLOWED_ORIGINS || "")
  .split(",")
  .map((origin) => origin.trim())
  .filter((origin) => origin !== "");

// 127.0.0.1, localhost or [::1], with or without a port (as loopback.py's _LOOPBACK_HOST).
const loopbackHost = /^(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?$/;

function refusal(host, origin) {
  if (typeof host !== "string" || !loopbackHost.test(host.toLowerCase())) {
    return `Host ${JSON.stringify(host)} is not this machine: the local stack answers 127.0.0.1, localhost and [::1] only`;
  }
  if (origin !== undefined && !allowed.includes(origin)) {
    return `origin ${origin} is not allowed: set LIVEKART_LOCAL_ALLOWED_ORIGINS`;
  }
  return null;
}

const load = Module._load;
Module._load = function (request, ...rest) {
  const exported = load.call(this, request, ...rest);
  if (request !== "cors" || typeof exported !== "function") {
    return exported;
  }
  return function guardedCors(options) {
    const cors = exported({ ...options, origin: allowed.length > 0 ? allowed : false });
    return function originGuard(req, res, next) {
      const why = refusal(req.headers.host, req.headers.origin);
      if (why !== null) {
        res.statusCode = 403;
        res.setHeader("Content-Type", "text/plain");
        res.end(`${why}\n`);
        return;
      }
      cors(req, res, next);
    };
  };
};
