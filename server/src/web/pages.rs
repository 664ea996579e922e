//! The handlers of the web page. Each resolves who asks (the session's
//! principal, or the public), converts the request into domain values,
//! calls [`Service`](crate::service::Service) and renders the answer; the
//! door decides what may be seen or done. One module per page or form;
//! the helpers they share are here.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use scoring::{Code, Grade, KindClass, Record, RecordFields, Seq, Timestamp, Uscc, WorkflowKind};
use serde::Deserialize;

use super::session::{self, SESSION_COOKIE, SESSION_LIFETIME, SIGNIN_COOKIE, SignedIn};
use super::templates::*;
use super::{WebState, chart, labels, qr};
use crate::error::{Error, Result};
use crate::principals::{Principal, Role};
use crate::service::{
    ExportItem, ListQuery, MAX_PAGE, MAX_PAGE_REASONS, PAGE_HISTORY_DAYS, PageView, ScoreView, WITHHELD_KIND,
};

mod enterprise;
mod feed;
mod filing;
mod grants;
mod portfolio;
mod proof;
mod region;
mod scanned;
mod signin;
mod tiles;

pub use enterprise::*;
pub use feed::*;
pub use filing::*;
pub use grants::*;
pub use portfolio::*;
pub use proof::*;
pub use region::*;
pub use scanned::*;
pub use signin::*;
pub use tiles::*;

/// The inquiry purpose of page reads that name none (`?purpose=`).
const PURPOSE: &str = "web page";
/// Rows per page of the regulator's list.
const REGION_PAGE: usize = 50;
/// Most enterprises counted per code, or written to one CSV.
const MAX_LISTED: usize = 10_000;

// ---- answers ------------------------------------------------------------------

fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the operator can find details in the server log",
            )
                .into_response()
        }
    }
}

/// An error page: what went wrong, in words, with the status.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage { me: None, status: status.as_u16(), title, message };
    (status, render(&page)).into_response()
}

fn me(signed: &Option<SignedIn>) -> Option<Me> {
    signed.as_ref().map(|s| Me {
        name: s.principal.name.clone(),
        role: s.principal.role.name(),
        csrf: s.csrf.clone(),
        own_uscc: match &s.principal.role {
            Role::Enterprise { uscc } => Some(uscc.clone()),
            _ => None,
        },
    })
}

fn signed_in(st: &WebState, headers: &HeaderMap) -> Option<SignedIn> {
    st.sessions.resolve(&st.principals, headers)
}

/// The signed-in visitor, or `401` with the way to sign in.
fn require_signed_in(st: &WebState, headers: &HeaderMap) -> Result<SignedIn> {
    signed_in(st, headers).ok_or_else(|| {
        Error::Unauthenticated("sign in first: /signin, with the token from `ecocode principal add`".into())
    })
}

fn check_csrf(st: &WebState, headers: &HeaderMap, signed: &SignedIn, sent: &str) -> Result<()> {
    if session::csrf_ok(headers, &st.public_url, &signed.csrf, sent) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            "the form's CSRF token does not match this session, or it came from another site; \
             reload the page and send the form again"
                .into(),
        ))
    }
}

/// Who reads an enterprise's page, decided at the door.
async fn page_reader(st: &WebState, signed: &Option<SignedIn>, uscc: &Uscc) -> Result<Principal> {
    st.service.page_reader(signed.as_ref().map(|s| &s.principal), uscc).await
}

/// The purpose of a page read: `?purpose=`, or [`PURPOSE`].
fn page_purpose(given: Option<&str>) -> Result<String> {
    let purpose = crate::auth::purpose_text("purpose", given.unwrap_or_default())?;
    Ok(if purpose.is_empty() { PURPOSE.to_owned() } else { purpose })
}

fn parse_uscc(text: &str) -> Result<Uscc> {
    Ok(Uscc::parse(text.trim())?)
}

/// The origin of the URLs in QR codes and feeds: `--public-url` (or the
/// listener's address), never the request's `Host`, which the client
/// chooses and would turn a QR code into a link to its own site.
fn base_url(st: &WebState) -> String {
    st.public_url.to_string()
}

fn date(t: Timestamp) -> String {
    t.to_string().chars().take(10).collect()
}

/// An instant to the second, UTC, for people (JSON keeps the exact one).
fn shown(t: Timestamp) -> String {
    let text: String = t.to_string().chars().take(19).collect();
    format!("{} {} UTC", text.get(..10).unwrap_or_default(), text.get(11..).unwrap_or_default())
}

/// Percent-encodes a query value (everything but unreserved characters).
fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- the rest ------------------------------------------------------------------

pub async fn index(State(st): State<WebState>, headers: HeaderMap) -> Response {
    render(&IndexPage { me: me(&signed_in(&st, &headers)) })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LookupQuery {
    uscc: String,
}

/// The start page's form: `/e?uscc=X` goes to `/e/X`.
pub async fn lookup(Query(q): Query<LookupQuery>) -> Result<Response> {
    let uscc = parse_uscc(&q.uscc.to_ascii_uppercase())?;
    Ok(Redirect::to(&format!("/e/{uscc}")).into_response())
}

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        labels::status_title(StatusCode::NOT_FOUND),
        "no such page; an enterprise's page is /e/<USCC>",
    )
}
