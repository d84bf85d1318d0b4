// Starts what the journeys run against: the fake Microsoft identity platform and Graph, and
// Portico's release binary on a fresh data directory, each its own process on a free port.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "../../..");
// `run` builds release; PORTICO_E2E_PROFILE=debug reuses a debug build while writing journeys.
const binaries = join(repo, "target", process.env.PORTICO_E2E_PROFILE ?? "release");

/** A port nobody listens on right now. */
async function freePort() {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

/** A child process whose output is kept, so a test can wait for a line and a failure can show it. */
class Process {
  constructor(name, command, args, env) {
    this.name = name;
    this.output = "";
    this.waiters = [];
    this.child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        this.output += chunk;
        this.waiters = this.waiters.filter((waiter) => !waiter());
      });
    }
    this.exited = once(this.child, "exit");
  }

  /** The first match of `pattern` in the output, waiting up to `ms` for it. */
  waitFor(pattern, ms = 15_000) {
    return new Promise((resolvePromise, reject) => {
      const check = () => {
        const match = this.output.match(pattern);
        if (match) {
          clearTimeout(timer);
          resolvePromise(match);
        }
        return Boolean(match);
      };
      const timer = setTimeout(() => {
        reject(new Error(`${this.name} did not print ${pattern} within ${ms} ms. Output:\n${this.output}`));
      }, ms);
      if (!check()) this.waiters.push(check);
      this.exited.then(([code]) => {
        if (!check()) reject(new Error(`${this.name} exited (${code}) before printing ${pattern}:\n${this.output}`));
      });
    });
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * The fake's world for the journeys: the example seed, with the apps' redirect URIs pointing at
 * this run's Portico and nobody signed in, so the fake's sign-in page asks for the account.
 */
async function seedFor(portico) {
  const seed = JSON.parse(await readFile(join(repo, "examples", "fake-microsoft-seed.json"), "utf8"));
  for (const app of seed.apps) {
    app.web_redirect_uris = [`${portico}/auth/microsoft/callback`, `${portico}/oauth/callback`];
  }
  delete seed.sign_in_as;
  return seed;
}

/** Starts the fake Microsoft and Portico; `stop()` ends both and removes the data directory. */
export async function startStack() {
  const dir = await mkdtemp(join(tmpdir(), "portico-e2e-"));
  const started = [];
  const stack = {
    dir,
    async stop() {
      await Promise.all(started.map((process) => process.stop()));
      await rm(dir, { recursive: true, force: true });
    },
    /**
     * Leaves the mailbox of `email` as two failed background checks in a row leave it, an
     * hour apart, the last saying `words`: the checks run once an hour, too seldom for a
     * journey to wait for. tests/it/mail_servers/checks.rs proves the job gets there; the
     * journey shows where an admin is told.
     */
    async failBackgroundChecks(email, words) {
      const sql = `INSERT INTO mailbox_checks (tenant_id, mailbox_id, next_check_at,
          last_checked_at, last_failure_at, last_failure, consecutive_failures, failures_since)
        SELECT tenant_id, id, :now + 3600, :now, :now, :words, 2, :now - 3600
        FROM mailboxes WHERE email = :email
        ON CONFLICT (tenant_id, mailbox_id) DO UPDATE SET last_checked_at = :now,
          last_failure_at = :now, last_failure = :words, consecutive_failures = 2,
          failures_since = :now - 3600, next_check_at = :now + 3600`;
      const script = `import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
args = {"now": int(time.time()), "words": sys.argv[3], "email": sys.argv[2]}
assert db.execute(sys.argv[4], args).rowcount == 1, "no such mailbox"
db.commit()`;
      const child = spawn("python3", ["-c", script, join(dir, "data", "portico.db"), email, words, sql], {
        stdio: ["ignore", "inherit", "inherit"],
      });
      const [code] = await once(child, "exit");
      if (code !== 0) throw new Error(`could not mark ${email} failing (python3 exited ${code})`);
    },
  };
  try {
    const porticoPort = await freePort();
    const base = `http://127.0.0.1:${porticoPort}`;
    const seedFile = join(dir, "fake-microsoft-seed.json");
    stack.seed = await seedFor(base);
    await writeFile(seedFile, JSON.stringify(stack.seed));

    const fake = new Process("fake-microsoft", join(binaries, "examples", "fake-microsoft"), ["--seed", seedFile], {});
    started.push(fake);
    const [, fakeUrl] = await fake.waitFor(/fake Microsoft listening on (\S+)/);

    const portico = new Process("portico", join(binaries, "portico"), [], {
      PORTICO_BIND: `127.0.0.1:${porticoPort}`,
      PORTICO_BASE_URL: base,
      PORTICO_DATA_DIR: join(dir, "data"),
      PORTICO_MICROSOFT_LOGIN_URL: `${fakeUrl}/login`,
      PORTICO_MICROSOFT_GRAPH_URL: `${fakeUrl}/graph`,
      RUST_LOG: "info",
      NO_COLOR: "1",
    });
    started.push(portico);
    await portico.waitFor(/Portico listening on/);
    Object.assign(stack, { base, fakeUrl, portico, fake });
    return stack;
  } catch (error) {
    await stack.stop();
    throw error;
  }
}
