// The console in a real headless Chromium (Debian's), driven by playwright-core. Run by
// crates/convene/tests/console.rs, which starts the server, passes what the script needs in the environment, and
// answers its `NEED <what>` lines on stdin once it has made WhatsApp "do" that (through the connector's simulated
// events). Fails on the first unmet expectation, on any script error or CSP violation in a page, and on any request
// that leaves the server's origin. Saves a screenshot of each page, at desktop and phone widths, into SCREENSHOTS.

import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env('CONVENE_URL');
const ADMIN_KEY = env('CONVENE_ADMIN_KEY');
const READER_KEY = env('CONVENE_READER_KEY');
const WHATSAPP_ID = env('CONVENE_WHATSAPP_ID');
const PAIRED_PHONE = env('CONVENE_PAIRED_PHONE');
const SCREENSHOTS = env('SCREENSHOTS');
mkdirSync(SCREENSHOTS, { recursive: true });

const stdin = createInterface({ input: process.stdin });
const answers = stdin[Symbol.asyncIterator]();
/** Asks the test to make WhatsApp do `what`, and waits until it has. */
async function need(what) {
  console.log(`NEED ${what}`);
  const { value, done } = await answers.next();
  if (done || value.trim() !== 'done') throw new Error(`the test did not do ${what}: ${value}`);
}
const step = (name) => console.log(`STEP ${name}`);
const expect = (condition, message) => {
  if (!condition) throw new Error(message);
};

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  ],
});
const problems = [];

/** A fresh browser profile at `width`, watching for errors and requests off the origin. */
async function open(width, height) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`script error on ${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    // A wrong key's sign-in page is answered 401 on purpose, which Chromium reports as a failed load.
    const expected = page.url().endsWith('/console/sign-in') && m.text().includes('status of 401');
    if (m.type() === 'error' && !expected) problems.push(`console error on ${page.url()}: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE)) problems.push(`request off the origin: ${r.url()}`);
  });
  page.setDefaultTimeout(15000);
  return { context, page };
}

/** Fields without a label and controls without a name on the page: what a screen reader could not announce. */
async function unlabelled(page) {
  return page.evaluate(() => {
    const named = (el) => (el.getAttribute('aria-label') || el.textContent || el.value || '').trim() !== '';
    const problems = [];
    for (const field of document.querySelectorAll('input:not([type="hidden"]), select, textarea')) {
      if (field.labels.length === 0 && !field.getAttribute('aria-label')) problems.push(`field ${field.outerHTML}`);
    }
    for (const control of document.querySelectorAll('button, a[href]')) {
      if (!named(control)) problems.push(`control ${control.outerHTML}`);
    }
    return problems;
  });
}

