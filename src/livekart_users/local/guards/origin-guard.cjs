// Loaded into cognito-local with `node --require origin-guard.cjs`.
//
// cognito-local answers every origin's CORS preflight with `Access-Control-Allow-Origin: *`
// (server.js: cors({ origin: "*" })) and checks no credentials, so any web page the developer
// visits could call its admin API. cognito-local has no option for it: this wraps the `cors`
// middleware it loads so that only the origins in LIVEKART_LOCAL_ALLOWED_ORIGINS (exact,
// comma-separated; none by default) get CORS headers, and a request from any other origin
// (browsers send `Origin`; SDKs outside a browser do not) is refused with 403 before it runs.
"use strict";
const Module = require("module");

const allowed = (process.env.LIVEKART_LOCAL_ALLOWED_ORIGINS || "")
  .split(",")
  .map((origin) => origin.trim())
  .filter((origin) => origin !== "");

const load = Module._load;
Module._load = function (request, ...rest) {
  const exported = load.call(this, request, ...rest);
  if (request !== "cors" || typeof exported !== "function") {
    return exported;
  }
  return function guardedCors(options) {
    const cors = exported({ ...options, origin: allowed.length > 0 ? allowed : false });
    return function originGuard(req, res, next) {
      const origin = req.headers.origin;
      if (origin !== undefined && !allowed.includes(origin)) {
        res.statusCode = 403;
        res.setHeader("Content-Type", "text/plain");
        res.end(`origin ${origin} is not allowed: set LIVEKART_LOCAL_ALLOWED_ORIGINS\n`);
        return;
      }
      cors(req, res, next);
    };
  };
};
