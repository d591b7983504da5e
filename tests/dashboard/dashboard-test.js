// SPDX-License-Identifier: LGPL-2.1-or-later
// Loads the gateway's dashboard in headless Chromium and checks what it
// shows against what the test expects. Prints TAP lines; exits non-zero
// when a check fails.
//
// usage: node dashboard-test.js URL TOKEN SCREENSHOT EXPECT.json
//   EXPECT.json: {"devices": {"NAME": "VERSION", ...}, "campaign": ID,
//                 "groups": ["group=a", ...]}
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");

const [url, token, shot, expectFile] = process.argv.slice(2);
const want = JSON.parse(fs.readFileSync(expectFile, "utf8"));
let n = 0, failed = 0;
function check(name, ok, diag) {
  n++;
  console.log((ok ? "ok " : "not ok ") + n + " - " + name);
  if (!ok) { failed++; if (diag) console.log("# " + String(diag).replace(/\n/g, "\n# ")); }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(url);
    check("the dashboard asks for the token first", await page.isVisible("#loginform"));

    // a wrong token: the API refuses, the page says so and asks again
    await page.fill("#token", "wrong-token-wrong-token");
    await page.click("#loginform button");
    await page.waitForFunction(() => !document.getElementById("login").hidden &&
      document.getElementById("loginerr").textContent.includes("refused"), null, { timeout: 10000 });
    check("a wrong token is refused and the page asks again", true);

    await page.fill("#token", token);
    await page.click("#loginform button");
    const names = Object.keys(want.devices);
    try {
      await page.waitForFunction((k) => document.querySelectorAll("tr.device").length === k, names.length, { timeout: 20000 });
      check("it lists " + names.length + " devices", true);
    } catch (e) {
      check("it lists " + names.length + " devices", false, await page.textContent("#groups"));
    }
    const rows = await page.$$eval("tr.device", (trs) => trs.map((tr) => [tr.cells[0].textContent, tr.querySelector(".version").textContent]));
    const got = Object.fromEntries(rows);
    for (const name of names)
      check("device " + name + " shows version " + want.devices[name], got[name] === want.devices[name], "got " + got[name]);
    const heads = await page.$$eval("#groups h3", (hs) => hs.map((h) => h.textContent));
    for (const g of want.groups || [])
      check("the devices are grouped by tag: " + g, heads.some((h) => h.startsWith(g + " ")), heads.join(", "));
    try {
      await page.waitForSelector(`.campaign[data-id="${want.campaign}"] .phase[data-phase="canary"]`, { timeout: 15000 });
      check("the campaign shows its canary phase", true);
    } catch (e) {
      check("the campaign shows its canary phase", false, await page.textContent("#campaigns"));
    }
    const phase = await page.textContent(`.campaign[data-id="${want.campaign}"] .phase[data-phase="canary"]`).catch(() => "");
    check("... with its progress (done of total)", /^canary: \d+\/1 done/.test(phase), phase);
    const traffic = await page.textContent("#traffic");
    check("swarm traffic names seed and peer bytes", traffic.includes("from the gateway") && traffic.includes("from peers"), traffic);
    check("no script errors", errors.length === 0, errors.join("\n"));
    await page.screenshot({ path: shot, fullPage: true });
    check("screenshot saved to " + shot, fs.statSync(shot).size > 10000);
  } finally {
    await browser.close();
  }
  console.log("1.." + n);
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.log("not ok - " + e.message.split("\n")[0]); console.log("1.." + (n + 1)); process.exit(1); });
