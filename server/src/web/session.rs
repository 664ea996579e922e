//! Sign-in sessions and CSRF tokens of the web page.
//!
//! A bearer token pasted into the sign-in form is kept here, in memory, and
//! never sent back: the browser gets a random session id in an `HttpOnly;
//! SameSite=Strict` cookie. Every request resolves the token again through
//! the same [`PrincipalStore`] as gRPC, so a revoked principal is signed out
//! at its next request. Sessions end after [`SESSION_LIFETIME`], on sign-out
//! and when the server restarts.
//!
//! Bounds: one principal holds at most [`MAX_SESSIONS_PER_PRINCIPAL`]
//! sessions; its next sign-in ends its own oldest one. The whole table
//! holds at most [`MAX_SESSIONS`]; when it is full of live sessions a new
//! sign-in is refused (`503`, try later) rather than ending someone
//! else's session, so no principal, however often it signs in, can sign
//! another out.
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
/// Most sessions held at once, all principals together; beyond it new
/// sign-ins are refused until sessions end.
pub const MAX_SESSIONS: usize = 10_000;
/// Most sessions of one principal (a few browsers, a shared desk); its
/// next sign-in ends its own oldest session.
pub const MAX_SESSIONS_PER_PRINCIPAL: usize = 16;

struct Session {
    token: String,
    /// The principal's name when the session started: whose quota it counts in.
    principal: String,
    csrf: String,
    started: Instant,
}

/// The signed-in sessions of one server.
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    max_total: usize,
    max_per_principal: usize,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::with_limits(MAX_SESSIONS, MAX_SESSIONS_PER_PRINCIPAL)
    }
}

/// A signed-in visitor: the principal and the CSRF token its forms carry.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub principal: Principal,
    pub csrf: String,
}

impl Sessions {
    /// A table holding at most `max_total` sessions, `max_per_principal` of
    /// any one principal.
    pub fn with_limits(max_total: usize, max_per_principal: usize) -> Sessions {
        Sessions { by_id: Mutex::default(), max_total, max_per_principal: max_per_principal.max(1) }
    }

    /// Starts a session for `token` if it authenticates; answers the new
    /// session id. Ends the principal's own oldest session when it holds
    /// its quota; refuses (`UNAVAILABLE`) when the table is full of live
    /// sessions of others.
    pub fn start(&self, principals: &PrincipalStore, token: &str) -> Result<(String, Principal)> {
        self.start_at(principals, token, Instant::now())
    }

    fn start_at(
        &self,
        principals: &PrincipalStore,
        token: &str,
        now: Instant,
    ) -> Result<(String, Principal)> {
        let principal = principals.authenticate(token).ok_or_else(|| {
            Error::Unauthenticated(
                "unknown token, or its principal was revoked; ask the operator for a token".into(),
            )
        })?;
        let (id, csrf) = (random_token()?, random_token()?);
        let mut sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let alive = |s: &Session| now.saturating_duration_since(s.started) < SESSION_LIFETIME;
        if sessions.len() >= self.max_total {
            sessions.retain(|_, s| alive(s));
        }
        let own: Vec<(&String, &Session)> =
            sessions.iter().filter(|(_, s)| s.principal == principal.name && alive(s)).collect();
        if own.len() >= self.max_per_principal {
            // Only this principal's sessions are candidates: its many
            // sign-ins never cost anyone else theirs.
            if let Some(oldest) = own.iter().min_by_key(|(_, s)| s.started).map(|(id, _)| (*id).clone()) {
                sessions.remove(&oldest);
            }
        } else if sessions.len() >= self.max_total {
            return Err(Error::Unavailable(format!(
                "{} sessions are open, the most this server holds; try again later \
                 (sessions end after {} hours or on sign-out)",
                self.max_total,
                SESSION_LIFETIME.as_secs() / 3600
            )));
        }
        sessions.insert(
            id.clone(),
            Session { token: token.to_owned(), principal: principal.name.clone(), csrf, started: now },
        );
        Ok((id, principal))
    }

