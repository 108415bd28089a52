// Signing in: the local stack's users, Cognito's hosted UI (authorization code + PKCE), or a
// pasted token. The token lives in memory only: a reload signs in again.
import { api } from "./api";

export interface DevUser {
  sub: string;
  name: string;
  email: string;
  token: string;
  roles: string[];
}

export interface Config {
  auth: "dev" | "cognito" | "token";
  users_url?: string;
  mail_url?: string;
  authorize_url?: string;
  token_url?: string;
  logout_url?: string;
  client_id?: string;
  scopes?: string;
}

export interface Session {
  sub: string;
  name: string;
  roles: string[];
}

const PKCE_KEY = "offload.pkce"; // only the verifier and state, only across the redirect

export function claimsOf(token: string): Record<string, unknown> {
  try {
    const part = token.split(".")[1] ?? "";
    return JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/"))) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function redirectUri(): string {
  return `${location.origin}/console`;
}

export async function startCognitoSignIn(config: Config): Promise<void> {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state }));
  const url = new URL(config.authorize_url ?? "");
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id ?? "",
    redirect_uri: redirectUri(),
    scope: config.scopes ?? "openid",
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
  }).toString();
  location.assign(url.toString());
}

// After the hosted UI redirects back with ?code=...: exchange it for tokens.
export async function finishCognitoSignIn(config: Config): Promise<Session | null> {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  if (!code) return null;
  const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) ?? "{}") as { verifier?: string; state?: string };
  sessionStorage.removeItem(PKCE_KEY);
  history.replaceState(null, "", "/console");
  if (!saved.verifier || saved.state !== params.get("state")) throw new Error("sign-in state does not match: try again");
  const response = await fetch(config.token_url ?? "", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      client_id: config.client_id ?? "",
      code,
      redirect_uri: redirectUri(),
      code_verifier: saved.verifier,
    }),
  });
  if (!response.ok) throw new Error(`sign-in failed: ${response.status}`);
  // The ID token: it carries the e-mail and name claims the worker creates the user from.
  const tokens = (await response.json()) as { id_token: string };
  return useToken(tokens.id_token);
}

export function useToken(token: string): Session {
  api.token = token;
  const claims = claimsOf(token);
  const groups = claims["cognito:groups"];
  return {
    sub: String(claims.sub ?? "you"),
    name: String(claims.name ?? claims.email ?? claims.sub ?? "you"),
    roles: Array.isArray(groups) ? groups.map(String) : [],
  };
}

export function signOutUrl(config: Config): string | null {
  if (config.auth !== "cognito" || !config.logout_url) return null;
  const url = new URL(config.logout_url);
  url.search = new URLSearchParams({ client_id: config.client_id ?? "", logout_uri: redirectUri() }).toString();
  return url.toString();
}

export async function devUsers(config: Config): Promise<DevUser[]> {
  const response = await fetch(config.users_url ?? "/_dev/users");
  if (!response.ok) throw new Error(`cannot list the dev stack's users: ${response.status}`);
  return (await response.json()) as DevUser[];
}
