// The Offload API, called with the signed-in caller's bearer token (held in memory only).
export class ApiError extends Error {
  constructor(public status: number, public body: unknown) {
    super(ApiError.describe(status, body));
  }

  static describe(status: number, body: unknown): string {
    const err = (body as { error?: { message?: string; details?: unknown } } | null)?.error;
    if (err?.message) {
      const details = Array.isArray(err.details)
        ? err.details.map((d: { loc?: unknown[]; msg?: string }) => `${(d.loc ?? []).join(".")}: ${d.msg ?? ""}`).join("; ")
        : "";
      return `${status}: ${err.message}${details ? ` (${details})` : ""}`;
    }
    const message = (body as { message?: string } | null)?.message;
    return `${status}: ${message ?? "request failed"}`;
  }
}

export interface JobSummary {
  id: string;
  name: string;
  status: string;
  tries: number;
  created_at?: string | null;
  enqueued_at?: string | null;
  started_at?: string | null;
  finished_at?: string | null;
  error?: string | { type: string; message: string } | null;
}

export interface Download {
  name: string;
  url: string;
  expires_at: string;
  content_type: string;
  bytes: number;
}

export interface Step {
  name: string;
  job_id: string;
  status: string;
  tries: number;
  error?: string | null;
}

export interface JobView extends JobSummary {
  scheduled_for?: string | null;
  result?: unknown;
  input?: Record<string, unknown> | null;
  replay_of?: string | null;
  progress?: { fraction: number; message: string; updated_at: string } | null;
  downloads?: Download[];
  steps?: (Step | string)[];
}

export interface DeadLetter {
  id: string;
  name: string;
  payload: Record<string, unknown>;
  error_type: string;
  error: string;
  tries: number;
  failed_at: string;
}

export class Api {
  token: string | null = null;

  async call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const init: RequestInit = { method, headers: { ...headers } };
    if (this.token) (init.headers as Record<string, string>).authorization = `Bearer ${this.token}`;
    if (body !== undefined) {
      (init.headers as Record<string, string>)["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = { message: text.slice(0, 200) };
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed as T;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }
}

export const api = new Api();

export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}
