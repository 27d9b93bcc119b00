// `cargo leptos end-to-end` starts the server and runs Playwright at once;
// wait until the server answers before the first test navigates.
export default async function globalSetup(): Promise<void> {
  const base = process.env.PLAYWRIGHT_BASE_URL ?? 'http://127.0.0.1:3000';
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/readyz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`server at ${base} did not become ready`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
