// The projcache web page: plain browser JavaScript, no build step.
// Every list is fetched with the browser's HTTP cache: the server sends ETags
// and "Cache-Control: no-cache", so a reload while nothing changed costs a 304.
"use strict";

const API = "/api/v1/cache";
const POLL_MS = 250;
const RELOAD_MS = 10000;
const state = {
  apiKey: sessionStorage.getItem("projcache-api-key"),
  seq: 0,
  detailSeq: 0,
  deployments: [],
  projects: new Map(), // id -> project, for names instead of ids
};
const SEPARATOR = "\u203a";
const $ = (id) => document.getElementById(id);

class ApiError extends Error {}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.apiKey) headers["X-API-Key"] = state.apiKey;
  const response = await fetch(API + path, { ...options, headers });
  if (response.status === 401) {
    $("api-key-form").hidden = false;
    throw new ApiError("this server needs an API key");
  }
  const body = await response.json();
  if (!response.ok) throw new ApiError(body.message || response.statusText);
  return body;
}

function showError(error) {
  $("error").textContent = error ? `error: ${error.message}` : "";
  $("error").hidden = !error;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function badge(kind, text, title) {
  const node = el("span", `badge ${kind}`, text);
  node.dataset.badge = kind;
  if (title) node.title = title;
  return node;
}

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)}s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 129600) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

// A project-only artifact's key is "@<project id>/<type>/<name>": show the project's name.
function displayKey(key) {
  if (key.startsWith("@")) {
    const slash = key.indexOf("/");
    const project = state.projects.get(key.slice(1, slash));
    if (project) return `${project.name} ${SEPARATOR} ${key.slice(slash + 1)}`;
  }
  return key;
}

// The bookmarkable address of one artifact's detail view.
function artifactHref(key) {
  return `#/artifact/${encodeURIComponent(key)}`;
}

function isStale(project) {
  return project.stale || !project.expires_at || Date.parse(project.expires_at) <= Date.now();
}

