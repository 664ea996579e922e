//! Signing in and out.

use super::*;

pub async fn signin_form(State(st): State<WebState>, headers: HeaderMap) -> Result<Response> {
    let signed = signed_in(&st, &headers);
    signin_page(me(&signed), None, StatusCode::OK)
}

pub(super) fn signin_page(me: Option<Me>, error: Option<String>, status: StatusCode) -> Result<Response> {
    let csrf = session::random_token()?;
    let cookie = session::set_cookie(SIGNIN_COOKIE, &csrf, "/signin", std::time::Duration::from_secs(1800));
    let page = SigninPage { me, csrf, error };
    let mut response = (status, render(&page)).into_response();
    append_cookie(&mut response, &cookie);
    Ok(response)
}

pub(super) fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SigninForm {
    csrf: String,
    token: String,
}

pub async fn signin(
    State(st): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Result<Response> {
    let expected = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if !session::csrf_ok(&headers, &st.public_url, &expected, &form.csrf) {
        return Err(Error::PermissionDenied(
            "the sign-in form's CSRF token does not match, or it came from another site; open /signin again"
                .into(),
        ));
    }
    let (id, principal) = match st.sessions.start(&st.principals, form.token.trim()) {
        Ok(started) => started,
        Err(Error::Unauthenticated(message)) => {
            return signin_page(None, Some(message), StatusCode::UNAUTHORIZED);
        }
        Err(e) => return Err(e),
    };
    tracing::info!(principal = %principal.name, role = principal.role.name(), "web sign-in");
    let to = match &principal.role {
        Role::Enterprise { uscc } => format!("/e/{uscc}"),
        Role::Regulator { .. } | Role::Admin => "/region".to_owned(),
        Role::Lender => "/portfolio".to_owned(),
        Role::Source { .. } | Role::Public => "/".to_owned(),
    };
    let mut response = Redirect::to(&to).into_response();
    append_cookie(&mut response, &session::set_cookie(SESSION_COOKIE, &id, "/", SESSION_LIFETIME));
    append_cookie(&mut response, &session::clear_cookie(SIGNIN_COOKIE, "/signin"));
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn signout(
    State(st): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response> {
    if let Some(signed) = signed_in(&st, &headers) {
        check_csrf(&st, &headers, &signed, &form.csrf)?;
        st.sessions.end(&headers);
    }
    let mut response = Redirect::to("/").into_response();
    append_cookie(&mut response, &session::clear_cookie(SESSION_COOKIE, "/"));
    Ok(response)
}
