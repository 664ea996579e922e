//! Sign-in sessions and CSRF tokens of the web page.
//!
//! A bearer token pasted into the sign-in form is kept here, in memory, and
//! never sent back: the browser gets a random session id in an `HttpOnly;
//! SameSite=Strict` cookie. Every request resolves the token again through
//! the same [`PrincipalStore`] as gRPC, so a revoked principal is signed out
//! at its next request. Sessions end after [`SESSION_LIFETIME`], on sign-out
//! and when the server restarts.
//!
//! CSRF: every form carries a token that must match (the session's own
//! token; before sign-in, a token in a short-lived pre-session cookie), and
//! a request whose `Origin` or `Sec-Fetch-Site` says it came from another
//! site is refused, whatever it carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use base64::Engine;

use crate::error::{Error, Result};
use crate::principals::{Principal, PrincipalStore};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ecocode_session";
/// The pre-session cookie of the sign-in form.
pub const SIGNIN_COOKIE: &str = "ecocode_signin";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once; the oldest go first.
pub const MAX_SESSIONS: usize = 10_000;

struct Session {
    token: String,
    csrf: String,
    started: Instant,
}

/// The signed-in sessions of one server.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// A signed-in visitor: the principal and the CSRF token its forms carry.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub principal: Principal,
    pub csrf: String,
}

impl Sessions {
    /// Starts a session for `token` if it authenticates; answers the new
    /// session id.
    pub fn start(&self, principals: &PrincipalStore, token: &str) -> Result<(String, Principal)> {
        let principal = principals.authenticate(token).ok_or_else(|| {
            Error::Unauthenticated(
                "unknown token, or its principal was revoked; ask the operator for a token".into(),
            )
        })?;
        let (id, csrf) = (random_token()?, random_token()?);
        let mut sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.started) < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.started).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Session { token: token.to_owned(), csrf, started: now });
        Ok((id, principal))
    }

    /// The signed-in visitor of a request, if its session is alive and its
    /// principal still authenticates (a revoked one ends the session).
    pub fn resolve(&self, principals: &PrincipalStore, headers: &HeaderMap) -> Option<SignedIn> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get(&id)?;
        let alive = session.started.elapsed() < SESSION_LIFETIME;
        match principals.authenticate(&session.token).filter(|_| alive) {
            Some(principal) => Some(SignedIn { principal, csrf: session.csrf.clone() }),
            None => {
                sessions.remove(&id);
                None
            }
        }
    }

    /// Ends the request's session.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.by_id.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }
}

/// 32 random bytes, base64url: session ids and CSRF tokens. Fails closed:
/// without randomness from the OS there is no session.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for a session id: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value of a session (or pre-session) cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: Duration) -> String {
    format!("{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict", max_age.as_secs())
}

/// The `Set-Cookie` value that deletes a cookie.
pub fn clear_cookie(name: &str, path: &str) -> String {
    format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Whether a form's CSRF token matches the expected one (compared in
/// constant time) and the request did not come from another site.
pub fn csrf_ok(headers: &HeaderMap, expected: &str, sent: &str) -> bool {
    if expected.is_empty() || !same_site(headers) {
        return false;
    }
    let (a, b) = (blake3::hash(expected.as_bytes()), blake3::hash(sent.as_bytes()));
    // blake3::Hash compares in constant time.
    a == b
}

/// False when the browser says the request came from another site (or
/// another origin of the same site).
fn same_site(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin") => return true,
        Some("cross-site" | "same-site") => return false,
        _ => {}
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; ecocode_session=xyz; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn csrf_needs_the_token_and_the_same_origin() {
        let host = ("host", "127.0.0.1:8080");
        assert!(csrf_ok(&headers(&[host]), "t", "t"));
        assert!(!csrf_ok(&headers(&[host]), "t", "u"));
        assert!(!csrf_ok(&headers(&[host]), "", ""));
        assert!(csrf_ok(&headers(&[host, ("origin", "http://127.0.0.1:8080")]), "t", "t"));
        assert!(!csrf_ok(&headers(&[host, ("origin", "http://evil.example")]), "t", "t"));
        assert!(!csrf_ok(&headers(&[host, ("sec-fetch-site", "cross-site")]), "t", "t"));
        assert!(!csrf_ok(&headers(&[host, ("origin", "null")]), "t", "t"));
        let same = [host, ("origin", "null"), ("sec-fetch-site", "same-origin")];
        assert!(csrf_ok(&headers(&same), "t", "t"));
    }

    #[test]
    fn session_cookies_are_http_only_and_strict() {
        let c = set_cookie(SESSION_COOKIE, "id", "/", SESSION_LIFETIME);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
        assert_ne!(random_token().unwrap(), random_token().unwrap());
    }
}
