// The admin API, signed in one of two ways: a token kept for this tab only
// (sessionStorage, sent as a bearer header), or a single sign-on session
// (an HttpOnly cookie the browser sends; every write carries the session's
// CSRF token, from GET /api/v1/me, so another site cannot write through it).
// Errors carry the server's code and message, to show where they belong.

const KEY = "vane-console-token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const token = () => sessionStorage.getItem(KEY);
export const signIn = (value) => sessionStorage.setItem(KEY, value);
export const signOut = () => sessionStorage.removeItem(KEY);

// Who is signed in (GET /api/v1/me: who, grants, and csrf for a session).
let me = null;
export const signedIn = () => me;
export const forget = () => { me = null; };

// Asks who is signed in, by token or session; null when nobody is.
export async function whoAmI() {
  try {
    me = await api("GET", "/api/v1/me");
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
    // A token that no longer works (deleted, expired) is dropped.
    signOut();
    me = null;
  }
  return me;
}

const ROLES = ["viewer", "editor", "publisher", "admin"];
const covers = (pattern, id) => pattern.endsWith("*") ? id.startsWith(pattern.slice(0, -1)) : pattern === id;

// The highest role held over config `id`, or anywhere when `id` is absent.
export function roleOver(id) {
  const held = (me?.grants ?? [])
    .filter((g) => id === undefined || g.configs.some((p) => covers(p, id)))
    .map((g) => ROLES.indexOf(g.role));
  return held.length ? ROLES[Math.max(...held)] : null;
}

export async function api(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  else if (me?.csrf && !["GET", "HEAD", "OPTIONS"].includes(method)) headers["X-CSRF-Token"] = me.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "unreachable", `Vane did not answer: ${e.message}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    // Native routes say {"error":{code,message}}; the original's (the
    // playground) {"data":null,"message"}.
    const error = data?.error ?? {};
    const message = error.message ?? data?.message ?? `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, error.code ?? "http_error", message);
  }
  return data;
}
