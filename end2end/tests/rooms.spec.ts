import { test, expect, type Page } from '@playwright/test';
import {
  browse,
  committedBodies,
  composer,
  createRoom,
  directoryRow,
  expectOnline,
  joinBar,
  joinFromPreview,
  expectLive,
  joinRoom,
  me,
  notices,
  pane,
  person,
  previewFromBrowse,
  roomLink,
  roomPath,
  send,
  unique,
} from './helpers';

/*
 * Rooms you belong to, and the public rooms you find under Browse rooms.
 */

/** Sets a room's topic through its server function, as `page`'s user (its owner). */
async function setTopic(page: Page, roomId: number, topic: string) {
  const origin = new URL(page.url()).origin;
  const res = await page.request.post(`${origin}/api/set_topic`, {
    form: { room_id: String(roomId), client_id: crypto.randomUUID(), topic },
    headers: { Origin: origin, Accept: 'application/json' },
    maxRedirects: 0,
  });
  expect(res.status(), await res.text()).toBe(200);
}

const memberCount = (page: Page, name: string) => directoryRow(page, name).getByTestId('member-count');

/** A room's line in the sidebar, by id. */
const sidebarRoom = (page: Page, id: number) => page.locator(`nav.rooms li[data-room-id="${id}"]`);

/** The room's unread badge shows `n` (and none at all for 0). */
async function expectUnread(page: Page, id: number, n: number) {
  await expect(sidebarRoom(page, id)).toHaveAttribute('data-unread', String(n));
  await expect(sidebarRoom(page, id).locator('.badge.unread')).toHaveCount(n === 0 ? 0 : 1);
  if (n > 0) await expect(sidebarRoom(page, id).locator('.badge.unread')).toHaveText(String(n));
}

/** Opens general (by its old name, which redirects) and waits until live. */
async function openGeneral(page: Page) {
  await page.goto('/rooms/general');
  await expect(pane(page, 'general')).toBeVisible();
  await expectLive(page);
}

