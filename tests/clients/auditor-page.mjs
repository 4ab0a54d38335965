// The auditor page in a real headless Chromium (playwright-core driving the
// system's /usr/bin/chromium): sign in with HTTP Basic, search a data
// subject, wait for the timeline, check who received the subject's records,
// verify the chains, optionally save a screenshot. Prints one JSON object.
//
//   node auditor-page.mjs --url http://127.0.0.1:PORT/ --user auditor \
//     --password PW --subject u-000042 --expect analytics,trust-safety \
//     [--screenshot FILE] [--executable /usr/bin/chromium]
//
// Exit 0 when the delivery rows name exactly the --expect principals and the
// verify report is clean; 1 otherwise (the JSON says what was seen).
import { chromium } from 'playwright-core';

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    if (!k.startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`bad argument ${k}`);
    }
    out[k.slice(2)] = argv[i + 1];
  }
  return out;
}

const a = args(process.argv.slice(2));
for (const need of ['url', 'user', 'password', 'subject', 'expect']) {
  if (!a[need]) throw new Error(`--${need} is required`);
}
const expected = a.expect.split(',').filter(Boolean).sort();
const timeout = 20_000;

class Refused extends Error {}

const browser = await chromium.launch({
  executablePath: a.executable || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  timeout,
});
let result;
try {
  const context = await browser.newContext({
    httpCredentials: { username: a.user, password: a.password },
    viewport: { width: 1280, height: 820 },
  });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  const response = await page.goto(a.url);
  const status = response ? response.status() : 0;
  if (status !== 200) {
    result = { ok: false, status, body: response ? (await response.text()).slice(0, 300) : '' };
    await context.close();
    throw new Refused();
  }
  // The initial search (newest events) finishes first.
  await page.waitForSelector('#timeline[data-state="ready"]');

  await page.fill('#subject', a.subject);
  await page.click('#search-button');
  const wanted = 'api/subject/' + encodeURIComponent(a.subject);
  await page.waitForFunction((u) => {
    const t = document.getElementById('timeline');
    return t.dataset.url.startsWith(u) && t.dataset.state === 'ready';
  }, wanted);
  const rows = await page.$$eval('#timeline li.event', (lis) => lis.map((li) => ({
    type: li.dataset.type,
    principal: li.dataset.principal,
    decision: li.dataset.decision || null,
    time: li.querySelector('.time')?.textContent ?? '',
    text: li.querySelector('.desc')?.textContent ?? '',
    policies: [...li.querySelectorAll('.policy')].map((p) => p.textContent),
  })));
  const delivered = [...new Set(rows.filter((r) => r.type === 'delivery').map((r) => r.principal))].sort();
  const produced = [...new Set(rows.filter((r) => r.type === 'produce').map((r) => r.principal))].sort();
  const newestFirst = rows.every((r, i) => i === 0 || rows[i - 1].time >= r.time);

  await page.click('#verify-button');
  await page.waitForSelector('#verify[data-state="clean"], #verify[data-state="broken"], #verify[data-state="error"]');
  const verify = await page.$eval('#verify', (d) => ({ state: d.dataset.state, text: d.textContent }));
  const who = await page.textContent('#who');

  if (a.screenshot) {
    await page.screenshot({ path: a.screenshot, fullPage: true });
  }
  const ok = status === 200
    && JSON.stringify(delivered) === JSON.stringify(expected)
    && rows.length > 0
    && newestFirst
    && verify.state === 'clean'
    && errors.length === 0;
  result = { ok, status, who, rows: rows.length, delivered, produced, newestFirst, verify, errors, sample: rows.slice(0, 3) };
  await context.close();
} catch (e) {
  if (!(e instanceof Refused)) throw e;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result && result.ok ? 0 : 1);
