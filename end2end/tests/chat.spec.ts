import { test, expect, type Page } from '@playwright/test';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import {
  RUN,
  browse,
  committed,
  committedBodies,
  composer,
  composerError,
  createRoom,
  createRoomError,
  directoryRow,
  escapeRegExp,
  expectConversation,
  expectInRoom,
  expectLive,
  expectOnline,
  joinBar,
  joinFromPreview,
  joinRoom,
  me,
  messages,
  namedPath,
  notices,
  online,
  openSignedOut,
  pane,
  person,
  previewFromBrowse,
  roomLink,
  roomLinks,
  roomPath,
  send,
  seqs,
  signIn,
  signInButton,
  signInError,
  signInName,
  unique,
} from './helpers';

/*
 * User stories for the chat app, driven through a real browser.
 *
 * The database persists across tests and runs, so every room and person gets
 * a name that is unique to this run (`unique`). The WASM app hydrates the
 * server-rendered page; anything live waits for the status badge to say the
 * WebSocket is connected first (`expectLive`). Rooms open at `/r/<id>/<slug>`;
 * the old `/rooms/<name>` redirects there.
 */

// ---- stories ------------------------------------------------------------------

test.describe('chat', () => {
  test('two people chat live in a room; joins and presence are shown', async ({ browser }) => {
    const ann = unique('Ann');
    const bob = unique('Bob');
    const room = unique('Team Chat');

    const a = await person(browser, ann);
    const b = await person(browser, bob);
    try {
      // Ann creates the room and is taken into it.
      const id = await createRoom(a.page, room);
      await expect(a.page.locator('main.pane h1')).toHaveText(`# ${room}`);
      await expect(roomLink(a.page, room)).toHaveAttribute('href', roomPath(id, room));

      // Bob is not in it, so his sidebar does not list it: he finds it
      // under Browse rooms, previews it (its history and a Join bar, no
      // composer), and joins.
      await expect(roomLink(b.page, room)).toHaveCount(0);
      await browse(b.page, room);
      await expect(directoryRow(b.page, room)).toHaveCount(1);
      await previewFromBrowse(b.page, room);
      await expect(b.page).toHaveURL(new RegExp(`${escapeRegExp(roomPath(id, room))}$`));
      await expect(b.page.locator('ul[data-testid="members"] li .name')).toHaveText([ann]);
      expect(await joinFromPreview(b.page, room)).toBe(id);
      await expect(roomLink(b.page, room)).toHaveAttribute('href', roomPath(id, room));
      // Ann (already there) sees him arrive.
      await expect(notices(a.page).filter({ hasText: `${bob} joined` })).toHaveCount(1);

      // Both are listed online, on both screens.
      await expectOnline(a.page, [ann, bob]);
      await expectOnline(b.page, [ann, bob]);

      // They talk, both ways; each sees the other's message live.
      const hello = `Hello from Ann ${RUN}`;
      const reply = `Hi Ann, Bob here ${RUN}`;
      const more = `Good to see you, Bob ${RUN}`;

      await send(a.page, hello);
      await expect(committedBodies(b.page).filter({ hasText: hello })).toHaveCount(1);

      await send(b.page, reply);
      await expect(committedBodies(a.page).filter({ hasText: reply })).toHaveCount(1);

      await send(a.page, more);
      await expect(committedBodies(b.page).filter({ hasText: more })).toHaveCount(1);

      // Same messages, same order, with authors, on both screens.
      const conversation: Array<[string, string]> = [
        [ann, hello],
        [bob, reply],
        [ann, more],
      ];
      await expectConversation(a.page, conversation);
      await expectConversation(b.page, conversation);
      const seqA = await seqs(a.page);
      expect(seqA).toEqual(await seqs(b.page));
      expect(seqA).toEqual([...seqA].sort((x, y) => x - y));
      expect(new Set(seqA).size).toBe(seqA.length);
      // Nothing left pending or failed.
      await expect(messages(a.page)).toHaveCount(3);
      await expect(messages(b.page)).toHaveCount(3);

      // Bob closes his page: he drops off Ann's online list but stays a
      // member, shown offline (leaving the room is the Leave button).
      await b.page.close();
      await expectOnline(a.page, [ann]);
      await expect(a.page.locator('ul[data-testid="members"] li[data-online="false"] .name')).toHaveText([bob]);
      await expect(a.page.locator('ul[data-testid="members"] li[data-online="true"] .name')).toHaveText([ann]);
      await expect(notices(a.page).filter({ hasText: `${bob} left` })).toHaveCount(0);
      // Ann's view of the conversation is unchanged.
      await expectConversation(a.page, conversation);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('someone in another room sees none of the conversation', async ({ browser }) => {
    const ann = unique('Ann');
    const bob = unique('Bob');
    const cat = unique('Cat');
    const talk = unique('Private Talk');
    const elsewhere = unique('Elsewhere');

    const c = await person(browser, cat);
    const a = await person(browser, ann);
    const b = await person(browser, bob);
    try {
      // Cat sits, live, in her own room for the whole exchange.
      await createRoom(c.page, elsewhere);

      await createRoom(a.page, talk);
      await joinRoom(b.page, talk);

      const first = `Secret one ${RUN}`;
      const second = `Secret two ${RUN}`;
      await send(a.page, first);
      await send(b.page, second);
      await expectConversation(a.page, [
        [ann, first],
        [bob, second],
      ]);
      await expectConversation(b.page, [
        [ann, first],
        [bob, second],
      ]);

      // After the exchange, Cat's room shows none of it, nor the others' arrival.
      await expectLive(c.page);
      await expect(pane(c.page, elsewhere)).toBeVisible();
      await expect(messages(c.page)).toHaveCount(0);
      await expectOnline(c.page, [cat]);
      const notes = await notices(c.page).allInnerTexts();
      expect(notes.join('\n')).not.toContain(ann);
      expect(notes.join('\n')).not.toContain(bob);
      const content = await c.page.content();
      expect(content).not.toContain(first);
      expect(content).not.toContain(second);

      // Nor does a fresh load of her room.
      const res = await c.page.reload();
      const html = await res!.text();
      expect(html).not.toContain(first);
      expect(html).not.toContain(second);
      await expectLive(c.page);
      await expect(messages(c.page)).toHaveCount(0);
    } finally {
      await a.context.close();
      await b.context.close();
      await c.context.close();
    }
  });

  test('a reload keeps the session and the history, which is server-rendered', async ({ page }) => {
    const dee = unique('Dee');
    const room = unique('History');
    const first = `Remember this ${RUN}`;
    const second = `And this too ${RUN}`;

    await signIn(page, dee);
    const id = await createRoom(page, room);
    await send(page, first);
    await send(page, second);
    await expectConversation(page, [
      [dee, first],
      [dee, second],
    ]);

    const res = await page.reload();
    expect(res).not.toBeNull();
    expect(res!.status()).toBe(200);
    const html = await res!.text();

    // Still signed in as the same person, in the same room, with the history.
    await expect(me(page)).toHaveText(dee);
    await expect(pane(page, room)).toBeVisible();
    await expectConversation(page, [
      [dee, first],
      [dee, second],
    ]);
    await expectLive(page);

    // The history is in the server-rendered markup itself (not only fetched later).
    for (const body of [first, second]) {
      expect(html).toMatch(new RegExp(`<p class="body">(?:<!--[^>]*-->|<!>)*${escapeRegExp(body)}`));
    }
    expect(html).toMatch(new RegExp(`<span [^>]*data-testid="me"[^>]*>(?:<!--[^>]*-->|<!>)*${escapeRegExp(dee)}`));

    // A plain GET with the same cookies renders the same thing.
    const again = await page.request.get(roomPath(id, room));
    expect(again.status()).toBe(200);
    const againHtml = await again.text();
    expect(againHtml).toContain(first);
    expect(againHtml).toContain(second);
  });

  test.describe('invalid input is refused with an error', () => {
    test('an empty display name', async ({ page }) => {
      await openSignedOut(page);
      await signInName(page).fill('');
      await signInButton(page).click();
      await expect(
        signInError(page),
        'an error should be shown on the sign-in form (if the input has `required`, the browser blocks the submit instead)',
      ).toBeVisible();
      await expect(signInError(page)).toContainText(/empty/i);
      await expect(me(page)).toHaveCount(0);
      await expect(signInName(page)).toBeVisible();
    });

    test('a 33-character display name', async ({ page }) => {
      await openSignedOut(page);
      await signInName(page).fill('N'.repeat(33));
      await signInButton(page).click();
      await expect(signInError(page)).toBeVisible();
      await expect(signInError(page)).toContainText(/at most 32 characters/i);
      await expect(me(page)).toHaveCount(0);
      await expect(signInName(page)).toBeVisible();
    });

    test('a 4001-character message, keeping the text in the composer', async ({ page }) => {
      await signIn(page, unique('Eve'));
      await createRoom(page, unique('Long Talk'));

      const long = 'x'.repeat(4001);
      await composer(page).fill(long);
      await composer(page).press('Enter');
      await expect(composerError(page)).toHaveText('Message is 4001 characters long; the limit is 4000.');
      await expect(composer(page)).toHaveValue(long);
      await expect(messages(page)).toHaveCount(0);

      // Trimming it to the limit clears the error, and it can then be sent.
      const fits = 'x'.repeat(4000);
      await composer(page).fill(fits);
      await expect(composerError(page)).toHaveCount(0);
      await composer(page).press('Enter');
      await expect(composer(page)).toHaveValue('');
      await expect(committedBodies(page)).toHaveText([fits]);
    });

    test('a room name that differs only in case from an existing one', async ({ page }) => {
      const room = unique('Casey Room');
      await signIn(page, unique('Ian'));
      await createRoom(page, room);

      const at = page.url();
      const shouted = room.toUpperCase();
      expect(shouted).not.toBe(room);
      await page.locator('input#new-room').fill(shouted);
      await page.locator('form.create-room').getByRole('button', { name: 'Create' }).click();
      await expect(createRoomError(page)).toBeVisible();
      await expect(createRoomError(page)).toContainText(/exists/i);

      // Still only the original room, and still in it.
      const sameName = (await roomLinks(page).allInnerTexts()).filter(
        (t) => t.trim().toLowerCase() === `# ${room}`.toLowerCase(),
      );
      expect(sameName).toEqual([`# ${room}`]);
      await expect(pane(page, room)).toBeVisible();
      await expect(page).toHaveURL(at);
    });
  });

  test('message text is shown as text, never as markup', async ({ page }) => {
    const fay = unique('Fay');
    const room = unique('Markup');
    const markup = '<b>bold</b>';

    await signIn(page, fay);
    await createRoom(page, room);
    await send(page, markup);

    await expect(committedBodies(page)).toHaveText([markup]);
    await expect(committed(page).locator('p.body b')).toHaveCount(0);
    await expect(page.locator('ol.messages b')).toHaveCount(0);

    // Also when rendered by the server.
    const res = await page.reload();
    const html = await res!.text();
    expect(html).toContain('&lt;b&gt;bold&lt;/b&gt;');
    expect(html).not.toContain(markup);
    await expect(committedBodies(page)).toHaveText([markup]);
    await expect(page.locator('ol.messages b')).toHaveCount(0);
  });

  test('signing out returns to the sign-in form', async ({ page }) => {
    const gus = unique('Gus');
    await signIn(page, gus);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect(signInName(page)).toBeVisible();
    await expect(signInButton(page)).toBeVisible();
    await expect(me(page)).toHaveCount(0);
    await expect(page.locator('nav.rooms')).toHaveCount(0);

    // And it sticks: a reload is still signed out.
    await page.reload();
    await expect(signInName(page)).toBeVisible();
    await expect(me(page)).toHaveCount(0);
  });

  test('without JavaScript, one can still sign in, read and post, and others see it live', async ({ browser }) => {
    const nora = unique('Nora');
    const live = await browser.newContext();
    const watcher = await live.newPage();
    await signIn(watcher, unique('Walt'));
    const room = unique('Plain');
    const id = await createRoom(watcher, room);

    const plain = await browser.newContext({ javaScriptEnabled: false });
    const page = await plain.newPage();
    await page.goto('/');
    // A plain form post comes back with the error on the page.
    await signInName(page).fill('   ');
    await signInButton(page).click();
    await expect(signInError(page)).toHaveText('Display name cannot be empty.');
    await signInName(page).fill(nora);
    await signInButton(page).click();
    await expect(me(page)).toHaveText(nora);

    // Browse rooms, filter, preview and join: links and plain forms.
    await page.locator('nav.rooms').getByRole('link', { name: 'Browse rooms' }).click();
    await page.locator('input#browse-q').fill(room);
    await page.locator('form.browse-filter').getByRole('button', { name: 'Filter' }).click();
    await expect(directoryRow(page, room)).toHaveCount(1);
    await directoryRow(page, room).getByRole('link', { name: 'Preview' }).click();
    await expect(page).toHaveURL(new RegExp(`${escapeRegExp(roomPath(id, room))}$`));
    await expect(page.locator('form.composer')).toHaveCount(0);
    await joinBar(page, room).click();
    await expect(page).toHaveURL(new RegExp(`${escapeRegExp(roomPath(id, room))}$`));
    await expect(roomLink(page, room)).toBeVisible();

    const body = `posted without JavaScript ${RUN}`;
    await page.locator('form.composer textarea[name="body"]').fill(body);
    await page.getByRole('button', { name: 'Send' }).click();
    // Back on the room page, rendered by the server with the new message.
    await expect(committedBodies(page).last()).toHaveText(body);
    await expect(committed(page).last().locator('.author')).toHaveText(nora);
    // And the hydrated page of someone else got it live.
    await expect(committedBodies(watcher).last()).toHaveText(body);

    // Leaving is a plain form too: back home, and the room is off the list.
    await page.locator('form.leave-room').getByRole('button', { name: 'Leave' }).click();
    await expect(page).toHaveURL(/\/$/);
    await expect(roomLink(page, room)).toHaveCount(0);

    await plain.close();
    await live.close();
  });

  test('typing shows for the others, and clears when the message arrives', async ({ browser }) => {
    const [tia, uma] = [unique('Tia'), unique('Uma')];
    const room = unique('Typing');
    const a = await person(browser, tia);
    await createRoom(a.page, room);
    const b = await person(browser, uma);
    await joinRoom(b.page, room);
    await expectOnline(a.page, [tia, uma]);

    // The notice lasts 4 s after the typing frame that the first keystroke
    // sends: look for it right after that keystroke.
    const typing = b.page.locator('p.typing');
    await composer(a.page).press('h');
    await expect(typing).toHaveText(`${tia} is typing…`);
    await expect(a.page.locator('p.typing')).toHaveText('');
    await composer(a.page).pressSequentially('ello');
    await composer(a.page).press('Enter');
    await expect(committedBodies(b.page).last()).toHaveText('hello');
    // The message itself clears it, well before the notice would expire by
    // itself (4 s after the last typing frame): were it left to expire, this
    // short wait would fail. (Only on a machine so slow that the 4 s were
    // over anyway can it not tell.)
    await expect(typing).toHaveText('', { timeout: 500 });

    await a.context.close();
    await b.context.close();
  });

  test('a message the database cannot take shows as not sent, and Retry delivers it once', async ({ page }) => {
    // The server under test was started by `make e2e` on this database file.
    const url = process.env.DATABASE_URL ?? '';
    test.skip(!url.startsWith('sqlite://'), 'needs the SQLite file of the server under test');
    const db = path.resolve('..', url.slice('sqlite://'.length));

    const vic = unique('Vic');
    await signIn(page, vic);
    const room = unique('Outage');
    await createRoom(page, room);

    // Another process holds the write lock, past the server's busy timeout,
    // until the test has seen the send fail (a line on its stdin lets go).
    const locker = spawn('python3', ['-c',
      'import sqlite3,sys\n' +
      'c=sqlite3.connect(sys.argv[1], isolation_level=None)\n' +
      'c.execute("BEGIN EXCLUSIVE"); print("locked", flush=True); sys.stdin.readline(); c.execute("ROLLBACK")',
      db]);
    const exited = new Promise((resolve) => locker.on('exit', resolve));
    const failed = page.locator('ol.messages li.msg.failed');
    try {
      await new Promise<void>((resolve) => locker.stdout.once('data', () => resolve()));

      await send(page, 'held back');
      await expect(failed.locator('p.body')).toHaveText('held back', { timeout: 30_000 });
      // The committer answers `unavailable` for a database it cannot write.
      await expect(failed.locator('p.error')).toContainText('database is unavailable');
    } finally {
      locker.stdin.end('release\n');
      await exited;
    }

    await failed.getByRole('button', { name: 'Retry' }).click();
    await expect(committedBodies(page)).toHaveText(['held back']);
    await expect(page.locator('ol.messages li.msg.failed, ol.messages li.msg.pending')).toHaveCount(0);
    // Stored once: a reload (server-rendered from the store) shows it once.
    await page.reload();
    await expect(committedBodies(page)).toHaveText(['held back']);
  });

  test('signing out in one tab signs out the other tabs too', async ({ browser }) => {
    const wes = unique('Wes');
    const { context, page: first } = await person(browser, wes);
    const second = await context.newPage();
    await second.goto('/rooms/general');
    await expectLive(second);
    await expectLive(first);

    await first.getByRole('button', { name: 'Sign out' }).click();
    await expect(signInName(first)).toBeVisible();
    // The other tab's socket is closed as signed out, and it shows sign-in.
    await expect(signInName(second)).toBeVisible();
    await expect(me(second)).toHaveCount(0);
    await context.close();
  });

  test('a room name with URL characters opens by link, by reload, and live', async ({ browser }) => {
    const room = `Q&A #1 ? ü ${RUN}`;
    const [xia, yan] = [unique('Xia'), unique('Yan')];
    const a = await person(browser, xia);
    await createRoom(a.page, room);
    await send(a.page, 'odd name, same room');

    const b = await person(browser, yan);
    const id = await joinRoom(b.page, room);
    await expect(b.page).toHaveURL(new RegExp(`${escapeRegExp(roomPath(id, room))}$`));
    await expect(committedBodies(b.page)).toHaveText(['odd name, same room']);
    await b.page.goto('/');
    await roomLink(b.page, room).click(); // client-side navigation
    await expect(pane(b.page, room)).toBeVisible();
    await expect(b.page).toHaveURL(new RegExp(`${escapeRegExp(roomPath(id, room))}$`));
    await expect(committedBodies(b.page)).toHaveText(['odd name, same room']);
    await b.page.reload(); // server-side rendering of the same URL
    await expect(pane(b.page, room)).toBeVisible();
    await expect(committedBodies(b.page)).toHaveText(['odd name, same room']);
    await expectLive(b.page);
    await send(b.page, 'and live');
    await expect(committedBodies(a.page).last()).toHaveText('and live');

    // Any slug opens the room; the old URL by name redirects to its page,
    // with a 302 when loaded, and by navigation in the app.
    await b.page.goto(`/r/${id}/any-slug-at-all`);
    await expect(pane(b.page, room)).toBeVisible();
    await expect(committedBodies(b.page)).toHaveText(['odd name, same room', 'and live']);
    const byName = await b.page.request.get(namedPath(room), { maxRedirects: 0 });
    expect(byName.status()).toBe(302);
    expect(byName.headers()['location']).toBe(roomPath(id, room));
    await b.page.goto(namedPath(room));
    await expect(b.page).toHaveURL(new RegExp(`${escapeRegExp(roomPath(id, room))}$`));
    await expect(pane(b.page, room)).toBeVisible();
    await expectLive(b.page);

    // '%' is refused with a reason (see validate_room_name).
    await a.page.locator('input#new-room').fill('50% off');
    await a.page.locator('form.create-room').getByRole('button', { name: 'Create' }).click();
    await expect(createRoomError(a.page)).toHaveText("Room name cannot contain '%'.");

    await a.context.close();
    await b.context.close();
  });

  test('pages hydrate without errors or panics', async ({ page }) => {
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text());
    });
    await openSignedOut(page);
    await signIn(page, unique('Hal'));
    await page.goto('/rooms/general');
    await expectLive(page);
    await send(page, 'hydrated');
    await page.reload();
    await expectLive(page);
    await roomLink(page, 'general').click();
    await page.goto('/rooms/no-such-room');
    await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
    await expect(page.locator('nav.rooms')).toBeVisible();
    await page.goto('/r/999999999/no-such-room');
    await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
    await page.goto('/browse');
    await expect(page.locator('main.directory h1')).toHaveText('Browse rooms');
    await page.goto('/no/such/page');
    await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
    expect(problems).toEqual([]);
  });

  test('signing out and in again on the same page goes live again', async ({ page }) => {
    await signIn(page, unique('Ida'));
    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect(signInName(page)).toBeVisible();
    const again = unique('Ida again');
    await signInName(page).fill(again);
    await signInButton(page).click();
    await expect(me(page)).toHaveText(again);
    await expectLive(page);
  });
});

