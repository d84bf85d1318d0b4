// Portico's main journeys in a real browser, as a new admin and an agent would take them.
// The steps build on each other (the first creates the organization), so they run in order.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";

import { assertAccessible, launchBrowser, newPerson, recordStep, screenshot } from "../support/browser.mjs";
import { startStack } from "../support/stack.mjs";

const ADMIN = { name: "Ada Admin", email: "ada@acme.test", password: "correct horse battery staple" };
const CONTOSO = "3c7f9e2a-51d4-4b8e-9a06-c2d1e4f5a6b7";
const SIGN_IN_APP = "2f5e8b1c-6a3d-4f7e-9b2a-1c4d7e0f3a6b";
const MAIL_APP = "7d4a1e8b-2c5f-4e9a-b3d6-0f8c1a4e7b2d";

/** A date `days` from today as the date input takes it (YYYY-MM-DD). */
function inDays(days) {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

describe("Portico in a browser", () => {
  let stack;
  let browser;
  let admin;

  before(async () => {
    stack = await startStack();
    browser = await launchBrowser();
    admin = await newPerson(browser, stack.base);
  });

  // What the admin saw at the end of each step, for when one fails: tests/e2e/results/steps/.
  afterEach(async (context) => {
    if (admin && !admin.isClosed()) await recordStep(admin, context.name);
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  /** Signs in at the fake Microsoft's page as `account`, the way Entra asks for it. */
  async function pickMicrosoftAccount(page, account) {
    await page.getByLabel("Email, phone, or Skype").fill(account);
    await page.getByRole("button", { name: "Next" }).click();
  }

  it("first run: the setup link from the log creates the organization and its admin", async () => {
    const [setupUrl] = await stack.portico.waitFor(/http:\/\/\S+\/setup\?token=\S+/);
    await admin.goto(setupUrl);
    await assertAccessible(admin);
    await admin.getByLabel("Organization name").fill("Acme Support");
    await admin.getByLabel("Short name").fill("acme");
    await admin.getByLabel("Your name").fill(ADMIN.name);
    await admin.getByLabel("Email").fill(ADMIN.email);
    await admin.getByLabel("Password").fill(ADMIN.password);
    await admin.getByRole("button", { name: "Create organization" }).click();

    await admin.getByRole("heading", { name: `Welcome, ${ADMIN.name}` }).waitFor();
    assert.equal(new URL(admin.url()).pathname, "/t/acme/");
    await assertAccessible(admin);

    // The link works once.
    await admin.goto(setupUrl);
    await admin.getByRole("heading", { name: "Page not found" }).waitFor();
    await assertAccessible(admin, "error page");
    await admin.goto("/t/acme/");
  });

  it("local sign-in: a wrong password is told, the right one signs in, sign-out signs out", async () => {
    await admin.getByRole("button", { name: "Sign out" }).click();
    await admin.getByRole("heading", { name: "Sign in" }).waitFor();
    await assertAccessible(admin);

    await admin.getByLabel("Email").fill(ADMIN.email);
    await admin.getByLabel("Password").fill("not the password at all");
    await admin.getByRole("button", { name: "Sign in", exact: true }).click();
    await admin.getByRole("alert").filter({ hasText: "Email or password is incorrect" }).waitFor();
    assert.equal(await admin.getByLabel("Email").inputValue(), ADMIN.email, "the email typed is kept");
    assert.equal(await admin.getByLabel("Password").inputValue(), "", "the password is not sent back");

    await admin.getByLabel("Password").fill(ADMIN.password);
    await admin.getByRole("button", { name: "Sign in", exact: true }).click();
    await admin.getByRole("heading", { name: `Welcome, ${ADMIN.name}` }).waitFor();
  });

  it("Sign in with Microsoft: the admin sets it up, an agent of the directory signs in, another directory is refused", async () => {
    await openSection(admin, "Sign in with Microsoft");
    await admin.getByRole("heading", { name: "Sign in with Microsoft", level: 1 }).waitFor();
    await assertAccessible(admin);

    await admin.getByRole("button", { name: "Copy" }).click();
    const copied = await admin.evaluate(() => navigator.clipboard.readText());
    assert.equal(copied, `${stack.base}/auth/microsoft/callback`);

    await admin.getByLabel("Application (client) ID").fill(SIGN_IN_APP);
    await admin.getByLabel("Directory (tenant) ID").fill(CONTOSO);
    await admin.getByLabel("Client secret", { exact: true }).fill("portico-dev-secret");
    await admin.getByLabel("Secret expires on").fill(inDays(180));
    await admin.getByLabel("Enabled: show “Sign in with Microsoft” on the sign-in page").check();
    await admin.getByLabel("Create agents automatically on first sign-in").check();
    await admin.getByRole("button", { name: "Save" }).click();
    await admin.getByRole("status").filter({ hasText: "Settings saved." }).waitFor();
    assert.equal(await admin.getByLabel("Client secret", { exact: true }).inputValue(), "", "the secret is never shown again");
    await admin.getByText(`The stored secret expires on ${inDays(180)} (valid).`).waitFor();
    await screenshot(admin, "microsoft-sign-in-settings");

    const agent = await newPerson(browser, stack.base);
    await agent.goto("/t/acme/login");
    await assertAccessible(agent, "sign-in with Microsoft enabled");
    await screenshot(agent, "sign-in");
    await agent.getByRole("link", { name: "Sign in with Microsoft" }).click();
    await pickMicrosoftAccount(agent, "bob@contoso.onmicrosoft.com");
    await agent.getByRole("heading", { name: "Welcome, Bob Agent" }).waitFor();
    assert.equal(new URL(agent.url()).pathname, "/t/acme/");
    await agent.getByText("You are signed in as an agent.").waitFor();
    await assertAccessible(agent, "agent dashboard");
    await agent.context().close();

    const outsider = await newPerson(browser, stack.base);
    await outsider.goto("/t/acme/login");
    await outsider.getByRole("link", { name: "Sign in with Microsoft" }).click();
    await pickMicrosoftAccount(outsider, "carol@fabrikam.onmicrosoft.com");
    await outsider.getByRole("heading", { name: "Account from another directory" }).waitFor();
    await outsider.getByText("AADSTS50020", { exact: true }).waitFor();
    await assertAccessible(outsider, "Microsoft sign-in problem");
    await outsider.getByRole("link", { name: "Back to sign-in" }).click();
    await outsider.getByRole("heading", { name: "Sign in" }).waitFor();
    await outsider.context().close();
  });

  it("External APIs: a Graph credential is tested for real and its expiry shows on the dashboard", async () => {
    await openSection(admin, "External APIs");
    await assertAccessible(admin);
    await admin.getByRole("link", { name: "Add a Graph credential" }).click();
    await assertAccessible(admin);
    await admin.getByLabel("Name", { exact: true }).fill("Contoso mail");
    await admin.getByLabel("Application (client) ID").fill(MAIL_APP);
    await admin.getByLabel("Directory (tenant) ID").fill("contoso.onmicrosoft.com");
    await admin.getByRole("radio", { name: /^Client secret/ }).check();
    await admin.getByLabel("Client secret", { exact: true }).fill("mail-dev-secret");
    await admin.getByLabel("Secret expires on").fill(inDays(12));
    await admin.getByRole("button", { name: "Save credential" }).click();
    await admin.getByRole("heading", { name: "Contoso mail", level: 1 }).waitFor();
    await assertAccessible(admin);

    await admin.getByRole("button", { name: "Test connection" }).click();
    const test = admin.getByRole("region", { name: "Test connection" });
    await test.getByText("Connected. No mailbox uses this credential yet.").waitFor();
    for (const role of ["Mail.ReadWrite", "Mail.Send"]) {
      await test.getByRole("listitem").filter({ hasText: role }).getByText("Granted").waitFor();
    }
    await screenshot(admin, "external-apis-test");

    const check = admin.getByRole("region", { name: "Check mailbox access" });
    await check.getByLabel("Mailbox address").fill("support@contoso.com");
    await check.getByRole("button", { name: "Check mailbox access" }).click();
    await admin.getByRole("region", { name: "Check mailbox access" }).getByText("Granted: the app can read support@contoso.com.").waitFor();
    await admin.getByRole("region", { name: "Check mailbox access" }).getByLabel("Mailbox address").fill("ceo@contoso.com");
    await admin.getByRole("region", { name: "Check mailbox access" }).getByRole("button", { name: "Check mailbox access" }).click();
    await admin.getByRole("region", { name: "Check mailbox access" }).getByText(/^Denied: Exchange refuses the app access to ceo@contoso.com/).waitFor();

    await openSection(admin, "Dashboard");
    await admin.getByRole("status").filter({ hasText: "The client secret of the Graph credential Contoso mail" }).waitFor();
    await assertAccessible(admin, "dashboard with banners");
    await screenshot(admin, "dashboard");
  });

  it("segments and mailboxes: a Graph mailbox uses the credential from the dropdown; an IMAP mailbox keeps its password; another signs in as the Microsoft 365 app", async () => {
    await openSection(admin, "Segments");
    await assertAccessible(admin);
    await admin.getByLabel("Name", { exact: true }).fill("Support");
    await admin.getByLabel("Description").fill("Customer support queue");
    await admin.getByRole("button", { name: "Add segment" }).click();
    await admin.getByRole("heading", { name: "Support", level: 1 }).waitFor();
    await assertAccessible(admin);

    await admin.getByRole("link", { name: "Add a mailbox" }).click();
    await assertAccessible(admin);
    await admin.getByLabel("Name", { exact: true }).fill("Support inbox");
    await admin.getByLabel("Email address").fill("support@contoso.com");
    await admin.getByLabel("Protocol").selectOption({ label: "Microsoft Graph" });
    const credential = admin.getByLabel("Graph credential");
    const choices = await credential.locator("option").allTextContents();
    assert.ok(choices.some((choice) => choice.startsWith("Contoso mail")), `dropdown offers the credential: ${choices}`);
    await credential.selectOption({ label: choices.find((choice) => choice.startsWith("Contoso mail")) });
    await screenshotWithDropdownOpen(admin, credential, "mailbox-form-graph-credential");
    await admin.getByRole("button", { name: "Add mailbox" }).click();

    await admin.getByRole("heading", { name: "Support inbox", level: 1 }).waitFor();
    await assertAccessible(admin);
    await admin.getByRole("button", { name: "Test connection" }).click();
    await admin.getByRole("status").filter({ hasText: "Granted: Contoso mail can read support@contoso.com." }).waitFor();

    await admin.getByRole("link", { name: "Support", exact: true }).click();
    await admin.getByRole("link", { name: "Add a mailbox" }).click();
    await admin.getByLabel("Name", { exact: true }).fill("Sales IMAP");
    await admin.getByLabel("Email address").fill("sales@acme.test");
    await admin.getByLabel("Protocol").selectOption({ label: "IMAP" });
    await admin.getByLabel("Direction").selectOption({ label: "Incoming" });
    await admin.getByLabel("Server").fill("imap.acme.test");
    await admin.getByLabel("Username").fill("sales@acme.test");
    await admin.getByRole("textbox", { name: "Password" }).fill("imap password 1");
    await admin.getByRole("button", { name: "Add mailbox" }).click();
    await admin.getByRole("heading", { name: "Sales IMAP", level: 1 }).waitFor();
    assert.equal(await admin.getByRole("textbox", { name: "Password" }).inputValue(), "", "the password is never shown again");

    // A queue mailbox read over IMAP by the Azure app itself: no person's consent to lapse.
    await admin.getByRole("link", { name: "Support", exact: true }).click();
    await admin.getByRole("link", { name: "Add a mailbox" }).click();
    await admin.getByLabel("Name", { exact: true }).fill("Queue IMAP");
    await admin.getByLabel("Email address").fill("queue@contoso.com");
    await admin.getByLabel("Protocol").selectOption({ label: "IMAP" });
    await admin.getByLabel("Direction").selectOption({ label: "Incoming" });
    await admin.getByLabel("Server").fill("outlook.office365.com");
    await admin.getByRole("radio", { name: "Microsoft 365 app (from External APIs):" }).check();
    const app = admin.getByLabel("Microsoft 365 app credential");
    const apps = await app.locator("option").allTextContents();
    await app.selectOption({ label: apps.find((choice) => choice.startsWith("Contoso mail")) });
    await assertAccessible(admin, "mailbox form with Microsoft 365 app");
    await screenshot(admin, "mailbox-form-microsoft-365-app");
    await admin.getByRole("button", { name: "Add mailbox" }).click();
    await admin.getByRole("heading", { name: "Queue IMAP", level: 1 }).waitFor();
    await admin.getByText("outlook.office365.com:993 · Microsoft 365 app Contoso mail").waitFor();
    assert.equal(await admin.getByRole("radio", { name: "Microsoft 365 app (from External APIs):" }).isChecked(), true);
    assert.equal(await admin.getByLabel("Username").inputValue(), "queue@contoso.com", "the app signs in as the mailbox");

    await admin.getByRole("link", { name: "Support", exact: true }).click();
    const rows = admin.getByRole("table").getByRole("row");
    await rows.filter({ hasText: "Support inbox" }).filter({ hasText: "Microsoft Graph" }).waitFor();
    await rows.filter({ hasText: "Sales IMAP" }).filter({ hasText: "IMAP" }).waitFor();
    await rows.filter({ hasText: "Queue IMAP" }).filter({ hasText: "Microsoft 365 app Contoso mail" }).waitFor();
    await screenshot(admin, "segment-mailboxes");

    // Sales IMAP's server stops answering: after two background checks the admin is told on
    // the dashboard, the segment and the mailbox, with a link to fix it. (The job may check
    // it meanwhile, for real, with words of its own: the journey asserts none of the words.)
    await stack.failBackgroundChecks("sales@acme.test", "Connect failed: connection refused by imap.acme.test:993.");
    const failing = (page) => page.getByRole("status").filter({ hasText: "Sales IMAP" }).filter({ hasText: "Failing since" });
    await openSection(admin, "Dashboard");
    await failing(admin).waitFor();
    await assertAccessible(admin, "dashboard with a failing mailbox");
    await openSection(admin, "Segments");
    await admin.getByRole("link", { name: "Support", exact: true }).click();
    await failing(admin).waitFor();
    await failing(admin).getByRole("link", { name: "Fix the mailbox" }).click();
    await admin.getByRole("heading", { name: "Sales IMAP", level: 1 }).waitFor();
    await failing(admin).waitFor();
    await admin.getByText(/failed \(\d+ in a row\)/).waitFor();
    await assertAccessible(admin, "a failing mailbox");
    await screenshot(admin, "mailbox-failing");
  });

  it("OAuth connections: Authenticate goes to Microsoft and comes back through /oauth/callback", async () => {
    await openSection(admin, "OAuth connections");
    await assertAccessible(admin);
    await admin.getByRole("link", { name: "Add a connection" }).click();
    await assertAccessible(admin);
    await admin.getByLabel("Name", { exact: true }).fill("Support IMAP sign-in");
    await admin.getByLabel("Application (client) ID").fill(SIGN_IN_APP);
    await admin.getByLabel("Directory (tenant) ID").fill(CONTOSO);
    await admin.getByLabel("Purpose").selectOption({ index: 0 });
    await admin.getByLabel("Client secret").fill("portico-dev-secret");
    await admin.getByLabel("Secret expires on").fill(inDays(20));
    await admin.getByRole("button", { name: "Save connection" }).click();
    await admin.getByRole("heading", { name: "Support IMAP sign-in", level: 1 }).waitFor();
    await assertAccessible(admin);

    await admin.getByRole("button", { name: "Authenticate" }).click();
    await pickMicrosoftAccount(admin, "alice@contoso.com");
    await admin.getByText("Authenticated as alice@contoso.com").first().waitFor();
    assert.equal(new URL(admin.url()).pathname.startsWith("/t/acme/oauth-connections/"), true);
    await openSection(admin, "OAuth connections");
    await admin.getByRole("row").filter({ hasText: "Support IMAP sign-in" }).getByText("Authenticated", { exact: true }).waitFor();
    await screenshot(admin, "oauth-connections");

    // Every kind of client secret, listed by the day it ends, with the OAuth connection.
    await openSection(admin, "Expiring");
    const dates = admin.getByRole("region", { name: "Expiry dates" });
    const secretRow = (name) => dates.getByRole("row").filter({ hasText: "Client secret" }).filter({ hasText: name });
    await secretRow("Sign in with Microsoft").filter({ hasText: inDays(180) }).waitFor();
    await secretRow("Contoso mail").filter({ hasText: inDays(12) }).getByText("Expires in 12 days").waitFor();
    await secretRow("Support IMAP sign-in").filter({ hasText: inDays(20) }).getByText("Expires in 20 days").waitFor();
    await dates.getByRole("row").filter({ hasText: "OAuth connection" }).filter({ hasText: "Support IMAP sign-in" }).waitFor();
    await assertAccessible(admin, "Expiring with every kind of secret");
    await screenshot(admin, "expiring");
  });

  it("keyboard only: sign-in and a settings form work with Tab and Enter alone", async () => {
    const person = await newPerson(browser, stack.base);
    await person.goto("/t/acme/login");
    // The email field has focus on arrival: the browser gives it once the page has
    // rendered, which may come just after the load event.
    await person.waitForFunction(() => document.activeElement?.getAttribute("name") === "email");
    await person.keyboard.type(ADMIN.email);
    await person.keyboard.press("Tab");
    await person.keyboard.type(ADMIN.password);
    await person.keyboard.press("Enter");
    await person.getByRole("heading", { name: `Welcome, ${ADMIN.name}` }).waitFor();

    await person.goto("/t/acme/segments");
    await tabTo(person, "Name");
    await person.keyboard.type("Billing");
    await person.keyboard.press("Tab");
    await person.keyboard.type("Invoices and refunds");
    await person.keyboard.press("Enter");
    await person.getByRole("heading", { name: "Billing", level: 1 }).waitFor();
    await person.context().close();
  });
});

/** Follows the main navigation's link to a section. */
async function openSection(page, name) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true }).click();
}

/** Presses Tab until the field labelled `label` has focus, failing if it is never reached. */
async function tabTo(page, label) {
  for (let presses = 0; presses < 40; presses++) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => {
      const element = document.activeElement;
      return element?.labels?.[0]?.textContent.trim() ?? null;
    });
    if (focused === label) return;
  }
  assert.fail(`Tab never reached the field "${label}"`);
}

/**
 * Headless Chromium does not paint a native <select>'s popup, so for the picture the list is
 * shown in place, as wide as a popup would be, then put back.
 */
async function screenshotWithDropdownOpen(page, select, name) {
  await select.evaluate((element) => {
    element.size = element.options.length;
    element.style.maxWidth = "none";
    element.style.width = "auto";
  });
  await screenshot(page, name);
  await select.evaluate((element) => {
    element.removeAttribute("size");
    element.removeAttribute("style");
  });
}
