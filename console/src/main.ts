// The Offload console: sign in, then one page per hash route (#/jobs, #/jobs/ID, ...).
import { api } from "./api";
import { devUsers, finishCognitoSignIn, signOutUrl, startCognitoSignIn, useToken, type Config, type DevUser, type Session } from "./auth";
import { h, notice, replace } from "./dom";
import { adminPage, deadLettersPage, inboxPage, jobPage, jobsPage, newJobPage, uploadPage } from "./pages";

const root = document.getElementById("app") as HTMLElement;
let config: Config = { auth: "token" };
let session: Session | null = null;
let users: DevUser[] = [];
let generation = 0; // bumps on every navigation: a page's long-poll stops when it changes

function nav(): HTMLElement {
  const links: [string, string][] = [["#/jobs", "Jobs"], ["#/new", "New job"], ["#/upload", "Upload"], ["#/dead-letters", "Dead letters"]];
  if (session?.roles.includes("admin")) links.push(["#/admin", "Operations"]);
  if (config.auth === "dev") links.push(["#/inbox", "Inbox"]);
  links.push(["/swagger", "API docs"]);
  return h("nav", { class: "main" }, links.map(([href, text]) => h("a", { href }, text)));
}

function who(): HTMLElement {
  if (config.auth === "dev") {
    const select = h("select", { id: "user-switcher", "aria-label": "signed in as", onchange: (e: Event) => {
      signInAs((e.target as HTMLSelectElement).value);
    } }, users.map((u) => h("option", { value: u.sub, selected: u.sub === session?.sub }, `${u.name} (${u.sub})`)));
    return h("div", { class: "who" }, "Signed in as ", select);
  }
  const out = signOutUrl(config);
  return h("div", { class: "who" }, `Signed in as ${session?.name ?? ""} `,
    out ? h("a", { href: out }, "Sign out") : h("button", { onclick: () => { api.token = null; session = null; void start(); } }, "Sign out"));
}

function signInAs(sub: string): void {
  const user = users.find((u) => u.sub === sub);
  if (!user) return;
  api.token = user.token;
  session = { sub: user.sub, name: user.name, roles: user.roles };
  layout();
  location.hash = "#/jobs";
  void route();
}

function layout(): void {
  replace(root, h("header", {}, h("a", { href: "#/jobs", class: "brand" }, "Offload"), nav(), who()), h("main", { id: "view" }));
}

async function route(): Promise<void> {
  const mine = ++generation;
  const alive = () => mine === generation;
  const view = document.getElementById("view") as HTMLElement;
  const [path = "", search = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(search);
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "jobs" && parts[1]) return jobPage(view, decodeURIComponent(parts[1]), alive);
  if (parts[0] === "new") return newJobPage(view, params);
  if (parts[0] === "upload") return uploadPage(view, alive);
  if (parts[0] === "dead-letters") return deadLettersPage(view);
  if (parts[0] === "admin") return adminPage(view);
  if (parts[0] === "inbox" && config.mail_url) return inboxPage(view, config.mail_url);
  return jobsPage(view, params);
}

function tokenForm(): void {
  const input = h("input", { id: "token", type: "password", size: 60, placeholder: "a bearer token (JWT)" }) as HTMLInputElement;
  const form = h("form", { class: "signin" }, h("h1", {}, "Sign in"), h("p", {}, "Paste a token from your identity provider."), input, h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (e) => { e.preventDefault(); session = useToken(input.value.trim()); layout(); void route(); });
  replace(root, form);
}

async function start(): Promise<void> {
  try {
    config = await fetch("/console/config.json").then((r) => r.json()) as Config;
    if (config.auth === "dev") {
      users = await devUsers(config);
      if (users[0]) signInAs(users[0].sub);
      return;
    }
    if (config.auth === "cognito") {
      session = await finishCognitoSignIn(config);
      if (!session) {
        replace(root, h("div", { class: "signin" }, h("h1", {}, "Offload"),
          h("button", { id: "sign-in", onclick: () => void startCognitoSignIn(config) }, "Sign in")));
        return;
      }
      layout();
      await route();
      return;
    }
    tokenForm();
  } catch (err) {
    replace(root, notice((err as Error).message, "error"));
  }
}

window.addEventListener("hashchange", () => { if (session) void route(); });
void start();
