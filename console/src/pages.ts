// The console's pages. Each renders into the view element and fetches only the caller's data.
import { api, ApiError, query, type DeadLetter, type Download, type JobSummary, type JobView, type Step } from "./api";
import { badge, h, notice, pretty, replace, when } from "./dom";

export const FINISHED = new Set(["done", "failed", "aborted", "expired"]);
const STATUSES = ["", "queued", "scheduled", "running", "done", "failed", "aborted"];

function errorText(error: JobSummary["error"]): string {
  if (!error) return "";
  return typeof error === "string" ? error : `${error.type}: ${error.message}`;
}

function failure(view: HTMLElement, err: unknown): void {
  replace(view, notice(err instanceof Error ? err.message : String(err), "error"));
}

// --- jobs ---------------------------------------------------------------------------------

export async function jobsPage(view: HTMLElement, params: URLSearchParams): Promise<void> {
  const status = params.get("status") ?? "";
  const name = params.get("name") ?? "";
  const after = params.get("created_after") ?? "";
  const before = params.get("created_before") ?? "";
  const cursor = params.get("next") ?? "";
  const form = h("form", { class: "filters", id: "job-filters" },
    h("label", {}, "Status ", h("select", { name: "status" },
      STATUSES.map((s) => h("option", { value: s, selected: s === status }, s || "any")))),
    h("label", {}, "Job ", h("input", { name: "name", value: name, placeholder: "any", size: 18 })),
    h("label", {}, "Created after ", h("input", { name: "created_after", type: "datetime-local", value: after })),
    h("label", {}, "before ", h("input", { name: "created_before", type: "datetime-local", value: before })),
    h("button", { type: "submit" }, "Filter")) as HTMLFormElement;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const [k, v] of data) if (v) next.set(k, String(v));
    location.hash = `#/jobs?${next}`;
  });
  const table = h("div", { class: "table" }, "Loading…");
  replace(view, h("h1", {}, "Jobs"), form, table);
  try {
    const iso = (local: string) => (local ? new Date(local).toISOString() : undefined);
    const page = await api.get<{ items: JobSummary[]; next: string | null }>(
      `/jobs${query({ status, name, created_after: iso(after), created_before: iso(before), limit: 20, next: cursor })}`);
    const rows = page.items.map((job) =>
      h("tr", { "data-job": job.id },
        h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "mono" }, job.id.slice(0, 12))),
        h("td", {}, job.name), h("td", {}, badge(job.status)), h("td", { class: "num" }, job.tries),
        h("td", {}, when(job.created_at ?? job.enqueued_at)), h("td", {}, when(job.finished_at)),
        h("td", { class: "error-cell" }, errorText(job.error))));
    const more = new URLSearchParams(params);
    if (page.next) more.set("next", page.next);
    replace(table,
      page.items.length === 0 ? notice("No jobs match.") : h("table", { id: "jobs-table" },
        h("thead", {}, h("tr", {}, ["id", "job", "status", "tries", "created", "finished", "error"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows)),
      h("nav", { class: "pager" },
        cursor ? h("a", { href: "#/jobs", class: "button" }, "First page") : null,
        page.next ? h("a", { href: `#/jobs?${more}`, class: "button", id: "next-page" }, "Next page") : null));
  } catch (err) {
    failure(table, err);
  }
}

// --- one job ----------------------------------------------------------------------------

function progressBar(job: JobView): HTMLElement | null {
  if (!job.progress) return null;
  const pct = Math.round(job.progress.fraction * 100);
  return h("div", { class: "progress", id: "progress" },
    h("progress", { max: 100, value: pct }), ` ${pct}% ${job.progress.message ?? ""}`);
}

function downloads(items: Download[] | undefined): HTMLElement | null {
  if (!items || items.length === 0) return null;
  return h("section", { id: "downloads" }, h("h2", {}, "Downloads"),
    h("ul", { class: "downloads" }, items.map((d) =>
      h("li", { "data-download": d.name },
        d.content_type.startsWith("image/") ? h("img", { src: d.url, alt: d.name, class: "preview" }) : null,
        h("a", { href: d.url, download: d.name }, d.name), ` ${d.content_type}, ${d.bytes} bytes, link expires ${when(d.expires_at)}`))));
}

function steps(job: JobView): HTMLElement | null {
  if (!job.steps || job.steps.length === 0) return null;
  const list = job.steps.map((s): Step => (typeof s === "string" ? { name: "", job_id: s, status: "", tries: 0 } : s));
  return h("section", { id: "steps" }, h("h2", {}, "Pipeline steps"),
    h("table", {}, h("tbody", {}, list.map((s) =>
      h("tr", {}, h("td", {}, s.name), h("td", {}, h("a", { href: `#/jobs/${s.job_id}`, class: "mono" }, s.job_id.slice(0, 12))),
        h("td", {}, s.status ? badge(s.status) : ""), h("td", {}, s.tries ? `${s.tries} tries` : ""), h("td", { class: "error-cell" }, s.error ?? ""))))));
}