// ---- delivery: offline, restarts, scroll-back ---------------------------------

/** Longest an own server may take to start (a debug build on a busy machine). */
const OWN_SERVER_START = 30_000;

/** The id of the room `page` shows, from its URL `/r/<id>/<slug>`. */
function shownRoomId(page: Page): number {
  const match = /^\/r\/(\d+)(\/|$)/.exec(new URL(page.url()).pathname);
  if (!match) throw new Error(`not a room page: ${page.url()}`);
  return Number(match[1]);
}

/**
 * Posts `bodies` to room `roomId` over HTTP (the no-JavaScript form endpoint)
 * as `page`'s user, who must be a member of it (posting joins nothing).
 */
async function postMany(page: Page, roomId: number, bodies: string[]) {
  const origin = new URL(page.url()).origin;
  for (const body of bodies) {
    const res = await page.request.post(`${origin}/api/post_message`, {
      form: { room_id: String(roomId), client_id: crypto.randomUUID(), body },
      headers: { Origin: origin, Accept: 'application/json' },
      maxRedirects: 0,
    });
    expect(res.status(), await res.text()).toBeLessThan(400);
  }
}

/** The chat server binary, started by a test that needs to restart it. */
class OwnServer {
  private child?: ReturnType<typeof spawn>;
  /** 0 until the first start: the server binds a port the OS picks and logs it. */
  private port = 0;
  constructor(readonly db: string) {}

