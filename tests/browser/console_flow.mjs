// Drives the threadbox web console in headless Debian Chromium as a user would, and
// prints what the page showed as one JSON object; the pytest side makes the assertions.
// Usage: node console_flow.mjs '<json scenario>'  (see tests/integration/test_console_browser.py)
// Exit code 3 means the browser itself could not start, so the test can skip loudly.
import { chromium } from "playwright-core";

const scenario = JSON.parse(process.argv[2]);
const TURN_TIMEOUT = 240_000; // a cold kernel on a loaded 2-core machine is slow to start

// Without the background-networking flags Chromium keeps dialling Google on this offline machine.
const FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

async function launch() {
  try {
    return await chromium.launch({ executablePath: scenario.chromium, headless: true, args: FLAGS, timeout: 60_000 });
  } catch (err) {
    console.log(JSON.stringify({ launch_error: String(err.message).split("\n")[0] }));
    process.exit(3);
  }
}

async function runTurn(page, mode, text) {
  const before = await page.locator(".turn").count();
  await page.check(`input[name=mode][value=${mode}]`, { force: true });
  await page.fill("#input", text);
  await page.click("#send");
  const turn = page.locator(".turn").nth(before);
  await turn.locator(".turn-foot:not(.is-running)").waitFor({ timeout: TURN_TIMEOUT });
  return turn;
}

async function observeTurn(turn) {
  return turn.evaluate((el) => {
    const texts = (sel) => [...el.querySelectorAll(sel)].map((n) => n.textContent);
    return {
      stdout: texts("pre.stream.stdout").join(""),
      stderr: texts("pre.stream.stderr").join(""),
      status: texts(".status"),
      errors: texts(".error"),
      messages: texts(".message"),
      foot: el.querySelector(".turn-foot").className + " " + el.querySelector(".turn-foot").textContent,
      injected: el.querySelectorAll(".outputs b, .outputs script").length,
      images: [...el.querySelectorAll(".display img")].map((img) => ({ src: img.src, width: img.naturalWidth })),
      frames: [...el.querySelectorAll("iframe.html-output")].map((f) => ({
        sandbox: f.getAttribute("sandbox"),
        text: f.contentDocument?.body?.textContent ?? "",
        height: f.getBoundingClientRect().height,
      })),
      changed: texts(".files-changed a"),
    };
  });
}

async function download(page, locator) {
  const [file] = await Promise.all([page.waitForEvent("download"), locator.click()]);
  const { readFile } = await import("node:fs/promises");
  return { name: file.suggestedFilename(), text: await readFile(await file.path(), "utf8") };
}

// Without a token: the token form and nothing the API holds; a wrong token is refused.
async function signedOut(browser) {
  const page = await browser.newPage();
  try {
    await page.goto(scenario.url);
    await page.locator("#login").waitFor({ state: "visible" });
    await page.locator("#health.ok").waitFor({ timeout: 30_000 });
    const seen = {
      text: await page.locator("body").innerText(),
      layout_hidden: await page.locator("#layout").isHidden(),
      threads: await page.locator("#thread-list li").count(),
    };
    await page.fill("#token-input", "tbx_wrong");
    await page.click("#login-form button[type=submit]");
    seen.wrong_token = await page.locator("#login-error:not([hidden])").textContent({ timeout: 30_000 });
    seen.still_hidden = await page.locator("#layout").isHidden();
    return seen;
  } finally {
    await page.close();
  }
}

async function main() {
  const browser = await launch();
  const result = { origin: new URL(scenario.url).origin };
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 }, acceptDownloads: true });
  const problems = [];
  page.on("console", (msg) => { if (msg.type() === "error") problems.push(`${msg.text()} @ ${msg.location().url}`); });
  page.on("pageerror", (err) => problems.push(String(err)));
  result.problems = problems;
  try {
    result.signed_out = await signedOut(browser);
    // The link `threadbox dev` prints: the token rides in the fragment, once.
    await page.goto(`${scenario.url}/#token=${encodeURIComponent(scenario.token)}`);
    await page.locator("#layout").waitFor({ state: "visible", timeout: 30_000 });
    result.address = page.url();
    result.health = await page.locator("#health.ok").textContent({ timeout: 30_000 });
    await page.fill("#new-thread-name", scenario.thread);
    await page.click("#new-thread button[type=submit]");
    await page.locator("#thread-name", { hasText: scenario.thread }).waitFor();
    result.thread_id = await page.textContent("#thread-id");
    result.listed = await page.locator("#thread-list a.active .name").textContent();
    result.threads = await page.locator("#thread-list .name").allTextContents();

    await page.setInputFiles("#file-input", scenario.upload);
    await page.locator("#file-list a", { hasText: scenario.uploadName }).waitFor({ timeout: 60_000 });
    await page.setInputFiles("#file-input", scenario.badUpload);
    result.upload_error = await page.locator(".upload.failed .upload-status").textContent({ timeout: 60_000 });

    result.code = await observeTurn(await runTurn(page, "code", scenario.code));
    const link = page.locator(".turn .files-changed a", { hasText: scenario.download });
    result.download = await download(page, link.first());
    await page.locator("#file-list a", { hasText: scenario.download }).waitFor();
    result.files_panel = await page.locator("#file-list a").allTextContents();

    result.message = await observeTurn(await runTurn(page, "message", scenario.message));
    result.failing = await observeTurn(await runTurn(page, "code", scenario.failing));
    await page.screenshot({ path: `${scenario.screenshots}/console-end.png` });
    await page.locator(".turn").first().evaluate((el) => el.scrollIntoView({ block: "start" }));
    await page.screenshot({ path: `${scenario.screenshots}/console.png` });
  } catch (err) {
    result.failure = String(err.message);
    await page.screenshot({ path: `${scenario.screenshots}/console-failure.png` }).catch(() => {});
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
}

await main();
