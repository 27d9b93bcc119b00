import { expect, type Browser, type BrowserContext, type Page } from '@playwright/test';

/*
 * Helpers shared by the browser stories: unique names, locators, and steps
 * (sign in, create, browse, preview, join, send, and what each should show).
 */

export const RUN = Date.now().toString();
let counter = 0;

/** A name unique to this run, e.g. "Ann 1732500000000-3" (well under 32 chars). */
export function unique(prefix: string): string {
  counter += 1;
  return `${prefix} ${RUN}-${counter}`;
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A room name as the app's URL slug (`app::urls::room_slug`): ASCII letters
 * and digits lower-cased, every run of anything else one `-` (none at either
 * end), at most 48 characters, `room` when nothing is left.
 */
export function roomSlug(name: string): string {
  let slug = '';
  let dash = false;
  for (const c of name) {
    if (/^[A-Za-z0-9]$/.test(c)) {
      if (dash && slug.length > 0) slug += '-';
      dash = false;
      slug += c.toLowerCase();
    } else {
      dash = true;
    }
    if (slug.length >= 48) break;
  }
  slug = slug.slice(0, 48).replace(/-+$/, '');
  return slug || 'room';
}

/** The path of a room's page: `/r/<id>/<slug>`. */
export function roomPath(id: number, name: string): string {
  return `/r/${id}/${roomSlug(name)}`;
}

/** A pattern for the URL of the room `name`'s page (any id). */
export function roomUrl(name: string): RegExp {
  return new RegExp(`/r/\\d+/${escapeRegExp(roomSlug(name))}$`);
}

/** The old path of a public room (`/rooms/<name>`), which redirects to its page. */
export function namedPath(name: string): string {
  return `/rooms/${encodeURIComponent(name)}`;
}

// ---- locators ---------------------------------------------------------------

export const me = (page: Page) => page.getByTestId('me');
export const roomLinks = (page: Page) => page.locator('nav.rooms a');
export const roomLink = (page: Page, name: string) =>
  page.locator('nav.rooms').getByRole('link', { name: `# ${name}`, exact: true });
export const pane = (page: Page, name: string) => page.locator(`main.pane[data-room="${name}"]`);
export const messages = (page: Page) => page.locator('ol.messages li.msg');
export const committed = (page: Page) => page.locator('ol.messages li.msg[data-seq]');
export const committedBodies = (page: Page) => page.locator('ol.messages li.msg[data-seq] p.body');
export const notices = (page: Page) => page.locator('ol.messages li.notice');
export const online = (page: Page) => page.locator('ul[data-testid="online"] li');
export const composer = (page: Page) => page.locator('form.composer textarea[aria-label="Message"]');
export const composerError = (page: Page) => page.locator('form.composer p.error[role="alert"]');
export const signInName = (page: Page) => page.locator('input#display-name');
export const signInButton = (page: Page) => page.getByRole('button', { name: 'Sign in as guest' });
export const signInError = (page: Page) => page.locator('main.signin p.error[role="alert"]');
export const createRoomError = (page: Page) => page.locator('form.create-room p.error[role="alert"]');

// ---- steps --------------------------------------------------------------------

/** Waits until the WebSocket is connected (the badge says "live"). */
export async function expectLive(page: Page) {
  await expect(page.locator('.status[data-status="online"]')).toHaveText('live');
}

/**
 * Lets the WASM bundle load and hydrate before the page is used. The signed-out
 * page has no visible hydration marker, so settle for the network going quiet
 * (the forms also work as plain HTML posts, so this is only to avoid racing).
 */
export async function settle(page: Page) {
  await page.waitForLoadState('networkidle');
}

export async function openSignedOut(page: Page) {
  await page.goto('/');
  await settle(page);
  await expect(signInName(page)).toBeVisible();
  await expect(signInButton(page)).toBeVisible();
}

/** Signs in as a guest called `name` and waits until the chat is live. */
export async function signIn(page: Page, name: string) {
  await openSignedOut(page);
  await signInName(page).fill(name);
  await signInButton(page).click();
  await expect(me(page)).toHaveText(name);
  await expectLive(page);
}

/** A fresh browser context (its own cookie jar: a different person). */
export async function person(browser: Browser, name: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, name);
  return { context, page };
}