test.describe('rooms', () => {
  test('browse, preview, join', async ({ browser }) => {
    const [ann, bob] = [unique('Ann'), unique('Bob')];
    // Two rooms that share a word, so the filter has something to narrow.
    const tag = unique('Flora');
    const garden = `${tag} Garden`;
    const kitchen = `${tag} Kitchen`;
    const topic = `Seeds and weeds ${tag}`;

    const a = await person(browser, ann);
    const b = await person(browser, bob);
    try {
      await createRoom(a.page, kitchen);
      const gardenId = await createRoom(a.page, garden);
      await setTopic(a.page, gardenId, topic);
      await send(a.page, 'first shoots');
      await expect(committedBodies(a.page)).toHaveText(['first shoots']);

      // Bob's sidebar lists neither: they are Ann's rooms.
      await expect(roomLink(b.page, garden)).toHaveCount(0);
      await expect(roomLink(b.page, kitchen)).toHaveCount(0);

      // The shared word finds both; the full name only the garden.
      await browse(b.page, tag);
      await expect(directoryRow(b.page, garden)).toHaveCount(1);
      await expect(directoryRow(b.page, kitchen)).toHaveCount(1);
      await browse(b.page, garden);
      await expect(b.page.locator('ul.directory li')).toHaveCount(1);
      await expect(directoryRow(b.page, garden)).toHaveCount(1);
      // With its topic and member count, a Preview link and a Join form.
      await expect(directoryRow(b.page, garden).locator('.topic')).toHaveText(topic);
      await expect(memberCount(b.page, garden)).toHaveText('1 member');
      await expect(directoryRow(b.page, garden).getByRole('button', { name: 'Join' })).toBeVisible();

      // The preview shows the history and the members, the Join bar and no composer.
      await previewFromBrowse(b.page, garden);
      await expect(b.page).toHaveURL(new RegExp(`${roomPath(gardenId, garden)}$`));
      await expect(pane(b.page, garden).locator('.pane-head .topic')).toHaveText(topic);
      await expect(committedBodies(b.page)).toHaveText(['first shoots']);
      await expect(b.page.locator('ul[data-testid="members"] li .name')).toHaveText([ann]);
      await expect(composer(b.page)).toHaveCount(0);
      await expect(roomLink(b.page, garden)).toHaveCount(0);

      // Joining opens the room as a member: composer, sidebar, live.
      expect(await joinFromPreview(b.page, garden)).toBe(gardenId);
      await expect(joinBar(b.page, garden)).toHaveCount(0);
      await expect(b.page.locator('ul[data-testid="members"] li .name')).toHaveText([ann, bob]);
      await expectOnline(a.page, [ann, bob]);
      await send(b.page, 'hello garden');
      await expect(committedBodies(a.page)).toHaveText(['first shoots', 'hello garden']);

      // Browse now counts him, and says he is in.
      await browse(b.page, garden);
      await expect(memberCount(b.page, garden)).toHaveText('2 members');
      await expect(directoryRow(b.page, garden).locator('.joined')).toHaveText('Joined');
      await expect(directoryRow(b.page, garden).getByRole('button', { name: 'Join' })).toHaveCount(0);
      // The kitchen is still only Ann's.
      await browse(b.page, kitchen);
      await expect(memberCount(b.page, kitchen)).toHaveText('1 member');
      await expect(me(b.page)).toHaveText(bob);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('unread and mention counts rise in a background room and clear when it is opened, in every tab', async ({ browser }) => {
    const [ann, bob] = [unique('Ann'), unique('Bob')];
    const room = unique('Backroom');
    const a = await person(browser, ann);
    const b = await person(browser, bob);
    try {
      const id = await createRoom(a.page, room);
      await joinRoom(b.page, room);
      // Ann has two tabs, both on general: the room is in the background.
      const tab1 = a.page;
      const tab2 = await a.context.newPage();
      await openGeneral(tab1);
      await openGeneral(tab2);
      await expectUnread(tab1, id, 0);

      await send(b.page, 'one');
      await send(b.page, `two, @${ann}`);
      await expectUnread(tab1, id, 2);
      await expectUnread(tab2, id, 2);
      // The second mentions her: a mention badge too, in both tabs.
      for (const tab of [tab1, tab2]) {
        await expect(sidebarRoom(tab, id)).toHaveAttribute('data-mentions', '1');
        await expect(sidebarRoom(tab, id).locator('.badge.mentions')).toHaveText('@1');
      }

      // Opening it in one tab reads it there, and the other tab hears so.
      await roomLink(tab1, room).click();
      await expect(pane(tab1, room)).toBeVisible();
      await expect(committedBodies(tab1)).toHaveText(['one', `two, @${ann}`]);
      await expectUnread(tab1, id, 0);
      await expectUnread(tab2, id, 0);
      await expect(sidebarRoom(tab2, id)).toHaveAttribute('data-mentions', '0');
      await expect(sidebarRoom(tab2, id).locator('.badge.mentions')).toHaveCount(0);
      // The read marker is the server's: a reload and another device agree.
      await tab2.reload();
      await expectLive(tab2);
      await expectUnread(tab2, id, 0);

      // A message arriving while the room is open and read is not unread.
      await send(b.page, 'three');
      await expect(committedBodies(tab1)).toHaveText(['one', `two, @${ann}`, 'three']);
      await expectUnread(tab2, id, 0);
      await expectUnread(tab1, id, 0);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('a rename shows everywhere: header, sidebars, other tabs, Browse, and the old link still works', async ({
    browser,
  }) => {
    const [ann, bob] = [unique('Ann'), unique('Bob')];
    const before = unique('Old Name');
    const after = unique('New Name');
    const a = await person(browser, ann);
    const b = await person(browser, bob);
    try {
      const id = await createRoom(a.page, before);
      await joinRoom(b.page, before);
      const tab2 = await a.context.newPage();
      await openGeneral(tab2);
      await expect(roomLink(tab2, before)).toBeVisible();

      // Only the owner has the settings.
      await expect(b.page.locator('details.room-settings')).toHaveCount(0);
      await a.page.locator('details.room-settings summary').click();
      await a.page.locator('form.rename-room input[name="name"]').fill(after);
      await a.page.locator('form.rename-room').getByRole('button', { name: 'Rename' }).click();

      // The owner lands on the room's new path.
      await expect(a.page).toHaveURL(new RegExp(`${roomPath(id, after)}$`));
      await expect(pane(a.page, after).locator('h1')).toHaveText(`# ${after}`);
      await expect(roomLink(a.page, after)).toBeVisible();
      // Bob sees it live: header, sidebar and a notice.
      await expect(b.page.locator('main.pane h1')).toHaveText(`# ${after}`);
      await expect(roomLink(b.page, after)).toBeVisible();
      await expect(roomLink(b.page, before)).toHaveCount(0);
      await expect(notices(b.page).filter({ hasText: `${ann} renamed the room to # ${after}` })).toHaveCount(1);
      // Ann's other tab, without a reload.
      await expect(roomLink(tab2, after)).toBeVisible();
      await expect(roomLink(tab2, before)).toHaveCount(0);

      // Browse finds the new name only.
      await browse(b.page, after);
      await expect(directoryRow(b.page, after)).toHaveCount(1);
      await browse(b.page, before);
      await expect(directoryRow(b.page, before)).toHaveCount(0);

      // The old link still opens the room (the id is what counts).
      await b.page.goto(roomPath(id, before));
      await expect(pane(b.page, after).locator('h1')).toHaveText(`# ${after}`);
      await expectLive(b.page);

      // The topic is set the same way, and shows live.
      await a.page.locator('details.room-settings summary').click();
      await a.page.locator('form.set-topic input[name="topic"]').fill('All about the new name');
      await a.page.locator('form.set-topic').getByRole('button', { name: 'Set topic' }).click();
      await expect(pane(b.page, after).locator('.pane-head .topic')).toHaveText('All about the new name');
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('a second tab learns of a room joined in the first', async ({ browser }) => {
    const [ann, bob] = [unique('Ann'), unique('Bob')];
    const room = unique('Newsroom');
    const a = await person(browser, ann);
    const b = await person(browser, bob);
    try {
      const id = await createRoom(a.page, room);
      const tab2 = await b.context.newPage();
      await openGeneral(tab2);
      await expect(roomLink(tab2, room)).toHaveCount(0);

      expect(await joinRoom(b.page, room)).toBe(id);
      // The other tab lists it at once, without a reload.
      await expect(roomLink(tab2, room)).toBeVisible();
      await expectUnread(tab2, id, 0);

      // And hears its messages: with Bob looking elsewhere in both tabs,
      // each new message is unread in both.
      await openGeneral(b.page);
      await send(a.page, 'news');
      await expectUnread(tab2, id, 1);
      await expectUnread(b.page, id, 1);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });
});