function actions(job: JobView, rerender: () => void): HTMLElement {
  const out = h("div", { class: "actions" });
  const say = (text: string, kind: "error" | "info" = "info") => out.append(notice(text, kind));
  if (!FINISHED.has(job.status)) {
    out.append(h("button", { id: "abort", onclick: async () => {
      try { await api.call("DELETE", `/jobs/${job.id}`); say("Abort requested."); rerender(); } catch (err) { say(String((err as Error).message), "error"); }
    } }, "Abort"));
  }
  if (job.status === "failed") {
    out.append(h("button", { id: "retry", onclick: async () => {
      try {
        const again = await api.call<{ id: string }>("POST", `/jobs/${job.id}/retry`);
        location.hash = `#/jobs/${again.id}`;
      } catch (err) { say((err as Error).message, "error"); }
    } }, "Retry"));
  }
  const editor = h("textarea", { id: "replay-input", rows: 6, cols: 60, spellcheck: false }) as HTMLTextAreaElement;
  editor.value = pretty(job.input ?? {});
  const replay = h("details", { class: "replay" }, h("summary", {}, "Replay with an edited input"), editor,
    h("button", { id: "replay", onclick: async () => {
      let body: unknown;
      try { body = JSON.parse(editor.value); } catch { say("The input is not valid JSON.", "error"); return; }
      try {
        const made = await api.call<{ id: string }>("POST", `/jobs/${job.name}${query({ replay_of: job.id })}`, body);
        location.hash = `#/jobs/${made.id}`;
      } catch (err) { say((err as Error).message, "error"); }
    } }, "Enqueue the replay"));
  out.append(replay);
  return out;
}

export async function jobPage(view: HTMLElement, id: string, alive: () => boolean): Promise<void> {
  replace(view, notice("Loading…"));
  let job: JobView;
  try {
    job = await api.get<JobView>(`/jobs/${encodeURIComponent(id)}`);
  } catch (err) {
    failure(view, err);
    return;
  }
  for (;;) {
    render(view, job, () => void jobPage(view, id, alive));
    if (FINISHED.has(job.status) || !alive()) return;
    try {
      job = await api.get<JobView>(`/jobs/${encodeURIComponent(id)}${query({ wait: 20, wait_for: "progress" })}`);
    } catch (err) {
      if (!alive()) return;
      failure(view, err);
      return;
    }
    if (!alive()) return;
  }
}

function render(view: HTMLElement, job: JobView, rerender: () => void): void {
  const timeline = [["enqueued", job.enqueued_at ?? job.created_at], ["scheduled for", job.scheduled_for],
    ["started", job.started_at], ["finished", job.finished_at]] as const;
  replace(view,
    h("h1", {}, job.name, " ", badge(job.status)),
    h("p", { class: "mono" }, job.id, job.replay_of ? h("span", {}, " — replay of ", h("a", { href: `#/jobs/${job.replay_of}` }, job.replay_of.slice(0, 12))) : null),
    progressBar(job),
    h("dl", { class: "timeline" }, timeline.filter(([, t]) => t).flatMap(([k, t]) => [h("dt", {}, k), h("dd", {}, when(t))])),
    h("p", {}, `Tries: ${job.tries}`),
    job.error ? h("p", { class: "notice error", id: "job-error" }, errorText(job.error)) : null,
    steps(job),
    downloads(job.downloads),
    job.input ? h("section", {}, h("h2", {}, "Input"), h("pre", {}, pretty(job.input))) : null,
    actions(job, rerender),
    h("details", { id: "raw" }, h("summary", {}, "Raw JSON"), h("pre", {}, pretty(job))));
}

// --- dead letters -------------------------------------------------------------------------