    /// Sessions held, all principals together.
    pub fn len(&self) -> usize {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
/// `public_url` is the page's configured origin (`--public-url`): behind a
/// proxy that rewrites `Host`, the browser's `Origin` is that one.
pub fn csrf_ok(headers: &HeaderMap, public_url: &str, expected: &str, sent: &str) -> bool {
    if expected.is_empty() || !same_site(headers, public_url) {
        return false;
    }
    let (a, b) = (blake3::hash(expected.as_bytes()), blake3::hash(sent.as_bytes()));
    // blake3::Hash compares in constant time.
    a == b
}

/// False when the browser says the request came from another site (or
/// another origin of the same site): its `Origin` is neither the
/// configured public origin nor the host it addressed.
fn same_site(headers: &HeaderMap, public_url: &str) -> bool {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin") => return true,
        Some("cross-site" | "same-site") => return false,
        _ => {}
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    if origin.eq_ignore_ascii_case(public_url.trim_end_matches('/')) {
        return true;
    }
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
        let public = "http://127.0.0.1:8080";
        assert!(csrf_ok(&headers(&[host]), public, "t", "t"));
        assert!(!csrf_ok(&headers(&[host]), public, "t", "u"));
        assert!(!csrf_ok(&headers(&[host]), public, "", ""));
        assert!(csrf_ok(&headers(&[host, ("origin", "http://127.0.0.1:8080")]), public, "t", "t"));
        assert!(!csrf_ok(&headers(&[host, ("origin", "http://evil.example")]), public, "t", "t"));
        assert!(!csrf_ok(&headers(&[host, ("sec-fetch-site", "cross-site")]), public, "t", "t"));
        assert!(!csrf_ok(&headers(&[host, ("origin", "null")]), public, "t", "t"));
        let same = [host, ("origin", "null"), ("sec-fetch-site", "same-origin")];
        assert!(csrf_ok(&headers(&same), public, "t", "t"));
    }

    // Failure: behind a proxy that rewrites `Host`, form posts from the
    // public origin were refused as cross-site.
    #[test]
    fn csrf_accepts_the_public_origin_behind_a_proxy_that_rewrites_host() {
        let behind = [("host", "10.0.0.5:8080"), ("origin", "https://ecocode.example.gov.cn")];
        assert!(csrf_ok(&headers(&behind), "https://ecocode.example.gov.cn/", "t", "t"));
        assert!(!csrf_ok(&headers(&behind), "https://other.example.gov.cn", "t", "t"));
    }

    fn id_of(headers_id: &str) -> HeaderMap {
        headers(&[("cookie", &format!("{SESSION_COOKIE}={headers_id}"))])
    }

    // Failure: 10 070 sign-ins of one principal evicted every other
    // principal's session (a global cap of 10 000, oldest first).
    #[test]
    fn one_principal_signing_in_again_and_again_evicts_only_its_own_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let principals = PrincipalStore::open(dir.path()).unwrap();
        let (a, b, c) = (
            principals.add("bank-a", crate::principals::Role::Lender).unwrap(),
            principals.add("bank-b", crate::principals::Role::Lender).unwrap(),
            principals.add("bank-c", crate::principals::Role::Lender).unwrap(),
        );
        // A fresh load sees the three (a running server reloads by itself).
        let principals = PrincipalStore::open(dir.path()).unwrap();
        let sessions = Sessions::with_limits(6, 3);
        let t = Instant::now();
        let (b_id, _) = sessions.start_at(&principals, &b, t).unwrap();
        let a_ids: Vec<String> = (1..=50)
            .map(|i| sessions.start_at(&principals, &a, t + Duration::from_secs(i)).unwrap().0)
            .collect();
        assert_eq!(sessions.len(), 4, "bank-a keeps its quota of 3, bank-b its one");
        assert!(sessions.resolve(&principals, &id_of(&b_id)).is_some(), "bank-b is still signed in");
        assert!(sessions.resolve(&principals, &id_of(&a_ids[0])).is_none(), "bank-a's oldest ended");
        assert!(sessions.resolve(&principals, &id_of(&a_ids[49])).is_some());
        // Full of live sessions: a newcomer is refused, nobody is evicted.
        sessions.start_at(&principals, &c, t).unwrap();
        sessions.start_at(&principals, &c, t).unwrap();
        let refused = sessions.start_at(&principals, &c, t).unwrap_err();
        assert!(matches!(refused, Error::Unavailable(_)), "{refused}");
        assert_eq!(refused.http_status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(sessions.resolve(&principals, &id_of(&b_id)).is_some());
        // A principal at its quota still signs in when the table is full:
        // it ends its own oldest.
        sessions.start_at(&principals, &a, t + Duration::from_secs(99)).unwrap();
        assert_eq!(sessions.len(), 6);
        // Expired sessions make room.
        let later = t + SESSION_LIFETIME + Duration::from_secs(100);
        sessions.start_at(&principals, &c, later).unwrap();
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn session_cookies_are_http_only_and_strict() {
        let c = set_cookie(SESSION_COOKIE, "id", "/", SESSION_LIFETIME);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
        assert_ne!(random_token().unwrap(), random_token().unwrap());
    }
}
