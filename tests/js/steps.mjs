// Step by step, as tests/test_js_clients.py drives these scripts: after each step one JSON
// line goes to stdout ({"step": name, ...}); the next step starts when a line comes on stdin
// (the test checks the users table in between). An error ends the script with one JSON line
// {"step": name, "error": name, "message": ...} and exit status 1.
import { createInterface } from 'node:readline';

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

export async function step(name, run) {
  let result;
  try {
    result = (await run()) ?? {};
  } catch (error) {
    console.log(JSON.stringify({ step: name, error: error.name ?? String(error), message: error.message }));
    process.exit(1);
  }
  console.log(JSON.stringify({ step: name, ...result }));
  await lines.next();
}

export function settings() {
  const [poolId, clientId, endpoint, email, password] = process.argv.slice(2);
  return { poolId, clientId, endpoint, email, password };
}