export async function deadLettersPage(view: HTMLElement): Promise<void> {
  replace(view, h("h1", {}, "Dead letters"), notice("Loading…"));
  let letters: DeadLetter[];
  try {
    letters = (await api.get<{ items: DeadLetter[] }>("/dead-letters")).items;
  } catch (err) {
    failure(view, err);
    return;
  }
  const status = h("div", { id: "retry-status" });
  const boxes = letters.map((d) => h("input", { type: "checkbox", value: d.id, "aria-label": `select ${d.id}` }) as HTMLInputElement);
  const retry = h("button", { id: "retry-selected", onclick: async () => {
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    replace(status, notice(`Retrying ${chosen.length}…`));
    const results = await Promise.allSettled(chosen.map((id) => api.call<{ id: string }>("POST", `/jobs/${id}/retry`)));
    replace(status, h("ul", {}, results.map((r, i) => h("li", {},
      r.status === "fulfilled" ? h("span", {}, `${chosen[i]!.slice(0, 12)} → `, h("a", { href: `#/jobs/${r.value.id}` }, r.value.id.slice(0, 12)))
        : `${chosen[i]!.slice(0, 12)}: ${(r.reason as Error).message}`))));
  } }, "Retry selected");
  replace(view, h("h1", {}, "Dead letters"),
    letters.length === 0 ? notice("No dead letters.") : [
      h("table", { id: "dead-letters" }, h("thead", {}, h("tr", {}, ["", "id", "job", "error", "tries", "failed"].map((t) => h("th", {}, t)))),
        h("tbody", {}, letters.map((d, i) => h("tr", { "data-job": d.id }, h("td", {}, boxes[i]),
          h("td", {}, h("a", { href: `#/jobs/${d.id}`, class: "mono" }, d.id.slice(0, 12))), h("td", {}, d.name),
          h("td", { class: "error-cell" }, `${d.error_type}: ${d.error}`), h("td", { class: "num" }, d.tries), h("td", {}, when(d.failed_at)))))),
      retry, status]);
}

// --- new job (a form from the OpenAPI schema) -------------------------------------------------

interface Schema {
  title?: string;
  type?: string;
  format?: string;
  enum?: unknown[];
  properties?: Record<string, Schema>;
  required?: string[];
  description?: string;
  minimum?: number;
  maximum?: number;
  default?: unknown;
  anyOf?: Schema[];
  $ref?: string;
}

function resolve(schema: Schema, doc: { components?: { schemas?: Record<string, Schema> } }): Schema {
  const ref = schema.$ref?.split("/").pop();
  return ref ? doc.components?.schemas?.[ref] ?? schema : schema;
}

function field(name: string, schema: Schema, required: boolean): HTMLElement {
  const kind = schema.anyOf?.find((s) => s.type !== "null") ?? schema;
  let input: HTMLElement;
  if (kind.enum) input = h("select", { name }, kind.enum.map((v) => h("option", { value: String(v) }, String(v))));
  else if (kind.type === "boolean") input = h("input", { name, type: "checkbox" });
  else if (kind.type === "integer" || kind.type === "number")
    input = h("input", { name, type: "number", step: kind.type === "integer" ? 1 : "any", min: kind.minimum, max: kind.maximum, required });
  else if (kind.type === "object" || kind.type === "array") input = h("textarea", { name, rows: 3, "data-json": true, required });
  else input = h("input", { name, required, type: kind.format === "date" ? "date" : kind.format === "uri" ? "url" : "text",
    placeholder: kind.format === "date" ? "YYYY-MM-DD" : "" });
  if (schema.default !== undefined && schema.default !== null && "value" in input) (input as HTMLInputElement).value = String(schema.default);
  return h("label", { class: "field" }, h("span", {}, name, required ? " *" : ""), input,
    schema.description ? h("small", {}, schema.description) : null);
}

export async function newJobPage(view: HTMLElement, params: URLSearchParams): Promise<void> {
  replace(view, h("h1", {}, "New job"), notice("Loading…"));
  const doc = await fetch("/openapi.json").then((r) => r.json()) as { components?: { schemas?: Record<string, Schema> } };
  const inputs = (doc.components?.schemas?.JobCreate?.anyOf ?? []).map((s) => resolve(s, doc));
  const chosen = params.get("job") ?? inputs[0]?.title ?? "";
  const schema = inputs.find((s) => s.title === chosen);
  const picker = h("select", { id: "job-name", onchange: (e: Event) => { location.hash = `#/new?job=${(e.target as HTMLSelectElement).value}`; } },
    inputs.map((s) => h("option", { value: s.title ?? "", selected: s.title === chosen }, s.title ?? "")));
  const out = h("div", { id: "new-job-status" });
  const form = h("form", { id: "new-job" },
    Object.entries(schema?.properties ?? {}).map(([name, s]) => field(name, s, (schema?.required ?? []).includes(name))),
    h("button", { type: "submit" }, "Enqueue"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body: Record<string, unknown> = {};
    for (const el of Array.from(form.querySelectorAll<HTMLInputElement>("[name]"))) {
      if (el.type === "checkbox") body[el.name] = el.checked;
      else if (el.value === "") continue;
      else if (el.type === "number") body[el.name] = Number(el.value);
      else if (el.dataset.json !== undefined) body[el.name] = JSON.parse(el.value);
      else body[el.name] = el.value;
    }
    try {
      const made = await api.call<{ id: string }>("POST", `/jobs/${chosen}`, body);
      location.hash = `#/jobs/${made.id}`;
    } catch (err) {
      replace(out, notice(err instanceof ApiError ? err.message : String(err), "error"));
    }
  });
  replace(view, h("h1", {}, "New job"), h("label", {}, "Job ", picker),
    schema?.description ? h("p", {}, schema.description) : null, form, out);
}

