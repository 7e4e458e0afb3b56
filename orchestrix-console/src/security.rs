//! Who may change something (ADR 0042): sessions opened with the write
//! token, the CSRF token of a session, the same-origin check, and the
//! headers every answer carries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use uuid::Uuid;

use crate::config::Shared;
use crate::layout;
use crate::scope::Mount;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "orchestrix_console_session";

/// How long a session lasts after it is opened.
const SESSION_LIFETIME: Duration = Duration::from_hours(8);

/// The most sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

/// An open session: its CSRF token and when it ends.
#[derive(Clone)]
struct Session {
    csrf: String,
    opened: Instant,
}

/// The open sessions, in memory (a restart signs everyone out).
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

/// A random token from the operating system's generator: two UUID v4,
/// 244 random bits.
fn random_token() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

impl Sessions {
    fn open(&self) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let mut open = self.open.lock().expect("sessions lock");
        open.retain(|_, session| session.opened.elapsed() < SESSION_LIFETIME);
        if open.len() >= MAX_SESSIONS {
            if let Some(oldest) = open.iter().min_by_key(|(_, session)| session.opened).map(|(id, _)| id.clone()) {
                open.remove(&oldest);
            }
        }
        open.insert(id.clone(), Session { csrf: csrf.clone(), opened: Instant::now() });
        (id, csrf)
    }

    /// The CSRF token of the live session `id`.
    fn csrf(&self, id: &str) -> Option<String> {
        let open = self.open.lock().expect("sessions lock");
        open.get(id).filter(|session| session.opened.elapsed() < SESSION_LIFETIME).map(|session| session.csrf.clone())
    }

    fn close(&self, id: &str) {
        self.open.lock().expect("sessions lock").remove(id);
    }
}

/// Equality that takes as long whatever the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session id in the request's cookies.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok()).find_map(|cookies| {
        cookies.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
    })
}

/// The CSRF token of the request's session, if it is signed in: what the
/// pages put in their forms.
pub(crate) fn signed_in_csrf(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    if !shared.writable() {
        return None;
    }
    session_id(headers).and_then(|id| shared.sessions.csrf(&id))
}

/// The `host[:port]` of an origin or URL (`https://host:8080/path`).
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Whether the request comes from a page of the console's own origin (or
/// an allowed one): its `Origin`, else its `Referer`, names the `Host` it
/// was sent to. A request with neither is refused.
fn same_origin(shared: &Shared, headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|value| value.to_str().ok())
        .filter(|value| *value != "null");
    let Some(source) = source else { return false };
    let allowed = shared
        .console
        .allowed_origins
        .iter()
        .any(|origin| source == origin || source.starts_with(&format!("{origin}/")));
    allowed || matches!((authority(source), host), (Some(from), Some(host)) if from.eq_ignore_ascii_case(host))
}

/// Whether the request may change something: the write token as a bearer
/// token, or a signed-in session with its CSRF token from a same-origin
/// page. `Err` is the reason of the refusal, for [`refused`].
pub(crate) fn authorize(shared: &Shared, headers: &HeaderMap, csrf: Option<&str>) -> Result<(), &'static str> {
    let Some(token) = shared.console.write_token.as_deref() else {
        return Err("This console is read-only.");
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(bearer) = bearer {
        return if same_secret(bearer.trim(), token) { Ok(()) } else { Err("Wrong token.") };
    }
    let Some(expected) = session_id(headers).and_then(|id| shared.sessions.csrf(&id)) else {
        return Err("Sign in with the write token first.");
    };
    if !same_origin(shared, headers) {
        return Err("Cross-site request refused.");
    }
    match csrf {
        Some(csrf) if same_secret(csrf, &expected) => Ok(()),
        _ => Err("Missing or stale form token; reload the page."),
    }
}

/// A 403 page with `reason` (a fixed text of this module).
pub(crate) fn refused(reason: &'static str) -> Response {
    (StatusCode::FORBIDDEN, layout::bare("Refused", reason)).into_response()
}

/// The sign-in form.
#[derive(Deserialize)]
pub(crate) struct SignIn {
    token: String,
    #[serde(default)]
    next: String,
}

/// Where to go after signing in or out: a path of the console, never
/// another site.
fn next_path(mount: &Mount, next: &str) -> String {
    let inside = next == mount.root_href() || next.starts_with(&format!("{}/", mount.root));
    if inside && next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        mount.root_href()
    }
}

/// `POST /session`: the write token opens a session.
pub(crate) async fn sign_in(
    State(shared): State<Arc<Shared>>,
    mount: Mount,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if !same_origin(&shared, &headers) {
        return refused("Cross-site request refused.");
    }
    let Some(token) = shared.console.write_token.as_deref() else {
        return refused("This console is read-only.");
    };
    if !same_secret(form.token.trim(), token) {
        return refused("Wrong token.");
    }
    let (id, _) = shared.sessions.open();
    let path = if mount.root.is_empty() { "/" } else { mount.root.as_str() };
    // Served over HTTPS (the form came from an https origin): the cookie
    // is never sent in clear.
    let https = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|value| value.to_str().ok())
        .is_some_and(|origin| origin.starts_with("https://"));
    let secure = if https { "; Secure" } else { "" };
    let lifetime = SESSION_LIFETIME.as_secs();
    let cookie = format!("{COOKIE}={id}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={lifetime}{secure}");
    let mut response = Redirect::to(&next_path(&mount, &form.next)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The sign-out form: the session's CSRF token.
#[derive(Deserialize)]
pub(crate) struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// `POST /session/end`: closes the session.
pub(crate) async fn sign_out(
    State(shared): State<Arc<Shared>>,
    mount: Mount,
    headers: HeaderMap,
    Form(form): Form<SignOut>,
) -> Response {
    if let Err(reason) = authorize(&shared, &headers, Some(&form.csrf)) {
        return refused(reason);
    }
    if let Some(id) = session_id(&headers) {
        shared.sessions.close(&id);
    }
    let path = if mount.root.is_empty() { "/" } else { mount.root.as_str() };
    let mut response = Redirect::to(&mount.root_href()).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("{COOKIE}=; Path={path}; HttpOnly; SameSite=Strict; Max-Age=0")) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The headers of every answer: a content security policy that allows
/// only the console's own stylesheet and script, no framing, no sniffing,
/// no caching, and no referrer to other sites.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn authorities() {
        assert_eq!(authority("http://127.0.0.1:8080/x?y"), Some("127.0.0.1:8080"));
        assert_eq!(authority("https://evil.example"), Some("evil.example"));
        assert_eq!(authority("garbage"), None);
    }

    #[test]
    fn next_stays_inside() {
        let mount = Mount { root: "/orchestrix".into(), home: "/orchestrix".into(), tenant: None };
        assert_eq!(next_path(&mount, "/orchestrix/dead-letters"), "/orchestrix/dead-letters");
        assert_eq!(next_path(&mount, "https://evil.example/"), "/orchestrix");
        assert_eq!(next_path(&mount, "//evil.example/orchestrix/"), "/orchestrix");
    }
}