/** Creates a room from the sidebar form; the app then opens it. Returns its id. */
export async function createRoom(page: Page, name: string): Promise<number> {
  await page.locator('input#new-room').fill(name);
  await page.locator('form.create-room').getByRole('button', { name: 'Create' }).click();
  return await expectInRoom(page, name, await me(page).innerText());
}

/**
 * The room `name` is open as a member (composer shown), live, at its URL,
 * and `who` is listed online in it (subscribed). Returns the room's id.
 */
export async function expectInRoom(page: Page, name: string, who: string): Promise<number> {
  await expect(page).toHaveURL(roomUrl(name));
  await expect(pane(page, name)).toBeVisible();
  await expect(composer(page)).toBeVisible();
  await expectLive(page);
  await expect(online(page).filter({ hasText: new RegExp(`^${escapeRegExp(who)}$`) })).toHaveCount(1);
  const id = Number(await pane(page, name).getAttribute('data-room-id'));
  await expect(page).toHaveURL(new RegExp(`${escapeRegExp(roomPath(id, name))}$`));
  return id;
}

/** Opens "Browse rooms" from the sidebar and filters the list by `filter`. */
export async function browse(page: Page, filter: string) {
  await page.locator('nav.rooms').getByRole('link', { name: 'Browse rooms' }).click();
  await expect(page).toHaveURL(/\/browse$/);
  await expect(page.locator('main.directory h1')).toHaveText('Browse rooms');
  await page.locator('input#browse-q').fill(filter);
  await page.locator('form.browse-filter').getByRole('button', { name: 'Filter' }).click();
  await expect.poll(() => new URL(page.url()).searchParams.get('q')).toBe(filter);
  await expect(page.locator('input#browse-q')).toHaveValue(filter);
}

/** The Browse rooms row of the room `name`. */
export const directoryRow = (page: Page, name: string) =>
  page
    .locator('ul.directory li')
    .filter({ has: page.locator('.name', { hasText: new RegExp(`^# ${escapeRegExp(name)}$`) }) });

/** The Join bar that replaces the composer while previewing `name`. */
export const joinBar = (page: Page, name: string) =>
  page.locator('form.join-bar').getByRole('button', { name: `Join # ${name}`, exact: true });

/** Previews `name` from its Browse rooms row: its history and the Join bar, no composer. */
export async function previewFromBrowse(page: Page, name: string) {
  await directoryRow(page, name).getByRole('link', { name: 'Preview' }).click();
  await expect(page).toHaveURL(roomUrl(name));
  await expect(pane(page, name)).toBeVisible();
  await expect(joinBar(page, name)).toBeVisible();
  await expect(page.locator('form.composer')).toHaveCount(0);
}

/** Joins the previewed room `name` with the Join bar; it opens as a member. */
export async function joinFromPreview(page: Page, name: string): Promise<number> {
  await joinBar(page, name).click();
  const id = await expectInRoom(page, name, await me(page).innerText());
  await expect(roomLink(page, name)).toBeVisible();
  return id;
}

/** Finds `name` under Browse rooms, previews it and joins it. Returns its id. */
export async function joinRoom(page: Page, name: string): Promise<number> {
  await browse(page, name);
  await previewFromBrowse(page, name);
  return await joinFromPreview(page, name);
}

/** Types `text` into the composer and presses Enter. */
export async function send(page: Page, text: string) {
  const box = composer(page);
  await box.fill(text);
  await box.press('Enter');
  await expect(box).toHaveValue('');
}

/** The sorted names in the online list equal `names`. */
export async function expectOnline(page: Page, names: string[]) {
  await expect
    .poll(async () => (await online(page).allInnerTexts()).map((n) => n.trim()).sort())
    .toEqual([...names].sort());
}

/** Every committed message line shows an author, a time and the body, in this order. */
export async function expectConversation(page: Page, lines: Array<[author: string, body: string]>) {
  await expect(committedBodies(page)).toHaveText(lines.map(([, body]) => body));
  const rows = committed(page);
  await expect(rows).toHaveCount(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const row = rows.nth(i);
    await expect(row.locator('.author')).toHaveText(lines[i][0]);
    await expect(row.locator('time.time')).toHaveAttribute('datetime', /^\d+$/);
    await expect(row.locator('p.body')).toHaveText(lines[i][1]);
  }
}

/** Sequence numbers of the committed lines, as shown. */
export async function seqs(page: Page): Promise<number[]> {
  return (await committed(page).evaluateAll((els) => els.map((e) => e.getAttribute('data-seq')))).map(Number);
}

