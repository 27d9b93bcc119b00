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
  me,
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
});
