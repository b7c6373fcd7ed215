// The admin API, with the token kept for this tab only (sessionStorage; no
// cookie, so no request is ever made on the operator's behalf by another
// site). Errors carry the server's code and message, to show where they belong.

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

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token() ?? ""}` };
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
