import { request } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';

// `cargo leptos end-to-end` starts the server and runs Playwright at once;
// wait until the server answers before the first test navigates.
//
// `make e2e` runs on a port the OS picked (LEPTOS_SITE_ADDR and
// PLAYWRIGHT_BASE_URL), but something else could still answer there. With
// DATABASE_URL set (as `make e2e` does), the run makes sure the server is its
// own before testing it: a guest with a name made up for this run signs in,
// and must then be in this run's database file.
export default async function globalSetup(): Promise<void> {
  const base = process.env.PLAYWRIGHT_BASE_URL ?? 'http://127.0.0.1:3000';
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`server at ${base} did not become ready`);
    await new Promise((r) => setTimeout(r, 200));
  }

  const url = process.env.DATABASE_URL ?? '';
  if (!url.startsWith('sqlite://')) return;
  const db = path.resolve(__dirname, '..', url.slice('sqlite://'.length));
  const nonce = `run ${randomBytes(8).toString('hex')}`;
  const api = await request.newContext();
  try {
    const res = await api.post(`${base}/api/sign_in_guest`, {
      form: { name: nonce },
      headers: { Origin: base, Accept: 'application/json' },
      maxRedirects: 0,
    });
    if (res.status() >= 400) {
      throw new Error(`signing in at ${base} failed (${res.status()}): is it this run's server?`);
    }
  } finally {
    await api.dispose();
  }
  const found = execFileSync('python3', [
    '-c',
    'import sqlite3,sys\n' +
      'c=sqlite3.connect(sys.argv[1])\n' +
      'print(c.execute("SELECT COUNT(*) FROM users WHERE name=?", (sys.argv[2],)).fetchone()[0])',
    db,
    nonce,
  ])
    .toString()
    .trim();
  if (found !== '1') {
    throw new Error(
      `the server at ${base} does not write to ${db}: another process holds that port; ` +
        'refusing to test it',
    );
  }
}