// --- upload -----------------------------------------------------------------------------------

export function uploadPage(view: HTMLElement, alive: () => boolean): void {
  const stages = h("ol", { id: "upload-stages" });
  const result = h("div", { id: "upload-result" });
  const input = h("input", { type: "file", id: "upload-file", accept: "image/*" }) as HTMLInputElement;
  const zone = h("div", { class: "dropzone", id: "dropzone" }, "Drop an image here, or ", input);
  const stage = (text: string) => stages.append(h("li", { "data-stage": text }, text));
  const send = async (file: File) => {
    replace(stages);
    replace(result);
    try {
      const up = await api.call<{ job_id: string; url: string; fields: Record<string, string> }>("POST", "/uploads",
        { filename: file.name, content_type: file.type || "application/octet-stream", size: file.size });
      const form = new FormData();
      for (const [k, v] of Object.entries(up.fields)) form.append(k, v);
      form.append("file", file);
      const posted = await fetch(up.url, { method: "POST", body: form });
      if (!posted.ok) throw new Error(`the upload to S3 failed: ${posted.status}`);
      stage("uploaded");
      let job: JobView | null = null;
      let seen = "";
      while (alive()) {
        try {
          job = await api.get<JobView>(`/jobs/${up.job_id}${query({ wait: 20, wait_for: "progress" })}`);
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) { await new Promise((r) => setTimeout(r, 500)); continue; }
          throw err;
        }
        const label = job.status === "running" || job.status === "queued" ? "processing" : job.status;
        if (label !== seen) { stage(label); seen = label; }
        if (FINISHED.has(job.status)) break;
      }
      if (job && job.status === "done") {
        replace(result, h("a", { href: `#/jobs/${job.id}` }, "Open the job"), downloads(job.downloads));
      } else if (job) {
        replace(result, notice(errorText(job.error) || job.status, "error"));
      }
    } catch (err) {
      replace(result, notice((err as Error).message, "error"));
    }
  };
  input.addEventListener("change", () => { if (input.files?.[0]) void send(input.files[0]); });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = (e as DragEvent).dataTransfer?.files?.[0];
    if (file) void send(file);
  });
  replace(view, h("h1", {}, "Upload an image"), zone, stages, result);
}

// --- admin and inbox -------------------------------------------------------------------------

interface Overview {
  queues: { priority: string; queued: number }[];
  scheduled: number;
  running: number;
  oldest_waiting_seconds: number;
  workers_alive: number;
  schedules: { name: string; expression: string; next_run: string | null }[];
}

export async function adminPage(view: HTMLElement): Promise<void> {
  replace(view, h("h1", {}, "Operations"), notice("Loading…"));
  try {
    const o = await api.get<Overview>("/admin/overview");
    replace(view, h("h1", {}, "Operations"),
      h("p", { id: "workers-alive" }, `Workers alive: ${o.workers_alive}`),
      h("p", {}, `Running: ${o.running} · scheduled: ${o.scheduled} · oldest waiting: ${o.oldest_waiting_seconds} s`),
      h("h2", {}, "Waiting per priority"), h("table", { id: "queue-depth" }, h("tbody", {}, o.queues.map((q) =>
        h("tr", {}, h("td", {}, q.priority), h("td", { class: "num" }, q.queued > 1000 ? "1000+" : q.queued))))),
      h("h2", {}, "Schedules"), h("table", { id: "schedules" },
        h("thead", {}, h("tr", {}, ["schedule", "expression", "next run"].map((t) => h("th", {}, t)))),
        h("tbody", {}, o.schedules.map((s) =>
          h("tr", { "data-schedule": s.name }, h("td", {}, s.name), h("td", { class: "mono" }, s.expression),
            h("td", {}, s.next_run ? when(s.next_run) : "every period from the rule's creation"))))));
  } catch (err) {
    failure(view, err);
  }
}

interface Mail {
  to: string[];
  subject: string;
  text: string;
  sent_at?: string;
}

export async function inboxPage(view: HTMLElement, mailUrl: string): Promise<void> {
  replace(view, h("h1", {}, "Inbox (local)"), notice("Loading…"));
  try {
    const mails = await fetch(mailUrl).then((r) => r.json()) as Mail[];
    replace(view, h("h1", {}, "Inbox (local)"), mails.length === 0 ? notice("No e-mail sent yet.") :
      h("ul", { id: "inbox", class: "inbox" }, mails.map((m) => h("li", {},
        h("strong", {}, m.subject), ` to ${m.to.join(", ")} `, h("small", {}, when(m.sent_at)), h("pre", {}, m.text)))));
  } catch (err) {
    failure(view, err);
  }
}