/** Saves the page's picture, and checks on the way that every field is labelled and every control named. */
async function shot(page, name) {
  const missing = await unlabelled(page);
  expect(missing.length === 0, `on ${name}, unlabelled:\n${missing.join('\n')}`);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page, key) {
  await page.goto(`${BASE}/`);
  expect(page.url().endsWith('/console/sign-in'), `/ leads to sign-in, got ${page.url()}`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/console/numbers');
}

/** The page fits its width: nothing scrolls sideways but the tables' own scrolling box. */
async function fitsWidth(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
}

/** Campaigns and groups: a batch of five from a CSV file, watched live to the end; a group's outcomes; adding. */
async function groupsAndCampaigns(page) {
  step('queue five groups from a CSV file');
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Campaigns' }).click();
  await page.getByRole('heading', { name: 'Queue a batch of groups' }).waitFor();
  const csv = ['subject,participants,description',
    ...[1, 2, 3, 4, 5].map((n) => `Onboarding ${n},+17137157533;+18647351567,Customer ${n}`)].join('\n');
  await page.getByLabel('Or read a CSV file into the box above').setInputFiles(
    { name: 'groups.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  await page.waitForFunction(() => document.getElementById('csv').value.includes('Onboarding 5'));
  await page.getByLabel('Breakout room 7').check();
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.getByText('5 groups read').waitFor();
  expect(await page.getByLabel('Breakout room 7').isChecked(), 'the pool stays chosen after a preview');
  await shot(page, 'desktop-campaign-preview');
  await page.getByRole('button', { name: 'Queue groups' }).click();
  await page.waitForURL(/\/console\/campaigns\/[0-9a-f-]{36}$/);

  step('the batch finishes live');
  await page.getByText('5 succeeded').waitFor({ timeout: 30000 });
  await page.getByText('Finished.').waitFor();
  expect(await page.getByRole('button', { name: 'Cancel the groups not started yet' }).count() === 0,
    'nothing left to cancel once finished');
  await shot(page, 'desktop-campaign-batch');

  step('a group shows what happened to each participant, and takes one more');
  await page.getByRole('link', { name: 'Group', exact: true }).first().click();
  await page.getByRole('heading', { name: 'At creation' }).waitFor();
  const atCreation = page.getByRole('table', { name: /when the group was created/ });
  expect(await atCreation.getByText('added', { exact: true }).count() === 2, 'both participants were added at creation');
  await page.getByRole('button', { name: 'Copy' }).click();
  await page.getByText(/^(Copied\.|Selected: press Ctrl\+C to copy\.)$/).waitFor();
  await page.getByLabel('Phone numbers with country code, one per line').fill('+447700176576');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByRole('table', { name: 'Outcome of the change' }).getByText('added', { exact: true }).waitFor();
  await page.getByRole('table', { name: /members, as the network has them now/ }).getByText('+447700176576').waitFor();
  await shot(page, 'desktop-group');

  step('groups are searched by subject');
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Groups' }).click();
  await page.getByLabel('Subject contains').fill('onboarding');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('table', { name: 'Groups that match' }).waitFor();
  const found = await page.getByRole('table', { name: 'Groups that match' }).locator('tbody tr').count();
  expect(found === 5, `five groups match "onboarding": ${found}`);
  await shot(page, 'desktop-groups');
}

/** The sandbox: script a person, and see the network's groups. */
async function sandbox(page) {
  step('script a sandbox person');
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Sandbox' }).click();
  await page.getByRole('heading', { name: 'Groups on the network' }).waitFor();
  expect(await page.getByRole('table', { name: /groups on the network/ }).locator('tbody tr').count() >= 5,
    "the batch's groups are on the network");
  await shot(page, 'desktop-sandbox');
  await page.getByLabel("A person's number").fill('+447700176576');
  await page.getByRole('button', { name: 'Open' }).click();
  await page.getByLabel('Who may add them to groups').selectOption('nobody');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Saved.').waitFor();
  expect(await page.getByRole('definition').filter({ hasText: 'Nobody may add them' }).count() === 1,
    'the person now refuses every add');
  await shot(page, 'desktop-sandbox-person');
}

// ---------- webhooks and the event monitor ----------

/** A webhook receiver on 127.0.0.1 that answers `receiverStatus` (500 until the script says otherwise). */
let receiverStatus = 500;
const receiver = createServer((request, response) => {
  request.resume();
  request.on('end', () => response.writeHead(receiverStatus).end(receiverStatus === 500 ? 'not now' : ''));
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const RECEIVER_URL = `http://127.0.0.1:${receiver.address().port}/hook`;
/** Pages the phone-width pass revisits: the endpoint's and the failed delivery's. */
const webhookPages = {};

/** A sandbox number and a group on it, made through the API: the group's `group.created` is the event to watch. */
async function groupThroughTheApi(numberName, subject) {
  const call = async (path, body) => {
    const response = await fetch(`${BASE}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(response.status === 201, `POST ${path}: ${response.status} ${await response.clone().text()}`);
    return response.json();
  };
  const number = await call('/v1/instances', { kind: 'sandbox', name: numberName });
  await call('/v1/groups', { instance_id: number.id, subject, participants: ['+12015550123'] });
}

async function webhooksAndEvents(page) {
  const nav = page.getByRole('navigation', { name: 'Console' });

  step('add a webhook endpoint for group creations');
  await nav.getByRole('link', { name: 'Webhooks' }).click();
  await page.getByRole('heading', { name: 'Webhooks', exact: true }).waitFor();
  await page.getByLabel('URL', { exact: true }).fill(RECEIVER_URL);
  await page.getByLabel('group.created', { exact: true }).check();
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  const secret = await page.locator('#webhook-secret').textContent();
  expect(/^whsec_/.test(secret), `the secret is shown once: ${secret}`);
  webhookPages.endpoint = page.url();

  step('a delivery to a failing receiver fails, live');
  await groupThroughTheApi('Announced by webhook', 'Webhook watchers');
  const deliveries = page.locator('#deliveries-live');
  await deliveries.getByText('failed', { exact: true }).first().waitFor();
  await shot(page, 'desktop-webhook');

  step('the failed delivery shows every attempt');
  await deliveries.getByRole('link').first().click();
  await page.getByRole('heading', { name: 'Attempts (2)' }).waitFor();
  expect(await page.locator('table').getByText('HTTP 500', { exact: true }).count() === 2, 'both attempts answered 500');
  webhookPages.delivery = page.url();
  await shot(page, 'desktop-delivery-failed');

  step('the receiver recovers; replay the delivery and see it succeed live');
  receiverStatus = 204;
  await page.getByRole('button', { name: 'Replay this delivery' }).click();
  await page.getByRole('heading', { name: 'Attempts (3)' }).waitFor();
  await page.getByText('succeeded', { exact: true }).waitFor();
  await page.locator('table').getByText('HTTP 204', { exact: true }).waitFor();
  await shot(page, 'desktop-delivery-replayed');

  step('the event monitor, filtered by type, shows a new event live');
  await nav.getByRole('link', { name: 'Events' }).click();
  await page.getByRole('heading', { name: 'Events', exact: true }).waitFor();
  await page.getByLabel('Type', { exact: true }).selectOption('group.created');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL('**/console/events?type=group.created*');
  await groupThroughTheApi('Monitored live', 'Appears live');
  const events = page.locator('#events');
  await events.getByRole('link', { name: /^Monitored live/ }).waitFor();
  const types = await events.locator('code.event-type').allTextContents();
  expect(types.length > 1 && types.every((t) => t === 'group.created'), `only the filtered type: ${types}`);
  await events.getByText('Payload').first().click();
  await shot(page, 'desktop-events');
}

/** The same pages at a phone's width, with a read-only key: readable, nothing to change offered. */
async function webhooksAndEventsAtPhoneWidth(page) {
  step('webhooks and events at a phone width, read-only');
  await page.goto(`${BASE}/console/webhooks`);
  expect(await page.getByRole('button', { name: 'Add endpoint' }).count() === 0, 'no form to add an endpoint');
  expect(await fitsWidth(page), 'the webhooks page fits a phone');
  await shot(page, 'phone-webhooks');
  for (const [name, url] of Object.entries(webhookPages)) {
    await page.goto(url);
    expect(await page.getByRole('button').filter({ hasText: /Replay|Save|Rotate/ }).count() === 0,
      `a read-only key is offered a change on the ${name} page`);
    expect(await fitsWidth(page), `the ${name} page fits a phone`);
    await shot(page, `phone-${name}`);
  }
  await page.goto(`${BASE}/console/events`);
  await page.locator('#events code.event-type').first().waitFor();
  expect(await fitsWidth(page), 'the event monitor fits a phone');
  await shot(page, 'phone-events');
}

try {
  // Desktop: sign in, read the numbers, add one, watch the list change live, pair a WhatsApp number by QR.
  const desktop = await open(1280, 800);
  let page = desktop.page;
  step('sign-in page');
  await page.goto(`${BASE}/`);
  await shot(page, 'desktop-sign-in');
  expect(await page.evaluate(() => document.activeElement?.id) === 'api-key', 'the key field has the focus');
  await page.getByLabel('API key').fill('cvn_not_a_key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();

  step('sign in');
  await signIn(page, ADMIN_KEY);
  await page.getByRole('heading', { name: 'Numbers' }).waitFor();
  await shot(page, 'desktop-numbers');
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement?.textContent) === 'Skip to content',
    'the first Tab stop is the skip link');

  step('add a sandbox number');
  await page.getByLabel('Kind').selectOption('sandbox');
  await page.getByLabel('Name (optional)').fill('Breakout room 7');
  await page.getByRole('button', { name: 'Add number' }).click();
  await page.getByRole('heading', { name: 'Breakout room 7' }).waitFor();
  const token = await page.locator('#instance-token').textContent();
  expect(/^[0-9a-f]{50}$/.test(token), `the instance token is shown once: ${token}`);
  await page.locator('.state-connected').first().waitFor();
  await shot(page, 'desktop-number-sandbox');

  step('the list follows a number added elsewhere, without a reload');
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Numbers' }).click();
  await page.waitForURL('**/console/numbers');
  const created = await fetch(`${BASE}/v1/instances`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'sandbox', name: 'Added through the API' }),
  });
  expect(created.status === 201, `the API created a number: ${created.status}`);
  await page.getByRole('link', { name: 'Added through the API' }).waitFor();

  step('pair a WhatsApp number by QR');
  await page.goto(`${BASE}/console/numbers/${WHATSAPP_ID}`);
  await page.locator('#pairing').waitFor();
  await need('qr');
  await page.getByRole('img', { name: 'QR code to link this number' }).waitFor();
  await shot(page, 'desktop-number-qr');
  await need('paired');
  await page.getByText(`Paired: ${PAIRED_PHONE}`).waitFor();
  await shot(page, 'desktop-number-paired');

  await groupsAndCampaigns(page);
  await sandbox(page);
  await webhooksAndEvents(page);

  step('sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL('**/console/sign-in');
  await page.goto(`${BASE}/console/numbers`);
  expect(page.url().endsWith('/console/sign-in'), 'signed out for good');
  await desktop.context.close();

  // Phone width, with a read-only key: everything readable, nothing that changes things offered.
  step('read-only key at a phone width');
  const phone = await open(390, 844);
  page = phone.page;
  await signIn(page, READER_KEY);
  await page.getByText('read-only').waitFor();
  expect(await page.getByRole('button', { name: 'Add number' }).count() === 0, 'no form to add a number');
  expect(await fitsWidth(page), 'the numbers page fits a phone');
  await shot(page, 'phone-numbers-read-only');
  await page.getByRole('link', { name: 'Breakout room 7' }).click();
  await page.getByRole('heading', { name: 'Breakout room 7' }).waitFor();
  for (const name of ['Save settings', 'Delete…', 'Get a code']) {
    expect(await page.getByRole('button', { name }).count() === 0
      && await page.getByRole('link', { name }).count() === 0, `a read-only key is offered "${name}"`);
  }
  expect(await fitsWidth(page), 'a number page fits a phone');
  await shot(page, 'phone-number-read-only');
  for (const [section, name] of [['Campaigns', 'phone-campaigns-read-only'], ['Groups', 'phone-groups-read-only']]) {
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: section }).click();
    await page.getByRole('heading', { name: section, exact: true }).waitFor();
    expect(await page.getByRole('button', { name: 'Queue groups' }).count() === 0, 'a read-only key queues nothing');
    expect(await fitsWidth(page), `the ${section} page fits a phone`);
    await shot(page, name);
  }
  await page.getByRole('link', { name: 'Onboarding 1' }).click();
  await page.getByRole('heading', { name: 'At creation' }).waitFor();
  expect(await page.getByRole('button', { name: 'Apply' }).count() === 0, 'a read-only key changes no members');
  expect(await fitsWidth(page), 'a group page fits a phone');
  await shot(page, 'phone-group-read-only');
  await webhooksAndEventsAtPhoneWidth(page);
  await phone.context.close();

  expect(problems.length === 0, `problems in the pages:\n${problems.join('\n')}`);
  console.log('PASS');
} finally {
  await browser.close();
  receiver.close();
  stdin.close();
}
