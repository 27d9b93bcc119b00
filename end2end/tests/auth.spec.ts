import { test, expect, type Page } from '@playwright/test';

/*
 * Signing in for real, in the browser: through an OpenID provider (the
 * `oidc-provider` package that `make e2e` starts on 127.0.0.1 and configures
 * as "Test ID"), and with a local account (email and password).
 */

const RUN = Date.now().toString(36);
let counter = 0;

/** A provider login unique to this run, e.g. "ada.k3x9a1". */
function login(first: string): string {
  counter += 1;
  return `${first}.r${RUN}${counter}`;
}

/** The name the test provider gives a login: "ada.r1x" -> "Ada R1x". */
function providerName(login: string): string {
  return login
    .split('.')
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ');
}

const me = (page: Page) => page.getByTestId('me');
const meEmail = (page: Page) => page.getByTestId('me-email');
const live = (page: Page) => page.locator('.status[data-status="online"]');

async function openSignedOut(page: Page) {
  await page.goto('/');
  await page.waitForLoadState('networkidle');
}

test.describe('sign-in', () => {
  test('with an OpenID provider: log in there, land here with its name, email and picture', async ({ page }) => {
    const who = login('ada');
    await openSignedOut(page);
    await page.getByRole('button', { name: 'Sign in with Test ID' }).click();

    // At the provider: its own login page.
    await expect(page).toHaveURL(/\/interaction\//);
    await page.locator('input[name="login"]').fill(who);
    await page.locator('input[name="password"]').fill('any password');
    await page.getByRole('button', { name: 'Sign-in' }).click();

    // Back in the app, signed in as the provider says.
    await expect(me(page)).toHaveText(providerName(who));
    await expect(meEmail(page)).toHaveText(`${who}@example.test`);
    await expect(page.locator('header.me img.avatar')).toHaveAttribute('src', /\/avatar\//);
    await expect(live(page)).toHaveText('live');

    // In a room: in the online list (with email) and on messages (with the picture).
    await page.goto('/rooms/general');
    await expect(live(page)).toHaveText('live');
    const mine = page
      .locator('ul[data-testid="online"] li')
      .filter({ has: page.locator('.name', { hasText: providerName(who) }) });
    await expect(mine).toHaveCount(1);
    await expect(mine.locator('.email')).toHaveText(`${who}@example.test`);
    const body = `hello from ${who}`;
    await page.locator('form.composer textarea[aria-label="Message"]').fill(body);
    await page.keyboard.press('Enter');
    const line = page.locator('ol.messages li.msg[data-seq]').filter({ hasText: body });
    await expect(line.locator('.author')).toHaveText(providerName(who));
    await expect(line.locator('img.avatar')).toHaveAttribute('src', /\/avatar\//);

    // Signing in again later is the same account: the message is still its own.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect(page.getByRole('button', { name: 'Sign in with Test ID' })).toBeVisible();
    await page.getByRole('button', { name: 'Sign in with Test ID' }).click();
    // The provider remembers the browser (its own session), or asks again.
    const providerLogin = page.locator('input[name="login"]');
    await expect(me(page).or(providerLogin)).toBeVisible();
    if (await providerLogin.isVisible()) {
      await page.locator('input[name="login"]').fill(who);
      await page.locator('input[name="password"]').fill('any password');
      await page.getByRole('button', { name: 'Sign-in' }).click();
    }
    await expect(me(page)).toHaveText(providerName(who));
  });

  test('a tampered provider response shows a clear error page', async ({ page }) => {
    await page.goto('/auth/oidc/test-id/callback?code=forged&state=forged');
    await expect(page.getByRole('heading', { name: 'Sign-in failed' })).toBeVisible();
    await expect(page.getByRole('alert')).toContainText('unknown or was already used');
    await page.getByRole('link', { name: 'Back to sign-in' }).click();
    await expect(page.getByRole('button', { name: 'Sign in with Test ID' })).toBeVisible();
  });

  test('with a local account: sign up, sign out, wrong password, sign in', async ({ page }) => {
    const name = `Lia ${RUN}`.slice(0, 32);
    const email = `lia.${RUN}@example.test`;
    await openSignedOut(page);
    await page.getByText('New here? Create an account').click();
    await page.locator('#signup-name').fill(name);
    await page.locator('#signup-email').fill(email);
    await page.locator('#signup-password').fill('correct horse battery');
    await page.getByRole('button', { name: 'Create account' }).click();
    await expect(me(page)).toHaveText(name);
    await expect(meEmail(page)).toHaveText(email);
    await expect(live(page)).toHaveText('live');
    // No picture: initials instead.
    await expect(page.locator('header.me span.avatar')).toHaveAttribute('data-initials', 'L' + RUN[0].toUpperCase());

    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect(page.locator('#signin-email')).toBeVisible();

    await page.locator('#signin-email').fill(email);
    await page.locator('#signin-password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect(page.locator('form.signin-password p.error[role="alert"]')).toHaveText('Wrong email or password.');
    await expect(me(page)).toHaveCount(0);

    await page.locator('#signin-password').fill('correct horse battery');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect(me(page)).toHaveText(name);
    await expect(live(page)).toHaveText('live');
  });

  test('without JavaScript, local sign-up and sign-in work as plain forms', async ({ browser }) => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    const name = `Nox ${RUN}`.slice(0, 32);
    const email = `nox.${RUN}@example.test`;
    await page.goto('/');
    await page.getByText('New here? Create an account').click();
    await page.locator('#signup-name').fill(name);
    await page.locator('#signup-email').fill(email);
    await page.locator('#signup-password').fill('short');
    await page.getByRole('button', { name: 'Create account' }).click();
    // The refusal comes back on the page.
    await expect(page.locator('main.signin > p.error[role="alert"]')).toContainText('at least 8 characters');

    await page.getByText('New here? Create an account').click();
    await page.locator('#signup-name').fill(name);
    await page.locator('#signup-email').fill(email);
    await page.locator('#signup-password').fill('long enough now');
    await page.getByRole('button', { name: 'Create account' }).click();
    await expect(me(page)).toHaveText(name);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#signin-email').fill(email);
    await page.locator('#signin-password').fill('long enough now');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect(me(page)).toHaveText(name);
    await context.close();
  });
});