  get origin(): string {
    if (this.port === 0) throw new Error('own server not started yet');
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the binary (again on the same port once it has one) and waits until ready. */
  async start(timeout = OWN_SERVER_START) {
    const root = path.resolve(__dirname, '..', '..');
    const bin = process.env.CHAT_SERVER_BIN ?? path.join(root, 'target', 'debug', 'server');
    const child = spawn(bin, [], {
      cwd: root,
      env: {
        ...process.env,
        LEPTOS_SITE_ADDR: `127.0.0.1:${this.port}`,
        LEPTOS_SITE_ROOT: path.join(root, 'target', 'site'),
        DATABASE_URL: `sqlite://${this.db}`,
        // The "listening addr=…" line tells the port; warnings and errors still show.
        RUST_LOG: 'warn,server=info',
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const deadline = Date.now() + timeout;
    if (this.port === 0) {
      this.port = await new Promise<number>((resolve, reject) => {
        let seen = '';
        const timer = setTimeout(() => reject(new Error(`own server did not log its address:\n${seen}`)), timeout);
        const onData = (chunk: Buffer) => {
          seen += chunk.toString();
          const m = /listening.*addr=127\.0\.0\.1:(\d+)/.exec(seen);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        };
        child.stdout!.on('data', onData);
        child.stderr!.on('data', onData);
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`own server exited (${code}) before listening:\n${seen}`));
        });
      });
    }
    // Keep showing what it says (and keep its pipes drained).
    child.stdout!.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.stderr!.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    for (;;) {
      try {
        if ((await fetch(`${this.origin}/readyz`)).ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error('own server did not become ready');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM, as a deploy or `systemctl restart` would; waits for the exit. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
}

test.describe('delivery', () => {
  test('a message sent while offline is pending, then delivered once when back online', async ({ browser }) => {
    const [kim, lee] = [unique('Kim'), unique('Lee')];
    const room = unique('Offline');
    const a = await person(browser, kim);
    await createRoom(a.page, room);
    const b = await person(browser, lee);
    await joinRoom(b.page, room);

    await a.context.setOffline(true);
    await expect(a.page.locator('.status[data-status="offline"]')).toBeVisible();
    await send(a.page, 'typed on the train');
    const pending = a.page.locator('ol.messages li.msg.pending');
    await expect(pending.locator('p.body')).toHaveText('typed on the train');
    await expect(pending.locator('.time')).toHaveText('sending…');
    // Lee cannot have it yet; meanwhile Lee talks, and Kim misses it live.
    await send(b.page, 'anyone there?');
    await expect(committedBodies(b.page)).toHaveText(['anyone there?']);
    await expect(committedBodies(a.page)).toHaveCount(0);

    await a.context.setOffline(false);
    await expectLive(a.page);
    // Kim gets what was missed and the pending line turns into a sent one;
    // Lee sees it exactly once, in the same order.
    await expect(committedBodies(a.page)).toHaveText(['anyone there?', 'typed on the train']);
    await expect(pending).toHaveCount(0);
    await expect(committedBodies(b.page)).toHaveText(['anyone there?', 'typed on the train']);
    expect(await seqs(a.page)).toEqual(await seqs(b.page));
    await b.page.reload();
    await expect(committedBodies(b.page)).toHaveText(['anyone there?', 'typed on the train']);
    await a.context.close();
    await b.context.close();
  });

  test('a server restart under an open page: it reconnects and resumes with what was sent meanwhile', async ({
    browser,
  }) => {
    // Two server starts, and a reconnect that may wait out the client's
    // backoff: room for all of them on a slow machine.
    test.setTimeout(2 * OWN_SERVER_START + 90_000);
    const db = path.resolve(__dirname, '..', '..', 'target', 'e2e', `restart-${RUN}.db`);
    const server = new OwnServer(db);
    await server.start();
    const context = await browser.newContext({ baseURL: server.origin });
    const other = await browser.newContext({ baseURL: server.origin });
    try {
      const page = await context.newPage();
      await signIn(page, unique('Max'));
      // The old URL by name still works: it redirects to the room's page.
      await page.goto('/rooms/general');
      await expect(page).toHaveURL(/\/r\/\d+\/general$/);
      await expectLive(page);
      await send(page, 'before the restart');
      await expect(committedBodies(page)).toHaveText(['before the restart']);

      const watcher = await other.newPage();
      await signIn(watcher, unique('Ned'));
      await watcher.goto('/rooms/general');
      await expect(watcher).toHaveURL(/\/r\/\d+\/general$/);
      await expectLive(watcher);

      await server.stop();
      await expect(page.locator('.status[data-status="reconnecting"], .status[data-status="connecting"]')).toBeVisible();
      // Typed while the server is down: kept in the outbox.
      await send(page, 'during the restart');
      await expect(page.locator('ol.messages li.msg.pending p.body')).toHaveText('during the restart');

      await server.start();
      // Someone else posts as soon as the server is back.
      await postMany(watcher, shownRoomId(watcher), ['meanwhile 1', 'meanwhile 2']);
      // The page may be waiting out its reconnect backoff (up to 8 s), on a
      // machine that may be slow: a generous wait for it to be live again.
      await expect(page.locator('.status[data-status="online"]')).toHaveText('live', { timeout: 30_000 });
      const all = ['before the restart', 'during the restart', 'meanwhile 1', 'meanwhile 2'];
      await expect(committedBodies(page)).toHaveCount(4);
      await expect(page.locator('ol.messages li.msg.pending')).toHaveCount(0);
      expect((await committedBodies(page).allInnerTexts()).sort()).toEqual([...all].sort());
      // Seqs number every event of the room (joins too), so the four
      // messages are in strictly increasing order, the same for both readers.
      const shown = await seqs(page);
      expect(shown).toHaveLength(4);
      expect(shown).toEqual([...shown].sort((a, b) => a - b));
      expect(new Set(shown).size).toBe(4);
      await watcher.reload();
      await expect(committedBodies(watcher)).toHaveText(await committedBodies(page).allInnerTexts());
      expect(await seqs(watcher)).toEqual(shown);
    } finally {
      await context.close();
      await other.close();
      await server.stop();
    }
  });

  test('scrolling up loads older history page by page, keeping the place, down to the first message', async ({
    page,
  }) => {
    await signIn(page, unique('Ora'));
    const room = unique('Archive');
    const roomId = await createRoom(page, room);
    const total = 130;
    await postMany(page, roomId, Array.from({ length: total }, (_, i) => `archived ${i + 1}`));
    await page.reload();
    await expectLive(page);
    // The server renders the latest page (50).
    await expect(committed(page)).toHaveCount(50);
    await expect(committedBodies(page).first()).toHaveText(`archived ${total - 49}`);
    await expect(committedBodies(page).last()).toHaveText(`archived ${total}`);
    const latest = await seqs(page);

    const list = page.locator('ol.messages');
    const oldest = page.locator(`ol.messages li.msg[data-seq="${latest[0]}"]`);
    await list.evaluate((el) => (el.scrollTop = 0));
    await expect(committed(page)).toHaveCount(100);
    // The line that was on top is still on top: the page went in above it
    // without moving what is being read.
    const offset = (await oldest.boundingBox())!.y - (await list.boundingBox())!.y;
    expect(offset).toBeGreaterThanOrEqual(0);
    expect(offset).toBeLessThan(120);

    await list.evaluate((el) => (el.scrollTop = 0));
    await expect(committed(page)).toHaveCount(total);
    await expect(page.locator('.history-edge .start')).toHaveText(`This is the start of # ${room}.`);
    // Only posts follow the room's creation (its owner's join), so the whole
    // history is one unbroken run of seqs ending where the latest page ended.
    const all = await seqs(page);
    expect(all).toEqual(Array.from({ length: total }, (_, i) => latest[49] - total + 1 + i));
    await expect(committedBodies(page).first()).toHaveText('archived 1');
  });
});