async function fetchAll(path) {
  // Pages of 1,000 until the total is reached.
  const items = [];
  for (let offset = 0; ; offset += 1000) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${sep}limit=1000&offset=${offset}`);
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0) return items;
  }
}

async function loadStatus() {
  const status = await api("/status");
  const counts = status.counts;
  const outdated = state.deployments.filter((d) => d.state === "outdated").length;
  let text = `${counts.artifacts} artifacts · ${counts.projects} projects · ` +
    `${counts.deployments} deployments (${outdated} outdated) · refreshed ${ago(status.newest_refresh)}`;
  if (status.errors.length) text += ` · ${status.errors.length} source error(s)`;
  $("summary").textContent = text;
  // The details of every source error, collection errors included, on hover.
  if (status.errors.length) {
    $("summary").title = status.errors.map((e) => `${e.kind} ${e.unit}: ${e.message}`).join("\n");
  } else {
    $("summary").removeAttribute("title");
  }
}

function renderProjects(projects) {
  const list = $("projects");
  list.replaceChildren();
  const select = $("filter-project");
  const chosen = select.value;
  select.replaceChildren(el("option", "", "all projects"));
  select.firstChild.value = "";
  for (const project of projects) {
    const item = el("li");
    item.dataset.project = project.id;
    item.append(el("span", "name", project.name));
    const stale = isStale(project);
    item.append(badge(stale ? "stale" : "fresh", stale ? "stale" : "fresh",
      `refreshed ${ago(project.refreshed_at)}`));
    if (project.errors.length) {
      item.append(badge("errors", `${project.errors.length} error(s)`,
        project.errors.map((e) => e.message).join("\n")));
    }
    for (const name of ["outdated", "modified", "conflict", "missing", "unknown-collection"]) {
      if (project.states[name]) item.append(badge(name, `${project.states[name]} ${name}`));
    }
    item.append(el("div", "key", project.path));
    item.tabIndex = 0;
    item.setAttribute("role", "button");
    const choose = () => {
      select.value = project.id;
      loadArtifacts();
    };
    item.addEventListener("click", choose);
    item.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        choose();
      }
    });
    list.append(item);
    const option = el("option", "", project.name);
    option.value = project.id;
    select.append(option);
  }
  select.value = chosen;
}

// artifact key -> state -> deployment profiles (one per deployment in that state).
function deploymentStates(project) {
  const byKey = new Map();
  for (const d of state.deployments) {
    if (project && d.project !== project) continue;
    if (!byKey.has(d.artifact)) byKey.set(d.artifact, new Map());
    const profiles = byKey.get(d.artifact);
    if (!profiles.has(d.state)) profiles.set(d.state, []);
    profiles.get(d.state).push(d.profile || "claude_code");
  }
  return byKey;
}

function stateBadge(name, profiles) {
  const count = profiles.length;
  // The default profile goes unsaid; any other (codex's .agents/, ...) is named.
  const others = [...new Set(profiles.filter((p) => p !== "claude_code"))];
  const text = (count > 1 ? `${name} ×${count}` : name) + (others.length ? ` (${others.join(", ")})` : "");
  return badge(name, text, `profiles: ${profiles.join(", ")}`);
}

function renderArtifacts(artifacts, total, project, wanted) {
  // `wanted`: a state the server did not filter by (search has no state filter).
  const states = deploymentStates(project);
  const shown = wanted ? artifacts.filter((a) => states.get(a.key)?.has(wanted)) : artifacts;
  const list = $("artifacts");
  list.replaceChildren();
  for (const artifact of shown) {
    const item = el("li");
    item.dataset.key = artifact.key;
    const link = el("a", "name", artifact.name);
    link.href = artifactHref(artifact.key);
    item.append(link, badge("type", artifact.type));
    for (const [name, profiles] of states.get(artifact.key) || []) {
      if (name !== "current") item.append(stateBadge(name, profiles));
    }
    const key = el("div", "key", displayKey(artifact.key));
    key.title = artifact.key;
    item.append(key);
    if (artifact.description) item.append(el("div", "desc", artifact.description));
    list.append(item);
  }
  const more = wanted ? "" : total > shown.length ? ` (showing ${shown.length})` : "";
  $("artifact-count").textContent = `${wanted ? shown.length : total} artifact(s)${more}`;
}

async function loadArtifacts() {
  const seq = ++state.seq;
  const q = $("search").value.trim();
  const params = new URLSearchParams();
  const type = $("filter-type").value;
  const project = $("filter-project").value;
  const wanted = $("filter-state").value;
  if (type) params.set("type", type);
  if (project) params.set("project", project);
  let page;
  try {
    if (q) {
      params.set("q", q);
      params.set("limit", "200");
      page = await api(`/search?${params}`);
    } else {
      if (wanted) params.set("state", wanted); // filtered by the server, over every page
      params.set("limit", "200");
      page = await api(`/artifacts?${params}`);
    }
  } catch (error) {
    if (seq === state.seq) showError(error);
    return;
  }
  if (seq !== state.seq) return; // a newer keystroke already asked again
  showError(null);
  renderArtifacts(page.items, page.total, project, q ? wanted : "");
}

async function loadAll() {
  try {
    const [projects, deployments] = await Promise.all([
      fetchAll("/projects"),
      fetchAll("/deployments"),
    ]);
    state.deployments = deployments;
    state.projects = new Map(projects.map((p) => [p.id, p]));
    renderProjects(projects);
    await Promise.all([loadStatus(), loadArtifacts()]);
    showError(null);
  } catch (error) {
    showError(error);
  }
}

// -- the detail view of one artifact: #/artifact/<key> -----------------------------------

const FIELDS = [
  ["key", "key"], ["type", "type"], ["collection", "collection"], ["title", "title"],
  ["description", "description"], ["version", "version"], ["resolved_version", "resolved version"],
  ["tags", "tags"], ["path", "path"], ["upstream", "upstream"], ["content_hash", "content hash"],
  ["updated_at", "updated"], ["managed", "managed"],
];

function fieldText(artifact, name) {
  const value = artifact[name];
  if (name === "tags") return value && value.length ? value.join(", ") : "";
  if (name === "managed") return value ? "yes" : "no (local to its project)";
  if (name === "collection" && value.startsWith("@")) {
    const project = state.projects.get(value.slice(1));
    return project ? `${project.name} (project-only)` : value;
  }
  return value === null || value === undefined ? "" : String(value);
}

function deployedPath(deployment, project) {
  if (!project) return deployment.artifact_path || "";
  // The profile's folder (.claude/ unless the deployment names another one).
  const root = deployment.profile_root || ".claude";
  return `${project.path}/${root}/${deployment.artifact_path || ""}`;
}

function renderDetail(artifact) {
  $("detail-title").textContent = displayKey(artifact.key);
  const fields = $("detail-fields");
  fields.replaceChildren();
  for (const [name, label] of FIELDS) {
    const text = fieldText(artifact, name);
    if (!text) continue;
    const term = el("dt", "", label);
    const value = el("dd", name === "path" || name === "content_hash" ? "key" : "", text);
    value.dataset.field = name;
    fields.append(term, value);
  }
  const rows = $("detail-deployments").querySelector("tbody");
  rows.replaceChildren();
  for (const d of artifact.deployments) {
    const project = state.projects.get(d.project);
    const row = el("tr");
    row.dataset.project = d.project;
    const state_ = el("td");
    state_.append(stateBadge(d.state, [d.profile || "claude_code"]));
    row.append(
      el("td", "name", project ? project.name : d.project),
      state_,
      el("td", "key", deployedPath(d, project)),
      el("td", "", d.version || ""),
      el("td", "", d.deployed_at ? ago(d.deployed_at) : ""),
    );
    rows.append(row);
  }
  $("detail-deployments").hidden = artifact.deployments.length === 0;
  $("detail-none").hidden = artifact.deployments.length !== 0;
}

async function showDetail(key) {
  const seq = ++state.detailSeq;
  $("lists").hidden = true;
  $("detail-view").hidden = false;
  try {
    const path = key.split("/").map(encodeURIComponent).join("/");
    const artifact = await api(`/artifacts/${path}`);
    if (seq !== state.detailSeq) return;
    showError(null);
    renderDetail(artifact);
  } catch (error) {
    if (seq !== state.detailSeq) return;
    $("detail-title").textContent = displayKey(key);
    $("detail-fields").replaceChildren();
    $("detail-deployments").hidden = true;
    $("detail-none").hidden = true;
    showError(error);
  }
}

function route() {
  const match = location.hash.match(/^#\/artifact\/(.+)$/);
  if (match) {
    let key;
    try {
      key = decodeURIComponent(match[1]);
    } catch {
      key = match[1];
    }
    document.title = `${displayKey(key)} · projcache`;
    return showDetail(key);
  }
  ++state.detailSeq;
  document.title = "projcache";
  $("detail-view").hidden = true;
  $("lists").hidden = false;
  return undefined;
}

async function refresh() {
  const button = $("refresh");
  const bar = $("refresh-progress");
  const label = $("refresh-state");
  button.disabled = true;
  bar.hidden = false;
  bar.removeAttribute("value");
  label.textContent = "refreshing…";
  try {
    let job = await api("/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ full: $("full-refresh").checked }),
    });
    while (job.state === "queued" || job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = await api(`/refresh/${encodeURIComponent(job.id)}`);
      if (job.progress.total) {
        bar.max = job.progress.total;
        bar.value = job.progress.done;
        label.textContent = `refreshing ${job.progress.done}/${job.progress.total}…`;
      }
    }
    if (job.state === "failed") throw new ApiError(job.error.message);
    const r = job.report;
    label.textContent = `refreshed: ${r.sources_checked} sources checked, ` +
      `${r.sources_changed} re-read` + (r.errors.length ? `, ${r.errors.length} error(s)` : "");
    await loadAll();
    if (!$("detail-view").hidden) await route();
  } catch (error) {
    label.textContent = "refresh failed";
    showError(error);
  } finally {
    button.disabled = false;
    bar.hidden = true;
  }
}

function debounce(fn, ms) {
  let timer;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("refresh").addEventListener("click", refresh);
  $("search").addEventListener("input", debounce(loadArtifacts, 120));
  for (const id of ["filter-type", "filter-project", "filter-state"]) {
    $(id).addEventListener("change", loadArtifacts);
  }
  $("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.apiKey = $("api-key").value;
    sessionStorage.setItem("projcache-api-key", state.apiKey);
    $("api-key-form").hidden = true;
    loadAll();
  });
  window.addEventListener("hashchange", route);
  // The projects first (names for the keys), then the view the address asks for.
  loadAll().then(route);
  setInterval(() => {
    if ($("refresh").disabled) return;
    loadAll().then(() => { if (!$("detail-view").hidden) route(); });
  }, RELOAD_MS);
});
